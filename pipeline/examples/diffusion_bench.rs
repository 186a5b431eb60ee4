//! Timing of the multi-view diffusion: one guided UNet call of each stage (the CFG batch
//! `cat(uncond, cond)`: 14 frames for stage 1, 12 for stage 2) and each whole stage (image
//! transforms, CLIP, VAE encode, every DDIM step, decode, u8 strip).
//!
//! ```text
//! diffusion_bench [--size tiny|crm] [--device cpu|cuda|cuda:N|auto] [--steps N] [--calls N]
//!                 [--warmup N] [--stages 1,2] [--no-stage] [--json PATH]
//! ```
//! - `--size tiny` (default): the tiny bundle (generated into a temporary directory), its
//!   defaults (steps, guidance); RANDOM weights.
//! - `--size crm`: the official architecture (`DiffusionConfig::crm()`) with libtorch's random
//!   initialisation, fp16 on CUDA as upstream, fp32 on the CPU; guidance 5.5; `--steps`
//!   default 50 on CUDA, 2 on the CPU (minutes, not hours).
//!
//! Each stage's UNet call time is printed as soon as it is measured, before the DDIM loop
//! and the whole stage run.
//!
//! Prints one line per measurement and, last, `BENCH_JSON {...}` (also written to `--json`).
//! Never asserts on time. Build it with `cargo build --release -p img3d-pipeline --example
//! diffusion_bench`; `tools/gpu/diffusion_bench.sh` runs it beside upstream's UNets.

use std::time::Instant;

use image::RgbImage;
use img3d_pipeline::bundle::Bundle;
use img3d_pipeline::diffusion::multiview::CrmMultiView;
use img3d_pipeline::diffusion::sampler::{guided_eps, sample, StageModels};
use img3d_pipeline::diffusion::stage1::FrameConfig;
use img3d_pipeline::diffusion::{load, precision_for};
use img3d_pipeline::diffusion::{Ddim, DiffusionConfig};
use img3d_pipeline::stages::{MultiView, Stage, StepCtl};
use img3d_pipeline::{tiny, DeviceSpec};
use serde_json::json;
use tch::{Device, Kind, Tensor};

struct Args {
    size: String,
    device: DeviceSpec,
    steps: Option<u32>,
    calls: Option<u32>,
    warmup: u32,
    stages: Vec<u32>,
    whole_stage: bool,
    json: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        size: "tiny".into(),
        device: DeviceSpec::Cpu,
        steps: None,
        calls: None,
        warmup: 1,
        stages: vec![1, 2],
        whole_stage: true,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size" => args.size = value()?,
            "--device" => args.device = value()?.parse()?,
            "--steps" => args.steps = Some(value()?.parse().map_err(|e| format!("--steps: {e}"))?),
            "--calls" => args.calls = Some(value()?.parse().map_err(|e| format!("--calls: {e}"))?),
            "--warmup" => args.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--stages" => {
                args.stages = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--stages: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--no-stage" => args.whole_stage = false,
            "--json" => args.json = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("diffusion_bench.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !matches!(args.size.as_str(), "tiny" | "crm") {
        return Err(format!("--size {}: expected tiny or crm", args.size));
    }
    Ok(args)
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Milliseconds per guided UNet call of one stage (random latents and conditioning of the
/// stage's shapes; timestep 981, the first of a 50-step run), handed to `timed` as soon as it
/// is measured (printed before anything else runs), then seconds for the DDIM loop alone over
/// `ddim`'s steps (CFG concat and combine, DDIM update; no CLIP, no VAE): what upstream's
/// `DDIMSampler.sample()` does.
#[allow(clippy::too_many_arguments)]
fn time_unet(
    models: &StageModels,
    frames: &FrameConfig,
    ddim: &Ddim,
    cfg: &DiffusionConfig,
    stage: u32,
    warmup: u32,
    calls: u32,
    device: Device,
    timed: impl FnOnce(f64),
) -> (f64, f64) {
    let [c, h, w] = cfg.latent_shape();
    let f = frames.num_frames();
    let randn = |shape: &[i64]| Tensor::randn(shape, (Kind::Float, device));
    let ip = randn(&[1, cfg.clip.tokens(), cfg.clip.width]);
    let (ip_img, pixels) =
        if stage == 1 { (Some(randn(&[1, c, h, w])), None) } else { (None, Some(randn(&[f, c, h, w]))) };
    let cond = models.cfg_conditioning(&ip, &frames.cameras(device), ip_img.as_ref(), pixels.as_ref());
    let xs = randn(&[f, c, h, w]);
    for _ in 0..warmup {
        let _ = guided_eps(&models.unet, &xs, 981, &cond, 5.5);
    }
    sync(device);
    let start = Instant::now();
    for _ in 0..calls {
        let _ = guided_eps(&models.unet, &xs, 981, &cond, 5.5);
    }
    sync(device);
    let call_ms = start.elapsed().as_secs_f64() * 1e3 / f64::from(calls.max(1));
    timed(call_ms);
    let (cancelled, mut progress) = (|| false, |_, _, _| {});
    let start = Instant::now();
    let which = if stage == 1 { Stage::Stage1 } else { Stage::Stage2 };
    let out = sample(&models.unet, ddim, xs, &cond, 5.5, which, &mut StepCtl::new(&cancelled, &mut progress))
        .expect("sampling");
    let _ = out.sum(Kind::Float).double_value(&[]);
    sync(device);
    (call_ms, start.elapsed().as_secs_f64())
}

/// A deterministic 256x256 reference with some structure.
fn reference() -> RgbImage {
    RgbImage::from_fn(256, 256, |x, y| {
        let d = ((x as i32 - 128).pow(2) + (y as i32 - 128).pow(2)) as f64;
        if d < 90.0 * 90.0 {
            image::Rgb([(x / 2) as u8 + 60, (y / 2) as u8 + 40, 180])
        } else {
            image::Rgb([127, 127, 127])
        }
    })
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("diffusion_bench: {e}");
        std::process::exit(2);
    });
    let device = args.device.resolve().unwrap_or_else(|e| {
        eprintln!("diffusion_bench: {e}");
        std::process::exit(2);
    });
    let _guard = tch::no_grad_guard();
    let load_start = Instant::now();
    let cache = tempfile::tempdir().expect("temporary directory");
    let (mv, steps, guidance): (CrmMultiView, u32, f64) = if args.size == "tiny" {
        let dir = tiny::ensure(cache.path()).expect("tiny bundle");
        let bundle = Bundle::open(&dir).expect("tiny bundle");
        let mut config = bundle.config().clone();
        if let Some(steps) = args.steps {
            config.defaults.steps = steps;
            img3d_pipeline::bundle::write_config(&dir, &config).expect("config");
        }
        let bundle = Bundle::open(&dir).expect("tiny bundle");
        let defaults = bundle.config().defaults.clone();
        let mv =
            load::load_multiview(bundle.components(), &bundle.config().stages.diffusion, &defaults, device)
                .expect("loading the tiny diffusion");
        (mv, defaults.steps, defaults.guidance_scale)
    } else {
        // 50 as upstream on a GPU; 2 on the CPU, where one full-size stage-1 call takes ~15 s
        // on 2 cores and a 50-step loop would not end for half an hour.
        let steps = args.steps.unwrap_or(if device.is_cuda() { 50 } else { 2 });
        let mv = load::random_multiview(DiffusionConfig::crm(), device, steps, 5.5).expect("building");
        (mv, steps, 5.5)
    };
    sync(device);
    let load_s = load_start.elapsed().as_secs_f64();
    let cfg = mv.config().clone();
    let threads = tch::get_num_threads();
    println!(
        "diffusion_bench: size {} on {device:?} ({:?}, {threads} CPU threads), {steps} steps, guidance {guidance}; \
         RANDOM weights; built in {load_s:.2} s",
        args.size,
        precision_for(device),
    );
    let calls = args.calls.unwrap_or(if args.size == "crm" && !device.is_cuda() { 1 } else { 10 });
    let mut results = serde_json::Map::new();
    let mut views = None;
    for &stage in &args.stages {
        let stages = mv.stages();
        let (models, frames, ddim) = match stage {
            1 => (&stages.stage1.models, &cfg.stage1.frames, &stages.stage1.ddim),
            2 => (&stages.stage2.models, &cfg.stage2.frames, &stages.stage2.ddim),
            _ => panic!("--stages: 1 or 2"),
        };
        let batch = 2 * frames.num_frames();
        let timed = |ms: f64| {
            println!("stage {stage}: {ms:.1} ms per guided UNet call (batch {batch}, mean of {calls})");
        };
        let (ms, sampler_s) = time_unet(models, frames, ddim, &cfg, stage, args.warmup, calls, device, timed);
        println!(
            "stage {stage}: {sampler_s:.3} s for the DDIM loop alone ({steps} steps, CFG; no CLIP, no VAE)"
        );
        let mut entry = json!({ "unet_call_ms": ms, "batch": batch, "calls": calls, "sampler_s": sampler_s });
        if args.whole_stage {
            let params = img3d_pipeline::RunParams {
                seed: 1234,
                steps,
                guidance,
                ..img3d_pipeline::RunParams::defaults(&img3d_pipeline::BundleConfig::crm().defaults)
            };
            let cancelled = || false;
            let mut step_times = Vec::new();
            let mut progress = |_, _, _| step_times.push(Instant::now());
            let reference = reference();
            let start = Instant::now();
            let out = if stage == 1 {
                mv.stage1(&reference, &params, &mut StepCtl::new(&cancelled, &mut progress))
            } else {
                let strip = views
                    .clone()
                    .unwrap_or_else(|| RgbImage::from_pixel(1536, 256, image::Rgb([90, 120, 150])));
                mv.stage2(&reference, &strip, &params, &mut StepCtl::new(&cancelled, &mut progress))
            }
            .expect("stage run");
            let secs = start.elapsed().as_secs_f64();
            if stage == 1 {
                views = Some(out);
            }
            println!("stage {stage}: {secs:.3} s per stage ({steps} steps, CFG, CLIP + VAE included)");
            entry["stage_s"] = json!(secs);
            entry["steps"] = json!(steps);
        }
        results.insert(format!("stage{stage}"), entry);
    }
    let peak = peak_rss_mib();
    if let Some(mib) = peak {
        println!("peak resident memory (host): {mib:.0} MiB");
    }
    let report = json!({
        "impl": "img3d (tch)",
        "size": args.size,
        "device": format!("{device:?}"),
        "dtype": format!("{:?}", precision_for(device)),
        "cpu_threads": threads,
        "steps": steps,
        "guidance": guidance,
        "build_s": load_s,
        "peak_rss_mib": peak,
        "stages": results,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_string() + "\n").expect("writing --json");
    }
    println!("BENCH_JSON {report}");
}
