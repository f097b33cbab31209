#!/usr/bin/env bash
# Acquirer-ingest benchmark (issue 3), local services only, bounded in time.
#
#   scripts/bench-ingest.sh [ROWS] [INSTRUMENTS] [CITIZENS] [BACKENDS]
#
# Defaults: 10,000,000 rows, 5,000,000 enrolled cards, 2,000,000 citizens, "sqlite postgres".
# Builds the release binary; seeds a template database per backend with `cashback bench-ingest
# seed` (bulk import) and writes the synthetic E1 file with `cashback bench-ingest generate`
# (both cached under $CASHBACK_BENCH_DATA, default target/bench-ingest, and reused when the
# parameters match: the data is deterministic); then, for each backend, ingests the file into a
# fresh copy of the seeded database under `/usr/bin/time -v` (peak RSS), and finally runs the
# DuckDB reference (venv under target/, `pip install duckdb`) on the same file and enrollments
# and prints the ratio. PostgreSQL: $CASHBACK_BENCH_PG_URL, default
# postgres://postgres@127.0.0.1:5432/test (databases cashback_bench_* are created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-10000000}"
INSTRUMENTS="${2:-5000000}"
CITIZENS="${3:-2000000}"
BACKENDS="${4:-sqlite postgres}"
YEAR=2026
STEP_TIMEOUT="${CASHBACK_BENCH_STEP_TIMEOUT:-1800}"   # seconds, per step
TARGET="${CARGO_TARGET_DIR:-target}"
DATA="${CASHBACK_BENCH_DATA:-$TARGET/bench-ingest}/r${ROWS}-i${INSTRUMENTS}-c${CITIZENS}"
PG_BASE="${CASHBACK_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
PG_TEMPLATE="cashback_bench_tmpl_i${INSTRUMENTS}_c${CITIZENS}"
PG_RUN="cashback_bench_run_$$"
case "$PG_BASE" in
  postgres://*@127.0.0.1:*|postgres://*@localhost:*|postgresql://*@127.0.0.1:*|postgresql://*@localhost:*) ;;
  *) echo "CASHBACK_BENCH_PG_URL must point at a local server" >&2; exit 2 ;;
esac

cargo build --release -q -p cashback
BIN="$TARGET/release/cashback"
mkdir -p "$DATA"
WORK="$(mktemp -d "$DATA/run.XXXXXX")"
cleanup() {
  rm -rf "$WORK"
  psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $PG_RUN" >/dev/null 2>&1 || true
}
trap cleanup EXIT
run() { timeout --signal=TERM --kill-after=30 "$STEP_TIMEOUT" "$@"; }
export RUST_LOG="${RUST_LOG:-warn}"

echo "# acquirer ingest: rows=$ROWS instruments=$INSTRUMENTS citizens=$CITIZENS cores=$(nproc) $(date -u +%FT%TZ)"

# 1. The synthetic file (deterministic: generated once per parameter set).
FILE="$DATA/CSTAR.BENCH.TRNLOG.${YEAR}1101.120000.001.csv"
if [ ! -s "$FILE" ] || [ ! -f "$DATA/file.json" ]; then
  run "$BIN" bench-ingest generate --out-dir "$DATA" --rows "$ROWS" --instruments "$INSTRUMENTS" --year "$YEAR" > "$DATA/file.json"
fi
echo "file: $(cat "$DATA/file.json")"

# 2. Seeded template databases (and the enrollments CSV for DuckDB).
for B in $BACKENDS; do
  case "$B" in
    sqlite)
      if [ ! -f "$DATA/seeded.db.json" ]; then
        rm -f "$DATA"/seeded.db*
        run "$BIN" bench-ingest seed --database "sqlite://$DATA/seeded.db" --citizens "$CITIZENS" \
          --instruments "$INSTRUMENTS" --year "$YEAR" --enrollments-csv "$DATA/enrollments.csv" | tail -1 > "$DATA/seed.sqlite.tmp"
        mv "$DATA/seed.sqlite.tmp" "$DATA/seeded.db.json"
      fi
      echo "seed sqlite: $(cat "$DATA/seeded.db.json")" ;;
    postgres)
      if [ ! -f "$DATA/seeded.pg.json" ] || [ "$(psql "$PG_BASE" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_TEMPLATE'")" != 1 ]; then
        psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $PG_TEMPLATE" && psql "$PG_BASE" -qc "CREATE DATABASE $PG_TEMPLATE"
        run "$BIN" bench-ingest seed --database "${PG_BASE%/*}/$PG_TEMPLATE" --citizens "$CITIZENS" \
          --instruments "$INSTRUMENTS" --year "$YEAR" --enrollments-csv "$DATA/enrollments.csv" | tail -1 > "$DATA/seed.pg.tmp"
        psql "${PG_BASE%/*}/$PG_TEMPLATE" -qc "VACUUM ANALYZE"
        mv "$DATA/seed.pg.tmp" "$DATA/seeded.pg.json"
      fi
      echo "seed postgres: $(cat "$DATA/seeded.pg.json")" ;;
    *) echo "unknown backend $B" >&2; exit 2 ;;
  esac
done

# 3. Ingest into a fresh copy of each seeded database.
for B in $BACKENDS; do
  case "$B" in
    sqlite)
      cp "$DATA/seeded.db" "$WORK/run.db"
      DB="sqlite://$WORK/run.db" ;;
    postgres)
      psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $PG_RUN" && psql "$PG_BASE" -qc "CREATE DATABASE $PG_RUN TEMPLATE $PG_TEMPLATE"
      DB="${PG_BASE%/*}/$PG_RUN" ;;
  esac
  sync
  START=$(date +%s.%N)
  run /usr/bin/time -v -o "$WORK/time.$B" "$BIN" ingest --quiet --show-rejections 3 --database "$DB" "$FILE" | tail -1 > "$WORK/ingest.$B.json"
  END=$(date +%s.%N)
  echo "ingest $B: $(cat "$WORK/ingest.$B.json")"
  RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.$B")
  WALL=$(echo "$END - $START" | bc)
  echo "ingest $B: command wall ${WALL} s (snapshot + hashing + ingest), $(echo "scale=0; $ROWS / $WALL" | bc) rows/s over the whole command, peak RSS $((RSS_KB / 1024)) MiB"
  case "$B" in
    sqlite) python3 - "$WORK/run.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
n, s = c.execute("SELECT count(*), coalesce(sum(CASE WHEN reversal THEN -amount_cents ELSE amount_cents END), 0) "
                 "FROM acquirer_transaction WHERE ineligible IS NULL").fetchone()
print(f"stored sqlite: eligible_rows={n} signed_cents={s}")
PY
      ;;
    postgres) echo "stored postgres: $(psql "$DB" -tAc "SELECT 'eligible_rows=' || count(*) || ' signed_cents=' || coalesce(sum(CASE WHEN reversal THEN -amount_cents ELSE amount_cents END), 0) FROM acquirer_transaction WHERE ineligible IS NULL")"
      psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $PG_RUN" ;;
  esac
  echo "$B $WALL" >> "$WORK/walls"
done

# 4. DuckDB reference on the same file and enrollments.
VENV="$TARGET/bench-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import duckdb" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q duckdb
fi
run "$VENV/bin/python" scripts/bench_ingest_duckdb.py "$FILE" "$DATA/enrollments.csv" "$YEAR" "$(nproc)" > "$WORK/duckdb.json"
echo "duckdb: $(cat "$WORK/duckdb.json")"
DUCK=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'])" "$WORK/duckdb.json")
while read -r B WALL; do
  SECS=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'])" "$WORK/ingest.$B.json")
  echo "ratio $B/duckdb: ingest ${SECS} s / ${DUCK} s = $(echo "scale=1; $SECS / $DUCK" | bc)x (whole command: $(echo "scale=1; $WALL / $DUCK" | bc)x)"
done < "$WORK/walls"
