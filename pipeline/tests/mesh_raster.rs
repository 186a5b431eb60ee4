//! The UV rasteriser against a Python reference of nvdiffrast's rules (`tools/parity/mesh.py`,
//! `raster_reference`; nvdiffrast itself needs CUDA): an xatlas atlas of a cleaned mesh at 192x160
//! and a set of rule edge cases (shared edges and vertices on pixel centres, both windings,
//! overlaps, slivers, borders, off-grid positions) at 40x24.

mod common;

use img3d_pipeline::mesh::raster::{interpolate, rasterize_uv};
use tch::{Kind, Tensor};

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1])).unwrap()
}

fn tri3(t: &Tensor) -> Vec<[u32; 3]> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).contiguous().view([-1]))
        .unwrap()
        .chunks_exact(3)
        .map(|c| [c[0] as u32, c[1] as u32, c[2] as u32])
        .collect()
}

fn check(case: &str, width: usize, height: usize) {
    let io = common::load_io("mesh_raster");
    let uvs: Vec<[f32; 2]> =
        floats(&io[&format!("{case}.uvs")]).chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let faces = tri3(&io[&format!("{case}.uv_faces")]);
    let expected_tri = Vec::<i32>::try_from(io[&format!("{case}.tri")].contiguous().view([-1])).unwrap();
    let expected_bary = floats(&io[&format!("{case}.bary")]);
    let r = rasterize_uv(&uvs, &faces, width, height);
    let mismatched: Vec<usize> =
        (0..width * height).filter(|&k| r.tri[k] as i32 != expected_tri[k]).collect();
    assert!(
        mismatched.is_empty(),
        "{case}: {} texels differ, first at (row {}, col {}): ours {} reference {}",
        mismatched.len(),
        mismatched[0] / width,
        mismatched[0] % width,
        r.tri[mismatched[0]],
        expected_tri[mismatched[0]]
    );
    let max_err =
        r.bary.iter().flatten().zip(&expected_bary).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_err <= 1e-6, "{case}: barycentric max abs error {max_err:e}");
}

/// Same triangle per texel and same barycentrics as the reference on a real atlas.
#[test]
fn atlas_matches_reference() {
    check("atlas", 192, 160);
}

/// Same on the fill-rule edge cases.
#[test]
fn edge_cases_match_reference() {
    check("edge", 40, 24);
}

/// Interpolated positions of the atlas raster equal the reference bake's (dr.interpolate).
#[test]
fn interpolation_matches_reference() {
    let io = common::load_io("mesh_raster");
    let uvs: Vec<[f32; 2]> = floats(&io["atlas.uvs"]).chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let r = rasterize_uv(&uvs, &tri3(&io["atlas.uv_faces"]), 192, 160);
    let vertices: Vec<[f32; 3]> =
        floats(&io["atlas.vertices"]).chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let points = interpolate(&r, &tri3(&io["atlas.faces"]), &vertices);
    let expected = floats(&common::load_io("mesh_bake")["positions"]);
    assert_eq!(points.len() * 3, expected.len());
    let max_err = points.iter().flatten().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_err <= 1e-6, "position max abs error {max_err:e}");
}
