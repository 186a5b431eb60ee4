//! The OBJ/MTL writer against upstream's (`CRM.export_mesh_wt_uv`, ported line for line into
//! `tools/parity/mesh.py`, fixture `mesh_obj.io.safetensors`: a cleaned mesh with xatlas UVs and
//! hand-picked delicate values), and the zip's structure.

mod common;

use std::io::{Cursor, Read};

use img3d_pipeline::mesh::archive::{zip_bytes, NAME};
use img3d_pipeline::mesh::obj::{mtl_text, obj_text};
use img3d_pipeline::mesh::TexturedMesh;
use tch::{Kind, Tensor};

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1])).unwrap()
}

fn indices(t: &Tensor) -> Vec<[u32; 3]> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).contiguous().view([-1]))
        .unwrap()
        .chunks_exact(3)
        .map(|c| [c[0] as u32, c[1] as u32, c[2] as u32])
        .collect()
}

fn fixture_mesh() -> (TexturedMesh, Vec<u8>, Vec<u8>) {
    let io = common::load_io("mesh_obj");
    let mesh = TexturedMesh {
        vertices: floats(&io["vertices"]).chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        faces: indices(&io["faces"]),
        uvs: floats(&io["uvs"]).chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
        uv_faces: indices(&io["uv_faces"]),
    };
    let bytes = |k: &str| Vec::<u8>::try_from(io[k].contiguous().view([-1])).unwrap();
    (mesh, bytes("obj"), bytes("mtl"))
}

/// OBJ and MTL bytes are identical to upstream's writer.
#[test]
fn obj_and_mtl_are_byte_identical_to_upstream() {
    let (mesh, obj, mtl) = fixture_mesh();
    let ours = obj_text(NAME, &mesh);
    if ours.as_bytes() != obj.as_slice() {
        let theirs = String::from_utf8_lossy(&obj);
        let line = ours.lines().zip(theirs.lines()).position(|(a, b)| a != b);
        panic!(
            "OBJ differs at line {line:?}: {:?}",
            line.map(|l| (ours.lines().nth(l), theirs.lines().nth(l)))
        );
    }
    assert_eq!(mtl_text(NAME).as_bytes(), mtl.as_slice());
}

/// The zip holds output3d.obj, .png, .mtl in upstream's order with the exact contents, and the
/// same input gives the same bytes.
#[test]
fn zip_structure() {
    let (mesh, _, _) = fixture_mesh();
    let obj = obj_text(NAME, &mesh);
    let mtl = mtl_text(NAME);
    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let bytes = zip_bytes(&obj, &png, &mtl).unwrap();
    assert_eq!(bytes, zip_bytes(&obj, &png, &mtl).unwrap(), "deterministic");
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let names: Vec<String> =
        (0..zip.len()).map(|i| zip.by_index(i).unwrap().name().unwrap().to_string()).collect();
    assert_eq!(names, ["output3d.obj", "output3d.png", "output3d.mtl"]);
    let mut read = |name: &str| {
        let mut out = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut out).unwrap();
        out
    };
    assert_eq!(read("output3d.obj"), obj.as_bytes());
    assert_eq!(read("output3d.png"), png);
    assert_eq!(read("output3d.mtl"), mtl.as_bytes());
}

fn flexicubes_mesh() -> img3d_pipeline::mesh::Mesh {
    let io = common::load_io("mesh_clean");
    let v = floats(&io["case3.clean_vertices"]);
    img3d_pipeline::mesh::Mesh {
        vertices: v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        faces: indices(&io["case3.clean_faces"]),
    }
}

fn run_export(
    mesh: &img3d_pipeline::mesh::Mesh,
    cancelled: bool,
    queried: &mut usize,
) -> Result<Vec<u8>, img3d_pipeline::PipelineError> {
    let is_cancelled = move || cancelled;
    let mut progress = |_: img3d_pipeline::stages::Stage, _: u32, _: u32| {};
    let mut ctl = img3d_pipeline::stages::StepCtl::new(&is_cancelled, &mut progress);
    let mut colour = |xs: &Tensor| {
        *queried += xs.size()[0] as usize;
        Ok(xs.sin() * 1.5)
    };
    img3d_pipeline::mesh::export_textured(mesh, &mut colour, &mut ctl)
}

/// A full export of a FlexiCubes mesh: the zip holds a parseable OBJ with valid indices and UVs in
/// [0, 1], the MTL names the PNG that is in the zip, the PNG is 1024x1024, every covered texel was
/// queried once, and the bytes are the same on a second run.
#[test]
fn export_textured_makes_a_valid_zip() {
    let mesh = flexicubes_mesh();
    let mut queried = 0;
    let bytes = run_export(&mesh, false, &mut queried).unwrap();
    assert!(queried > 10_000, "{queried} texels queried");
    let mut again = 0;
    assert_eq!(bytes, run_export(&mesh, false, &mut again).unwrap(), "deterministic bytes");

    let counts = common::check_output_zip(&bytes);
    assert_eq!(counts.vertices, mesh.vertices.len());
    assert_eq!(counts.faces, mesh.faces.len());
}

/// A cancelled job stops before the colour network is ever queried.
#[test]
fn export_textured_stops_when_cancelled() {
    let mut queried = 0;
    let err = run_export(&flexicubes_mesh(), true, &mut queried).unwrap_err();
    assert!(matches!(err, img3d_pipeline::PipelineError::Cancelled), "{err}");
    assert_eq!(queried, 0);
}
