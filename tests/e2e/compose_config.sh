#!/usr/bin/env bash
# Validates the deployment files without a Docker engine (none runs in CI; nothing is built or
# started here): docker-compose.yml through `docker-compose config` for each profile and with
# deploy/gpu-workers.sh's override, docker-compose.worker.yml (GPU hosts on a shared Redis)
# alone and with the override, then checks the properties the deployment relies on in the
# resolved configuration (Redis never evicts and keeps an AOF on a volume, gateways scaled out, one distinct GPU per worker,
# nginx running deploy/nginx.conf), the Dockerfiles' runtime stages (non-root, healthchecks)
# and the healthcheck script against a real HTTP server.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
fail() { echo "compose_config.sh: FAIL: $*" >&2; exit 1; }
command -v docker-compose >/dev/null || fail "docker-compose is missing (scripts/setup installs Debian's)"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "-- docker-compose config -q (default, gpu, cpu profiles)"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile gpu config -q
docker-compose -f docker-compose.yml --profile cpu config -q

echo "-- one worker per GPU with deploy/gpu-workers.sh"
docker-compose -f docker-compose.yml --profile gpu config >"$work/gpu.yml"
docker-compose -f docker-compose.yml --profile cpu config >"$work/cpu.yml"
# An override resolves `extends: file:` against its own directory, so both files go side by
# side into the work directory (the copy is the repository's file, unchanged).
cp docker-compose.yml "$work/docker-compose.yml"
deploy/gpu-workers.sh 4 >"$work/gpus4.override.yml"
deploy/gpu-workers.sh --ids 1,3 >"$work/gpus13.override.yml"
deploy/gpu-workers.sh 1 >"$work/gpus1.override.yml"
compose_with() { docker-compose -f "$work/docker-compose.yml" -f "$work/$1.override.yml" --profile gpu config; }
compose_with gpus4 >"$work/gpu4.yml"
IMG3D_GPU=1 compose_with gpus13 >"$work/gpu13.yml"
compose_with gpus1 >/dev/null
if deploy/gpu-workers.sh 0 >/dev/null 2>&1; then fail "gpu-workers.sh accepted 0 GPUs"; fi

echo "-- docker-compose.worker.yml: GPU workers on a shared Redis (TLS, password)"
remote_env=(IMG3D_REDIS='rediss://:secret@redis.example.internal:6379' IMG3D_REDIS_CA=/etc/ssl/certs/ca-certificates.crt)
if env -u IMG3D_REDIS IMG3D_REDIS_CA=/x docker-compose -f docker-compose.worker.yml --profile gpu config -q 2>/dev/null; then
  fail "docker-compose.worker.yml accepted no IMG3D_REDIS"
fi
env "${remote_env[@]}" docker-compose -f docker-compose.worker.yml --profile gpu config >"$work/remote.yml"
cp docker-compose.worker.yml "$work/docker-compose.worker.yml"
deploy/gpu-workers.sh --file docker-compose.worker.yml 3 >"$work/remote3.override.yml"
env "${remote_env[@]}" docker-compose -f "$work/docker-compose.worker.yml" -f "$work/remote3.override.yml" --profile gpu config >"$work/remote3.yml"

echo "-- properties of the resolved configuration"
# Debian's Python: it has PyYAML (docker-compose depends on it); env.sh's venv may come first
# on PATH.
/usr/bin/python3 - "$work" <<'PY'
import sys, yaml

work = sys.argv[1]
def load(name):
    return yaml.safe_load(open(f"{work}/{name}.yml"))["services"]

def check(cond, what):
    if not cond:
        sys.exit(f"compose_config.sh: FAIL: {what}")

def gpus(svc):
    devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    ids = [i for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for i in d.get("device_ids", [])]
    return ids

def workers(services):
    return {n: s for n, s in services.items() if n == "worker" or n.startswith("worker-gpu")}

gpu = load("gpu")
redis = " ".join(gpu["redis"]["command"])
check("--maxmemory-policy noeviction" in redis, f"redis must never evict queue keys: {redis}")
check("--maxmemory " in redis, "redis has no maxmemory")
check(gpu["redis"].get("deploy", {}).get("resources", {}).get("limits", {}).get("memory"), "redis has no memory limit")
# The queue survives a Redis restart: AOF fsynced every second, in a named volume at its --dir.
check("--appendonly yes" in redis and "--appendfsync everysec" in redis, f"redis without AOF (everysec): {redis}")
check("--dir /data" in redis, f"redis does not keep its AOF in /data: {redis}")
check(any(str(v).startswith("redis-data:/data") for v in gpu["redis"].get("volumes", [])), "redis /data is not the redis-data volume")
check(int(gpu["gateway"]["deploy"]["replicas"]) >= 2, "fewer than 2 gateways")
check("IMG3D_REDIS" in gpu["gateway"]["environment"], "gateway without IMG3D_REDIS")
lb = gpu["lb"]
check(any(v.endswith("/deploy/nginx.conf:/etc/nginx/nginx.conf:ro") for v in lb["volumes"]), "lb does not run deploy/nginx.conf")
check(lb["depends_on"]["gateway"]["condition"] == "service_healthy", "lb does not wait for healthy gateways")

# Every GPU worker reserves exactly one GPU, all different; same queue settings as the gateways.
for name, services in [("gpu", gpu), ("gpu4", load("gpu4")), ("gpu13", load("gpu13"))]:
    ws = workers(services)
    ids = {n: gpus(s) for n, s in ws.items()}
    check(all(len(v) == 1 for v in ids.values()), f"{name}: a worker without exactly one GPU: {ids}")
    flat = [v[0] for v in ids.values()]
    check(len(set(flat)) == len(flat), f"{name}: two workers share a GPU: {ids}")
    for n, s in ws.items():
        env = s["environment"]
        check(env["IMG3D_REDIS"] == gpu["gateway"]["environment"]["IMG3D_REDIS"], f"{name}/{n}: another Redis")
        check(env["IMG3D_PREFIX"] == gpu["gateway"]["environment"]["IMG3D_PREFIX"], f"{name}/{n}: another prefix")
        check("gpu" in s.get("profiles", []), f"{name}/{n}: not in the gpu profile")
        check(any(v.endswith(":/models/crm:ro") for v in s["volumes"]), f"{name}/{n}: bundle not mounted read-only")
    print(f"   {name}: workers {sorted(ids.items())}")
check(sorted(g for v in map(gpus, workers(load("gpu4")).values()) for g in v) == ["0", "1", "2", "3"], "gpu4: not GPUs 0-3")
check(sorted(g for v in map(gpus, workers(load("gpu13")).values()) for g in v) == ["1", "3"], "gpu13: not GPUs 1 and 3")

# Worker-only hosts: the same worker as the main file's, on the shared Redis given, TLS with
# the CA mounted where SSL_CERT_FILE points, one distinct GPU each.
main_worker = gpu["worker"]
for name in ["remote", "remote3"]:
    ws = workers(load(name))
    ids = sorted(g for s in ws.values() for g in gpus(s))
    check(ids == (["0"] if name == "remote" else ["0", "1", "2"]), f"{name}: GPUs {ids}")
    for n, s in ws.items():
        env = s["environment"]
        check(env["IMG3D_REDIS"].startswith("rediss://:secret@"), f"{name}/{n}: not the shared Redis over TLS with its password")
        check(any(str(v).endswith(":" + env["SSL_CERT_FILE"] + ":ro") for v in s["volumes"]), f"{name}/{n}: the Redis CA is not mounted at SSL_CERT_FILE")
        for key in ["IMG3D_DRAIN_DEADLINE", "IMG3D_MODEL", "IMG3D_DEVICE", "IMG3D_PREFIX"]:
            check(env.get(key) == main_worker["environment"][key], f"{name}/{n}: {key} differs from docker-compose.yml's worker")
        check(s["stop_grace_period"] == main_worker["stop_grace_period"], f"{name}/{n}: another stop grace period")
        check(any(v.endswith(":/models/crm:ro") for v in s["volumes"]), f"{name}/{n}: bundle not mounted read-only")
    print(f"   {name}: workers {sorted((n, gpus(s)) for n, s in ws.items())}")

cpu = load("cpu")
check("worker-cpu" in cpu and not gpus(cpu["worker-cpu"]), "cpu profile: no GPU-free worker")
check(cpu["worker-cpu"]["environment"]["IMG3D_MODEL"] == "tiny", "cpu profile: not the tiny model")
# (`config` lists every service whatever the profile; what starts is decided by profiles.)
check(cpu["worker-cpu"]["profiles"] == ["cpu"], "worker-cpu is not (only) in the cpu profile")
check("cpu" not in cpu["worker"]["profiles"], "the cpu profile would start the GPU worker")
check(all(not s.get("profiles") for n, s in cpu.items() if n in ("redis", "gateway", "lb")),
      "redis, gateway and lb must run in every profile")
PY

echo "-- Dockerfiles: multi-stage, non-root runtime, healthcheck, bundle not baked in"
for f in gateway/Dockerfile worker/Dockerfile; do
  [ "$(grep -c '^FROM ' "$f")" -ge 2 ] || fail "$f is not multi-stage"
  runtime="$(awk '/^FROM /{n++} n>=2' "$f")"
  echo "$runtime" | grep -Eq '^USER [1-9][0-9]*' || fail "$f: the runtime stage does not run as a non-root uid"
  echo "$runtime" | grep -q '^HEALTHCHECK .*' || fail "$f: no HEALTHCHECK"
  echo "$runtime" | grep -q 'img3d-healthcheck' || fail "$f: the healthcheck does not use deploy/healthcheck.sh"
  if echo "$runtime" | grep -Eq 'safetensors|COPY .*models'; then fail "$f bakes in model weights"; fi
done
if grep -Eq 'torch|tch' <(awk '/^FROM /{n++} n>=2' gateway/Dockerfile); then fail "gateway image carries libtorch"; fi
grep -q '^target$' .dockerignore || fail ".dockerignore does not exclude target/"

echo "-- deploy/healthcheck.sh against a real HTTP server (200 passes, 503 fails)"
python3 - >"$work/http.port" 2>/dev/null <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/ok" else 503
        self.send_response(code); self.end_headers(); self.wfile.write(b"reason\n")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
pids+=("$!")
for _ in $(seq 1 50); do [ -s "$work/http.port" ] && break; sleep 0.1; done
port="$(cat "$work/http.port")"
[ -n "$port" ] || fail "test HTTP server did not start"
deploy/healthcheck.sh "0.0.0.0:$port" /ok >/dev/null || fail "healthcheck failed on 200"
if deploy/healthcheck.sh "$port" /readyz >/dev/null; then fail "healthcheck passed on 503"; fi
if deploy/healthcheck.sh 1 /readyz >/dev/null 2>&1; then fail "healthcheck passed with nothing listening"; fi

echo "compose_config.sh: ok"
