#!/usr/bin/env bash
# The quick start: a local demo PostgreSQL with a small fictional `shop` database, and sluice in
# front of it with an embedded SQLite store. Prints the psql command an agent would use, then runs
# sluice in the foreground until Ctrl-C (which also stops the demo database).
#
# Environment (all optional):
#   SLUICE_DEMO_DIR   where the demo lives (default /tmp/sluice-demo; reused if it exists)
#   SLUICE_DEMO_PORT  sluice's PostgreSQL port (default 6432)
#   SLUICE_DEMO_API_PORT  sluice's REST API port (default 6433)
#   DEMO_PG_PORT      the demo PostgreSQL's port (default 55432)
#   SLUICE_BIN        a sluice binary to use instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

demo=${SLUICE_DEMO_DIR:-/tmp/sluice-demo}
port=${SLUICE_DEMO_PORT:-6432}
api_port=${SLUICE_DEMO_API_PORT:-6433}
pg_port=${DEMO_PG_PORT:-55432}

scripts/setup.sh
if [ -z "${SLUICE_BIN:-}" ]; then
  echo "== building sluice (release)" >&2
  cargo build --release --locked -p sluice >&2
  SLUICE_BIN="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
fi

mkdir -p "$demo"
chmod 755 "$demo"
echo "== starting the demo PostgreSQL on 127.0.0.1:$pg_port" >&2
scripts/pg.sh start "$demo/pg" "$pg_port"
# shellcheck disable=SC1091
source "$demo/pg/passwords.env"
trap 'scripts/pg.sh stop "$demo/pg"' EXIT

config="$demo/sluice.toml"
cat > "$config" <<TOML
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
token=$(sluice token create --identity agent --groups agents --description "quick start" 2>/dev/null)
approver=$(sluice token create --identity you --groups approvers --description "quick start approver" 2>/dev/null)

cat <<MSG

sluice is starting on 127.0.0.1:$port in front of the demo database.
An agent connects with its usual client; the user is its identity, the password its token:

  psql "postgresql://agent:$token@127.0.0.1:$port/shop?sslmode=require"

See what masking does to the customers' personal data:

  SELECT name, email, phone, ssn, card_number, notes FROM customers;
  SELECT upper(notes) FROM customers;          -- refused: an expression over a masked column
  $SLUICE_BIN --config $config mask test "card 4111 1111 1111 1111, order ORD-2026-000123"

Try what the policy refuses, however it is written:

  DELETE FROM orders WHERE id = 1;
  WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d;
  UPDATE products SET price_cents = 0;
  $SLUICE_BIN --config $config policy explain --identity agent --connection shop "DROP/**/TABLE orders"

Risky statements wait for a human. In psql:

  UPDATE products SET price_cents = price_cents + 1;    -- held: psql shows the review and waits

and in another terminal, as an approver (the requester can never approve their own):

  export SLUICE_TOKEN=$approver
  $SLUICE_BIN --config $config review list
  $SLUICE_BIN --config $config review approve <ID>       # or: review deny <ID> --reason "…"

Then look at what was recorded:

  $SLUICE_BIN --config $config sessions list
  $SLUICE_BIN --config $config sessions show <ID>

Ctrl-C stops sluice and the demo database.

MSG
sluice serve
