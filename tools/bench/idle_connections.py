#!/usr/bin/env python3
"""Memory per idle WebSocket connection: RSS of a server before and after N bare WebSocket
handshakes that then stay idle, for each server binary given, side by side in one run.

    tools/bench/idle_connections.py 2000 target/debug/examples/protocol-server [OTHER_BUILD ...]

Each binary is started as `BINARY --listen 127.0.0.1:0 --delay-ms 10 --max-connections 20000`
(the protocol test server, or `img3d-worker standalone` flags alike) and must print
`listening on ADDR`. Prints numbers; asserts nothing.
"""
import os
import resource
import socket
import subprocess
import sys
import time

REQUEST = (
    "GET /generate3d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(binary, n):
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--delay-ms", "10", "--max-connections", "20000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "IMG3D_LOG": "error"},
    )
    try:
        line = proc.stdout.readline().decode().strip()
        host, port = line.split()[-1].rsplit(":", 1)
        time.sleep(1.0)
        before = rss_kib(proc.pid)
        socks = []
        for _ in range(n):
            s = socket.create_connection((host, int(port)))
            s.sendall(REQUEST)
            head = s.recv(4096)
            if b" 101 " not in head:
                raise RuntimeError(f"handshake refused: {head[:80]!r}")
            socks.append(s)
        time.sleep(2.0)
        after = rss_kib(proc.pid)
        for s in socks:
            s.close()
        return before, after
    finally:
        proc.kill()
        proc.wait()


def main():
    n = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
    for binary in sys.argv[2:]:
        before, after = measure(binary, n)
        print(
            f"{binary}: RSS {before / 1024:.1f} MiB idle, {after / 1024:.1f} MiB with {n} idle "
            f"connections: {(after - before) / n:.1f} KiB per connection"
        )


if __name__ == "__main__":
    main()
