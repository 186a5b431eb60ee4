//! Soak run of the whole pipeline: many jobs in one process, good ones mixed with bad input
//! (garbage bytes, a truncated PNG) and cancelled ones, printing the resident memory after each
//! so a leak shows as a rising line. Uses the tiny bundle (random weights: outputs are noise;
//! the code path is the real one) or any bundle directory. Prints numbers; asserts nothing.
//!
//! ```sh
//! . ./env.sh
//! cargo run --config 'profile.dev.package.img3d-pipeline.opt-level=3' \
//!     -p img3d-pipeline --example soak -- [JOBS] [--bundle DIR] [--device cpu|cuda]
//! ```

use std::io::Cursor;
use std::time::Instant;

use image::RgbImage;
use img3d_pipeline::{tiny, DeviceSpec, Event, Pipeline};

/// Resident set size in MiB (Linux `/proc/self/statm`).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn png(seed: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(320, 240, |x, y| {
        let (dx, dy) = (x as i32 - 160, y as i32 - 120);
        let inside = dx * dx + dy * dy < 90 * 90;
        let v = ((x * 3 + y * 5 + seed * 17) % 64) as u8;
        if inside {
            image::Rgb([200 - v, 60 + v, 40])
        } else {
            image::Rgb([240, 240, 240 - v])
        }
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("PNG encodes");
    out.into_inner()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let jobs: usize =
        args.first().filter(|a| !a.starts_with("--")).map(|a| a.parse()).transpose()?.unwrap_or(12);
    let device: DeviceSpec =
        arg("--device").unwrap_or_else(|| "cpu".into()).parse().map_err(|e| format!("--device: {e}"))?;
    let cache = tempfile_dir()?;
    let dir = match arg("--bundle") {
        Some(dir) => dir.into(),
        None => tiny::ensure(&cache)?,
    };
    let before_load = rss_mib();
    let pipeline = Pipeline::load(&dir, device)?;
    println!("{}", pipeline.describe());
    println!("RSS before load {before_load:.0} MiB, after load {:.0} MiB", rss_mib());

    let good = png(1);
    let truncated = good[..good.len() / 2].to_vec();
    println!("{:>4}  {:<10} {:>9}  {:>9}  outcome", "job", "input", "ms", "RSS MiB");
    for job in 0..jobs {
        let (kind, bytes, cancel_after_parts): (&str, Vec<u8>, Option<usize>) = match job % 4 {
            1 => ("garbage", b"definitely not an image".to_vec(), None),
            2 => ("truncated", truncated.clone(), None),
            3 => ("cancelled", png(job as u32), Some(1)),
            _ => ("good", png(job as u32), None),
        };
        let parts = std::cell::Cell::new(0usize);
        let cancelled = || cancel_after_parts.is_some_and(|n| parts.get() >= n);
        let start = Instant::now();
        let mut on_event = |event: Event| {
            if let Event::Part { .. } = event {
                parts.set(parts.get() + 1);
            }
            Ok(())
        };
        let outcome = match pipeline.run(&bytes, &cancelled, &mut on_event) {
            Ok(()) => format!("completed, {} parts", parts.get()),
            Err(e) => format!("{} parts, then: {e}", parts.get()),
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!("{job:>4}  {kind:<10} {ms:>9.0}  {:>9.0}  {outcome}", rss_mib());
    }
    std::fs::remove_dir_all(&cache).ok();
    Ok(())
}

/// A fresh directory for the tiny bundle, removed at the end.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("img3d-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
