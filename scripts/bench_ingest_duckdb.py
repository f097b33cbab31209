"""Raw-speed reference for the acquirer-ingest benchmark (scripts/bench-ingest.sh).

DuckDB reads the same synthetic E1 file, validates the columns the eligibility rules depend on,
joins the rows with the seeded enrollments (CSV written by `cashback bench-ingest seed`) and
aggregates per citizen: count and sum of the eligible amounts (reversals negative). It stores
nothing per row and keeps no reasons: it is the floor, not an equivalent.

    python bench_ingest_duckdb.py FILE.csv ENROLLMENTS.csv YEAR [THREADS]

Prints one JSON line: seconds, eligible rows, signed sum in cents, citizens.
"""

import json
import sys
import time

import duckdb

COLUMNS = [
    "sender_code", "operation_type", "circuit_type", "hpan", "date_time", "id_trx_acquirer",
    "id_trx_issuer", "correlation_id", "total_amount", "currency", "acquirer_id", "merchant_id",
    "terminal_id", "bin", "mcc",
]

QUERY = """
WITH raw AS (
    SELECT * FROM read_csv($file, delim = ';', header = false, quote = '', escape = '',
                           all_varchar = true, ignore_errors = true, strict_mode = true,
                           columns = $columns)
), valid AS (
    SELECT hpan,
           operation_type = '01' AS reversal,
           total_amount::BIGINT AS amount,
           try_strptime(substr(date_time, 1, 19), '%Y-%m-%dT%H:%M:%S') AS local_ts,
           CASE WHEN suffix(date_time, 'Z') THEN 0
                ELSE (CASE WHEN substr(date_time, -6, 1) = '-' THEN -1 ELSE 1 END)
                     * (substr(date_time, -5, 2)::INT * 60 + substr(date_time, -2, 2)::INT)
           END AS offset_min
    FROM raw
    WHERE sender_code = 'BENCH'
      AND operation_type IN ('00', '01', '02', '03')
      AND regexp_full_match(circuit_type, '[0-9]{2}')
      AND regexp_full_match(hpan, '[0-9a-f]{64}')
      AND regexp_full_match(date_time,
            '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})')
      AND length(id_trx_acquirer) BETWEEN 1 AND 255
      AND regexp_full_match(total_amount, '[0-9]{1,11}')
      AND coalesce(currency, '') IN ('978', '')
      AND regexp_full_match(bin, '[0-9]{6}|[0-9]{8}')
), instants AS (
    SELECT hpan, reversal, amount,
           (local_ts - to_minutes(offset_min))::TIMESTAMP AS utc_ts
    FROM valid WHERE local_ts IS NOT NULL
), enrolled AS (
    SELECT * FROM read_csv($enrollments, header = true,
                           columns = {'hpan': 'VARCHAR', 'fiscal_code': 'VARCHAR', 'activated_at_us': 'BIGINT'})
)
SELECT e.fiscal_code,
       count(*) AS trx,
       sum(CASE WHEN i.reversal THEN -i.amount ELSE i.amount END) AS cents
FROM instants i JOIN enrolled e ON e.hpan = i.hpan
WHERE epoch_us(i.utc_ts) >= e.activated_at_us
  AND year(timezone('Europe/Rome', timezone('UTC', i.utc_ts))) = $year
GROUP BY e.fiscal_code
"""


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    path, enrollments, year = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    con = duckdb.connect()
    con.execute(f"SET threads TO {threads}")
    con.execute("SET memory_limit = '4GB'")
    columns = {c: "VARCHAR" for c in COLUMNS}
    started = time.monotonic()
    con.execute(f"CREATE TEMP TABLE per_citizen AS {QUERY}",
                {"file": path, "enrollments": enrollments, "year": year, "columns": columns})
    seconds = time.monotonic() - started
    citizens, rows, cents = con.execute(
        "SELECT count(*), coalesce(sum(trx), 0), coalesce(sum(cents), 0) FROM per_citizen").fetchone()
    print(json.dumps({"engine": "duckdb " + duckdb.__version__, "threads": threads,
                      "seconds": round(seconds, 3), "eligible_rows": int(rows),
                      "signed_cents": int(cents), "citizens": int(citizens)}))


if __name__ == "__main__":
    main()
