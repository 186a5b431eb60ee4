//! Reconstruction benchmark: the time of each step of `generate3d` at CRM's full size (the
//! triplane UNet at 256x768 with channels up to 512, MLPs of 512, the 80^3 FlexiCubes grid, a
//! 1024x1024 texture) with random weights, on the CPU or a GPU. The views are synthetic; with
//! random weights the SDF is the sphere prior plus the network's noise, so the mesh is a lumpy
//! sphere of realistic size (the times of the network and the grid do not depend on values).
//!
//! ```sh
//! . ./env.sh
//! cargo run --release -p img3d-pipeline --example recon_bench -- [--device cpu|cuda] [--runs N] [--tiny]
//! # or this crate alone optimised inside the dev profile (no optimised torch-sys rebuild):
//! cargo run --config 'profile.dev.package.img3d-pipeline.opt-level=3' \
//!     --config 'profile.dev.package.img3d-pipeline.debug-assertions=false' \
//!     -p img3d-pipeline --example recon_bench -- --runs 2
//! ```
//!
//! Prints one line per step and run, then the median per step, and peak GPU memory on CUDA.

use std::time::Instant;

use image::RgbImage;
use img3d_pipeline::mesh;
use img3d_pipeline::mesh::archive::{zip_bytes, NAME};
use img3d_pipeline::mesh::obj::{mtl_text, obj_text};
use img3d_pipeline::mesh::raster::rasterize_uv;
use img3d_pipeline::mesh::texture::{bake, encode_png, finish};
use img3d_pipeline::mesh::unwrap::unwrap;
use img3d_pipeline::params::TEXTURE_SIZE;
use img3d_pipeline::recon::{input, load, to_rows, ReconConfig};
use img3d_pipeline::DeviceSpec;
use tch::{Device, Kind, Tensor};

fn strip(seed: u32) -> RgbImage {
    RgbImage::from_fn(1536, 256, |x, y| {
        let v = |c: u32| ((x * 7 + y * 13 + c * 101 + seed + (x / 256) * 37) % 256) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

struct Timer {
    device: Device,
    start: Instant,
    steps: Vec<(&'static str, f64)>,
}

impl Timer {
    fn lap(&mut self, name: &'static str) {
        sync(self.device);
        let ms = self.start.elapsed().as_secs_f64() * 1e3;
        self.steps.push((name, ms));
        self.start = Instant::now();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let device: DeviceSpec =
        arg("--device").unwrap_or_else(|| "cpu".into()).parse().map_err(|e| format!("--device: {e}"))?;
    let device = device.resolve()?;
    let runs: usize = arg("--runs").map(|r| r.parse()).transpose()?.unwrap_or(2);
    let cfg = if args.iter().any(|a| a == "--tiny") { ReconConfig::tiny() } else { ReconConfig::crm() };
    println!(
        "reconstruction benchmark: {} config (UNet {:?}, MLP {}, grid {}^3), random weights, {device:?}, {runs} run(s), torch threads {}",
        if cfg == ReconConfig::crm() { "CRM" } else { "tiny" },
        cfg.unet.block_out_channels,
        cfg.mlp_hidden,
        cfg.grid_res,
        tch::get_num_threads()
    );
    // libtorch's default initialisation draws from its global generator: seed it so every run
    // (and every machine) times the same network and the same mesh.
    tch::manual_seed(1234);
    let start = Instant::now();
    let model = load::random(cfg, device)?;
    sync(device);
    println!("build + grid: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    let (rgb, ccm) = (strip(0), strip(91));
    let _guard = tch::no_grad_guard();

    let mut all: Vec<Vec<(&'static str, f64)>> = Vec::new();
    for run in 0..runs {
        let mut t = Timer { device, start: Instant::now(), steps: Vec::new() };
        let x = input::noised(&input::triplane(&rgb, &ccm)?.to_device(device), 1234);
        t.lap("input");
        let features = model.features_of(&x);
        t.lap("unet");
        let (sdf, deformed, weight) = model.decode_grid(&features);
        t.lap("decode");
        let (verts, faces) = model.extract(&sdf, &deformed, &weight);
        t.lap("flexicubes");
        let v = to_rows::<f32>(&verts)?;
        let f = to_rows::<i64>(&faces.to_kind(Kind::Int64))?;
        let cleaned = mesh::clean(&v, &f);
        t.lap("clean");
        let atlas = unwrap(&cleaned, TEXTURE_SIZE);
        t.lap("unwrap");
        let size = TEXTURE_SIZE as usize;
        let raster = rasterize_uv(&atlas.uvs, &atlas.uv_faces, size, size);
        t.lap("raster");
        let mut colour = |p: &Tensor| Ok(model.colour(&features, p));
        let texture = bake(&raster, &cleaned.vertices, &cleaned.faces, &mut colour)?;
        t.lap("bake");
        let png = encode_png(&finish(&texture))?;
        t.lap("png");
        let zip = zip_bytes(&obj_text(NAME, &atlas), &png, &mtl_text(NAME))?;
        t.lap("obj+zip");
        let total: f64 = t.steps.iter().map(|s| s.1).sum();
        let line: Vec<String> = t.steps.iter().map(|(n, ms)| format!("{n} {ms:.0}")).collect();
        println!(
            "run {run}: {} | total {total:.0} ms | mesh {} faces ({} from FlexiCubes), zip {:.1} MB",
            line.join(", "),
            cleaned.faces.len(),
            f.len(),
            zip.len() as f64 / 1e6
        );
        all.push(t.steps);
    }
    println!("median ms per step over {runs} run(s):");
    let mut total = 0.0;
    for (i, (name, _)) in all[0].iter().enumerate() {
        let mut v: Vec<f64> = all.iter().map(|r| r[i].1).collect();
        v.sort_by(f64::total_cmp);
        let m = v[v.len() / 2];
        total += m;
        println!("  {name:<11} {m:>9.1}");
    }
    println!("  {:<11} {total:>9.1}", "total");
    if let Device::Cuda(_) = device {
        println!("(peak GPU memory: see nvidia-smi in tools/gpu/recon_bench.sh)");
    }
    Ok(())
}
