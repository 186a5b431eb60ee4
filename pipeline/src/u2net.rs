//! U-2-Net, the salient-object network rembg uses to remove backgrounds.
//!
//! Port of `U-2-Net/model/u2net.py` (Qin et al., "U^2-Net: Going Deeper with Nested
//! U-Structure for Salient Object Detection", 2020): `REBNCONV`, the residual U-blocks `RSU7`
//! .. `RSU4` and the dilated `RSU4F`, and `U2NET`. Field names and var paths equal the original
//! state dict keys (`stage1.rebnconvin.conv_s1.weight`, `stage1.rebnconvin.bn_s1.running_mean`,
//! ..., `side1.weight`, `outconv.bias`); `num_batches_tracked` (a training counter) is not
//! loaded. Inference only: batch norm uses its running statistics, as the exported ONNX does.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// One RSU block of U-2-Net: `mid` and `out` channels (its input count follows from the graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsuWidth {
    /// Channels inside the block.
    pub mid: i64,
    /// Channels out of the block.
    pub out: i64,
}

const fn rsu(mid: i64, out: i64) -> RsuWidth {
    RsuWidth { mid, out }
}

/// U-2-Net (Qin et al. 2020, `U-2-Net/model/u2net.py` `U2NET`) and rembg's `u2net` session
/// (`rembg/sessions/u2net.py`, `sessions/base.py` `normalize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct U2netConfig {
    /// Side of the square network input (rembg: 320, Lanczos).
    pub input_size: u32,
    /// Input channels (3).
    pub in_ch: i64,
    /// Output channels (1).
    pub out_ch: i64,
    /// Encoder blocks `stage1..stage6` (RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F).
    pub encoder: [RsuWidth; 6],
    /// Decoder blocks `stage1d..stage5d` (RSU7, RSU6, RSU5, RSU4, RSU4F).
    pub decoder: [RsuWidth; 5],
    /// ImageNet mean subtracted after dividing by the image maximum.
    pub mean: [f64; 3],
    /// ImageNet std.
    pub std: [f64; 3],
}

impl U2netConfig {
    /// `U2NET(3, 1)`: the 176 MB model rembg ships as `u2net.onnx`.
    pub fn u2net() -> Self {
        U2netConfig {
            input_size: 320,
            in_ch: 3,
            out_ch: 1,
            encoder: [rsu(32, 64), rsu(32, 128), rsu(64, 256), rsu(128, 512), rsu(256, 512), rsu(256, 512)],
            decoder: [rsu(16, 64), rsu(32, 64), rsu(64, 128), rsu(128, 256), rsu(256, 512)],
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// The same graph with 2-4 channels per block (random weights; for tests).
    pub fn tiny() -> Self {
        U2netConfig {
            encoder: [rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4)],
            decoder: [rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4)],
            ..U2netConfig::u2net()
        }
    }
}

/// Conv 3x3 (dilated) + batch norm + ReLU.
pub struct ReBnConv {
    conv_s1: nn::Conv2D,
    bn_s1: nn::BatchNorm,
}

impl ReBnConv {
    /// `REBNCONV(in_ch, out_ch, dirate)`.
    pub fn new(vs: &nn::Path<'_>, in_ch: i64, out_ch: i64, dirate: i64) -> Self {
        let cfg = nn::ConvConfig { padding: dirate, dilation: dirate, ..Default::default() };
        ReBnConv {
            conv_s1: nn::conv2d(vs / "conv_s1", in_ch, out_ch, 3, cfg),
            bn_s1: nn::batch_norm2d(vs / "bn_s1", out_ch, Default::default()),
        }
    }

    /// `relu(bn(conv(x)))`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.bn_s1.forward_t(&self.conv_s1.forward(xs), false).relu()
    }
}

/// `_upsample_like`: bilinear (align_corners=False) resize of `src` to `tar`'s height and width.
fn upsample_like(src: &Tensor, tar: &Tensor) -> Tensor {
    let size = tar.size();
    src.upsample_bilinear2d([size[2], size[3]], false, None, None)
}

/// `MaxPool2d(2, stride=2, ceil_mode=True)`.
fn pool(xs: &Tensor) -> Tensor {
    xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
}

/// A residual U-block: `RSU{height}` (height 4..7, pooling between levels) or `RSU4F`
/// (`dilated`: no pooling, dilations 1, 2, 4, 8 instead).
pub struct Rsu {
    rebnconvin: ReBnConv,
    /// `rebnconv1 .. rebnconv{height}`.
    enc: Vec<ReBnConv>,
    /// `rebnconv1d .. rebnconv{height-1}d`.
    dec: Vec<ReBnConv>,
    dilated: bool,
}

impl Rsu {
    /// `RSU{height}(in_ch, mid, out)`, or `RSU4F` when `dilated` (height 4).
    pub fn new(vs: &nn::Path<'_>, height: usize, dilated: bool, in_ch: i64, w: RsuWidth) -> Self {
        let rebnconvin = ReBnConv::new(&(vs / "rebnconvin"), in_ch, w.out, 1);
        // Dilation of encoder level i (1-based): RSU4F doubles it per level; the others use 1
        // and 2 for the bottom level only.
        let enc_rate = |i: usize| {
            if dilated {
                1 << (i - 1)
            } else if i == height {
                2
            } else {
                1
            }
        };
        let enc = (1..=height)
            .map(|i| {
                let cin = if i == 1 { w.out } else { w.mid };
                ReBnConv::new(&(vs / format!("rebnconv{i}")), cin, w.mid, enc_rate(i))
            })
            .collect();
        let dec = (1..height)
            .map(|i| {
                let cout = if i == 1 { w.out } else { w.mid };
                let rate = if dilated { 1 << (i - 1) } else { 1 };
                ReBnConv::new(&(vs / format!("rebnconv{i}d")), w.mid * 2, cout, rate)
            })
            .collect();
        Rsu { rebnconvin, enc, dec, dilated }
    }

    /// The block's forward pass (`hx1d + hxin`).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let height = self.enc.len();
        // 1. input conv
        let hxin = self.rebnconvin.forward(xs);
        // 2. encoder: hx1 .. hx{height}; pooled between levels except around the bottom
        let mut hx: Vec<Tensor> = Vec::with_capacity(height);
        let mut cur = hxin.shallow_clone();
        for (i, conv) in self.enc.iter().enumerate() {
            let level = i + 1;
            let input = if level >= 2 && level < height && !self.dilated { pool(&cur) } else { cur };
            let out = conv.forward(&input);
            cur = out.shallow_clone();
            hx.push(out);
        }
        // 3. decoder: from the bottom up, each level concatenated with its encoder skip
        let mut d = self.dec[height - 2].forward(&Tensor::cat(&[&hx[height - 1], &hx[height - 2]], 1));
        for i in (0..height - 2).rev() {
            let up = if self.dilated { d } else { upsample_like(&d, &hx[i]) };
            d = self.dec[i].forward(&Tensor::cat(&[&up, &hx[i]], 1));
        }
        d + hxin
    }
}

/// `U2NET(in_ch, out_ch)` with the block widths of `cfg`.
pub struct U2net {
    /// `stage1 .. stage6`.
    enc: Vec<Rsu>,
    /// `stage1d .. stage5d`.
    dec: Vec<Rsu>,
    /// `side1 .. side6`.
    side: Vec<nn::Conv2D>,
    outconv: nn::Conv2D,
}

/// (height, dilated) of `stage1 .. stage6`; the decoder uses the first five.
const BLOCKS: [(usize, bool); 6] = [(7, false), (6, false), (5, false), (4, false), (4, true), (4, true)];

impl U2net {
    /// Builds the network under `vs` (var paths = state dict keys).
    pub fn new(vs: &nn::Path<'_>, cfg: &U2netConfig) -> Self {
        let (e, d) = (&cfg.encoder, &cfg.decoder);
        let enc = (0..6)
            .map(|i| {
                let cin = if i == 0 { cfg.in_ch } else { e[i - 1].out };
                Rsu::new(&(vs / format!("stage{}", i + 1)), BLOCKS[i].0, BLOCKS[i].1, cin, e[i])
            })
            .collect();
        let dec = (0..5)
            .map(|i| {
                // stage{i+1}d takes the upsampled deeper output and encoder stage i+1's output.
                let deeper = if i == 4 { e[5].out } else { d[i + 1].out };
                Rsu::new(
                    &(vs / format!("stage{}d", i + 1)),
                    BLOCKS[i].0,
                    BLOCKS[i].1,
                    deeper + e[i].out,
                    d[i],
                )
            })
            .collect();
        let side_in = [d[0].out, d[1].out, d[2].out, d[3].out, d[4].out, e[5].out];
        let pad = nn::ConvConfig { padding: 1, ..Default::default() };
        let side = side_in
            .iter()
            .enumerate()
            .map(|(i, &cin)| nn::conv2d(vs / format!("side{}", i + 1), cin, cfg.out_ch, 3, pad))
            .collect();
        let outconv = nn::conv2d(vs / "outconv", 6 * cfg.out_ch, cfg.out_ch, 1, Default::default());
        U2net { enc, dec, side, outconv }
    }

    /// All seven outputs `(d0, d1, .., d6)`, each a sigmoid map at the input's size.
    pub fn forward_all(&self, xs: &Tensor) -> Vec<Tensor> {
        // 1. encoder: stage1 .. stage6, pooled between stages
        let mut hx: Vec<Tensor> = Vec::with_capacity(6);
        for (i, stage) in self.enc.iter().enumerate() {
            let input = if i == 0 { xs.shallow_clone() } else { pool(&hx[i - 1]) };
            hx.push(stage.forward(&input));
        }
        // 2. decoder: stage5d .. stage1d, each on the upsampled deeper output + its skip
        let mut dec_out: Vec<Tensor> = Vec::with_capacity(5);
        let mut deeper = hx[5].shallow_clone();
        for i in (0..5).rev() {
            let up = upsample_like(&deeper, &hx[i]);
            deeper = self.dec[i].forward(&Tensor::cat(&[&up, &hx[i]], 1));
            dec_out.push(deeper.shallow_clone());
        }
        dec_out.reverse(); // hx1d .. hx5d
                           // 3. side outputs, upsampled to d1's size, fused by a 1x1 conv
        let d1 = self.side[0].forward(&dec_out[0]);
        let mut sides = vec![d1.shallow_clone()];
        // The index picks from three lists (side heads, decoder outputs, the last encoder output).
        #[allow(clippy::needless_range_loop)]
        for i in 1..6 {
            let src = if i < 5 { &dec_out[i] } else { &hx[5] };
            sides.push(upsample_like(&self.side[i].forward(src), &d1));
        }
        let d0 = self.outconv.forward(&Tensor::cat(&sides, 1));
        std::iter::once(d0).chain(sides).map(|t| t.sigmoid()).collect()
    }

    /// The fused output `d0` (what rembg uses), `[N, out_ch, H, W]` in (0, 1).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.forward_all(xs).swap_remove(0)
    }
}
