//! The multi-view diffusion as a pipeline stage, on the tiny bundle (RANDOM weights: the
//! images are noise; these tests check shapes, streaming, determinism and cancellation, not
//! content): `Pipeline::run` streams `pixel_images.png` and `xyz_images.png`, 1536x256 RGB,
//! byte-identical for the same image and seed.

use std::path::PathBuf;

use img3d_pipeline::diffusion::{load, DiffusionConfig, DiffusionProblem, InvalidDiffusionConfig};
use img3d_pipeline::stages::Stage;
use img3d_pipeline::{tiny, DeviceSpec, Event, Part, Pipeline, PipelineError};

/// A test input: an opaque RGB PNG (U-2-Net runs on it).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 3) as u8, if (x / 8 + y / 8) % 2 == 0 { 40 } else { 220 }])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn tiny_bundle(cache: &tempfile::TempDir) -> PathBuf {
    tiny::ensure(cache.path()).unwrap()
}

/// What one run produced: the parts in order, the progress events, and how it ended.
struct Run {
    parts: Vec<(Part, Vec<u8>)>,
    progress: Vec<(Stage, u32, u32)>,
    result: Result<(), PipelineError>,
}

/// When to cancel a run.
#[derive(Clone, Copy)]
enum CancelAt {
    Never,
    /// Once `stage` reported this many steps.
    Step(Stage, u32),
    /// Once this part was published.
    Part(Part),
}

fn run(pipeline: &Pipeline, image: &[u8], cancel_at: CancelAt) -> Run {
    let progress = std::cell::RefCell::new(Vec::new());
    let parts = std::cell::RefCell::new(Vec::new());
    let cancelled = || match cancel_at {
        CancelAt::Never => false,
        CancelAt::Step(stage, step) => progress.borrow().iter().any(|&(s, n, _)| s == stage && n >= step),
        CancelAt::Part(part) => parts.borrow().iter().any(|(p, _)| *p == part),
    };
    let result = pipeline.run(image, &cancelled, &mut |event| {
        match event {
            Event::Part { part, bytes } => parts.borrow_mut().push((part, bytes)),
            Event::Progress { stage, step, total } => progress.borrow_mut().push((stage, step, total)),
        }
        Ok(())
    });
    Run { parts: parts.into_inner(), progress: progress.into_inner(), result }
}

/// The presets validate (CRM's values as the official configs give them; tiny: same frames,
/// tiny widths), and a config whose parts do not fit is refused naming every problem.
#[test]
fn presets_are_valid_and_misfits_are_named() {
    let crm = DiffusionConfig::crm();
    crm.validate().unwrap();
    assert_eq!(crm.latent_shape(), [4, 32, 32]);
    assert_eq!(
        (crm.stage1.unet.model_channels, crm.stage1.unet.in_channels, crm.stage2.unet.in_channels),
        (320, 4, 8)
    );
    assert_eq!(crm.stage1.frames.camera_views, [1, 2, 3, 4, 5, 0, 0]);
    assert_eq!(crm.stage2.frames.camera_views, [1, 2, 3, 4, 5, 0]);
    let tiny = DiffusionConfig::tiny();
    tiny.validate().unwrap();
    assert_eq!(tiny.latent_shape(), crm.latent_shape());
    assert_eq!(tiny.stage1.frames, crm.stage1.frames);
    let mut broken = DiffusionConfig::tiny();
    broken.stage2.unet.in_channels = 4;
    broken.stage1.unet.camera_dim = 12;
    let err = broken.validate().unwrap_err();
    assert_eq!(
        err,
        InvalidDiffusionConfig(vec![
            DiffusionProblem::CameraDim { stage: "stage1", camera_dim: 12 },
            DiffusionProblem::UNetChannels { stage: "stage2", found: (4, 4), expected: (8, 4) },
        ])
    );
    assert_eq!(
        err.to_string(),
        "stage1: camera_dim 12 (camera vectors are 4x4 matrices, 16); \
         stage2: UNet channels 4 -> 4, expected 8 -> 4 (VAE embed_dim 4)"
    );
}

/// With the tiny bundle, a run streams pixel_images.png then xyz_images.png (1536x256 RGB PNGs),
/// then output3d.zip, with progress for every DDIM step of both stages, at the bundle's step
/// count; the same image and seed give the same bytes; a different seed gives different ones.
#[test]
fn tiny_pipeline_streams_both_images_deterministically() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tiny_bundle(&cache);
    let pipeline = Pipeline::load(&dir, DeviceSpec::Cpu).unwrap();
    let steps = pipeline.config().defaults.steps;
    let image = png(96, 80);
    let first = run(&pipeline, &image, CancelAt::Never);
    first.result.as_ref().unwrap();
    let names: Vec<Part> = first.parts.iter().map(|(p, _)| *p).collect();
    assert_eq!(names, [Part::PixelImages, Part::XyzImages, Part::Output3d]);
    for (part, bytes) in &first.parts[..2] {
        let decoded = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (1536, 256), "{part:?}");
        assert_eq!(decoded.color(), image::ColorType::Rgb8, "{part:?}");
        let rgb = decoded.to_rgb8();
        let distinct: std::collections::BTreeSet<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 1, "{part:?} is a constant image");
    }
    for stage in [Stage::Stage1, Stage::Stage2] {
        let seen: Vec<u32> = first.progress.iter().filter(|p| p.0 == stage).map(|p| p.1).collect();
        assert_eq!(seen, (1..=steps).collect::<Vec<_>>(), "{stage:?} progress");
        assert!(first.progress.iter().filter(|p| p.0 == stage).all(|p| p.2 == steps));
    }

    let second = run(&pipeline, &image, CancelAt::Never);
    assert!(first.parts == second.parts, "same image and seed, different bytes");

    // Another seed: the same bundle with its config's seed changed.
    let other = cache.path().join("other-seed");
    std::fs::create_dir_all(&other).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), other.join(entry.file_name())).unwrap();
    }
    let mut config = pipeline.config().clone();
    config.defaults.seed += 1;
    img3d_pipeline::bundle::write_config(&other, &config).unwrap();
    let reseeded =
        run(&Pipeline::load(&other, DeviceSpec::Cpu).unwrap(), &image, CancelAt::Part(Part::PixelImages));
    assert!(matches!(reseeded.result, Err(PipelineError::Cancelled)), "{:?}", reseeded.result);
    assert_eq!(reseeded.parts.len(), 1, "cancelled after pixel_images.png");
    assert!(reseeded.parts[0].1 != first.parts[0].1, "another seed, same pixel_images.png");
}

/// Cancellation is checked between DDIM steps: cancelled after stage 1's second step, the run
/// stops with `Cancelled` before the third, and publishes nothing.
#[test]
fn tiny_pipeline_cancels_between_steps() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&tiny_bundle(&cache), DeviceSpec::Cpu).unwrap();
    assert!(pipeline.config().defaults.steps > 2, "the tiny bundle samples more than two steps");
    let cancelled = run(&pipeline, &png(64, 64), CancelAt::Step(Stage::Stage1, 2));
    assert!(matches!(cancelled.result, Err(PipelineError::Cancelled)), "{:?}", cancelled.result);
    assert!(cancelled.parts.is_empty());
    let last = cancelled.progress.iter().filter(|p| p.0 == Stage::Stage1).map(|p| p.1).max();
    assert_eq!(last, Some(2));
}

/// Loading is strict: a stage file missing a tensor fails with an error naming it.
#[test]
fn load_rejects_incomplete_weights() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tiny_bundle(&cache);
    let broken = cache.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    let path = img3d_pipeline::bundle::component_path(&broken, load::STAGE_COMPONENTS[1]);
    let mut tensors = tch::Tensor::read_safetensors(&path).unwrap();
    let dropped = tensors.iter().position(|(name, _)| name.starts_with(load::UNET_PREFIX)).unwrap();
    let (name, _) = tensors.remove(dropped);
    img3d_pipeline::bundle::save_tensors(&broken, load::STAGE_COMPONENTS[1], &tensors).unwrap();
    let err = Pipeline::load(&broken, DeviceSpec::Cpu).err().expect("a tensor is missing");
    assert!(err.to_string().contains(&name), "{err}");
}
