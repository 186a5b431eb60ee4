"""Full-size parity fixtures with seeded weights (none stored): pipeline/tests/fullsize.rs.

Usage (a Python with torch 2.11.0 from the img3d torch venv, plus tools/fullsize/requirements.txt):
    IMG3D_UPSTREAM_CRM=/path/to/CRM IMG3D_UPSTREAM_U2NET=/path/to/U-2-Net \
        python tools/fullsize/fixtures.py [u2net] [heads] [unet]

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


if __name__ == "__main__":
    which = sys.argv[1:] or ["u2net", "heads", "unet"]
    for name in which:
        {"u2net": u2net_fixture, "heads": heads_fixture, "unet": unet_fixture}[name]()
