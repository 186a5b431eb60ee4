#!/usr/bin/env bash
# Creates the Python that `cargo bench -p img3d-pipeline --bench mesh` runs xatlas with:
# a venv at ${IMG3D_XATLAS_VENV:-~/.cache/img3d/xatlas} with tools/parity/requirements-xatlas.txt
# from PyPI. The bench finds it there (or takes IMG3D_PARITY_PYTHON).
set -euo pipefail
venv="${IMG3D_XATLAS_VENV:-$HOME/.cache/img3d/xatlas}"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r "$here/requirements-xatlas.txt"
"$venv/bin/python" -c "import xatlas, numpy, safetensors; print('xatlas venv ready:', '$venv')"
