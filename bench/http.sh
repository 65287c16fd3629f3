#!/usr/bin/env bash
# sluice's HTTP benchmark: wrk against an upstream directly, through nginx as a reverse proxy,
# through a byte-copying relay and through sluice, interleaved, on loopback. See BENCHMARKS.md for
# the method. `bench/http.sh --quick` runs in seconds and asserts nothing about speed (the test
# suite runs it so the benchmark never rots).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh bench
quick=0
for arg in "$@"; do [ "$arg" = "--quick" ] && quick=1; done
if [ -z "${SLUICE_BIN:-}" ]; then
  if [ $quick = 1 ]; then
    cargo build --locked -p sluice --bin sluice --example plain_relay >&2
    export SLUICE_BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/debug/sluice"
  else
    cargo build --release --locked -p sluice --bin sluice --example plain_relay >&2
    export SLUICE_BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/release/sluice"
  fi
fi
exec .venv/bin/python bench/http_bench.py "$@"
