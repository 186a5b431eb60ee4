#!/usr/bin/env bash
# Every GPU check of the project in one run, for a session that is lent a GPU machine (which
# has PyTorch 2.11 in its python3 and no Rust): nothing is built there.
#
# On the development machine, first:
#   cargo build --release -p img3d-pipeline --example diffusion_bench --example recon_bench --example flexicubes_bench
#   cargo test --release -p img3d-pipeline --test recon --test flexicubes --no-run   # note the two binaries
#   mkdir -p .gpu-bin && cp target/release/examples/{diffusion,recon,flexicubes}_bench .gpu-bin/ \
#     && cp target/release/deps/recon-<hash> .gpu-bin/recon_tests && cp target/release/deps/flexicubes-<hash> .gpu-bin/flexicubes_tests
#   (plus .gpu-ref/ for the upstream UNet timing, see tools/gpu/diffusion_bench.sh)
# and carry .gpu-bin (and .gpu-ref). On the GPU machine, from the repository root:
#   tools/gpu/all.sh            # about 6-8 minutes; results and logs under $OUT (./bench-out)
#
# 1. CUDA parity: FlexiCubes CUDA vs CPU, the tiny reconstruction CUDA vs CPU (+ a whole
#    generate3d on CUDA);
# 2. reconstruction at full size on CUDA: ms per step, peak GPU memory (tools/gpu/recon_bench.sh);
# 3. FlexiCubes alone at 80^3 on CUDA;
# 4. both diffusion stages at full size beside upstream's UNets (tools/gpu/diffusion_bench.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.gpu-bin}
export OUT=${OUT:-./bench-out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
step() {
    echo "== $*"
    "$@" 2>&1 | tee -a "$OUT/all.log"
    local rc=${PIPESTATUS[0]}
    [[ $rc == 0 ]] || { echo "== FAILED ($rc): $*"; status=1; }
}
# The parity tests are #[ignore = "needs CUDA"] everywhere else: --ignored runs them here.
step "$BIN/flexicubes_tests" cuda_matches_cpu --ignored --nocapture
step "$BIN/recon_tests" cuda_matches_cpu --ignored --nocapture
step env BENCH_BIN=$BIN/recon_bench tools/gpu/recon_bench.sh
step "$BIN/flexicubes_bench" cuda 80 5
step env BENCH_BIN=$BIN/diffusion_bench tools/gpu/diffusion_bench.sh
exit $status
