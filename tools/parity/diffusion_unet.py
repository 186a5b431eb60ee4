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
  diffusion_stages        whole stage 1 (ImageDreamDiffusion.i2i + the reference pop of
                          TwoStagePipeline.stage1_sample) and stage 2 (i2iStage2 on stage 1's
                          u8 views) with tiny UNets (the two UNet fixtures' weights), a tiny
                          OpenCLIP tower and a tiny AutoencoderKL, 4 DDIM steps, guidance 5.5,
                          at image size 64; the random draws (posterior samples, q_sample noise)
                          are fixed tensors injected into upstream's calls and saved

Usage:  ~/.cache/img3d/parity/bin/python tools/parity/diffusion_unet.py --crm /work/upstream/CRM
Rerunning it rewrites the same files (fixed seeds, deterministic CPU ops).

Shims (sys.modules entries, no upstream file is edited):
  * xformers: upstream's attention requires xformers.ops.memory_efficient_attention. The shim
    is the plain attention it computes, softmax(q k^T / sqrt(d)) v with no bias.
  * libs.base_utils: imported by libs/sample.py only for do_resize_content (used by
    `diffuse`, never by i2i / i2iStage2); it pulls wandb/accelerate, so a stub replaces it.
  * DDIMSampler.register_buffer moves every tensor to "cuda"; here it keeps them on the CPU.
  * diffusion_stages: DiagonalGaussianDistribution.sample and LatentDiffusionInterface.q_sample
    take their noise from the saved tensors instead of torch's global generator (same formula:
    mean + std * noise, and q_sample's own `noise` argument); the text tower is replaced by
    fixed random contexts (the port precomputes them), get_learned_conditioning returns them.
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
    common.install_xformers_shim()
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


# Whole-stage fixtures: image size 64 (8x8 latents) and a CLIP tower at 56 (17 tokens) keep
# them small; widths match the UNet fixtures' Resampler (48-wide image tokens, 32-wide context).
STAGE_IMAGE = 64
STAGE_STEPS = 4
TEXT_TOKENS = 77
TINY_STAGE_CLIP = dict(image_size=56, layers=3, width=48, head_width=16, patch_size=14)
TINY_STAGE_VAE = dict(
    double_z=True, z_channels=4, resolution=STAGE_IMAGE, in_channels=3, out_ch=3, ch=32,
    ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0,
)
NEG_PROMPT = (
    "uniform low no texture ugly, boring, bad anatomy, blurry, pixelated,  obscure, unnatural "
    "colors, poor lighting, dull, and unclear."
)


def tiny_clip_embedder(seed):
    """FrozenOpenCLIPEmbedder around a tiny open_clip tower (its __init__ downloads ViT-H)."""
    from open_clip.model import _build_vision_tower
    from open_clip.transform import image_transform
    from imagedream.ldm.modules.encoders.modules import FrozenOpenCLIPEmbedder

    visual = common.randomize(_build_vision_tower(embed_dim=16, vision_cfg=dict(TINY_STAGE_CLIP)).eval(), seed)
    embedder = FrozenOpenCLIPEmbedder.__new__(FrozenOpenCLIPEmbedder)
    torch.nn.Module.__init__(embedder)
    embedder.model = types.SimpleNamespace(visual=visual)
    embedder.preprocess = image_transform(visual.image_size, is_train=False)
    embedder.device = "cpu"
    embedder.ip_mode = "local_resample"
    return embedder, visual


def tiny_vae(seed):
    from imagedream.ldm.models.autoencoder import AutoencoderKL

    vae = AutoencoderKL(ddconfig=dict(TINY_STAGE_VAE), lossconfig={"target": "torch.nn.Identity"}, embed_dim=4)
    return common.randomize(vae.eval(), seed)


def stage_image(seed):
    """A deterministic RGB reference with smooth structure and noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:STAGE_IMAGE, 0:STAGE_IMAGE].astype(np.float64)
    base = np.stack([127 + 100 * np.sin(x / 7.0 + y / 13.0), 127 + 100 * np.cos(x / 9.0 - y / 5.0), 4 * (x + y)], -1)
    return np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8)


class InjectedNoise:
    """Feeds saved tensors to upstream's random draws, in call order."""

    def __init__(self):
        self.queue = []

    def push(self, tensor):
        self.queue.append(tensor)
        return tensor

    def pop(self, shape):
        noise = self.queue.pop(0)
        assert tuple(noise.shape) == tuple(shape), (noise.shape, shape)
        return noise


def fixture_stages():
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T
    from imagedream.ldm.interface import LatentDiffusionInterface
    from imagedream.ldm.modules.distributions.distributions import DiagonalGaussianDistribution
    from libs.sample import ImageDreamDiffusion, ImageDreamDiffusionStage2

    injected = InjectedNoise()
    DiagonalGaussianDistribution.sample = lambda self: self.mean + self.std * injected.pop(self.mean.shape)
    embedder, visual = tiny_clip_embedder(seed=50)
    vae = tiny_vae(seed=51)
    gen = torch.Generator().manual_seed(52)
    latent = [4, STAGE_IMAGE // 8, STAGE_IMAGE // 8]

    def stage_model(stage):
        model = tiny_interface(tiny_unet(stage, seed=20 + stage))
        model.clip_model, model.vae_model = embedder, vae
        contexts = {"3D assets": randn(gen, 1, TEXT_TOKENS, 32), NEG_PROMPT: randn(gen, 1, TEXT_TOKENS, 32)}
        model.get_learned_conditioning = lambda prompts: contexts[prompts[0]]
        model.q_sample = lambda x_start, t, noise=None: LatentDiffusionInterface.q_sample(
            model, x_start, t, noise=injected.pop(x_start.shape)
        )
        return model, contexts

    def sampled(sampler):
        # keep the final latents (i2i only returns the decoded u8 views)
        inner = sampler.sample
        out = {}

        def sample(*args, **kwargs):
            out["latents"], inter = inner(*args, **kwargs)
            return out["latents"], inter

        sampler.sample = sample
        return out

    transform = T.Compose([T.Resize((STAGE_IMAGE, STAGE_IMAGE)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    reference = stage_image(seed=53)
    pil = Image.fromarray(reference)
    io = {
        "reference": torch.from_numpy(reference),
        "vae_input": transform(pil)[None],
        "clip_input": embedder.preprocess(pil)[None],
    }

    # stage 1: 7 frames, reference at 6 (nf7_v3_SNR_rd_size_stroke.yaml)
    model1, ctx1 = stage_model(1)
    sampler1 = cpu_sampler(model1)
    out1 = sampled(sampler1)
    io["stage1.context"], io["stage1.uncond_context"] = ctx1["3D assets"], ctx1[NEG_PROMPT]
    io["stage1.noise.ip_img"] = injected.push(randn(gen, 1, *latent))
    io["stage1.noise.ref_latent"] = injected.push(randn(gen, 1, *latent))
    io["stage1.noise.x_t"] = injected.push(randn(gen, 7, *latent))
    with torch.no_grad():
        views = ImageDreamDiffusion.i2i(
            model1, STAGE_IMAGE, "3D assets", ctx1[NEG_PROMPT], sampler1, ip=pil, step=STAGE_STEPS,
            scale=5.5, batch_size=7, ddim_eta=0.0, dtype=torch.float32, device="cpu",
            camera=camera_set([1, 2, 3, 4, 5, 0, 0], 6), num_frames=7, pixel_control=True,
            transform=transform, offset_noise=True,
        )
    assert not injected.queue
    views.pop(6)  # TwoStagePipeline.stage1_sample drops the reference frame
    io["stage1.latents"] = out1["latents"]
    io["stage1.views"] = torch.from_numpy(np.stack(views))

    # stage 2: 6 frames on stage 1's u8 views (stage2-v2-snr.yaml)
    model2, ctx2 = stage_model(2)
    sampler2 = cpu_sampler(model2)
    out2 = sampled(sampler2)
    pixel_images = [Image.fromarray(v) for v in views]
    io["stage2.context"], io["stage2.uncond_context"] = ctx2["3D assets"], ctx2[NEG_PROMPT]
    io["stage2.views_input"] = torch.stack([transform(i) for i in pixel_images])
    io["stage2.noise.pixel_images"] = injected.push(randn(gen, 6, *latent))
    io["stage2.noise.ref_latent"] = injected.push(randn(gen, 1, *latent))
    io["stage2.noise.x_t"] = injected.push(randn(gen, 6, *latent))
    with torch.no_grad():
        xyzs = ImageDreamDiffusionStage2.i2iStage2(
            model2, STAGE_IMAGE, "3D assets", ctx2[NEG_PROMPT], sampler2, pixel_images=pixel_images, ip=pil,
            step=STAGE_STEPS, scale=5.5, batch_size=6, ddim_eta=0.0, dtype=torch.float32, device="cpu",
            camera=camera_set([1, 2, 3, 4, 5, 0], None), num_frames=6, pixel_control=True,
            transform=transform, offset_noise=True,
        )
    assert not injected.queue
    io["stage2.latents"] = out2["latents"]
    io["stage2.views"] = torch.from_numpy(np.stack(xyzs))

    # CLIP without the parts that never run (last block, ln_post, proj), and the VAE.
    last = TINY_STAGE_CLIP["layers"] - 1
    unused = (f"transformer.resblocks.{last}.", "ln_post.", "proj")
    weights = {f"clip.{k}": v for k, v in visual.state_dict().items() if not k.startswith(unused)}
    weights.update({f"vae.{k}": v for k, v in vae.state_dict().items()})
    common.save_weights("diffusion_stages", weights)
    common.save_io("diffusion_stages", io)


FIXTURES = {
    "camera": fixture_camera,
    "resampler": fixture_resampler,
    "unet1": lambda: fixture_unet(1),
    "unet2": lambda: fixture_unet(2),
    "layout": fixture_layout,
    "cfg_step": fixture_cfg_step,
    "stages": fixture_stages,
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
