"""Runs upstream's unwrapper (`xatlas.parametrize`, default options, as CRM's export_mesh_wt_uv
calls it) on a mesh for the side-by-side numbers of `cargo bench -p img3d-pipeline --bench mesh`.

Usage: python tools/parity/xatlas_bench.py IN.safetensors OUT.safetensors
IN holds `vertices` [N, 3] f32 and `faces` [M, 3] int; OUT gets `uvs`, `uv_faces` and `seconds`.
"""

import sys
import time

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    src, dst = sys.argv[1], sys.argv[2]
    t = load_file(src)
    v = t["vertices"].astype(np.float32)
    f = t["faces"].astype(np.int64)
    import xatlas

    start = time.perf_counter()
    _, indices, uvs = xatlas.parametrize(v, f)
    seconds = time.perf_counter() - start
    save_file({"uvs": np.ascontiguousarray(uvs, dtype=np.float32),
               "uv_faces": np.ascontiguousarray(indices, dtype=np.int64),
               "seconds": np.array([seconds], dtype=np.float64)}, dst)


if __name__ == "__main__":
    main()
