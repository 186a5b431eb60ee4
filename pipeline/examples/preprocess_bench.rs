//! Preprocessing benchmark: milliseconds per image for a 1024x1024 JPEG (decode, U-2-Net
//! background removal, cutout, square, grey composite) on the CPU, with the full-width U-2-Net
//! (rembg's `u2net`, 44M parameters) and the tiny bundle's, both with random weights (the time
//! does not depend on the values), printed side by side with the time of each step.
//!
//! ```sh
//! . ./env.sh && cargo run --release -p img3d-pipeline --example preprocess_bench -- [RUNS]
//! # or, without rebuilding torch-sys optimised: this crate alone at opt-level 3 in dev
//! cargo run --config 'profile.dev.package.img3d-pipeline.opt-level=3' \
//!     --config 'profile.dev.package.img3d-pipeline.debug-assertions=false' \
//!     -p img3d-pipeline --example preprocess_bench -- 3
//! ```
//!
//! Two things make this slow that are not the model (found chasing a 3.9 s tiny-bundle run):
//! - a debug build runs this crate's own resampling loops (PIL-exact Lanczos, `resample.rs`)
//!   unoptimised: ~1.1 s to 320x320, ~0.6 s back, ~0.9 s composite, against ~0.1 s each
//!   optimised;
//! - libtorch's OpenMP threads spin while waiting: on a machine with more busy processes than
//!   cores, 2 intra-op threads ran the tiny U-2-Net in 5.7 s against 0.31 s with 1 thread, and
//!   0.62 s with `OMP_WAIT_POLICY=PASSIVE` (torch 2.11, 2 cores, load average 10). On a
//!   dedicated machine the default is right; on a shared one set `OMP_WAIT_POLICY=PASSIVE`.

use std::time::{Duration, Instant};

use image::{DynamicImage, RgbImage};
use img3d_pipeline::config::{PreprocessConfig, U2netConfig};
use img3d_pipeline::preprocess::{self, Preprocessor};
use img3d_pipeline::u2net::U2net;
use img3d_pipeline::{bundle, random};
use tch::nn::VarStore;
use tch::Device;

/// A 1024x1024 JPEG with structure (a disc on a gradient, noise), quality 90.
fn jpeg() -> Vec<u8> {
    let mut state = 12345u32;
    let img = RgbImage::from_fn(1024, 1024, |x, y| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let noise = (state >> 24) as i32 % 16 - 8;
        let (dx, dy) = (x as i32 - 560, y as i32 - 470);
        let inside = dx * dx + dy * dy < 300 * 300;
        let base = if inside { [230, 60, 40] } else { [(x / 5) as i32, (y / 6) as i32, 90] };
        image::Rgb(base.map(|c| (c + noise).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    DynamicImage::ImageRgb8(img).write_with_encoder(encoder).unwrap();
    out
}

#[derive(Default)]
struct Steps {
    decode: Duration,
    input: Duration,
    network: Duration,
    mask: Duration,
    compose: Duration,
    whole: Duration,
}

fn ms(d: Duration, runs: u32) -> f64 {
    d.as_secs_f64() * 1e3 / f64::from(runs)
}

fn bench(label: &str, cfg: &U2netConfig, file: &[u8], runs: u32) -> Steps {
    let _guard = tch::no_grad_guard();
    let vs = VarStore::new(Device::Cpu);
    let net = U2net::new(&vs.root(), cfg);
    random::randomize(&vs, 7, 0.05);
    let dir = tempfile::tempdir().unwrap();
    bundle::save_component(dir.path(), "u2net", &vs).unwrap();
    let pre = Preprocessor::with_weights(
        PreprocessConfig::default(),
        cfg,
        &bundle::component_path(dir.path(), "u2net"),
        Device::Cpu,
    )
    .unwrap();
    pre.run(file).unwrap(); // warm-up: first-call allocations and libtorch kernel selection
    let mut s = Steps::default();
    for _ in 0..runs {
        let t = Instant::now();
        pre.run(file).unwrap();
        s.whole += t.elapsed();

        let t = Instant::now();
        let img = preprocess::decode(file).unwrap();
        s.decode += t.elapsed();
        let t = Instant::now();
        let rgb = DynamicImage::ImageRgba8(img.clone()).to_rgb8();
        let xs = preprocess::u2net_input(&rgb, cfg);
        s.input += t.elapsed();
        let t = Instant::now();
        let pred = net.forward(&xs);
        s.network += t.elapsed();
        let t = Instant::now();
        let mask = preprocess::mask_from_prediction(&pred, img.width(), img.height()).unwrap();
        s.mask += t.elapsed();
        let t = Instant::now();
        let cut = preprocess::naive_cutout(&img, &mask);
        let _ = preprocess::add_background(&preprocess::expand_to_square(&cut), 127);
        s.compose += t.elapsed();
    }
    eprintln!("{label}: done");
    s
}

fn main() {
    let runs: u32 = std::env::args().nth(1).map(|a| a.parse().expect("RUNS")).unwrap_or(5);
    let file = jpeg();
    println!(
        "1024x1024 JPEG ({} KiB), CPU, {} libtorch threads, {} runs each, {} build",
        file.len() / 1024,
        tch::get_num_threads(),
        runs,
        if cfg!(debug_assertions) { "DEBUG" } else { "release" }
    );
    let tiny = bench("tiny", &U2netConfig::tiny(), &file, runs);
    let full = bench("full", &U2netConfig::u2net(), &file, runs);
    println!("{:<34} {:>12} {:>14}", "ms per image", "tiny U-2-Net", "full U-2-Net");
    type Row = (&'static str, fn(&Steps) -> Duration);
    let rows: [Row; 6] = [
        ("decode (JPEG -> RGBA)", |s| s.decode),
        ("U-2-Net input (Lanczos to 320)", |s| s.input),
        ("U-2-Net forward", |s| s.network),
        ("mask (min-max, Lanczos back)", |s| s.mask),
        ("cutout + square + grey", |s| s.compose),
        ("whole Preprocessor::run", |s| s.whole),
    ];
    for (name, get) in rows {
        println!("{name:<34} {:>12.1} {:>14.1}", ms(get(&tiny), runs), ms(get(&full), runs));
    }
}
