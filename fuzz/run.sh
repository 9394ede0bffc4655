#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 60) on nightly, merging new inputs into
# the committed corpora. Usage: fuzz/run.sh [seconds] [target...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(key_parse authenticate jwt_verify credentials store_ops)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096
done
