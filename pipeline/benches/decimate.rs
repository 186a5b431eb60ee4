//! The face budget on the reconstruction bench mesh (`mesh_blob.io.safetensors`: upstream's
//! FlexiCubes on an 80^3 grid, ~22k faces once cleaned): for several budgets, the time of
//! meshoptimizer's decimation, the faces it reached, the symmetric Hausdorff distance to the
//! original surface (absolute, and relative to the bounding-box diagonal), and the time of the
//! textured export (unwrap + bake + PNG + zip) of the result beside the full mesh's.
//!
//! `cargo bench -p img3d-pipeline --bench decimate` (release build). Prints numbers; asserts
//! nothing.

use std::path::PathBuf;
use std::time::Instant;

use img3d_pipeline::mesh::decimate::{decimate, hausdorff};
use img3d_pipeline::mesh::{clean, export_files, ExportOptions, Mesh};
use img3d_pipeline::stages::StepCtl;
use tch::{Kind, Tensor};

fn main() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mesh_blob.io.safetensors");
    let io: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&data).expect("mesh_blob fixture").into_iter().collect();
    let v = Vec::<f32>::try_from(io["vertices"].to_kind(Kind::Float).contiguous().view([-1])).unwrap();
    let f = Vec::<i64>::try_from(io["faces"].to_kind(Kind::Int64).contiguous().view([-1])).unwrap();
    let vertices: Vec<[f32; 3]> = v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let faces: Vec<[i64; 3]> = f.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let mesh = clean(&vertices, &faces);
    let diagonal = diagonal(&mesh);
    println!(
        "mesh: {} vertices, {} faces (FlexiCubes 80^3, cleaned), bounding-box diagonal {diagonal:.4}",
        mesh.vertices.len(),
        mesh.faces.len()
    );
    let full_export = export_ms(&mesh);
    println!("\nbudget      faces   decimate (ms)   Hausdorff   / diagonal   export (ms)");
    println!(
        "{:>6} {:>10} {:>15} {:>11} {:>12} {:>13.1}",
        "none",
        mesh.faces.len(),
        "-",
        "-",
        "-",
        full_export
    );
    let n = mesh.faces.len();
    for target in [n / 2, n / 4, 5000, 2000, 1000] {
        let start = Instant::now();
        let (small, _) = decimate(&mesh, target);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let d = hausdorff(&mesh, &small);
        println!(
            "{:>6} {:>10} {:>15.1} {:>11.5} {:>11.3}% {:>13.1}",
            target,
            small.faces.len(),
            ms,
            d,
            100.0 * d / diagonal,
            export_ms(&small)
        );
    }
}

fn diagonal(mesh: &Mesh) -> f32 {
    let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
    for p in &mesh.vertices {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    (0..3).map(|k| (hi[k] - lo[k]).powi(2)).sum::<f32>().sqrt()
}

/// The textured export's time (1024 texture, a cheap stand-in for the colour MLP).
fn export_ms(mesh: &Mesh) -> f64 {
    let never = || false;
    let mut ignore = |_, _, _| {};
    let mut colour = |xs: &Tensor| Ok(xs.sin());
    let start = Instant::now();
    export_files(mesh, ExportOptions::default(), &mut colour, &mut StepCtl::new(&never, &mut ignore))
        .unwrap();
    start.elapsed().as_secs_f64() * 1e3
}
