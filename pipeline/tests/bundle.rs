//! Model bundles: the tiny bundle is generated once, deterministically, says it is random, and
//! loads strictly; broken bundles, and bundles of an older layout, fail with errors that name
//! the problem (and how to re-make an old one).

use std::path::Path;

use img3d_pipeline::bundle::{self, Bundle};
use img3d_pipeline::config::{BundleConfig, Stages, BUNDLE_FORMAT};
use img3d_pipeline::{tiny, DeviceSpec, Event, Part, Pipeline, PipelineError};

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

/// The pipeline on the tiny bundle runs every stage: preprocessing, then the three parts;
/// `describe` says the weights are random.
#[test]
fn pipeline_runs_every_stage() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tiny::ensure(cache.path()).unwrap();
    let pipeline = Pipeline::load(&dir, DeviceSpec::Cpu).unwrap();
    let line = pipeline.describe();
    assert!(line.contains("RANDOM"), "{line}");
    let preprocessed = pipeline.preprocess(&png(40, 30)).unwrap();
    assert_eq!(preprocessed.dimensions(), (40, 40));
    let mut parts = Vec::new();
    pipeline
        .run(&png(40, 30), &|| false, &mut |event| {
            if let Event::Part { part, .. } = event {
                parts.push(part);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(parts, [Part::PixelImages, Part::XyzImages, Part::Output3d]);
}

/// `config.json` keeps the layout bundles were always written in: `name` is the preset's
/// lowercase name and `stages` holds `diffusion` and `reconstruction` (so bundles converted
/// before the config was typed still load, and still count as current).
#[test]
fn config_json_layout_is_stable() {
    let json = serde_json::to_value(BundleConfig::tiny()).unwrap();
    assert_eq!(json["name"], "tiny");
    assert_eq!(serde_json::to_value(BundleConfig::crm()).unwrap()["name"], "crm");
    let keys: Vec<&str> = json["stages"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["diffusion", "reconstruction"]);
    assert_eq!(Stages::NAMES, ["diffusion", "reconstruction"]);
    let back: BundleConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, BundleConfig::tiny());
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

/// Writes `edit` of the tiny bundle's `config.json` (as JSON) into a copy of the bundle.
fn with_config(good: &Path, dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    copy_dir(good, dir);
    let path = dir.join(bundle::CONFIG_FILE);
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// A `config.json` of the layout older builds could write (a stage missing, no `stages` at
/// all, a stage this build does not know) fails to open naming what is wrong and how to
/// re-make the bundle; an unknown key, an unknown preset or a stage whose parts do not fit
/// fail naming the key.
#[test]
fn old_and_bad_configs_are_named() {
    let cache = tempfile::tempdir().unwrap();
    let good = tiny::ensure(cache.path()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = work.path().join(name);
        with_config(&good, &dir, edit);
        Bundle::open(&dir).expect_err("open must fail").to_string()
    };
    let old = |msg: &str, what: &str| {
        assert!(msg.contains(what), "{msg}");
        assert!(msg.contains("made by another build"), "{msg}");
        assert!(msg.contains("img3d-worker prepare-model") && msg.contains("tools/convert.py"), "{msg}");
    };

    let msg = err("no-recon", &|c| {
        c["stages"].as_object_mut().unwrap().remove("reconstruction");
    });
    old(&msg, "config.json has no `stages.reconstruction`");
    let msg = err("no-stages-map", &|c| {
        c["stages"] = serde_json::json!({});
    });
    old(&msg, "config.json has no `stages.diffusion` or `stages.reconstruction`");
    let msg = err("no-stages", &|c| {
        c.as_object_mut().unwrap().remove("stages");
    });
    old(&msg, "config.json has no `stages`");
    let msg = err("extra-stage", &|c| {
        c["stages"]["texture"] = serde_json::json!({});
    });
    old(&msg, "names stage(s) this build does not know: `stages.texture`");

    let msg = err("unknown-key", &|c| {
        c["stages"]["reconstruction"]["grid_size"] = 80.into();
    });
    assert!(msg.contains("invalid config") && msg.contains("grid_size"), "{msg}");
    let msg = err("unknown-preset", &|c| {
        c["name"] = "u2net-only".into();
    });
    assert!(msg.contains("invalid config") && msg.contains("u2net-only"), "{msg}");
    let msg = err("unfit", &|c| {
        c["stages"]["diffusion"]["stage2"]["unet"]["in_channels"] = 4.into();
    });
    assert!(msg.contains("stages.diffusion config: stage2: UNet channels 4 -> 4, expected 8 -> 4"), "{msg}");
    let msg = err("unfit-recon", &|c| {
        c["stages"]["reconstruction"]["grid_res"] = 1.into();
    });
    assert!(msg.contains("stages.reconstruction config: grid_res 1 is outside 2..=256"), "{msg}");
    // A newer format is named as such, whatever else changed.
    let msg = err("newer", &|c| {
        c["format"] = (BUNDLE_FORMAT + 1).into();
        c.as_object_mut().unwrap().remove("stages");
    });
    assert!(msg.contains(&format!("bundle format {}", BUNDLE_FORMAT + 1)), "{msg}");
}
