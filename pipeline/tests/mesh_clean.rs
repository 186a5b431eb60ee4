//! `mesh::clean` against kiui's `clean_mesh(repair=False, remesh=False)` as upstream's
//! `inference.py` calls it. Fixtures: `tools/parity/mesh.py` (`mesh_clean.io.safetensors`): three
//! perturbed icospheres (near-duplicate vertices on both sides of the weld radius, 400 duplicate
//! faces in rotated and reversed order, collinear and repeated-vertex faces, a far unreferenced
//! vertex) and a FlexiCubes mesh.

mod common;

use img3d_pipeline::mesh::clean;
use tch::{Kind, Tensor};

fn rows3_f32(t: &Tensor) -> Vec<[f32; 3]> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1]))
        .unwrap()
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect()
}

fn rows3_i64(t: &Tensor) -> Vec<[i64; 3]> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).contiguous().view([-1]))
        .unwrap()
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect()
}

/// Same vertices (bit for bit, same order) and same faces (same order and winding) as kiui.
#[test]
fn clean_matches_kiui_exactly() {
    let io = common::load_io("mesh_clean");
    for case in 0..4 {
        let get = |k: &str| &io[&format!("case{case}.{k}")];
        let vertices = rows3_f32(get("vertices"));
        let faces = rows3_i64(get("faces"));
        let expected_v = rows3_f32(get("clean_vertices"));
        let expected_f: Vec<[u32; 3]> =
            rows3_i64(get("clean_faces")).iter().map(|f| f.map(|i| i as u32)).collect();
        let mesh = clean(&vertices, &faces);
        assert_eq!(mesh.vertices.len(), expected_v.len(), "case{case}: vertex count");
        assert_eq!(mesh.faces.len(), expected_f.len(), "case{case}: face count");
        assert!(mesh.vertices == expected_v, "case{case}: vertex positions/order");
        let first_diff = mesh.faces.iter().zip(&expected_f).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "case{case}: first differing face");
    }
}

/// The perturbed cases really exercise welding and duplicate removal (the test can fail).
#[test]
fn fixture_cases_change_the_mesh() {
    let io = common::load_io("mesh_clean");
    for case in 0..3 {
        let n = |k: &str| io[&format!("case{case}.{k}")].size()[0];
        assert!(n("clean_vertices") < n("vertices") - 100, "case{case} welds");
        assert!(n("clean_faces") < n("faces") - 300, "case{case} drops faces");
    }
}

/// Degenerate input: nothing referenced, or every face repeated, gives a valid (small) mesh.
#[test]
fn degenerate_inputs() {
    let empty = clean(&[[0.0, 0.0, 0.0]], &[]);
    assert!(empty.vertices.is_empty() && empty.faces.is_empty());
    let v = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let f = [[0, 1, 2], [1, 2, 0], [2, 1, 0], [0, 1, 2]];
    let m = clean(&v, &f);
    assert_eq!(m.vertices.len(), 3);
    assert_eq!(m.faces.len(), 1);
    // Out-of-range faces are dropped rather than panicking.
    let m = clean(&v, &[[0, 1, 7], [0, 1, 2]]);
    assert_eq!(m.faces, vec![[0, 1, 2]]);
}
