#!/usr/bin/env python3
"""Tiny stand-ins for the official checkpoints, in their formats and key layouts.

    ~/.cache/img3d/parity/bin/python tools/parity/checkpoints.py --crm /work/upstream/CRM

(thu-ml/CRM at 4964e36; the parity venv with open-clip-torch 2.7.0, omegaconf, einops,
diffusers 0.24.) Writes under pipeline/tests/data/checkpoints/:

  pixel-diffusion.pth   `torch.save(model.state_dict())` of upstream's
                        `LatentDiffusionInterface` built by its own `__init__` from the stage-1
                        config (imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml) at tiny width:
                        `model.diffusion_model.*` (MultiViewUNetModel), `clip_model.model.*`
                        (the whole open_clip CLIP: visual and text towers), `vae_model.*`
                        (AutoencoderKL) and the schedule buffers (`betas`, ...), as upstream's
                        checkpoint holds them
  ccm-diffusion.pth     the same for stage 2 (MultiViewUNetModelStage2, 8 input channels)
  CRM.pth               the state dict of a module laid out as upstream's `CRM.__init__`
                        builds it (`unet2` = upstream `UNetPP` around a narrower diffusers
                        UNet2DModel with c_dim in and out channels, `decoder` = TetTexNet without weights, `weightMlp`,
                        `sdfMlp`, `rgbMlp`); the `CRM` class itself imports nvdiffrast and
                        downloads a scheduler, so its parts are assembled here in its order
  expected.safetensors  what the converter must produce from them that is not a copy:
                        `stage{1,2}.context` / `stage{1,2}.uncond_context`, upstream's
                        `FrozenOpenCLIPEmbedder.encode` (penultimate layer, open_clip's own
                        tokenizer) of "3D assets" and the negative prompt on each checkpoint

The widths are those of pipeline/tests/convert.rs `fixture_config()` (keep them in step):
the diffusion stages are `DiffusionConfig::tiny()` with 32 channels at every UNet and VAE
level and a 4-wide text context (a 4-wide text tower keeps the 49408-row token embedding
small; one head), the reconstruction has 13
channels (a one-channel learned plane at the real 256 x 768). Weights are random
(common.randomize) and stored as fp16 values (both sides compute in fp32 with exactly those
values), so the three checkpoints stay under 5 MB together. Rerunning rewrites the same files (fixed seeds).

pipeline/tests/convert.rs converts them with tools/convert.py and checks the bundle against
them; worker/tests/model_source.rs serves them over loopback HTTP as a model source.
"""

import argparse
import os
import sys
import types

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT_DIR = os.path.join(common.DATA_DIR, "checkpoints")

# DiffusionConfig::tiny() (pipeline/src/diffusion/mod.rs) with channel_mult [1, 1] and
# context_dim 4.
CONTEXT = 4
TINY_UNET = dict(
    image_size=32,
    out_channels=4,
    model_channels=32,
    attention_resolutions=[2],
    num_res_blocks=1,
    channel_mult=[1, 1],
    num_head_channels=16,
    use_spatial_transformer=True,
    use_linear_in_transformer=True,
    transformer_depth=1,
    context_dim=CONTEXT,
    use_checkpoint=False,
    legacy=False,
    camera_dim=16,
    with_ip=True,
    ip_dim=16,
    ip_mode="local_resample",
)
CLIP_WIDTH = 32
# ResamplerConfig of DiffusionConfig::tiny(), output_dim = the context width.
TINY_RESAMPLER = dict(dim=32, depth=2, dim_head=16, heads=2, num_queries=16, embedding_dim=CLIP_WIDTH, output_dim=CONTEXT, ff_mult=4)
# ClipVisionConfig::tiny() (224, patch 14, width 32, 3 blocks, 2 heads) and an 8-wide text tower
# with the real vocabulary and context length.
TINY_OPENCLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 3, "width": CLIP_WIDTH, "head_width": 16, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": CONTEXT, "heads": 1, "layers": 2},
}
OPENCLIP_ARCH = "img3d-tiny-openclip"
# VaeConfig::tiny() with ch_mult [1, 1, 1, 1].
TINY_VAE = dict(
    double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=32,
    ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0,
)
# The reconstruction (CRM.__init__ with UNetPP): c_dim 13, diffusers blocks narrowed.
RECON_CHANNELS = 13
RECON_BLOCKS = (8, 8, 8, 16, 16, 16, 16)
RECON_NORM_GROUPS = 4
RECON_HIDDEN = 32

PROMPT = "3D assets"
NEG_PROMPT = (
    "uniform low no texture ugly, boring, bad anatomy, blurry, pixelated,  obscure, unnatural "
    "colors, poor lighting, dull, and unclear."
)


def install_shims(crm):
    """xformers (upstream's attention imports it) and the `model` package (its __init__ imports
    the CRM class: nvdiffrast, cv2, trimesh) as sys.modules entries; no upstream file changes."""
    xformers = types.ModuleType("xformers")
    ops = types.ModuleType("xformers.ops")

    def memory_efficient_attention(q, k, v, attn_bias=None, op=None):
        assert attn_bias is None
        return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1) @ v

    ops.memory_efficient_attention = memory_efficient_attention
    xformers.ops = ops
    sys.modules["xformers"] = xformers
    sys.modules["xformers.ops"] = ops
    package = types.ModuleType("model")
    package.__path__ = [os.path.join(os.path.abspath(crm), "model")]
    sys.modules["model"] = package


def fp16_values(module):
    """Rounds every floating tensor to fp16 values (stored as fp16 below)."""
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return module


def stage_model(stage, seed):
    """LatentDiffusionInterface through its own __init__ and instantiate_from_config."""
    import open_clip.factory
    from imagedream.ldm.interface import LatentDiffusionInterface

    open_clip.factory._MODEL_CONFIGS[OPENCLIP_ARCH] = TINY_OPENCLIP
    unet_target = "MultiViewUNetModel" if stage == 1 else "MultiViewUNetModelStage2"
    model = LatentDiffusionInterface(
        unet_config={
            "target": f"imagedream.ldm.modules.diffusionmodules.openaimodel.{unet_target}",
            "params": dict(TINY_UNET, in_channels=4 if stage == 1 else 8),
        },
        clip_config={
            "target": "imagedream.ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
            # version None: open_clip builds the architecture without downloading weights.
            "params": {"arch": OPENCLIP_ARCH, "version": None, "device": "cpu", "freeze": True,
                       "layer": "penultimate", "ip_mode": "local_resample"},
        },
        vae_config={
            "target": "imagedream.ldm.models.autoencoder.AutoencoderKL",
            "params": {"embed_dim": 4, "ddconfig": dict(TINY_VAE), "lossconfig": {"target": "torch.nn.Identity"}},
        },
        linear_start=0.00085, linear_end=0.0120, timesteps=1000, scale_factor=0.18215,
        parameterization="eps", zero_snr=True,
    )
    # Upstream's UNet hard-codes its Resampler at ViT-H width; the tiny one reads 32-wide tokens.
    from imagedream.ldm.modules.diffusionmodules.adaptors import Resampler

    model.model.diffusion_model.image_embed = Resampler(**TINY_RESAMPLER)
    # Buffers are computed, not learned (the noise schedule, open_clip's causal `attn_mask`):
    # keep upstream's values.
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    common.randomize(model.eval(), seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    return fp16_values(model)


def recon_model(seed):
    import model.archs.unet as upstream_unet
    from model.archs.decoders.shape_texture_net import TetTexNet
    from model.archs.mlp_head import RgbMlp, SdfMlp

    real = upstream_unet.UNet2DModel

    def narrow(**kw):
        kw["block_out_channels"] = RECON_BLOCKS
        kw["norm_num_groups"] = RECON_NORM_GROUPS
        # UNetPP hard-codes 32 output channels, CRM's c_dim: at c_dim 13 the features the
        # MLPs read are 13 wide too.
        kw["out_channels"] = RECON_CHANNELS
        unet = real(**kw)
        unet.enable_xformers_memory_efficient_attention = lambda: None
        return unet

    upstream_unet.UNet2DModel = narrow
    try:
        unet2 = upstream_unet.UNetPP(in_channels=RECON_CHANNELS)
    finally:
        upstream_unet.UNet2DModel = real
    crm = torch.nn.Module()
    # CRM.__init__'s order and names (geo_type "flex", fea_concat False, mlp_bias True).
    crm.unet2 = unet2
    crm.decoder = TetTexNet(plane_reso=256, fea_concat=False)
    crm.weightMlp = torch.nn.Sequential(
        torch.nn.Linear(RECON_CHANNELS * 8, RECON_HIDDEN), torch.nn.SiLU(), torch.nn.Linear(RECON_HIDDEN, 21)
    )
    crm.sdfMlp = SdfMlp(RECON_CHANNELS, RECON_HIDDEN, bias=True)
    crm.rgbMlp = RgbMlp(RECON_CHANNELS, RECON_HIDDEN, bias=True)
    return fp16_values(common.randomize(crm.eval(), seed))


def save_checkpoint(name, module):
    state = {k: v.detach().half() if v.is_floating_point() else v for k, v in module.state_dict().items()}
    path = os.path.join(OUT_DIR, name)
    torch.save(state, path)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path) / 1024:.0f} KiB, {len(state)} tensors)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crm", required=True, help="thu-ml/CRM checkout at 4964e36")
    args = parser.parse_args()
    common.add_upstream(args.crm)
    import diffusers  # noqa: F401  (before the xformers shim: diffusers probes for the real one)

    install_shims(args.crm)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)

    expected = {}
    for stage, name in ((1, "pixel-diffusion.pth"), (2, "ccm-diffusion.pth")):
        model = stage_model(stage, seed=80 + stage)
        with torch.no_grad():
            # What TwoStagePipeline computes: get_learned_conditioning -> encode (fp32 here).
            expected[f"stage{stage}.context"] = model.get_learned_conditioning([PROMPT]).float()
            expected[f"stage{stage}.uncond_context"] = model.get_learned_conditioning([NEG_PROMPT]).float()
        save_checkpoint(name, model)
    save_checkpoint("CRM.pth", recon_model(seed=90))
    path = os.path.join(OUT_DIR, "expected.safetensors")
    save_file({k: v.contiguous() for k, v in expected.items()}, path)
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
