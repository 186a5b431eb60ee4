//! Parity of the AutoencoderKL port with upstream (fixtures `vae` weights, `vae_encode` and
//! `vae_decode`, written by `tools/parity/diffusion_encoders.py`: CRM's AutoencoderKL at ch 32
//! with random weights, run through `encode_first_stage` + `get_first_stage_encoding` and
//! `decode_first_stage`).

mod common;

use common::{assert_close, cpu_vs, load_io, load_weights};
use img3d_pipeline::diffusion::{AutoencoderKl, VaeConfig};

/// The fixture's tiny config: every code path of the SD 2.1 layout (channel changes, per-level
/// attention at 16, mid attention) at ch 32 (mirrors TINY_VAE in the script).
fn fixture_config() -> VaeConfig {
    VaeConfig {
        ch: 32,
        ch_mult: vec![2, 1, 1, 1],
        num_res_blocks: 1,
        attn_resolutions: vec![16],
        resolution: 64,
        ..VaeConfig::crm()
    }
}

fn load() -> AutoencoderKl {
    let mut vs = cpu_vs();
    let vae = AutoencoderKl::new(&vs.root(), &fixture_config());
    load_weights(&mut vs, "vae");
    vae
}

/// Encoding gives upstream's posterior, and sampling it with upstream's noise gives its scaled
/// latent (get_first_stage_encoding samples; it does not take the mean).
#[test]
fn encode_matches_upstream() {
    let _guard = tch::no_grad_guard();
    let (vae, io) = (load(), load_io("vae_encode"));
    let posterior = vae.encode(&io["crop"]);
    assert_close("mean", &posterior.mean, &io["mean"], 1e-4);
    assert_close("logvar", &posterior.logvar, &io["logvar"], 1e-4);
    let latent = posterior.sample_with(&io["noise"]) * vae.config().scale_factor;
    assert_close("latent", &latent, &io["latent"], 1e-4);
}

/// Decoding a scaled latent gives upstream's decode_first_stage output.
#[test]
fn decode_matches_upstream() {
    let _guard = tch::no_grad_guard();
    let (vae, io) = (load(), load_io("vae_decode"));
    let decoded = vae.decode_latent(&io["latent"]);
    assert_close("decoded", &decoded, &io["decoded"], 1e-4);
}

/// encode_latent draws its noise from the CPU generator: the same seed gives the same latent.
#[test]
fn encode_latent_is_seeded() {
    let _guard = tch::no_grad_guard();
    let (vae, io) = (load(), load_io("vae_encode"));
    tch::manual_seed(5);
    let a = vae.encode_latent(&io["crop"]);
    tch::manual_seed(5);
    let b = vae.encode_latent(&io["crop"]);
    assert_close("same seed", &a, &b, 0.0);
    assert_eq!(a.size(), [1, 4, 8, 8]);
}

/// The full SD 2.1 config declares exactly upstream's AutoencoderKL tensors (names and shapes
/// from the yaml's vae_config, fixture `diffusion_shapes.json`), so the real weights load strictly.
#[test]
fn full_size_matches_upstream_autoencoder() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::data_path("diffusion_shapes.json")).unwrap())
            .unwrap();
    let expected = &json["vae"];
    let vs = cpu_vs();
    let vae = AutoencoderKl::new(&vs.root(), &VaeConfig::crm());
    let ours: std::collections::BTreeMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    let theirs: std::collections::BTreeMap<String, Vec<i64>> =
        serde_json::from_value(expected["shapes"].clone()).unwrap();
    assert_eq!(ours, theirs);
    let params: i64 = ours.values().map(|s| s.iter().product::<i64>()).sum();
    assert_eq!(params, expected["params"].as_i64().unwrap());
    assert_eq!(vae.config().downscale(), 8);
}
