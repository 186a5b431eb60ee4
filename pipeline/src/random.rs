//! Seeded random weights, the same on every machine: the tiny bundle's and the benchmarks'.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Fills every floating variable of `vs` with seeded normal noise of deviation `std`, the same
/// values on every machine and in every thread (each variable draws from its own stream, seeded
/// by `seed` and its name). Norm scales (1-D `weight`) are `1 + noise` and batch-norm variances
/// `1 + |noise|`, so activations stay finite; upstream zero-inits some output layers, which the
/// noise replaces so every weight matters.
pub fn randomize(vs: &VarStore, seed: u64, std: f64) {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        if !var.is_floating_point() {
            continue;
        }
        let numel = var.numel();
        let mut rng = SplitMix64(seed ^ fnv1a(name.as_bytes()));
        let noise: Vec<f32> = (0..numel).map(|_| (rng.normal() * std) as f32).collect();
        let noise = Tensor::from_slice(&noise).view(var.size().as_slice());
        let value = if name.ends_with("running_var") {
            noise.abs() + 1.0
        } else if name.ends_with("weight") && var.dim() == 1 {
            noise + 1.0
        } else {
            noise
        };
        var.copy_(&value.to_kind(Kind::Float));
    }
}

/// FNV-1a, 64 bit: a stable hash for seeds and versions (std's hasher is not stable).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64 with Box-Muller normals: small, portable and reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
