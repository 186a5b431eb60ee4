//! The texture bake against upstream's code (`tools/parity/mesh.py`, `mesh_bake.io.safetensors`):
//! the reference rasterisation of an xatlas atlas at 192x160, positions interpolated as
//! `dr.interpolate`, a fixed colour function, then upstream's scaling, clip, dark-texel mask,
//! one 3x3 `cv2.dilate`, uint8 cast and `cv2.imwrite`.

mod common;

use img3d_pipeline::mesh::raster::rasterize_uv;
use img3d_pipeline::mesh::texture::{bake, encode_png, finish};
use img3d_pipeline::PipelineError;
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

/// The fixture's colour function, op for op: `sin(a x + b y + c z + d) * 1.4 - 0.6` per channel.
fn colour_fn(coef: Vec<f32>) -> impl FnMut(&Tensor) -> Result<Tensor, PipelineError> {
    move |xs: &Tensor| {
        let cols: Vec<Tensor> = (0..3)
            .map(|k| {
                let c = &coef[4 * k..4 * k + 4];
                let s = xs.select(1, 0) * c[0] as f64
                    + xs.select(1, 1) * c[1] as f64
                    + xs.select(1, 2) * c[2] as f64
                    + c[3] as f64;
                s.sin() * 1.4 - 0.6
            })
            .collect();
        Ok(Tensor::stack(&cols, 1))
    }
}

/// The baked PNG decodes to (nearly) the same pixels as upstream's: at most a few texels one
/// level apart, where a 1-ulp difference of `sin` across libtorch builds crosses a truncation.
#[test]
fn bake_matches_upstream_texture() {
    let io = common::load_io("mesh_raster");
    let bake_io = common::load_io("mesh_bake");
    let uvs: Vec<[f32; 2]> = floats(&io["atlas.uvs"]).chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let (w, h) = (192, 160);
    let raster = rasterize_uv(&uvs, &tri3(&io["atlas.uv_faces"]), w, h);
    let vertices: Vec<[f32; 3]> =
        floats(&io["atlas.vertices"]).chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let mut colour = colour_fn(floats(&bake_io["coef"]));
    let tex = bake(&raster, &vertices, &tri3(&io["atlas.faces"]), &mut colour).unwrap();
    let ours = finish(&tex);
    let png = Vec::<u8>::try_from(bake_io["png"].contiguous().view([-1])).unwrap();
    let theirs = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!((theirs.width(), theirs.height()), (w as u32, h as u32));
    let diffs: Vec<i32> = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .filter(|&d| d != 0)
        .collect();
    let max = diffs.iter().copied().max().unwrap_or(0);
    let mean = diffs.iter().sum::<i32>() as f64 / (w * h * 3) as f64;
    assert!(
        max <= 1 && diffs.len() <= 10,
        "{} channel values differ, max {max}, mean abs {mean:e}",
        diffs.len()
    );
    // Our PNG decodes to our pixels.
    let decoded = image::load_from_memory(&encode_png(&ours).unwrap()).unwrap().to_rgb8();
    assert_eq!(decoded, ours);
}

/// The fixture exercises what it claims: clipping, the dark-texel mask, and uncovered texels.
#[test]
fn bake_fixture_covers_the_cases() {
    let png = Vec::<u8>::try_from(common::load_io("mesh_bake")["png"].contiguous().view([-1])).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    let raw = img.as_raw();
    assert!(raw.contains(&0), "clipped-to-zero texels");
    assert!(raw.contains(&1), "uncovered texels stay 1");
    assert!(raw.iter().any(|&v| v > 150), "bright texels");
}
