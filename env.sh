# Source this before building: it points tch at the PyTorch 2.11.0 venv that scripts/setup
# creates (tch 0.24 needs exactly libtorch 2.11.0).
export IMG3D_TORCH_VENV="${IMG3D_TORCH_VENV:-$HOME/.cache/img3d/torch-2.11.0}"
export PATH="$IMG3D_TORCH_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# OMP_WAIT_POLICY is left alone here: serving and benches want libtorch's default (spinning
# OpenMP threads; a warm full-size stage-1 UNet call took 14.4 s with it, 17.9 s with PASSIVE).
# scripts/test sets PASSIVE for the test suite, whose parallel tests oversubscribe the cores.
