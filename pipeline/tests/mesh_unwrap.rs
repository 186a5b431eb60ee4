//! The UV unwrapper on a ~22k-face FlexiCubes mesh (`mesh_blob.io.safetensors`, upstream's
//! FlexiCubes on an 80^3 grid, cleaned): complete, in range, overlap-free, deterministic.

mod common;

use img3d_pipeline::mesh::raster::for_each_covered;
use img3d_pipeline::mesh::unwrap::unwrap;
use img3d_pipeline::mesh::Mesh;
use tch::Kind;

fn blob() -> Mesh {
    let io = common::load_io("mesh_blob");
    let v = Vec::<f32>::try_from(io["vertices"].to_kind(Kind::Float).contiguous().view([-1])).unwrap();
    let f = Vec::<i64>::try_from(io["faces"].to_kind(Kind::Int64).contiguous().view([-1])).unwrap();
    Mesh {
        vertices: v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        faces: f.chunks_exact(3).map(|c| [c[0] as u32, c[1] as u32, c[2] as u32]).collect(),
    }
}

/// Every face gets a UV face, UVs lie in [0, 1], charts never overlap (no texel centre is covered
/// by two triangles), and a good part of the square is used.
#[test]
fn atlas_is_valid_and_overlap_free() {
    let mesh = blob();
    let atlas = unwrap(&mesh, 1024);
    assert_eq!(atlas.vertices, mesh.vertices);
    assert_eq!(atlas.faces, mesh.faces);
    assert_eq!(atlas.uv_faces.len(), mesh.faces.len());
    assert!(atlas.uvs.iter().flatten().all(|t| (0.0..=1.0).contains(t)), "UVs in [0, 1]");
    assert!(atlas.uv_faces.iter().flatten().all(|&i| (i as usize) < atlas.uvs.len()));
    let mut hits = vec![0u8; 1024 * 1024];
    for_each_covered(&atlas.uvs, &atlas.uv_faces, 1024, 1024, |_, k| hits[k] = hits[k].saturating_add(1));
    let covered = hits.iter().filter(|&&h| h > 0).count();
    let overlapping = hits.iter().filter(|&&h| h > 1).count();
    assert_eq!(overlapping, 0, "texels covered twice");
    let used = covered as f64 / (1024.0 * 1024.0);
    assert!(used > 0.3, "atlas uses {used:.3} of the texture");
}

/// A jagged version of the mesh (every vertex pushed by deterministic noise of about half an
/// edge, as random-weight reconstructions look) unwraps without overlapping charts. A handful of
/// texels may still be hit twice where two faces of a chart touch without sharing an edge and the
/// rasteriser's 1/16-texel snapping moves them together (the unchecked planar projection of the
/// first version overlapped thousands of texels on such meshes).
#[test]
fn jagged_mesh_has_no_overlaps() {
    let mut mesh = blob();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for v in &mut mesh.vertices {
        for c in v.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *c += ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.015;
        }
    }
    let atlas = unwrap(&mesh, 1024);
    assert!(atlas.uvs.iter().flatten().all(|t| (0.0..=1.0).contains(t)));
    let mut hits = vec![0u8; 1024 * 1024];
    for_each_covered(&atlas.uvs, &atlas.uv_faces, 1024, 1024, |_, k| hits[k] = hits[k].saturating_add(1));
    let covered = hits.iter().filter(|&&h| h > 0).count();
    let twice = hits.iter().filter(|&&h| h > 1).count();
    assert!(twice * 10_000 <= covered, "{twice} of {covered} texels covered twice");
}

/// Same mesh, same atlas.
#[test]
fn unwrap_is_deterministic() {
    let mesh = blob();
    assert_eq!(unwrap(&mesh, 1024), unwrap(&mesh, 1024));
}
