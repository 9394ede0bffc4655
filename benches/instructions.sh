#!/usr/bin/env bash
# Runs the `instructions` bench (gungraun over callgrind: see benches/benches/instructions.rs
# for what is counted) and prints the instructions per call of each case and the ratios the
# targets are stated in. Arguments go to gungraun (`--save-baseline=before`, `--baseline=before`).
# Needs valgrind and `cargo install --locked gungraun-runner --version 0.20.0`.
# Usage: benches/instructions.sh [gungraun args...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
command -v gungraun-runner >/dev/null || [ -n "${GUNGRAUN_RUNNER:-}" ] ||
  { echo "needs cargo install --locked gungraun-runner --version 0.20.0" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench -q -p nexora-auth-benches --bench instructions -- "$@" | tee "$out"
# gungraun prints `instructions::GROUP::NAME ID:(ARGS)` and then `  Instructions: NEW|OLD ...`.
awk '
  /^instructions::/ { split($1, p, "::"); name = p[2] "::" p[3] }
  /^ *Instructions:/ { split($2, v, "|"); ir[name] = v[1]; order[++n] = name }
  END {
    print "\n== instructions per call =="
    for (i = 1; i <= n; i++) printf "%-34s %9d\n", order[i], ir[order[i]]
    print "\n== ratios (same run) =="
    ratio("authenticate::valid_key", "baseline::hmac_plus_hashmap", "<= 1.5x")
    ratio("authenticate::unknown_key", "baseline::hmac_plus_hashmap", "-")
    ratio("authenticate::limited_key_charged", "authenticate::limited_key", "<= 1.10x")
    ratio("verify::uncached", "baseline::jsonwebtoken_decode", "<= 1.15x")
    ratio("verify::cached", "baseline::jsonwebtoken_decode", "-")
  }
  function ratio(a, b, target) {
    if (ir[a] && ir[b])
      printf "%-27s / %-29s %9d / %9d = %.3fx  (target %s)\n", a, b, ir[a], ir[b], ir[a] / ir[b], target
  }
' "$out"
