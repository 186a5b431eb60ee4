//! Model bundles: the tiny bundle is generated once, deterministically, says it is random, and
//! loads strictly; broken bundles fail with errors that name the problem; the pipeline names
//! the stages it lacks instead of faking parts.

use std::path::Path;

use img3d_pipeline::bundle::{self, Bundle};
use img3d_pipeline::config::{BundleConfig, BUNDLE_FORMAT};
use img3d_pipeline::{tiny, DeviceSpec, Event, Pipeline, PipelineError};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 100]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// The tiny bundle is generated on first use, reused afterwards, bit-identical across
/// generations (fixed seed), and its config says its weights are random.
#[test]
fn tiny_bundle_is_cached_and_deterministic() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dir = tiny::ensure(a.path()).unwrap();
    assert!(dir.starts_with(a.path().join("bundles")), "{}", dir.display());
    let stamp = std::fs::metadata(dir.join(bundle::CONFIG_FILE)).unwrap().modified().unwrap();
    assert_eq!(tiny::ensure(a.path()).unwrap(), dir);
    assert_eq!(
        std::fs::metadata(dir.join(bundle::CONFIG_FILE)).unwrap().modified().unwrap(),
        stamp,
        "regenerated"
    );
    let other = tiny::ensure(b.path()).unwrap();
    let u2 = |d: &Path| std::fs::read(bundle::component_path(d, bundle::U2NET)).unwrap();
    assert_eq!(u2(&dir), u2(&other), "same seed, same bytes");
    let opened = Bundle::open(&dir).unwrap();
    assert!(opened.config().random_weights);
    assert_eq!(opened.config(), &BundleConfig::tiny());
    assert!(opened.config().summary().contains("RANDOM"));
}

/// The pipeline on the tiny bundle preprocesses, then fails with `Unavailable` naming each
/// stage this build lacks, and publishes no part; `describe` says random weights and missing
/// stages.
#[test]
fn pipeline_names_missing_stages() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tiny::ensure(cache.path()).unwrap();
    let pipeline = Pipeline::load(&dir, DeviceSpec::Cpu).unwrap();
    let line = pipeline.describe();
    assert!(line.contains("RANDOM"), "{line}");
    let preprocessed = pipeline.preprocess(&png(40, 30)).unwrap();
    assert_eq!(preprocessed.dimensions(), (40, 40));
    let missing = img3d_pipeline::registry::missing_kinds();
    let mut parts = 0;
    let result = pipeline.run(&png(40, 30), &|| false, &mut |event| {
        if let Event::Part { .. } = event {
            parts += 1;
        }
        Ok(())
    });
    if missing.is_empty() {
        result.unwrap();
        assert_eq!(parts, 3);
    } else {
        let err = result.unwrap_err();
        assert!(matches!(err, PipelineError::Unavailable(_)), "{err}");
        for kind in &missing {
            assert!(err.to_string().contains(kind.describe()), "{err}");
            assert!(line.contains(kind.describe()), "{line}");
        }
    }
}

/// A cancelled job stops before any work; bad image bytes fail as `InvalidImage`.
#[test]
fn pipeline_cancel_and_bad_input() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&tiny::ensure(cache.path()).unwrap(), DeviceSpec::Cpu).unwrap();
    let err = pipeline.run(&png(8, 8), &|| true, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(err, PipelineError::Cancelled), "{err}");
    let err = pipeline.run(b"not an image", &|| false, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(err, PipelineError::InvalidImage(_)), "{err}");
}

/// Broken bundles: no config, a config of another format, a missing component, and a
/// component with a mis-shaped tensor each fail to load with an error naming the problem.
#[test]
fn broken_bundles_are_named() {
    let cache = tempfile::tempdir().unwrap();
    let good = tiny::ensure(cache.path()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = |dir: &Path| Pipeline::load(dir, DeviceSpec::Cpu).err().expect("load must fail").to_string();

    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(err(&empty).contains("config.json"), "{}", err(&empty));

    let old = work.path().join("old");
    copy_dir(&good, &old);
    let mut config = BundleConfig::tiny();
    config.format = BUNDLE_FORMAT + 1;
    bundle::write_config(&old, &config).unwrap();
    assert!(err(&old).contains("format"), "{}", err(&old));

    let missing = work.path().join("missing");
    copy_dir(&good, &missing);
    std::fs::remove_file(bundle::component_path(&missing, bundle::U2NET)).unwrap();
    assert!(err(&missing).contains("\"u2net\" is missing"), "{}", err(&missing));

    // A U-2-Net of other widths than config.json says: strict loading names the tensors.
    let shaped = work.path().join("shaped");
    copy_dir(&good, &shaped);
    let mut config = BundleConfig::tiny();
    config.u2net.encoder[0].out = 5;
    bundle::write_config(&shaped, &config).unwrap();
    let msg = err(&shaped);
    assert!(msg.contains("mis-shaped") && msg.contains("stage1.rebnconvin.conv_s1.weight"), "{msg}");
}
