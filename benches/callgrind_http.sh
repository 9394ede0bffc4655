#!/usr/bin/env bash
# Instructions per request of a trivial handler with and without the auth layer, for axum and
# actix-web, counted by callgrind (user space only: the same figures on a noisy machine, unlike
# req/s). The release bench-servers binary runs under callgrind; a keep-alive client sends
# exactly N and then 2N requests to one route, and the difference of the two totals divided by
# N is the cost of one request (startup and idle work cancel out).
# Usage: benches/callgrind_http.sh [N, default 2000]   (needs valgrind and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
cargo build -q --release -p nexora-auth-http-tests --bin bench-servers
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Sends `count` GETs of `path` over one connection to `base`, with an optional bearer token.
send() {
  python3 - "$1" "$2" "$3" "$4" <<'EOF'
import http.client, sys, urllib.parse
base, path, count, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
headers = {"Authorization": f"Bearer {token}"} if token != "-" else {}
for _ in range(count):
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    assert r.status == 200, (path, r.status)
EOF
}

# Total instructions of one bench-servers run that serves `count` requests of one kind.
total() { # framework path token count
  local out="$work/out.$RANDOM" cg="$work/cg.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$cg" target/release/bench-servers 600 \
    > "$out" 2>/dev/null &
  local pid=$!
  for _ in $(seq 1 600); do grep -q '^jwt ' "$out" 2>/dev/null && break; sleep 0.2; done
  local base token
  base=$(awk -v fw="$1" '$1 == fw {print $2}' "$out")
  case "$3" in key|jwt) token=$(awk -v k="$3" '$1 == k {print $2}' "$out") ;; *) token=- ;; esac
  if [ "$4" -gt 0 ]; then send "$base" "$2" "$4" "$token"; fi
  # Dump the counters now (to "$cg.1"), then stop the server.
  callgrind_control --dump "$pid" >/dev/null 2>&1
  for _ in $(seq 1 100); do [ -s "$cg.1" ] && break; sleep 0.2; done
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  callgrind_annotate "$cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

printf '%-6s %-12s %12s\n' framework request 'Ir/request'
for fw in axum actix; do
  for kind in plain key jwt; do
    path=/authed; [ "$kind" = plain ] && path=/plain
    a=$(total "$fw" "$path" "$kind" "$n")
    b=$(total "$fw" "$path" "$kind" $((2 * n)))
    printf '%-6s %-12s %12d\n' "$fw" "$kind" $(((b - a) / n))
  done
done
