"""Full-size parity fixtures with seeded weights (none stored): pipeline/tests/fullsize.rs.

Usage (a Python with torch 2.11.0 from the img3d torch venv, plus tools/fullsize/requirements.txt):
    IMG3D_UPSTREAM_CRM=/path/to/CRM IMG3D_UPSTREAM_U2NET=/path/to/U-2-Net \
        python tools/fullsize/fixtures.py [u2net] [heads] [unet] [clip] [mv_unet1] [mv_unet2] [vae]

IMG3D_UPSTREAM_CRM is thu-ml/CRM at 4964e36; IMG3D_UPSTREAM_U2NET a checkout of
xuebinqin/U-2-Net (its model/u2net.py is the graph rembg's u2net.onnx was exported from). Both
are fetched from their public repositories and never committed.

Every network is built at its official size from upstream's own classes, every floating tensor
of its state dict set by tools/parity/seeded.py (key name -> seed -> randn, scaled), fp32 CPU.
Inputs come from the same scheme under `input.*` keys, so only upstream's key list, small inputs
and upstream's outputs (a fixed subset of large ones, plus sums) are written, under
pipeline/tests/data/fullsize_*.{keys.json,io.safetensors}. Each io file also holds
`upstream_seconds`: upstream's time for one call on this machine, for the side-by-side table.

  u2net   U2NET(3, 1) exported to ONNX (a temporary file) and run by rembg's own session
          (`new_session("u2net_custom", model_path=...)`, onnxruntime CPU): rembg's normalised
          input, d0 from its inner session, and the mask its `predict` returns, on a fixed
          173x131 image; PyTorch's d0 on the same input is checked against onnxruntime here.
  heads   CRM's sdfMlp, rgbMlp and weightMlp (hidden 512, c_dim 32) on seeded triplane features
          [1, 32, 256, 768]: CRM.decode on FlexiCubesGeometry(grid_res=80) (sphere prior 0.5,
          Renderer's deformation bound), subsampled, then FlexiCubesGeometry.get_mesh at
          inference (a subset of the vertices, the faces' SHA-256); and TetTexNet + rgbMlp at 4,096 seeded points.
  unet    UNetPP(in_channels=32) (diffusers UNet2DModel in upstream's configuration, learned
          plane) on a seeded [1, 12, 256, 768] input at t = 20, subsampled.
  clip    open_clip 2.7.0's ViT-H-14 visual tower (upstream's pin; asserted) through
          FrozenOpenCLIPEmbedder.encode_image_with_transformer: the penultimate tokens of a
          seeded [1, 3, 224, 224] input (two whole tokens, a subset, sums).
  mv_unet1, mv_unet2
          MultiViewUNetModel (sd_v2_base_ipmv_zero_SNR.yaml) and MultiViewUNetModelStage2
          (sd_v2_base_ipmv_chin8_zero_snr.yaml) from the yaml's unet_config, with the Resampler
          they build: one call on the CFG batch (2 x 7 and 2 x 6 frames at 32x32, t = 741) with
          seeded contexts, CLIP tokens and latents, upstream's cameras.
  vae     AutoencoderKL from the yaml's vae_config: encode_first_stage's posterior for 2 seeded
          256x256 images, decode_first_stage of a seeded [2, 4, 32, 32] latent.
The diffusion fixtures need open-clip-torch 2.7.0 and sys.modules shims for imports that never
run here (imagedream_shims: transformers' text classes; xformers' attention, computed plainly).
"""

import hashlib
import os
import sys
import tempfile
import time
import types

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
import common  # noqa: E402
import seeded  # noqa: E402

torch.set_grad_enabled(False)
# Every ~STRIDE-th element of a large output is stored (a fixed, deterministic subset).
STRIDE = 997


def upstream(var):
    path = os.environ.get(var)
    if not path:
        sys.exit(f"{var} is not set\n\n{__doc__}")
    common.add_upstream(path)
    return os.path.abspath(path)


def timed(f, *args):
    start = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - start


def subset(t):
    """A fixed subset of a large tensor's elements and its sums, for the io file."""
    flat = t.reshape(-1)
    return {"subset": flat[::STRIDE].clone(), "sum": flat.double().sum(), "abs_sum": flat.double().abs().sum()}


def with_subsets(name, t):
    return {f"{name}.{k}": v for k, v in subset(t).items()}


def u2net_fixture():
    import numpy as np
    import rembg
    from PIL import Image

    upstream("IMG3D_UPSTREAM_U2NET")
    from model import u2net as u2

    net = u2.U2NET(3, 1).eval()
    keys = seeded.apply(net)
    # A fixed image with structure at several scales (the mask must not be flat).
    h, w = 131, 173
    y = torch.arange(h).view(h, 1, 1).double()
    x = torch.arange(w).view(1, w, 1).double()
    c = torch.arange(3).view(1, 1, 3).double()
    blob = ((x - 90) ** 2 + (y - 60) ** 2 < 45**2).double()
    img = (40 + 150 * blob + 30 * torch.sin(x / 7 + c) + 25 * torch.cos(y / 5 - c) + (x * y) % 17).clamp(0, 255)
    img = img.round().to(torch.uint8)
    pil = Image.fromarray(img.numpy(), mode="RGB")
    with tempfile.TemporaryDirectory() as tmp:
        # rembg opens custom models only from its model directory.
        os.environ["REMBG_HOME"] = tmp
        path = os.path.join(tmp, "u2net_full.onnx")
        torch.onnx.export(
            net, torch.zeros(1, 3, 320, 320), path, opset_version=11, input_names=["input.1"], dynamo=False
        )
        session = rembg.new_session("u2net_custom", model_path=path, providers=["CPUExecutionProvider"])
        feed = session.normalize(pil, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (320, 320))
        session.inner_session.run(None, feed)  # warm
        outs, seconds = timed(session.inner_session.run, None, feed)
        mask = np.asarray(session.predict(pil)[0])
    d0 = torch.from_numpy(outs[0])
    inp = torch.from_numpy(next(iter(feed.values())))
    torch_d0, torch_seconds = timed(lambda: net(inp)[0])
    torch_d0, torch_seconds = timed(lambda: net(inp)[0])
    err = (torch_d0 - d0).abs().max().item()
    print(f"u2net: onnxruntime {seconds:.3f} s, PyTorch {torch_seconds:.3f} s, |PyTorch - onnxruntime| {err:.2e}")
    print(f"u2net: d0 mean {d0.mean():.4f} std {d0.std():.4f}")
    assert err < 1e-5, f"PyTorch and onnxruntime disagree on the exported graph: {err:e}"
    seeded.save_keys("fullsize_u2net", keys)
    common.save_io(
        "fullsize_u2net",
        {
            "image": img,
            "input.sum": inp.double().sum(dim=(0, 2, 3)),
            "input.subset": inp.reshape(-1)[::STRIDE].clone(),
            "d0": d0,
            "mask": torch.from_numpy(mask.copy()),
            "upstream_seconds": torch.tensor(seconds, dtype=torch.float64),
            "pytorch_seconds": torch.tensor(torch_seconds, dtype=torch.float64),
            "pytorch_vs_onnxruntime": torch.tensor(err, dtype=torch.float64),
        },
    )


def crm_modules():
    path = upstream("IMG3D_UPSTREAM_CRM")
    # model/__init__.py imports the whole CRM class (nvdiffrast, xatlas); not needed here.
    pkg = types.ModuleType("model")
    pkg.__path__ = [os.path.join(path, "model")]
    sys.modules["model"] = pkg


def heads_fixture():
    crm_modules()
    from model.archs.decoders.shape_texture_net import TetTexNet
    from model.archs.mlp_head import RgbMlp, SdfMlp
    from util.flexicubes_geometry import FlexiCubesGeometry

    # CRM.__init__ with CRM's specs (c_dim 32, mlp_bias, geo_type flex, fea_concat False).
    heads = torch.nn.ModuleDict(
        {
            "sdfMlp": SdfMlp(32, 512, bias=True),
            "rgbMlp": RgbMlp(32, 512, bias=True),
            "weightMlp": torch.nn.Sequential(torch.nn.Linear(32 * 8, 512), torch.nn.SiLU(), torch.nn.Linear(512, 21)),
        }
    ).eval()
    keys = seeded.apply(heads)
    features = seeded.seeded_tensor("input.features", [1, 32, 256, 768])
    points = seeded.seeded_tensor("input.points", [1, 4096, 3])
    decoder = TetTexNet(plane_reso=256, fea_concat=False)
    geometry = FlexiCubesGeometry(grid_res=80, device="cpu")

    def decode():
        # CRM.decode (spob: radius 0.5) and Renderer.forward (scale 0.95), line for line.
        tet_verts = geometry.verts.unsqueeze(0)
        dec_verts = decoder(features, tet_verts)
        out = heads["sdfMlp"](dec_verts)
        grid_feat = torch.index_select(input=dec_verts, index=geometry.indices.reshape(-1), dim=1)
        grid_feat = grid_feat.reshape(dec_verts.shape[0], geometry.indices.shape[0], geometry.indices.shape[1] * dec_verts.shape[-1])
        weight = heads["weightMlp"](grid_feat) * 0.1
        pred_sdf, deformation = out[..., 0], out[..., 1:]
        pred_sdf = pred_sdf + 0.5 - torch.sqrt((tet_verts**2).sum(-1))
        deform = torch.tanh(deformation) / 80 * 0.95 / 0.95
        deform = deform * 0.5
        return pred_sdf[0], (tet_verts + deform)[0], weight[0]

    (sdf, deformed, weight), decode_seconds = timed(decode)
    (verts, faces, _), flexi_seconds = timed(
        lambda: geometry.get_mesh(deformed, sdf, with_uv=False, indices=geometry.indices, weight_n=weight)
    )
    colours, colour_seconds = timed(lambda: heads["rgbMlp"](decoder(features, points)))
    print(f"heads: decode {decode_seconds:.2f} s, FlexiCubes {flexi_seconds:.2f} s, colour {colour_seconds:.3f} s")
    print(f"heads: sdf std {sdf.std():.3f}, {verts.shape[0]} vertices, {faces.shape[0]} faces")
    # Random weights everywhere give a noisy field and a large mesh (~630k faces): the faces
    # are kept as their SHA-256 (int32, little-endian, row-major) and a subset, the vertices as
    # a subset and sums.
    faces32 = faces.to(torch.int32).contiguous()
    io = {
        "faces.sha256": torch.tensor(list(hashlib.sha256(faces32.numpy().tobytes()).digest()), dtype=torch.uint8),
        "faces.shape": torch.tensor(list(faces32.shape), dtype=torch.int64),
        "faces.subset": faces32.reshape(-1)[::STRIDE].clone(),
        "colours": colours[0],
        "decode_seconds": torch.tensor(decode_seconds, dtype=torch.float64),
        "flexicubes_seconds": torch.tensor(flexi_seconds, dtype=torch.float64),
        "colour_seconds": torch.tensor(colour_seconds, dtype=torch.float64),
    }
    io.update(with_subsets("vertices", verts))
    io.update(with_subsets("sdf", sdf))
    io.update(with_subsets("deformed", deformed))
    io.update(with_subsets("weight", weight))
    seeded.save_keys("fullsize_heads", keys)
    common.save_io("fullsize_heads", io)


def unet_fixture():
    crm_modules()
    import model.archs.unet as upstream_unet

    real = upstream_unet.UNet2DModel

    def no_xformers(**kw):
        unet = real(**kw)
        # xformers is not installed; diffusers' default processor computes the same attention.
        unet.enable_xformers_memory_efficient_attention = lambda: None
        return unet

    upstream_unet.UNet2DModel = no_xformers
    try:
        net = upstream_unet.UNetPP(in_channels=32).eval()
    finally:
        upstream_unet.UNet2DModel = real
    keys = seeded.apply(net)
    x = seeded.seeded_tensor("input.triplane", [1, 12, 256, 768])
    t = torch.tensor([20], dtype=torch.long)
    out, seconds = timed(net, x, t)
    print(f"unet: {seconds:.2f} s, output std {out.std():.3f}")
    io = {"upstream_seconds": torch.tensor(seconds, dtype=torch.float64)}
    io.update(with_subsets("output", out))
    io["output.channel_sums"] = out.double().sum(dim=(0, 2, 3))
    seeded.save_keys("fullsize_unet", keys)
    common.save_io("fullsize_unet", io)


def imagedream_shims():
    """sys.modules entries for imports that upstream's diffusion code makes but never uses on
    these paths (no upstream file is edited):
      transformers  imagedream/ldm/modules/encoders/modules.py imports the T5 and CLIP text
                    classes at module level; only the OpenCLIP image path runs here.
      xformers      the multi-view UNet's attention calls xformers.ops.memory_efficient_attention;
                    the shim computes the attention it defines, softmax(q k^T / sqrt(d)) v, no
                    bias (as tools/parity/diffusion_unet.py does).
    """
    transformers = types.ModuleType("transformers")
    for name in ["T5Tokenizer", "T5EncoderModel", "CLIPTokenizer", "CLIPTextModel"]:
        setattr(transformers, name, None)
    sys.modules.setdefault("transformers", transformers)
    if "xformers" not in sys.modules:
        common.install_xformers_shim()


def clip_fixture():
    upstream("IMG3D_UPSTREAM_CRM")
    imagedream_shims()
    import open_clip
    from open_clip.model import _build_vision_tower

    from imagedream.ldm.modules.encoders.modules import FrozenOpenCLIPEmbedder

    version = open_clip.version.__version__
    # open_clip 3.x builds batch-first transformers; upstream's encode_image_with_transformer
    # permutes to sequence-first, so only 2.7.0 (upstream's pin) gives upstream's tokens.
    assert version == "2.7.0", f"open-clip-torch {version}: upstream pins 2.7.0"
    cfg = open_clip.get_model_config("ViT-H-14")
    visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"]).eval()
    keys = seeded.apply(visual)
    # FrozenOpenCLIPEmbedder.__init__ downloads the LAION weights; its image path only reads
    # self.model.visual, so the object is built around the seeded tower.
    embedder = FrozenOpenCLIPEmbedder.__new__(FrozenOpenCLIPEmbedder)
    torch.nn.Module.__init__(embedder)
    embedder.model = types.SimpleNamespace(visual=visual)
    pixels = seeded.seeded_tensor("input.pixels", [1, 3, 224, 224])
    embedder.encode_image_with_transformer(pixels)  # warm
    tokens, seconds = timed(embedder.encode_image_with_transformer, pixels)
    print(f"clip: {seconds:.2f} s, tokens {list(tokens.shape)} std {tokens.std():.3f}")
    io = {"upstream_seconds": torch.tensor(seconds, dtype=torch.float64)}
    io.update(with_subsets("tokens", tokens))
    # One whole token row each for the class token and a patch token.
    io["tokens.class"] = tokens[0, 0].clone()
    io["tokens.patch_100"] = tokens[0, 100].clone()
    seeded.save_keys("fullsize_clip", keys)
    common.save_io("fullsize_clip", io)


def yaml_params(path, *keys):
    from omegaconf import OmegaConf

    node = OmegaConf.load(os.path.join(os.environ["IMG3D_UPSTREAM_CRM"], path)).model.params
    for key in keys:
        node = node[key]
    return OmegaConf.to_container(node)


def cameras(views, ref_position):
    """The camera tensor exactly as ImageDreamDiffusion(Stage2).__init__ builds it."""
    from imagedream.camera_utils import get_camera_for_index

    camera = [get_camera_for_index(i).squeeze() for i in views]
    if ref_position is not None:
        camera[ref_position] = torch.zeros_like(camera[ref_position])
    return torch.stack(camera)


def mv_unet_fixture(stage):
    """A multi-view UNet from upstream's yaml (unet_config) with the Resampler it builds, one
    call on the CFG batch [uncond, cond] as libs/sample.py + DDIMSampler lay it out."""
    upstream("IMG3D_UPSTREAM_CRM")
    imagedream_shims()
    from imagedream.ldm.util import instantiate_from_config

    yaml = {1: "sd_v2_base_ipmv_zero_SNR.yaml", 2: "sd_v2_base_ipmv_chin8_zero_snr.yaml"}[stage]
    config = yaml_params(f"imagedream/configs/{yaml}", "unet_config")
    net = instantiate_from_config(config).eval()
    keys = seeded.apply(net)
    if stage == 1:
        num_frames, camera = 7, cameras([1, 2, 3, 4, 5, 0, 0], 6)
    else:
        num_frames, camera = 6, cameras([1, 2, 3, 4, 5, 0], None)
    b = 2 * num_frames
    x = seeded.seeded_tensor("input.x", [b, 4, 32, 32])
    # Text contexts (negative prompt, prompt) and the image prompt's CLIP tokens, each repeated
    # over the frames; the unconditional half has zero image tokens (and a zero reference
    # latent in stage 1, zero view latents in stage 2).
    context = torch.cat([seeded.seeded_tensor(f"input.context.{h}", [1, 77, 1024]).repeat(num_frames, 1, 1) for h in ["uncond", "cond"]])
    ip = seeded.seeded_tensor("input.ip", [1, 257, 1280]).repeat(num_frames, 1, 1)
    t = torch.full((b,), 741, dtype=torch.long)
    cond = {"context": context, "camera": camera.repeat(2, 1), "num_frames": num_frames, "ip": torch.cat([torch.zeros_like(ip), ip])}
    if stage == 1:
        ip_img = seeded.seeded_tensor("input.ip_img", [1, 4, 32, 32])
        cond["ip_img"] = torch.cat([torch.zeros_like(ip_img), ip_img])
    else:
        pixels = seeded.seeded_tensor("input.pixel_images", [num_frames, 4, 32, 32])
        cond["pixel_images"] = torch.cat([torch.zeros_like(pixels), pixels])
    # forward writes ip_img into x in place: a fresh copy per call.
    net(x.clone(), t, **cond)  # warm
    eps, seconds = timed(lambda: net(x.clone(), t, **cond))
    print(f"unet stage {stage}: {seconds:.2f} s, eps {list(eps.shape)} std {eps.std():.3f}")
    name = f"fullsize_mv_unet{stage}"
    io = {"upstream_seconds": torch.tensor(seconds, dtype=torch.float64), "camera": camera, "t": t}
    io.update(with_subsets("eps", eps))
    io["eps.frame_channel_sums"] = eps.double().sum(dim=(2, 3))
    io["eps.cond_frame0"] = eps[num_frames].clone()
    seeded.save_keys(name, keys)
    common.save_io(name, io)


def vae_fixture():
    """AutoencoderKL from the stage-1 yaml (vae_config, SD 2.1's), through
    LatentDiffusionInterface.encode_first_stage (the posterior) and decode_first_stage, 2 views."""
    upstream("IMG3D_UPSTREAM_CRM")
    imagedream_shims()
    from imagedream.ldm.interface import LatentDiffusionInterface
    from imagedream.ldm.util import instantiate_from_config

    config = yaml_params("imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml", "vae_config")
    vae = instantiate_from_config(config).eval()
    keys = seeded.apply(vae)
    # The interface methods only read scale_factor (the yaml's 0.18215) and vae_model.
    scale = yaml_params("imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml")["scale_factor"]
    iface = types.SimpleNamespace(scale_factor=scale, vae_model=vae)
    images = seeded.seeded_tensor("input.images", [2, 3, 256, 256]).clamp(-1, 1)
    latent = seeded.seeded_tensor("input.latent", [2, 4, 32, 32])
    posterior, encode_seconds = timed(LatentDiffusionInterface.encode_first_stage, iface, images)
    decoded, decode_seconds = timed(LatentDiffusionInterface.decode_first_stage, iface, latent)
    print(f"vae: encode {encode_seconds:.2f} s, decode {decode_seconds:.2f} s, decoded std {decoded.std():.3f}")
    io = {
        "encode_seconds": torch.tensor(encode_seconds, dtype=torch.float64),
        "decode_seconds": torch.tensor(decode_seconds, dtype=torch.float64),
        "scale_factor": torch.tensor(scale, dtype=torch.float64),
        "mean": posterior.mean,
        "logvar": posterior.logvar,
    }
    io.update(with_subsets("decoded", decoded))
    io["decoded.channel_sums"] = decoded.double().sum(dim=(2, 3))
    seeded.save_keys("fullsize_vae", keys)
    common.save_io("fullsize_vae", io)


FIXTURES = {
    "vae": vae_fixture,
    "u2net": u2net_fixture,
    "heads": heads_fixture,
    "unet": unet_fixture,
    "clip": clip_fixture,
    "mv_unet1": lambda: mv_unet_fixture(1),
    "mv_unet2": lambda: mv_unet_fixture(2),
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(FIXTURES):
        FIXTURES[name]()
