#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs the unit tests, then the end-to-end
# tests against a real PostgreSQL that the suite starts itself on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== build" >&2
cargo build --workspace --locked --bins --examples
echo "== unit tests" >&2
cargo test --workspace --locked
echo "== end-to-end tests" >&2
python3 -m pytest tests "$@"
