"""Just-in-time approval against a real PostgreSQL: statements held until a second process approves
(psql and psycopg's extended protocol), denial, wait timeout, cancel, retry mode bound to identity +
connection + exact statement and used once, self-approval refused, a quorum of two, access grants
that work and then end, webhooks received by a local HTTP server, and reviews that survive a
restart of sluice."""

import asyncio
import json
import urllib.error
import urllib.request
import shutil
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import psycopg
import pytest

from conftest import Sluice, api_request, sluice_binary, wait_for
from pgwire import Raw, fields, message

RULES = """
[connections.apv]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
tls = "disable"

[connections.apv_ro]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
tls = "disable"
policy = "read-only"

[connections.apv2]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
tls = "disable"

[[policy.rules]]
name = "held-deletes"
effect = "review"
connections = ["apv"]
kinds = ["delete"]
objects = ["apv_items"]
reason = "deleting items needs a human"
review = {{ mode = "wait", approvers = ["dba"], timeout = "30s" }}

[[policy.rules]]
name = "reviewed-updates"
effect = "review"
connections = ["apv", "apv2"]
kinds = ["update"]
objects = ["apv_items"]
reason = "changing items needs a human"
review = {{ approvers = ["dba"], valid_for = "10m" }}

[[policy.rules]]
name = "two-eyes-truncate"
effect = "review"
connections = ["apv"]
kinds = ["truncate"]
reason = "truncation needs two approvers"
review = {{ approvers = ["dba"], approvals = 2 }}

[[policy.rules]]
name = "short-wait"
effect = "review"
connections = ["apv"]
kinds = ["insert"]
objects = ["apv_log"]
reason = "log writes are reviewed"
review = {{ mode = "wait", approvers = ["dba"], timeout = "2s" }}

[[policy.rules]]
name = "no-ddl"
effect = "deny"
connections = ["apv"]
kinds = ["create", "drop", "alter"]
reason = "schema changes need an access grant"
hint = "ask for one: sluice access request --connection apv --duration 30m --reason ..."

[[access.policies]]
name = "apv-migration"
description = "schema changes on apv"
connections = ["apv"]
max_duration = "1h"
default = "allow"
review = {{ approvers = ["dba"] }}

[[access.policies]]
name = "apv-ro-write"
description = "writes on the read-only apv_ro"
connections = ["apv_ro"]
max_duration = "1h"
default = "allow"
review = {{ approvers = ["dba"] }}

[approvals]
webhooks = [
  {{ url = "http://127.0.0.1:{hook_port}/generic", format = "json" }},
  {{ url = "http://127.0.0.1:{hook_port}/slack", format = "slack", events = ["requested"] }},
]
"""


class Hooks:
    """A local webhook receiver: every POST body, by path."""

    def __init__(self):
        self.received = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hooks.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, path, predicate, timeout=10):
        return wait_for(lambda: next((b for p, b in self.received if p == path and predicate(b)), None),
                        timeout=timeout, what=f"a webhook on {path}")


@pytest.fixture(scope="module")
def hooks():
    h = Hooks()
    yield h
    h.server.shutdown()


def reset_tables(pg):
    pg.query("DROP TABLE IF EXISTS apv_items, apv_log, apv_scratch, apv_tmp")
    pg.query("CREATE TABLE apv_items (id int PRIMARY KEY, note text)")
    pg.query("INSERT INTO apv_items SELECT g, 'item ' || g FROM generate_series(1, 20) g")
    pg.query("CREATE TABLE apv_log (line text)")
    pg.query("CREATE TABLE apv_scratch (x int)")
    pg.query("INSERT INTO apv_scratch VALUES (1), (2)")
    pg.query("GRANT ALL ON apv_items, apv_log, apv_scratch TO app")
    pg.query("GRANT CREATE ON SCHEMA public TO app")


def start_gateway(pg, hooks, state_from=None):
    gw = Sluice(pg, extra_toml=RULES.format(port=pg.port, hook_port=hooks.port))
    if state_from is not None:
        shutil.rmtree(gw.dir / "state", ignore_errors=True)
        shutil.copytree(state_from, gw.dir / "state")
    return gw.start()


@pytest.fixture(scope="module")
def apv(pg, hooks):
    reset_tables(pg)
    gw = start_gateway(pg, hooks)
    gw.tokens = {
        "agent": gw.token(identity="agent", groups="agents"),
        "agent2": gw.token(identity="agent2", groups="agents"),
        "alice": gw.token(identity="alice", groups="dba"),
        "bob": gw.token(identity="bob", groups="dba,ops"),
        "dev": gw.token(identity="dev", groups="dba,agents"),
    }
    yield gw
    code = gw.stop()
    assert "panicked" not in gw.log(), gw.log()
    assert code == 0, gw.log()[-3000:]
    shutil.rmtree(gw.dir, ignore_errors=True)


def dsn(gw, who="agent", connection="apv"):
    return gw.dsn(gw.tokens[who], connection=connection, user=who, sslmode="disable")


def cli(gw, who, *args, check=True):
    """Runs a review/access command as `who` (SLUICE_TOKEN) against the running gateway's API."""
    env = dict(gw.env, SLUICE_TOKEN=gw.tokens[who], SLUICE_URL=gw.api_url)
    result = subprocess.run([str(sluice_binary()), "--config", str(gw.config), *args],
                            capture_output=True, text=True, env=env, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"sluice {' '.join(args)} as {who} failed: {result.stderr}")
    return result


def api(gw, who, method, path, body=None):
    return api_request(gw.api_url, None if who is None else gw.tokens[who], method, path, body)


def pending_review(gw, requester, text_contains, holding=None):
    """Waits for the pending review of `requester` whose statement contains `text_contains`."""

    def find():
        _, body = api(gw, "alice", "GET", "/api/v1/reviews?status=pending")
        for r in body["reviews"]:
            if r["requester"] == requester and text_contains in r["subject"].get("text", ""):
                if holding is None:
                    return r
                _, full = api(gw, "alice", "GET", f"/api/v1/reviews/{r['id']}")
                if full["holding_sessions"] >= holding:
                    return full
        return None

    return wait_for(find, timeout=15, what=f"a pending review of {text_contains!r}")


def start_psql(gw, *commands, who="agent", connection="apv"):
    args = ["psql", dsn(gw, who, connection), "-X", "-At"]
    for c in commands:
        args += ["-c", c]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def psql(gw, *commands, who="agent", connection="apv"):
    p = start_psql(gw, *commands, who=who, connection=connection)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def test_the_api_wants_a_token(apv):
    status, body = api(apv, None, "GET", "/api/v1/reviews")
    assert status == 401 and "Bearer" in body["error"]
    status, body = api(apv, "alice", "GET", "/api/v1/whoami")
    assert status == 200 and body["identity"] == "alice" and body["groups"] == ["dba"]


def test_psql_waits_until_a_second_process_approves(apv, pg, hooks):
    held = start_psql(apv, "DELETE FROM apv_items WHERE id = 1", "SELECT 'still usable'")
    review = pending_review(apv, "agent", "DELETE FROM apv_items WHERE id = 1", holding=1)
    assert held.poll() is None, "psql must be held, not answered"
    assert pg.query("SELECT count(*) FROM apv_items WHERE id = 1") == [(1,)]
    assert review["rule"] == "held-deletes" and review["mode"] == "wait"
    assert review["subject"]["text"] == "DELETE FROM apv_items WHERE id = 1"
    out = cli(apv, "alice", "review", "approve", str(review["id"]), "--comment", "ok for the test")
    assert f"review #{review['id']}: approved" in out.stdout
    stdout, stderr = held.communicate(timeout=30)
    assert held.returncode == 0, stderr
    assert stdout.splitlines() == ["DELETE 1", "still usable"]
    assert f"review #{review['id']} requested" in stderr, "psql shows the notice naming the review"
    assert "sluice review approve" in stderr
    assert pg.query("SELECT count(*) FROM apv_items WHERE id = 1") == [(0,)]
    shown = cli(apv, "bob", "review", "show", str(review["id"])).stdout
    assert "consumed" in shown and "approved" in shown and "ok for the test" in shown and "ran" in shown
    # The recording shows the statement ran under the review.
    session = apv.session_with(lambda s: any("DELETE FROM apv_items WHERE id = 1" in st["text"]
                                             for st in s["statements"]))
    st = next(s for s in session["statements"] if "DELETE FROM apv_items WHERE id = 1" in s["text"])
    assert st["decision"] == "allow" and f"review #{review['id']}" in st["rule"]
    # The replay tells the story in order: held, approved by alice (with her comment), ran.
    replay = apv.cli("sessions", "replay", session["session"]["id"]).stdout
    requested = replay.index(f"review #{review['id']} requested")
    approved = replay.index(f"review #{review['id']} approved by alice: \"ok for the test\"")
    ran = replay.index("DELETE 1")
    assert requested < approved < ran, replay
    hook = hooks.find("/generic", lambda b: b["event"] == "approved" and b["review"]["id"] == review["id"])
    assert hook["actor"] == "alice"


def test_a_denied_statement_gets_the_reason(apv, pg):
    held = start_psql(apv, "DELETE FROM apv_items WHERE id = 2", "SELECT 'still usable'")
    review = pending_review(apv, "agent", "WHERE id = 2", holding=1)
    denied = cli(apv, "alice", "review", "deny", str(review["id"]), check=False)
    assert denied.returncode != 0, "a denial without a reason is refused"
    cli(apv, "alice", "review", "deny", str(review["id"]), "--reason", "item 2 is still referenced")
    stdout, stderr = held.communicate(timeout=30)
    assert f"review #{review['id']} was denied by alice: item 2 is still referenced" in stderr
    assert stdout.splitlines() == ["still usable"]
    assert pg.query("SELECT count(*) FROM apv_items WHERE id = 2") == [(1,)]


def test_a_wait_times_out_and_the_approval_still_works_for_a_retry(apv, pg):
    statement = "INSERT INTO apv_log VALUES ('timeout test')"
    started = time.monotonic()
    code, out, err = psql(apv, statement, "SELECT 'still usable'")
    assert time.monotonic() - started >= 1.5
    assert "was not decided within 2s" in err, err
    assert "re-run the same statement (spacing, comments and keyword case may differ; values may not)" in err
    assert out.splitlines() == ["still usable"]
    review = pending_review(apv, "agent", statement)
    cli(apv, "alice", "review", "approve", str(review["id"]))
    code, out, err = psql(apv, statement)
    assert code == 0 and "INSERT 0 1" in out, err
    assert pg.query("SELECT count(*) FROM apv_log WHERE line = 'timeout test'") == [(1,)]


def test_a_cancel_withdraws_a_held_statement(apv, pg):
    conn = psycopg.connect(dsn(apv), autocommit=True)
    errors = []

    def run():
        try:
            conn.execute("DELETE FROM apv_items WHERE id = 3")
        except psycopg.Error as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    review = pending_review(apv, "agent", "WHERE id = 3", holding=1)
    conn.cancel()
    t.join(timeout=15)
    assert not t.is_alive()
    assert errors and errors[0].sqlstate == "57014", errors
    assert f"review #{review['id']} stays open" in str(errors[0])
    assert conn.execute("SELECT 'usable'").fetchone() == ("usable",)
    conn.close()
    assert pg.query("SELECT count(*) FROM apv_items WHERE id = 3") == [(1,)]


def test_extended_protocol_is_held_and_released(apv, pg):
    conn = psycopg.connect(dsn(apv), autocommit=True)
    results = []
    t = threading.Thread(target=lambda: results.append(conn.execute("DELETE FROM apv_items WHERE id = 4").rowcount))
    t.start()
    review = pending_review(apv, "agent", "DELETE FROM apv_items WHERE id = 4", holding=1)
    cli(apv, "bob", "review", "approve", str(review["id"]))
    t.join(timeout=15)
    assert results == [1]
    assert conn.execute("SELECT count(*) FROM apv_items WHERE id = 4").fetchone() == (0,)
    conn.close()


def test_retry_mode_is_bound_to_identity_connection_and_statement_and_used_once(apv, pg, hooks):
    statement = "UPDATE apv_items SET note = 'mail dana@example.com' WHERE id = 5"
    code, _, err = psql(apv, statement)
    assert code != 0
    assert 'needs approval under rule "reviewed-updates"' in err
    review = pending_review(apv, "agent", statement)
    assert f"review #{review['id']} requested" in err and "approval #" not in err
    assert f"sluice review approve {review['id']}" in err
    # The same statement again names the same review as still pending; nothing new is asked. So
    # does the same statement written differently (case, spacing, comments, a trailing semicolon).
    _, _, err = psql(apv, statement)
    assert f"review #{review['id']} still pending (requested " in err, err
    respelled = "  " + statement.replace("UPDATE", "update").replace(" SET", "\n  /* note */ SET") + " ;"
    _, _, err = psql(apv, respelled)
    assert f"review #{review['id']} still pending" in err, err
    # Webhooks: the generic document links the review and masks the statement; Slack got a message.
    generic = hooks.find("/generic", lambda b: b["event"] == "requested" and b["review"]["id"] == review["id"])
    assert generic["url"].endswith(f"/api/v1/reviews/{review['id']}")
    assert "dana@example.com" not in json.dumps(generic)
    assert generic["review"]["subject"]["hash"] == review["subject"]["hash"]
    slack = hooks.find("/slack", lambda b: f"Review #{review['id']}" in b["text"])
    assert "blocks" in slack and "dana@example.com" not in json.dumps(slack)
    # Through the API the requester and approvers read the exact text; other callers get it masked.
    assert api(apv, "alice", "GET", f"/api/v1/reviews/{review['id']}")[1]["subject"]["text"] == statement
    assert api(apv, "agent", "GET", f"/api/v1/reviews/{review['id']}")[1]["subject"]["text"] == statement
    seen_by_other = api(apv, "agent2", "GET", f"/api/v1/reviews/{review['id']}")[1]["subject"]["text"]
    assert "dana@example.com" not in seen_by_other and "[redacted:email]" in seen_by_other

    cli(apv, "alice", "review", "approve", str(review["id"]))
    # Bound to the statement's tokens (a literal written otherwise is another statement), the
    # identity and the connection.
    code, _, err = psql(apv, statement.replace("id = 5", "id = 05"))
    assert code != 0 and "pending" in err
    code, _, err = psql(apv, statement, who="agent2")
    assert code != 0 and "pending" in err
    code, _, err = psql(apv, statement, connection="apv2")
    assert code != 0 and "pending" in err
    assert pg.query("SELECT note FROM apv_items WHERE id = 5") == [("item 5",)]
    code, out, err = psql(apv, respelled)
    assert code == 0 and "UPDATE 1" in out, err
    assert pg.query("SELECT note FROM apv_items WHERE id = 5") == [("mail dana@example.com",)]
    # Used once: the next run asks again.
    code, _, err = psql(apv, statement)
    assert code != 0
    again = pending_review(apv, "agent", statement)
    assert again["id"] != review["id"]
    status, body = api(apv, "alice", "GET", f"/api/v1/reviews/{review['id']}")
    assert body["status"] == "consumed"


def test_asyncpg_is_held_and_released_and_its_cached_statement_runs_once(apv, pg):
    """asyncpg prepares (Parse, Describe, Sync) before it binds, and caches the statement."""
    statement = "DELETE FROM apv_items WHERE id = 13 RETURNING id"

    async def run():
        conn = await asyncpg.connect(dsn(apv))
        try:
            first = asyncio.ensure_future(conn.fetch(statement))
            review = await asyncio.get_running_loop().run_in_executor(
                None, lambda: pending_review(apv, "agent", statement, holding=1))
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: cli(apv, "bob", "review", "approve", str(review["id"])))
            rows = await asyncio.wait_for(first, 30)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"review #{review['id']} approved one run"):
                await conn.fetch(statement)
            assert await conn.fetchval("SELECT 'usable'") == "usable"
            return rows
        finally:
            await conn.close()

    assert [r["id"] for r in asyncio.run(run())] == [13]
    assert pg.query("SELECT count(*) FROM apv_items WHERE id = 13") == [(0,)]


def test_a_statement_with_parameters_is_refused_not_reviewed(apv, pg):
    """An approval covers exact text; with $1 the text does not say what would run."""
    with psycopg.connect(dsn(apv), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("UPDATE apv_items SET note = %s WHERE id = %s", ("x", 8))
        assert "$n parameters" in refused.value.diag.message_primary
        assert "values written in the SQL" in refused.value.diag.message_hint
    _, body = api(apv, "alice", "GET", "/api/v1/reviews?status=all")
    assert not any("$1" in r["subject"].get("text", "") for r in body["reviews"])
    assert pg.query("SELECT note FROM apv_items WHERE id = 8") == [("item 8",)]


def test_an_approved_prepared_statement_runs_once(apv, pg):
    statement = "UPDATE apv_items SET note = note || '+' WHERE id = 9"
    with psycopg.connect(dsn(apv), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, prepare=True)
        review = pending_review(apv, "agent", statement)
        cli(apv, "alice", "review", "approve", str(review["id"]))
        assert conn.execute(statement, prepare=True).rowcount == 1
        # psycopg now binds the prepared statement again, without a new Parse: refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as again:
            conn.execute(statement, prepare=True)
        assert f"review #{review['id']} approved one run" in again.value.diag.message_primary
        assert conn.execute("SELECT 'usable'").fetchone() == ("usable",)
    assert pg.query("SELECT note FROM apv_items WHERE id = 9") == [("item 9+",)]


def test_nobody_approves_their_own_request_and_only_approvers_decide(apv):
    statement = "UPDATE apv_items SET note = 'x' WHERE id = 6"
    psql(apv, statement, who="dev")
    review = pending_review(apv, "dev", statement)
    own = cli(apv, "dev", "review", "approve", str(review["id"]), check=False)
    assert own.returncode != 0 and "you requested review" in own.stderr
    outsider = cli(apv, "agent", "review", "approve", str(review["id"]), check=False)
    assert outsider.returncode != 0 and '"dba"' in outsider.stderr
    status, body = api(apv, "agent2", "POST", f"/api/v1/reviews/{review['id']}/approve", {})
    assert status == 403
    assert api(apv, "alice", "GET", f"/api/v1/reviews/{review['id']}")[1]["status"] == "pending"


def test_a_quorum_of_two(apv, pg):
    statement = "TRUNCATE apv_scratch"
    code, _, err = psql(apv, statement)
    review = pending_review(apv, "agent", statement)
    assert "2 approvals needed, 0 so far" in err
    out = cli(apv, "alice", "review", "approve", str(review["id"])).stdout
    assert "1 of 2" in out
    again = cli(apv, "alice", "review", "approve", str(review["id"]), check=False)
    assert again.returncode != 0 and "already approved" in again.stderr
    code, _, err = psql(apv, statement)
    assert code != 0 and "1 so far" in err
    assert pg.query("SELECT count(*) FROM apv_scratch") == [(2,)]
    cli(apv, "bob", "review", "approve", str(review["id"]))
    code, out, err = psql(apv, statement)
    assert code == 0 and "TRUNCATE TABLE" in out, err
    assert pg.query("SELECT count(*) FROM apv_scratch") == [(0,)]


def test_an_access_grant_works_and_then_expires(apv, pg):
    ddl = "CREATE TABLE apv_tmp (x int)"
    code, _, err = psql(apv, ddl)
    assert code != 0 and 'refused by rule "no-ddl"' in err
    out = cli(apv, "agent", "access", "request", "--connection", "apv", "--duration", "4s",
              "--reason", "add a scratch table", "--json").stdout
    request = json.loads(out)
    assert request["status"] == "pending" and request["subject"]["policy"] == "apv-migration"
    too_long = cli(apv, "agent", "access", "request", "--connection", "apv", "--duration", "2h",
                   "--reason", "x", check=False)
    assert too_long.returncode != 0 and "up to 1h" in too_long.stderr
    code, _, err = psql(apv, ddl)
    assert code != 0, "no grant before approval"
    cli(apv, "alice", "review", "approve", str(request["id"]))
    listed = json.loads(cli(apv, "agent", "access", "list", "--json").stdout)
    assert [g["id"] for g in listed["grants"]] == [request["id"]]
    code, out, err = psql(apv, ddl, "DROP TABLE apv_tmp")
    assert code == 0, err
    # Other identities and connections keep the normal policy.
    code, _, err = psql(apv, ddl, who="agent2")
    assert code != 0 and "no-ddl" in err
    time.sleep(4.5)
    code, _, err = psql(apv, ddl)
    assert code != 0 and 'refused by rule "no-ddl"' in err
    assert json.loads(cli(apv, "agent", "access", "list", "--json").stdout)["grants"] == []


def test_an_access_grant_can_be_revoked(apv):
    request = json.loads(cli(apv, "agent", "access", "request", "--connection", "apv", "--duration", "30m",
                             "--reason", "migration", "--json").stdout)
    cli(apv, "bob", "review", "approve", str(request["id"]))
    code, _, err = psql(apv, "CREATE TABLE apv_tmp2 (x int)", "DROP TABLE apv_tmp2")
    assert code == 0, err
    outsider = cli(apv, "agent2", "access", "revoke", str(request["id"]), check=False)
    assert outsider.returncode != 0
    cli(apv, "agent", "access", "revoke", str(request["id"]))
    code, _, err = psql(apv, "CREATE TABLE apv_tmp2 (x int)")
    assert code != 0 and "no-ddl" in err


def test_one_session_follows_a_grant_as_it_starts_and_ends(apv):
    """A session keeps the allows it was given for statements it repeats (the policy is not asked
    again); none of them may outlive the grant it came from, nor hide one that arrives."""
    conn = psycopg.connect(dsn(apv), autocommit=True)
    read, ddl = "SELECT count(*) FROM apv_items", "CREATE TABLE apv_tmp5 (x int)"
    try:
        for _ in range(3):
            conn.execute(read).fetchone()
        with pytest.raises(psycopg.Error, match="no-ddl"):
            conn.execute(ddl)
        request = json.loads(cli(apv, "agent", "access", "request", "--connection", "apv", "--duration", "30m",
                                 "--reason", "one session", "--json").stdout)
        cli(apv, "bob", "review", "approve", str(request["id"]))
        for _ in range(3):
            conn.execute(ddl)
            conn.execute("DROP TABLE apv_tmp5")
            conn.execute(read).fetchone()
        cli(apv, "agent", "access", "revoke", str(request["id"]))
        with pytest.raises(psycopg.Error, match="no-ddl"):
            conn.execute(ddl)
        conn.execute(read).fetchone()
    finally:
        conn.close()


def test_a_held_client_is_told_on_restart_and_its_approval_still_works(pg, hooks):
    reset_tables(pg)
    gw = start_gateway(pg, hooks)
    gw.tokens = {"agent": gw.token(identity="agent", groups="agents"),
                 "alice": gw.token(identity="alice", groups="dba")}
    statement = "DELETE FROM apv_items WHERE id = 7"
    held = start_psql(gw, statement)
    review = pending_review(gw, "agent", statement, holding=1)
    assert gw.stop() == 0
    _, err = held.communicate(timeout=30)
    assert held.returncode != 0
    assert f"held for review #{review['id']}" in err and "stays open" in err, err
    # Same state directory, new process: the review is still there, its approval works for a retry.
    again = start_gateway(pg, hooks, state_from=gw.dir / "state")
    again.tokens = gw.tokens
    try:
        assert api(again, "alice", "GET", f"/api/v1/reviews/{review['id']}")[1]["status"] == "pending"
        cli(again, "alice", "review", "approve", str(review["id"]))
        code, out, err = psql(again, statement)
        assert code == 0 and "DELETE 1" in out, err
        assert pg.query("SELECT count(*) FROM apv_items WHERE id = 7") == [(0,)]
    finally:
        assert again.stop() == 0
        assert "panicked" not in again.log()
        shutil.rmtree(gw.dir, ignore_errors=True)
        shutil.rmtree(again.dir, ignore_errors=True)


def test_another_instance_on_the_same_store_releases_and_grants(apv, pg, hooks):
    """Two sluice processes sharing one state store: an approval through the second releases a
    statement held by the first, and a grant approved there applies here."""
    other = Sluice(pg, extra_toml=RULES.format(port=pg.port, hook_port=hooks.port))
    config = other.config.read_text().replace('state_dir = "state"', f'state_dir = "{apv.dir / "state"}"')
    other.config.write_text(config)
    other.start()
    other.tokens = apv.tokens
    try:
        statement = "DELETE FROM apv_items WHERE id = 10"
        held = start_psql(apv, statement)
        review = pending_review(apv, "agent", statement, holding=1)
        started = time.monotonic()
        status, _ = api(other, "alice", "POST", f"/api/v1/reviews/{review['id']}/approve", {})
        assert status == 200
        stdout, stderr = held.communicate(timeout=30)
        assert held.returncode == 0 and "DELETE 1" in stdout, stderr
        assert time.monotonic() - started < 5, "released by the held session's next look at the store"

        request = json.loads(cli(other, "agent", "access", "request", "--connection", "apv", "--duration", "10m",
                                 "--reason", "cross-instance", "--json").stdout)
        cli(other, "bob", "review", "approve", str(request["id"]))
        wait_for(lambda: psql(apv, "CREATE TABLE apv_tmp3 (x int)", "DROP TABLE apv_tmp3")[0] == 0, timeout=15,
                 interval=0.5, what="the grant to reach the first instance")
        cli(other, "agent", "access", "revoke", str(request["id"]))
        wait_for(lambda: "no-ddl" in psql(apv, "CREATE TABLE apv_tmp3 (x int)", "DROP TABLE apv_tmp3")[2],
                 timeout=15, interval=0.5, what="the revocation to reach the first instance")
    finally:
        assert other.stop() == 0
        assert "panicked" not in other.log()
        shutil.rmtree(other.dir, ignore_errors=True)


def parse(name, sql):
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))


def bind(portal, statement):
    return message(b"B", portal.encode() + b"\0" + statement.encode() + b"\0" + struct.pack("!hhh", 0, 0, 0))


EXECUTE, SYNC = message(b"E", b"\0" + struct.pack("!i", 0)), message(b"S", b"")


def approved(gw, statement):
    """Gets `statement` approved for the agent on apv (retry mode)."""
    code, _, err = psql(gw, statement)
    assert code != 0 and "pending" in err, err
    review = pending_review(gw, "agent", statement)
    cli(gw, "alice", "review", "approve", str(review["id"]))
    return review["id"]


def test_an_approved_statement_cannot_be_run_again_at_the_protocol_level(apv, pg):
    """Raw extended-protocol pipelines a driver would not send: bind the approved statement again
    after it ran, after a Parse the server refuses, from SQL with EXECUTE, or twice in one pipeline."""
    statement = "UPDATE apv_items SET note = note || '!' WHERE id = 11"
    review_id = approved(apv, statement)
    raw = Raw(apv.port, apv.tokens["agent"], connection="apv")
    # It runs once, alone in its pipeline (and commits); everything pipelined behind it tries again.
    raw.send(parse("s1", statement) + bind("", "s1") + EXECUTE + SYNC
             + bind("", "s1") + EXECUTE + SYNC
             + parse("s1", "SELECT 1") + SYNC + bind("", "s1") + EXECUTE + SYNC)
    answers = [raw.until_ready() for _ in range(4)]
    raw.query("EXECUTE s1")
    answers.append(raw.until_ready())
    tags = [[t for t, _ in a] for a in answers]
    assert tags[0] == [b"1", b"2", b"C", b"Z"], tags[0]
    assert f"review #{review_id} approved one run" in fields(answers[1][0][1])["M"], answers[1]
    # A new Parse under the freed name is a new statement, decided on its own.
    assert tags[2] == [b"1", b"Z"] and b"D" in tags[3], answers[2:4]
    assert b"E" in tags[4], "EXECUTE of the approved statement from SQL is refused"
    assert b"3" not in [t for a in tags for t in a], "sluice's own CloseComplete is not passed on"
    assert pg.query("SELECT note FROM apv_items WHERE id = 11") == [("item 11!",)], "ran exactly once"

    # Bound twice in one pipeline: the second Bind is refused, which aborts the pipeline.
    statement = "UPDATE apv_items SET note = note || '?' WHERE id = 12"
    review_id = approved(apv, statement)
    raw.send(parse("s2", statement) + bind("", "s2") + EXECUTE + bind("", "s2") + EXECUTE + SYNC)
    answer = raw.until_ready()
    assert [t for t, _ in answer] == [b"1", b"2", b"C", b"E", b"Z"], answer
    assert f"review #{review_id} approved one run" in fields(answer[3][1])["M"]
    assert pg.query("SELECT note FROM apv_items WHERE id = 12") == [("item 12",)], "rolled back with the pipeline"
    raw.query("SELECT 'still usable'")
    assert any(t == b"D" for t, _ in raw.until_ready())
    raw.close()


def test_a_sql_prepared_statement_bound_through_the_protocol_is_decided_each_time(apv, pg):
    """An approved `PREPARE d AS UPDATE …` ran once; every way to run d again (SQL EXECUTE, a
    protocol Bind of the SQL-prepared name, in a pipeline or alone) is decided as what d runs, so
    each needs an approval of its own."""
    statement = "PREPARE upd AS UPDATE apv_items SET note = note || '#' WHERE id = 16"
    approved(apv, statement)
    raw = Raw(apv.port, apv.tokens["agent"], connection="apv")
    raw.query(statement)
    assert [t for t, _ in raw.until_ready()][-2:] == [b"C", b"Z"]
    for attempt in (bind("", "upd") + EXECUTE + SYNC,
                    bind("p1", "upd") + message(b"E", b"p1\0" + struct.pack("!i", 0)) + SYNC,
                    message(b"Q", b"EXECUTE upd\0")):
        raw.send(attempt)
        answer = raw.until_ready()
        errors = [fields(b) for t, b in answer if t == b"E"]
        assert errors and errors[0]["C"] == "42501", answer
        assert "reviewed-updates" in errors[0]["M"], errors
    assert pg.query("SELECT note FROM apv_items WHERE id = 16") == [("item 16",)], "PREPARE itself ran nothing"

    # A Bind of a name no Parse or PREPARE of this session made is refused with the reason.
    raw.send(bind("", "never_prepared") + EXECUTE + SYNC)
    answer = raw.until_ready()
    error = fields(answer[0][1])
    assert answer[0][0] == b"E" and error["C"] == "26000" and "was not prepared in this session" in error["M"], answer

    # Once DEALLOCATE is confirmed, the name is free for a Parse, bound as that Parse decided.
    raw.query("DEALLOCATE upd")
    raw.until_ready()
    raw.send(parse("upd", "SELECT note FROM apv_items WHERE id = 16") + bind("", "upd") + EXECUTE + SYNC)
    answer = raw.until_ready()
    assert [t for t, _ in answer] == [b"1", b"2", b"D", b"C", b"Z"], answer
    raw.close()


def test_access_requests_have_bounded_fields_and_a_rate_limit(apv):
    """Issue #22, item 9: a 1.5 MB reason, or a flood of requests, cannot bury approvers."""
    huge = "x" * 1_500_000
    request = urllib.request.Request(apv.api_url + "/api/v1/access", method="POST",
                                     data=json.dumps({"connection": "apv", "duration": "10m", "reason": huge}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {apv.tokens['dev']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413  # the body limit, before any parsing
    status, body = api(apv, "dev", "POST", "/api/v1/access",
                       {"connection": "apv", "duration": "10m", "reason": "y" * 2001})
    assert status == 400 and "at most 2000" in body["error"], body
    made = []
    for i in range(10):
        status, body = api(apv, "dev", "POST", "/api/v1/access",
                           {"connection": "apv", "duration": "10m", "reason": f"request {i}"})
        assert status == 200, body
        made.append(body["id"])
    status, body = api(apv, "dev", "POST", "/api/v1/access",
                       {"connection": "apv", "duration": "10m", "reason": "one too many"})
    assert status == 429 and "10 access requests" in body["error"], body
    # Other identities are not held back by it.
    status, body = api(apv, "agent2", "POST", "/api/v1/access",
                       {"connection": "apv", "duration": "10m", "reason": "mine"})
    assert status == 200, body
    made.append(body["id"])
    status, body = api(apv, "alice", "POST", f"/api/v1/reviews/{made[0]}/deny", {"reason": "z" * 2001})
    assert status == 400 and "at most 2000" in body["error"], body
    for review in made:
        status, body = api(apv, "alice", "POST", f"/api/v1/reviews/{review}/deny", {"reason": "cleaning up"})
        assert status == 200, body


def test_a_session_opened_under_a_grant_ends_with_it(apv, pg):
    """Issue #22, item 6: a session opened with write access on a read-only connection has an
    upstream that is not read-only; when the grant ends it must not go on (a SECURITY DEFINER
    function would still write through it)."""
    pg.query("DROP FUNCTION IF EXISTS apv_sneaky_write()")
    pg.query("CREATE FUNCTION apv_sneaky_write() RETURNS int LANGUAGE sql SECURITY DEFINER "
             "AS 'INSERT INTO apv_scratch VALUES (99) RETURNING x'")
    pg.query("GRANT EXECUTE ON FUNCTION apv_sneaky_write() TO app")
    try:
        before = psycopg.connect(dsn(apv, connection="apv_ro"), autocommit=True)
        assert before.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        request = json.loads(cli(apv, "agent", "access", "request", "--connection", "apv_ro", "--duration", "30m",
                                 "--reason", "one write", "--json").stdout)
        cli(apv, "bob", "review", "approve", str(request["id"]))
        granted = psycopg.connect(dsn(apv, connection="apv_ro"), autocommit=True)
        assert granted.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
        assert granted.execute("SELECT apv_sneaky_write()").fetchone() == (99,)
        cli(apv, "agent", "access", "revoke", str(request["id"]))
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ended:
            granted.execute("SELECT apv_sneaky_write()")
        assert "write access this session was opened with has ended" in str(ended.value)
        assert time.monotonic() - started < 5
        granted.close()
        # The session opened read-only goes on, and a new session is read-only again.
        assert before.execute("SELECT count(*) FROM apv_scratch WHERE x = 99").fetchone() == (1,)
        before.close()
        after = psycopg.connect(dsn(apv, connection="apv_ro"), autocommit=True)
        assert after.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        after.close()
        assert pg.query("SELECT count(*) FROM apv_scratch WHERE x = 99") == [(1,)]
    finally:
        pg.query("DELETE FROM apv_scratch WHERE x = 99")
        pg.query("DROP FUNCTION IF EXISTS apv_sneaky_write()")


def test_a_held_statement_never_runs_once_its_token_is_revoked(apv, pg):
    """Issue #22, item 6: revocation ends a session even while its statement waits for a review."""
    apv.tokens["revokee"] = apv.token(identity="revokee", groups="agents")
    token_id = apv.tokens["revokee"].split("_")[1]
    held = start_psql(apv, "DELETE FROM apv_items WHERE id = 17", who="revokee")
    review = pending_review(apv, "revokee", "WHERE id = 17", holding=1)
    apv.cli("token", "revoke", token_id)
    started = time.monotonic()
    _, stderr = held.communicate(timeout=15)
    assert time.monotonic() - started < 5
    assert held.returncode != 0 and "has been revoked or has expired" in stderr, stderr
    # Approving now runs nothing: the session that asked is gone.
    cli(apv, "alice", "review", "approve", str(review["id"]))
    time.sleep(1)
    assert pg.query("SELECT count(*) FROM apv_items WHERE id = 17") == [(1,)]
