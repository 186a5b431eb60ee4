//! The SD 2.1 latent autoencoder (AutoencoderKL; Rombach et al. 2022, "High-Resolution Image
//! Synthesis with Latent Diffusion Models").
//!
//! Port of `AutoencoderKL` (`imagedream/ldm/models/autoencoder.py`), `Encoder`, `Decoder`,
//! `ResnetBlock`, `AttnBlock`, `Downsample`, `Upsample`
//! (`imagedream/ldm/modules/diffusionmodules/model.py`) and `DiagonalGaussianDistribution`
//! (`imagedream/ldm/modules/distributions/distributions.py`), CRM 4964e36. Variable paths are the
//! checkpoint's keys under [`CHECKPOINT_PREFIX`].
//!
//! Upstream's use (`libs/sample.py`, `imagedream/ldm/interface.py`): `get_first_stage_encoding`
//! *samples* the posterior (`mean + std * randn`, drawn from the CPU generator) and scales it by
//! 0.18215; `decode_first_stage` divides by 0.18215 and decodes.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::precision::autocast_for;

/// Where the VAE sits in CRM's diffusion checkpoints (`LatentDiffusionInterface.vae_model`).
pub const CHECKPOINT_PREFIX: &str = "vae_model.";

/// AutoencoderKL hyper-parameters (`vae_config` of `sd_v2_base_ipmv_zero_SNR.yaml`).
/// `double_z` is always true (upstream asserts it); dropout is unused at inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Image channels in (`in_channels`).
    pub in_channels: i64,
    /// Image channels out (`out_ch`).
    pub out_ch: i64,
    /// Base width (`ch`).
    pub ch: i64,
    /// Width multiplier per resolution level (`ch_mult`); one downsample between levels.
    pub ch_mult: Vec<i64>,
    /// Resnet blocks per level (`num_res_blocks`; the decoder has one more).
    pub num_res_blocks: usize,
    /// Resolutions with self-attention after each block (`attn_resolutions`; CRM: none).
    pub attn_resolutions: Vec<i64>,
    /// Nominal image resolution, which `attn_resolutions` counts down from (`resolution`).
    pub resolution: i64,
    /// Latent channels of the encoder/decoder (`z_channels`).
    pub z_channels: i64,
    /// Latent channels after `quant_conv` (`embed_dim`).
    pub embed_dim: i64,
    /// Latent scale (`scale_factor`).
    pub scale_factor: f64,
}

impl VaeConfig {
    /// CRM's values (SD 2.1's VAE): ch 128, mult `[1, 2, 4, 4]`, 2 res blocks, z 4, f8.
    pub fn crm() -> Self {
        VaeConfig {
            in_channels: 3,
            out_ch: 3,
            ch: 128,
            ch_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attn_resolutions: vec![],
            resolution: 256,
            z_channels: 4,
            embed_dim: 4,
            scale_factor: 0.18215,
        }
    }

    /// CRM's layout (four levels, f8) at width 32 with one block per level.
    pub fn tiny() -> Self {
        VaeConfig { ch: 32, ch_mult: vec![1, 1, 2, 2], num_res_blocks: 1, ..Self::crm() }
    }

    /// The image-to-latent size ratio (8 for SD 2.1).
    pub fn downscale(&self) -> i64 {
        1 << (self.ch_mult.len() - 1)
    }
}

fn group_norm(vs: nn::Path<'_>, channels: i64) -> nn::GroupNorm {
    nn::group_norm(vs, 32, channels, nn::GroupNormConfig { eps: 1e-6, ..Default::default() })
}

fn conv(vs: nn::Path<'_>, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(vs, c_in, c_out, k, nn::ConvConfig { stride, padding, ..Default::default() })
}

/// `ResnetBlock` without the time embedding (the autoencoder has none).
#[derive(Debug)]
struct ResnetBlock {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    nin_shortcut: Option<nn::Conv2D>,
}

impl ResnetBlock {
    fn new(vs: nn::Path<'_>, c_in: i64, c_out: i64) -> Self {
        ResnetBlock {
            norm1: group_norm(&vs / "norm1", c_in),
            conv1: conv(&vs / "conv1", c_in, c_out, 3, 1, 1),
            norm2: group_norm(&vs / "norm2", c_out),
            conv2: conv(&vs / "conv2", c_out, c_out, 3, 1, 1),
            nin_shortcut: (c_in != c_out).then(|| conv(&vs / "nin_shortcut", c_in, c_out, 1, 1, 0)),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let h = xs.apply(&self.norm1).silu().apply(&self.conv1);
        let h = h.apply(&self.norm2).silu().apply(&self.conv2);
        match &self.nin_shortcut {
            Some(shortcut) => xs.apply(shortcut) + h,
            None => xs + h,
        }
    }
}

/// `AttnBlock`: single-head self-attention over all pixels, 1x1-conv projections.
#[derive(Debug)]
struct AttnBlock {
    norm: nn::GroupNorm,
    q: nn::Conv2D,
    k: nn::Conv2D,
    v: nn::Conv2D,
    proj_out: nn::Conv2D,
}

impl AttnBlock {
    fn new(vs: nn::Path<'_>, c: i64) -> Self {
        AttnBlock {
            norm: group_norm(&vs / "norm", c),
            q: conv(&vs / "q", c, c, 1, 1, 0),
            k: conv(&vs / "k", c, c, 1, 1, 0),
            v: conv(&vs / "v", c, c, 1, 1, 0),
            proj_out: conv(&vs / "proj_out", c, c, 1, 1, 0),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, c, h, w) = xs.size4().unwrap();
        let hs = xs.apply(&self.norm);
        // b,c,h,w -> b,1,hw,c: one head, scale 1/sqrt(c) as upstream.
        let tokens = |t: Tensor| t.reshape([b, 1, c, h * w]).transpose(2, 3);
        let (q, k, v) = (tokens(hs.apply(&self.q)), tokens(hs.apply(&self.k)), tokens(hs.apply(&self.v)));
        let out = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
        xs + out.transpose(2, 3).reshape([b, c, h, w]).apply(&self.proj_out)
    }
}

/// The `mid` stage shared by encoder and decoder: resnet, attention, resnet.
#[derive(Debug)]
struct Mid {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl Mid {
    fn new(vs: nn::Path<'_>, c: i64) -> Self {
        Mid {
            block_1: ResnetBlock::new(&vs / "block_1", c, c),
            attn_1: AttnBlock::new(&vs / "attn_1", c),
            block_2: ResnetBlock::new(&vs / "block_2", c, c),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        self.block_2.forward(&self.attn_1.forward(&self.block_1.forward(xs)))
    }
}

/// One resolution level: blocks, optional attention after each, optional resampling conv.
#[derive(Debug)]
struct Level {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    resample: Option<nn::Conv2D>,
}

impl Level {
    fn forward_blocks(&self, mut xs: Tensor) -> Tensor {
        for (i, block) in self.block.iter().enumerate() {
            xs = block.forward(&xs);
            if let Some(attn) = self.attn.get(i) {
                xs = attn.forward(&xs);
            }
        }
        xs
    }
}

/// `Encoder`: image -> `2 * z_channels` moments (before `quant_conv`).
#[derive(Debug)]
struct Encoder {
    conv_in: nn::Conv2D,
    down: Vec<Level>,
    mid: Mid,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Encoder {
    fn new(vs: nn::Path<'_>, cfg: &VaeConfig) -> Self {
        let levels = cfg.ch_mult.len();
        let mut res = cfg.resolution;
        let mut block_in = cfg.ch;
        let mut down = Vec::with_capacity(levels);
        for (i, mult) in cfg.ch_mult.iter().enumerate() {
            let vs_level = &vs / "down" / i;
            let block_out = cfg.ch * mult;
            let (mut block, mut attn) = (Vec::new(), Vec::new());
            for j in 0..cfg.num_res_blocks {
                block.push(ResnetBlock::new(&vs_level / "block" / j, block_in, block_out));
                block_in = block_out;
                if cfg.attn_resolutions.contains(&res) {
                    attn.push(AttnBlock::new(&vs_level / "attn" / j, block_in));
                }
            }
            // Downsample: pad (0,1,0,1), then a stride-2 3x3 conv without padding.
            let resample = (i + 1 != levels)
                .then(|| conv(&vs_level / "downsample" / "conv", block_in, block_in, 3, 2, 0));
            if resample.is_some() {
                res /= 2;
            }
            down.push(Level { block, attn, resample });
        }
        Encoder {
            conv_in: conv(&vs / "conv_in", cfg.in_channels, cfg.ch, 3, 1, 1),
            down,
            mid: Mid::new(&vs / "mid", block_in),
            norm_out: group_norm(&vs / "norm_out", block_in),
            conv_out: conv(&vs / "conv_out", block_in, 2 * cfg.z_channels, 3, 1, 1),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        // 1. downsampling
        let mut hs = xs.apply(&self.conv_in);
        for level in &self.down {
            hs = level.forward_blocks(hs);
            if let Some(down) = &level.resample {
                hs = hs.constant_pad_nd([0, 1, 0, 1]).apply(down);
            }
        }
        // 2. middle, 3. end
        self.mid.forward(&hs).apply(&self.norm_out).silu().apply(&self.conv_out)
    }
}

/// `Decoder`: `z_channels` latent -> image.
#[derive(Debug)]
struct Decoder {
    conv_in: nn::Conv2D,
    mid: Mid,
    /// Indexed by resolution level (`up.0` is the full-resolution one), run from the last.
    up: Vec<Level>,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Decoder {
    fn new(vs: nn::Path<'_>, cfg: &VaeConfig) -> Self {
        let levels = cfg.ch_mult.len();
        let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
        let mut res = cfg.resolution >> (levels - 1);
        let mut up: Vec<Option<Level>> = (0..levels).map(|_| None).collect();
        for i in (0..levels).rev() {
            let vs_level = &vs / "up" / i;
            let block_out = cfg.ch * cfg.ch_mult[i];
            let (mut block, mut attn) = (Vec::new(), Vec::new());
            for j in 0..=cfg.num_res_blocks {
                block.push(ResnetBlock::new(&vs_level / "block" / j, block_in, block_out));
                block_in = block_out;
                if cfg.attn_resolutions.contains(&res) {
                    attn.push(AttnBlock::new(&vs_level / "attn" / j, block_in));
                }
            }
            // Upsample: nearest x2, then a 3x3 conv.
            let resample =
                (i != 0).then(|| conv(&vs_level / "upsample" / "conv", block_in, block_in, 3, 1, 1));
            if resample.is_some() {
                res *= 2;
            }
            up[i] = Some(Level { block, attn, resample });
        }
        let block_top = cfg.ch * cfg.ch_mult[levels - 1];
        Decoder {
            conv_in: conv(&vs / "conv_in", cfg.z_channels, block_top, 3, 1, 1),
            mid: Mid::new(&vs / "mid", block_top),
            up: up.into_iter().flatten().collect(),
            norm_out: group_norm(&vs / "norm_out", block_in),
            conv_out: conv(&vs / "conv_out", block_in, cfg.out_ch, 3, 1, 1),
        }
    }

    fn forward(&self, z: &Tensor) -> Tensor {
        // 1. z to block_in, 2. middle
        let mut hs = self.mid.forward(&z.apply(&self.conv_in));
        // 3. upsampling, lowest resolution first
        for level in self.up.iter().rev() {
            hs = level.forward_blocks(hs);
            if let Some(up) = &level.resample {
                let (_, _, h, w) = hs.size4().unwrap();
                hs = hs.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0).apply(up);
            }
        }
        // 4. end
        hs.apply(&self.norm_out).silu().apply(&self.conv_out)
    }
}

/// The encoder's posterior: a diagonal Gaussian over the latent (`DiagonalGaussianDistribution`).
#[derive(Debug)]
pub struct DiagonalGaussian {
    /// Posterior mean, `[b, embed_dim, h/8, w/8]`.
    pub mean: Tensor,
    /// Log-variance, clamped to [-30, 20] as upstream.
    pub logvar: Tensor,
}

impl DiagonalGaussian {
    /// `exp(0.5 * logvar)`.
    pub fn std(&self) -> Tensor {
        (&self.logvar * 0.5).exp()
    }

    /// `mean + std * noise` (`sample()` with the noise given).
    pub fn sample_with(&self, noise: &Tensor) -> Tensor {
        &self.mean + self.std() * noise
    }

    /// `sample()` as upstream draws it: standard normal noise from the CPU generator (so it is
    /// the same for a given `tch::manual_seed` on every device), moved to the mean's device.
    pub fn sample(&self) -> Tensor {
        let noise = Tensor::randn(self.mean.size(), (Kind::Float, Device::Cpu));
        self.sample_with(&noise.to_device(self.mean.device()))
    }
}

/// AutoencoderKL: encoder + `quant_conv`, `post_quant_conv` + decoder.
#[derive(Debug)]
pub struct AutoencoderKl {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: nn::Conv2D,
    post_quant_conv: nn::Conv2D,
    cfg: VaeConfig,
}

impl AutoencoderKl {
    /// Declares the autoencoder's variables under `vs` (checkpoint keys without the prefix).
    pub fn new(vs: &nn::Path<'_>, cfg: &VaeConfig) -> Self {
        AutoencoderKl {
            encoder: Encoder::new(vs / "encoder", cfg),
            decoder: Decoder::new(vs / "decoder", cfg),
            quant_conv: conv(vs / "quant_conv", 2 * cfg.z_channels, 2 * cfg.embed_dim, 1, 1, 0),
            post_quant_conv: conv(vs / "post_quant_conv", cfg.embed_dim, cfg.z_channels, 1, 1, 0),
            cfg: cfg.clone(),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// `encode`: images `[b, 3, H, W]` in [-1, 1] (H, W multiples of 8) -> posterior.
    pub fn encode(&self, xs: &Tensor) -> DiagonalGaussian {
        autocast_for(&self.quant_conv.ws, || {
            let moments = self.encoder.forward(xs).apply(&self.quant_conv);
            let halves = moments.chunk(2, 1);
            DiagonalGaussian { mean: halves[0].shallow_clone(), logvar: halves[1].clamp(-30.0, 20.0) }
        })
    }

    /// `get_first_stage_encoding(encode_first_stage(xs))`: a posterior sample (noise from the
    /// CPU generator, see [`DiagonalGaussian::sample`]) times `scale_factor`.
    pub fn encode_latent(&self, xs: &Tensor) -> Tensor {
        self.encode(xs).sample() * self.cfg.scale_factor
    }

    /// `decode`: latent `z` (unscaled) -> images in about [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Tensor {
        autocast_for(&self.quant_conv.ws, || self.decoder.forward(&z.apply(&self.post_quant_conv)))
    }

    /// `decode_first_stage`: a diffusion latent (scaled by `scale_factor`) -> images.
    pub fn decode_latent(&self, latent: &Tensor) -> Tensor {
        self.decode(&(latent * (1.0 / self.cfg.scale_factor)))
    }
}
