#!/usr/bin/env bash
# Requests per second of the release `nexora-server` on each store, for the three kinds of
# request it serves most: `/healthz` (no credential, no store), `/api/agents` with an `nxr_` key
# and `/api/agents` with a JWT. Each store gets a server of its own over fresh data: SQLite in a
# new data directory, then Postgres in a new database (created with `createdb` on
# $NEXORA_BENCH_POSTGRES, default postgres://postgres@127.0.0.1:5432, and dropped at the end).
#
# wrk -t1 -c16 measures the three in turn, `rounds` times over, so that drift of the machine
# affects all three alike; the medians and the ratios key/JWT and key/healthz are printed per
# store, with the 1-minute load average before and after (on a shared machine other work
# competes with wrk and the server: compare ratios from quiet runs). A run that answers
# anything but 2xx (an expired token, a throttled client) fails rather than report the speed
# of its error responses.
# Usage: benches/http_stores.sh [seconds per measurement, default 5] [rounds, default 5]
#        NEXORA_BENCH_STORES="sqlite" benches/http_stores.sh   (default "sqlite postgres")
#        NEXORA_BENCH_SERVER=path/to/nexora-server benches/http_stores.sh   (that binary, unbuilt:
#        a copy of an older build, to compare two commits)
# Needs wrk, curl, python3 and, for Postgres, createdb/dropdb.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-5}"
stores="${NEXORA_BENCH_STORES:-sqlite postgres}"
pg_base="${NEXORA_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
. benches/http_common.sh
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
case " $stores " in
  *" postgres "*) need createdb "apt-get install -y postgresql-client"; need dropdb "apt-get install -y postgresql-client" ;;
esac

if [ -n "${NEXORA_BENCH_SERVER:-}" ]; then
  bin=$NEXORA_BENCH_SERVER
else
  cargo build -q --release -p nexora-server
  target_dir=$(cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  bin="$target_dir/release/nexora-server"
fi
[ -x "$bin" ] || { echo "no server binary at $bin" >&2; exit 1; }

work=$(mktemp -d)
db=""
cleanup() {
  stop_server
  if [ -n "$db" ]; then dropdb --if-exists --maintenance-db="$pg_base/postgres" "$db" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bench_secrets 3

# Requests/sec of one wrk run; fails when any answer was not 2xx or a socket error occurred.
rps() { # seconds url [bearer token]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t1 -c16 -d"$1s" -H "Authorization: Bearer $3" "$2")
  else
    out=$(wrk -t1 -c16 -d"$1s" "$2")
  fi
  if grep -Eq 'Non-2xx|Socket errors' <<<"$out"; then
    echo "wrk $2: not every request succeeded:" >&2
    echo "$out" >&2
    exit 1
  fi
  awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}

# Runs one store's server, sets up a user, a JWT and a key, and measures.
bench_store() { # store database-url-or-empty
  local store=$1 url=$2 data="$work/$1" port base token key
  export NEXORA_DATA_DIR="$data"
  if [ -n "$url" ]; then export NEXORA_DATABASE_URL="$url"; else unset NEXORA_DATABASE_URL; fi
  "$bin" user create --email "$email" --password-stdin <<<"$password" >/dev/null
  port=$(free_port)
  base="http://127.0.0.1:$port"
  NEXORA_BIND="127.0.0.1:$port" "$bin" 2>"$work/$store.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/healthz" && break; sleep 0.1; done
  curl -sf -o /dev/null "$base/healthz" || { echo "$store: server did not start:" >&2; cat "$work/$store.log" >&2; exit 1; }

  token=$(curl -sf "$base/api/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\": \"$email\", \"password\": \"$password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  key=$(curl -sf "$base/api/users/me/api-keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name": "http bench"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
  curl -sf -o /dev/null "$base/api/agents" -H "Authorization: Bearer $key"
  curl -sf -o /dev/null "$base/api/agents" -H "Authorization: Bearer $token"

  # Warm-up: connections, caches and the database's pages, measured by none of the rounds.
  rps 1 "$base/healthz" >/dev/null
  rps 1 "$base/api/agents" "$key" >/dev/null
  rps 1 "$base/api/agents" "$token" >/dev/null

  local healthz=() keys=() jwts=() i h k j load
  load=$(cut -d' ' -f1 /proc/loadavg)
  for i in $(seq 1 "$rounds"); do
    h=$(rps "$secs" "$base/healthz")
    k=$(rps "$secs" "$base/api/agents" "$key")
    j=$(rps "$secs" "$base/api/agents" "$token")
    healthz+=("$h"); keys+=("$k"); jwts+=("$j")
    printf '%-8s round %d/%d: healthz %9.0f | key %9.0f | jwt %9.0f req/s\n' \
      "$store" "$i" "$rounds" "$h" "$k" "$j"
  done
  stop_server
  if [ -s "$work/$store.log" ]; then
    echo "$store: the server logged:" >&2
    cat "$work/$store.log" >&2
  fi

  h=$(median <<<"${healthz[*]}")
  k=$(median <<<"${keys[*]}")
  j=$(median <<<"${jwts[*]}")
  summary+=("$(awk -v s="$store" -v h="$h" -v k="$k" -v j="$j" 'BEGIN {
    printf "%-8s healthz %9.0f | key %9.0f | jwt %9.0f req/s | key/jwt %.3f | key/healthz %.3f | jwt/healthz %.3f",
      s, h, k, j, k / j, k / h, j / h }') | load ${load}->$(cut -d' ' -f1 /proc/loadavg)")
}

summary=()
for store in $stores; do
  case "$store" in
    sqlite) bench_store sqlite "" ;;
    postgres)
      db="nexora_bench_$$_$(date +%s)"
      createdb --maintenance-db="$pg_base/postgres" "$db"
      bench_store postgres "$pg_base/$db"
      dropdb --maintenance-db="$pg_base/postgres" "$db"
      db=""
      ;;
    *) echo "unknown store '$store' (sqlite, postgres)" >&2; exit 1 ;;
  esac
done
echo
echo "== medians of $rounds rounds, wrk -t1 -c16 -d${secs}s =="
printf '%s\n' "${summary[@]}"
