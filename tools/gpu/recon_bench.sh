#!/usr/bin/env bash
# Reconstruction on a GPU: the `recon_bench` example (built on the development machine) at CRM's
# full size with random weights: ms per step (triplane input, UNet, grid decode, FlexiCubes,
# cleaning, unwrap, UV raster, texture bake, PNG, OBJ+zip) on CUDA, then the same on the CPU for
# the side-by-side figures, and the peak GPU memory in use during the CUDA run (nvidia-smi,
# sampled every 100 ms, minus what was in use before).
#
# Upstream's reference (issue 6, H200): generate3d 4.75 s, of which xatlas 4.64 s; triplane UNet
# 38 ms; grid decode + FlexiCubes 23 ms; 1024x1024 texture query 19 ms. Target: under 2 s whole.
#
# Nothing is built here. Before a GPU run, on the development machine:
#   cargo build --release -p img3d-pipeline --example recon_bench     (carry target/release/examples/recon_bench)
# Then, on the GPU machine, from the repository root:
#   tools/gpu/recon_bench.sh            # CUDA, 3 runs, then CPU, 1 run
#   tools/gpu/recon_bench.sh --dry      # tiny config on the CPU only (a smoke run anywhere)
# Environment (optional): BENCH_BIN (target/release/examples/recon_bench), PYTHON (python3, for
# torch's library path), OUT (./bench-out), RUNS (3).
set -euo pipefail
cd "$(dirname "$0")/../.."

BENCH_BIN=${BENCH_BIN:-target/release/examples/recon_bench}
[[ -x "$BENCH_BIN" ]] || BENCH_BIN=target/debug/examples/recon_bench
[[ -x "$BENCH_BIN" ]] || { echo "no binary at $BENCH_BIN: build it on the development machine" >&2; exit 1; }
PYTHON=${PYTHON:-python3}
OUT=${OUT:-./bench-out}
mkdir -p "$OUT"
TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [[ "${1:-}" == "--dry" ]]; then
    "$BENCH_BIN" --tiny --device cpu --runs 1 | tee "$OUT/recon_dry.log"
    exit 0
fi
nvidia-smi -L >/dev/null 2>&1 || { echo "no GPU here: use --dry" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$OUT/recon_gpu_mem.log" &
poller=$!
rc=0
"$BENCH_BIN" --device cuda --runs "${RUNS:-3}" | tee "$OUT/recon_cuda.log" || rc=$?
kill "$poller" 2>/dev/null || true
wait "$poller" 2>/dev/null || true
peak=$(awk -v base="$base" 'BEGIN{m=0} {if ($1+0 > m) m=$1+0} END{print m-base}' "$OUT/recon_gpu_mem.log")
echo "peak GPU memory in use during the CUDA runs: $peak MiB (over the $base MiB before)"
"$BENCH_BIN" --device cpu --runs 1 | tee "$OUT/recon_cpu.log" || rc=$?
exit $rc
