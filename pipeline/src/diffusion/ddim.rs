//! DDIM sampling (Song et al. 2021, "Denoising Diffusion Implicit Models") with eta = 0 and
//! epsilon prediction, and classifier-free guidance (Ho & Salimans 2022).
//!
//! Port of `DDIMSampler.make_schedule` / `p_sample_ddim` (`imagedream/ldm/models/diffusion/
//! ddim.py`) and `make_ddim_timesteps` / `make_ddim_sampling_parameters`
//! (`imagedream/ldm/modules/diffusionmodules/util.py`), CRM 4964e36:
//! - timesteps "uniform": `range(0, 1000, 1000 // steps) + 1`, i.e. 1, 21, ..., 981 for 50
//!   steps, visited from the last to the first;
//! - `pred_x0 = (x - sqrt(1 - a_t) * eps) / sqrt(a_t)`,
//!   `x_prev = sqrt(a_prev) * pred_x0 + sqrt(1 - a_prev) * eps` (sigma = 0, so upstream's
//!   noise term is exactly zero);
//! - guidance: the model runs once on `cat(uncond, cond)`; `uncond + scale * (cond - uncond)`.
//!
//! The tables are computed once on the host with upstream's rounding (fp16 when the model is
//! fp16, see [`Ddim::new`]); a step is a few scalar-tensor ops on the device, no host sync.

use tch::{Kind, Tensor};

use super::schedule::{round_all, NoiseSchedule};
use crate::PipelineError;

/// A sampler: which timesteps the model is evaluated at and how a step updates the latents.
pub trait Scheduler {
    /// Training timesteps to evaluate the model at, in sampling order (981, 961, ..., 1).
    fn timesteps(&self) -> &[i64];

    /// One denoising step: `xs` is the latent at position `index` of [`Self::timesteps`],
    /// `eps` the (guided) noise prediction there; returns the latent for the next position
    /// (after the last, the sample).
    fn step(&self, eps: &Tensor, index: usize, xs: &Tensor) -> Tensor;
}

/// The DDIM sampler with eta = 0.
#[derive(Debug, Clone)]
pub struct Ddim {
    /// The step count it was made for (upstream's `range` may give one timestep more).
    steps: usize,
    /// In sampling order.
    timesteps: Vec<i64>,
    /// Per position in sampling order: `a_t`, `a_prev`, `sqrt(1 - a_t)` as upstream holds them.
    alphas: Vec<f32>,
    alphas_prev: Vec<f32>,
    sqrt_one_minus_alphas: Vec<f32>,
}

impl Ddim {
    /// The sampler for `steps` uniform steps over `schedule`. `precision` is the dtype the model
    /// (and with it upstream's schedule buffers) is cast to: `Kind::Half` on CUDA as upstream,
    /// where `a_t` and `sqrt(1 - a_t)` come out fp16-rounded (`a_1` = 0.99805 instead of
    /// 0.99829); `Kind::Float` on the CPU.
    pub fn new(schedule: &NoiseSchedule, steps: usize, precision: Kind) -> Result<Self, PipelineError> {
        let n = schedule.len();
        // Upstream's last timestep is (n / steps) * (k - 1) + 1; it indexes past the schedule
        // (IndexError upstream) when n / steps == 1, i.e. for more than n / 2 steps.
        if steps == 0 || steps > n / 2 {
            return Err(PipelineError::Internal(format!("DDIM steps must be in 1..={}, got {steps}", n / 2)));
        }
        if !matches!(precision, Kind::Float | Kind::Half) {
            return Err(PipelineError::Internal(format!(
                "DDIM tables in {precision:?}: expected Float or Half"
            )));
        }
        // make_ddim_timesteps("uniform"): as many as range() gives (50 for 50 steps).
        let ascending: Vec<i64> = (0..n).step_by(n / steps).map(|t| t as i64 + 1).collect();
        // make_ddim_sampling_parameters reads the model's (possibly fp16) alphas_cumprod.
        let ac = schedule.alphas_cumprod();
        let alphas = round_all(precision, ascending.iter().map(|&t| ac[t as usize]));
        // np.sqrt(1.0 - ddim_alphas): the difference in the table's dtype, then numpy's sqrt (a
        // correctly rounded float32 sqrt, which Rust's is too and libtorch's vectorised CPU
        // sqrt is not), rounded to the table's dtype.
        let one_minus = round_all(precision, alphas.iter().map(|a| 1.0 - a));
        let sqrt_one_minus = round_all(precision, one_minus.iter().map(|v| v.sqrt()));
        let ac0 = round_all(precision, [ac[0]])[0];
        let alphas_prev: Vec<f32> =
            std::iter::once(ac0).chain(alphas[..alphas.len() - 1].iter().copied()).collect();
        // Stored in sampling order (upstream indexes the ascending tables by total - i - 1).
        let rev = |v: Vec<f32>| v.into_iter().rev().collect::<Vec<_>>();
        Ok(Ddim {
            steps,
            timesteps: ascending.into_iter().rev().collect(),
            alphas: rev(alphas),
            alphas_prev: rev(alphas_prev),
            sqrt_one_minus_alphas: rev(sqrt_one_minus),
        })
    }

    /// The step count it was made for.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The prediction of x0 at position `index` (upstream's `pred_x0`).
    pub fn predict_x0(&self, eps: &Tensor, index: usize, xs: &Tensor) -> Tensor {
        let eps = eps.to_kind(xs.kind());
        // Upstream multiplies by (b,1,1,1) float32 tensors filled with these values; a scalar
        // holding the same float32 value gives the same products.
        let sqrt_a = self.alphas[index].sqrt();
        (xs - eps * f64::from(self.sqrt_one_minus_alphas[index])) / f64::from(sqrt_a)
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn step(&self, eps: &Tensor, index: usize, xs: &Tensor) -> Tensor {
        let pred_x0 = self.predict_x0(eps, index, xs);
        let a_prev = self.alphas_prev[index];
        // sigma_t = 0 with eta = 0: the direction term is sqrt(1 - a_prev) * eps.
        let dir = (1.0f32 - a_prev).sqrt();
        pred_x0 * f64::from(a_prev.sqrt()) + eps.to_kind(xs.kind()) * f64::from(dir)
    }
}

/// Classifier-free guidance on a model output computed for `cat(uncond, cond)` along the batch
/// (upstream's layout): `uncond + scale * (cond - uncond)`, in the output's dtype.
pub fn guide(model_out: &Tensor, scale: f64) -> Tensor {
    let halves = model_out.chunk(2, 0);
    cfg_combine(&halves[0], &halves[1], scale)
}

/// `uncond + scale * (cond - uncond)`.
pub fn cfg_combine(uncond: &Tensor, cond: &Tensor, scale: f64) -> Tensor {
    uncond + (cond - uncond) * scale
}
