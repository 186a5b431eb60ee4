//! Saving result parts safely: names from the server are sanitised before they touch the file
//! system, files appear atomically (temp file + rename), and a result ZIP is unpacked only if
//! every entry stays inside the target directory.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use img3d_protocol::PartName;

use crate::error::ExtractError;

/// Limits of [`extract_zip`]. A CRM result ZIP holds three files (OBJ, MTL, PNG) of a few
/// tens of MB; the defaults leave a wide margin and still stop a zip bomb.
#[derive(Debug, Clone, Copy)]
pub struct ExtractLimits {
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Most bytes written in total.
    pub max_total_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits { max_entries: 1000, max_total_bytes: 2 << 30 }
    }
}

/// The file name to save a part under: the protocol's own name for the three known parts,
/// otherwise the server's name reduced to a plain file name (its last path component, only
/// `[A-Za-z0-9._-]`, not hidden), or `None` when nothing safe is left.
pub fn part_file_name(server_name: &str) -> Option<String> {
    if let Some(part) = PartName::from_file_name(server_name) {
        return Some(part.file_name().to_owned());
    }
    let last = server_name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(100)
        .collect();
    (!clean.is_empty() && !clean.starts_with('.')).then_some(clean)
}

/// A directory name for the results of a local image: its file stem with path separators and
/// control characters replaced, `image` when nothing usable is left.
pub fn job_dir_name(image: &Path) -> String {
    let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String =
        stem.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "image".to_owned()
    } else {
        clean
    }
}

/// Writes `bytes` to `dir/name` atomically: readers see the old file or the whole new one,
/// never a partial write. `name` must be a plain file name (see [`part_file_name`]).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let target = dir.join(name);
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // On error the temp file is removed by its drop.
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(target)
}

/// Unpacks `zip_path` into the directory `dest` (replacing it), refusing the whole archive if
/// any entry is absolute, has a `..` component, is a symlink or other special file, repeats a
/// name, or if it passes `limits`. Entries are unpacked into a temporary sibling directory
/// renamed to `dest` at the end, so `dest` is either complete or untouched. Returns the files
/// written (relative to `dest`).
pub fn extract_zip(
    zip_path: &Path,
    dest: &Path,
    limits: ExtractLimits,
) -> Result<Vec<PathBuf>, ExtractError> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dest_name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = tempfile::Builder::new().prefix(&format!(".{dest_name}.")).tempdir_in(parent)?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(fs::File::open(zip_path)?))?;
    if archive.len() > limits.max_entries {
        return Err(ExtractError::TooLarge(format!(
            "{} entries (limit {})",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut budget = limits.max_total_bytes;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name()?.into_owned();
        let rel = safe_relative_path(&name)?;
        if entry.is_symlink() {
            return Err(ExtractError::UnsafeEntry { name, reason: "symbolic link" });
        }
        let path = staging.path().join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        // create_new: a repeated name must not overwrite (or follow) what an earlier entry made.
        let mut out = match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ExtractError::UnsafeEntry { name, reason: "repeated name" })
            }
            other => other?,
        };
        // Count real bytes, not the header's claim, and stop one past the budget.
        let copied = io::copy(&mut (&mut entry).take(budget + 1), &mut out)?;
        if copied > budget {
            return Err(ExtractError::TooLarge(format!("more than {} bytes", limits.max_total_bytes)));
        }
        budget -= copied;
        written.push(rel);
    }
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::rename(staging.keep(), dest)?;
    Ok(written)
}

/// The entry name as a relative path, or why it is unsafe. Stricter than the zip library's
/// `enclosed_name` (which accepts `a/../b` and strips a leading `/`): any `..`, any absolute
/// or drive-letter path and any backslash are refused outright.
fn safe_relative_path(name: &str) -> Result<PathBuf, ExtractError> {
    let unsafe_entry = |reason| Err(ExtractError::UnsafeEntry { name: name.to_owned(), reason });
    if name.starts_with('/') || name.starts_with('\\') {
        return unsafe_entry("absolute path");
    }
    if name.contains('\\') || name.contains('\0') {
        return unsafe_entry("backslash or NUL in the name");
    }
    if name.split('/').next().is_some_and(|first| first.contains(':')) {
        return unsafe_entry("drive letter or scheme");
    }
    let mut rel = PathBuf::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return unsafe_entry("parent directory (..) component"),
            normal => rel.push(normal),
        }
    }
    if rel.as_os_str().is_empty() {
        return unsafe_entry("empty name");
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known parts keep their names; anything else is reduced to a plain, visible file name.
    #[test]
    fn part_names_are_sanitised() {
        assert_eq!(part_file_name("output3d.zip").as_deref(), Some("output3d.zip"));
        assert_eq!(part_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(part_file_name("C:\\x\\evil name?.png").as_deref(), Some("evilname.png"));
        assert_eq!(part_file_name("/abs/.bashrc"), None);
        assert_eq!(part_file_name(".."), None);
        assert_eq!(part_file_name(""), None);
    }

    /// Entry names that leave the directory are refused; ordinary nested names pass.
    #[test]
    fn zip_entry_names() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "\\x", "a\\..\\x", "C:/x", "", "./"] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(safe_relative_path("mesh/./model.obj").unwrap(), PathBuf::from("mesh/model.obj"));
    }

    /// Stems of local images become directory names without separators or dot-dirs.
    #[test]
    fn job_dir_names() {
        assert_eq!(job_dir_name(Path::new("photos/cat.large.png")), "cat.large");
        assert_eq!(job_dir_name(Path::new("..")), "image");
        assert_eq!(job_dir_name(Path::new("/")), "image");
        assert_eq!(job_dir_name(Path::new("a\nb.png")), "a_b");
    }
}
