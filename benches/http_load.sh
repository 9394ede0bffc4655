#!/usr/bin/env bash
# Throughput of a trivial handler behind the auth layer vs the same handler without it, for
# axum and actix-web, with wrk on loopback (apt-get install wrk). Same run, same servers.
# Usage: benches/http_load.sh [seconds per measurement, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
cargo build -q --release -p nexora-auth-http-tests --bin bench-servers
out=$(mktemp)
target/release/bench-servers $((secs * 8 + 30)) > "$out" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 50); do grep -q '^jwt ' "$out" && break; sleep 0.2; done
declare -A base=([axum]=$(awk '/^axum /{print $2}' "$out") [actix]=$(awk '/^actix /{print $2}' "$out"))
key=$(awk '/^key /{print $2}' "$out"); jwt=$(awk '/^jwt /{print $2}' "$out")
rps() { wrk -t1 -c16 -d"${secs}s" "$@" | awk '/Requests\/sec/{print $2}'; }
for fw in axum actix; do
  plain=$(rps "${base[$fw]}/plain")
  with_key=$(rps -H "Authorization: Bearer $key" "${base[$fw]}/authed")
  with_jwt=$(rps -H "Authorization: Bearer $jwt" "${base[$fw]}/authed")
  awk -v fw="$fw" -v p="$plain" -v k="$with_key" -v j="$with_jwt" 'BEGIN {
    printf "%-6s plain %9.0f req/s | key %9.0f (%.3fx) | jwt %9.0f (%.3fx)\n", fw, p, k, k/p, j, j/p }'
done
