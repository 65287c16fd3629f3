#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh test), builds, checks formatting and
# lints, runs the unit tests, then the end-to-end tests against a real PostgreSQL that the suite
# starts itself on 127.0.0.1.
# Arguments are passed to pytest (e.g. `scripts/test.sh -k masking -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh test
target=${CARGO_TARGET_DIR:-target}
if [ ! -x "$target/debug/sluice" ]; then
  echo "== building sluice and its tests: the first build takes about 5 minutes on 2 cores" >&2
else
  echo "== build" >&2
fi
cargo build --workspace --locked --bins --examples
echo "== format and lints (cargo fmt --check, cargo clippy -D warnings)" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== supply chain (cargo audit against the RustSec advisory snapshot in third_party/)" >&2
scripts/audit.sh
echo "== unit tests" >&2
cargo test --workspace --locked
echo "== end-to-end tests" >&2
exec .venv/bin/python -m pytest tests "$@"
