#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/k8s offline (no cluster, no kubectl/helm here):
#
# 1. Renders each kustomization (deploy/k8s/base, deploy/k8s/with-redis) as kustomize would:
#    they hold only `resources` (files and other kustomizations), so rendering is reading them
#    in order; any other kustomize field, or a YAML file no kustomization lists, fails here.
# 2. Every built-in kind against Kubernetes' own OpenAPI schemas, strictly (unknown fields
#    fail), with kubernetes-validate (PyPI, in tools/requirements.txt).
# 3. KEDA's ScaledObject and TriggerAuthentication against the schemas generated from KEDA's
#    CRDs (npm @kubernetes-models/keda, installed by scripts/setup).
# 4. What the deployment relies on across objects: grace periods above the drain deadline,
#    probes on /healthz and /readyz, one GPU per worker, KEDA on the queue's real list name
#    and scaling the worker Deployment from zero, Services and PDBs selecting their pods,
#    Redis with AOF.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
. ./env.sh
fail() { echo "k8s_validate.sh: FAIL: $*" >&2; exit 1; }
python="$IMG3D_TORCH_VENV/bin/python"
"$python" -c 'import kubernetes_validate' 2>/dev/null || fail "kubernetes-validate is missing (scripts/setup installs tools/requirements.txt)"
keda_models="${IMG3D_KEDA_MODELS:-$HOME/.cache/img3d/npm-keda}"
[ -d "$keda_models/node_modules/@kubernetes-models/keda" ] || fail "@kubernetes-models/keda is missing in $keda_models (scripts/setup installs it)"
command -v node >/dev/null || fail "node is missing (scripts/setup installs nodejs)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM

"$python" - "$work" <<'PY'
import json, os, re, sys
import yaml
import kubernetes_validate

work = sys.argv[1]
K8S = "1.30.0"  # the oldest Kubernetes these manifests are for (policy/v1, autoscaling/v2)
failures = []

def fail(msg):
    failures.append(msg)

def render(kdir, seen_files):
    """The objects of the kustomization in `kdir`, in order."""
    kfile = os.path.join(kdir, "kustomization.yaml")
    k = yaml.safe_load(open(kfile))
    extra = set(k) - {"apiVersion", "kind", "resources"}
    if extra:
        fail(f"{kfile}: only `resources` is rendered here; found {sorted(extra)}")
    objects = []
    for r in k.get("resources", []):
        path = os.path.normpath(os.path.join(kdir, r))
        if os.path.isdir(path):
            objects += render(path, seen_files)
        elif os.path.isfile(path):
            seen_files.add(path)
            objects += [d for d in yaml.safe_load_all(open(path)) if d]
        else:
            fail(f"{kfile}: resource {r} does not exist")
    return objects

builds = {}
listed = set()
for name in ["base", "with-redis"]:
    builds[name] = render(os.path.join("deploy/k8s", name), listed)
for dirpath, _, files in os.walk("deploy/k8s"):
    for f in files:
        path = os.path.normpath(os.path.join(dirpath, f))
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" and path not in listed:
            fail(f"{path} is in no kustomization")

keda = []
for name, objects in builds.items():
    for o in objects:
        label = f"{name}: {o.get('kind')}/{o.get('metadata', {}).get('name')}"
        if o.get("apiVersion", "").startswith("keda.sh/"):
            keda.append({"label": label, "object": o})
            continue
        try:
            kubernetes_validate.validate(o, K8S, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{label}: {e.message} at {'/'.join(map(str, e.path))}")
        except Exception as e:  # unknown kind or version
            fail(f"{label}: {e}")
    print(f"   {name}: {len(objects)} objects, built-in kinds valid against Kubernetes {K8S}")
json.dump(keda, open(os.path.join(work, "keda.json"), "w"))

# -- cross-object properties
def find(objects, kind, name):
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    fail(f"no {kind}/{name}")
    return {}

def check(cond, what):
    if not cond:
        fail(what)

def seconds(d):
    m = re.fullmatch(r"(\d+)(s|m)", d)
    return int(m[1]) * (60 if m[2] == "m" else 1)

for name, objects in builds.items():
    config = find(objects, "ConfigMap", "img3d-config")["data"]
    drain = seconds(config["IMG3D_DRAIN_DEADLINE"])
    for dep_name, port in [("img3d-gateway", "http"), ("img3d-worker", "health")]:
        dep = find(objects, "Deployment", dep_name)
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        check(grace > drain, f"{name}/{dep_name}: terminationGracePeriodSeconds {grace} not above the drain deadline {drain}s")
        check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{name}/{dep_name}: liveness is not /healthz")
        check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{name}/{dep_name}: readiness is not /readyz")
        check(any(e.get("configMapRef", {}).get("name") == "img3d-config" for e in c.get("envFrom", [])), f"{name}/{dep_name}: not on img3d-config")
        check(any(e["name"] == "IMG3D_REDIS" for e in c.get("env", [])), f"{name}/{dep_name}: no IMG3D_REDIS")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in dep["spec"]["selector"]["matchLabels"].items()), f"{name}/{dep_name}: selector does not match its pods")
    gw = find(objects, "Deployment", "img3d-gateway")
    gw_labels = gw["spec"]["template"]["metadata"]["labels"]
    for kind in ["Service", "PodDisruptionBudget"]:
        o = find(objects, kind, "img3d-gateway")["spec"]
        sel = o.get("selector", {}).get("matchLabels", o.get("selector", {}))
        check(sel and all(gw_labels.get(k) == v for k, v in sel.items()), f"{name}: {kind} does not select the gateways")
    hpa = find(objects, "HorizontalPodAutoscaler", "img3d-gateway")["spec"]
    check(hpa["scaleTargetRef"]["name"] == "img3d-gateway", f"{name}: the HPA does not scale the gateways")
    worker = find(objects, "Deployment", "img3d-worker")["spec"]["template"]["spec"]
    limits = worker["containers"][0]["resources"]["limits"]
    check(str(limits.get("nvidia.com/gpu")) == "1", f"{name}: a worker must hold exactly one GPU: {limits}")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in worker.get("volumes", []) if "persistentVolumeClaim" in v}
    for claim in claims:
        find(objects, "PersistentVolumeClaim", claim)
    so = find(objects, "ScaledObject", "img3d-worker")["spec"]
    check(so["scaleTargetRef"]["name"] == "img3d-worker", f"{name}: KEDA does not scale the worker Deployment")
    check(so.get("minReplicaCount") == 0, f"{name}: workers do not scale to zero")
    trig = so["triggers"][0]
    check(trig["type"] == "redis" and trig["metadata"]["listName"] == config["IMG3D_PREFIX"] + ":pending",
          f"{name}: KEDA does not watch {config['IMG3D_PREFIX']}:pending (queue/src/redis/keys.rs)")
    find(objects, "TriggerAuthentication", trig["authenticationRef"]["name"])
    ing = find(objects, "Ingress", "img3d")["spec"]
    check(ing["rules"][0]["http"]["paths"][0]["path"] == "/generate3d", f"{name}: the Ingress does not route /generate3d")

redis = find(builds["with-redis"], "StatefulSet", "img3d-redis")["spec"]
args = " ".join(redis["template"]["spec"]["containers"][0]["args"])
for want in ["--appendonly yes", "--appendfsync everysec", "--dir /data", "--maxmemory-policy noeviction"]:
    check(want in args, f"with-redis: Redis without `{want}`: {args}")
check(any(m["mountPath"] == "/data" for m in redis["template"]["spec"]["containers"][0]["volumeMounts"]), "with-redis: /data is not the volume")

if failures:
    for m in failures:
        print(f"k8s_validate.sh: FAIL: {m}", file=sys.stderr)
    sys.exit(1)
PY

echo "-- KEDA objects against the schemas of KEDA's CRDs (@kubernetes-models/keda)"
cat >"$work/keda.mjs" <<'JS'
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [modelsDir, file] = process.argv.slice(2);
// The package exports its models to `import` only; load their files directly.
const model = (kind) => pathToFileURL(`${modelsDir}/@kubernetes-models/keda/keda.sh/v1alpha1/${kind}.js`).href;
const kinds = { ScaledObject: model("ScaledObject"), TriggerAuthentication: model("TriggerAuthentication") };
let failed = 0;
// A self-check first: a wrongly typed field must fail, or the validator checks nothing.
const probe = await import(kinds.ScaledObject);
try {
  new probe.ScaledObject({ metadata: { name: "x" }, spec: { scaleTargetRef: { name: "w" }, minReplicaCount: "zero", triggers: [] } }).validate();
  console.error("   the KEDA validator accepted minReplicaCount: \"zero\"");
  failed++;
} catch {}
for (const { label, object } of JSON.parse(readFileSync(file, "utf8"))) {
  const path = kinds[object.kind];
  if (!path) { console.error(`   ${label}: no schema for ${object.kind}`); failed++; continue; }
  const mod = await import(path);
  try {
    new mod[object.kind](object).validate();
    console.log(`   ${label}: valid`);
  } catch (e) {
    console.error(`   ${label}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
JS
node "$work/keda.mjs" "$keda_models/node_modules" "$work/keda.json" || fail "KEDA objects do not match KEDA's schema"
echo "k8s_validate.sh: ok"
