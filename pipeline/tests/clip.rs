//! Parity of the CLIP visual tower with upstream (fixture `clip_visual`, written by
//! `tools/parity/diffusion_encoders.py`: open_clip 2.7.0's VisionTransformer in ViT-H-14's layout
//! at width 64 with random weights, run through CRM's FrozenOpenCLIPEmbedder.forward_image).

mod common;

use common::{assert_close, cpu_vs, load_io, load_weights};
use img3d_pipeline::diffusion::{ClipVision, ClipVisionConfig};

/// The fixture's tiny config (mirrors TINY_CLIP in the script).
fn fixture_config() -> ClipVisionConfig {
    ClipVisionConfig { width: 64, layers: 3, heads: 4, ..ClipVisionConfig::crm() }
}

/// The penultimate hidden states (all 257 tokens) match upstream's image-prompt embedding.
#[test]
fn tokens_match_upstream() {
    let _guard = tch::no_grad_guard();
    let mut vs = cpu_vs();
    let clip = ClipVision::new(&vs.root(), &fixture_config());
    load_weights(&mut vs, "clip_visual");
    let io = load_io("clip_visual");
    let tokens = clip.forward(&io["clip_input"]);
    assert_eq!(tokens.size(), [1, 257, 64]);
    assert_close("tokens", &tokens, &io["tokens"], 1e-4);
}

/// The full ViT-H/14 config declares exactly the tensors (names and shapes) of open_clip's
/// ViT-H-14 visual tower that run, so the real weights load strictly; the rest are the keys
/// `unused_keys` names (fixture `diffusion_shapes.json`, built on the meta device upstream).
#[test]
fn full_size_matches_open_clip_vit_h14() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::data_path("diffusion_shapes.json")).unwrap())
            .unwrap();
    let expected = &json["clip_visual"];
    // fp16 variables: the full tower is 611M parameters.
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    vs.set_kind(tch::Kind::Half);
    let cfg = ClipVisionConfig::crm();
    let _clip = ClipVision::new(&vs.root(), &cfg);
    let ours: std::collections::BTreeMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    let theirs: std::collections::BTreeMap<String, Vec<i64>> =
        serde_json::from_value(expected["shapes"].clone()).unwrap();
    assert_eq!(ours, theirs);
    let params: i64 = ours.values().map(|s| s.iter().product::<i64>()).sum();
    assert_eq!(params, expected["params"].as_i64().unwrap());
    let mut unused = img3d_pipeline::diffusion::clip::unused_keys(&cfg);
    unused.sort();
    assert_eq!(unused, serde_json::from_value::<Vec<String>>(expected["unused"].clone()).unwrap());
    assert_eq!(cfg.tokens(), 257);
}
