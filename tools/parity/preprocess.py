"""Fixture for pipeline/src/preprocess.rs: upstream `preprocess_image` end to end.

Usage: ~/.cache/img3d/parity/bin/python tools/parity/preprocess.py /path/to/CRM /path/to/U-2-Net

Runs upstream's own code: the functions `preprocess_image`, `remove_background`,
`do_resize_content`, `expand_to_square` and `add_background` are taken from CRM's `app.py`
source (its module-level code loads the real models, so only these definitions are executed),
with rembg 2.0's real `remove` and `U2netSession` (onnxruntime, CPU). The session's model is
upstream U-2-Net at the tiny width of `U2netConfig::tiny()` with random weights
(`tools/parity/u2net.py`), exported with `torch.onnx.export` (legacy exporter, constant folding
off, so initializers keep the state-dict names).

Writes under pipeline/tests/data/:
  preprocess.weights.safetensors  the tiny U-2-Net's state dict
  preprocess.io.safetensors       per case: CASE.file (input file bytes), CASE.ratio,
                                  CASE.out (preprocess_image output, H x W x 3 uint8);
                                  for the U-2-Net case also CASE.pred (onnxruntime's first
                                  output, 1 x 1 x 320 x 320) and CASE.mask (the session's mask)
                                  exif.file (a JPEG with EXIF orientation 6), exif.decoded
                                  (PIL's decode after ImageOps.exif_transpose)
  u2net_named.onnx                that ONNX model (state-dict initializer names, batch norm kept)
  u2net_fused.onnx                the same weights exported with constant folding (batch norm
                                  folded into the convolutions, anonymous initializer names),
                                  for the converter's tests
"""

import ast
import io
import os
import sys

import numpy as np
import onnxruntime as ort
import PIL
import rembg
import torch
from PIL import Image, ImageOps  # noqa: F401 (PIL.ImageOps)
from rembg.sessions.u2net import U2netSession

import common
import u2net as u2net_fixture

# = U2netConfig::tiny()
ENCODER = [(2, 4)] * 6
DECODER = [(2, 4)] * 5
UPSTREAM_FUNCTIONS = {"expand_to_square", "remove_background", "do_resize_content", "add_background", "preprocess_image"}


def upstream_functions(crm_path):
    """The preprocessing functions of CRM's app.py, executed from its source."""
    path = os.path.join(crm_path, "app.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in UPSTREAM_FUNCTIONS]
    assert {d.name for d in defs} == UPSTREAM_FUNCTIONS, "app.py changed"
    ns = {"Image": Image, "PIL": PIL, "rembg": rembg, "print": lambda *a, **k: None}
    exec(compile(ast.Module(body=defs, type_ignores=[]), path, "exec"), ns)
    return ns


class Recorder:
    """Wraps the onnxruntime session to keep what the network returned."""

    def __init__(self, inner):
        self.inner = inner
        self.outputs = []

    def run(self, *args, **kwargs):
        out = self.inner.run(*args, **kwargs)
        self.outputs.append(out[0])
        return out

    def get_inputs(self):
        return self.inner.get_inputs()


def session_for(onnx_path):
    class FixtureSession(U2netSession):
        @classmethod
        def download_models(cls, *args, **kwargs):
            return onnx_path

    sess = FixtureSession("u2net", ort.SessionOptions(), providers=["CPUExecutionProvider"])
    sess.inner_session = Recorder(sess.inner_session)
    return sess


def export(net, path, fold):
    x = torch.zeros(1, 3, 320, 320)
    torch.onnx.export(net, x, path, dynamo=False, opset_version=11, do_constant_folding=fold, input_names=["input.1"])
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path) / 1024:.0f} KiB)")


def synthetic(w, h, rng, alpha):
    """A smooth object on a gradient with noise: structure for U-2-Net and the resamplers."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    blob = ((xx - w * 0.55) / (w * 0.3)) ** 2 + ((yy - h * 0.45) / (h * 0.35)) ** 2 < 1
    img = np.stack([xx / w * 200, yy / h * 180, np.full_like(xx, 90)], -1)
    img[blob] = [230, 60, 40]
    img += rng.normal(0, 12, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if not alpha:
        return Image.fromarray(img, "RGB")
    a = np.where(blob, 255, 0).astype(np.float64)
    a[(yy > h * 0.7)] = 128  # partial transparency
    a[:, : w // 5] = np.linspace(0, 255, w // 5)[None, :]  # a ramp, including alpha 0
    return Image.fromarray(np.dstack([img, a.astype(np.uint8)]), "RGBA")


def png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fns = upstream_functions(sys.argv[1])
    u2 = u2net_fixture.import_u2net(sys.argv[2])
    net = u2net_fixture.randomize(u2net_fixture.tiny_u2net(u2, encoder=ENCODER, decoder=DECODER), seed=3)
    named = os.path.join(common.DATA_DIR, "u2net_named.onnx")
    export(net, named, fold=False)
    export(net, os.path.join(common.DATA_DIR, "u2net_fused.onnx"), fold=True)
    sess = session_for(named)
    fns["rembg_session"] = sess

    rng = np.random.default_rng(7)
    cases = {
        # An opaque photo: U-2-Net removes the background (gradio hands over RGBA, alpha 255).
        "opaque": (synthetic(96, 64, rng, alpha=False), 1.0),
        # Transparency: the alpha is kept, U-2-Net does not run.
        "alpha": (synthetic(50, 80, rng, alpha=True), 1.0),
        # The same with a foreground ratio below 1 (do_resize_content: bicubic, premultiplied).
        "alpha_ratio": (synthetic(50, 80, rng, alpha=True), 0.8),
    }
    io_tensors = {}
    for name, (img, ratio) in cases.items():
        data = png_bytes(img)
        rgba = Image.open(io.BytesIO(data)).convert("RGBA")  # gradio's image_mode="RGBA"
        sess.inner_session.outputs.clear()
        out = fns["preprocess_image"](rgba, "Auto Remove background", ratio, (127, 127, 127))
        io_tensors[f"{name}.file"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        io_tensors[f"{name}.ratio"] = torch.tensor([ratio], dtype=torch.float64)
        io_tensors[f"{name}.out"] = torch.from_numpy(np.array(out))
        if sess.inner_session.outputs:
            io_tensors[f"{name}.pred"] = torch.from_numpy(sess.inner_session.outputs[0])
            io_tensors[f"{name}.mask"] = torch.from_numpy(np.array(sess.predict(rgba)[0]))
    # A JPEG whose EXIF says "rotate 90 CW to view" (orientation 6): rembg and gradio apply it.
    jpeg = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    synthetic(40, 24, rng, alpha=False).save(jpeg, "JPEG", quality=95, exif=exif)
    viewed = PIL.ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg.getvalue()))).convert("RGB")
    io_tensors["exif.file"] = torch.frombuffer(bytearray(jpeg.getvalue()), dtype=torch.uint8)
    io_tensors["exif.decoded"] = torch.from_numpy(np.array(viewed))
    assert "opaque.pred" in io_tensors and "alpha.pred" not in io_tensors, "paths taken"
    common.save_weights("preprocess", u2net_fixture.state_dict(net))
    common.save_io("preprocess", io_tensors)


if __name__ == "__main__":
    main()
