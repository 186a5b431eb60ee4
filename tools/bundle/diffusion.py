"""The `diffusion` stage's bundle files (pipeline/src/diffusion/load.rs):

  diffusion_stage1.safetensors  from pixel-diffusion.pth
  diffusion_stage2.safetensors  from ccm-diffusion.pth
  constants.safetensors         diffusion.stage{1,2}.{context,uncond_context}: [1, 77, 1024]

Each stage file keeps upstream's checkpoint keys for what the Rust port runs: the UNet
(`model.diffusion_model.*`), the CLIP visual tower up to its penultimate block
(`clip_model.model.visual.*` without the last block, `ln_post` and `proj`) and the VAE
(`vae_model.*`). The text tower is used here, once, for the two constant contexts, and dropped.
"""

import re

from . import checkpoint
from .text_context import TextTower

UNET = "model.diffusion_model."
VISUAL = checkpoint.OPENCLIP_PREFIX + "visual."
VAE = "vae_model."
STAGE_COMPONENTS = {1: "diffusion_stage1", 2: "diffusion_stage2"}


def context_keys(stage):
    return f"diffusion.stage{stage}.context", f"diffusion.stage{stage}.uncond_context"


def visual_layers(state):
    blocks = {int(m.group(1)) for k in state if (m := re.match(re.escape(VISUAL) + r"transformer\.resblocks\.(\d+)\.", k))}
    if not blocks:
        raise ValueError(f"no CLIP visual tower ({VISUAL}transformer.resblocks.*) in the checkpoint")
    return max(blocks) + 1


def stage_weights(state):
    """(kept tensors, dropped key count by prefix) of one stage checkpoint."""
    last = visual_layers(state) - 1
    unused = (f"{VISUAL}transformer.resblocks.{last}.", f"{VISUAL}ln_post.", f"{VISUAL}proj")
    kept, dropped = {}, {}
    for key, value in state.items():
        if key.startswith((UNET, VAE)) or (key.startswith(VISUAL) and not key.startswith(unused)):
            kept[key] = value
        else:
            group = ".".join(key.split(".")[:2])
            dropped[group] = dropped.get(group, 0) + 1
    for prefix in (UNET, VISUAL, VAE):
        if not any(k.startswith(prefix) for k in kept):
            raise ValueError(f"the checkpoint has no {prefix}* weights")
    return kept, dropped


def convert_stage(stage, state, text_heads):
    """(component name, tensors, constants) of stage 1 or 2 from its (merged) checkpoint."""
    kept, dropped = stage_weights(state)
    text = {k[len(checkpoint.OPENCLIP_PREFIX):]: v for k, v in state.items() if k.startswith(checkpoint.OPENCLIP_PREFIX)}
    try:
        tower = TextTower(text, heads=text_heads)
    except ValueError as e:
        raise ValueError(
            f"{e}: the checkpoint does not hold the OpenCLIP text tower; pass --openclip with "
            "open_clip's ViT-H-14 laion2b_s32b_b79k weights (open_clip_pytorch_model.bin), which "
            "upstream loads under the checkpoint"
        ) from None
    context, uncond = tower.contexts()
    cond_key, uncond_key = context_keys(stage)
    summary = ", ".join(f"{k}.* x{n}" for k, n in sorted(dropped.items()))
    print(f"  stage {stage}: kept {len(kept)} tensors; text tower: {tower.layers} blocks, width "
          f"{tower.width}, {tower.heads} heads; dropped: {summary or 'nothing'}")
    return STAGE_COMPONENTS[stage], kept, {cond_key: context, uncond_key: uncond}


def convert(inputs, options):
    """Every file of the `diffusion` stage: (components {name: tensors}, constants)."""
    components, constants = {}, {}
    for stage, flag in ((1, "pixel"), (2, "ccm")):
        print(f"converting {inputs[flag]} (stage {stage})")
        state = checkpoint.with_openclip(checkpoint.load_state_dict(inputs[flag]), options.openclip)
        name, tensors, consts = convert_stage(stage, state, options.text_heads)
        components[name] = tensors
        constants.update(consts)
    return components, constants
