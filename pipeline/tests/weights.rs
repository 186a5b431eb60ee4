//! Strict weight loading: a missing, unexpected or mis-shaped tensor is an error naming it.

use tch::{nn, nn::Module, Device, Kind, Tensor};

fn model(vs: &nn::Path<'_>) -> nn::Linear {
    nn::linear(vs / "proj", 3, 2, Default::default())
}

fn save(tensors: &[(&str, Tensor)]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    Tensor::write_safetensors(tensors, file.path()).unwrap();
    file
}

fn load(file: &tempfile::NamedTempFile) -> Result<nn::VarStore, img3d_pipeline::PipelineError> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _ = model(&vs.root());
    img3d_pipeline::weights::load_strict(&mut vs, file.path()).map(|()| vs)
}

/// A complete, well-shaped file loads and its values are used.
#[test]
fn loads_exact_file() {
    let w = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
    let file = save(&[("proj.weight", w), ("proj.bias", Tensor::ones([2], (Kind::Float, Device::Cpu)))]);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let lin = model(&vs.root());
    img3d_pipeline::weights::load_strict(&mut vs, file.path()).unwrap();
    let y = lin.forward(&Tensor::ones([1, 3], (Kind::Float, Device::Cpu)));
    assert_eq!(Vec::<f32>::try_from(y.view([-1])).unwrap(), vec![4.0, 13.0]);
}

/// Missing, unexpected and mis-shaped tensors are each reported by name.
#[test]
fn names_every_problem() {
    let f = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
    let missing = load(&save(&[("proj.weight", f(&[2, 3]))])).unwrap_err().to_string();
    assert!(missing.contains("missing") && missing.contains("proj.bias"), "{missing}");
    let extra = load(&save(&[("proj.weight", f(&[2, 3])), ("proj.bias", f(&[2])), ("extra.w", f(&[1]))]))
        .unwrap_err()
        .to_string();
    assert!(extra.contains("unexpected") && extra.contains("extra.w"), "{extra}");
    // [1] would broadcast into [2] under VarStore::load; strict loading refuses it.
    let shaped = load(&save(&[("proj.weight", f(&[2, 3])), ("proj.bias", f(&[1]))])).unwrap_err().to_string();
    assert!(shaped.contains("mis-shaped") && shaped.contains("proj.bias"), "{shaped}");
}
