//! The triplane UNet: diffusers' `UNet2DModel` in the configuration CRM's `UNetPP` builds
//! (`model/archs/unet.py`, thu-ml/CRM at 4964e36), with the learned plane concatenated to the
//! 12-channel triplane input.
//!
//! Port of `UNet2DModel`, `DownBlock2D`/`AttnDownBlock2D`, `UNetMidBlock2D`,
//! `UpBlock2D`/`AttnUpBlock2D`, `ResnetBlock2D`, `Downsample2D`/`Upsample2D` and the
//! group-normed spatial `Attention` of diffusers 0.24 in the configuration used: positional
//! time embedding (`flip_sin_to_cos`, shift 0), SiLU, default time-embedding norm, convolutional
//! resampling with padding 1, dropout 0, output scale 1. Key names are the checkpoint's
//! (`unet2.unet.down_blocks.3.attentions.0.to_q.weight`, ...). Upstream runs attention through
//! xformers; here through libtorch's `scaled_dot_product_attention` (same math, fused kernels on
//! CUDA).

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

use crate::diffusion::attention::attention;
use crate::diffusion::embeddings::timestep_embedding;
use crate::diffusion::resblock::{conv3x3, GroupNorm32, Upsample};

/// Hyper-parameters of the triplane UNet (`UNetPP.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriplaneUNetConfig {
    /// Input channels: 12 triplane channels + the learned plane (`DecoderSpecs.c_dim`, 32).
    pub in_channels: i64,
    /// Output channels: the triplane features the heads read (`UNetPP` fixes 32, and the heads'
    /// input width `mlp_chnl_s * 32` with it).
    pub out_channels: i64,
    /// Channels per level (64, 128, 128, 256, 256, 512, 512).
    pub block_out_channels: Vec<i64>,
    /// Per level: attention after each resnet of the down block (`AttnDownBlock2D`).
    pub down_attention: Vec<bool>,
    /// Per level, from the bottom: attention in the up block (`AttnUpBlock2D`).
    pub up_attention: Vec<bool>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: i64,
    /// Channels per attention head (diffusers' `attention_head_dim`, 8).
    pub attention_head_dim: i64,
    /// Group-norm groups (32).
    pub norm_num_groups: i64,
    /// Group-norm epsilon (1e-5).
    pub norm_eps: f64,
}

impl TriplaneUNetConfig {
    /// CRM's configuration (`UNetPP(in_channels=32)`).
    pub fn crm() -> Self {
        TriplaneUNetConfig {
            in_channels: 32,
            out_channels: 32,
            block_out_channels: vec![64, 128, 128, 256, 256, 512, 512],
            down_attention: vec![false, false, false, true, true, true, false],
            up_attention: vec![false, true, true, true, false, false, false],
            layers_per_block: 2,
            attention_head_dim: 8,
            norm_num_groups: 32,
            norm_eps: 1e-5,
        }
    }

    /// Every block kind of [`crm`](Self::crm) at a few channels.
    pub fn tiny() -> Self {
        TriplaneUNetConfig {
            in_channels: 16,
            out_channels: 16,
            block_out_channels: vec![8, 8, 8, 16, 16, 16, 16],
            norm_num_groups: 4,
            ..Self::crm()
        }
    }

    /// Checks what the layers assume.
    pub fn validate(&self) -> Result<(), TriplaneUNetConfigError> {
        let levels = self.block_out_channels.len();
        if levels == 0 || self.down_attention.len() != levels || self.up_attention.len() != levels {
            return Err(TriplaneUNetConfigError::Levels {
                levels,
                down: self.down_attention.len(),
                up: self.up_attention.len(),
            });
        }
        if self.in_channels <= 12 {
            return Err(TriplaneUNetConfigError::InChannels(self.in_channels));
        }
        if self.out_channels < 1 {
            return Err(TriplaneUNetConfigError::OutChannels);
        }
        for &channels in &self.block_out_channels {
            if channels % self.norm_num_groups != 0 || channels % self.attention_head_dim != 0 {
                return Err(TriplaneUNetConfigError::Indivisible {
                    channels,
                    groups: self.norm_num_groups,
                    head: self.attention_head_dim,
                });
            }
        }
        Ok(())
    }

    /// The input's height and width must be multiples of this (one halving per level but
    /// the last).
    pub fn size_multiple(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// What [`TriplaneUNetConfig::validate`] finds wrong (the first problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriplaneUNetConfigError {
    /// The per-level lists differ in length, or are empty.
    #[error(
        "block_out_channels, down_attention and up_attention need one entry per level \
         ({levels}, {down}, {up})"
    )]
    Levels {
        /// Entries of `block_out_channels`.
        levels: usize,
        /// Entries of `down_attention`.
        down: usize,
        /// Entries of `up_attention`.
        up: usize,
    },
    /// The input must hold the 12 triplane channels and the learned plane.
    #[error("in_channels {0} must exceed the 12 triplane channels")]
    InChannels(i64),
    /// No output channels.
    #[error("out_channels must be positive")]
    OutChannels,
    /// A level's width does not split into the norm groups and attention heads.
    #[error("{channels} channels are not divisible by {groups} groups and heads of {head}")]
    Indivisible {
        /// The level's channels.
        channels: i64,
        /// `norm_num_groups`.
        groups: i64,
        /// `attention_head_dim`.
        head: i64,
    },
}

/// `ResnetBlock2D`: `GN -> SiLU -> conv`, plus the projected time embedding, `GN -> SiLU ->
/// conv`, added to the input (through a 1x1 `conv_shortcut` when the channels change).
struct ResnetBlock {
    norm1: GroupNorm32,
    conv1: nn::Conv2D,
    time_emb_proj: nn::Linear,
    norm2: GroupNorm32,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
}

impl ResnetBlock {
    fn new(vs: &nn::Path<'_>, cfg: &TriplaneUNetConfig, in_ch: i64, out_ch: i64, temb: i64) -> Self {
        let (groups, eps) = (cfg.norm_num_groups, cfg.norm_eps);
        ResnetBlock {
            norm1: GroupNorm32::new(&(vs / "norm1"), groups, in_ch, eps),
            conv1: conv3x3(vs / "conv1", in_ch, out_ch, 1),
            time_emb_proj: nn::linear(vs / "time_emb_proj", temb, out_ch, Default::default()),
            norm2: GroupNorm32::new(&(vs / "norm2"), groups, out_ch, eps),
            conv2: conv3x3(vs / "conv2", out_ch, out_ch, 1),
            conv_shortcut: (in_ch != out_ch)
                .then(|| nn::conv2d(vs / "conv_shortcut", in_ch, out_ch, 1, Default::default())),
        }
    }

    fn forward(&self, xs: &Tensor, temb: &Tensor) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(xs).silu());
        let h = h + self.time_emb_proj.forward(&temb.silu()).unsqueeze(-1).unsqueeze(-1);
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        match &self.conv_shortcut {
            Some(conv) => conv.forward(xs) + h,
            None => xs + h,
        }
    }
}

/// The spatial self-attention block (`Attention(..., norm_num_groups, residual_connection=True,
/// _from_deprecated_attn_block=True)`): group norm, q/k/v projections over the `H*W` tokens,
/// multi-head attention, output projection, plus the input.
struct SpatialAttention {
    group_norm: GroupNorm32,
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
}

impl SpatialAttention {
    fn new(vs: &nn::Path<'_>, cfg: &TriplaneUNetConfig, channels: i64) -> Self {
        let linear = |name: &str| nn::linear(vs / name, channels, channels, Default::default());
        SpatialAttention {
            group_norm: GroupNorm32::new(&(vs / "group_norm"), cfg.norm_num_groups, channels, cfg.norm_eps),
            to_q: linear("to_q"),
            to_k: linear("to_k"),
            to_v: linear("to_v"),
            to_out: nn::linear(vs / "to_out" / "0", channels, channels, Default::default()),
            heads: channels / cfg.attention_head_dim,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, c, h, w) = xs.size4().expect("attention expects NCHW");
        let tokens = self.group_norm.forward(xs).view([b, c, h * w]).transpose(1, 2);
        let out = attention(
            &self.to_q.forward(&tokens),
            &self.to_k.forward(&tokens),
            &self.to_v.forward(&tokens),
            self.heads,
        );
        let out = self.to_out.forward(&out).transpose(1, 2).reshape([b, c, h, w]);
        out + xs
    }
}

/// One resnet of a block and the attention after it, if the block has attention.
struct Layer {
    resnet: ResnetBlock,
    attention: Option<SpatialAttention>,
}

impl Layer {
    fn forward(&self, xs: &Tensor, temb: &Tensor) -> Tensor {
        let h = self.resnet.forward(xs, temb);
        match &self.attention {
            Some(attn) => attn.forward(&h),
            None => h,
        }
    }
}

/// `DownBlock2D` / `AttnDownBlock2D`: resnets (and attentions), then a stride-2 convolution
/// (`downsamplers.0.conv`) except on the last level.
struct DownBlock {
    layers: Vec<Layer>,
    downsample: Option<nn::Conv2D>,
}

/// `UpBlock2D` / `AttnUpBlock2D`: each resnet takes the running features concatenated with one
/// skip connection; then nearest 2x upsampling and a convolution (`upsamplers.0.conv`) except on
/// the last level.
struct UpBlock {
    layers: Vec<Layer>,
    upsample: Option<Upsample>,
}

/// The triplane UNet with its learned plane (`UNetPP`): `[B, 12, H, W]` triplane input and a
/// timestep to `[B, out_channels, H, W]` triplane features.
pub struct TriplaneUNet {
    learned_plane: Tensor,
    time_dim: i64,
    time_linear_1: nn::Linear,
    time_linear_2: nn::Linear,
    conv_in: nn::Conv2D,
    down: Vec<DownBlock>,
    mid: (ResnetBlock, SpatialAttention, ResnetBlock),
    up: Vec<UpBlock>,
    norm_out: GroupNorm32,
    conv_out: nn::Conv2D,
}

impl TriplaneUNet {
    /// Declares the network under `vs` (upstream's `unet2`: `vs/learned_plane`, `vs/unet/...`)
    /// for triplane inputs of `height` x `width` (the learned plane's size: 256 x 768).
    pub fn new(vs: &nn::Path<'_>, cfg: &TriplaneUNetConfig, height: i64, width: i64) -> Self {
        let unet = vs / "unet";
        let boc = &cfg.block_out_channels;
        let levels = boc.len();
        let time_dim = boc[0];
        let temb = time_dim * 4;
        let with_attention =
            |vs: &nn::Path<'_>, on: bool, ch: i64| on.then(|| SpatialAttention::new(vs, cfg, ch));

        let mut down = Vec::with_capacity(levels);
        let mut out_ch = boc[0];
        for (i, &attn) in cfg.down_attention.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = boc[i];
            let block = &unet / "down_blocks" / i;
            let layers = (0..cfg.layers_per_block)
                .map(|j| Layer {
                    resnet: ResnetBlock::new(
                        &(&block / "resnets" / j),
                        cfg,
                        if j == 0 { in_ch } else { out_ch },
                        out_ch,
                        temb,
                    ),
                    attention: with_attention(&(&block / "attentions" / j), attn, out_ch),
                })
                .collect();
            let downsample =
                (i + 1 < levels).then(|| conv3x3(&block / "downsamplers" / 0 / "conv", out_ch, out_ch, 2));
            down.push(DownBlock { layers, downsample });
        }

        let last = boc[levels - 1];
        let mid_vs = &unet / "mid_block";
        let mid = (
            ResnetBlock::new(&(&mid_vs / "resnets" / 0), cfg, last, last, temb),
            SpatialAttention::new(&(&mid_vs / "attentions" / 0), cfg, last),
            ResnetBlock::new(&(&mid_vs / "resnets" / 1), cfg, last, last, temb),
        );

        let reversed: Vec<i64> = boc.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(levels);
        let mut out_ch = reversed[0];
        for (i, &attn) in cfg.up_attention.iter().enumerate() {
            let prev_out = out_ch;
            out_ch = reversed[i];
            let in_ch = reversed[(i + 1).min(levels - 1)];
            let block = &unet / "up_blocks" / i;
            let n = cfg.layers_per_block + 1;
            let layers = (0..n)
                .map(|j| {
                    let skip = if j == n - 1 { in_ch } else { out_ch };
                    let res_in = if j == 0 { prev_out } else { out_ch };
                    Layer {
                        resnet: ResnetBlock::new(&(&block / "resnets" / j), cfg, res_in + skip, out_ch, temb),
                        attention: with_attention(&(&block / "attentions" / j), attn, out_ch),
                    }
                })
                .collect();
            let upsample =
                (i + 1 < levels).then(|| Upsample::new(&(&block / "upsamplers" / 0), out_ch, out_ch));
            up.push(UpBlock { layers, upsample });
        }

        let linear = |name: &str, i: i64, o: i64| {
            nn::linear(&unet / "time_embedding" / name, i, o, Default::default())
        };
        TriplaneUNet {
            learned_plane: vs.zeros("learned_plane", &[1, cfg.in_channels - 12, height, width]),
            time_dim,
            time_linear_1: linear("linear_1", time_dim, temb),
            time_linear_2: linear("linear_2", temb, temb),
            conv_in: conv3x3(&unet / "conv_in", cfg.in_channels, boc[0], 1),
            down,
            mid,
            up,
            norm_out: GroupNorm32::new(&(&unet / "conv_norm_out"), cfg.norm_num_groups, boc[0], cfg.norm_eps),
            conv_out: conv3x3(&unet / "conv_out", boc[0], cfg.out_channels, 1),
        }
    }

    /// `UNetPP.forward(x, t)`: `x` is `[B, 12, H, W]`, `timestep` the noising step (upstream
    /// passes 20). Returns `[B, out_channels, H, W]`.
    pub fn forward(&self, xs: &Tensor, timestep: i64) -> Tensor {
        let b = xs.size()[0];
        let plane = self.learned_plane.expand([b, -1, -1, -1], false).to_kind(xs.kind());
        let sample = Tensor::cat(&[xs, &plane], 1);

        let t = Tensor::full([b], timestep, (Kind::Int64, xs.device()));
        let t_emb = timestep_embedding(&t, self.time_dim, 10000.0).to_kind(xs.kind());
        let emb = self.time_linear_2.forward(&self.time_linear_1.forward(&t_emb).silu());

        let mut h = self.conv_in.forward(&sample);
        let mut skips = vec![h.shallow_clone()];
        for block in &self.down {
            for layer in &block.layers {
                h = layer.forward(&h, &emb);
                skips.push(h.shallow_clone());
            }
            if let Some(conv) = &block.downsample {
                h = conv.forward(&h);
                skips.push(h.shallow_clone());
            }
        }

        let (res0, attn, res1) = &self.mid;
        h = res1.forward(&attn.forward(&res0.forward(&h, &emb)), &emb);

        for block in &self.up {
            for layer in &block.layers {
                let skip = skips.pop().expect("one skip connection per up-block resnet");
                h = layer.forward(&Tensor::cat(&[&h, &skip], 1), &emb);
            }
            if let Some(upsample) = &block.upsample {
                h = upsample.forward(&h);
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h).silu())
    }
}
