//! The GLB export and the face budget on the reconstruction's own mesh (upstream's FlexiCubes
//! on an 80^3 grid, `mesh_blob.io.safetensors`, ~22k faces once cleaned): the GLB passes the
//! Khronos glTF validator with no error and no warning and holds the zip's geometry; decimation
//! meets the budget, keeps the surface close, and the textured export of the decimated mesh is
//! as valid as the full one's.

mod common;

use std::io::Read;

use img3d_pipeline::mesh::decimate::{decimate, hausdorff};
use img3d_pipeline::mesh::{clean, export_files, ExportOptions, Mesh};
use img3d_pipeline::stages::StepCtl;
use tch::{Kind, Tensor};

fn blob() -> Mesh {
    let io = common::load_io("mesh_blob");
    let v = Vec::<f32>::try_from(io["vertices"].to_kind(Kind::Float).contiguous().view([-1])).unwrap();
    let f = Vec::<i64>::try_from(io["faces"].to_kind(Kind::Int64).contiguous().view([-1])).unwrap();
    let vertices: Vec<[f32; 3]> = v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let faces: Vec<[i64; 3]> = f.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    clean(&vertices, &faces)
}

fn export(mesh: &Mesh, options: ExportOptions) -> img3d_pipeline::stages::MeshFiles {
    let never = || false;
    let mut ignore = |_, _, _| {};
    // A smooth stand-in for the colour MLP: the texture varies over the surface.
    let mut colour = |xs: &Tensor| Ok((xs * 7.0).sin());
    export_files(mesh, options, &mut colour, &mut StepCtl::new(&never, &mut ignore)).unwrap()
}

/// The GLB of the full mesh validates cleanly, embeds the zip's PNG byte for byte, and has as
/// many triangles as the OBJ.
#[test]
fn glb_of_the_reconstruction_mesh_validates() {
    let mesh = blob();
    let files = export(&mesh, ExportOptions { glb: true, ..ExportOptions::default() });
    let glb = files.glb.expect("a GLB was asked for");
    let report = common::validate_glb(&glb);
    println!("{report}");
    let counts = common::check_output_zip(&files.zip);
    assert_eq!(counts.faces, mesh.faces.len());

    let json_len = u32::from_le_bytes(glb[12..16].try_into().unwrap()) as usize;
    let root: serde_json::Value = serde_json::from_slice(&glb[20..20 + json_len]).unwrap();
    let indices =
        &root["accessors"][root["meshes"][0]["primitives"][0]["indices"].as_u64().unwrap() as usize];
    assert_eq!(indices["count"].as_u64().unwrap() as usize, 3 * counts.faces);
    let mut png = Vec::new();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&files.zip)).unwrap();
    zip.by_name("output3d.png").unwrap().read_to_end(&mut png).unwrap();
    let view = &root["bufferViews"][root["images"][0]["bufferView"].as_u64().unwrap() as usize];
    let start = 20 + json_len + 8 + view["byteOffset"].as_u64().unwrap() as usize;
    assert!(glb[start..start + png.len()] == png[..], "the GLB's image is not the zip's texture");
}

/// A face budget of a quarter of the faces is met, the decimated surface stays within 1% of
/// the mesh's size of the original (Hausdorff), and its textured export (512 texture, GLB)
/// is valid.
#[test]
fn face_budget_decimates_before_the_export() {
    let mesh = blob();
    let target = mesh.faces.len() / 4;
    let (small, report) = decimate(&mesh, target);
    assert!(small.faces.len() <= target && small.faces.len() > target * 3 / 4, "{report:?}");
    let extent = (0..3)
        .map(|k| {
            let (lo, hi) =
                mesh.vertices.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p[k]), hi.max(p[k])));
            hi - lo
        })
        .fold(0.0, f32::max);
    let d = hausdorff(&mesh, &small);
    assert!(d < 0.01 * extent, "Hausdorff {d} on a mesh of size {extent}");

    let files = export(&mesh, ExportOptions { texture: 512, faces: Some(target as u32), glb: true });
    let counts = common::check_output_zip_sized(&files.zip, 512);
    assert_eq!(counts.faces, small.faces.len(), "the export did not decimate to the budget first");
    common::validate_glb(&files.glb.unwrap());
}
