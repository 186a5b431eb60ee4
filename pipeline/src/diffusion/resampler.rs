//! The image-prompt Resampler (IP-Adapter-Plus / Perceiver resampler): a fixed set of learned
//! query tokens attends to the CLIP image tokens and becomes the extra context tokens of the
//! UNet's cross-attention.
//!
//! Port of `Resampler`, `PerceiverAttention` and `FeedForward` of
//! `imagedream/ldm/modules/diffusionmodules/adaptors.py` (thu-ml/CRM at 4964e36; itself from
//! open_flamingo). Upstream scales q and k by `d^-1/4` each before `q k^T`; attention here
//! goes through `scaled_dot_product_attention` with the equal `1/sqrt(d)` score scale.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

use super::attention::attention;

/// Hyper-parameters of the Resampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResamplerConfig {
    /// Width of the query tokens and of the attention layers' input (`dim`).
    pub dim: i64,
    /// Number of attention + feed-forward layers.
    pub depth: i64,
    /// Width of one attention head.
    pub dim_head: i64,
    /// Number of attention heads.
    pub heads: i64,
    /// Number of output tokens (`num_queries`; upstream `ip_dim`).
    pub num_queries: i64,
    /// Width of the image tokens it reads (the CLIP visual width).
    pub embedding_dim: i64,
    /// Width of the output tokens (the UNet's context width).
    pub output_dim: i64,
    /// Feed-forward hidden width multiplier.
    pub ff_mult: i64,
}

impl ResamplerConfig {
    /// The CRM Resampler (`MultiViewUNetModel` with `ip_mode: local_resample`, `context_dim`
    /// 1024, `ip_dim` 16): depth 4, 12 heads of 64, ViT-H/14 tokens (1280 wide) in.
    pub fn crm() -> Self {
        ResamplerConfig {
            dim: 1024,
            depth: 4,
            dim_head: 64,
            heads: 12,
            num_queries: 16,
            embedding_dim: 1280,
            output_dim: 1024,
            ff_mult: 4,
        }
    }
}

/// Attention of the latent queries over `[image tokens, latent queries]`.
pub struct PerceiverAttention {
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
    to_q: nn::Linear,
    to_kv: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
}

impl PerceiverAttention {
    /// Keys: `norm1`, `norm2`, `to_q`, `to_kv`, `to_out` (linears without bias).
    pub fn new(vs: &nn::Path<'_>, dim: i64, dim_head: i64, heads: i64) -> Self {
        let inner = dim_head * heads;
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        PerceiverAttention {
            norm1: nn::layer_norm(vs / "norm1", vec![dim], Default::default()),
            norm2: nn::layer_norm(vs / "norm2", vec![dim], Default::default()),
            to_q: nn::linear(vs / "to_q", dim, inner, no_bias),
            to_kv: nn::linear(vs / "to_kv", dim, inner * 2, no_bias),
            to_out: nn::linear(vs / "to_out", inner, dim, no_bias),
            heads,
        }
    }

    /// `xs`: image features `[B, N, dim]`; `latents`: `[B, Q, dim]`.
    pub fn forward(&self, xs: &Tensor, latents: &Tensor) -> Tensor {
        let xs = self.norm1.forward(xs);
        let latents = self.norm2.forward(latents);
        let q = self.to_q.forward(&latents);
        let kv = self.to_kv.forward(&Tensor::cat(&[&xs, &latents], -2)).chunk(2, -1);
        self.to_out.forward(&attention(&q, &kv[0], &kv[1], self.heads))
    }
}

/// `LayerNorm -> Linear -> GELU -> Linear` (keys `0`, `1`, `3`; linears without bias).
struct FeedForward {
    norm: nn::LayerNorm,
    linear_1: nn::Linear,
    linear_2: nn::Linear,
}

impl FeedForward {
    fn new(vs: &nn::Path<'_>, dim: i64, mult: i64) -> Self {
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        FeedForward {
            norm: nn::layer_norm(vs / "0", vec![dim], Default::default()),
            linear_1: nn::linear(vs / "1", dim, dim * mult, no_bias),
            linear_2: nn::linear(vs / "3", dim * mult, dim, no_bias),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        self.linear_2.forward(&self.linear_1.forward(&self.norm.forward(xs)).gelu("none"))
    }
}

/// The Resampler: learned queries refined by `depth` Perceiver layers over the projected
/// image tokens, then projected and normalised.
pub struct Resampler {
    latents: Tensor,
    proj_in: nn::Linear,
    proj_out: nn::Linear,
    norm_out: nn::LayerNorm,
    layers: Vec<(PerceiverAttention, FeedForward)>,
}

impl Resampler {
    /// Keys: `latents`, `proj_in`, `proj_out`, `norm_out`, `layers.{i}.0` (attention),
    /// `layers.{i}.1` (feed-forward).
    pub fn new(vs: &nn::Path<'_>, cfg: &ResamplerConfig) -> Self {
        let layers = vs / "layers";
        Resampler {
            latents: vs.var("latents", &[1, cfg.num_queries, cfg.dim], nn::Init::Const(0.0)),
            proj_in: nn::linear(vs / "proj_in", cfg.embedding_dim, cfg.dim, Default::default()),
            proj_out: nn::linear(vs / "proj_out", cfg.dim, cfg.output_dim, Default::default()),
            norm_out: nn::layer_norm(vs / "norm_out", vec![cfg.output_dim], Default::default()),
            layers: (0..cfg.depth)
                .map(|i| {
                    let layer = &layers / i;
                    (
                        PerceiverAttention::new(&(&layer / 0), cfg.dim, cfg.dim_head, cfg.heads),
                        FeedForward::new(&(&layer / 1), cfg.dim, cfg.ff_mult),
                    )
                })
                .collect(),
        }
    }

    /// `xs`: image tokens `[B, N, embedding_dim]` -> `[B, num_queries, output_dim]`. The input
    /// is cast to the weights' dtype.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = self.proj_in.forward(&xs.to_kind(self.latents.kind()));
        let mut latents = self.latents.expand([xs.size()[0], -1, -1], false);
        for (attn, ff) in &self.layers {
            latents = attn.forward(&xs, &latents) + latents;
            latents = ff.forward(&latents) + latents;
        }
        self.norm_out.forward(&self.proj_out.forward(&latents))
    }
}
