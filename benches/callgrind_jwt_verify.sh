#!/usr/bin/env bash
# Instructions per uncached `TokenAuthority::verify` and per bare `jsonwebtoken::decode` of the
# same token with the same validation, counted by callgrind on the `key_path` bench binary's
# `count` mode. Instruction counts do not move with the load of a shared machine, so the ratio
# is the stable companion of the timed one that `cargo bench --bench key_path` prints.
#
# Each side runs at N1 and N2 calls; (instructions(N2) - instructions(N1)) / (N2 - N1) is the
# cost of one call, with the setup (keys, the startup self-check, the token) cancelled out.
# Usage: benches/callgrind_jwt_verify.sh [N1 default 2000] [N2 default 12000]
set -euo pipefail
cd "$(dirname "$0")/.."
n1="${1:-2000}"; n2="${2:-12000}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
bin=$(cargo bench -p nexora-auth-benches --bench key_path --no-run 2>&1 |
  grep -o '[^ (]*/deps/key_path-[0-9a-f]*' | tail -1)
[ -x "$bin" ] || { echo "bench binary not found" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
instructions() { # verify|decode n
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$bin" count "$@" 2>&1 |
    awk '/Collected :/{print $NF}'
}
declare -A per
for what in decode verify; do
  a=$(instructions "$what" "$n1")
  b=$(instructions "$what" "$n2")
  per[$what]=$(( (b - a) / (n2 - n1) ))
done
awk -v v="${per[verify]}" -v d="${per[decode]}" 'BEGIN {
  printf "jsonwebtoken::decode %d instr/call | verify (uncached) %d instr/call | ratio %.3fx\n", d, v, v / d
}'
