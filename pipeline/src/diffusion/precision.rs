//! The diffusion's precision: fp16 on CUDA as upstream, fp32 on the CPU.

use tch::{Device, Kind, Tensor};

/// The compute dtype on `device`: fp16 on CUDA as upstream (`TwoStagePipeline(dtype=float16)`,
/// group norms in fp32), fp32 on the CPU.
pub fn precision_for(device: Device) -> Kind {
    if device.is_cuda() {
        Kind::Half
    } else {
        Kind::Float
    }
}

/// Runs `f` the way upstream runs its diffusion model on CUDA: `TwoStagePipeline` casts the
/// model to fp16 and samples under `torch.autocast`, so convolutions and matmuls run in fp16
/// while GroupNorm, LayerNorm and softmax run in fp32. Autocast is entered when `weight` (any
/// weight of the module) is half precision on a CUDA device; otherwise `f` runs as is (fp32).
pub fn autocast_for<T>(weight: &Tensor, f: impl FnOnce() -> T) -> T {
    if weight.kind() == Kind::Half && weight.device().is_cuda() {
        tch::autocast(true, f)
    } else {
        f()
    }
}
