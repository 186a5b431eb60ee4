//! The multi-view transformer of the UNet: self-attention across all frames, text
//! cross-attention plus a separate attention over the image-prompt tokens, GEGLU feed-forward.
//!
//! Port of `MemoryEfficientCrossAttention`, `FeedForward`/`GEGLU`, `BasicTransformerBlock3D` and
//! `SpatialTransformer3D` (`imagedream/ldm/modules/attention.py`, thu-ml/CRM at 4964e36) in the
//! configuration the CRM UNets use (linear projections in and out, self-attention enabled).
//! Upstream runs attention through xformers; here it goes through libtorch's
//! `scaled_dot_product_attention`, the same `softmax(q k^T / sqrt(d)) v` reaching the fused
//! flash / memory-efficient kernels on CUDA, so the score matrix of the cross-frame attention
//! (7168 x 7168 per head at full size) is never materialised there.

use tch::{nn, nn::Module, Tensor};

use super::resblock::GroupNorm32;

/// `softmax(q k^T / sqrt(d)) v` over `[B, L, heads * d]` projections, returning `[B, Lq,
/// heads * d]`. Heads are split as upstream (`[B, L, heads, d]`).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64) -> Tensor {
    let (b, lq, inner) = q.size3().expect("attention expects [B, L, C]");
    let dim_head = inner / heads;
    let split = |t: &Tensor| t.view([b, -1, heads, dim_head]).transpose(1, 2);
    let out = Tensor::scaled_dot_product_attention(
        &split(q),
        &split(k),
        &split(v),
        None::<Tensor>,
        0.0,
        false,
        None,
        false,
    );
    out.transpose(1, 2).reshape([b, lq, inner])
}

/// Multi-head attention; with `with_ip`, the last `ip_dim` context tokens are attended
/// separately with their own key/value projections (`to_k_ip`, `to_v_ip`) and the result
/// added with weight `ip_weight` (the IP-Adapter decoupled cross-attention).
pub struct CrossAttention {
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    ip: Option<IpProjection>,
    heads: i64,
}

struct IpProjection {
    to_k_ip: nn::Linear,
    to_v_ip: nn::Linear,
    ip_dim: i64,
    ip_weight: f64,
}

/// The image-prompt part of a cross-attention: how many trailing context tokens are image
/// tokens, and the weight of their attention.
#[derive(Debug, Clone, Copy)]
pub struct IpTokens {
    /// Number of image-prompt tokens at the end of the context (16 in CRM).
    pub ip_dim: i64,
    /// Weight of the image-token attention (1.0 in CRM).
    pub ip_weight: f64,
}

impl CrossAttention {
    /// Attention of `query_dim` features over a context of `context_dim` features (itself
    /// when `context_dim` is `None`), `heads` x `dim_head`. Keys: `to_q`, `to_k`, `to_v`,
    /// `to_out.0`, and with `ip` `to_k_ip`, `to_v_ip`.
    pub fn new(
        vs: &nn::Path<'_>,
        query_dim: i64,
        context_dim: Option<i64>,
        heads: i64,
        dim_head: i64,
        ip: Option<IpTokens>,
    ) -> Self {
        let inner = heads * dim_head;
        let context_dim = context_dim.unwrap_or(query_dim);
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        let ip = ip.map(|ip| IpProjection {
            to_k_ip: nn::linear(vs / "to_k_ip", context_dim, inner, no_bias),
            to_v_ip: nn::linear(vs / "to_v_ip", context_dim, inner, no_bias),
            ip_dim: ip.ip_dim,
            ip_weight: ip.ip_weight,
        });
        CrossAttention {
            to_q: nn::linear(vs / "to_q", query_dim, inner, no_bias),
            to_k: nn::linear(vs / "to_k", context_dim, inner, no_bias),
            to_v: nn::linear(vs / "to_v", context_dim, inner, no_bias),
            to_out: nn::linear(vs / "to_out" / "0", inner, query_dim, Default::default()),
            ip,
            heads,
        }
    }

    /// `xs`: `[B, L, query_dim]`; `context`: `[B, T, context_dim]` or `None` for
    /// self-attention.
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Tensor {
        let q = self.to_q.forward(xs);
        let (context, ip_out) = match (context, &self.ip) {
            (Some(ctx), Some(ip)) => {
                // Context = [text tokens, image tokens]: the image tokens get their own
                // attention, added to the text attention.
                let tokens = ctx.size()[1];
                let text = ctx.narrow(1, 0, tokens - ip.ip_dim);
                let image = ctx.narrow(1, tokens - ip.ip_dim, ip.ip_dim);
                let k_ip = ip.to_k_ip.forward(&image);
                let v_ip = ip.to_v_ip.forward(&image);
                (text, Some(attention(&q, &k_ip, &v_ip, self.heads) * ip.ip_weight))
            }
            (Some(ctx), None) => (ctx.shallow_clone(), None),
            (None, _) => (xs.shallow_clone(), None),
        };
        let out = attention(&q, &self.to_k.forward(&context), &self.to_v.forward(&context), self.heads);
        let out = match ip_out {
            Some(ip_out) => out + ip_out,
            None => out,
        };
        self.to_out.forward(&out)
    }
}

/// Gated-GELU feed-forward: `Linear(dim, 2 * 4 dim)`, `x * gelu(gate)`, `Linear(4 dim, dim)`
/// (keys `net.0.proj`, `net.2`).
pub struct FeedForward {
    proj: nn::Linear,
    out: nn::Linear,
}

impl FeedForward {
    /// GEGLU feed-forward with hidden width `4 * dim`.
    pub fn new(vs: &nn::Path<'_>, dim: i64) -> Self {
        let inner = dim * 4;
        FeedForward {
            proj: nn::linear(vs / "net" / "0" / "proj", dim, inner * 2, Default::default()),
            out: nn::linear(vs / "net" / "2", inner, dim, Default::default()),
        }
    }

    /// Applies the feed-forward to `[.., dim]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let h = self.proj.forward(xs).chunk(2, -1);
        self.out.forward(&(&h[0] * h[1].gelu("none")))
    }
}

/// Transformer block whose self-attention runs across all frames of an object at once.
pub struct BasicTransformerBlock3D {
    attn1: CrossAttention,
    attn2: CrossAttention,
    ff: FeedForward,
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
    norm3: nn::LayerNorm,
}

impl BasicTransformerBlock3D {
    /// Block of width `dim` = `heads * dim_head`, cross-attending a `context_dim` context.
    pub fn new(
        vs: &nn::Path<'_>,
        dim: i64,
        heads: i64,
        dim_head: i64,
        context_dim: i64,
        ip: IpTokens,
    ) -> Self {
        let ln = |name: &str| nn::layer_norm(vs / name, vec![dim], Default::default());
        BasicTransformerBlock3D {
            attn1: CrossAttention::new(&(vs / "attn1"), dim, None, heads, dim_head, None),
            attn2: CrossAttention::new(&(vs / "attn2"), dim, Some(context_dim), heads, dim_head, Some(ip)),
            ff: FeedForward::new(&(vs / "ff"), dim),
            norm1: ln("norm1"),
            norm2: ln("norm2"),
            norm3: ln("norm3"),
        }
    }

    /// `xs`: `[(B F), L, dim]` (frames of one object consecutive); `context`: `[(B F), T, C]`.
    pub fn forward(&self, xs: &Tensor, context: &Tensor, num_frames: i64) -> Tensor {
        let (bf, l, c) = xs.size3().expect("transformer expects [B, L, C]");
        // 1. self-attention over the tokens of all frames of each object
        let xs = xs.reshape([bf / num_frames, num_frames * l, c]);
        let xs = self.attn1.forward(&self.norm1.forward(&xs), None) + &xs;
        let xs = xs.reshape([bf, l, c]);
        // 2. per-frame cross-attention to the text and image tokens
        let xs = self.attn2.forward(&self.norm2.forward(&xs), Some(context)) + xs;
        // 3. feed-forward
        self.ff.forward(&self.norm3.forward(&xs)) + xs
    }
}

/// Image-shaped wrapper of the transformer blocks: group norm, linear projection in, blocks,
/// linear projection out, residual.
pub struct SpatialTransformer3D {
    norm: GroupNorm32,
    proj_in: nn::Linear,
    transformer_blocks: Vec<BasicTransformerBlock3D>,
    proj_out: nn::Linear,
}

impl SpatialTransformer3D {
    /// Transformer over `in_channels` feature maps, `heads * dim_head == in_channels`.
    pub fn new(
        vs: &nn::Path<'_>,
        in_channels: i64,
        heads: i64,
        dim_head: i64,
        depth: i64,
        context_dim: i64,
        ip: IpTokens,
    ) -> Self {
        let inner = heads * dim_head;
        let blocks = vs / "transformer_blocks";
        SpatialTransformer3D {
            // upstream `Normalize`: a plain GroupNorm(32, eps=1e-6), run in fp32 by autocast.
            norm: GroupNorm32::new(&(vs / "norm"), 32, in_channels, 1e-6),
            proj_in: nn::linear(vs / "proj_in", in_channels, inner, Default::default()),
            transformer_blocks: (0..depth)
                .map(|d| {
                    BasicTransformerBlock3D::new(&(&blocks / d), inner, heads, dim_head, context_dim, ip)
                })
                .collect(),
            // upstream builds it as Linear(in_channels, inner_dim): equal widths in every config.
            proj_out: nn::linear(vs / "proj_out", in_channels, inner, Default::default()),
        }
    }

    /// `xs`: `[(B F), C, H, W]`; `context`: `[(B F), T, context_dim]`.
    pub fn forward(&self, xs: &Tensor, context: &Tensor, num_frames: i64) -> Tensor {
        let (bf, c, h, w) = xs.size4().expect("transformer expects NCHW");
        let tokens = self.norm.forward(xs).reshape([bf, c, h * w]).transpose(1, 2);
        let mut tokens = self.proj_in.forward(&tokens);
        for block in &self.transformer_blocks {
            tokens = block.forward(&tokens, context, num_frames);
        }
        let out = self.proj_out.forward(&tokens).transpose(1, 2).reshape([bf, c, h, w]);
        out + xs
    }
}
