//! The noise schedule: scaled-linear betas rescaled to zero terminal SNR (Lin et al. 2023,
//! "Common Diffusion Noise Schedules and Sample Steps are Flawed").
//!
//! Port of `LatentDiffusionInterface.register_schedule` (`imagedream/ldm/interface.py`) with
//! `make_beta_schedule("linear")` and `enforce_zero_terminal_snr`
//! (`imagedream/ldm/modules/diffusionmodules/util.py`), CRM 4964e36. Upstream computes in
//! float64 and stores float32 buffers; so does this, in the same operation order. (libtorch's
//! vectorised `linspace` can differ from the scalar formula in the last bit of a float64 beta;
//! the float32 tables it leads to are identical, which the parity test checks exactly.) With zero
//! terminal SNR, `alphas_cumprod[999]` is exactly 0.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Noise-schedule hyper-parameters (`sd_v2_base_ipmv_zero_SNR.yaml`). The number of DDIM steps
/// is a run parameter (the bundle's `defaults.steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// First beta of the scaled-linear schedule (`linear_start`).
    pub linear_start: f64,
    /// Last beta before the zero-SNR rescale (`linear_end`).
    pub linear_end: f64,
    /// Training timesteps (`timesteps`).
    pub num_train_timesteps: usize,
    /// Rescale the betas to zero terminal SNR (`zero_snr`).
    pub zero_snr: bool,
}

impl ScheduleConfig {
    /// CRM's values (both stages).
    pub fn crm() -> Self {
        ScheduleConfig { linear_start: 0.00085, linear_end: 0.012, num_train_timesteps: 1000, zero_snr: true }
    }
}

/// The training noise schedule: `alphas_cumprod` and what is derived from it.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    /// float64 values, as numpy holds them before upstream stores its buffers.
    alphas_cumprod_f64: Vec<f64>,
    /// The float32 buffer `alphas_cumprod` upstream registers.
    alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// Builds the schedule of `cfg`.
    pub fn new(cfg: &ScheduleConfig) -> Self {
        let mut betas = scaled_linear_betas(cfg.linear_start, cfg.linear_end, cfg.num_train_timesteps);
        if cfg.zero_snr {
            betas = enforce_zero_terminal_snr(&betas);
        }
        let mut acc = 1.0f64;
        let alphas_cumprod_f64: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let alphas_cumprod = alphas_cumprod_f64.iter().map(|&a| a as f32).collect();
        NoiseSchedule { alphas_cumprod_f64, alphas_cumprod }
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Whether the schedule has no timesteps (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.alphas_cumprod.is_empty()
    }

    /// The float32 `alphas_cumprod` buffer.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// `alphas_cumprod` as the model holds it when cast to `precision`: upstream's
    /// `TwoStagePipeline` casts the whole model to fp16 on CUDA, schedule buffers included, and
    /// the DDIM sampler then reads the fp16-rounded values.
    pub fn alphas_cumprod_in(&self, precision: Kind) -> Tensor {
        Tensor::from_slice(&self.alphas_cumprod).to_kind(precision)
    }

    /// `q_sample(x0, t, noise)`: `sqrt(ac[t]) * x0 + sqrt(1 - ac[t]) * noise`, with the two
    /// coefficients rounded as upstream's buffers are at `precision` (Float or Half). Stage 1's
    /// offset noise draws its x_T with this at t = 999, where zero terminal SNR makes it return
    /// `noise` exactly.
    pub fn q_sample(&self, x0: &Tensor, noise: &Tensor, t: usize, precision: Kind) -> Tensor {
        let ac = self.alphas_cumprod_f64[t];
        // Upstream: to_torch(np.sqrt(alphas_cumprod)) in float64 -> float32 -> model dtype.
        let coef = |v: f64| f64::from(round_to(precision, v as f32));
        x0 * coef(ac.sqrt()) + noise * coef((1.0 - ac).sqrt())
    }
}

/// `make_beta_schedule("linear")`: `torch.linspace(sqrt(start), sqrt(end), n, float64) ** 2`.
pub fn scaled_linear_betas(start: f64, end: f64, n: usize) -> Vec<f64> {
    linspace(start.sqrt(), end.sqrt(), n).into_iter().map(|b| b * b).collect()
}

/// `torch.linspace` in float64 by libtorch's scalar formula: the first half steps up from
/// `start`, the second half steps down from `end`, so both ends are exact.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let halfway = n / 2;
    (0..n)
        .map(|i| if i < halfway { start + step * i as f64 } else { end - step * (n - i - 1) as f64 })
        .collect()
}

/// `enforce_zero_terminal_snr`: shifts `sqrt(alphas_bar)` so the last is 0, rescales it so the
/// first is unchanged, and converts back to betas.
pub fn enforce_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0f64;
    let mut sqrt_bar: Vec<f64> = betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc.sqrt()
        })
        .collect();
    let (first, last) = (sqrt_bar[0], sqrt_bar[sqrt_bar.len() - 1]);
    let scale = first / (first - last);
    for s in &mut sqrt_bar {
        *s -= last;
        *s *= scale;
    }
    let bar: Vec<f64> = sqrt_bar.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    out.extend(bar.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}

/// `v` rounded to the floating `kind` and back to f32 (identity for Float).
fn round_to(kind: Kind, v: f32) -> f32 {
    round_all(kind, [v])[0]
}

/// Each value rounded to the floating `kind` (Float or Half) and back to f32.
pub(crate) fn round_all(kind: Kind, values: impl IntoIterator<Item = f32>) -> Vec<f32> {
    let values: Vec<f32> = values.into_iter().collect();
    if kind == Kind::Float {
        return values;
    }
    let rounded = Tensor::from_slice(&values).to_kind(kind).to_kind(Kind::Float);
    Vec::<f32>::try_from(rounded).unwrap_or(values)
}
