#!/usr/bin/env python3
"""Parity fixtures for the multi-view UNet, its Resampler, camera vectors and samplers.

Imports thu-ml/CRM (commit 4964e36) from the checkout given with --crm, builds the modules at
tiny width with random weights (tools/parity/common.py `randomize`: every weight, including
the ones upstream zero-initialises), runs them in fp32 on the CPU and writes fixtures to
pipeline/tests/data/ (read by pipeline/tests/{unet,resampler,stages}*.rs):

  diffusion_camera        get_camera_for_index(0..5) and the stage-1/stage-2 camera sets
  diffusion_resampler     Resampler (adaptors.py), real head geometry, narrow width
  diffusion_unet_stage1   MultiViewUNetModel: CFG batch of 2 x 7 frames, camera vectors,
                          image-prompt tokens, reference latent written over frame 7
  diffusion_unet_stage2   MultiViewUNetModelStage2: 2 x 6 frames plus the view latents
  diffusion_unet_layout   state-dict key names and shapes (no values) of both CRM UNets at full
                          size and of a narrow UNet with the full structure, built on the meta
                          device
  diffusion_cfg_step      one DDIMSampler.p_sample_ddim step (CFG 5.5, zero-SNR schedule,
                          50 steps, eta 0) with the stage-1 tiny UNet

Usage:  ~/.cache/img3d/parity/bin/python tools/parity/diffusion_unet.py --crm /work/upstream/CRM
Rerunning it rewrites the same files (fixed seeds, deterministic CPU ops).

Shims (sys.modules entries, no upstream file is edited):
  * xformers: upstream's attention requires xformers.ops.memory_efficient_attention. The shim
    is the plain attention it computes, softmax(q k^T / sqrt(d)) v with no bias.
  * libs.base_utils: imported by libs/sample.py only for do_resize_content (used by
    `diffuse`, never by i2i / i2iStage2); it pulls wandb/accelerate, so a stub replaces it.
  * DDIMSampler.register_buffer moves every tensor to "cuda"; here it keeps them on the CPU.
"""

import argparse
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# Tiny UNet: the structure of the CRM config (a level with and one without attention, a width
# change, down/upsampling, skip connections of mixed widths, a middle transformer, cross-frame
# attention, image-prompt tokens) at a fraction of the width. GroupNorm(32) needs widths that
# are multiples of 32, so its weights are rounded to fp16 values and stored as fp16 (lossless:
# both sides compute in fp32 with exactly these values) to keep each file under ~2 MB.
TINY_UNET = dict(
    image_size=8,
    out_channels=4,
    model_channels=32,
    attention_resolutions=[1],
    num_res_blocks=1,
    channel_mult=[1, 2],
    num_head_channels=16,
    use_spatial_transformer=True,
    use_linear_in_transformer=True,
    transformer_depth=1,
    context_dim=32,
    use_checkpoint=False,
    legacy=False,
    camera_dim=16,
    with_ip=True,
    ip_dim=16,
    ip_mode="local_resample",
)
# Upstream hard-codes the UNet's Resampler (depth 4, 12 heads of 64, 1280-wide CLIP tokens);
# the tiny UNet gets a narrower one through the same class (the Resampler fixture keeps the
# real head geometry).
TINY_UNET_RESAMPLER = dict(dim=32, depth=2, dim_head=16, heads=2, num_queries=16, embedding_dim=48, output_dim=32, ff_mult=4)
TINY_RESAMPLER = dict(dim=32, depth=2, dim_head=64, heads=12, num_queries=16, embedding_dim=1280, output_dim=32, ff_mult=4)
TINY_TEXT_TOKENS = 6
TINY_IMAGE_TOKENS = 5
LATENT = 8


def install_shims():
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
    base_utils = types.ModuleType("libs.base_utils")

    def do_resize_content(*_args, **_kwargs):
        raise NotImplementedError("stubbed: not used by i2i / i2iStage2")

    base_utils.do_resize_content = do_resize_content
    sys.modules["libs.base_utils"] = base_utils


def save_weights_fp16(name, module):
    """Writes `module`'s weights, all exact fp16 values (see tiny_unet), as fp16."""
    from safetensors.torch import save_file

    sd = {k: v.detach().half().contiguous() for k, v in module.state_dict().items()}
    assert all(torch.equal(sd[k].float(), v) for k, v in module.state_dict().items()), "not fp16-exact"
    path = os.path.normpath(os.path.join(common.DATA_DIR, f"{name}.weights.safetensors"))
    save_file(sd, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB, {len(sd)} tensors, fp16 values)")


def randn(gen, *shape):
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def camera_set(views, ref_position):
    """The camera tensor exactly as ImageDreamDiffusion(Stage2).__init__ builds it."""
    from imagedream.camera_utils import get_camera_for_index

    camera = [get_camera_for_index(i).squeeze() for i in views]
    if ref_position is not None:
        camera[ref_position] = torch.zeros_like(camera[ref_position])
    return torch.stack(camera)


def fixture_camera():
    from imagedream.camera_utils import get_camera_for_index

    common.save_io(
        "diffusion_camera",
        {
            "views": torch.stack([get_camera_for_index(i).squeeze() for i in range(6)]),
            "stage1": camera_set([1, 2, 3, 4, 5, 0, 0], 6),
            "stage2": camera_set([1, 2, 3, 4, 5, 0], None),
        },
    )


def fixture_resampler():
    from imagedream.ldm.modules.diffusionmodules.adaptors import Resampler

    model = common.randomize(Resampler(**TINY_RESAMPLER).eval(), seed=11)
    gen = torch.Generator().manual_seed(12)
    x = randn(gen, 2, 17, TINY_RESAMPLER["embedding_dim"])
    with torch.no_grad():
        y = model(x)
    common.save_weights("diffusion_resampler", model)
    common.save_io("diffusion_resampler", {"x": x, "y": y})


def tiny_unet(stage, seed):
    from imagedream.ldm.modules.diffusionmodules.adaptors import Resampler
    from imagedream.ldm.modules.diffusionmodules.openaimodel import (
        MultiViewUNetModel,
        MultiViewUNetModelStage2,
    )

    cls, in_channels = (MultiViewUNetModel, 4) if stage == 1 else (MultiViewUNetModelStage2, 8)
    unet = cls(in_channels=in_channels, **TINY_UNET)
    unet.image_embed = Resampler(**TINY_UNET_RESAMPLER)
    unet = common.randomize(unet.eval(), seed=seed)
    with torch.no_grad():
        for tensor in unet.parameters():
            tensor.copy_(tensor.half().float())
    return unet


def cfg_conditioning(gen, num_frames, cameras, stage):
    """A CFG batch [uncond, cond] laid out as libs/sample.py + DDIMSampler build it."""
    b = 2 * num_frames
    context = torch.cat(
        [randn(gen, 1, TINY_TEXT_TOKENS, TINY_UNET["context_dim"]).repeat(num_frames, 1, 1) for _ in range(2)]
    )
    ip = randn(gen, 1, TINY_IMAGE_TOKENS, TINY_UNET_RESAMPLER["embedding_dim"]).repeat(num_frames, 1, 1)
    cond = {
        "context": context,
        "camera": cameras.repeat(2, 1),
        "num_frames": num_frames,
        "ip": torch.cat([torch.zeros_like(ip), ip]),
    }
    if stage == 1:
        ip_img = randn(gen, 1, 4, LATENT, LATENT)
        cond["ip_img"] = torch.cat([torch.zeros_like(ip_img), ip_img])
    else:
        pixels = randn(gen, num_frames, 4, LATENT, LATENT)
        cond["pixel_images"] = torch.cat([torch.zeros_like(pixels), pixels])
    assert cond["context"].shape[0] == b
    return cond


def fixture_unet(stage):
    name = f"diffusion_unet_stage{stage}"
    unet = tiny_unet(stage, seed=20 + stage)
    gen = torch.Generator().manual_seed(30 + stage)
    if stage == 1:
        num_frames, cameras = 7, camera_set([1, 2, 3, 4, 5, 0, 0], 6)
    else:
        num_frames, cameras = 6, camera_set([1, 2, 3, 4, 5, 0], None)
    b = 2 * num_frames
    x = randn(gen, b, 4, LATENT, LATENT)
    # Distinct timesteps per element exercise the per-sample time embedding.
    t = torch.randint(0, 1000, (b,), generator=gen)
    cond = cfg_conditioning(gen, num_frames, cameras, stage)
    io = {"x": x.clone(), "t": t}
    io.update({k: v for k, v in cond.items() if torch.is_tensor(v)})
    with torch.no_grad():
        io["ip_emb"] = unet.image_embed(cond["ip"])
        # forward writes ip_img into x in place (as upstream does); x was saved before.
        io["eps"] = unet(x, t, **cond)
    save_weights_fp16(name, unet)
    common.save_io(name, io)


# The CRM UNet config (imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml; chin8 for stage 2).
FULL_UNET = dict(
    image_size=32,
    out_channels=4,
    model_channels=320,
    attention_resolutions=[4, 2, 1],
    num_res_blocks=2,
    channel_mult=[1, 2, 4, 4],
    num_head_channels=64,
    use_spatial_transformer=True,
    use_linear_in_transformer=True,
    transformer_depth=1,
    context_dim=1024,
    use_checkpoint=False,
    legacy=False,
    camera_dim=16,
    with_ip=True,
    ip_dim=16,
    ip_mode="local_resample",
)
# The full structure (levels, blocks, attention placement) at narrow width.
NARROW_UNET = dict(FULL_UNET, model_channels=32, num_head_channels=16, context_dim=32)


def fixture_layout():
    from imagedream.ldm.modules.diffusionmodules.adaptors import Resampler
    from imagedream.ldm.modules.diffusionmodules.openaimodel import (
        MultiViewUNetModel,
        MultiViewUNetModelStage2,
    )

    layout = {}
    with torch.device("meta"):
        for prefix, cls, in_channels, cfg in [
            ("full1", MultiViewUNetModel, 4, FULL_UNET),
            ("full2", MultiViewUNetModelStage2, 8, FULL_UNET),
            ("narrow1", MultiViewUNetModel, 4, NARROW_UNET),
        ]:
            unet = cls(in_channels=in_channels, **cfg)
            if prefix == "narrow1":
                unet.image_embed = Resampler(**dict(TINY_UNET_RESAMPLER, depth=4))
            for key, value in unet.state_dict().items():
                layout[f"{prefix}/{key}"] = list(value.shape)
    common.save_io("diffusion_unet_layout", {k: torch.tensor(v, dtype=torch.int64) for k, v in layout.items()})


def tiny_interface(unet):
    """LatentDiffusionInterface around `unet` with CRM's schedule, without CLIP and VAE."""
    from imagedream.ldm.interface import DiffusionWrapper, LatentDiffusionInterface

    model = LatentDiffusionInterface.__new__(LatentDiffusionInterface)
    torch.nn.Module.__init__(model)
    model.model = DiffusionWrapper(unet)
    model.parameterization = "eps"
    model.scale_factor = 0.18215
    model.register_schedule(linear_start=0.00085, linear_end=0.0120, timesteps=1000, zero_snr=True)
    model.device = "cpu"
    return model


def cpu_sampler(model):
    from imagedream.ldm.models.diffusion.ddim import DDIMSampler

    DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)
    return DDIMSampler(model)


def fixture_cfg_step():
    unet = tiny_unet(1, seed=21)
    model = tiny_interface(unet)
    sampler = cpu_sampler(model)
    sampler.make_schedule(ddim_num_steps=50, ddim_eta=0.0, verbose=False)
    gen = torch.Generator().manual_seed(40)
    num_frames = 7
    cond = cfg_conditioning(gen, num_frames, camera_set([1, 2, 3, 4, 5, 0, 0], 6), 1)
    # split the [uncond, cond] batch back into the two dicts i2i passes to the sampler
    c, uc = {}, {}
    for k, v in cond.items():
        if torch.is_tensor(v):
            half = v.shape[0] // 2
            uc[k], c[k] = v[:half], v[half:]
        else:
            uc[k] = c[k] = v
    x = randn(gen, num_frames, 4, LATENT, LATENT)
    index = 37  # any step; timestep 741
    step = int(sampler.ddim_timesteps[index])
    ts = torch.full((num_frames,), step, dtype=torch.long)
    with torch.no_grad():
        x_prev, pred_x0 = sampler.p_sample_ddim(
            x.clone(), c, ts, index=index, unconditional_guidance_scale=5.5, unconditional_conditioning=uc
        )
    io = {"x": x, "t": ts, "index": torch.tensor([index]), "x_prev": x_prev, "pred_x0": pred_x0}
    io.update({f"cond.{k}": v for k, v in cond.items() if torch.is_tensor(v)})
    common.save_io("diffusion_cfg_step", io)


FIXTURES = {
    "camera": fixture_camera,
    "resampler": fixture_resampler,
    "unet1": lambda: fixture_unet(1),
    "unet2": lambda: fixture_unet(2),
    "layout": fixture_layout,
    "cfg_step": fixture_cfg_step,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crm", required=True, help="thu-ml/CRM checkout at 4964e36")
    parser.add_argument("--only", nargs="*", choices=sorted(FIXTURES), help="fixtures to write (default: all)")
    args = parser.parse_args()
    common.add_upstream(args.crm)
    install_shims()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name in args.only or FIXTURES:
        FIXTURES[name]()


if __name__ == "__main__":
    main()
