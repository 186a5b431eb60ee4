//! Decoding the triplane features at 3-D points: the bilinear `grid_sample` of the three planes
//! summed (`TetTexNet`, `model/archs/decoders/shape_texture_net.py`, with `fea_concat` false as
//! CRM's config has it), and the heads on top (`SdfMlp`, `RgbMlp` in `model/archs/mlp_head.py`,
//! `weightMlp` in `model/crm/model.py`), thu-ml/CRM at 4964e36.

use tch::{nn, nn::Module, Tensor};

/// Samples the rolled-out triplane `[B, C, R, 3R]` (planes xy, yz, zx side by side) at `points`
/// `[B, N, 3]` (coordinates in [-1, 1]; bilinear, border padding, aligned corners) and sums the
/// three planes' features: `[B, N, C]`.
pub fn sample_triplane(features: &Tensor, points: &Tensor) -> Tensor {
    let r = features.size()[2];
    let plane = |i: i64| features.narrow(3, i * r, r);
    // (plane, the two coordinates it is indexed by: grid x then grid y)
    let axes: [(i64, [i64; 2]); 3] = [(0, [0, 1]), (1, [1, 2]), (2, [2, 0])];
    let mut sum: Option<Tensor> = None;
    for (i, [a, b]) in axes {
        let grid = Tensor::stack(&[points.select(2, a), points.select(2, b)], 2).unsqueeze(2);
        // grid_sampler(input, grid, interpolation 0 = bilinear, padding 1 = border, align_corners)
        let sampled = plane(i).grid_sampler(&grid, 0, 1, true).squeeze_dim(-1);
        sum = Some(match sum {
            None => sampled,
            Some(s) => s + sampled,
        });
    }
    sum.expect("three planes").permute([0, 2, 1])
}

/// `Linear -> ReLU -> Linear -> ReLU -> Linear` (keys `fc1`, `fc2`, `fc3`): `SdfMlp` (4 outputs:
/// SDF and deformation) and `RgbMlp` (3 outputs: colour in [-1, 1]).
pub struct Mlp3 {
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

impl Mlp3 {
    /// `input -> hidden -> hidden -> output`, with or without biases (`mlp_bias`).
    pub fn new(vs: &nn::Path<'_>, input: i64, hidden: i64, output: i64, bias: bool) -> Self {
        let cfg = nn::LinearConfig { bias, ..Default::default() };
        Mlp3 {
            fc1: nn::linear(vs / "fc1", input, hidden, cfg),
            fc2: nn::linear(vs / "fc2", hidden, hidden, cfg),
            fc3: nn::linear(vs / "fc3", hidden, output, cfg),
        }
    }

    /// Applies the MLP to the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc3.forward(&self.fc2.forward(&self.fc1.forward(xs).relu()).relu())
    }
}

/// `weightMlp`: `Linear -> SiLU -> Linear` (keys `0`, `2`) from the features of a cube's eight
/// corners to its 21 FlexiCubes weights (12 edge betas, 8 corner alphas, 1 split gamma).
pub struct WeightMlp {
    l0: nn::Linear,
    l2: nn::Linear,
}

impl WeightMlp {
    /// `8 * channels -> hidden -> 21`.
    pub fn new(vs: &nn::Path<'_>, channels: i64, hidden: i64) -> Self {
        WeightMlp {
            l0: nn::linear(vs / "0", 8 * channels, hidden, Default::default()),
            l2: nn::linear(vs / "2", hidden, 21, Default::default()),
        }
    }

    /// Applies the MLP to the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.l2.forward(&self.l0.forward(xs).silu())
    }
}
