//! The face budget on the reconstruction bench mesh (`mesh_blob.io.safetensors`: upstream's
//! FlexiCubes on an 80^3 grid, ~22k faces once cleaned): for several budgets, the time of
//! meshoptimizer's decimation, the faces it reached, the symmetric Hausdorff distance to the
//! original surface (absolute, and relative to the bounding-box diagonal), and the time of the
//! textured export (unwrap + bake + PNG + zip) of the result beside the full mesh's.
//!
//! `cargo bench -p img3d-pipeline --bench decimate` (release build). Prints numbers; asserts
//! nothing.

use std::time::Instant;

use img3d_pipeline::mesh::decimate::{decimate, hausdorff};
use img3d_pipeline::mesh::{clean, export_files, ExportOptions, Mesh};
use img3d_pipeline::stages::StepCtl;
use tch::Tensor;

fn main() {
    let (vertices, faces) = img3d_pipeline::fixtures::mesh_blob();
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
