//! Full-size parity with upstream, weights rebuilt from a seed (none stored).
//!
//! Each fixture (`tools/fullsize/fixtures.py`, from upstream's code at thu-ml/CRM 4964e36 and
//! rembg's U-2-Net) commits upstream's state-dict keys and shapes, the inputs and upstream's
//! outputs (or a fixed subset of them and their sums); `common::seeded` rebuilds every weight
//! from its key name exactly as the fixture script did (`tools/parity/seeded.py`). Errors are
//! measured relative to the output's scale (max |expected|).
//!
//! The quick ones run in every test run; the slow ones are `#[ignore]`d and run by
//! `tools/fullsize/run`.

mod common;

use common::seeded;
use tch::Kind;

/// The seeded scheme gives bit-equal tensors in PyTorch and in tch (the same libtorch): every
/// rule of the scheme, sizes on both sides of randn's vectorised path.
#[test]
fn seeded_weights_are_bit_equal_to_pytorch() {
    let io = common::load_io("seeded_probe");
    let keys = seeded::read_keys("seeded_probe");
    assert_eq!(keys.len(), io.len());
    for (key, shape) in keys {
        let ours = seeded::seeded_tensor(&key, &shape);
        let theirs = &io[&key];
        assert_eq!(ours.size(), theirs.size(), "{key}");
        assert_eq!(ours.kind(), Kind::Float);
        let same = ours.eq_tensor(theirs).all().int64_value(&[]) == 1;
        assert!(same, "{key}: seeded values differ from PyTorch's");
    }
    // The seed depends on the key: two keys, two tensors.
    let a = seeded::seeded_tensor("x.bias", &[8]);
    let b = seeded::seeded_tensor("y.bias", &[8]);
    assert!(!a.equal(&b));
}
