#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time (issue 9).
#   scripts/fuzz.sh [SECONDS_PER_TARGET=5] [SANITIZER=none] [TARGET...]
# Stable Rust only here: libFuzzer needs -Z flags, so RUSTC_BOOTSTRAP=1. Installs the pinned
# cargo-fuzz from crates.io if it is missing. Exits non-zero on any crash or failed property;
# the crashing input is left in fuzz/artifacts/<target>/. See docs/security.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
SAN="${2:-none}"
shift $(( $# > 2 ? 2 : $# ))
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(acquirer_row file_name fiscal_code iban pan payout_files)
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -s "$SAN"
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "-- fuzz $t for ${SECS}s"
  log="$(mktemp)"
  if ! cargo fuzz run -O -s "$SAN" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "FATAL: fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E "number_of_executed_units" "$log" || true
  rm -f "$log"
done
