//! Parity of the multi-view UNet (both stages) with upstream CRM `MultiViewUNetModel` /
//! `MultiViewUNetModelStage2` at tiny width (fixtures from `tools/parity/diffusion_unet.py`).

mod common;

use std::collections::{BTreeSet, HashMap};

use img3d_pipeline::diffusion::resampler::ResamplerConfig;
use img3d_pipeline::diffusion::unet::{Conditioning, MultiViewUNet, UNetConfig};
use tch::Tensor;

/// The tiny configuration of the fixtures (`TINY_UNET` in the script).
fn tiny(in_channels: i64) -> UNetConfig {
    UNetConfig {
        in_channels,
        out_channels: 4,
        model_channels: 32,
        attention_resolutions: vec![1],
        num_res_blocks: 1,
        channel_mult: vec![1, 2],
        num_head_channels: 16,
        transformer_depth: 1,
        context_dim: 32,
        camera_dim: 16,
        ip_weight: 1.0,
        resampler: ResamplerConfig {
            dim: 32,
            depth: 2,
            dim_head: 16,
            heads: 2,
            num_queries: 16,
            embedding_dim: 48,
            output_dim: 32,
            ff_mult: 4,
        },
    }
}

fn load(name: &str, in_channels: i64) -> (tch::nn::VarStore, MultiViewUNet) {
    let mut vs = common::cpu_vs();
    let unet = MultiViewUNet::new(&vs.root(), &tiny(in_channels));
    common::load_weights(&mut vs, name);
    (vs, unet)
}

fn conditioning(unet: &MultiViewUNet, io: &HashMap<String, Tensor>, num_frames: i64) -> Conditioning {
    Conditioning {
        context: unet.image_context(&io["context"], &io["ip"]),
        camera: io["camera"].shallow_clone(),
        num_frames,
        ip_img: io.get("ip_img").map(Tensor::shallow_clone),
        pixel_images: io.get("pixel_images").map(Tensor::shallow_clone),
    }
}

/// Stage-1 UNet: CFG batch of 2 x 7 frames with cameras, image-prompt tokens and the reference
/// latent written over frame 7 matches upstream; the caller's input is left untouched.
#[test]
fn stage1_unet_matches_upstream() {
    let _guard = tch::no_grad_guard();
    let (_vs, unet) = load("diffusion_unet_stage1", 4);
    let io = common::load_io("diffusion_unet_stage1");
    let cond = conditioning(&unet, &io, 7);
    let ip_tokens = cond.context.narrow(1, 6, 16);
    common::assert_close("ip_emb", &ip_tokens, &io["ip_emb"], 1e-4);
    let x = io["x"].copy();
    let eps = unet.forward(&x, &io["t"], &cond);
    common::assert_close("eps", &eps, &io["eps"], 1e-4);
    assert!(x.equal(&io["x"]), "forward must not write into its input");
}

/// Stage-2 UNet (8 input channels: noisy latent + view latents, no frame replacement)
/// matches upstream.
#[test]
fn stage2_unet_matches_upstream() {
    let _guard = tch::no_grad_guard();
    let (_vs, unet) = load("diffusion_unet_stage2", 8);
    let io = common::load_io("diffusion_unet_stage2");
    let cond = conditioning(&unet, &io, 6);
    common::assert_close("eps", &unet.forward(&io["x"], &io["t"], &cond), &io["eps"], 1e-4);
}

/// The var names of a UNet with CRM's full structure (4 levels, 2 residual blocks,
/// attention at 4/2/1) equal upstream's state-dict keys of both full-size CRM UNets, and at
/// narrow width every shape equals upstream's: strict loading of the official checkpoints
/// depends on this layout.
#[test]
fn layout_matches_upstream_state_dict() {
    let layout = common::load_io("diffusion_unet_layout");
    let expected = |prefix: &str| -> HashMap<String, Vec<i64>> {
        layout
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(prefix)?.strip_prefix('/')?;
                Some((key.to_owned(), Vec::<i64>::try_from(v).unwrap()))
            })
            .collect()
    };
    let narrow = |in_channels: i64| {
        let tiny = tiny(in_channels);
        UNetConfig {
            attention_resolutions: vec![4, 2, 1],
            num_res_blocks: 2,
            channel_mult: vec![1, 2, 4, 4],
            resampler: ResamplerConfig { depth: 4, ..tiny.resampler.clone() },
            ..tiny
        }
    };
    let built = |cfg: &UNetConfig| -> HashMap<String, Vec<i64>> {
        let vs = common::cpu_vs();
        let _unet = MultiViewUNet::new(&vs.root(), cfg);
        vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect()
    };
    let sorted_keys = |m: &HashMap<String, Vec<i64>>| m.keys().cloned().collect::<BTreeSet<String>>();
    let stage1 = built(&narrow(4));
    let same_names = |ours: &HashMap<String, Vec<i64>>, prefix: &str| {
        let (ours, theirs) = (sorted_keys(ours), sorted_keys(&expected(prefix)));
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{prefix}: ours only {only_ours:?}, upstream only {only_theirs:?}"
        );
    };
    same_names(&stage1, "narrow1");
    let narrow1 = expected("narrow1");
    let wrong: Vec<_> = stage1.iter().filter(|(k, v)| narrow1[*k] != **v).collect();
    assert!(wrong.is_empty(), "shapes differing from upstream: {wrong:?}");
    same_names(&stage1, "full1");
    let stage2 = built(&narrow(8));
    same_names(&stage2, "full2");
    assert_eq!(expected("full2")["input_blocks.0.0.weight"], [320, 8, 3, 3]);
    assert_eq!(stage2["input_blocks.0.0.weight"], [32, 8, 3, 3]);
}
