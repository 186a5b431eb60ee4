//! FlexiCubes benchmark: milliseconds for building CRM's 80^3 grid (`FlexiCubes::new`) and for
//! one extraction (`FlexiCubes::extract`) of a bumpy sphere with a random deformation and
//! random weights, as CRM's reconstruction produces them (deformation
//! `tanh(d) / 80 * 0.95 / 0.95 * 0.5`, weights `randn * 0.1`), with vertex and face counts.
//!
//! ```sh
//! . ./env.sh && cargo run --release -p img3d-pipeline --example flexicubes_bench -- [cpu|cuda] [RES] [RUNS]
//! ```
//!
//! Upstream reference (H200, thu-ml/CRM): grid decode + FlexiCubes 23 ms on the GPU.

use std::time::Instant;

use img3d_pipeline::recon::flexicubes::FlexiCubes;
use tch::{Device, Kind, Tensor};

fn ms(start: Instant, device: Device) -> f64 {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    start.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = match args.first().map(String::as_str) {
        None | Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda(0),
        Some(other) => panic!("device must be cpu or cuda, got {other}"),
    };
    let res: i64 = args.get(1).map_or(80, |s| s.parse().expect("RES: cubes per axis"));
    let runs: usize = args.get(2).map_or(5, |s| s.parse().expect("RUNS: a count"));
    let _guard = tch::no_grad_guard();
    tch::manual_seed(0);
    println!("device {device:?}, {res}^3 grid, {} intra-op threads", tch::get_num_threads());

    // The first build pays for libtorch's lazy initialisation; time the second.
    let _ = FlexiCubes::new(res, device);
    let start = Instant::now();
    let fc = FlexiCubes::new(res, device);
    let new_ms = ms(start, device);
    println!(
        "new({res}): {new_ms:.1} ms ({} vertices, {} cubes)",
        fc.verts().size()[0],
        fc.cubes().size()[0]
    );

    let verts = fc.verts();
    let opts = (Kind::Float, device);
    let x = verts + Tensor::randn(verts.size(), opts).tanh() / res as f64 * 0.95 / 0.95 * 0.5;
    let r = verts.square().sum_dim_intlist(-1, false, Kind::Float).sqrt();
    let bumps = (verts.select(1, 0) * 7.0).sin() * (verts.select(1, 1) * 5.0).cos() * 0.05;
    let sdf = r - 0.6 + bumps;
    let weight = Tensor::randn([fc.cubes().size()[0], 21], opts) * 0.1;

    let mut times = Vec::with_capacity(runs);
    let mut counts = (0, 0);
    for _ in 0..runs.max(1) + 1 {
        let start = Instant::now();
        let (v, f) = fc.extract(&x, &sdf, &weight);
        times.push(ms(start, device));
        counts = (v.size()[0], f.size()[0]);
    }
    let first = times.remove(0);
    times.sort_by(f64::total_cmp);
    println!(
        "extract: {:.1} ms median of {} (first {first:.1} ms), {} vertices, {} faces",
        times[times.len() / 2],
        times.len(),
        counts.0,
        counts.1
    );
}
