#!/usr/bin/env bash
# What `docker build` needs, checked without a Docker engine (none runs in CI):
#
# 1. One Rust version everywhere: every workspace member's `rust-version`, the `RUST_VERSION`
#    default of both Dockerfiles (the `rust:X-...` build image), and no locked package needing
#    a newer Rust than that (`cargo build --locked` refuses such a package, so the image would
#    fail to build before anything runs). Read from `cargo metadata`.
# 2. Every path the Dockerfiles COPY from the build context exists in a clean checkout (is
#    tracked by git) and is not excluded by .dockerignore; for `COPY . .`, every tracked file of
#    every workspace member, the root manifests and the files the sources `include!` or
#    `#[path]` from outside their package.
#
# .dockerignore is matched as Docker matches it (Go's filepath.Match per path segment, `**`
# for any number of segments, `!` re-includes, the last matching line wins, a match on a
# directory excludes everything under it).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM

cargo metadata --locked --format-version 1 >"$work/metadata.json"
git ls-files >"$work/tracked.txt"

# Debian's Python (env.sh's venv may come first on PATH; this needs only the standard library).
/usr/bin/python3 - "$root" "$work/metadata.json" "$work/tracked.txt" <<'PY'
import json, os, re, shlex, sys

root, metadata_path, tracked_path = sys.argv[1:]
metadata = json.load(open(metadata_path))
tracked = set(open(tracked_path).read().split("\n")) - {""}
dockerfiles = ["gateway/Dockerfile", "worker/Dockerfile"]
failures = []

def fail(msg):
    failures.append(msg)

def version(v):
    """'1.89' or '1.89.0' -> (1, 89, 0)."""
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

# -- 1. Rust versions
members = set(metadata["workspace_members"])
packages = metadata["packages"]
workspace = {p["name"]: p.get("rust_version") for p in packages if p["id"] in members}
declared = set(workspace.values())
if len(declared) != 1 or None in declared:
    fail(f"workspace members disagree on rust-version (or lack one): {workspace}")
msrv = sorted(declared - {None}, key=version)[-1] if declared - {None} else "0"
print(f"   workspace rust-version: {msrv}")

for f in dockerfiles:
    args = re.findall(r"^ARG RUST_VERSION=(\S+)\s*$", open(os.path.join(root, f)).read(), re.M)
    if len(args) != 1:
        fail(f"{f}: expected one `ARG RUST_VERSION=...`, found {args}")
    elif version(args[0]) != version(msrv):
        fail(f"{f}: RUST_VERSION {args[0]} but the workspace's rust-version is {msrv}")
    else:
        print(f"   {f}: RUST_VERSION {args[0]}")

too_new = sorted(
    f"{p['name']} {p['version']} needs Rust {p['rust_version']}"
    for p in packages
    if p["id"] not in members and p.get("rust_version") and version(p["rust_version"]) > version(msrv)
)
for t in too_new:
    fail(f"Cargo.lock: {t}, above the workspace's {msrv}: raise rust-version and RUST_VERSION, or pin it lower")
newest = max((p for p in packages if p.get("rust_version")), key=lambda p: version(p["rust_version"]))
print(f"   {len(packages)} locked packages; the newest Rust any needs: {newest['rust_version']} ({newest['name']} {newest['version']})")

# -- 2. COPY sources: tracked, and not excluded by .dockerignore
def segment_regex(glob):
    """One path segment of a Go filepath.Match pattern as a regex."""
    out, i = "", 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = glob.index("]", i)
            cls = glob[i + 1:j]
            out += "[" + ("^" + cls[1:] if cls.startswith("^") else cls) + "]"
            i = j
        elif c == "\\" and i + 1 < len(glob):
            i += 1
            out += re.escape(glob[i])
        else:
            out += re.escape(c)
        i += 1
    return out

def pattern_regex(pattern):
    segments = os.path.normpath(pattern.strip("/")).split("/")
    out = ""
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        if seg == "**":
            out += ".*" if last else "(?:.*/)?"
        else:
            out += segment_regex(seg) + ("" if last else "/")
    return re.compile(out + r"\Z")

def parse_rules(lines):
    rules = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), pattern_regex(line.lstrip("!"))))
    return rules

def excluded(path, rules):
    """Whether Docker leaves `path` out of the build context: the last rule matching it or one
    of its parent directories decides (moby/patternmatcher's MatchesOrParentMatches)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:d]) for d in range(1, len(parts) + 1)]
    verdict = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            verdict = not negate
    return verdict

# The matcher itself, on Docker's documented cases (a wrong matcher would pass anything).
example = parse_rules(["# comment", "target", "**/tmp", "*/temp*", "*.pth", "docs", "!docs/keep.md", "a?c"])
for path, want in [("target/debug/x", True), ("pipeline/target/x", False), ("tmp", True), ("x/y/tmp/z", True),
                   ("x/temp1", True), ("x/y/temp1", False), ("x.pth", True), ("data/x.pth", False),
                   ("docs/a.md", True), ("docs/keep.md", False), ("abc", True), ("abbc", False), ("Cargo.lock", False)]:
    if excluded(path, example) != want:
        fail(f"the .dockerignore matcher says {path} excluded={not want}, expected {want}")

rules = parse_rules(open(os.path.join(root, ".dockerignore")))

def outside_references(package_dir):
    """Files that tracked sources of a package pull in by `include!`/`#[path]` (relative)."""
    refs = set()
    for f in tracked:
        if not (f.startswith(package_dir + "/") and f.endswith(".rs")):
            continue
        text = open(os.path.join(root, f), errors="replace").read()
        for rel in re.findall(r'(?:include!|include_str!|include_bytes!)\s*\(\s*"([^"]+)"', text) + re.findall(
            r'#\[path\s*=\s*"([^"]+)"\]', text
        ):
            refs.add(os.path.normpath(os.path.join(os.path.dirname(f), rel)))
    return refs

def context_needs():
    """What `COPY . .` must bring for cargo: root manifests, every member's tracked files,
    and what they reference from elsewhere in the tree."""
    need = {"Cargo.toml", "Cargo.lock"}
    for p in packages:
        if p["id"] not in members:
            continue
        pdir = os.path.relpath(os.path.dirname(p["manifest_path"]), root)
        need |= {f for f in tracked if f.startswith(pdir + "/")}
        need |= outside_references(pdir)
    return need

for f in dockerfiles:
    for line in open(os.path.join(root, f)):
        if not re.match(r"^\s*(COPY|ADD)\s", line, re.I):
            continue
        words = shlex.split(line.split(None, 1)[1])
        if any(w.startswith("--from") for w in words):
            continue  # from another stage, not the context
        words = [w for w in words if not w.startswith("--")]
        sources = words[:-1]
        for src in sources:
            src = os.path.normpath(src)
            if src == ".":
                need = context_needs()
                missing = sorted(n for n in need if n not in tracked)
                left_out = sorted(n for n in need if excluded(n, rules))
                for m in missing:
                    fail(f"{f}: COPY . needs {m}, which is not in a clean checkout (untracked)")
                for m in left_out:
                    fail(f"{f}: COPY . needs {m}, which .dockerignore excludes")
                print(f"   {f}: COPY . brings the {len(need)} files the workspace build needs")
                continue
            matches = [t for t in tracked if t == src or t.startswith(src + "/")]
            if not matches:
                fail(f"{f}: COPY {src}: not in a clean checkout")
            elif any(excluded(m, rules) for m in matches):
                fail(f"{f}: COPY {src}: excluded by .dockerignore")
            else:
                print(f"   {f}: COPY {src}: tracked, in the context")

if failures:
    for m in failures:
        print(f"docker_inputs.sh: FAIL: {m}", file=sys.stderr)
    sys.exit(1)
PY
echo "docker_inputs.sh: ok"
