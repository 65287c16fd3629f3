#!/usr/bin/env bash
# Installs what one of sluice's commands needs on a Debian or Ubuntu machine, and nothing more:
#
#   scripts/setup.sh quickstart   Rust check, a C compiler, CA certificates, libclang (libpg_query's bindings are made
#                                 with bindgen), PostgreSQL server and client, openssl
#   scripts/setup.sh test         the above, pgbouncer (the benchmark's peer), a Python virtual
#                                 environment in .venv with the end-to-end tests' drivers and pytest,
#                                 pgjdbc with a JDK, node-postgres (npm ci in tests/drivers/node), and
#                                 rsyslog with its TLS driver (the audit export's receiver), curl
#                                 (an HTTP test client)
#   scripts/setup.sh bench        the quick start's needs, pgbouncer, and the same .venv (the
#                                 approval measurement drives psycopg)
#
# A Debian package is judged present by asking dpkg for it (never by globbing for files that merely
# look like it); what is missing is installed with apt-get, as root or through sudo. The Rust
# toolchain cannot come from apt (Debian's is older than sluice's minimum): when cargo is missing or
# too old, this says how to get it and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-test}
case "$what" in quickstart | test | bench) ;; *)
  echo "usage: $0 quickstart|test|bench" >&2
  exit 2
  ;;
esac

say() { echo "setup: $*" >&2; }
die() {
  echo "setup: error: $1" >&2
  shift
  for line in "$@"; do echo "setup:   $line" >&2; done
  exit 1
}
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "installing packages needs root: run this as root, or install sudo" "$*"
  fi
}

# --- Rust: cargo present and at least the workspace's rust-version ---------------------------------
need_rust=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
rustup_hint=("install Rust with rustup (https://rustup.rs), then open a new shell or run: . \"\$HOME/.cargo/env\""
  "Debian's own cargo package is older than sluice's minimum, Rust $need_rust")
if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && die "cargo is installed in ~/.cargo/bin but not on PATH" \
    "run: . \"\$HOME/.cargo/env\" (or add ~/.cargo/bin to PATH), then run this again"
  die "cargo and rustc are not installed; sluice needs Rust $need_rust or newer" "${rustup_hint[@]}"
fi
have_rust=$(rustc --version | sed -n 's/^rustc \([0-9][0-9.]*\).*/\1/p')
if [ "$(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -n 1)" != "$need_rust" ]; then
  if command -v rustup >/dev/null; then
    die "rustc $have_rust is older than sluice's minimum, Rust $need_rust" "run: rustup update stable"
  fi
  die "rustc $have_rust is older than sluice's minimum, Rust $need_rust" "${rustup_hint[@]}"
fi

# The test command checks formatting and lints: rustup installs both with the toolchain's
# default profile; a minimal profile lacks them.
if [ "$what" = test ] && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  command -v rustup >/dev/null && die "cargo fmt or cargo clippy is missing" "run: rustup component add rustfmt clippy"
  die "cargo fmt or cargo clippy is missing from this Rust installation" "install Rust with rustup's default profile (https://rustup.rs)"
fi

# --- Debian packages ---------------------------------------------------------------------------------
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

packages=(build-essential ca-certificates libclang-dev postgresql postgresql-client openssl)
case "$what" in
test)
  # pgjdbc and node-postgres join the driver tests; a JDK or Node.js already here (from elsewhere
  # than Debian, say) is used as it is.
  # rsyslog (with its TLS driver) receives the audit log's syslog export in the tests.
  # curl is one of the HTTP tests' clients (with HTTP/2).
  # wrk and nginx run the HTTP benchmark's quick mode.
  # OpenSSH's sshd is the SSH tests' target host, its ssh, scp and sftp the agent's clients, with rsync
  # and git (file transfers through sluice).
  packages+=(pgbouncer python3 python3-venv libpostgresql-jdbc-java rsyslog rsyslog-gnutls curl wrk)
  packages+=(openssh-server openssh-client rsync git)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx)
  command -v javac >/dev/null || packages+=(default-jdk-headless)
  command -v npm >/dev/null || packages+=(nodejs npm)
  ;;
bench)
  packages+=(pgbouncer python3 python3-venv curl wrk openssh-server openssh-client)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx)
  ;;
esac

if command -v dpkg-query >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing packages and no apt-get to install them: ${missing[*]}"
    say "installing ${missing[*]} (apt-get; a minute or two)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  # Not a Debian family system: name what to install instead of guessing a package manager.
  for c in cc initdb psql openssl; do
    command -v "$c" >/dev/null || ls /usr/lib/postgresql/*/bin/"$c" >/dev/null 2>&1 \
      || die "no dpkg here, and '$c' is missing" "install a C compiler, libclang, PostgreSQL (server and client) and openssl with your package manager"
  done
fi

# --- Python test drivers, in a virtual environment of the repository's own ---------------------------
# Debian's python3 refuses `pip install` outside a virtual environment (PEP 668), and a user's own
# Python should not be changed by a test suite either.
if [ "$what" != quickstart ]; then
  venv=.venv
  stamp="$venv/.requirements.sha256"
  want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "creating the test environment in $venv (pytest, psycopg, asyncpg)"
    python3 -m venv "$venv" || die "python3 -m venv failed" "on Debian/Ubuntu: apt-get install python3-venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$want" >"$stamp"
  fi
fi

# --- node-postgres, from the lock file ----------------------------------------------------------------
if [ "$what" = test ]; then
  node_dir=tests/drivers/node
  stamp="$node_dir/node_modules/.lock.sha256"
  want=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing node-postgres for the driver tests (npm ci)"
    npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >/dev/null
    echo "$want" >"$stamp"
  fi
fi
