#!/bin/bash
# Container healthcheck without curl: GET a path on a local port with bash's /dev/tcp and
# succeed only on HTTP 200. The port comes from an address variable such as IMG3D_LISTEN
# ("0.0.0.0:8080") so the check follows the configuration.
# Usage: healthcheck.sh ADDR_OR_PORT [PATH]      e.g. healthcheck.sh "$IMG3D_LISTEN" /readyz
set -u
port="${1##*:}"
path="${2:-/readyz}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
IFS= read -r -t 5 status <&3 || { echo "no answer on port $port"; exit 1; }
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "$path: $status"; cat <&3 2>/dev/null | tail -n +2 | head -n 20; exit 1 ;;
esac
