#!/usr/bin/env bash
# sluice's benchmark: direct PostgreSQL, pgbouncer and sluice side by side, interleaved, on loopback.
# See BENCHMARKS.md for the method. `bench/run.sh --quick` runs in seconds and asserts nothing about
# speed (the test suite runs it so the benchmark never rots).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh bench
# `bench/run.sh http ...` runs the HTTP benchmark (bench/http_bench.py) instead, `bench/run.sh
# ssh ...` the SSH one (bench/ssh_bench.py: short commands and a large scp).
script=bench/run.py
case "${1:-}" in
http) shift; script=bench/http_bench.py ;;
ssh) shift; script=bench/ssh_bench.py ;;
esac
quick=0
for arg in "$@"; do [ "$arg" = "--quick" ] && quick=1; done
if [ -z "${SLUICE_BIN:-}" ]; then
  if [ $quick = 1 ]; then
    cargo build --locked -p sluice --bin sluice --example plain_relay --example hyper_relay >&2
    export SLUICE_BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/debug/sluice"
  else
    cargo build --release --locked -p sluice --bin sluice --example plain_relay --example hyper_relay >&2
    export SLUICE_BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/release/sluice"
  fi
fi
exec .venv/bin/python "$script" "$@"
