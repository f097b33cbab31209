#!/usr/bin/env bash
# Launch-day load profile (issue 5), open loop, loopback only, bounded in time.
#
#   scripts/loadtest.sh RATE [STEADY_S] [OVERLOAD_S] [OVERLOAD_FACTOR] [extra `cashback loadtest` flags…]
#
# Builds the release binary, starts `cashback serve --dev` on a fresh SQLite file (optional
# server settings: $CASHBACK_LOADTEST_CONFIG, a TOML file), lets `cashback loadtest` enroll the
# setup citizens and cards (dev tokens), runs the profile — a 10 s ramp to RATE, STEADY_S at
# RATE, then (if OVERLOAD_S > 0) OVERLOAD_S at RATE × OVERLOAD_FACTOR and 20 s of recovery —
# with the server's pid (RSS and CPU), prints the JSON report on stdout (a summary per phase on
# stderr), the server's shedding counters, and stops the server. Server and load generator
# share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:?usage: $0 RATE [STEADY_S] [OVERLOAD_S] [OVERLOAD_FACTOR] [flags…]}"
STEADY="${2:-30}"
OVERLOAD="${3:-0}"
FACTOR="${4:-3}"
shift $(( $# < 4 ? $# : 4 ))
PORT="${CASHBACK_LOADTEST_PORT:-18490}"
cargo build --release -q -p cashback
BIN=target/release/cashback
WORK="$(mktemp -d)"
CONFIG_ARGS=()
if [ -n "${CASHBACK_LOADTEST_CONFIG:-}" ]; then CONFIG_ARGS=(--config "$CASHBACK_LOADTEST_CONFIG"); fi
RUST_LOG=warn "$BIN" serve --dev --listen "127.0.0.1:$PORT" --database "sqlite://$WORK/loadtest.db" "${CONFIG_ARGS[@]}" \
  > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "# loadtest rate=$RATE steady=${STEADY}s overload=${OVERLOAD}s x$FACTOR cores=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg) $(date -u +%FT%TZ)" >&2
"$BIN" loadtest --target "127.0.0.1:$PORT" --rate "$RATE" --ramp 10 --steady "$STEADY" \
  --overload "$OVERLOAD" --overload-factor "$FACTOR" --recovery 20 --server-pid "$SERVER" "$@"
kill -0 "$SERVER" 2>/dev/null && echo "# server still up after the run" >&2 || echo "# SERVER DIED" >&2
curl -s "http://127.0.0.1:$PORT/metrics" \
  | grep -E '^cashback_(http_shed_total|http_timeouts_total|writer_rejected_total|rate_limited_total|writer_batch_size_(sum|count))' >&2 || true
