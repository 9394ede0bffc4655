#!/usr/bin/env bash
# Instructions per `Authenticator::authenticate` without and with the live-user lookup, counted
# by callgrind on the `live_users` bench binary's `count` mode (in-memory and SQLite stores; a
# Postgres lookup runs in another process, where callgrind cannot count it).
#
# Each case runs at N1 and N2 calls; (instructions(N2) - instructions(N1)) / (N2 - N1) is the
# cost of one call, with the setup (runtime, store, 1,000 neighbours) cancelled out.
# Usage: benches/callgrind_live_users.sh [N1 default 2000] [N2 default 12000]
set -euo pipefail
cd "$(dirname "$0")/.."
n1="${1:-2000}"; n2="${2:-12000}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
bin=$(cargo bench -p nexora-auth-benches --bench live_users --no-run 2>&1 |
  grep -o '[^ (]*/deps/live_users-[0-9a-f]*' | tail -1)
[ -x "$bin" ] || { echo "bench binary not found" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
instructions() { # store credential users n
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$bin" count "$@" 2>&1 |
    awk '/Collected :/{print $NF}'
}
declare -A per
for store in memory sqlite; do
  for credential in jwt key; do
    line="$store $credential:"
    for users in without with; do
      a=$(instructions "$store" "$credential" "$users" "$n1")
      b=$(instructions "$store" "$credential" "$users" "$n2")
      per[$users]=$(( (b - a) / (n2 - n1) ))
      line="$line $users users ${per[$users]} instr/call |"
    done
    awk -v l="$line" -v a="${per[without]}" -v b="${per[with]}" \
      'BEGIN { printf "%s ratio %.2fx (+%d instr)\n", l, b / a, b - a }'
  done
done
