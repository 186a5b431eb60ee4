//! Timestep and camera embeddings of the multi-view UNet.
//!
//! Port of `timestep_embedding` (`imagedream/ldm/modules/diffusionmodules/util.py`) and of the
//! `time_embed` / `camera_embed` MLPs of `MultiViewUNetModel`
//! (`imagedream/ldm/modules/diffusionmodules/openaimodel.py`), thu-ml/CRM at 4964e36.

use tch::{nn, nn::Module, Kind, Tensor};

/// Sinusoidal embeddings `[cos(t * f_i), sin(t * f_i)]` of a 1-D batch of timesteps, with
/// `f_i = exp(-ln(max_period) * i / (dim / 2))` computed in fp32 as upstream. Returns
/// `[N, dim]` fp32 (a zero column is appended when `dim` is odd).
pub fn timestep_embedding(timesteps: &Tensor, dim: i64, max_period: f64) -> Tensor {
    let half = dim / 2;
    let device = timesteps.device();
    let freqs = (Tensor::arange(half, (Kind::Float, device)) * (-max_period.ln()) / half as f64).exp();
    let args = timesteps.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[args.cos(), args.sin()], -1);
    if dim % 2 == 1 {
        let zeros = emb.narrow(1, 0, 1).zeros_like();
        Tensor::cat(&[emb, zeros], -1)
    } else {
        emb
    }
}

/// `Linear -> SiLU -> Linear` (upstream `nn.Sequential` keys `0` and `2`), the shape of both
/// the time and the camera embedding.
pub struct MlpEmbed {
    linear_1: nn::Linear,
    linear_2: nn::Linear,
}

impl MlpEmbed {
    /// Builds the MLP `in_dim -> out_dim -> out_dim` under `vs` (`vs/0`, `vs/2`).
    pub fn new(vs: &nn::Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        MlpEmbed {
            linear_1: nn::linear(vs / "0", in_dim, out_dim, Default::default()),
            linear_2: nn::linear(vs / "2", out_dim, out_dim, Default::default()),
        }
    }

    /// Applies the MLP; the input is cast to the weights' dtype first (fp16 on CUDA), as
    /// autocast does upstream.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs.to_kind(self.linear_1.ws.kind());
        self.linear_2.forward(&self.linear_1.forward(&xs).silu())
    }
}
