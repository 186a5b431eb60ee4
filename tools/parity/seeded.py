"""Seeded weights: full-size random weights that both sides rebuild, so none is ever stored.

The full-size fixtures (tools/fullsize/fixtures.py) and the Rust tests
(pipeline/tests/common/seeded.rs) make every tensor of a state dict the same way:

  seed   = the first 8 bytes of SHA-256(key name, UTF-8), little-endian, shifted right by one
           (a non-negative i64, so both sides pass the same value to libtorch)
  torch.manual_seed(seed); x = torch.randn(shape)      (fp32, CPU, the default generator)
  then, by the key's last component and rank:
    running_var             |x| * 0.5 + 0.5          (positive, as trained variances are)
    running_mean            x * 0.1
    weight, rank 1          x * 0.1 + 1.0            (norm scales near 1)
    bias                    x * 0.1
    weight, rank >= 2       x * (1 / sqrt(fan_in))   (fan_in = product of all dims but the first)
    anything else           x * 0.5                  (learned planes, embeddings)

PyTorch and tch run the same libtorch (2.11.0; the img3d torch venv), whose CPU generator and
randn kernels are the same code, so the values are bit-equal (pipeline/tests/fullsize.rs checks
that against seeded_probe.io.safetensors written here). Integer buffers (num_batches_tracked)
are not part of the scheme; fixtures drop them.
"""

import hashlib
import json
import math
import os

import torch

import common


def key_seed(key):
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seeded_tensor(key, shape):
    shape = [int(d) for d in shape]
    torch.manual_seed(key_seed(key))
    x = torch.randn(shape, dtype=torch.float32)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return x.abs() * 0.5 + 0.5
    if leaf == "running_mean":
        return x * 0.1
    if leaf == "weight" and len(shape) == 1:
        return x * 0.1 + 1.0
    if leaf == "bias":
        return x * 0.1
    if leaf == "weight" and len(shape) >= 2:
        return x * (1.0 / math.sqrt(math.prod(shape[1:])))
    return x * 0.5


@torch.no_grad()
def apply(module, skip=lambda key: False):
    """Overwrites every floating tensor of `module`'s state dict with its seeded value; returns
    the [key, shape] list in state-dict order (what the Rust side rebuilds)."""
    keys = []
    for key, tensor in module.state_dict(keep_vars=True).items():
        if not tensor.is_floating_point() or skip(key):
            continue
        tensor.data.copy_(seeded_tensor(key, tensor.shape))
        keys.append([key, list(tensor.shape)])
    return keys


def save_keys(name, keys):
    """Writes NAME.keys.json: the state dict's [key, shape] list, in upstream's order."""
    path = os.path.normpath(os.path.join(common.DATA_DIR, f"{name}.keys.json"))
    with open(path, "w") as f:
        json.dump(keys, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB, {len(keys)} keys)")


def probe():
    """The scheme on a few keys and shapes (every rule, sizes below and above randn's
    vectorised threshold of 16), for the bit-equality test."""
    keys = [
        ["a.conv.weight", [64, 3, 3, 3]],
        ["a.conv.bias", [64]],
        ["b.norm.weight", [7]],
        ["b.bn.running_mean", [15]],
        ["b.bn.running_var", [16]],
        ["c.learned_plane", [1, 4, 5, 33]],
        ["d.linear.weight", [21, 512]],
        ["e.scalar_like", [1]],
    ]
    tensors = {k: seeded_tensor(k, s) for k, s in keys}
    common.save_io("seeded_probe", tensors)
    save_keys("seeded_probe", keys)


if __name__ == "__main__":
    probe()
