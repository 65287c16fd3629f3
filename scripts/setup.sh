#!/usr/bin/env bash
# Installs what building and testing sluice needs on a fresh Debian machine: PostgreSQL server and
# client tools (pgbench among them), openssl, pgbouncer for the benchmarks, libclang (to build
# libpg_query's bindings), and the Python drivers
# the end-to-end tests use. Skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v psql >/dev/null || missing+=(postgresql-client)
command -v pgbench >/dev/null || missing+=(postgresql-contrib)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v openssl >/dev/null || missing+=(openssl)
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
# libpg_query's Rust bindings are generated with bindgen, which needs libclang and a C compiler.
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 \
  || missing+=(libclang-dev)
command -v cc >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import psycopg, asyncpg, pytest" 2>/dev/null; then
  echo "setup: installing the Python test drivers" >&2
  python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi
