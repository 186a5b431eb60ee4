//! The image-prompt encoder: OpenCLIP's ViT-H/14 visual tower (Radford et al. 2021; Cherti et
//! al. 2023, LAION-2B weights) up to its penultimate block.
//!
//! Port of `FrozenOpenCLIPEmbedder.encode_image_with_transformer` (ip_mode "local_resample",
//! `imagedream/ldm/modules/encoders/modules.py`, CRM 4964e36) over open_clip 2.7.0's
//! `VisionTransformer` and `ResidualAttentionBlock` (`open_clip/transformer.py`):
//! `conv1` patches -> class token + `positional_embedding` -> `ln_pre` -> the transformer
//! blocks -> the hidden state after the penultimate block, all tokens (257 = 16x16 patches + the
//! class token at 224). `ln_post` and `proj` never touch these tokens and the last block's output
//! is discarded, so this module holds `layers - 1` blocks and neither of the others; a converter
//! drops `transformer.resblocks.{layers-1}.*`, `ln_post.*` and `proj` (see [`unused_keys`]).

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

use super::precision::autocast_for;

/// Where the tower sits in CRM's diffusion checkpoints (`clip_model` is the
/// FrozenOpenCLIPEmbedder, `.model` its open_clip CLIP); open_clip's own ViT-H-14 weights
/// (`laion2b_s32b_b79k`) hold the same keys under `visual.`.
pub const CHECKPOINT_PREFIX: &str = "clip_model.model.visual.";

/// Visual-tower hyper-parameters (open_clip `model_configs/ViT-H-14.json`, `vision_cfg`) and the
/// preprocessing constants of its eval transform (`open_clip/transform.py`, `constants.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipVisionConfig {
    /// Input size the tower is trained at (`image_size`).
    pub image_size: i64,
    /// Patch size of `conv1` (`patch_size`).
    pub patch_size: i64,
    /// Token width (`width`).
    pub width: i64,
    /// Transformer blocks in the checkpoint (`layers`); the output is taken after block
    /// `layers - 2` ("penultimate").
    pub layers: usize,
    /// Attention heads (`width / head_width`: 1280 / 80 = 16).
    pub heads: i64,
    /// MLP hidden width over token width (`mlp_ratio`).
    pub mlp_ratio: f64,
    /// Normalisation mean per RGB channel (OpenAI's).
    pub mean: [f64; 3],
    /// Normalisation std per RGB channel (OpenAI's).
    pub std: [f64; 3],
}

impl ClipVisionConfig {
    /// ViT-H/14 at 224 (CRM's `FrozenOpenCLIPEmbedder("ViT-H-14", layer="penultimate")`).
    pub fn crm() -> Self {
        ClipVisionConfig {
            image_size: 224,
            patch_size: 14,
            width: 1280,
            layers: 32,
            heads: 16,
            mlp_ratio: 4.0,
            mean: [0.48145466, 0.4578275, 0.40821073],
            std: [0.26862954, 0.26130258, 0.27577711],
        }
    }

    /// The same layout (patch 14 at 224 -> 257 tokens) at width 32 with two blocks in use.
    pub fn tiny() -> Self {
        ClipVisionConfig { width: 32, layers: 3, heads: 2, ..Self::crm() }
    }

    /// Tokens out: patches plus the class token (257 for ViT-H/14 at 224).
    pub fn tokens(&self) -> i64 {
        let grid = self.image_size / self.patch_size;
        grid * grid + 1
    }
}

/// Checkpoint keys (relative to the tower) that this module leaves out: the last block, `ln_post`
/// and `proj`, which upstream computes or holds but never uses for the image prompt.
pub fn unused_keys(cfg: &ClipVisionConfig) -> Vec<String> {
    let last = cfg.layers - 1;
    let block = ["ln_1", "ln_2"]
        .iter()
        .flat_map(|n| [format!("{n}.weight"), format!("{n}.bias")])
        .chain(["attn.in_proj_weight", "attn.in_proj_bias"].map(String::from))
        .chain(
            ["attn.out_proj", "mlp.c_fc", "mlp.c_proj"]
                .iter()
                .flat_map(|n| [format!("{n}.weight"), format!("{n}.bias")]),
        )
        .map(|k| format!("transformer.resblocks.{last}.{k}"));
    block.chain(["ln_post.weight", "ln_post.bias", "proj"].map(String::from)).collect()
}

/// open_clip's `LayerNorm`: eps 1e-5, output cast back to the input's dtype (under autocast the
/// norm itself runs in fp32 and the residual stream stays fp16, as upstream's).
#[derive(Debug)]
struct LayerNorm(nn::LayerNorm);

impl LayerNorm {
    fn new(vs: nn::Path<'_>, width: i64) -> Self {
        LayerNorm(nn::layer_norm(vs, vec![width], Default::default()))
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.0).to_kind(xs.kind())
    }
}

/// `nn.MultiheadAttention` as open_clip uses it: self-attention, packed q/k/v projection.
#[derive(Debug)]
struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl MultiheadAttention {
    fn new(vs: nn::Path<'_>, width: i64, heads: i64) -> Self {
        MultiheadAttention {
            in_proj_weight: vs.var("in_proj_weight", &[3 * width, width], nn::init::DEFAULT_KAIMING_UNIFORM),
            in_proj_bias: vs.var("in_proj_bias", &[3 * width], nn::Init::Const(0.0)),
            out_proj: nn::linear(&vs / "out_proj", width, width, Default::default()),
            heads,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, l, w) = xs.size3().unwrap();
        let head_dim = w / self.heads;
        // [b, l, 3w] -> 3 x [b, heads, l, head_dim]; scale 1/sqrt(head_dim), no mask.
        let qkv = xs.linear(&self.in_proj_weight, Some(&self.in_proj_bias));
        let qkv = qkv.reshape([b, l, 3, self.heads, head_dim]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let out = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
        out.transpose(1, 2).reshape([b, l, w]).apply(&self.out_proj)
    }
}

/// `ResidualAttentionBlock` (pre-norm, no layer scale in ViT-H-14).
#[derive(Debug)]
struct ResidualAttentionBlock {
    ln_1: LayerNorm,
    attn: MultiheadAttention,
    ln_2: LayerNorm,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
}

impl ResidualAttentionBlock {
    fn new(vs: nn::Path<'_>, cfg: &ClipVisionConfig) -> Self {
        let mlp_width = (cfg.width as f64 * cfg.mlp_ratio) as i64;
        ResidualAttentionBlock {
            ln_1: LayerNorm::new(&vs / "ln_1", cfg.width),
            attn: MultiheadAttention::new(&vs / "attn", cfg.width, cfg.heads),
            ln_2: LayerNorm::new(&vs / "ln_2", cfg.width),
            c_fc: nn::linear(&vs / "mlp" / "c_fc", cfg.width, mlp_width, Default::default()),
            c_proj: nn::linear(&vs / "mlp" / "c_proj", mlp_width, cfg.width, Default::default()),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs + self.attn.forward(&self.ln_1.forward(xs));
        let mlp = self.ln_2.forward(&xs).apply(&self.c_fc).gelu("none").apply(&self.c_proj);
        xs + mlp
    }
}

/// The visual tower, up to and including the penultimate block.
#[derive(Debug)]
pub struct ClipVision {
    conv1: nn::Conv2D,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    resblocks: Vec<ResidualAttentionBlock>,
    cfg: ClipVisionConfig,
}

impl ClipVision {
    /// Declares the tower's variables under `vs` (checkpoint keys without the prefix).
    ///
    /// # Panics
    /// If `cfg.layers < 2` (there is no penultimate block).
    pub fn new(vs: &nn::Path<'_>, cfg: &ClipVisionConfig) -> Self {
        assert!(cfg.layers >= 2, "the penultimate block needs at least two layers");
        let conv_cfg = nn::ConvConfig { stride: cfg.patch_size, bias: false, ..Default::default() };
        let blocks = vs / "transformer" / "resblocks";
        ClipVision {
            conv1: nn::conv2d(vs / "conv1", 3, cfg.width, cfg.patch_size, conv_cfg),
            class_embedding: vs.var(
                "class_embedding",
                &[cfg.width],
                nn::Init::Randn { mean: 0.0, stdev: 0.02 },
            ),
            positional_embedding: vs.var(
                "positional_embedding",
                &[cfg.tokens(), cfg.width],
                nn::Init::Randn { mean: 0.0, stdev: 0.02 },
            ),
            ln_pre: LayerNorm::new(vs / "ln_pre", cfg.width),
            resblocks: (0..cfg.layers - 1).map(|i| ResidualAttentionBlock::new(&blocks / i, cfg)).collect(),
            cfg: cfg.clone(),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.cfg
    }

    /// Normalised images `[b, 3, image_size, image_size]` (open_clip's eval preprocessing:
    /// bicubic resize, centre crop, OpenAI mean/std) -> penultimate hidden states
    /// `[b, tokens, width]`.
    pub fn forward(&self, pixels: &Tensor) -> Tensor {
        autocast_for(&self.conv1.ws, || {
            // 1. patches: [b, width, grid, grid] -> [b, grid^2, width]
            let xs = pixels.apply(&self.conv1);
            let (b, w, _, _) = xs.size4().unwrap();
            let xs = xs.flatten(2, 3).transpose(1, 2);
            // 2. class token first, then positions (in the activations' dtype, as upstream)
            let cls = self.class_embedding.to_kind(xs.kind()).view([1, 1, w]).expand([b, 1, w], false);
            let pos = self.positional_embedding.to_kind(xs.kind());
            let xs = Tensor::cat(&[cls, xs], 1) + pos;
            // 3. ln_pre, then every block but the last
            let mut xs = self.ln_pre.forward(&xs);
            for block in &self.resblocks {
                xs = block.forward(&xs);
            }
            xs
        })
    }

    /// The dtype of the tower's weights.
    pub fn kind(&self) -> Kind {
        self.conv1.ws.kind()
    }
}
