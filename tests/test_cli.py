"""The `sluice` command as an operator meets it: help for every argument, one-line errors, exit
statuses that say the decision, readable summaries, filters, a closed pipe, finding the running
instance without --config, and reloading the configuration on SIGHUP."""

import json
import os
import re
import signal
import subprocess
import time

import psycopg
import pytest

from conftest import Sluice, api_request, sluice_binary, wait_for

RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def run(*args, env=None, cwd=None, input=None):
    return subprocess.run([str(sluice_binary()), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd, input=input)


def subcommands(path):
    """The subcommands `sluice PATH --help` lists."""
    text = run(*path, "--help").stdout
    if "Commands:" not in text:
        return []
    block = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip() and line.split()[0] != "help"]


def test_every_command_and_argument_has_help_text():
    todo, seen, bare = [[]], 0, []
    while todo:
        path = todo.pop()
        todo.extend(path + [c] for c in subcommands(path))
        lines = run(*path, "-h").stdout.splitlines()
        seen += 1
        for i, line in enumerate(lines):
            entry = line.strip()
            indent = len(line) - len(line.lstrip())
            # An argument's line (descriptions that wrap are indented further).
            if not (2 <= indent <= 6 and entry[:1] in "-<["):
                continue
            # Help on the same line, or (on a narrow terminal) on the next, indented further.
            following = lines[i + 1] if i + 1 < len(lines) else ""
            below = following.strip() and len(following) - len(following.lstrip()) > indent + 2
            if not re.search(r"\S  +\S", entry) and not below:
                bare.append(f"sluice {' '.join(path)}: {entry}")
    assert seen > 20
    assert not bare, "\n".join(bare)


def test_errors_are_one_line_without_a_backtrace_whatever_the_environment(tmp_path):
    env = dict(os.environ, RUST_BACKTRACE="full")
    out = run("--config", str(tmp_path / "missing.toml"), "check", env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("sluice: error: ") and "missing.toml" in lines[0], out.stderr
    assert len(lines) == 1 and "backtrace" not in out.stderr.lower(), out.stderr
    # With no configuration anywhere and nothing running, the error says what to do.
    env = dict(env, XDG_STATE_HOME=str(tmp_path / "xdg"))
    env.pop("SLUICE_CONFIG", None)
    out = run("token", "list", env=env, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == ["sluice: error: no sluice.toml here and no running sluice found",
                                       "sluice: hint: pass --config FILE (or set SLUICE_CONFIG)"], out.stderr


def test_policy_explain_exit_status_says_the_decision(make_gateway):
    gw = make_gateway(extra_toml="""
[[policy.rules]]
name = "no-deletes"
effect = "deny"
kinds = ["delete"]

[[policy.rules]]
name = "truncates-reviewed"
effect = "review"
kinds = ["truncate"]
""")
    explain = ["policy", "explain", "--identity", "agent", "--connection", "shop"]
    for sql, status in [("SELECT 1", 0), ("DELETE FROM orders", 4), ("TRUNCATE orders", 3), ("SELEC 1", 4)]:
        out = gw.cli(*explain, sql, check=False)
        assert out.returncode == status, (sql, out.stdout, out.stderr)
        as_json = gw.cli(*explain, "--json", sql, check=False)
        assert as_json.returncode == status
        assert json.loads(as_json.stdout)["decision"]["effect"] == {0: "allow", 3: "review", 4: "deny"}[status]


def test_check_summarises_the_file_and_speaks_json(gateway):
    out = gateway.cli("check")
    assert "valid" in out.stdout.splitlines()[0]
    for expected in ("listeners", "postgres 127.0.0.1:0", "connections", "shop: app@127.0.0.1:", "policy",
                     "masking", "on: "):
        assert expected in out.stdout, (expected, out.stdout)
    assert "Allow" not in out.stdout and "Prefer" not in out.stdout  # no Debug spellings
    doc = json.loads(gateway.cli("check", "--json").stdout)
    assert doc["valid"] is True
    assert doc["summary"]["connections"]["shop_md5"]["password"] == "env:MD5_PG_PASSWORD"
    assert doc["summary"]["connections"]["shop_verified"]["tls"] == "verify-full"
    findings = json.loads(gateway.cli("policy", "check", "--json").stdout)
    assert findings["valid"] is True and findings["findings"] == []


def test_each_protocols_options_are_checked_by_its_adapter_naming_the_key(tmp_path):
    """A connection's protocol options (host, user, tls, ... for PostgreSQL) are read by the
    adapter for its protocol: a misspelt option, a bad value or an unknown protocol is refused
    when the file is read, naming the connection and the key."""
    def check(connection):
        path = tmp_path / "sluice.toml"
        path.write_text(f"[server]\nstate_dir = \"{tmp_path}/state\"\n[connections.shop]\n{connection}\n")
        return run("--config", str(path), "check")

    good = check('host = "db.internal"\nuser = "app"\npassword = "none"\ntls = "verify-full"')
    assert good.returncode == 0, good.stderr
    assert "shop: app@db.internal:5432/shop (upstream TLS verify-full" in good.stdout, good.stdout
    for options, expected in [
        ('host = "db"\nuser = "app"\nhots = "db2"', "unknown field `hots`"),
        ('host = "db"\nuser = "app"\ntls = "maybe"', "unknown variant `maybe`"),
        ('host = "db"', "missing field `user`"),
        ('host = "db"\nuser = "app"\nsearch_path = []', "search_path: list at least one schema"),
        ('protocol = "gopher"\nhost = "db"\nuser = "app"', 'protocol: "gopher" is not one sluice serves'),
    ]:
        out = check(options)
        assert out.returncode == 1, (options, out.stdout)
        assert "connections.shop" in out.stderr and expected in out.stderr, (options, out.stderr)


def test_sessions_list_filters_follows_and_prints_rfc3339_times(make_gateway):
    gw = make_gateway(extra_toml="""
[[policy.rules]]
name = "no-deletes"
effect = "deny"
kinds = ["delete"]
""")
    alice, bob = gw.token("alice", "agents"), gw.token("bob", "agents")
    with psycopg.connect(gw.dsn(alice, user="alice"), autocommit=True) as conn:
        conn.execute("SELECT 1")
    with psycopg.connect(gw.dsn(bob, user="bob", connection="shop_env"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders")

    def listed(*filters):
        out = gw.cli("sessions", "list", "--json", *filters)
        return [(s["identity"], s["connection"]) for s in json.loads(out.stdout)]

    wait_for(lambda: len(listed()) == 2 and all(s["ended_at"] for s in json.loads(
        gw.cli("sessions", "list", "--json").stdout)), what="both sessions recorded")
    sessions = json.loads(gw.cli("sessions", "list", "--json").stdout)
    assert all(RFC3339_US.match(s["started_at"]) and RFC3339_US.match(s["ended_at"]) for s in sessions), sessions
    assert listed("--identity", "alice") == [("alice", "shop")]
    assert listed("--connection", "shop_env") == [("bob", "shop_env")]
    assert listed("--verdict", "deny") == [("bob", "shop_env")]
    assert sorted(listed("--since", "1h")) == [("alice", "shop"), ("bob", "shop_env")]
    assert listed("--since", "2999-01-01T00:00:00Z") == []
    bad = gw.cli("sessions", "list", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "--since" in bad.stderr
    tokens = json.loads(gw.cli("token", "list", "--json").stdout)
    assert all(RFC3339_US.match(t["created_at"]) for t in tokens)

    # --follow prints each new session as one JSON line.
    follow = subprocess.Popen([str(sluice_binary()), "--config", str(gw.config), "sessions", "list", "--json",
                               "--follow", "--identity", "alice", "--limit", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gw.env)
    try:
        first = json.loads(follow.stdout.readline())
        assert first["identity"] == "alice"
        with psycopg.connect(gw.dsn(alice, user="alice"), autocommit=True) as conn:
            conn.execute("SELECT 2")
        second = json.loads(follow.stdout.readline())
        assert second["identity"] == "alice" and second["id"] != first["id"]
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=10)
    assert follow.returncode == 0, follow.stderr.read()


def test_a_closed_stdout_neither_panics_a_command_nor_stops_the_server(pg, gateway, token):
    for _ in range(3):
        gateway.token("pipe-test", "agents")
    listing = subprocess.run(f"'{sluice_binary()}' --config '{gateway.config}' token list | head -c 10",
                             shell=True, capture_output=True, text=True, env=gateway.env, timeout=30)
    assert "panicked" not in listing.stderr and listing.stderr == "", listing.stderr
    # serve | head -1: the reader goes away after the first line; sluice keeps serving.
    gw = Sluice(pg)
    reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc = subprocess.Popen([str(sluice_binary()), "--config", str(gw.config), "serve"], stdout=reader.stdin,
                            stderr=open(gw.stderr_path, "ab"), env=gw.env)
    reader.stdin.close()
    try:
        line = reader.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        reader.wait(timeout=10)
        time.sleep(0.5)  # the API line is written after the reader left
        assert proc.poll() is None, gw.log()
        agent = gw.token()
        dsn = f"postgresql://agent:{agent}@127.0.0.1:{port}/shop?sslmode=require"
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0 and "panicked" not in gw.log(), gw.log()[-2000:]


def test_token_verify_reads_the_token_from_stdin_and_says_whether_it_works(gateway):
    minted = gateway.token("verify-me", "agents,ops")
    ok = gateway.cli("token", "verify", input=minted + "\n")
    assert re.match(r"token [0-9a-f]{12}: active, identity verify-me \(agents,ops\)", ok.stdout), ok.stdout
    gateway.cli("token", "revoke", minted)
    revoked = gateway.cli("token", "verify", input=minted, check=False)
    assert revoked.returncode == 1 and "revoked" in revoked.stderr, revoked.stderr
    garbage = gateway.cli("token", "verify", input="slu_nope", check=False)
    assert garbage.returncode == 1


def test_the_cli_finds_the_one_running_instance_without_config(pg, make_gateway, tmp_path):
    gw = make_gateway()
    env = dict(gw.env)
    env.pop("SLUICE_CONFIG", None)
    approver = gw.token("dana", "approvers")
    # From a directory without sluice.toml: the running instance's configuration and API are used
    # (its API listens on a port the system chose, which only the instance knows).
    out = run("review", "list", "--json", env=dict(env, SLUICE_TOKEN=approver), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["reviews"] == []
    assert run("token", "list", env=env, cwd=tmp_path).returncode == 0
    # A second instance sharing the same registry makes it ambiguous: the error names both.
    other = Sluice(pg, env={"XDG_STATE_HOME": env["XDG_STATE_HOME"]}).start()
    try:
        out = run("token", "list", env=env, cwd=tmp_path)
        assert out.returncode == 1
        assert "2 sluice instances are running" in out.stderr and str(gw.config) in out.stderr, out.stderr
        assert str(other.config) in out.stderr
    finally:
        assert other.stop() == 0
    # A stopped instance is forgotten.
    assert run("token", "list", env=env, cwd=tmp_path).returncode == 0


# A rule a reload adds in the SIGHUP tests.
NO_PRODUCTS = """
[[policy.rules]]
name = "no-products"
effect = "deny"
objects = ["public.products"]
reason = "reloaded"
"""


def test_sighup_reloads_policy_for_open_sessions_and_refuses_a_bad_file(make_gateway):
    gw = make_gateway()
    agent = gw.token()
    with psycopg.connect(gw.dsn(agent), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] > 0
        original = gw.config.read_text()
        gw.config.write_text(original + NO_PRODUCTS)
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in gw.log(), what="the reload")
        # The open session's next statement (the same text it ran before) is decided anew.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no-products"):
            conn.execute("SELECT count(*) FROM products")
        # A broken file is refused whole: the error is logged, the last good configuration stays.
        gw.config.write_text(original + "\n[[policy.rules]]\nname = 'broken'\neffect = 'sometimes'\n")
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in gw.log(), what="the refused reload")
        assert gw.proc.poll() is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no-products"):
            conn.execute("SELECT count(*) FROM products")
        # Back to the original file: allowed again, in the same session.
        gw.config.write_text(original)
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: gw.log().count("configuration reloaded") == 2, what="the second reload")
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] > 0


def test_sighup_reaches_statements_prepared_before_it(make_gateway):
    """A statement Parsed (named, server-side) before a reload is decided again at its next Bind
    after it: a prepared statement does not keep an allow the policy no longer gives."""
    import asyncio

    import asyncpg

    gw = make_gateway()
    agent = gw.token()
    original = gw.config.read_text()

    async def main():
        conn = await asyncpg.connect(gw.dsn(agent, sslmode="disable"))
        try:
            stmt = await conn.prepare("SELECT count(*) FROM products WHERE id > $1")
            assert await stmt.fetchval(0) > 0
            gw.config.write_text(original + NO_PRODUCTS)
            gw.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in gw.log(), what="the reload")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="no-products"):
                await stmt.fetchval(0)
            gw.config.write_text(original)
            gw.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: gw.log().count("configuration reloaded") == 2, what="the second reload")
            # Allowed again, by the same prepared statement, which the refusal did not destroy.
            assert await stmt.fetchval(0) > 0
        finally:
            await conn.close()

    asyncio.run(main())
    with psycopg.connect(gw.dsn(agent), autocommit=True) as conn:
        for _ in range(3):
            assert conn.execute("SELECT count(*) FROM products", prepare=True).fetchone()[0] > 0


def test_sighup_applies_new_masking_rules_to_new_sessions(make_gateway):
    gw = make_gateway()
    agent = gw.token()
    with psycopg.connect(gw.dsn(agent), autocommit=True) as conn:
        assert conn.execute("SELECT name FROM products ORDER BY id LIMIT 1").fetchone()[0] != "[redacted:names]"
    gw.config.write_text(gw.config.read_text() + """
[[masking.columns]]
name = "names"
columns = ["public.products.name"]
""")
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in gw.log(), what="the reload")
    with psycopg.connect(gw.dsn(agent), autocommit=True) as conn:
        assert conn.execute("SELECT name FROM products ORDER BY id LIMIT 1").fetchone()[0] == "[redacted:names]"


def test_tokens_credentials_and_refused_api_calls_are_in_the_admin_audit_trail(make_gateway, pg):
    gw = make_gateway()
    minted = gw.token(identity="ops-bot", groups="ops")
    token_id = minted.split("_")[1]
    gw.cli("token", "revoke", token_id)
    gw.cli("credential", "set", "--connection", "shop", input=pg.app_password + "\n")
    assert api_request(gw.api_url, minted, "GET", "/api/v1/whoami")[0] == 401
    assert api_request(gw.api_url, "not-a-token", "GET", "/api/v1/reviews")[0] == 401

    def trail():
        events = json.loads(gw.cli("audit", "admin", "--json").stdout)
        return events if sum(e["action"] == "api-authentication-failed" for e in events) == 2 else None

    events = list(reversed(wait_for(trail, what="the refused API calls in the admin trail")))
    # The configuration loaded at start is in the trail too, written by the recorder meanwhile.
    events = [e for e in events if not e["action"].startswith("configuration-")]
    mine = [(e["actor"].split(":")[0], e["action"], e["subject"], e["detail"]) for e in events][-5:]
    assert mine == [
        ("cli", "token-minted", token_id, "for ops-bot (ops)"),
        ("cli", "token-revoked", token_id, None),
        ("cli", "credential-set", "shop", None),
        (f"token {token_id}", "api-authentication-failed", "GET /api/v1/whoami", "revoked_token"),
        ("unknown", "api-authentication-failed", "GET /api/v1/reviews", "malformed"),
    ], events
    assert all(re.match(r"\d{4}-\d\d-\d\dT", e["at"]) for e in events)
    text = gw.cli("audit", "admin").stdout
    assert minted not in text and pg.app_password not in text and "token-revoked" in text
