//! Parity of the noise schedule and the DDIM step with upstream (fixture `ddim`, written by
//! `tools/parity/diffusion_encoders.py` from CRM's `register_schedule`, `DDIMSampler.make_schedule`
//! and `p_sample_ddim` with a stand-in model output; see the script's docstring).

mod common;

use common::{assert_close, load_io};
use img3d_pipeline::diffusion::ddim::{guide, Ddim, Scheduler};
use img3d_pipeline::diffusion::{NoiseSchedule, ScheduleConfig};
use tch::{Kind, Tensor};

fn fixture() -> std::collections::HashMap<String, Tensor> {
    load_io("ddim")
}

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&ScheduleConfig::crm())
}

/// alphas_cumprod equals upstream's float32 buffer exactly, and ends at exactly zero (zero SNR).
#[test]
fn alphas_cumprod_match_upstream_exactly() {
    let io = fixture();
    let ours = Tensor::from_slice(schedule().alphas_cumprod());
    assert_close("alphas_cumprod", &ours, &io["alphas_cumprod"], 0.0);
    assert_eq!(schedule().alphas_cumprod()[999], 0.0);
}

/// The DDIM timesteps are 1, 21, ..., 981, visited from 981 down.
#[test]
fn timesteps_are_uniform_and_descending() {
    let io = fixture();
    let ddim = Ddim::new(&schedule(), 50, Kind::Float).unwrap();
    let mut ascending = ddim.timesteps().to_vec();
    ascending.reverse();
    assert_eq!(ascending, Vec::<i64>::try_from(&io["timesteps"]).unwrap());
    assert_eq!((ddim.timesteps()[0], ddim.timesteps()[49]), (981, 1));
}

/// One guided step matches p_sample_ddim at the first, a middle and the last step, with the
/// fp32 tables (CPU) and the fp16-rounded ones the fp16 model gives upstream on CUDA.
#[test]
fn guided_step_matches_p_sample_ddim() {
    let io = fixture();
    for (tag, precision) in [("f32", Kind::Float), ("f16", Kind::Half)] {
        let ddim = Ddim::new(&schedule(), 50, precision).unwrap();
        for index in [49usize, 25, 0] {
            let key = format!("{tag}_{index}");
            let x = &io[&format!("x_{key}")];
            // The stand-in model's output, in the dtype the UNet would return (fp16 under autocast).
            let model_out = io[&format!("model_out_{key}")].to_kind(precision);
            let eps = guide(&model_out, 5.5);
            // Upstream's `index` counts up the ascending tables; ours is the position in sampling order.
            let position = 49 - index;
            let pred_x0 = ddim.predict_x0(&eps, position, x);
            let x_prev = ddim.step(&eps, position, x);
            // Within a few float32 ulps of x0's magnitude: upstream takes sqrt(a_t) and
            // sqrt(1 - a_prev) with libtorch's vectorised CPU sqrt, which can be an ulp off the
            // correctly rounded one, and both scale terms of x0's size.
            let scale = io[&format!("pred_x0_{key}")].abs().max().double_value(&[]);
            let tol = 8.0 * f64::from(f32::EPSILON) * scale;
            assert_close(&format!("pred_x0 {key}"), &pred_x0, &io[&format!("pred_x0_{key}")], tol);
            assert_close(&format!("x_prev {key}"), &x_prev, &io[&format!("x_prev_{key}")], tol);
        }
    }
}

/// q_sample at t = 999 with fp16 buffers matches upstream (and is the noise itself: zero SNR).
#[test]
fn q_sample_at_last_step_is_pure_noise() {
    let io = fixture();
    let x = schedule().q_sample(&io["q_x0"], &io["q_noise"], 999, Kind::Half);
    assert_close("q_sample", &x, &io["q_sample_999_f16"], 0.0);
    assert_close("q_sample is noise", &x, &io["q_noise"], 0.0);
}

/// Step counts that do not divide 1000 follow upstream's range(); counts upstream cannot run are errors.
#[test]
fn step_counts() {
    assert_eq!(Ddim::new(&schedule(), 30, Kind::Float).unwrap().timesteps().len(), 31);
    assert_eq!(Ddim::new(&schedule(), 500, Kind::Float).unwrap().timesteps()[0], 999);
    assert!(Ddim::new(&schedule(), 501, Kind::Float).is_err());
    assert!(Ddim::new(&schedule(), 0, Kind::Float).is_err());
}
