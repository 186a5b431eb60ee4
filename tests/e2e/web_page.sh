#!/usr/bin/env bash
# End to end: the web page (web/) in headless Chromium, driven by puppeteer-core, against the
# protocol test server and the all-in-one server with the tiny bundle (web/test/page.test.mjs).
# First checks that the committed bundle (web/dist, embedded in the gateway) is what the
# sources and the lockfile build. Screenshots and timings go to out/web/ (not committed).
# Needs: scripts/setup (chromium, node deps in web/node_modules) and a built workspace
# (cargo build --workspace --all-targets).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
export IMG3D_PROTOCOL_SERVER="$target/debug/examples/protocol-server"
export IMG3D_WORKER="$target/debug/img3d-worker"
export IMG3D_CLI="$target/debug/img3d"
export IMG3D_EXAMPLE="$root/examples/mushroom.png"
export IMG3D_WEB_OUT="${IMG3D_WEB_OUT:-$root/out/web}"
for bin in "$IMG3D_PROTOCOL_SERVER" "$IMG3D_WORKER" "$IMG3D_CLI"; do
  if [ ! -x "$bin" ]; then
    echo "web_page.sh: $bin is missing; build it: cargo build --workspace --all-targets" >&2
    exit 1
  fi
done
[ -d "$root/web/node_modules" ] || { echo "web_page.sh: run scripts/setup (npm ci in web/)" >&2; exit 1; }

cd "$root/web"
echo "-- the committed bundle is what the sources build"
node build.mjs --check
echo "-- the page in headless Chromium"
node --test --test-reporter=spec test/page.test.mjs
echo "web_page.sh: ok (screenshots in $IMG3D_WEB_OUT)"
