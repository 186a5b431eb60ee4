"""Fixtures for pipeline/src/recon/: CRM's reconstruction network at tiny width, random weights.

Usage: ~/.cache/img3d/parity/bin/python tools/parity/recon.py /path/to/CRM
(thu-ml/CRM at 4964e36; needs diffusers 0.24 and einops).

Writes under pipeline/tests/data/:
  recon_unet.weights.safetensors   upstream `UNetPP` (its own wrapper, learned plane and forward;
                                   diffusers' UNet2DModel with the same block types, narrower:
                                   channels 8,8,8,16,16,16,16, 4 norm groups, in/out 16) on a
                                   64x192 triplane instead of 256x768, keys `unet.*`,
                                   `learned_plane`
  recon_unet.io.safetensors        input [1, 12, 64, 192], output [1, 16, 64, 192] (t = 20)
  recon_heads.weights.safetensors  `sdfMlp.*`, `rgbMlp.*` (SdfMlp/RgbMlp, hidden 32) and
                                   `weightMlp.*` (the Sequential of CRM.__init__)
  recon_heads.io.safetensors       features [1, 16, 32, 96]; points [1, 300, 3] in [-1.2, 1.2]
                                   (border padding) and their TetTexNet features and rgbMlp
                                   output; the FlexiCubesGeometry(grid_res=6) grid and
                                   CRM.decode's SDF (sphere prior), deformed vertices and
                                   weights on it (the Renderer's deformation formula)
  recon_input.io.safetensors       generate3d's triplane of formula-made views (see views()):
                                   a strided subsample [1, 12, 64, 192] (every 4th row and
                                   column) and per-channel sums, as u8*255 / f64; SD 2.1's
                                   alphas_cumprod [1000] and add_noise at t=20 on a small tensor
"""

import os
import sys
import types

import torch

import common

if len(sys.argv) != 2:
    sys.exit(__doc__)
common.add_upstream(sys.argv[1])
# model/__init__.py imports the whole CRM class (cv2, trimesh, nvdiffrast, xatlas); the modules
# used here need none of it, so the package is registered without running its __init__.
_model = types.ModuleType("model")
_model.__path__ = [os.path.join(os.path.abspath(sys.argv[1]), "model")]
sys.modules["model"] = _model

import diffusers  # noqa: E402
import model.archs.unet as upstream_unet  # noqa: E402
from model.archs.decoders.shape_texture_net import TetTexNet  # noqa: E402
from model.archs.mlp_head import RgbMlp, SdfMlp  # noqa: E402
from util.flexicubes_geometry import FlexiCubesGeometry  # noqa: E402
from util.utils import get_tri  # noqa: E402

CHANNELS = 16
HIDDEN = 32
TINY_BLOCKS = (8, 8, 8, 16, 16, 16, 16)


def tiny_unetpp(height, width):
    """Upstream UNetPP with a narrower UNet2DModel and a learned plane of height x width."""
    real = upstream_unet.UNet2DModel

    def narrow(**kw):
        kw["block_out_channels"] = TINY_BLOCKS
        kw["norm_num_groups"] = 4
        unet = real(**kw)
        # xformers is not installed; the default processor computes the same attention.
        unet.enable_xformers_memory_efficient_attention = lambda: None
        return unet

    upstream_unet.UNet2DModel = narrow
    try:
        net = upstream_unet.UNetPP(in_channels=CHANNELS)
    finally:
        upstream_unet.UNet2DModel = real
    net.learned_plane = torch.nn.Parameter(torch.zeros([1, CHANNELS - 12, height, width]))
    return net


@torch.no_grad()
def unet_fixture():
    net = common.randomize(tiny_unetpp(64, 192), 61).eval()
    gen = torch.Generator().manual_seed(62)
    x = torch.rand([1, 12, 64, 192], generator=gen)
    t = torch.randint(20, 21, [1], dtype=torch.long)
    out = net(x, t)
    common.save_weights("recon_unet", net)
    common.save_io("recon_unet", {"input": x, "output": out})


@torch.no_grad()
def heads_fixture():
    sdf = SdfMlp(CHANNELS, HIDDEN, bias=True)
    rgb = RgbMlp(CHANNELS, HIDDEN, bias=True)
    # CRM.__init__: weightMlp for geo_type "flex", fea_concat False.
    weight = torch.nn.Sequential(torch.nn.Linear(CHANNELS * 8, HIDDEN), torch.nn.SiLU(), torch.nn.Linear(HIDDEN, 21))
    heads = torch.nn.ModuleDict({"sdfMlp": sdf, "rgbMlp": rgb, "weightMlp": weight})
    common.randomize(heads, 71)
    gen = torch.Generator().manual_seed(72)
    features = torch.randn([1, CHANNELS, 32, 96], generator=gen)
    points = torch.rand([1, 300, 3], generator=gen) * 2.4 - 1.2
    decoder = TetTexNet(plane_reso=32, fea_concat=False)
    point_features = decoder(features, points)
    colours = rgb(point_features)

    # CRM.decode and Renderer.forward up to FlexiCubes (CRM's config: radius 0.5, scale 0.95).
    grid_res, radius, scale = 6, 0.5, 0.95
    geometry = FlexiCubesGeometry(grid_res=grid_res, device="cpu")
    tet_verts = geometry.verts.unsqueeze(0)
    indices = geometry.indices
    dec_verts = decoder(features, tet_verts)
    out = sdf(dec_verts)
    grid_feat = torch.index_select(input=dec_verts, index=indices.reshape(-1), dim=1)
    grid_feat = grid_feat.reshape(dec_verts.shape[0], indices.shape[0], indices.shape[1] * dec_verts.shape[-1])
    grid_weight = weight(grid_feat) * 0.1
    pred_sdf, deformation = out[..., 0], out[..., 1:]
    pred_sdf = pred_sdf + radius - torch.sqrt((tet_verts**2).sum(-1))
    deform = torch.tanh(deformation) / grid_res * scale / 0.95
    deform = deform * 0.5
    v_deformed = tet_verts + deform

    common.save_weights("recon_heads", heads)
    common.save_io(
        "recon_heads",
        {
            "features": features,
            "points": points,
            "point_features": point_features,
            "colours": colours,
            "grid_verts": geometry.verts,
            "grid_cubes": indices.long(),
            "sdf": pred_sdf[0],
            "deformed": v_deformed[0],
            "weight": grid_weight[0],
        },
    )


def views(seed):
    """A 256x1536 RGB strip whose every pixel differs from its neighbours and mirror images."""
    y = torch.arange(256).view(256, 1, 1)
    x = torch.arange(1536).view(1, 1536, 1)
    c = torch.arange(3).view(1, 1, 3)
    return ((x * 7 + y * 13 + c * 101 + (x // 256) * 37 + seed + x * y) % 256).to(torch.uint8)


@torch.no_grad()
def input_fixture():
    rgb, ccm = views(0).numpy(), views(91).numpy()
    # generate3d (inference.py) up to the noising, line for line (the module itself imports
    # nvdiffrast at the top, which is CUDA-only).
    color_tri = torch.from_numpy(rgb) / 255
    xyz_tri = torch.from_numpy(ccm[:, :, (2, 1, 0)].copy()) / 255
    color = color_tri.permute(2, 0, 1)
    xyz = xyz_tri.permute(2, 0, 1)

    def get_imgs(color):
        color_list = [color[:, :, 256 * 5 : 256 * (1 + 5)]]
        for i in range(0, 5):
            color_list.append(color[:, :, 256 * i : 256 * (1 + i)])
        return torch.stack(color_list, dim=0)

    color = get_tri(get_imgs(color), dim=0, blender=True, scale=1).unsqueeze(0)
    xyz = get_tri(get_imgs(xyz), dim=0, blender=True, scale=1, fix=True).unsqueeze(0)
    triplane = torch.cat([color, xyz], dim=1)
    as_u8 = torch.round(triplane * 255)
    assert torch.equal(as_u8 / 255, triplane) or (as_u8 / 255 - triplane).abs().max() < 1e-7

    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    gen = torch.Generator().manual_seed(93)
    small = torch.rand([2, 12, 4, 4], generator=gen)
    noise = torch.randn(small.shape, generator=gen) * 0.5 + 0.5
    noised = scheduler.add_noise(small, noise, torch.tensor([20], dtype=torch.long))
    common.save_io(
        "recon_input",
        {
            "triplane_subsample": as_u8[:, :, ::4, ::4].to(torch.uint8),
            "triplane_channel_sums": as_u8.double().sum(dim=(0, 2, 3)),
            "alphas_cumprod": scheduler.alphas_cumprod,
            "small": small,
            "noise": noise,
            "noised": noised,
        },
    )


if __name__ == "__main__":
    unet_fixture()
    heads_fixture()
    input_fixture()
