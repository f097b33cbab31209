#!/usr/bin/env bash
# Enrollment benchmark (issue: Citizen and instrument enrollment), loopback only, bounded in time.
#
#   scripts/bench-enroll.sh [sqlite|postgres] [DURATION_S] [CONNECTIONS]
#
# Builds the release binary, starts `cashback serve --dev` on a fresh database (a temporary
# SQLite file, or a fresh PostgreSQL database on $CASHBACK_BENCH_PG_URL, default
# postgres://postgres@127.0.0.1:5432/test), then runs the `put` scenario (new hpan per request)
# and the `get` scenario with `cashback bench`, prints one JSON line per scenario, and stops the
# server. Server and load generator share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-sqlite}"
DURATION="${2:-60}"
CONNECTIONS="${3:-64}"
PORT="${CASHBACK_BENCH_PORT:-18480}"
cargo build --release -q -p cashback
BIN=target/release/cashback
WORK="$(mktemp -d)"
case "$BACKEND" in
  sqlite) DB="sqlite://$WORK/bench.db" ;;
  postgres)
    BASE="${CASHBACK_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
    NAME="cashback_bench_$$"
    psql "$BASE" -qc "DROP DATABASE IF EXISTS $NAME" && psql "$BASE" -qc "CREATE DATABASE $NAME"
    DB="${BASE%/*}/$NAME" ;;
  *) echo "usage: $0 [sqlite|postgres] [duration] [connections]" >&2; exit 2 ;;
esac
RUST_LOG=warn "$BIN" serve --dev --listen "127.0.0.1:$PORT" --database "$DB" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; [ "$BACKEND" = postgres ] && psql "$BASE" -qc "DROP DATABASE IF EXISTS $NAME" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "# backend=$BACKEND duration=${DURATION}s connections=$CONNECTIONS cores=$(nproc) $(date -u +%FT%TZ)"
"$BIN" bench --target "127.0.0.1:$PORT" --scenario put --duration "$DURATION" --connections "$CONNECTIONS" --citizens 2000
"$BIN" bench --target "127.0.0.1:$PORT" --scenario get --duration "$DURATION" --connections "$CONNECTIONS" --citizens 2000 --instruments 50000
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^cashback_writer_batch_size_(sum|count)' || true
