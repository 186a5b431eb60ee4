"""Reading the official checkpoints: PyTorch `.pth`/`.bin` state dicts (loaded with
`weights_only=True`, so a downloaded file cannot run code, and memory-mapped, so a 5 GB file is
not read into memory at once) and safetensors files."""

import os

import torch
from safetensors.torch import load_file

# Where upstream's `LatentDiffusionInterface` holds its OpenCLIP model
# (`FrozenOpenCLIPEmbedder.model`).
OPENCLIP_PREFIX = "clip_model.model."


def load_state_dict(path):
    """name -> tensor of a checkpoint file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # Old-format (non-zip) files cannot be memory-mapped.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        # (torch's own message suggests weights_only=False, which would run code from the file.)
        raise ValueError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}): truncated, corrupt or not a checkpoint") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state


def with_openclip(state, openclip_path):
    """Upstream builds each diffusion model with open_clip's pretrained ViT-H-14 weights
    (laion2b_s32b_b79k) and then loads the stage checkpoint over it with `strict=False`. So the
    effective CLIP weights are the open_clip file's, replaced by whatever the checkpoint itself
    holds under `clip_model.model.`. Without `openclip_path` only the checkpoint counts."""
    if openclip_path is None:
        return dict(state)
    merged = {OPENCLIP_PREFIX + k: v for k, v in load_state_dict(openclip_path).items()}
    merged.update(state)
    return merged
