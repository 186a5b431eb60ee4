#!/usr/bin/env python3
"""Converts the official CRM checkpoints into a model bundle for the img3d pipeline.

    python tools/convert.py --config CONFIG.json --out DIR \\
        --u2net u2net.onnx --pixel pixel-diffusion.pth --ccm ccm-diffusion.pth --crm CRM.pth \\
        [--openclip open_clip_pytorch_model.bin]

Inputs: rembg's `u2net.onnx`, and from Hugging Face `Zhengyi/CRM` `pixel-diffusion.pth`,
`ccm-diffusion.pth` and `CRM.pth`. `--config` is the bundle's `config.json` as this build of
img3d defines it (`img3d-worker bundle-config crm` prints it): every stage under `stages`
(`diffusion`, `reconstruction`), each converted by its converter below, and written unchanged
as the bundle's `config.json`. `--openclip`: the
checkpoints are loaded over open_clip's pretrained ViT-H-14 (laion2b_s32b_b79k) upstream; give
that file when the checkpoints do not carry the CLIP weights themselves.

The bundle is written to a temporary directory next to DIR and renamed into place when
complete, `config.json` last, so an interrupted conversion never leaves a bundle that loads.
Runs with the project's torch venv (tools/requirements.txt). `img3d-worker --model crm` runs it
by itself after downloading the inputs.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from bundle import diffusion, onnx_proto, reconstruction, u2net_onnx  # noqa: E402

# Stage converters by their key under `stages` in config.json (`Stages` in
# pipeline/src/config.rs), in pipeline order: (function(inputs, args, config) -> (components,
# constants), input flags). A bundle holds every stage; a config naming another stage is of
# another build than this tool.
STAGES = {
    "diffusion": (lambda inputs, args, config: diffusion.convert(inputs, args), ("pixel", "ccm")),
    reconstruction.NAME: (reconstruction.convert, ("crm",)),
}

# Bundle files outside the stages (pipeline/src/bundle.rs).
U2NET = "u2net"
CONSTANTS = "constants"
CONFIG = "config.json"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the bundle's config.json (img3d-worker bundle-config crm)")
    p.add_argument("--out", required=True, help="bundle directory to create (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--u2net", help="rembg's u2net.onnx (background removal)")
    p.add_argument("--pixel", help="pixel-diffusion.pth (stage 1)")
    p.add_argument("--ccm", help="ccm-diffusion.pth (stage 2)")
    p.add_argument("--crm", help="CRM.pth (reconstruction)")
    p.add_argument("--openclip", help="open_clip ViT-H-14 laion2b_s32b_b79k weights, loaded under the diffusion checkpoints as upstream does")
    p.add_argument("--text-heads", type=int, help="attention heads of the OpenCLIP text tower (default: width / 64, ViT-H-14's 16)")
    return p.parse_args(argv)


def u2net_component(path, config):
    print(f"converting {path} (U-2-Net)")
    with open(path, "rb") as f:
        state = u2net_onnx.convert(onnx_proto.read_model(f.read()))
    found = u2net_onnx.widths(state)
    for key, value in found.items():
        if config["u2net"][key] != value:
            raise ValueError(f"{path}: U-2-Net {key} is {value}, the config says {config['u2net'][key]}")
    return {k: torch.from_numpy(v.copy()) for k, v in state.items()}


def save(directory, name, tensors):
    tensors = {k: v.contiguous() for k, v in sorted(tensors.items())}
    path = os.path.join(directory, f"{name}.safetensors")
    save_file(tensors, path)
    print(f"  wrote {name}.safetensors: {len(tensors)} tensors, {os.path.getsize(path) / 2**20:.1f} MiB")


def check_stages(config):
    """Raises ValueError unless the config's `stages` are exactly the ones this tool converts."""
    stages = config.get("stages")
    if not isinstance(stages, dict):
        raise ValueError("the config has no `stages`: give the output of `img3d-worker bundle-config crm` of this build")
    absent = [f"stages.{name}" for name in STAGES if name not in stages]
    unknown = sorted(f"stages.{name}" for name in set(stages) - set(STAGES))
    if absent:
        raise ValueError(f"the config has no {', '.join(absent)}: give the output of `img3d-worker bundle-config crm` of this build")
    if unknown:
        raise ValueError(f"the config has stage(s) this converter does not know: {', '.join(unknown)} (a converter older than the build?)")


def convert(args):
    with open(args.config) as f:
        config = json.load(f)
    check_stages(config)
    needed = ["u2net"] + [flag for _, flags in STAGES.values() for flag in flags]
    missing = [f"--{flag}" for flag in needed if getattr(args, flag) is None]
    if missing:
        raise ValueError(f"missing input(s): {', '.join(missing)}")
    inputs = {flag: getattr(args, flag) for flag in needed}

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.force:
        raise ValueError(f"{out} exists (use --force to replace it)")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.converting-", dir=parent)
    try:
        start = time.monotonic()
        save(tmp, U2NET, u2net_component(inputs["u2net"], config))
        constants = {}
        for name in STAGES:
            components, consts = STAGES[name][0](inputs, args, config)
            for component, tensors in components.items():
                save(tmp, component, tensors)
            constants.update(consts)
        if constants:
            save(tmp, CONSTANTS, constants)
        with open(os.path.join(tmp, CONFIG), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
        print(f"bundle written to {out} in {time.monotonic() - start:.1f} s")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv=None):
    args = parse_args(argv)
    try:
        convert(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"convert.py: {e}")


if __name__ == "__main__":
    main()
