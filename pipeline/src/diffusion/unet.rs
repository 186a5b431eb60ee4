//! The ImageDream multi-view UNet of CRM's two diffusion stages.
//!
//! Port of `MultiViewUNetModel` and `MultiViewUNetModelStage2`
//! (`imagedream/ldm/modules/diffusionmodules/openaimodel.py`, thu-ml/CRM at 4964e36; ImageDream,
//! Wang & Shi 2023, on the SD 2.1 UNet layout) in the configuration CRM uses: spatial
//! transformers with linear projections and cross-frame self-attention, time and camera
//! embeddings, the image prompt through the Resampler (`ip_mode: local_resample`). The
//! stage-2 variant differs only in its input: the noisy latent concatenated with the stage-1
//! view latents (`in_channels` 8).
//!
//! Var paths equal the checkpoint keys below `model.diffusion_model.`. Build it under a var
//! store whose kind is the compute dtype (fp16 on CUDA): group norms keep fp32 parameters.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

use super::attention::{IpTokens, SpatialTransformer3D};
use super::embeddings::{timestep_embedding, MlpEmbed};
use super::resampler::{Resampler, ResamplerConfig};
use super::resblock::{conv3x3, Downsample, GroupNorm32, ResBlock, Upsample};

/// Hyper-parameters of the multi-view UNet (upstream `unet_config.params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Input channels: 4 (stage 1) or 8 (stage 2: noisy latent + view latent).
    pub in_channels: i64,
    /// Output channels (the predicted noise).
    pub out_channels: i64,
    /// Base width.
    pub model_channels: i64,
    /// Downsampling factors at which a transformer follows each residual block.
    pub attention_resolutions: Vec<i64>,
    /// Residual blocks per level (down path; the up path has one more).
    pub num_res_blocks: i64,
    /// Width multiplier of each level.
    pub channel_mult: Vec<i64>,
    /// Width of one attention head (heads = width / this).
    pub num_head_channels: i64,
    /// Transformer blocks per spatial transformer.
    pub transformer_depth: i64,
    /// Width of the text context tokens.
    pub context_dim: i64,
    /// Width of the camera vectors.
    pub camera_dim: i64,
    /// Weight of the image-prompt attention.
    pub ip_weight: f64,
    /// The image-prompt Resampler (its `num_queries` is upstream's `ip_dim`).
    pub resampler: ResamplerConfig,
}

impl UNetConfig {
    /// Stage 1 (`imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml`): SD 2.1 layout, 4 input
    /// channels.
    pub fn crm_stage1() -> Self {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            model_channels: 320,
            attention_resolutions: vec![4, 2, 1],
            num_res_blocks: 2,
            channel_mult: vec![1, 2, 4, 4],
            num_head_channels: 64,
            transformer_depth: 1,
            context_dim: 1024,
            camera_dim: 16,
            ip_weight: 1.0,
            resampler: ResamplerConfig::crm(),
        }
    }

    /// Stage 2 (`imagedream/configs/sd_v2_base_ipmv_chin8_zero_snr.yaml`): as stage 1 with 8
    /// input channels.
    pub fn crm_stage2() -> Self {
        UNetConfig { in_channels: 8, ..Self::crm_stage1() }
    }

    /// Width of the time and camera embeddings.
    pub fn time_embed_dim(&self) -> i64 {
        self.model_channels * 4
    }
}

/// What a UNet call is conditioned on besides the noisy latent and the timestep. The batch is
/// `B * num_frames` with the frames of one object consecutive (CFG: `[uncond, cond]`).
pub struct Conditioning {
    /// `[B F, T + ip_dim, context_dim]`: the text tokens followed by the image-prompt tokens
    /// (see [`MultiViewUNet::image_context`]).
    pub context: Tensor,
    /// `[B F, camera_dim]` camera vectors.
    pub camera: Tensor,
    /// Frames per object.
    pub num_frames: i64,
    /// `[B, C, h, w]`: the reference latent written over the last frame of each object
    /// (stage 1); zeros for the unconditional branch.
    pub ip_img: Option<Tensor>,
    /// `[B F, C, h, w]`: latents concatenated to the input channels (stage 2).
    pub pixel_images: Option<Tensor>,
}

/// One step of the input path.
enum InputBlock {
    Conv(nn::Conv2D),
    Res(Box<(ResBlock, Option<SpatialTransformer3D>)>),
    Down(Downsample),
}

/// One step of the output path: residual block, optional transformer, optional upsampling.
struct OutputBlock {
    res: ResBlock,
    attn: Option<SpatialTransformer3D>,
    up: Option<Upsample>,
}

/// The multi-view UNet (both stages).
pub struct MultiViewUNet {
    cfg: UNetConfig,
    time_embed: MlpEmbed,
    camera_embed: MlpEmbed,
    image_embed: Resampler,
    input_blocks: Vec<InputBlock>,
    middle_block: (ResBlock, SpatialTransformer3D, ResBlock),
    output_blocks: Vec<OutputBlock>,
    out_norm: GroupNorm32,
    out_conv: nn::Conv2D,
}

impl MultiViewUNet {
    /// Builds the UNet under `vs` (keys `time_embed`, `camera_embed`, `image_embed`,
    /// `input_blocks`, `middle_block`, `output_blocks`, `out`).
    pub fn new(vs: &nn::Path<'_>, cfg: &UNetConfig) -> Self {
        let mc = cfg.model_channels;
        let emb_dim = cfg.time_embed_dim();
        let ip = IpTokens { ip_dim: cfg.resampler.num_queries, ip_weight: cfg.ip_weight };
        let transformer = |vs: &nn::Path<'_>, ch: i64| {
            let heads = ch / cfg.num_head_channels;
            SpatialTransformer3D::new(
                vs,
                ch,
                heads,
                cfg.num_head_channels,
                cfg.transformer_depth,
                cfg.context_dim,
                ip,
            )
        };

        // 1. input path
        let ivs = vs / "input_blocks";
        let mut input_blocks = vec![InputBlock::Conv(conv3x3(&ivs / 0 / 0, cfg.in_channels, mc, 1))];
        let mut chans = vec![mc];
        let (mut ch, mut ds) = (mc, 1);
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let bvs = &ivs / input_blocks.len();
                let res = ResBlock::new(&(&bvs / 0), ch, emb_dim, mult * mc);
                ch = mult * mc;
                let attn = cfg.attention_resolutions.contains(&ds).then(|| transformer(&(&bvs / 1), ch));
                input_blocks.push(InputBlock::Res(Box::new((res, attn))));
                chans.push(ch);
            }
            if level != cfg.channel_mult.len() - 1 {
                let bvs = &ivs / input_blocks.len();
                input_blocks.push(InputBlock::Down(Downsample::new(&(&bvs / 0), ch, ch)));
                chans.push(ch);
                ds *= 2;
            }
        }

        // 2. middle
        let mvs = vs / "middle_block";
        let middle_block = (
            ResBlock::new(&(&mvs / 0), ch, emb_dim, ch),
            transformer(&(&mvs / 1), ch),
            ResBlock::new(&(&mvs / 2), ch, emb_dim, ch),
        );

        // 3. output path
        let ovs = vs / "output_blocks";
        let mut output_blocks = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let bvs = &ovs / output_blocks.len();
                let skip = chans.pop().expect("one skip connection per input block");
                let res = ResBlock::new(&(&bvs / 0), ch + skip, emb_dim, mc * mult);
                ch = mc * mult;
                let attn = cfg.attention_resolutions.contains(&ds).then(|| transformer(&(&bvs / 1), ch));
                let up = (level > 0 && i == cfg.num_res_blocks).then(|| {
                    ds /= 2;
                    let index = if attn.is_some() { 2 } else { 1 };
                    Upsample::new(&(&bvs / index), ch, ch)
                });
                output_blocks.push(OutputBlock { res, attn, up });
            }
        }

        MultiViewUNet {
            cfg: cfg.clone(),
            time_embed: MlpEmbed::new(&(vs / "time_embed"), mc, emb_dim),
            camera_embed: MlpEmbed::new(&(vs / "camera_embed"), cfg.camera_dim, emb_dim),
            image_embed: Resampler::new(&(vs / "image_embed"), &cfg.resampler),
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: GroupNorm32::normalization(&(vs / "out" / "0"), ch),
            out_conv: conv3x3(vs / "out" / "2", mc, cfg.out_channels, 1),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// The dtype of its (non-norm) weights: the compute dtype.
    pub fn kind(&self) -> tch::Kind {
        self.out_conv.ws.kind()
    }

    /// The cross-attention context: the text tokens `[N, T, C]` followed by the Resampler's
    /// tokens of the CLIP image tokens `ip` `[N, 257, 1280]` (upstream does this inside every
    /// forward; it depends only on the conditioning, so a sampler computes it once).
    pub fn image_context(&self, context: &Tensor, ip: &Tensor) -> Tensor {
        let ip_emb = self.image_embed.forward(ip);
        Tensor::cat(&[context.to_kind(ip_emb.kind()), ip_emb], 1)
    }

    /// Predicts the noise of `xs` `[B F, C, h, w]` at `timesteps` `[B F]`. Returns the
    /// weights' dtype (fp16 on CUDA, like upstream under autocast).
    pub fn forward(&self, xs: &Tensor, timesteps: &Tensor, cond: &Conditioning) -> Tensor {
        let f = cond.num_frames;
        let kind = self.out_conv.ws.kind();
        // 1. time + camera embedding
        let t_emb = timestep_embedding(timesteps, self.cfg.model_channels, 10000.0);
        let emb = self.time_embed.forward(&t_emb) + self.camera_embed.forward(&cond.camera);

        // 2. the reference latent replaces the last frame of each object (stage 1)
        let xs = match &cond.ip_img {
            Some(ip_img) => {
                let (bf, c, h, w) = xs.size4().expect("UNet input is NCHW");
                let xs = xs.copy();
                xs.view([bf / f, f, c, h, w]).select(1, f - 1).copy_(ip_img);
                xs
            }
            None => xs.shallow_clone(),
        };
        // 3. stage 2: the view latents as extra input channels
        let xs = match &cond.pixel_images {
            Some(pixels) => Tensor::cat(&[&xs, &pixels.to_kind(xs.kind())], 1),
            None => xs,
        };
        let context = cond.context.to_kind(kind);

        // 4. down, middle, up
        let mut h = xs.to_kind(kind);
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        for block in &self.input_blocks {
            h = match block {
                InputBlock::Conv(conv) => conv.forward(&h),
                InputBlock::Res(block) => {
                    let (res, attn) = &**block;
                    let h = res.forward(&h, &emb);
                    match attn {
                        Some(attn) => attn.forward(&h, &context, f),
                        None => h,
                    }
                }
                InputBlock::Down(down) => down.forward(&h),
            };
            hs.push(h.shallow_clone());
        }
        let (res1, attn, res2) = &self.middle_block;
        h = res2.forward(&attn.forward(&res1.forward(&h, &emb), &context, f), &emb);
        for block in &self.output_blocks {
            let skip = hs.pop().expect("one skip connection per output block");
            h = block.res.forward(&Tensor::cat(&[&h, &skip], 1), &emb);
            if let Some(attn) = &block.attn {
                h = attn.forward(&h, &context, f);
            }
            if let Some(up) = &block.up {
                h = up.forward(&h);
            }
        }

        // 5. out: upstream casts back to the input dtype first, so its group norm and SiLU run
        //    in fp32 before the (fp16) convolution.
        let h = self.out_norm.forward(&h.to_kind(xs.kind())).silu();
        self.out_conv.forward(&h.to_kind(kind))
    }
}
