#!/usr/bin/env bash
# Super Cashback ranking vs Redis sorted sets (issue 4), local Redis only, bounded in time.
#
#   scripts/bench-ranking-redis.sh [CITIZENS]
#
# Default 9,000,000 citizens. Environment: CASHBACK_BENCH_REDIS_PORT (default 6379; the host is
# always 127.0.0.1), CASHBACK_BENCH_STEP_TIMEOUT (seconds per step, default 900), CARGO_TARGET_DIR.
#
# 1. builds (release) and runs `ranking_bench` (cashback-domain example): in-process rebuild,
#    1 M rank lookups, updates, summary;
# 2. runs `ranking_redis_bench` on the same population (same generator, same seed, same probe
#    citizens): loads the citizens into the sorted set `cashback:bench:ranking` with pipelined
#    ZADD (exact integer scores < 2^53 encoding count desc + earlier latest payment; members =
#    complemented citizen ids in fixed-width hex so ZREVRANK's tie order = citizen id asc),
#    times ZREVRANK one request at a time (p50/p99 round trip, PING as the loopback floor) and
#    pipelined in batches of 1,000, reads Redis's server-side µs/call (INFO commandstats) and
#    used_memory growth, checks every ZREVRANK reply + 1 against our rank, prints ratios, and
#    unlinks the key (also on failure: the example's guard and this script's trap);
# 3. checks that both examples saw the same population (identical summary line after the same
#    1 M updates).
# Details and the score encoding: crates/cashback-domain/examples/ranking_redis_bench.rs;
# results: docs/benchmarks.md, "Super Cashback ranking".
set -euo pipefail
cd "$(dirname "$0")/.."
CITIZENS="${1:-9000000}"
PORT="${CASHBACK_BENCH_REDIS_PORT:-6379}"
KEY="cashback:bench:ranking"
STEP_TIMEOUT="${CASHBACK_BENCH_STEP_TIMEOUT:-900}"
TARGET="${CARGO_TARGET_DIR:-target}"
run() { timeout --signal=TERM --kill-after=30 "$STEP_TIMEOUT" "$@"; }
rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

command -v redis-cli >/dev/null || { echo "redis-cli not found" >&2; exit 2; }
if [ "$(rcli ping 2>&1)" != "PONG" ]; then
  echo "no Redis answering PING on 127.0.0.1:$PORT" >&2
  exit 2
fi
OUT="$(mktemp -d)"
cleanup() {
  rcli UNLINK "$KEY" >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

echo "# ranking vs Redis: citizens=$CITIZENS cores=$(nproc) $(date -u +%FT%TZ)"
echo "# redis 127.0.0.1:$PORT: $(rcli info server | tr -d '\r' | grep -E '^redis_version:'), \
$(rcli config get maxmemory | tr -d '\r' | paste -sd' '), \
$(rcli config get maxmemory-policy | tr -d '\r' | paste -sd' '), \
save='$(rcli config get save | tr -d '\r' | sed -n 2p)', \
$(rcli config get appendonly | tr -d '\r' | paste -sd' ')"

cargo build --release -q -p cashback-domain --example ranking_bench --example ranking_redis_bench
EX="$TARGET/release/examples"

echo
echo "## 1. in process: ranking_bench $CITIZENS"
run "$EX/ranking_bench" "$CITIZENS" | tee "$OUT/inproc.txt"

echo
echo "## 2. same citizens in Redis: ranking_redis_bench $CITIZENS"
run "$EX/ranking_redis_bench" "$CITIZENS" --port "$PORT" --key "$KEY" --single 100000 --batch 1000 \
  | tee "$OUT/redis.txt"

echo
echo "## 3. same population?"
A="$(grep '^summary ' "$OUT/inproc.txt" | sed -E 's/^summary (.*\)): [0-9.]+ ms$/\1/')"
B="$(grep '^cross-check: summary ' "$OUT/redis.txt" | sed -E 's/^cross-check: summary //')"
if [ -n "$A" ] && [ "$A" = "$B" ]; then
  echo "yes: both examples end with: $A"
else
  echo "NO: ranking_bench: '$A' vs ranking_redis_bench: '$B'" >&2
  exit 1
fi
if [ "$(rcli exists "$KEY" | tr -d '\r')" != "0" ]; then
  echo "warning: $KEY still exists (the trap unlinks it)" >&2
fi
