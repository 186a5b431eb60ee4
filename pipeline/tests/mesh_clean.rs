//! `mesh::clean` against kiui 0.2.4's `clean_mesh(repair=False, remesh=False)` as upstream's
//! `inference.py` calls it (CRM's time: small pieces removed by default). Fixtures:
//! `tools/parity/mesh.py` (`mesh_clean.io.safetensors`), made by that kiui and pymeshlab
//! 2023.12.post1: three perturbed icospheres (near-duplicate vertices on both sides of the weld
//! radius, 400 duplicate faces in rotated and reversed order, collinear and repeated-vertex
//! faces, a far unreferenced vertex), a FlexiCubes mesh, a sphere with floaters on both sides of
//! each threshold (case 4) and a FlexiCubes mesh with floaters (case 5).

mod common;

use img3d_pipeline::mesh::clean;
use tch::{Kind, Tensor};

const CASES: usize = 6;

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
    for case in 0..CASES {
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

/// The floater cases lose pieces (kiui 0.2.4's `min_f` / `min_d` really acted), and case 4 keeps
/// exactly the pieces at or above both thresholds: the 1280-face sphere with its fin and welded
/// flap (1282), the large ball (320) and the 64-face strip (the test can fail).
#[test]
fn floater_cases_lose_pieces() {
    let io = common::load_io("mesh_clean");
    let n = |case: usize, k: &str| io[&format!("case{case}.{k}")].size()[0];
    assert_eq!(n(4, "clean_faces"), 1282 + 320 + 64);
    assert!(n(5, "clean_faces") < n(5, "faces") - 100, "case5 drops FlexiCubes floaters");
    let mesh = clean(&rows3_f32(&io["case4.vertices"]), &rows3_i64(&io["case4.faces"]));
    assert_eq!(mesh.faces.len(), 1282 + 320 + 64);
}

/// Degenerate input: nothing referenced, every face repeated, or a mesh of nothing but small
/// pieces gives an empty mesh rather than a panic.
#[test]
fn degenerate_inputs() {
    let empty = clean(&[[0.0, 0.0, 0.0]], &[]);
    assert!(empty.vertices.is_empty() && empty.faces.is_empty());
    let v = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let f = [[0, 1, 2], [1, 2, 0], [2, 1, 0], [0, 1, 2]];
    // One face is left after the duplicates go, and a one-face piece is under 64 faces.
    let m = clean(&v, &f);
    assert!(m.vertices.is_empty() && m.faces.is_empty());
    // Out-of-range faces are dropped rather than panicking.
    let m = clean(&v, &[[0, 1, 7], [0, 1, 2]]);
    assert!(m.faces.is_empty());
}

/// A grid of 2 x 8 x 8 faces is one piece of 128 faces: it stays whole, with duplicates of its
/// faces removed, while a one-face piece far from it goes.
#[test]
fn one_piece_stays_and_a_small_one_goes() {
    let mut v = Vec::new();
    for y in 0..9 {
        for x in 0..9 {
            v.push([x as f32, y as f32, 0.0]);
        }
    }
    let mut f = Vec::new();
    for y in 0..8i64 {
        for x in 0..8i64 {
            let a = y * 9 + x;
            f.push([a, a + 1, a + 10]);
            f.push([a, a + 10, a + 9]);
        }
    }
    f.push([0, 1, 10]);
    let far = v.len() as i64;
    v.extend([[20.0, 20.0, 0.0], [20.5, 20.0, 0.0], [20.0, 20.5, 0.0]]);
    f.push([far, far + 1, far + 2]);
    let m = clean(&v, &f);
    assert_eq!(m.faces.len(), 128);
    assert_eq!(m.vertices.len(), 81);
}
