#!/usr/bin/env bash
# End to end: the Java OkHttp client (built with javac against Debian's jars) against the real
# gateway + queue + worker (the protocol-server example, whose pipeline double makes valid
# placeholder parts). Several images over one connection, one bad image, a timeout; checks the
# saved files (sizes, PNG signatures, zip listing). Then against the scripted-server example of
# img3d-client: an unannounced binary frame and a dropped connection, each followed by a job
# that must reconnect and succeed. Cleans up its processes on every path (trap).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
server_bin="$target/debug/examples/protocol-server"
scripted_bin="$target/debug/examples/scripted-server"
for bin in "$server_bin" "$scripted_bin"; do
  if [ ! -x "$bin" ]; then
    echo "java_client.sh: $bin is missing; build it: cargo build --workspace --all-targets" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

fail() { echo "java_client.sh: FAIL: $*" >&2; exit 1; }

# Starts a server (a binary and its arguments) on a free port; sets $url.
start() {
  local log="$work/server-${#pids[@]}"
  "$@" --listen 127.0.0.1:0 >"$log.out" 2>"$log.err" &
  pids+=("$!")
  for _ in $(seq 1 300); do
    addr="$(sed -n 's/^listening on //p' "$log.out" | head -n1)"
    [ -n "$addr" ] && { url="ws://$addr/generate3d"; return; }
    kill -0 "${pids[-1]}" 2>/dev/null || fail "$1 exited: $(cat "$log.err")"
    sleep 0.1
  done
  fail "$1 printed no address"
}

# Runs the Java CLI; its exit status goes to $rc, its output to $work/$1.{out,err}.
run_java() {
  local name="$1"; shift
  set +e
  java -cp "$cp" io.img3d.client.Img3dCli "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
  set -e
  cat "$work/$name.out" "$work/$name.err"
}

echo "-- building the Java client"
cp="$("$root/clients/java/build.sh" "$work/java" | tail -n1)"

# Inputs: the shipped example, a second PNG, and a file that is not an image.
cp "$root/examples/mushroom.png" "$work/mushroom.png"
python3 - "$work/square.png" <<'PY'
import struct, sys, zlib
w = h = 48
raw = b"".join(b"\x00" + b"".join(bytes((x * 5 % 256, y * 5 % 256, 90)) for x in range(w)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
echo "this is not an image" >"$work/broken.png"

echo "-- three images (one bad) over one connection"
start "$server_bin" --delay-ms 50
out="$work/out"
run_java run --server "$url" --out "$out" --progress "$work/mushroom.png" "$work/broken.png" "$work/square.png"
[ "$rc" -eq 1 ] || fail "exit status $rc, expected 1 (one job failed)"
grep -q "connections opened: 1" "$work/run.out" || fail "the jobs did not share one connection"
grep -q "broken.png: FAILED.*SERVER (invalid_image)" "$work/run.err" || fail "the bad image was not refused with invalid_image"
grep -Eq "mushroom.png: stage1 [0-9]+/[0-9]+" "$work/run.out" || fail "no progress events with --progress"
[ ! -e "$out/broken" ] || fail "the failed job left files"
for job in mushroom square; do
  for png in pixel_images.png xyz_images.png; do
    f="$out/$job/$png"
    [ -s "$f" ] || fail "$f missing or empty"
    [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$f is not a PNG"
  done
  zip="$out/$job/output3d.zip"
  [ "$(stat -c %s "$zip")" -gt 100 ] || fail "$zip too small"
  listing="$(jar tf "$zip")" || fail "$zip is not a zip"
  echo "$listing" | grep -q '\.obj$' || fail "$zip has no .obj: $listing"
  echo "$listing" | grep -q '\.mtl$' || fail "$zip has no .mtl: $listing"
  if ls -a "$out/$job" | grep -q '\.tmp$'; then fail "temp files left in $out/$job"; fi
done

echo "-- application timeout"
start "$server_bin" --delay-ms 60000
run_java slow --server "$url" --out "$work/out-slow" --timeout 1 "$work/square.png"
[ "$rc" -eq 1 ] || fail "timeout: exit status $rc, expected 1"
grep -q "FAILED.*TIMEOUT" "$work/slow.err" || fail "timeout not reported"

echo "-- a binary frame with no result_part: protocol error, connection reset, next job reconnects"
start "$scripted_bin" --mode unannounced-binary
run_java unannounced --server "$url" --out "$work/out-u" "$work/square.png" "$work/mushroom.png"
[ "$rc" -eq 1 ] || fail "unannounced binary: exit status $rc, expected 1"
grep -q "square.png: FAILED.*PROTOCOL" "$work/unannounced.err" || fail "protocol error not reported"
grep -q "mushroom.png: done" "$work/unannounced.out" || fail "the next job did not succeed"
grep -q "connections opened: 2" "$work/unannounced.out" || fail "the connection was not reset"
[ ! -e "$work/out-u/square" ] || fail "the failed job left files"

echo "-- the connection dropped mid-job: the job fails, the next reconnects"
start "$scripted_bin" --mode drop-mid-job
run_java dropped --server "$url" --out "$work/out-d" "$work/square.png" "$work/mushroom.png"
[ "$rc" -eq 1 ] || fail "dropped: exit status $rc, expected 1"
grep -q "square.png: FAILED.*CONNECTION_LOST" "$work/dropped.err" || fail "lost connection not reported"
grep -q "mushroom.png: done" "$work/dropped.out" || fail "the next job did not succeed"
grep -q "connections opened: 2" "$work/dropped.out" || fail "no reconnect"
[ ! -e "$work/out-d/square" ] || fail "the failed job left its first part"

echo "java_client.sh: ok"
