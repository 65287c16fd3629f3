#!/usr/bin/env bash
# The quick start: a local demo PostgreSQL with a small fictional `shop` database, and sluice in
# front of it with an embedded SQLite store. Prints what to try (also written to
# $SLUICE_DEMO_DIR/README.txt), then runs until Ctrl-C, which stops sluice and the demo database.
# sluice's log goes to $SLUICE_DEMO_DIR/sluice.log.
#
# Run it again and it reuses the demo database, sluice's state and the two tokens it minted.
#
# Environment (all optional):
#   SLUICE_DEMO_DIR       where the demo lives (default /tmp/sluice-demo; reused if it exists)
#   SLUICE_DEMO_PORT      sluice's PostgreSQL port (default 6432)
#   SLUICE_DEMO_API_PORT  sluice's REST API port (default 6433)
#   DEMO_PG_PORT          the demo PostgreSQL's port (default 55432)
#   SLUICE_BIN            a sluice binary to use instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

demo=${SLUICE_DEMO_DIR:-/tmp/sluice-demo}
port=${SLUICE_DEMO_PORT:-6432}
api_port=${SLUICE_DEMO_API_PORT:-6433}
pg_port=${DEMO_PG_PORT:-55432}

scripts/setup.sh quickstart
if [ -z "${SLUICE_BIN:-}" ]; then
  SLUICE_BIN="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
  if [ -x "$SLUICE_BIN" ]; then
    echo "== building sluice (release)" >&2
  else
    echo "== building sluice (release): the first build takes 5 to 10 minutes on 2 cores" >&2
  fi
  cargo build --release --locked -p sluice >&2
fi

mkdir -p "$demo/bin"
chmod 755 "$demo"
# `sluice` on PATH for the commands below (env.sh puts $demo/bin first).
ln -sf "$SLUICE_BIN" "$demo/bin/sluice"
echo "== starting the demo PostgreSQL on 127.0.0.1:$pg_port" >&2
scripts/pg.sh start "$demo/pg" "$pg_port"
# shellcheck disable=SC1091
source "$demo/pg/passwords.env"
serve_pid=
stop() {
  if [ -n "$serve_pid" ]; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  scripts/pg.sh stop "$demo/pg"
}
trap stop EXIT
# Ctrl-C (or a TERM) ends the wait below; stop() then ends sluice cleanly and the demo database.
trap 'exit 0' INT TERM

config="$demo/sluice.toml"
cat >"$config" <<TOML
# Written by scripts/quickstart.sh. See docs/configuration.md for every key.
[server]
state_dir = "state"

[postgres]
listen = "127.0.0.1:$port"
tls = "allow"

# The REST API: reviews and access grants (docs/approvals.md).
[api]
listen = "127.0.0.1:$api_port"

[connections.shop]
host = "127.0.0.1"
port = $pg_port
database = "shop"
user = "app"
password = "stored"
tls = "prefer"

# SQL policy (docs/policy.md): decided on what PostgreSQL would run, with its own parser.
[[policy.rules]]
name = "orders-append-only"
effect = "deny"
kinds = ["update", "delete", "truncate", "drop"]
objects = ["public.orders"]
reason = "orders are append-only"
hint = "insert a correcting order instead"

[[policy.rules]]
name = "bulk-changes"
effect = "review"
kinds = ["update", "delete"]
when = ["no-where"]
reason = "changing every row of a table needs a human approval"
# Held until a member of "approvers" approves it (or for 5 minutes), then run or refused.
review = { mode = "wait", approvers = ["approvers"], timeout = "5m" }

# Masking (docs/masking.md): every built-in detector runs on every result; card numbers keep their
# last four digits, and the free-text notes column is masked whole.
[masking]
detector_actions = { credit-card = "partial" }

[[masking.columns]]
name = "customer-notes"
columns = ["public.customers.notes"]
TOML

sluice() { "$SLUICE_BIN" --config "$config" "$@"; }
# sluice holds the upstream password, sealed under its master key; agents never see it.
printf '%s\n' "$PG_APP_PASSWORD" | sluice credential set --connection shop 2>/dev/null

# Two tokens, kept in a file only this user reads and reused while they are valid: the agent's, and
# the approver's (dana, of group "approvers"). Each lives 30 days; one that no longer works is
# revoked and replaced.
tokens="$demo/tokens.env"
AGENT_TOKEN= APPROVER_TOKEN=
# shellcheck disable=SC1090
[ -f "$tokens" ] && source "$tokens"
usable() { [ -n "$1" ] && printf '%s\n' "$1" | sluice token verify >/dev/null 2>&1; }
mint() { # identity groups description old-token
  [ -n "$4" ] && sluice token revoke "$4" >/dev/null 2>&1 || true
  sluice token create --identity "$1" --groups "$2" --ttl 30d --description "$3" 2>/dev/null
}
usable "$AGENT_TOKEN" || AGENT_TOKEN=$(mint agent agents "quick start: the agent" "$AGENT_TOKEN")
usable "$APPROVER_TOKEN" || APPROVER_TOKEN=$(mint dana approvers "quick start: approver dana" "$APPROVER_TOKEN")
(umask 077 && printf 'AGENT_TOKEN=%s\nAPPROVER_TOKEN=%s\n' "$AGENT_TOKEN" "$APPROVER_TOKEN" >"$tokens")

# What a second terminal sources to run sluice's CLI as the approver: the CLI finds this running
# sluice by itself (no --config needed while it is the only one).
cat >"$demo/env.sh" <<ENV
# Source this file: . $demo/env.sh
export PATH="$demo/bin:\$PATH"
export SLUICE_TOKEN=$APPROVER_TOKEN
ENV

# A state directory left by an older quick start may be readable by others, which sluice refuses.
chmod 700 "$demo/state" && chmod 600 "$demo/state"/* 2>/dev/null || true
log="$demo/sluice.log"
echo "== starting sluice on 127.0.0.1:$port (log: $log)" >&2
"$SLUICE_BIN" --config "$config" serve >"$demo/serve.out" 2>>"$log" &
serve_pid=$!
for _ in $(seq 1 300); do
  grep -q "api listening on" "$demo/serve.out" 2>/dev/null && break
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "sluice did not start; the end of its log ($log):" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.1
done

cat >"$demo/README.txt" <<MSG

sluice is running on 127.0.0.1:$port in front of the demo database; its log is $log.
(This text is also in $demo/README.txt.)

1. Connect as the agent. Its user is its identity, its password the token sluice minted for it:

  psql "postgresql://agent:$AGENT_TOKEN@127.0.0.1:$port/shop?sslmode=require"

Personal data comes back masked (the card keeps its last four digits, notes are masked whole):

  SELECT name, email, phone, ssn, card_number, notes FROM customers;

Refused, however it is written; each refusal names the rule, what matched and what to do instead:

  SELECT upper(notes) FROM customers;
  DELETE FROM orders WHERE id = 1;
  WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d;
  DROP/**/TABLE orders;

Held for a human: psql shows the review's number and waits (up to 5 minutes) until it is decided:

  UPDATE products SET price_cents = price_cents + 1;

2. In another terminal, as the approver dana (the requester can never approve their own):

  . $demo/env.sh
  sluice review list
  sluice review approve <ID>          # or: sluice review deny <ID> --reason "…"

and look around:

  sluice sessions list
  sluice sessions show <ID>
  sluice policy explain --identity agent --connection shop "DROP/**/TABLE orders"
  sluice mask test "card 4111 1111 1111 1111, order ORD-2026-000123"

Ctrl-C here stops sluice and the demo database.
MSG
cat "$demo/README.txt"
wait "$serve_pid"
