# Shared by the wrk benches (http_stores.sh, http_limits.sh); sourced, not run.
# Defines: need, stop_server (of $pid), free_port, median, bench_secrets (fresh secrets,
# quiet logs, tokens that outlive the run: bench_secrets MEASUREMENTS_PER_ROUND).

need() { command -v "$1" >/dev/null || { echo "needs $1 ($2)" >&2; exit 1; }; }

pid=""
stop_server() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

median() { tr ' ' '\n' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

email=bench@example.com
password='correct horse battery staple, benchmark edition'

bench_secrets() { # measurements per round (uses $rounds and $secs)
  # Every token must outlive the whole run (the measurements plus warm-up, login and setup).
  export NEXORA_ACCESS_TOKEN_TTL_SECS=$(( $1 * (rounds + 1) * (secs + 2) + 600 ))
  # Secrets given rather than generated into each data directory (which the server warns about).
  NEXORA_KEY_PEPPER=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  NEXORA_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  export NEXORA_KEY_PEPPER NEXORA_JWT_SECRET
  # The server logs one line per request at `info`; at 10^4 requests a second that would be
  # what is measured.
  export NEXORA_LOG=warn
}
