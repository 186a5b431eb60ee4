//! The in-memory `output3d.zip`: `NAME.obj`, `NAME.png`, `NAME.mtl`, in upstream's order.
//!
//! Upstream zips temporary files named after a random temp name; ours are named `output3d.*`
//! (so the bytes depend only on the content) and never touch the disk. Entries carry a fixed
//! timestamp (1980-01-01, the zip epoch) so the same mesh gives the same bytes. The OBJ and MTL
//! are deflated (text shrinks ~3x; upstream stores everything uncompressed); the PNG is already
//! compressed and is stored.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::PipelineError;

/// The stem of the files inside the archive.
pub const NAME: &str = "output3d";

/// Zips `NAME.obj`, `NAME.png`, `NAME.mtl` (upstream's order) in memory.
pub fn zip_bytes(obj: &str, png: &[u8], mtl: &str) -> Result<Vec<u8>, PipelineError> {
    let err = |e: zip::result::ZipError| PipelineError::Internal(format!("zip: {e}"));
    let text = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .last_modified_time(DateTime::default());
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default());
    let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(png.len() + obj.len() / 2 + 4096)));
    zip.start_file(format!("{NAME}.obj"), text).map_err(err)?;
    zip.write_all(obj.as_bytes())?;
    zip.start_file(format!("{NAME}.png"), stored).map_err(err)?;
    zip.write_all(png)?;
    zip.start_file(format!("{NAME}.mtl"), text).map_err(err)?;
    zip.write_all(mtl.as_bytes())?;
    Ok(zip.finish().map_err(err)?.into_inner())
}
