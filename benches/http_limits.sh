#!/usr/bin/env bash
# What a rate-limit check costs over HTTP: requests per second and p99 latency of
# `GET /api/agents` on the release `nexora-server` (SQLite), with a key that has no limit and a
# key with a rate limit it never reaches (100,000 a second), on two servers:
#
# * `inproc`: limits counted in the process (the default);
# * `redis`: limits shared through Redis (`--limits-redis-url`, default redis://127.0.0.1:6379),
#   one Lua script per request.
#
# wrk -t1 -c16 alternates the unlimited and the limited key `rounds` times on each server, so
# that drift of a shared machine affects both alike; the medians and the ratios limited /
# unlimited are printed per server with the 1-minute load average before and after. A run that
# answers anything but 2xx fails rather than report the speed of its refusals.
# Usage: benches/http_limits.sh [seconds per measurement, default 5] [rounds, default 5]
#        NEXORA_BENCH_REDIS=redis://host:port benches/http_limits.sh
# Needs wrk, curl, python3 and a Redis server.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-5}"
redis_url="${NEXORA_BENCH_REDIS:-redis://127.0.0.1:6379}"
. benches/http_common.sh
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"

cargo build -q --release -p nexora-server
target_dir=$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/nexora-server"

work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT

bench_secrets 2

# "req/s p99_ms" of one wrk run; fails when any answer was not 2xx.
measure() { # seconds url token
  local out
  out=$(wrk -t1 -c16 -d"$1s" --latency -H "Authorization: Bearer $3" "$2")
  if grep -Eq 'Non-2xx|Socket errors' <<<"$out"; then
    echo "wrk $2: not every request succeeded:" >&2
    echo "$out" >&2
    exit 1
  fi
  awk '
    /^Requests\/sec:/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); ms = v / 1000 }
               else if (v ~ /ms$/) { sub(/ms$/, "", v); ms = v }
               else if (v ~ /s$/) { sub(/s$/, "", v); ms = v * 1000 } }
    END { printf "%s %.3f\n", rps, ms }' <<<"$out"
}

bench_server() { # name [extra serve args...]
  local name=$1 data="$work/$1" port base token free limited
  shift
  export NEXORA_DATA_DIR="$data"
  "$bin" user create --email "$email" --password-stdin <<<"$password" >/dev/null
  port=$(free_port)
  base="http://127.0.0.1:$port"
  NEXORA_BIND="127.0.0.1:$port" "$bin" serve "$@" 2>"$work/$name.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/healthz" && break; sleep 0.1; done
  curl -sf -o /dev/null "$base/healthz" || { echo "$name: server did not start:" >&2; cat "$work/$name.log" >&2; exit 1; }
  token=$(curl -sf "$base/api/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\": \"$email\", \"password\": \"$password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  new_key() {
    curl -sf "$base/api/users/me/api-keys" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -d "$1" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
  }
  free=$(new_key '{"name": "unlimited"}')
  limited=$(new_key '{"name": "limited", "rate_limit": {"limit": 100000, "period_secs": 1}}')
  curl -sf -D - -o /dev/null "$base/api/agents" -H "Authorization: Bearer $limited" |
    grep -qi '^ratelimit:' || { echo "$name: the limited key carries no RateLimit header" >&2; exit 1; }
  measure 1 "$base/api/agents" "$free" >/dev/null
  measure 1 "$base/api/agents" "$limited" >/dev/null

  local fr=() fp=() lr=() lp=() i f l load
  load=$(cut -d' ' -f1 /proc/loadavg)
  for i in $(seq 1 "$rounds"); do
    read -r f_rps f_p99 <<<"$(measure "$secs" "$base/api/agents" "$free")"
    read -r l_rps l_p99 <<<"$(measure "$secs" "$base/api/agents" "$limited")"
    fr+=("$f_rps"); fp+=("$f_p99"); lr+=("$l_rps"); lp+=("$l_p99")
    printf '%-7s round %d/%d: unlimited %9.0f req/s p99 %7.3f ms | limited %9.0f req/s p99 %7.3f ms\n' \
      "$name" "$i" "$rounds" "$f_rps" "$f_p99" "$l_rps" "$l_p99"
  done
  stop_server
  if [ -s "$work/$name.log" ]; then
    echo "$name: the server logged:" >&2
    cat "$work/$name.log" >&2
  fi
  f=$(median <<<"${fr[*]}"); l=$(median <<<"${lr[*]}")
  local f9 l9
  f9=$(median <<<"${fp[*]}"); l9=$(median <<<"${lp[*]}")
  summary+=("$(awk -v s="$name" -v f="$f" -v l="$l" -v f9="$f9" -v l9="$l9" 'BEGIN {
    printf "%-7s unlimited %9.0f req/s p99 %7.3f ms | limited %9.0f req/s p99 %7.3f ms | req/s %.3fx, p99 %.3fx",
      s, f, f9, l, l9, l / f, l9 / f9 }') | load ${load}->$(cut -d' ' -f1 /proc/loadavg)")
}

summary=()
bench_server inproc
bench_server redis --limits-redis-url "$redis_url" --limits-redis-prefix "nexora-bench-$$:"
echo
echo "== medians of $rounds rounds, wrk -t1 -c16 -d${secs}s (limited / unlimited) =="
printf '%s\n' "${summary[@]}"
