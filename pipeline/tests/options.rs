//! Per-job parameters on the tiny pipeline (RANDOM weights: every image is noise; these tests
//! check that each parameter reaches its stage, not what the model makes of it): the defaults
//! are the run without parameters, byte for byte; seed, guidance and steps change the
//! diffusion; the background rule changes preprocessing; texture size, face budget and the GLB
//! change the export.

mod common;

use img3d_pipeline::bundle::Bundle;
use img3d_pipeline::preprocess::Preprocessor;
use img3d_pipeline::stages::Stage;
use img3d_pipeline::{tiny, Background, DeviceSpec, Event, Part, Pipeline, PipelineError, RunParams};

/// An opaque RGB PNG (U-2-Net runs on it under the default rule).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 3) as u8, if (x / 8 + y / 8) % 2 == 0 { 40 } else { 220 }])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// The parts of a run, in order, and its progress reports.
type Outcome = (Vec<(Part, Vec<u8>)>, Vec<(Stage, u32, u32)>);

/// The parts and progress of one run; with `until`, the run stops after that part.
fn run(pipeline: &Pipeline, params: Option<&RunParams>, until: Option<Part>) -> Outcome {
    let (mut parts, mut progress) = (Vec::new(), Vec::new());
    let mut on_event = |event| {
        match event {
            Event::Part { part, bytes } => {
                parts.push((part, bytes));
                if Some(part) == until {
                    return Err(PipelineError::Cancelled);
                }
            }
            Event::Progress { stage, step, total } => progress.push((stage, step, total)),
        }
        Ok(())
    };
    let image = png(48, 40);
    let result = match params {
        None => pipeline.run(&image, &|| false, &mut on_event),
        Some(params) => pipeline.run_with(&image, params, &|| false, &mut on_event),
    };
    match result {
        Ok(()) => {}
        Err(PipelineError::Cancelled) if until.is_some() => {}
        Err(e) => panic!("run failed: {e}"),
    }
    (parts, progress)
}

fn load(cache: &tempfile::TempDir) -> Pipeline {
    Pipeline::load(&tiny::ensure(cache.path()).unwrap(), DeviceSpec::Cpu).unwrap()
}

/// The default parameters are the bundle's; seed, guidance and steps each change stage 1's
/// views, and steps sets how many steps stage 1 reports.
#[test]
fn diffusion_parameters_reach_the_sampler() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = load(&cache);
    let defaults = pipeline.default_params();
    assert_eq!(defaults, RunParams::defaults(&pipeline.config().defaults));
    let stage1 = |params: &RunParams| run(&pipeline, Some(params), Some(Part::PixelImages));
    let (base, progress) = run(&pipeline, None, Some(Part::PixelImages));
    let steps_of = |progress: &[(Stage, u32, u32)]| {
        progress.iter().find(|(s, _, _)| *s == Stage::Stage1).map(|&(_, _, total)| total)
    };
    assert_eq!(steps_of(&progress), Some(defaults.steps));

    let seeded = stage1(&RunParams { seed: defaults.seed + 1, ..defaults }).0;
    assert!(seeded != base, "the seed does not reach the noise");
    let guided = stage1(&RunParams { guidance: 2.0, ..defaults }).0;
    assert!(guided != base, "the guidance does not reach the sampler");
    let (stepped, progress) = stage1(&RunParams { steps: 2, ..defaults });
    assert!(stepped != base, "the steps do not reach the sampler");
    assert_eq!(steps_of(&progress), Some(2));
}

/// SHA-256 of the three parts of the tiny pipeline on [`png`]`(48, 40)` before per-job
/// parameters existed: recorded with main at e89cdba (`Pipeline::run`, CPU, x86_64), so the
/// defaults are shown to reproduce that output byte for byte. The `output3d.zip` hash was
/// re-recorded when the denser atlas (bitmap packing in four quarter turns, stretch to fill)
/// changed every UV and texel on purpose; the views are still those of e89cdba. (libtorch's CPU kernels are
/// deterministic on one CPU kind; a machine with other vector units could differ in the last
/// bits, and this test would say so.)
const BEFORE_OPTIONS: [&str; 3] = [
    "c6f0aa232595eb743805fd9e43b21dd4bbae875b8b6dc6412cab2f47a28b995a",
    "031b4ff459b93682db353ff0f63aa2887da39d0a3b9ffeceb6ed763b832f89c8",
    "2103bbb5782487ac4067054faa1bddeb3aab8a90550c7f35079d90afe9521924",
];

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The run without parameters gives today's bytes; texture size, face budget and the GLB reach
/// the export: the zip's texture is 512x512, its OBJ has at most the budget's faces (fewer than
/// the default run's), and the GLB comes after the zip and passes the glTF validator.
#[test]
fn export_parameters_reach_the_export() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = load(&cache);
    let (default_parts, _) = run(&pipeline, None, None);
    let names: Vec<Part> = default_parts.iter().map(|(p, _)| *p).collect();
    assert_eq!(names, [Part::PixelImages, Part::XyzImages, Part::Output3d]);
    let hashes: Vec<String> = default_parts.iter().map(|(_, bytes)| sha256(bytes)).collect();
    assert_eq!(hashes, BEFORE_OPTIONS, "the defaults no longer reproduce the recorded output");
    let full = common::check_output_zip(&default_parts[2].1).faces;
    let budget = (full as u32 * 2 / 3).max(500);
    assert!((budget as usize) < full, "the tiny mesh has only {full} faces: nothing to decimate");

    let params = RunParams { texture: 512, faces: Some(budget), glb: true, ..pipeline.default_params() };
    let (parts, _) = run(&pipeline, Some(&params), None);
    let names: Vec<Part> = parts.iter().map(|(p, _)| *p).collect();
    assert_eq!(names, [Part::PixelImages, Part::XyzImages, Part::Output3d, Part::OutputGlb]);
    assert!(parts[0].1 == default_parts[0].1, "export options changed the diffusion");
    let counts = common::check_output_zip_sized(&parts[2].1, 512);
    assert!(counts.faces <= budget as usize, "{} faces over a budget of {budget}", counts.faces);
    common::validate_glb(&parts[3].1);
}

/// Out-of-range parameters fail the run as `InvalidParams` before any work.
#[test]
fn out_of_range_parameters_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = load(&cache);
    let defaults = pipeline.default_params();
    for bad in [
        RunParams { steps: 0, ..defaults },
        RunParams { texture: 300, ..defaults },
        RunParams { faces: Some(10), ..defaults },
        RunParams { guidance: f64::NAN, ..defaults },
    ] {
        let mut events = 0;
        let err = pipeline.run_with(&png(8, 8), &bad, &|| false, &mut |_| {
            events += 1;
            Ok(())
        });
        assert!(matches!(err, Err(PipelineError::InvalidParams(_))), "{bad:?}: {err:?}");
        assert_eq!(events, 0);
    }
}

/// `auto` is upstream's rule (U-2-Net on an opaque image, the alpha of a transparent one);
/// `on` runs U-2-Net on a transparent image too; `off` never runs it.
#[test]
fn background_rule_reaches_preprocessing() {
    let cache = tempfile::tempdir().unwrap();
    let bundle = Bundle::open(&tiny::ensure(cache.path()).unwrap()).unwrap();
    let config = bundle.config();
    let pre =
        Preprocessor::load(bundle.components(), &config.preprocess, &config.u2net, tch::Device::Cpu).unwrap();
    let opaque = png(48, 40);
    let with = |bytes: &[u8], rule| pre.run_with(bytes, rule).unwrap();
    assert_eq!(with(&opaque, Background::Auto), pre.run(&opaque).unwrap());
    assert_eq!(with(&opaque, Background::Auto), with(&opaque, Background::On));
    assert_ne!(with(&opaque, Background::Auto), with(&opaque, Background::Off));

    let rgba = image::RgbaImage::from_fn(48, 40, |x, y| image::Rgba([(x * 5) as u8, (y * 3) as u8, 90, 200]));
    let mut transparent = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut transparent), image::ImageFormat::Png).unwrap();
    assert_eq!(with(&transparent, Background::Auto), with(&transparent, Background::Off));
    assert_ne!(with(&transparent, Background::Auto), with(&transparent, Background::On));
}
