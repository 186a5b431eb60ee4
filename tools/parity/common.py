"""Shared helpers for the parity fixture scripts (tools/parity/*.py).

Each script imports the upstream modules from a checkout given on the command line (never
committed here), builds them at tiny width, gives them deterministic random weights, runs them
on fixed inputs, and writes two files per fixture under pipeline/tests/data/:

  NAME.weights.safetensors   the module's state dict (upstream key names), fp32
  NAME.io.safetensors        named inputs and outputs of one forward pass, fp32 (or int64)

The Rust parity tests (pipeline/tests/*.rs, helpers in pipeline/tests/common/mod.rs) load the
same weights strictly and compare outputs.
"""

import os
import sys

import torch
from safetensors.torch import save_file

# IMG3D_FIXTURE_DIR writes elsewhere (tools/fullsize/compare: fresh upstream timings into a
# scratch copy, the committed fixtures untouched).
DATA_DIR = os.environ.get("IMG3D_FIXTURE_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "pipeline", "tests", "data"
)


def add_upstream(path):
    """Makes an upstream checkout importable (e.g. thu-ml/CRM at 4964e36)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        sys.exit(f"upstream checkout not found: {path}")
    if path not in sys.path:
        sys.path.insert(0, path)


def seed_all(seed):
    torch.manual_seed(seed)


@torch.no_grad()
def randomize(module, seed, std=0.2):
    """Overwrites every parameter and floating buffer with seeded normal noise.

    Upstream initialisers zero some layers (zero_module on output convolutions and
    transformer proj_out), which would make a parity test pass trivially; random values
    everywhere make every weight matter. Norm scales are kept near 1 so activations stay sane.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float32) * std
        leaf = name.rsplit(".", 1)[-1]
        is_norm_scale = leaf == "weight" and tensor.dim() == 1 and "norm" in name.lower()
        tensor.copy_((1.0 + noise) if is_norm_scale else noise)
    return module


def _contiguous(tensors):
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.float()
        out[k] = v.contiguous()
    return out


def save_weights(name, module_or_state_dict, prefix_strip=""):
    """Writes NAME.weights.safetensors from a module or state dict."""
    sd = module_or_state_dict.state_dict() if hasattr(module_or_state_dict, "state_dict") else module_or_state_dict
    if prefix_strip:
        sd = {k[len(prefix_strip):]: v for k, v in sd.items() if k.startswith(prefix_strip)}
    _save(_contiguous(dict(sd)), f"{name}.weights.safetensors")


def save_io(name, tensors):
    """Writes NAME.io.safetensors from a dict of named tensors."""
    _save(_contiguous(tensors), f"{name}.io.safetensors")


def _save(tensors, file):
    os.makedirs(DATA_DIR, exist_ok=True)
    path = os.path.normpath(os.path.join(DATA_DIR, file))
    save_file(tensors, path)
    size = os.path.getsize(path)
    print(f"wrote {path} ({size / 1024:.0f} KiB, {len(tensors)} tensors)")
    if size > 4 * 1024 * 1024:
        print(f"warning: {file} is over 4 MiB; shrink the tiny config", file=sys.stderr)


def install_xformers_shim():
    """Stands in for xformers (not installable here): upstream's MemoryEfficientCrossAttention
    calls `xformers.ops.memory_efficient_attention`, computed plainly (softmax attention,
    no bias), the same maths on the CPU."""
    import types

    xformers = types.ModuleType("xformers")
    ops = types.ModuleType("xformers.ops")

    def memory_efficient_attention(q, k, v, attn_bias=None, op=None):
        assert attn_bias is None
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return scores.softmax(dim=-1) @ v

    ops.memory_efficient_attention = memory_efficient_attention
    xformers.ops = ops
    sys.modules["xformers"] = xformers
    sys.modules["xformers.ops"] = ops
