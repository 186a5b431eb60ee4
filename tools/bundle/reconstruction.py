"""The `reconstruction` stage's bundle file (pipeline/src/recon/load.rs):

  reconstruction.safetensors  from CRM.pth, fp32

It holds CRM.pth's keys under their own names for everything the reconstruction runs:
`unet2.learned_plane` and `unet2.unet.*` (upstream's `UNetPP`: a diffusers `UNet2DModel`),
`sdfMlp.*`, `rgbMlp.*` and `weightMlp.*`. Anything else in the file is dropped and listed.
Upstream runs CRM in fp32 (it is loaded without a dtype), so the weights are stored as fp32.

The shapes are checked against the config's `stages.reconstruction` (`ReconConfig`: `unet`
with `in_channels`, `out_channels`, `block_out_channels`, `down_attention`, `up_attention`, `layers_per_block`,
`mlp_hidden`, `mlp_bias`) before anything is written, so a checkpoint that does not fit the
build fails here with the key's name rather than at the worker's strict load.
"""

import torch

from . import checkpoint

NAME = "reconstruction"
COMPONENT = "reconstruction"
PREFIXES = ("unet2.", "sdfMlp.", "rgbMlp.", "weightMlp.")
UNET = "unet2.unet."
# The triplane the UNet runs on: three 256 x 256 planes side by side (upstream's
# `UNetPP.learned_plane` is [1, in_channels - 12, 256, 256 * 3]).
PLANE = (256, 768)
TRIPLANE_CHANNELS = 12
# weightMlp reads the features of a cube's 8 corners and gives FlexiCubes' 21 weights.
CUBE_CORNERS = 8
FLEXICUBES_WEIGHTS = 21


def select(state):
    """(kept tensors as fp32, dropped key count by first name part)."""
    kept, dropped = {}, {}
    for key, value in state.items():
        if key.startswith(PREFIXES):
            kept[key] = value.float() if value.is_floating_point() else value
        else:
            group = key.split(".")[0]
            dropped[group] = dropped.get(group, 0) + 1
    for prefix in PREFIXES:
        if not any(k.startswith(prefix) for k in kept):
            raise ValueError(f"the checkpoint has no {prefix}* weights (is it CRM.pth?)")
    return kept, dropped


def expected_shapes(cfg):
    """Shapes of the keys that pin down the architecture, from a `ReconConfig`."""
    unet, hidden = cfg["unet"], cfg["mlp_hidden"]
    # UNetPP's input (c_dim: triplane + learned plane) and output (the features the heads read).
    c_in, channels, blocks = unet["in_channels"], unet["out_channels"], unet["block_out_channels"]
    shapes = {
        "unet2.learned_plane": [1, c_in - TRIPLANE_CHANNELS, *PLANE],
        UNET + "conv_in.weight": [blocks[0], c_in, 3, 3],
        UNET + "conv_out.weight": [channels, blocks[0], 3, 3],
        UNET + "time_embedding.linear_1.weight": [4 * blocks[0], blocks[0]],
        UNET + "mid_block.resnets.0.conv1.weight": [blocks[-1], blocks[-1], 3, 3],
        "sdfMlp.fc1.weight": [hidden, channels],
        "sdfMlp.fc2.weight": [hidden, hidden],
        "sdfMlp.fc3.weight": [4, hidden],
        "rgbMlp.fc1.weight": [hidden, channels],
        "rgbMlp.fc2.weight": [hidden, hidden],
        "rgbMlp.fc3.weight": [3, hidden],
        "weightMlp.0.weight": [hidden, channels * CUBE_CORNERS],
        "weightMlp.2.weight": [FLEXICUBES_WEIGHTS, hidden],
    }
    previous = blocks[0]
    for level, width in enumerate(blocks):
        shapes[f"{UNET}down_blocks.{level}.resnets.0.conv1.weight"] = [width, previous, 3, 3]
        shapes[f"{UNET}down_blocks.{level}.resnets.{unet['layers_per_block'] - 1}.conv2.weight"] = [width, width, 3, 3]
        previous = width
    for level, width in enumerate(reversed(blocks)):
        shapes[f"{UNET}up_blocks.{level}.resnets.{unet['layers_per_block']}.conv2.weight"] = [width, width, 3, 3]
    return shapes


def check(kept, cfg, path):
    """Raises ValueError naming the first key that does not fit `cfg`."""
    problems = []
    for key, shape in expected_shapes(cfg).items():
        if key not in kept:
            problems.append(f"{key} is missing")
        elif list(kept[key].shape) != shape:
            problems.append(f"{key} is {list(kept[key].shape)}, the config says {shape}")
    unet = cfg["unet"]
    for kind, flags in (("down", unet["down_attention"]), ("up", unet["up_attention"])):
        for level, wanted in enumerate(flags):
            has = any(k.startswith(f"{UNET}{kind}_blocks.{level}.attentions.") for k in kept)
            if has != wanted:
                problems.append(f"{UNET}{kind}_blocks.{level} {'has' if has else 'lacks'} attention, the config says {'it has' if wanted else 'none'}")
        if any(k.startswith(f"{UNET}{kind}_blocks.{len(flags)}.") for k in kept):
            problems.append(f"{UNET}{kind}_blocks.{len(flags)} exists, the config has {len(flags)} levels")
    for mlp in ("sdfMlp", "rgbMlp"):
        has_bias = f"{mlp}.fc1.bias" in kept
        if has_bias != cfg["mlp_bias"]:
            problems.append(f"{mlp} {'has' if has_bias else 'lacks'} biases, the config says mlp_bias {cfg['mlp_bias']}")
    if problems:
        raise ValueError(f"{path} does not fit this build's reconstruction config: " + "; ".join(problems))


def convert(inputs, options, config):
    """The `reconstruction` stage: (components {name: tensors}, constants)."""
    path = inputs["crm"]
    print(f"converting {path} (reconstruction)")
    kept, dropped = select(checkpoint.load_state_dict(path))
    try:
        check(kept, config["stages"][NAME], path)
    except KeyError as e:
        raise ValueError(f"stages.{NAME} of the config lacks {e}: is this converter older than the build?") from None
    summary = ", ".join(f"{k}.* x{n}" for k, n in sorted(dropped.items()))
    print(f"  reconstruction: kept {len(kept)} tensors (fp32); dropped: {summary or 'nothing'}")
    return {COMPONENT: kept}, {}
