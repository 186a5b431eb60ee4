"""Fixture for pipeline/src/resample.rs: Pillow 10.1 `Image.resize` outputs.

Usage: ~/.cache/img3d/parity/bin/python tools/parity/resample.py
(needs Pillow==10.1.0, the version upstream's environment pins).

Writes pipeline/tests/data/resample.io.safetensors:
  MODE.src                     the source image (seeded noise plus a gradient), uint8 (F: float32)
  MODE.FILTER.WxH              Image.resize((W, H), FILTER) of it
for MODE in RGB, RGBA, L, F and each filter, over sizes that exercise up- and downsampling,
one axis only, and extreme aspect ratios.
"""

import numpy as np
import PIL
import torch
from PIL import Image

from common import save_io

assert PIL.__version__ == "10.1.0", f"Pillow {PIL.__version__}: the fixture must come from 10.1.0"

SRC_W, SRC_H = 41, 29
SIZES = [(100, 77), (13, 9), (41, 11), (19, 29), (5, 60)]
FILTERS = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def source(channels, rng):
    noise = rng.integers(0, 256, size=(SRC_H, SRC_W, channels))
    ramp = np.linspace(0, 255, SRC_W)[None, :, None]
    img = np.where(rng.random((SRC_H, SRC_W, 1)) < 0.5, noise, ramp)
    return img.astype(np.uint8)


def main():
    rng = np.random.default_rng(1234)
    out = {}
    images = {
        "RGB": Image.fromarray(source(3, rng), "RGB"),
        "RGBA": Image.fromarray(source(4, rng), "RGBA"),
        "L": Image.fromarray(source(1, rng)[:, :, 0], "L"),
        "F": Image.fromarray((rng.standard_normal((SRC_H, SRC_W)) * 100).astype(np.float32), "F"),
    }
    for mode, img in images.items():
        out[f"{mode}.src"] = torch.from_numpy(np.array(img))
        for name, flt in FILTERS.items():
            for w, h in SIZES:
                out[f"{mode}.{name}.{w}x{h}"] = torch.from_numpy(np.array(img.resize((w, h), flt)))
    save_io("resample", out)


if __name__ == "__main__":
    main()
