#!/usr/bin/env bash
# Super Cashback ranking over HTTP (issue 4): GET /bpd/io/citizen/v2/ranking on SQLite,
# loopback only, every step bounded in time.
#
#   scripts/bench-ranking-http.sh [DURATION_S] [CONNECTIONS…] [CITIZENS] [INSTRUMENTS] [ROWS]
#   scripts/bench-ranking-http.sh 20 "32 64 128" 1000000 2000000 5000000     # the defaults
#
# 1. Builds the release binary (honours CARGO_TARGET_DIR).
# 2. Data, cached under $CASHBACK_BENCH_DATA (default $CARGO_TARGET_DIR/bench-ranking) per
#    parameter set (it is deterministic): `cashback bench-ingest seed` (CITIZENS citizens,
#    INSTRUMENTS cards, award period 100 = 2026), `bench-ingest generate` (ROWS rows), then
#    `cashback ingest` of that file, which also scores: every citizen with eligible rows gets a
#    citizen_period totals row. The file is deleted afterwards; the scored database is kept.
# 3. Copies the scored database, starts `cashback serve --dev` on it on 127.0.0.1:$PORT (in a
#    temporary directory: the dev PGP key and spool land there), waits for /health; the first
#    `ranking` run waits (bench --ready-timeout) until the board is loaded (503 until then).
# 4. For each connection count: `cashback bench --scenario ranking` (random citizens among
#    100,000 with tokens, awardPeriodId=100; answers of 20 citizens checked first), then the
#    baselines on the same server and connections (default "award-periods health get": same
#    authentication without a store read / no authentication and a trivial store read / the
#    enrollment benchmark's GET of a card by its owner, after enrolling 50,000 cards).
#    Each prints one JSON line: req/s, latency, statuses (every non-200 counted), CPU of the
#    server and of the generator over the measured window, load average.
# 5. Prints a summary with the ratio ranking / baseline, stops the server, removes the copy.
#
# Env: CASHBACK_BENCH_PORT (18481), CASHBACK_BENCH_BASELINES, CASHBACK_BENCH_WARMUP (3),
# CASHBACK_BENCH_TOKEN_POOL (100000), CASHBACK_BENCH_STEP_TIMEOUT (900 s per step).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNECTIONS="${2:-32 64 128}"
CITIZENS="${3:-1000000}"
INSTRUMENTS="${4:-2000000}"
ROWS="${5:-5000000}"
YEAR=2026
PERIOD=100
PORT="${CASHBACK_BENCH_PORT:-18481}"
BASELINES="${CASHBACK_BENCH_BASELINES:-award-periods health get}"
WARMUP="${CASHBACK_BENCH_WARMUP:-3}"
TOKEN_POOL="${CASHBACK_BENCH_TOKEN_POOL:-100000}"
STEP_TIMEOUT="${CASHBACK_BENCH_STEP_TIMEOUT:-900}"
TARGET="${CARGO_TARGET_DIR:-target}"
DATA="${CASHBACK_BENCH_DATA:-$TARGET/bench-ranking}/c${CITIZENS}-i${INSTRUMENTS}-r${ROWS}"
run() { timeout --signal=TERM --kill-after=30 "$STEP_TIMEOUT" "$@"; }
export RUST_LOG="${RUST_LOG:-warn}"

cargo build --release -q -p cashback
BIN="$(realpath "$TARGET/release/cashback")"
mkdir -p "$DATA"
DATA="$(realpath "$DATA")"
WORK="$(mktemp -d "$DATA/run.XXXXXX")"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "# ranking over HTTP: citizens=$CITIZENS instruments=$INSTRUMENTS rows=$ROWS duration=${DURATION}s connections=[$CONNECTIONS] cores=$(nproc) $(date -u +%FT%TZ) load=[$(cut -d' ' -f1-3 /proc/loadavg)]"

# 1. Seeded and scored database (cached: the data is deterministic).
if [ ! -f "$DATA/scored.db.json" ]; then
  rm -f "$DATA"/scored.db* "$DATA"/*.json "$DATA"/CSTAR.*
  T0=$(date +%s.%N)
  run "$BIN" bench-ingest generate --out-dir "$DATA" --rows "$ROWS" --instruments "$INSTRUMENTS" --year "$YEAR" > "$DATA/file.json"
  echo "file: $(cat "$DATA/file.json")"
  run "$BIN" bench-ingest seed --database "sqlite://$DATA/scored.db" --citizens "$CITIZENS" \
    --instruments "$INSTRUMENTS" --year "$YEAR" | tail -1 > "$DATA/seed.json"
  echo "seed: $(cat "$DATA/seed.json")"
  run "$BIN" ingest --quiet --show-rejections 0 --database "sqlite://$DATA/scored.db" "$DATA"/CSTAR.BENCH.TRNLOG.*.csv | tail -1 > "$DATA/ingest.json"
  echo "ingest (with scoring): $(cat "$DATA/ingest.json")"
  rm -f "$DATA"/CSTAR.*
  python3 - "$DATA/scored.db" "$PERIOD" > "$DATA/scored.tmp" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
n, counted = c.execute("SELECT count(*), coalesce(sum(transactions), 0) FROM citizen_period "
                       "WHERE award_period_id = ? AND enabled", (int(sys.argv[2]),)).fetchone()
print(json.dumps({"citizen_period_rows": n, "counted_payments": counted}))
PY
  mv "$DATA/scored.tmp" "$DATA/scored.db.json"
  echo "data prepared in $(echo "$(date +%s.%N) - $T0" | bc) s"
fi
echo "scored: $(cat "$DATA/scored.db.json") ($(du -sh "$DATA"/scored.db | cut -f1) on disk)"

# 2. The server, on a copy.
for f in "$DATA"/scored.db "$DATA"/scored.db-wal; do
  [ -f "$f" ] && cp "$f" "$WORK/run.db${f#"$DATA"/scored.db}"
done
if curl -s -o /dev/null "http://127.0.0.1:$PORT/health"; then
  echo "port $PORT is already in use" >&2
  exit 1
fi
(cd "$WORK" && RUST_LOG="warn,cashback_api::ranking=info" exec "$BIN" serve --dev --listen "127.0.0.1:$PORT" \
  --database "sqlite://$WORK/run.db" > "$WORK/server.log" 2>&1) &
SERVER=$!
for i in $(seq 1 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  [ "$i" = 600 ] && { echo "server not healthy after 120 s" >&2; exit 1; }
  sleep 0.2
done

# 3. Scenarios.
RESULTS="$WORK/results.jsonl"
FIRST=1
for C in $CONNECTIONS; do
  for S in ranking $BASELINES; do
    case "$S" in
      # The enrollment benchmark's GET (docs/benchmarks.md): enrolls 2,000 citizens (the first
      # seeded ones: same fiscal codes) and 50,000 new cards first, on this copy.
      get) WHO=(--citizens 2000 --instruments 50000) ;;
      *) WHO=(--citizens "$CITIZENS" --token-pool "$TOKEN_POOL" --award-period-id "$PERIOD") ;;
    esac
    run "$BIN" bench --target "127.0.0.1:$PORT" --scenario "$S" --duration "$DURATION" --warmup "$WARMUP" \
      --connections "$C" "${WHO[@]}" --server-pid "$SERVER" 2> "$WORK/bench.err" | tee -a "$RESULTS" \
      || { cat "$WORK/bench.err" >&2; exit 1; }
    if [ "$FIRST" = 1 ]; then
      FIRST=0
      grep -h "rankings loaded" "$WORK/server.log" | tail -1 | sed 's/^/server: /' || true
      echo "server memory after the board load: $(grep -E '^(VmRSS|RssAnon|RssFile)' "/proc/$SERVER/status" | tr -s ' \t' ' ' | paste -sd, -) (RssFile: database pages through the memory map)"
    fi
  done
done
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^cashback_http_shed_total' || true

# 4. Summary.
python3 - "$RESULTS" "$BASELINES" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"{'scenario':<14}{'conns':>6}{'req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'non-200':>9}{'errors':>7}"
      f"{'server':>8}{'gen':>6}{'machine':>8}  load (start → end)")
for r in runs:
    non200 = sum(v for k, v in r["statuses"].items() if k != "200")
    cpu = r.get("cpu") or {}
    print(f"{r['scenario']:<14}{r['connections']:>6}{r['throughput_rps']:>10,.0f}{r['latency_ms']['p50']:>8.2f}"
          f"{r['latency_ms']['p99']:>8.2f}{non200:>9}{r['transport_errors']:>7}{cpu.get('server_cores') or 0:>8.2f}"
          f"{cpu.get('generator_cores', 0):>6.2f}{cpu.get('machine_busy_cores', 0):>8.2f}  "
          f"{r['loadavg']['start']} → {r['loadavg']['end']}")
by = {(r["scenario"], r["connections"]): r for r in runs}
for (s, c), r in sorted(by.items(), key=lambda x: x[0][1]):
    if s == "ranking":
        for b in sys.argv[2].split():
            if (b, c) in by:
                print(f"ratio ranking/{b} at {c} connections: {r['throughput_rps'] / by[(b, c)]['throughput_rps']:.2f}")
check = next((r["check"] for r in runs if "check" in r), None)
if check:
    print("check:", json.dumps(check))
bad = [r for r in runs if r["transport_errors"] or any(k != "200" for k in r["statuses"])]
if bad:
    print(f"WARNING: {len(bad)} run(s) with non-200 answers or transport errors")
PY
