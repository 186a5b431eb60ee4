//! Times the mesh half of `generate3d` on a ~22k-face FlexiCubes mesh (upstream's FlexiCubes on
//! an 80^3 grid, `pipeline/tests/data/mesh_blob.io.safetensors`): cleaning, UV unwrap, raster +
//! bake (with a cheap stand-in colour function: the real colour MLP's time belongs to the
//! network), PNG, OBJ text and zip.
//!
//! Then our unwrapper beside upstream's `xatlas.parametrize` (default options, as CRM calls it)
//! on four meshes: that one, our FlexiCubes on a noisy sphere at 80^3 (~22k faces) and at 128^3
//! (~82k faces), and the first one made jagged as in `tests/mesh_unwrap.rs` (many charts):
//! utilisation of the 1024^2 texture, time, L2 stretch, density spread, charts
//! ([`img3d_pipeline::mesh::uvstats`]). xatlas runs in a Python made by
//! `tools/parity/setup_xatlas.sh` (`~/.cache/img3d/xatlas`), or the parity Python
//! (`~/.cache/img3d/parity`), or `IMG3D_PARITY_PYTHON`; without one only our numbers print.
//!
//! `cargo bench -p img3d-pipeline --bench mesh` (release build). Prints numbers; asserts nothing.

use std::path::PathBuf;
use std::time::Instant;

use img3d_pipeline::fixtures::{jagged, mesh_blob, noisy_sphere};
use img3d_pipeline::mesh::archive::{zip_bytes, NAME};
use img3d_pipeline::mesh::obj::{mtl_text, obj_text};
use img3d_pipeline::mesh::raster::{for_each_covered, rasterize_uv};
use img3d_pipeline::mesh::texture::{bake, encode_png, finish};
use img3d_pipeline::mesh::unwrap::unwrap;
use img3d_pipeline::mesh::uvstats::atlas_stats;
use img3d_pipeline::mesh::{clean, Mesh, TexturedMesh};
use tch::Tensor;

const RES: usize = 1024;

fn main() {
    let (vertices, faces) = mesh_blob();
    println!("mesh: {} vertices, {} faces (FlexiCubes 80^3, cleaned)", vertices.len(), faces.len());

    let (mesh, t_clean) = timed(|| clean(&vertices, &faces));
    let (atlas, t_unwrap) = timed(|| unwrap(&mesh, RES as u32));
    let (raster, t_raster) = timed(|| rasterize_uv(&atlas.uvs, &atlas.uv_faces, RES, RES));
    let mut colour = |xs: &Tensor| Ok(xs.sin());
    let (tex, t_bake) = timed(|| bake(&raster, &mesh.vertices, &mesh.faces, &mut colour).unwrap());
    let (png, t_png) = timed(|| encode_png(&finish(&tex)).unwrap());
    let (obj, t_obj) = timed(|| obj_text(NAME, &atlas));
    let (zip, t_zip) = timed(|| zip_bytes(&obj, &png, &mtl_text(NAME)).unwrap());
    println!("clean            {:8.1} ms", t_clean);
    println!("unwrap (ours)    {:8.1} ms", t_unwrap);
    println!("raster 1024^2    {:8.1} ms", t_raster);
    println!("bake (interp+colour+fill) {:8.1} ms  ({} texels)", t_bake, raster.covered());
    println!("dilate + png     {:8.1} ms  ({} KiB)", t_png, png.len() / 1024);
    println!("obj text         {:8.1} ms  ({} KiB)", t_obj, obj.len() / 1024);
    println!("zip              {:8.1} ms  ({} KiB)", t_zip, zip.len() / 1024);
    println!("total            {:8.1} ms", t_clean + t_unwrap + t_raster + t_bake + t_png + t_obj + t_zip);

    println!("\nunwrapper        time (ms)   texels used   charts(uv verts)");
    report("ours", t_unwrap, &atlas, &mesh);
    drop(mesh);

    atlas_table();
}

/// Ours beside xatlas on three meshes: utilisation, time, stretch, density spread, charts.
fn atlas_table() {
    let meshes = [
        ("recon bench (FlexiCubes 80^3)", blob_mesh()),
        ("noisy sphere (FlexiCubes 80^3)", noisy_sphere(80, 0.6)),
        ("noisy sphere (FlexiCubes 128^3)", noisy_sphere(128, 0.72)),
        ("recon bench, jagged (tests/mesh_unwrap.rs)", jagged(blob_mesh())),
    ];
    println!("\natlas {RES}^2: ours (median of 3 runs) beside xatlas.parametrize (default options, one run)");
    println!(
        "{:34} {:>7} {:>10} {:>10} {:>7} {:>7} {:>7}",
        "mesh / unwrapper", "faces", "util", "time (ms)", "L2", "spread", "charts"
    );
    for (name, mesh) in &meshes {
        let mut runs: Vec<(f64, TexturedMesh)> = (0..3)
            .map(|_| {
                let (a, t) = timed(|| unwrap(mesh, RES as u32));
                (t, a)
            })
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (t_ours, ours) = runs.swap_remove(1);
        let xa = xatlas(mesh);
        println!("{name}");
        row("  ours", mesh.faces.len(), t_ours, &ours);
        match xa {
            Ok((x, secs)) => {
                row("  xatlas (python)", mesh.faces.len(), secs * 1e3, &x);
                println!("  time ratio xatlas / ours: {:.1}", secs * 1e3 / t_ours);
            }
            Err(e) => println!("  xatlas: not run ({e})"),
        }
    }
    println!(
        "\nutil: texels of the {RES}^2 texture the bake colours; L2: normalised L2 stretch (Sander \
         2001, 1 = no stretch); spread: 95th / 5th percentile of texels per unit length, area-weighted"
    );
}

fn row(name: &str, faces: usize, ms: f64, atlas: &TexturedMesh) {
    let s = atlas_stats(atlas, RES);
    println!(
        "{:34} {:>7} {:>9.1}% {:>10.1} {:>7.3} {:>7.2} {:>7}",
        name,
        faces,
        s.utilisation * 100.0,
        ms,
        s.l2_stretch,
        s.density_spread,
        s.charts
    );
}

/// The reconstruction bench mesh: upstream's FlexiCubes on CRM's 80^3 grid, cleaned.
fn blob_mesh() -> Mesh {
    let (vertices, faces) = mesh_blob();
    clean(&vertices, &faces)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64() * 1e3)
}

/// Time, the share of the 1024^2 texture the atlas covers (the texel budget the surface gets),
/// and the UV vertex count.
fn report(name: &str, ms: f64, atlas: &TexturedMesh, _mesh: &Mesh) {
    let mut covered = vec![false; RES * RES];
    for_each_covered(&atlas.uvs, &atlas.uv_faces, RES, RES, |_, k| covered[k] = true);
    let used = covered.iter().filter(|&&c| c).count() as f64 / (RES * RES) as f64;
    println!("{name:16} {ms:10.1}   {:10.1}%   {}", used * 100.0, atlas.uvs.len());
}

/// Runs `tools/parity/xatlas_bench.py` on `mesh`.
fn xatlas(mesh: &Mesh) -> Result<(TexturedMesh, f64), String> {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = std::env::var("IMG3D_PARITY_PYTHON").unwrap_or_else(|_| {
        [format!("{home}/.cache/img3d/parity/bin/python"), format!("{home}/.cache/img3d/xatlas/bin/python")]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| format!("{home}/.cache/img3d/xatlas/bin/python"))
    });
    if !std::path::Path::new(&python).exists() {
        return Err(format!("{python} not found"));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (src, dst) = (dir.path().join("in.safetensors"), dir.path().join("out.safetensors"));
    let v: Vec<f32> = mesh.vertices.iter().flatten().copied().collect();
    let f: Vec<i64> = mesh.faces.iter().flatten().map(|&i| i as i64).collect();
    let vt = Tensor::from_slice(&v).view([-1, 3]);
    let ft = Tensor::from_slice(&f).view([-1, 3]);
    Tensor::write_safetensors(&[("vertices", &vt), ("faces", &ft)], &src).map_err(|e| e.to_string())?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/parity/xatlas_bench.py");
    let status = std::process::Command::new(&python)
        .arg(&script)
        .arg(&src)
        .arg(&dst)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{script:?} failed: {status}"));
    }
    let out: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&dst).map_err(|e| e.to_string())?.into_iter().collect();
    let uvs = Vec::<f32>::try_from(out["uvs"].contiguous().view([-1])).map_err(|e| e.to_string())?;
    let uf = Vec::<i64>::try_from(out["uv_faces"].contiguous().view([-1])).map_err(|e| e.to_string())?;
    let secs = out["seconds"].double_value(&[0]);
    Ok((
        TexturedMesh {
            vertices: mesh.vertices.clone(),
            faces: mesh.faces.clone(),
            uvs: uvs.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
            uv_faces: uf.chunks_exact(3).map(|c| [c[0] as u32, c[1] as u32, c[2] as u32]).collect(),
        },
        secs,
    ))
}
