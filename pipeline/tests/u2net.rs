//! U-2-Net parity with upstream `U-2-Net/model/u2net.py` on the same random weights
//! (fixture: `tools/parity/u2net.py`).

mod common;

use img3d_pipeline::config::{RsuWidth, U2netConfig};
use img3d_pipeline::u2net::U2net;
use tch::{Kind, Tensor};

fn widths(t: &Tensor) -> Vec<RsuWidth> {
    let v = Vec::<i64>::try_from(t.to_kind(Kind::Int64).view([-1])).unwrap();
    v.chunks(2).map(|c| RsuWidth { mid: c[0], out: c[1] }).collect()
}

/// All seven outputs match upstream (fp32 CPU, <= 1e-5 after the sigmoid) with unequal block
/// widths, odd input sizes, and the weights loaded strictly under upstream's key names.
#[test]
fn matches_upstream() {
    let io = common::load_io("u2net");
    let cfg = U2netConfig {
        encoder: widths(&io["config.encoder"]).try_into().unwrap(),
        decoder: widths(&io["config.decoder"]).try_into().unwrap(),
        ..U2netConfig::u2net()
    };
    let mut vs = common::cpu_vs();
    let net = U2net::new(&vs.root(), &cfg);
    common::load_weights(&mut vs, "u2net");
    let outs = tch::no_grad(|| net.forward_all(&io["input"]));
    assert_eq!(outs.len(), 7);
    for (i, out) in outs.iter().enumerate() {
        let expected = &io[&format!("d{i}")];
        // The maps must carry signal, or agreement would prove little.
        assert!(expected.std(true).double_value(&[]) > 1e-3, "d{i} is flat");
        common::assert_close(&format!("d{i}"), out, expected, 1e-5);
    }
}
