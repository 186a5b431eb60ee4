"""Parity fixtures for the diffusion encoders, decoders and sampler.

Rust side: pipeline/src/diffusion/{clip,vae,ddim,schedule,transforms}.rs, tested by
pipeline/tests/{clip,vae,ddim}.rs.

Usage (the parity venv has torch, open_clip 2.7.0, torchvision, Pillow 10.1.0, omegaconf):

    ~/.cache/img3d/parity/bin/python tools/parity/diffusion_encoders.py --crm /work/upstream/CRM

It imports thu-ml/CRM (commit 4964e36) from the checkout given, builds each module at a tiny
width, overwrites every weight with seeded noise (common.randomize), runs upstream's own code on
fixed inputs and writes, under pipeline/tests/data/:

  ddim.io                         the zero-terminal-SNR schedule (LatentDiffusionInterface.
                                  register_schedule) and DDIMSampler.make_schedule tables for
                                  50 steps with the model in fp32 and in fp16 (upstream casts
                                  the whole model, schedule buffers included, to fp16 on CUDA),
                                  and p_sample_ddim (CFG as cat(uncond, cond), eta 0) at three
                                  step indices for each
  clip_visual.weights/.io         open_clip 2.7.0 VisionTransformer (ViT-H-14 layout at width
                                  64, 3 blocks) run through FrozenOpenCLIPEmbedder.forward_image
                                  (ip_mode "local_resample"): PIL image -> open_clip val
                                  preprocess -> encode_image_with_transformer (penultimate block)
  vae.weights, vae_encode.io,     AutoencoderKL (SD 2.1 layout at ch 32): libs/sample.py's
  vae_decode.io                   image transform, encode_first_stage + get_first_stage_encoding
                                  (posterior sample * 0.18215) and decode_first_stage
  diffusion_shapes.json           name -> shape of every tensor of the full-size CLIP visual
                                  tower (the part that runs) and the full SD 2.1 VAE, built on
                                  the meta device from open_clip's ViT-H-14 config and the yaml

Rerunning reproduces the files byte for byte (fixed seeds, CPU, fp32).
"""

import argparse
import json
import os
import re
import sys
import types

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

YAML = "imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml"
# The tiny CLIP tower: ViT-H-14's layout (patch 14 at 224 -> 257 tokens) at width 64.
TINY_CLIP = dict(image_size=224, layers=3, width=64, head_width=16, patch_size=14)
# The tiny VAE: every code path of the SD 2.1 layout (channel changes with nin_shortcut in the
# encoder and decoder, downsample/upsample, per-level attention at 16, mid attention), small
# enough to keep the weights file near 2 MB.
TINY_VAE = dict(
    double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32,
    ch_mult=[2, 1, 1, 1], num_res_blocks=1, attn_resolutions=[16], dropout=0.0,
)


def test_image(width, height, seed):
    """A deterministic RGB image with smooth structure and noise (something to resample)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([
        127 + 120 * np.sin(x / 17.0 + y / 29.0),
        127 + 120 * np.cos(x / 23.0 - y / 11.0),
        255 * (x + y) / (width + height),
    ], axis=-1)
    noisy = base + rng.normal(0, 20, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def schedule_fixture(crm):
    from omegaconf import OmegaConf
    from imagedream.ldm.interface import LatentDiffusionInterface
    from imagedream.ldm.models.diffusion import ddim as ddim_module

    params = OmegaConf.load(os.path.join(crm, YAML)).model.params
    # DDIMSampler.register_buffer moves every table to CUDA; keep them where they are.
    ddim_module.DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)

    out = {}
    for dtype, tag in [(torch.float32, "f32"), (torch.float16, "f16")]:
        # register_schedule only needs register_buffer: run it on a bare module.
        model = torch.nn.Module()
        LatentDiffusionInterface.register_schedule(
            model, timesteps=params.timesteps, linear_start=params.linear_start,
            linear_end=params.linear_end, zero_snr=params.zero_snr,
        )
        if tag == "f32":
            out["alphas_cumprod"] = model.alphas_cumprod
        # As TwoStagePipeline does on CUDA: the whole model, buffers included, to the dtype.
        model = model.to(dtype)
        model.device = "cpu"
        model.parameterization = params.parameterization
        sampler = ddim_module.DDIMSampler(model)
        sampler.make_schedule(ddim_num_steps=50, ddim_eta=0.0, verbose=False)
        out["timesteps"] = torch.from_numpy(sampler.ddim_timesteps.astype(np.int64))
        out[f"ddim_alphas_{tag}"] = torch.as_tensor(sampler.ddim_alphas).float()
        out[f"ddim_alphas_prev_{tag}"] = torch.as_tensor(sampler.ddim_alphas_prev).float()
        out[f"ddim_sqrt_one_minus_alphas_{tag}"] = torch.as_tensor(
            sampler.ddim_sqrt_one_minus_alphas).float()

        # One p_sample_ddim per index with a stand-in model whose output is fixed noise: the
        # step is tested without a UNet, CFG included. The UNet runs under autocast on CUDA,
        # so its output is fp16 there: the f16 case feeds fp16 model outputs.
        gen = torch.Generator().manual_seed(11)
        for index in [49, 25, 0]:
            x = torch.randn(3, 4, 8, 8, generator=gen)
            model_out = torch.randn(6, 4, 8, 8, generator=gen).to(dtype)
            model.apply_model = lambda x_in, t_in, c_in, _out=model_out: _out
            t = torch.full((3,), int(sampler.ddim_timesteps[index]), dtype=torch.long)
            cond = {"context": torch.zeros(3, 1)}
            uncond = {"context": torch.zeros(3, 1)}
            x_prev, pred_x0 = sampler.p_sample_ddim(
                x, cond, t, index=index, unconditional_guidance_scale=5.5,
                unconditional_conditioning=uncond,
            )
            key = f"{tag}_{index}"
            out[f"x_{key}"] = x
            out[f"model_out_{key}"] = model_out
            out[f"x_prev_{key}"] = x_prev
            out[f"pred_x0_{key}"] = pred_x0
        # q_sample at the last training step (stage 1's offset noise draws x_T there).
        if tag == "f16":
            x0 = torch.randn(2, 4, 8, 8, generator=gen)
            noise = torch.randn(2, 4, 8, 8, generator=gen)
            t = torch.full((2,), params.timesteps - 1, dtype=torch.long)
            out["q_x0"], out["q_noise"] = x0, noise
            out["q_sample_999_f16"] = LatentDiffusionInterface.q_sample(model, x0, t, noise=noise)
    common.save_io("ddim", out)


def clip_fixture():
    import open_clip
    from open_clip.model import _build_vision_tower
    from open_clip.transform import image_transform
    from imagedream.ldm.modules.encoders.modules import FrozenOpenCLIPEmbedder

    visual = _build_vision_tower(embed_dim=16, vision_cfg=dict(TINY_CLIP))
    common.randomize(visual, seed=21)
    visual.eval()
    # FrozenOpenCLIPEmbedder.__init__ downloads ViT-H weights; build the object around the tiny
    # tower instead and let its own forward_image run (preprocess + penultimate tokens).
    embedder = FrozenOpenCLIPEmbedder.__new__(FrozenOpenCLIPEmbedder)
    torch.nn.Module.__init__(embedder)
    embedder.model = types.SimpleNamespace(visual=visual)
    # As open_clip.create_model_and_transforms builds preprocess_val.
    embedder.preprocess = image_transform(
        visual.image_size, is_train=False,
        mean=getattr(visual, "image_mean", None), std=getattr(visual, "image_std", None),
    )
    embedder.device = "cpu"
    embedder.ip_mode = "local_resample"

    # Non-square, larger than 224: exercises shortest-side bicubic resize and the centre crop.
    image = test_image(300, 260, seed=3)
    with torch.no_grad():
        tokens = embedder.forward_image(Image.fromarray(image))
        clip_input = embedder.preprocess(Image.fromarray(image))[None]
    # The module ports the blocks that run: the last block, ln_post and proj never do.
    last = TINY_CLIP["layers"] - 1
    unused = (f"transformer.resblocks.{last}.", "ln_post.", "proj")
    state = {k: v for k, v in visual.state_dict().items() if not k.startswith(unused)}
    common.save_weights("clip_visual", state)
    common.save_io("clip_visual", {
        "image": torch.from_numpy(image), "clip_input": clip_input, "tokens": tokens,
    })


def sample_transform(size=256):
    """libs/sample.py ImageDreamDiffusion.image_transform (its constructor needs a whole model;
    libs.sample also imports training-only packages), rebuilt from the same three transforms."""
    from torchvision import transforms as T

    return T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


def vae_fixture():
    from imagedream.ldm.interface import LatentDiffusionInterface
    from imagedream.ldm.models.autoencoder import AutoencoderKL

    vae = AutoencoderKL(ddconfig=dict(TINY_VAE), lossconfig={"target": "torch.nn.Identity"}, embed_dim=4)
    common.randomize(vae, seed=31)
    vae.eval()
    # The interface methods only read scale_factor and vae_model.
    iface = types.SimpleNamespace(scale_factor=0.18215, vae_model=vae)

    image = test_image(300, 260, seed=5)
    with torch.no_grad():
        vae_input = sample_transform(256)(Image.fromarray(image))[None]
        # The tiny VAE encodes a 64x64 crop (its attention at full 256 would be slow on CPU);
        # the transform is checked on the whole 256x256 output.
        crop = vae_input[:, :, 96:160, 64:128]
        posterior = LatentDiffusionInterface.encode_first_stage(iface, crop)
        torch.manual_seed(41)
        latent = LatentDiffusionInterface.get_first_stage_encoding(iface, posterior)
        torch.manual_seed(41)
        noise = torch.randn(posterior.mean.shape)  # what DiagonalGaussianDistribution.sample drew
        common.save_weights("vae", vae)
        common.save_io("vae_encode", {
            "image": torch.from_numpy(image), "vae_input": vae_input, "crop": crop,
            "mean": posterior.mean, "logvar": posterior.logvar, "noise": noise, "latent": latent,
        })

        gen = torch.Generator().manual_seed(43)
        z = torch.randn(2, 4, 8, 8, generator=gen)
        decoded = LatentDiffusionInterface.decode_first_stage(iface, z)
        common.save_io("vae_decode", {"latent": z, "decoded": decoded})


def shapes_fixture(crm):
    import open_clip
    from omegaconf import OmegaConf
    from open_clip.model import _build_vision_tower
    from imagedream.ldm.models.autoencoder import AutoencoderKL

    cfg = open_clip.get_model_config("ViT-H-14")
    vae_params = OmegaConf.to_container(OmegaConf.load(os.path.join(crm, YAML)).model.params.vae_config.params)
    with torch.device("meta"):
        visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
        vae = AutoencoderKL(ddconfig=vae_params["ddconfig"], lossconfig=vae_params["lossconfig"],
                            embed_dim=vae_params["embed_dim"])
    last = cfg["vision_cfg"]["layers"] - 1
    unused = (f"transformer.resblocks.{last}.", "ln_post.", "proj")

    def table(state, skip=()):
        kept = {k: list(v.shape) for k, v in state.items() if not k.startswith(skip)}
        return {"params": int(sum(int(np.prod(s)) for s in kept.values())), "shapes": kept}

    clip = table(visual.state_dict(), unused)
    clip["unused"] = sorted(k for k in visual.state_dict() if k.startswith(unused))
    shapes = {
        "source": "open_clip 2.7.0 ViT-H-14 vision tower; CRM 4964e36 " + YAML + " vae_config",
        "clip_visual": clip,
        "vae": table(vae.state_dict()),
    }
    path = os.path.normpath(os.path.join(common.DATA_DIR, "diffusion_shapes.json"))
    # One tensor per line: readable, and diffs stay small.
    text = json.dumps(shapes, indent=1, sort_keys=True)
    text = re.sub(r"\[\s+([^\]]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"wrote {path} (clip {clip['params']} params, vae {shapes['vae']['params']} params)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crm", required=True, help="checkout of thu-ml/CRM at 4964e36")
    args = parser.parse_args()
    common.add_upstream(args.crm)
    torch.set_grad_enabled(False)
    schedule_fixture(args.crm)
    clip_fixture()
    vae_fixture()
    shapes_fixture(args.crm)


if __name__ == "__main__":
    main()
