#!/usr/bin/env bash
# Multi-view diffusion on a GPU: ours (the `diffusion_bench` example, built on the development
# machine) beside upstream CRM's PyTorch UNets timed in the same run
# (upstream_unet_bench.py: random weights, fp16 + autocast, the same CFG batches).
#
# Ours runs the official architecture (DiffusionConfig::crm(), random weights, fp16 with fp32
# group norms, as upstream casts it) on both stages: ms per guided UNet call (CFG batch 14 /
# 12), then each whole stage with 50 DDIM steps and CFG (CLIP, VAE encode, sampling, decode).
# Peak GPU memory is read for both with nvidia-smi (device memory in use, CUDA context and
# allocator cache included, minus what was in use before); upstream's own JSON also has
# torch.cuda.max_memory_allocated (allocations only).
#
# Nothing is built here. Before a GPU run, on the development machine:
#   cargo build --release -p img3d-pipeline --example diffusion_bench
#   mkdir -p .gpu-ref && cp ../shared/tools/upstream_unet_bench.py .gpu-ref/  # plus crm_ref/:
#   git -C <CRM checkout at 4964e36> archive HEAD imagedream | tar -x -C .gpu-ref/crm_ref
#   (.gpu-ref is git-ignored through .git/info/exclude; carry it and the binary)
# Then, on the GPU machine, from the repository root:
#   tools/gpu/diffusion_bench.sh            # full size, cuda, 50 steps
#   tools/gpu/diffusion_bench.sh --dry      # small: tiny ours + upstream --tiny, on the CPU
#
# Environment (all optional):
#   BENCH_BIN       our binary        (target/release/examples/diffusion_bench)
#   UPSTREAM_BENCH  upstream's script (.gpu-ref/upstream_unet_bench.py, else
#                                      ../shared/tools/upstream_unet_bench.py)
#   CRM_REF         upstream sources  (crm_ref/ beside UPSTREAM_BENCH)
#   PYTHON          python with torch (python3)
#   OUT             results folder    (./bench-out)
#   STEPS           DDIM steps        (50; --dry: the tiny bundle's)
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=full
[[ "${1:-}" == "--dry" ]] && MODE=dry
BENCH_BIN=${BENCH_BIN:-target/release/examples/diffusion_bench}
[[ -x "$BENCH_BIN" ]] || BENCH_BIN=target/debug/examples/diffusion_bench
PYTHON=${PYTHON:-python3}
OUT=${OUT:-./bench-out}
mkdir -p "$OUT"
if [[ -z "${UPSTREAM_BENCH:-}" ]]; then
    for f in .gpu-ref/upstream_unet_bench.py ../shared/tools/upstream_unet_bench.py; do
        [[ -f "$f" ]] && UPSTREAM_BENCH=$f && break
    done
fi
UPSTREAM_BENCH=${UPSTREAM_BENCH:-}
if [[ -n "$UPSTREAM_BENCH" ]]; then
    CRM_REF=${CRM_REF:-$(dirname "$UPSTREAM_BENCH")/crm_ref}
fi

# Our binary links libtorch; on another machine use that machine's torch (same 2.11.0).
TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[[ -x "$BENCH_BIN" ]] || { echo "no binary at $BENCH_BIN: build it on the development machine" >&2; exit 1; }

HAVE_GPU=0
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && HAVE_GPU=1
if [[ $MODE == full && $HAVE_GPU == 0 ]]; then
    echo "no GPU here: use --dry for the CPU smoke run" >&2
    exit 1
fi
echo "== $(date -u +%FT%TZ) mode $MODE, binary $BENCH_BIN, torch lib $TORCH_LIB"
[[ $HAVE_GPU == 1 ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# Runs "$@" while sampling GPU memory in use every 100 ms; writes the peak minus the level
# before the run (MiB) to $OUT/$1.gpu_mib. Without a GPU it just runs the command.
with_gpu_memory() {
    local tag=$1; shift
    if [[ $HAVE_GPU == 0 ]]; then "$@"; return; fi
    local base log=$OUT/$tag.gpu_mem.log
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$log" &
    local poller=$!
    local rc=0
    "$@" || rc=$?
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
    awk -v base="$base" 'BEGIN{m=0} {if ($1+0 > m) m=$1+0} END{print m-base}' "$log" >"$OUT/$tag.gpu_mib"
    echo "$tag: peak GPU memory in use (nvidia-smi, over the $base MiB before): $(cat "$OUT/$tag.gpu_mib") MiB"
    return $rc
}

if [[ $MODE == full ]]; then
    OURS=(--size crm --device cuda --steps "${STEPS:-50}" --calls 20 --warmup 3)
    REF=(--steps "${STEPS:-50}" --budget-s 240)
else
    OURS=(--size tiny --device cpu --calls 2 --warmup 1 ${STEPS:+--steps "$STEPS"})
    REF=(--device cpu --tiny --steps 2 --modes auto --no-cudnn-benchmark --no-profile --budget-s 60)
fi

echo "== ours: $BENCH_BIN ${OURS[*]}"
with_gpu_memory ours "$BENCH_BIN" "${OURS[@]}" --json "$OUT/bench_ours.json" 2>&1 | tee "$OUT/ours.log"

if [[ -n "$UPSTREAM_BENCH" && -d "${CRM_REF:-/nonexistent}/imagedream" ]]; then
    echo "== upstream: $UPSTREAM_BENCH ${REF[*]} (CRM_REF=$CRM_REF)"
    PYTHONUNBUFFERED=1 CRM_REF=$CRM_REF with_gpu_memory ref \
        "$PYTHON" "$UPSTREAM_BENCH" "${REF[@]}" --json-out "$OUT/bench_ref.json" 2>&1 | tee "$OUT/ref.log" || true
else
    echo "== upstream: skipped (no upstream_unet_bench.py with a crm_ref/imagedream beside it;" \
         "set UPSTREAM_BENCH and CRM_REF)"
fi

"$PYTHON" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def mib(tag):
    try:
        return float(open(os.path.join(out, tag + ".gpu_mib")).read())
    except (OSError, ValueError):
        return None
ours, ref = load("bench_ours.json"), load("bench_ref.json")
head = (ref or {}).get("headline", {})
mode = head.get("mode")
rows = []
for s in (1, 2):
    o = (ours or {}).get("stages", {}).get("stage%d" % s, {})
    r = (ref or {}).get("stages", {}).get("stage%d" % s, {}).get("results", {}).get(mode, {})
    rows.append(("stage %d ms per UNet call" % s, o.get("unet_call_ms"), head.get("stage%d_ms_per_forward" % s)))
    rows.append(("stage %d s DDIM loop (CFG)" % s, o.get("sampler_s"), head.get("stage%d_ddim_sampler_s" % s)))
    rows.append(("stage %d s whole stage" % s, o.get("stage_s"), None))
    rows.append(("stage %d UNet peak alloc MiB" % s, None, r.get("peak_mem_MiB")))
rows.append(("peak GPU MiB in use (smi)", mib("ours"), mib("ref")))
fmt = lambda v: "-" if v is None else ("%.3f" % v if v < 100 else "%.0f" % v)
print("\n%-32s %14s %14s" % ("steps %s" % (ours or {}).get("steps"), "ours (tch)", "upstream"))
for name, a, b in rows:
    print("%-32s %14s %14s" % (name, fmt(a), fmt(b)))
print("ours 'whole stage': image transforms + CLIP + VAE encode + DDIM loop + decode + u8 strip;")
print("upstream 'DDIM loop': its DDIMSampler.sample() on the UNet alone; 'smi' includes each process's")
print("CUDA context and allocator cache (ours: both stages' UNet, CLIP and VAE resident; upstream: one UNet).")
PY
