# Source this before building: it points tch at the PyTorch 2.11.0 venv that scripts/setup
# creates (tch 0.24 needs exactly libtorch 2.11.0).
export IMG3D_TORCH_VENV="${IMG3D_TORCH_VENV:-$HOME/.cache/img3d/torch-2.11.0}"
export PATH="$IMG3D_TORCH_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# libtorch's OpenMP threads busy-wait between parallel regions by default; on a shared or
# oversubscribed machine (tests run in parallel, 2 cores in CI) that spinning made a tiny
# U-2-Net run 18x slower (5.7 s vs 0.31 s). Passive waiting costs nothing measurable here.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
