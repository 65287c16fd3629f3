#!/usr/bin/env bash
# Proves that scripts/setup.sh installs what sluice needs from nothing, on a clean Debian 12
# (bookworm) root filesystem: a `debootstrap --variant=minbase` root that has none of the packages
# setup.sh installs, entered with unshare + chroot (no containers, no VM). Run as root:
#
#   scripts/fresh-root-check.sh           the three checks below (CI runs this; ~4 minutes on 2
#                                         cores, a minute more the first time on a machine)
#   scripts/fresh-root-check.sh --quickstart
#                                         then the README's first command, scripts/quickstart.sh, in
#                                         the root, as a user runs it (below; ~6 minutes more on 2
#                                         cores, nearly all of it the release build; on demand only)
#   scripts/fresh-root-check.sh --full    then the whole test suite, scripts/test.sh, in the root
#                                         (a cold build of everything: long; on demand only)
#   scripts/fresh-root-check.sh --keep    leave the root on disk afterwards, for inspection
#
# What it proves:
#   1. Without Rust, `setup.sh quickstart` stops with an error that names rustup and sluice's
#      minimum Rust version (Cargo.toml's rust-version), and installs nothing.
#   2. With Rust (the host's toolchain, mounted read-only at /opt/rust), `setup.sh test` installs the
#      Debian packages (libclang-dev, postgresql, pgbouncer, python3-venv, a JDK with pgjdbc, Node.js,
#      ...), node-postgres and a .venv with the
#      end-to-end tests' drivers, although Debian's own python3 refuses `pip install` (PEP 668); run
#      again, it installs nothing.
#   3. `cargo build --locked -p pg_query` then works: bindgen finds libclang, cc compiles
#      libpg_query's C code.
# With --quickstart (and before --full's suite when both are given):
#   4. `scripts/quickstart.sh`, with no SLUICE_BIN, makes its own cold release build of sluice and
#      prints its banner (a limit of 20 minutes). Then, in the same root: the banner's
#      `psql "postgresql://agent:…@127.0.0.1:PORT/shop?sslmode=require"` finds the 5 customers; the
#      banner's `DELETE FROM orders WHERE id = 1;` fails, refused by rule "orders-append-only", and
#      the row is still there; `. /tmp/sluice-demo/env.sh && sluice review list` works from a
#      directory without a sluice.toml; its README.txt holds the banner. Ctrl-C (SIGINT to its
#      process group, as a terminal sends it) stops it with status 0, and neither sluice nor the
#      demo PostgreSQL is left running. The one difference from a user's run: its three ports
#      (defaults 6432, 6433, 55432) are free ones this script picks, since the root shares the
#      host's network. It runs after check 2 installed the packages, so setup.sh installs nothing
#      more here; check 2 proves the installing.
#
# The pristine base root is made once per machine and cached as a tarball outside the repository
# ($SLUICE_FRESH_ROOT_CACHE, default /var/cache/sluice/debian12-minbase.tar.zst; delete it to
# rebuild); every run extracts a fresh copy, so nothing one run installs leaks into the next. Its
# apt sources are the host's own (mirror, bookworm-updates, bookworm-security), so package versions
# match the host's. Every in-root command runs in private mount and PID namespaces: its mounts and
# processes (a PostgreSQL a test started, say) disappear when it ends, whatever happens.
#
# Other settings: SLUICE_FRESH_ROOT_MIRROR (the Debian archive for debootstrap; default: the host's
# apt configuration), SLUICE_FRESH_ROOT_RUST (the Rust toolchain directory to mount; default: the
# host's `rustc --print sysroot`), SLUICE_FRESH_ROOT_WAIT (seconds to wait for other cargo/rustc
# processes before building; default 7200), TMPDIR (where the root and the logs go).
set -euo pipefail

suite=bookworm
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${SLUICE_FRESH_ROOT_CACHE:-/var/cache/sluice/debian12-minbase.tar.zst}
full=0
quickstart=0
keep=0
for arg in "$@"; do
  case "$arg" in
  --full) full=1 ;;
  --quickstart) quickstart=1 ;;
  --keep) keep=1 ;;
  -h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
  *)
    echo "usage: $0 [--quickstart] [--full] [--keep]" >&2
    exit 2
    ;;
  esac
done

started=$SECONDS
say() { echo "fresh-root: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}
# fail CHECK LOG MESSAGE: names the failed check, shows the end of its log, exits 1.
fail() {
  say "FAILED: $1: $3"
  if [ -s "$2" ]; then
    say "last lines of $2:"
    tail -n 40 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

# --- Workspace, and cleanup on every exit ---------------------------------------------------------
work=
root=
logs=
child=
cache_tmp=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # A command still running in the root (we were interrupted): ending it ends its namespaces, and
  # with them every mount and process it made.
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  [ -z "$cache_tmp" ] || rm -f "$cache_tmp"
  if [ -n "$work" ] && [ -d "$work" ]; then
    # Mounts are only ever made inside private mount namespaces, so there should be none here; if
    # one leaked all the same, unmount it, and never delete a tree something is mounted in.
    local m
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
    if awk -v w="$work/" 'index($5, w) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      say "warning: something is still mounted under $work; not deleting it"
    else
      rm -rf --one-file-system "$work/base"
      if [ "$keep" = 1 ] && [ -d "$root" ]; then
        say "kept the root at $root (enter: unshare --mount --fork chroot $root /bin/bash; remove: rm -rf --one-file-system $root)"
      else
        rm -rf --one-file-system "$root"
      fi
    fi
  fi
  [ -n "$logs" ] && say "logs: $logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

step_started=0
step() {
  step_started=$SECONDS
  say "$* ..."
}
step_done() { say "  ok ($((SECONDS - step_started)) s)${1:+: $1}"; }

# --- Host requirements -----------------------------------------------------------------------------
host_tools() {
  [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mounts need it)"
  if ! command -v unshare >/dev/null || ! command -v chroot >/dev/null; then
    die "unshare and chroot are missing (util-linux, coreutils)"
  fi
  unshare --mount --propagation private --pid --fork --kill-child true 2>/dev/null \
    || die "cannot make mount and PID namespaces here (unshare needs CAP_SYS_ADMIN: a privileged container or a VM)"
  local need=()
  command -v debootstrap >/dev/null || need+=(debootstrap)
  case "$cache" in *.zst) command -v zstd >/dev/null || need+=(zstd) ;; esac
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} on the host (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    } || die "could not install ${need[*]}"
  fi
}

# Prints "URI SUITE COMPONENTS..." for every enabled `deb` entry of the host's apt configuration,
# one-line style (sources.list, *.list) and deb822 style (*.sources).
host_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed 's/#.*//' "$f" | awk '$1 == "deb" {
      i = 2
      if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      line = $i " " $(i + 1)
      for (j = i + 2; j <= NF; j++) line = line " " $j
      print line
    }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
    {
      split("", v); key = ""
      for (i = 1; i <= NF; i++) {
        line = $i
        if (line ~ /^#/) continue
        if (line ~ /^[ \t]/) { if (key != "") v[key] = v[key] " " line; continue }
        p = index(line, ":"); if (!p) continue
        key = tolower(substr(line, 1, p - 1)); v[key] = substr(line, p + 1)
      }
      if (tolower(v["enabled"]) ~ /no/) next
      if (v["types"] !~ /(^|[ \t])deb([ \t]|$)/) next
      comps = v["components"]; gsub(/^[ \t]+|[ \t]+$/, "", comps); gsub(/[ \t]+/, " ", comps)
      n = split(v["uris"], u, /[ \t]+/); m = split(v["suites"], s, /[ \t]+/)
      for (a = 1; a <= n; a++) if (u[a] != "") for (b = 1; b <= m; b++) if (s[b] != "") print u[a], s[b], comps
    }' "$f"
  done
}

# source_for KIND: the host's entry ("URI SUITE COMPONENTS...") for bookworm's main archive
# (KIND=main), its updates or its security suite; the same kind of suite of another release when the
# host has no bookworm entry. Prints nothing when the host has none.
source_for() {
  local want other
  case "$1" in
  main) want=$suite other='^[a-z]+$' ;;
  updates) want=$suite-updates other='-updates$' ;;
  security) want=$suite-security other='-security$' ;;
  esac
  host_sources | awk -v w="$want" -v o="$other" '
    $2 == w && !exact { exact = $0 }
    $2 ~ o && !near { near = $0 }
    END { if (exact) print exact; else if (near) print near }'
}

# --- Step 1: the pristine base root ------------------------------------------------------------------
make_base() {
  mkdir -p "$(dirname "$cache")"
  exec 9>"$cache.lock"
  flock 9 # another run making the same cache: wait for it
  if [ -s "$cache" ]; then
    exec 9>&-
    return
  fi
  local mirror=${SLUICE_FRESH_ROOT_MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(source_for main | cut -d' ' -f1)
    [ -n "$mirror" ] || die "no Debian archive in the host's apt sources; set SLUICE_FRESH_ROOT_MIRROR"
  fi
  step "making the pristine base (debootstrap --variant=minbase $suite, from $mirror; cached for later runs)"
  local base=$work/base log=$logs/1-debootstrap.log
  cache_tmp=$cache.tmp.$$
  # In a private mount namespace: the /proc and /sys debootstrap mounts in the target vanish with it.
  timeout 1800 unshare --mount --propagation private --fork --kill-child -- \
    debootstrap --variant=minbase "$suite" "$base" "$mirror" >"$log" 2>&1 </dev/null \
    || fail "base root" "$log" "debootstrap failed"
  rm -rf "$base/var/cache/apt/archives/"*.deb "$base/var/lib/apt/lists/"*_* 2>/dev/null || true
  case "$cache" in
  *.zst) tar -C "$base" --numeric-owner -cf - . | zstd -q -T0 -o "$cache_tmp" ;;
  *) tar -C "$base" --numeric-owner -czf "$cache_tmp" . ;;
  esac
  mv -f "$cache_tmp" "$cache"
  cache_tmp=
  rm -rf --one-file-system "$base"
  exec 9>&-
  step_done "$cache ($(du -h "$cache" | cut -f1))"
}

# A fresh copy of the base, set up the way a machine on this site is: the host's apt sources, name
# servers and site CA certificates.
make_root() {
  step "extracting a fresh root from $cache"
  mkdir -p "$root"
  case "$cache" in
  *.zst) zstd -q -d -c "$cache" | tar -C "$root" --numeric-owner -xpf - ;;
  *) tar -C "$root" --numeric-owner -xpzf "$cache" ;;
  esac

  # The host's apt sources for bookworm, bookworm-updates and bookworm-security.
  local kind entry uri comps
  : >"$root/etc/apt/sources.list"
  rm -f "$root/etc/apt/sources.list.d/"*
  for kind in main updates security; do
    entry=$(source_for "$kind")
    if [ -z "$entry" ]; then
      [ "$kind" = main ] && [ -n "${SLUICE_FRESH_ROOT_MIRROR:-}" ] && entry="$SLUICE_FRESH_ROOT_MIRROR x main"
      [ -n "$entry" ] || { say "  note: the host has no apt source for $kind; the root gets none either"; continue; }
    fi
    uri=$(echo "$entry" | cut -d' ' -f1)
    comps=$(echo "$entry" | cut -d' ' -f3-)
    case "$kind" in
    main) echo "deb $uri $suite ${comps:-main}" ;;
    *) echo "deb $uri $suite-$kind ${comps:-main}" ;;
    esac >>"$root/etc/apt/sources.list"
  done

  rm -f "$root/etc/resolv.conf"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"

  # Site CA certificates: those in the host's trust bundle that no Debian package ships (a TLS
  # inspecting proxy's, say). They go where a site administrator puts them; they take effect only
  # when something installs the ca-certificates package, as on any machine.
  local cas=$root/usr/local/share/ca-certificates n
  mkdir -p "$cas"
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    # Certificates compared by their base64 text; the bundle is read last.
    awk -v bundle=/etc/ssl/certs/ca-certificates.crt -v out="$cas" '
      /-----BEGIN CERTIFICATE-----/ { inside = 1; body = ""; pem = $0 "\n"; next }
      /-----END CERTIFICATE-----/ {
        inside = 0; pem = pem $0 "\n"
        if (FILENAME != bundle) known[body] = 1
        else if (!(body in known)) { known[body] = 1; f = sprintf("%s/site-%d.crt", out, ++n); printf "%s", pem > f; close(f) }
        next
      }
      inside { gsub(/[ \t\r]/, ""); body = body $0; pem = pem $0 "\n" }
    ' /usr/share/ca-certificates/*/*.crt /etc/ssl/certs/ca-certificates.crt
    n=$(find "$cas" -name 'site-*.crt' | wc -l)
    [ "$n" = 0 ] || say "  copied $n site CA certificate(s) to the root's /usr/local/share/ca-certificates"
  fi

  # No init system runs in a chroot: keep package scripts from starting daemons (PostgreSQL,
  # pgbouncer) in the host's network namespace, as every chroot build does.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"

  mkdir -p "$root/opt/rust" "$root/src"
  step_done "$root"
}

# --- Step 2: the repository's files ------------------------------------------------------------------
# The work tree as a commit of everything would have it: the files git tracks, as they are now
# (uncommitted changes included), and new files git does not ignore (so a change that adds a file can
# be checked before `git add`; a fresh clone, as in CI, has none). Never target/ or .venv/.
copy_repo() {
  step "copying the repository's work tree (tracked files, and new files git does not ignore) to /src"
  local untracked
  untracked=$(git -c safe.directory="$repo" -C "$repo" ls-files --others --exclude-standard | grep -cvE '^(target|\.venv)/' || true)
  git -c safe.directory="$repo" -C "$repo" ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    case "$f" in target/* | .venv/*) continue ;; esac
    [ -e "$repo/$f" ] || [ -L "$repo/$f" ] || continue # deleted in the work tree
    printf '%s\0' "$f"
  done | tar -C "$repo" --null --no-recursion -T - -cf - | tar -C "$root/src" -xpf -
  step_done "$(find "$root/src" -type f | wc -l) files, $untracked of them not yet known to git"
}

# --- Running commands in the root --------------------------------------------------------------------
# in_root LOG SECONDS RUST COMMAND: runs the bash COMMAND as root in the root, cwd /src, with a clean
# environment, in private mount and PID namespaces (so every mount and process it makes ends with it);
# RUST=1 mounts the host's toolchain read-only at /opt/rust and puts it first on PATH. Output goes to
# LOG. Returns COMMAND's status (124: timed out).
in_root() {
  local log=$1 secs=$2 rust=$3 cmd=$4
  local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin rust_dir=
  local envs=(HOME=/root LANG=C.UTF-8 USER=root LOGNAME=root SHELL=/bin/bash)
  if [ "$rust" = 1 ]; then
    rust_dir=$toolchain
    envs+=("PATH=/opt/rust/bin:$path" CARGO_HOME=/root/.cargo)
  else
    envs+=("PATH=$path")
  fi
  [ -n "${CI:-}" ] && envs+=(CI="$CI")
  # shellcheck disable=SC2016 # expanded by the inner shell
  local enter='
    set -e
    root=$1 rust_dir=$2
    shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
    if [ -n "$rust_dir" ]; then
      mount --bind "$rust_dir" "$root/opt/rust"
      mount -o remount,bind,ro "$root/opt/rust"
    fi
    exec chroot "$root" /usr/bin/env -i "$@"'
  timeout --kill-after=30 "$secs" \
    unshare --mount --propagation private --pid --fork --kill-child -- \
    /bin/bash -c "$enter" enter "$root" "$rust_dir" "${envs[@]}" /bin/bash -c "cd /src && $cmd" \
    >>"$log" 2>&1 </dev/null &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=
  return "$rc"
}

# The machine has few cores: never start a build while another cargo or rustc runs.
wait_for_builds() {
  local waited=0 max=${SLUICE_FRESH_ROOT_WAIT:-7200}
  busy() {
    local c n
    for c in /proc/[0-9]*/comm; do
      read -r n <"$c" 2>/dev/null || continue
      case "$n" in cargo | rustc) return 0 ;; esac
    done
    return 1
  }
  while busy; do
    [ "$waited" = 0 ] && say "  waiting for the other cargo/rustc processes on this machine to finish"
    [ "$waited" -lt "$max" ] || die "other cargo/rustc processes still running after ${max} s (SLUICE_FRESH_ROOT_WAIT)"
    sleep 20
    waited=$((waited + 20))
  done
  [ "$waited" = 0 ] || say "  waited ${waited} s"
  step_started=$SECONDS # the step's time is its own work
}

# --- Check 1: no Rust ----------------------------------------------------------------------------------
check_no_rust() {
  step "check 1: setup.sh quickstart without Rust must stop and point to rustup"
  local log=$logs/2-check1-no-rust.log need
  need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$repo/Cargo.toml" | head -n 1)
  [ -n "$need" ] || die "no rust-version in Cargo.toml"
  local before after
  before=$(md5sum <"$root/var/lib/dpkg/status")
  # setup.sh's stderr goes to the log, its stdout away; the status is printed last.
  # shellcheck disable=SC2016 # expanded in the root
  in_root "$log" 300 0 '
    if command -v cargo || command -v rustc; then echo "fresh-root: cargo or rustc is in the root"; exit 1; fi
    s=0; scripts/setup.sh quickstart 2>&1 >/dev/null || s=$?
    echo "fresh-root: setup.sh exit status $s"' || fail "check 1 (no Rust)" "$log" "could not run setup.sh in the root (status $?)"
  local status
  status=$(sed -n 's/^fresh-root: setup.sh exit status \([0-9]*\)$/\1/p' "$log")
  [ -n "$status" ] || fail "check 1 (no Rust)" "$log" "setup.sh did not run"
  [ "$status" != 0 ] || fail "check 1 (no Rust)" "$log" "setup.sh quickstart exited 0 without Rust"
  case "$status" in 126 | 127) fail "check 1 (no Rust)" "$log" "setup.sh could not be executed (status $status)" ;; esac
  grep -q rustup "$log" || fail "check 1 (no Rust)" "$log" "setup.sh's error does not mention rustup"
  grep -qF "$need" "$log" || fail "check 1 (no Rust)" "$log" "setup.sh's error does not mention the minimum Rust version, $need"
  after=$(md5sum <"$root/var/lib/dpkg/status")
  [ "$before" = "$after" ] || fail "check 1 (no Rust)" "$log" "setup.sh installed packages although it stopped"
  step_done "exit status $status; names rustup and Rust $need; installed nothing"
}

# --- Check 2: with Rust, setup.sh test installs everything ---------------------------------------------
check_setup_test() {
  step "check 2: setup.sh test with Rust must install everything"
  local log=$logs/3-check2-setup-test.log
  in_root "$log" 2400 1 'rustc --version && cargo --version && scripts/setup.sh test' \
    || fail "check 2 (setup.sh test)" "$log" "setup.sh test failed (status $?)"
  log=$logs/3-check2-assert.log
  # shellcheck disable=SC2016 # expanded in the root
  in_root "$log" 300 1 '
    bad=0
    for p in build-essential ca-certificates libclang-dev postgresql postgresql-client openssl pgbouncer python3 python3-venv \
        libpostgresql-jdbc-java default-jdk-headless nodejs npm; do
      s=$(dpkg-query -W -f="\${Status} \${Version}" "$p" 2>/dev/null || true)
      case "$s" in
      "install ok installed "*) echo "ok: $p ${s##* }" ;;
      *) echo "FAIL: package $p is not installed (${s:-unknown})"; bad=1 ;;
      esac
    done
    if /src/.venv/bin/python -c "import psycopg, asyncpg, pytest; print(\"ok: .venv imports psycopg\", psycopg.__version__, \"asyncpg\", asyncpg.__version__, \"pytest\", pytest.__version__)"; then :
    else echo "FAIL: /src/.venv/bin/python cannot import psycopg, asyncpg, pytest"; bad=1; fi
    em=$(/usr/bin/python3 -c "import sysconfig; print(sysconfig.get_path(\"stdlib\"))")/EXTERNALLY-MANAGED
    if [ -f "$em" ]; then echo "ok: $em exists: Debian python3 refuses pip install (PEP 668), so the venv is needed"
    else echo "FAIL: $em is missing: the PEP 668 part of this check proves nothing"; bad=1; fi
    if /usr/bin/python3 -c "import psycopg" 2>/dev/null; then echo "FAIL: psycopg is importable by the system python3 (installed outside the venv?)"; bad=1
    else echo "ok: the system python3 has no psycopg (nothing installed outside the venv)"; fi
    if javac -version >/dev/null 2>&1 && [ -f /usr/share/java/postgresql.jar ]; then echo "ok: javac and pgjdbc"
    else echo "FAIL: no javac, or no /usr/share/java/postgresql.jar (pgjdbc)"; bad=1; fi
    if (cd /src/tests/drivers/node && node -e "require(\"pg\")"); then echo "ok: node-postgres in tests/drivers/node"
    else echo "FAIL: node cannot load node-postgres in /src/tests/drivers/node"; bad=1; fi
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -n 1)
    if [ -x "$initdb" ]; then echo "ok: $initdb"; else echo "FAIL: no /usr/lib/postgresql/*/bin/initdb"; bad=1; fi
    exit $bad' || fail "check 2 (setup.sh test)" "$log" "what setup.sh test installed is incomplete"
  log=$logs/3-check2-rerun.log
  in_root "$log" 300 1 'scripts/setup.sh test' || fail "check 2 (setup.sh test)" "$log" "a second setup.sh test failed (status $?)"
  ! grep -qE 'installing|creating' "$log" || fail "check 2 (setup.sh test)" "$log" "a second setup.sh test installed something again"
  step_done "$(grep -c '^ok:' "$logs/3-check2-assert.log") assertions; a second run installs nothing"
}

# --- Check 3: the libpg_query build that needs libclang --------------------------------------------------
check_pg_query() {
  step "check 3: cargo build --locked -p pg_query (bindgen needs libclang; a few minutes)"
  wait_for_builds
  local log=$logs/4-check3-pg_query.log
  in_root "$log" 3600 1 'CARGO_TARGET_DIR=/tmp/fresh-root-target cargo build --locked -p pg_query' \
    || fail "check 3 (cargo build -p pg_query)" "$log" "the build failed (status $?)"
  step_done
}

# --- Optional: the README's first command, scripts/quickstart.sh -------------------------------------------
# free_ports N: N distinct TCP ports that no socket on this machine uses (IPv4 or IPv6), below Linux's
# usual ephemeral range (32768 and up), so no outgoing connection takes one meanwhile.
free_ports() {
  local n=$1 picked=" " p hex tries=0 files=()
  for p in /proc/net/tcp /proc/net/tcp6; do
    if [ -r "$p" ]; then files+=("$p"); fi
  done
  while [ "$(echo "$picked" | wc -w)" -lt "$n" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 500 ] || die "found no free TCP ports"
    p=$((20000 + RANDOM % 12000))
    case "$picked" in *" $p "*) continue ;; esac
    hex=$(printf ':%04X' "$p")
    # In use: a socket whose local address (field 2, hex IP:PORT) has this port.
    if [ ${#files[@]} -gt 0 ] && awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' "${files[@]}"; then
      continue
    fi
    picked="$picked$p "
  done
  echo "$picked"
}

# The program run in the root: quickstart.sh in the background, as a user starts it in a terminal; the
# banner awaited; what it says tried; then Ctrl-C. Prints "ok: ..." and "FAIL: ..." lines; exits 1 on
# any FAIL.
# shellcheck disable=SC2016 # expanded in the root
quickstart_program='
set -m # job control: its own process group, and SIGINT not ignored (a plain background job ignores it)
demo=$SLUICE_DEMO_DIR out=/tmp/fresh-root-quickstart.out err=/tmp/fresh-root-psql.err
end="Ctrl-C here stops sluice and the demo database."
bad=0
fail() { echo "FAIL: $*"; bad=1; }
echo "fresh-root: scripts/quickstart.sh: sluice on 127.0.0.1:$SLUICE_DEMO_PORT (API :$SLUICE_DEMO_API_PORT), the demo PostgreSQL on :$DEMO_PG_PORT, in $demo"
scripts/quickstart.sh >"$out" &
qs=$!
waited=0
until grep -qxF "$end" "$out" 2>/dev/null; do
  if ! kill -0 "$qs" 2>/dev/null; then
    s=0
    wait "$qs" || s=$?
    echo "FAIL: scripts/quickstart.sh ended (status $s) without printing its banner; its standard output:"
    cat "$out"
    exit 1
  fi
  if [ "$waited" -ge 1200 ]; then
    echo "FAIL: no banner from scripts/quickstart.sh after $waited s; its standard output:"
    cat "$out"
    exit 1
  fi
  sleep 5
  waited=$((waited + 5))
done
echo "ok: the banner, $waited s after the start (build included):"
sed "s/^/    | /" "$out"
if cmp -s "$out" "$demo/README.txt"; then echo "ok: $demo/README.txt holds the same banner"
else fail "$demo/README.txt is not the banner printed"; fi

shape="postgresql://agent:…@127.0.0.1:$SLUICE_DEMO_PORT/shop?sslmode=require"
dsn=$(sed -n "s/^  psql \"\(.*\)\"\$/\1/p" "$out" | head -n 1)
case "$dsn" in
"postgresql://agent:"?*"@127.0.0.1:$SLUICE_DEMO_PORT/shop?sslmode=require") echo "ok: the banner says: psql \"$shape\"" ;;
*) fail "the banner has no line psql \"$shape\" (found: ${dsn:-none})"; dsn= ;;
esac
if [ -n "$dsn" ]; then
  s=0
  n=$(psql "$dsn" -XAt -c "SELECT count(*) FROM customers" 2>"$err") || s=$?
  if [ "$s" = 0 ] && [ "$n" = 5 ]; then echo "ok: psql as the agent: SELECT count(*) FROM customers is 5"
  else fail "psql as the agent: SELECT count(*) FROM customers printed \"$n\" (status $s; expected 5): $(cat "$err")"; fi
  stmt="DELETE FROM orders WHERE id = 1;"
  if grep -qxF "  $stmt" "$out"; then
    s=0
    psql "$dsn" -XAt -c "$stmt" >"$err" 2>&1 || s=$?
    if [ "$s" != 0 ] && grep -qF "refused by rule \"orders-append-only\"" "$err"; then
      echo "ok: psql as the agent: $stmt fails (status $s): $(grep -m 1 ERROR "$err")"
    else fail "psql as the agent: $stmt: status $s, not a failure naming rule \"orders-append-only\": $(cat "$err")"; fi
    s=0
    n=$(psql "$dsn" -XAt -c "SELECT count(*) FROM orders WHERE id = 1" 2>"$err") || s=$?
    if [ "$s" = 0 ] && [ "$n" = 1 ]; then echo "ok: order 1 is still there"
    else fail "after the refused DELETE, SELECT count(*) FROM orders WHERE id = 1 printed \"$n\" (status $s; expected 1): $(cat "$err")"; fi
  else fail "the banner does not list \"$stmt\" among the refused statements"; fi
fi

if grep -qxF "  . $demo/env.sh" "$out"; then
  elsewhere=$(mktemp -d)
  s=0
  (cd "$elsewhere" && [ ! -e sluice.toml ] && bash -c ". $demo/env.sh && sluice review list") >"$err" 2>&1 || s=$?
  sed "s/^/    | /" "$err"
  if [ "$s" = 0 ]; then echo "ok: . $demo/env.sh && sluice review list, in $elsewhere (no sluice.toml): exit status 0"
  else fail ". $demo/env.sh && sluice review list, in $elsewhere (no sluice.toml): exit status $s"; fi
else fail "the banner does not say \". $demo/env.sh\""; fi

# Ctrl-C: SIGINT to the process group, as a terminal sends it.
kill -INT -- "-$qs"
(sleep 120 && kill -KILL -- "-$qs") 2>/dev/null &
watchdog=$!
disown "$watchdog" # no job notice in the log when it is ended below
s=0
wait "$qs" || s=$?
kill -- "-$watchdog" 2>/dev/null || true
if [ "$s" = 0 ]; then echo "ok: Ctrl-C (SIGINT) stopped scripts/quickstart.sh with exit status 0"
else fail "after Ctrl-C (SIGINT), scripts/quickstart.sh exited with status $s, not 0"; fi
left=$(for c in /proc/[0-9]*/comm; do
  read -r n <"$c" 2>/dev/null || continue
  case "$n" in sluice | postgres) echo "${c#/proc/}" ;; esac
done)
if [ -z "$left" ] && [ ! -e "$demo/pg/data/postmaster.pid" ]; then echo "ok: neither sluice nor the demo PostgreSQL is left running"
else fail "still running after Ctrl-C: $(echo "$left" | tr "\n" " ")$([ ! -e "$demo/pg/data/postmaster.pid" ] || echo "(and $demo/pg/data/postmaster.pid exists)")"; fi
if [ "$bad" != 0 ]; then
  echo "fresh-root: the end of $demo/sluice.log:"
  tail -n 20 "$demo/sluice.log" 2>/dev/null | sed "s/^/    | /"
fi
exit $bad'

run_quickstart() {
  step "quickstart: scripts/quickstart.sh in the root as the README says (its own release build: ~6 minutes), its banner's psql, a refusal, sluice review list, then Ctrl-C"
  wait_for_builds
  local log=$logs/5-quickstart.log ports port api_port pg_port rc=0 why
  ports=$(free_ports 3)
  read -r port api_port pg_port <<<"$ports"
  in_root "$log" 1800 1 "export SLUICE_DEMO_DIR=/tmp/sluice-demo SLUICE_DEMO_PORT=$port SLUICE_DEMO_API_PORT=$api_port DEMO_PG_PORT=$pg_port
$quickstart_program" || rc=$?
  if [ "$rc" != 0 ]; then
    why=$(sed -n 's/^FAIL: //p' "$log" | head -n 1)
    [ "$rc" != 124 ] || why="timed out after 1800 s${why:+; $why}"
    fail "quickstart (scripts/quickstart.sh)" "$log" "${why:-it failed (status $rc)}"
  fi
  if grep -q '^FAIL:' "$log"; then
    fail "quickstart (scripts/quickstart.sh)" "$log" "$(sed -n 's/^FAIL: //p' "$log" | head -n 1)"
  fi
  local built
  built=$(sed -n 's/^ *Finished .* in \(.*\)$/\1/p' "$log" | tail -n 1)
  step_done "$(grep -c '^ok:' "$log") assertions; banner after $(sed -n 's/^ok: the banner, \([0-9]*\) s after.*/\1/p' "$log") s (release build ${built:-?})"
}

# --- Optional: the whole test suite ------------------------------------------------------------------------
run_full() {
  step "full: scripts/test.sh in the root (a cold build of everything, then all tests: long)"
  wait_for_builds
  local log=$logs/6-full-test.log
  in_root "$log" 14400 1 'scripts/test.sh' || fail "full test suite (scripts/test.sh)" "$log" "scripts/test.sh failed (status $?)"
  step_done "$(tail -n 1 "$log")"
}

# --- Main ----------------------------------------------------------------------------------------------
host_tools
toolchain=${SLUICE_FRESH_ROOT_RUST:-}
if [ -z "$toolchain" ]; then
  rustc_bin=$(command -v rustc || echo "$HOME/.cargo/bin/rustc")
  toolchain=$(cd "$repo" && "$rustc_bin" --print sysroot 2>/dev/null) || die "no Rust toolchain on the host (rustc --print sysroot); set SLUICE_FRESH_ROOT_RUST"
fi
toolchain=$(readlink -f "$toolchain")
if [ ! -x "$toolchain/bin/cargo" ] || [ ! -x "$toolchain/bin/rustc" ]; then
  die "$toolchain has no bin/cargo and bin/rustc"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fresh-root.XXXXXX")
root=$work/root
logs=$work/logs
mkdir -p "$logs"
say "work directory $work (logs in $logs); Rust toolchain $toolchain"

make_base
make_root
copy_repo
check_no_rust
check_setup_test
check_pg_query
[ "$quickstart" = 0 ] || run_quickstart
[ "$full" = 0 ] || run_full
say "passed ($((SECONDS - started)) s)"
