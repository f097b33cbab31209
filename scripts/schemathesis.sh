#!/usr/bin/env bash
# API fuzzing (issue 9): schemathesis against the OpenAPI document served by a running
# `cashback serve --dev`, every operation, every check, each role with its own credential.
#   scripts/schemathesis.sh [MAX_EXAMPLES=25]
# Env: CASHBACK_BIN (default: target/debug/cashback, built if missing or stale),
#      SCHEMATHESIS_VENV (default: ~/.cache/cashback-schemathesis, created from
#      scripts/schemathesis-requirements.txt), SCHEMATHESIS_TIMEOUT (whole run, seconds,
#      default 1800), SCHEMATHESIS_SEED (hypothesis seed; default random, printed).
# Talks to 127.0.0.1 only: a fresh SQLite file and a free port in a temporary directory,
# removed at the end with the server. Exits non-zero on any failure (server error, status
# code, content type, header or body not as documented, ...). See docs/security.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MAX_EXAMPLES="${1:-25}"
TIMEOUT="${SCHEMATHESIS_TIMEOUT:-1800}"
SEED="${SCHEMATHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}"
VENV="${SCHEMATHESIS_VENV:-$HOME/.cache/cashback-schemathesis}"
REQ="$ROOT/scripts/schemathesis-requirements.txt"

# The whole run is bounded: re-exec under `timeout` once.
if [ -z "${CASHBACK_SCHEMATHESIS_BOUNDED:-}" ]; then
  export CASHBACK_SCHEMATHESIS_BOUNDED=1
  exec timeout --kill-after=30 "$TIMEOUT" "$0" "$@"
fi

# ---- schemathesis, pinned, in its own venv ----
if ! cmp -s "$REQ" "$VENV/.requirements" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.requirements"
fi
ST="$VENV/bin/schemathesis"

# ---- the server binary ----
if [ -n "${CASHBACK_BIN:-}" ]; then
  BIN="$CASHBACK_BIN"
else
  (cd "$ROOT" && cargo build --locked -q -p cashback)
  BIN="$ROOT/target/debug/cashback"
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
DB="sqlite://$WORK/fuzz.db"
# Rate limits off: the fuzzer should reach the handlers, not the token buckets (429 with
# Retry-After is documented all the same).
cat >"$WORK/cashback.toml" <<'EOF'
[rate_limits.citizen]
per_second = 0
burst = 0
[rate_limits.issuer]
per_second = 0
burst = 0
[rate_limits.acquirer]
per_second = 0
burst = 0
[rate_limits.payment_manager]
per_second = 0
burst = 0
[rate_limits.operator]
per_second = 0
burst = 0
EOF
export CASHBACK_CONFIG="$WORK/cashback.toml"
cd "$WORK" # the dev OpenPGP key and the upload spool are created here

"$BIN" migrate --database "$DB" >/dev/null
key() { # kind scope → the API key
  "$BIN" admin --database "$DB" credential-create --kind "$1" --scope "$2" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["apiKey"])'
}
# Award periods 0 and 1 (small ids: the fuzzer draws them often; no programme periods are
# seeded then): one ended 10 days ago, inside its complaint window, and one running now.
day() { python3 -c "import datetime, sys; print(datetime.date.today() + datetime.timedelta(days=int(sys.argv[1])))" "$1"; }
"$BIN" admin --database "$DB" period-set --id 0 --start "$(day -60)" --end "$(day -10)" --min-transactions 2 >/dev/null
"$BIN" admin --database "$DB" period-set --id 1 --start "$(day -5)" --end "$(day 25)" --min-transactions 2 >/dev/null
ISSUER_KEY="$(key issuer FUZZBANK)"
ACQUIRER_KEY="$(key acquirer 99999)"
PM_KEY="$(key payment-manager pm)"
OPERATOR_KEY="$(key operator fuzz)"

RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --dev --listen "127.0.0.1:$PORT" --database "$DB" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
  curl -fsS "$BASE/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "FATAL: the server did not start" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$BASE/health" >/dev/null || { tail -50 "$WORK/server.log" >&2; echo "FATAL: no /health" >&2; exit 1; }
# A citizen (adult fiscal code) with the dev mock login.
CITIZEN_TOKEN="$(curl -fsS -X POST "$BASE/bpd/pagopa/api/v1/login?fiscalCode=RSSMRA85T10A562S")"
curl -fsS "$BASE/openapi.json" -o "$WORK/openapi.json"

# Every check, each security scheme filled from the environment of the pass.
# positive_data_acceptance also takes 400 where a rule relates the request to the data or the
# date, which no schema can state: a complaint only in its period's complaint window, the
# statistics range at most 366 days (from <= to), an IBAN only for an enrolled citizen, a
# withdrawal by an issuer only without other channels' active cards.
# The hooks (scripts/schemathesis_hooks.py) generate valid fiscal codes, PANs, IBANs and file
# names for the document's custom formats, and give positive uploads a real SAS.
cat >"$WORK/schemathesis.toml" <<'EOF'
[auth.openapi.bearer]
bearer = "${CB_BEARER}"
[auth.openapi.apiKey]
api_key = "${CB_API_KEY}"

# A body over the API's size limit (16 KiB) is refused with 413 before it is read, valid or
# not: e.g. a 2000-character text of \u-escaped astral characters.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[[operations]]
include-operation-id-regex = "^(io_file_complaint|ops_stats|patch_citizen(_v1|_v2)?|delete_citizen_v[12])$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "429", "5xx"]

# An upload is also refused as a whole (422) when its content cannot be read (e.g. not
# encrypted to the platform key): the content is the file, which no schema describes.
[[operations]]
include-operation-id = "upload"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx"]
EOF

export SCHEMATHESIS_HOOKS="$ROOT/scripts/schemathesis_hooks.py"
# One pass per role: tag → the API key its operations take (io uses the bearer token).
PASSES=(io:- hb:"$ISSUER_KEY" pm:"$PM_KEY" rtd:"$ACQUIRER_KEY" ops:"$OPERATOR_KEY" dev:-)
echo "schemathesis $("$ST" --version | awk '{print $NF}') on $BASE, max examples $MAX_EXAMPLES, seed $SEED"
status=0
for pass in "${PASSES[@]}"; do
  tag="${pass%%:*}"
  api_key="${pass#*:}"
  echo "== pass $tag"
  if ! CB_BEARER="$CITIZEN_TOKEN" CB_API_KEY="$api_key" CB_BASE_URL="$BASE" "$ST" --config-file "$WORK/schemathesis.toml" run \
    "$WORK/openapi.json" --url "$BASE" --include-tag "$tag" \
    --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
    --request-timeout 10 --workers 1 --no-color \
    --generation-database none \
    --report junit --report-dir "$WORK/report-$tag" \
    --suppress-health-check all; then
    status=1
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -50 "$WORK/server.log" >&2; echo "FATAL: the server died" >&2; exit 1; }
done
if grep -q -E 'panicked|internal error' "$WORK/server.log"; then
  grep -E 'panicked|internal error' "$WORK/server.log" | head -20 >&2
  echo "FATAL: the server logged a panic or an internal error" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "FATAL: schemathesis found failures (see above)" >&2
  exit 1
fi
echo "schemathesis: every pass clean"
