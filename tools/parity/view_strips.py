"""Fixture for the order and layout of the six views in pixel_images.png and xyz_images.png.

Upstream's stages return lists of PIL images (TwoStagePipeline.stage1_sample: i2i's frames with
the reference frame popped; stage2_sample: i2iStage2's six frames), and its app.py turns each
list into the image it shows and reconstructs from with `np.concatenate(images, 1)`: frames
side by side, left to right, in list order. This script applies exactly that to upstream's own
u8 views of the diffusion_stages fixture (written by diffusion_unet.py from upstream's i2i and
i2iStage2) and stores the two strips, so pipeline/tests/stages.rs can check that our
pixel_images/xyz_images strips put upstream's frames in upstream's places.

    python tools/parity/view_strips.py      (needs numpy, Pillow, safetensors, torch)
"""

import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "pipeline", "tests", "data")


def main():
    io = load_file(os.path.join(DATA, "diffusion_stages.io.safetensors"))
    out = {}
    for stage in ("stage1", "stage2"):
        frames = [Image.fromarray(v.numpy()) for v in io[f"{stage}.views"]]  # as stageN_sample returns them
        strip = np.concatenate(frames, 1)  # app.py: np_imgs / np_xyzs
        out[f"{stage}.strip"] = torch.from_numpy(np.ascontiguousarray(strip))
        print(stage, tuple(strip.shape))
    save_file(out, os.path.join(DATA, "view_strips.io.safetensors"))


if __name__ == "__main__":
    main()
