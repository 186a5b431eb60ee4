//! Seeded Gaussian noise for the samplers, the same on every device and in every thread.
//!
//! Upstream draws its noise from torch's global generator and never seeds it (`set_seed` is
//! only called by `diffuse`, which the app does not use), so its output is not reproducible.
//! Here every draw comes from a generator owned by the job, seeded from the bundle's seed and a
//! stream name: the same image and seed give the same bytes, whatever else runs in the process
//! (tch's global generator is shared by all threads). Values are made on the host (a few
//! hundred kilobytes per stage) and uploaded once, before the sampling loop.

use tch::{Device, Kind, Tensor};

/// SplitMix64 (Steele et al. 2014) with Box-Muller normals: small, portable, reproducible.
#[derive(Debug, Clone)]
pub struct NoiseSource {
    state: u64,
}

impl NoiseSource {
    /// A generator for `stream` (e.g. `"stage1"`) of `seed`: distinct streams are independent.
    pub fn new(seed: u64, stream: &str) -> Self {
        let mut source = NoiseSource { state: seed ^ fnv1a(stream.as_bytes()) };
        // decorrelate nearby seeds before the first draw
        source.next_u64();
        source
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// `n` standard normal samples.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let (u1, u2) = (self.uniform(), self.uniform());
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = 2.0 * std::f64::consts::PI * u2;
            out.push((r * theta.cos()) as f32);
            out.push((r * theta.sin()) as f32);
        }
        out.truncate(n);
        out
    }

    /// A standard normal fp32 tensor of `shape` on `device`.
    pub fn randn(&mut self, shape: &[i64], device: Device) -> Tensor {
        let n = shape.iter().product::<i64>() as usize;
        Tensor::from_slice(&self.normals(n)).view(shape).to_kind(Kind::Float).to_device(device)
    }
}

/// FNV-1a, 64 bit (std's hasher is not stable across releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
