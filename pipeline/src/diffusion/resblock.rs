//! Residual blocks, resampling layers and the fp32 group norm of the multi-view UNet.
//!
//! Port of `ResBlock`, `Downsample`, `Upsample` (`imagedream/ldm/modules/diffusionmodules/
//! openaimodel.py`) and `GroupNorm32` (`.../diffusionmodules/util.py`), thu-ml/CRM at 4964e36,
//! in the configuration the CRM UNets use: 2-D, no scale-shift norm, no resblock up/down,
//! learned-convolution resampling, dropout 0.

use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Group norm computed in fp32 whatever the activations' dtype, the result cast back to it
/// (upstream `GroupNorm32`: `super().forward(x.float()).type(x.dtype)`).
///
/// Its scale and shift are created as fp32 variables even in an fp16 var store, so a half
/// precision model keeps its norms in full precision.
pub struct GroupNorm32 {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
    eps: f64,
}

impl GroupNorm32 {
    /// `groups` groups over `channels` channels (`vs/weight`, `vs/bias`).
    pub fn new(vs: &nn::Path<'_>, groups: i64, channels: i64, eps: f64) -> Self {
        let fp32 = |fill: f64| Tensor::full([channels], fill, (Kind::Float, vs.device()));
        GroupNorm32 {
            weight: vs.add("weight", fp32(1.0), false),
            bias: vs.add("bias", fp32(0.0), false),
            groups,
            eps,
        }
    }

    /// Upstream `normalization(channels)`: 32 groups, eps 1e-5.
    pub fn normalization(vs: &nn::Path<'_>, channels: i64) -> Self {
        Self::new(vs, 32, channels, 1e-5)
    }

    /// Normalises `[N, C, ...]` in fp32 and returns the input's dtype.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        // to_kind is a no-op when the dtype already matches (fp32 on CPU).
        let ys = xs.to_kind(Kind::Float).group_norm(
            self.groups,
            Some(self.weight.to_kind(Kind::Float)),
            Some(self.bias.to_kind(Kind::Float)),
            self.eps,
            cuda_cudnn(xs.device()),
        );
        ys.to_kind(xs.kind())
    }
}

fn cuda_cudnn(device: Device) -> bool {
    device.is_cuda()
}

/// A 3x3 convolution with padding 1.
pub fn conv3x3(vs: nn::Path<'_>, in_ch: i64, out_ch: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(vs, in_ch, out_ch, 3, nn::ConvConfig { padding: 1, stride, ..Default::default() })
}

/// The residual block: `GN -> SiLU -> conv`, plus the projected embedding, `GN -> SiLU ->
/// conv`, added to the (projected) input.
pub struct ResBlock {
    in_norm: GroupNorm32,
    in_conv: nn::Conv2D,
    emb_linear: nn::Linear,
    out_norm: GroupNorm32,
    out_conv: nn::Conv2D,
    skip_connection: Option<nn::Conv2D>,
}

impl ResBlock {
    /// `channels -> out_channels`, conditioned on an `emb_channels` embedding. Keys:
    /// `in_layers.{0,2}`, `emb_layers.1`, `out_layers.{0,3}`, `skip_connection` (a 1x1
    /// convolution, only when the channel count changes).
    pub fn new(vs: &nn::Path<'_>, channels: i64, emb_channels: i64, out_channels: i64) -> Self {
        let skip_connection = (channels != out_channels)
            .then(|| nn::conv2d(vs / "skip_connection", channels, out_channels, 1, Default::default()));
        ResBlock {
            in_norm: GroupNorm32::normalization(&(vs / "in_layers" / "0"), channels),
            in_conv: conv3x3(vs / "in_layers" / "2", channels, out_channels, 1),
            emb_linear: nn::linear(vs / "emb_layers" / "1", emb_channels, out_channels, Default::default()),
            out_norm: GroupNorm32::normalization(&(vs / "out_layers" / "0"), out_channels),
            out_conv: conv3x3(vs / "out_layers" / "3", out_channels, out_channels, 1),
            skip_connection,
        }
    }

    /// `xs`: `[N, C, H, W]`; `emb`: `[N, emb_channels]`.
    pub fn forward(&self, xs: &Tensor, emb: &Tensor) -> Tensor {
        let h = self.in_conv.forward(&self.in_norm.forward(xs).silu());
        let emb_out = self.emb_linear.forward(&emb.silu()).to_kind(h.kind());
        let h = h + emb_out.unsqueeze(-1).unsqueeze(-1);
        let h = self.out_conv.forward(&self.out_norm.forward(&h).silu());
        match &self.skip_connection {
            Some(conv) => conv.forward(xs) + h,
            None => xs + h,
        }
    }
}

/// Stride-2 3x3 convolution (key `op`).
pub struct Downsample {
    op: nn::Conv2D,
}

impl Downsample {
    /// `channels -> out_channels` at half the resolution.
    pub fn new(vs: &nn::Path<'_>, channels: i64, out_channels: i64) -> Self {
        Downsample { op: conv3x3(vs / "op", channels, out_channels, 2) }
    }

    /// Applies the strided convolution.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.op.forward(xs)
    }
}

/// Nearest-neighbour 2x upsampling followed by a 3x3 convolution (key `conv`).
pub struct Upsample {
    conv: nn::Conv2D,
}

impl Upsample {
    /// `channels -> out_channels` at twice the resolution.
    pub fn new(vs: &nn::Path<'_>, channels: i64, out_channels: i64) -> Self {
        Upsample { conv: conv3x3(vs / "conv", channels, out_channels, 1) }
    }

    /// Upsamples `[N, C, H, W]` to `[N, C', 2H, 2W]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (_, _, h, w) = xs.size4().expect("Upsample expects NCHW");
        self.conv.forward(&xs.upsample_nearest2d([h * 2, w * 2], 2.0, 2.0))
    }
}
