"""SQL policy end to end: statements built to slip a write past a read-only grant are refused by
sluice (not by the server) through psql's simple protocol and psycopg's extended protocol, harmless
look-alikes run, and the database is unchanged afterwards."""

import json
import re
import os
import shutil

import psycopg
import pytest

from conftest import Sluice, psql, wait_for

POLICY = """
[connections.ro]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
policy = "read-only"

[connections.guarded]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"

[policy]
default = "allow"

[[policy.rules]]
name = "orders-append-only"
effect = "deny"
connections = ["guarded"]
kinds = ["update", "delete", "truncate", "drop", "alter"]
objects = ["public.orders"]
reason = "orders are append-only"
hint = "insert a correcting order instead"

[[policy.rules]]
name = "bulk-changes"
effect = "review"
connections = ["guarded"]
kinds = ["update", "delete"]
when = ["no-where"]
reason = "changes to every row of a table need a second pair of eyes"
"""

# Each must be refused by sluice on the read-only connection: (SQL, SQLSTATE).
REFUSED = [
    ("DELETE FROM orders", "42501"),
    ("DROP/**/TABLE orders", "42501"),
    ("WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d", "42501"),
    ("SELECT 1; COMMIT; DELETE FROM orders", "42501"),
    ("SELECT 1 /* harmless */; DROP TABLE orders -- trailing", "42501"),
    ("EXPLAIN ANALYZE DELETE FROM orders", "42501"),
    # A plain EXPLAIN only plans, but its plan would read as "this would work": refused as the
    # statement itself would be.
    ("EXPLAIN DELETE FROM orders", "42501"),
    ("EXPLAIN (COSTS false) WITH d AS (DELETE FROM orders RETURNING *) SELECT 1", "42501"),
    ("EXPLAIN (ANALYZE true, COSTS false) UPDATE orders SET quantity = 0", "42501"),
    ("PREPARE sneaky AS DELETE FROM orders", "42501"),
    ("EXECUTE never_prepared", "42501"),
    ("DO $$BEGIN DELETE FROM orders; END$$", "42501"),
    ("DO $$BEGIN EXECUTE 'DELETE FROM orders'; END$$", "42501"),
    ("DO $x$BEGIN EXECUTE format('DROP TABLE %I', 'orders'); END$x$", "42501"),
    ("DO LANGUAGE plpgsql $$DECLARE q text := 'DELETE FROM orders'; BEGIN EXECUTE q; END$$", "42501"),
    ("CREATE FUNCTION wipe() RETURNS void AS $$BEGIN DELETE FROM orders; END$$ LANGUAGE plpgsql", "42501"),
    ("SELECT * INTO stolen FROM customers", "42501"),
    ("SELECT * FROM orders FOR UPDATE", "42501"),
    ("COPY orders TO PROGRAM 'touch /tmp/sluice-pwned'", "42501"),
    ("COPY orders FROM '/etc/hostname'", "42501"),
    ("SET ROLE postgres", "42501"),
    ("SET SESSION AUTHORIZATION postgres", "42501"),
    ("SET standard_conforming_strings = off", "42501"),
    ("SELECT set_config('standard_conforming_strings', 'off', false)", "42501"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'canary'", "42501"),
    ("SELECT pg_read_file('/etc/hostname')", "42501"),
    ("SELECT lo_import('/etc/hostname')", "42501"),
    ("SELECT nextval('orders_id_seq')", "42501"),
    ("SELECT pg_advisory_lock(42)", "42501"),
    ('DELETE FROM U&"\\006Frders"', "42501"),
    ("UPDATE orders SET status = $q$x$q$ WHERE id = 1", "42501"),
    ("INSERT INTO orders (customer_id, product_id, quantity) VALUES (1, 1, 1)", "42501"),
    ("INSERT INTO orders SELECT * FROM orders ON CONFLICT DO NOTHING", "42501"),
    ("TRUNCATE orders", "42501"),
    ("ALTER TABLE orders ADD COLUMN hacked int", "42501"),
    ("CREATE TABLE evil (x int)", "42501"),
    ("GRANT ALL ON orders TO PUBLIC", "42501"),
    ("BEGIN READ WRITE", "42501"),
    ("SET default_transaction_read_only = off", "42501"),
    ("SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, true, '')", "42501"),
    ("VACUUM orders", "42501"),
    ("LOCK TABLE orders", "42501"),
    ("CALL some_procedure()", "42501"),
    ("MERGE INTO orders o USING products p ON o.product_id = p.id WHEN MATCHED THEN DELETE", "42501"),
    ("WITH RECURSIVE r AS (SELECT 1), d AS (UPDATE orders SET quantity = 1 RETURNING 1) SELECT * FROM r", "42501"),
    ("CREATE RULE r AS ON INSERT TO products DO INSTEAD DELETE FROM orders", "42501"),
    ("NOTIFY some_channel, 'payload'", "42501"),
    ("DISCARD ALL; DELETE FROM orders", "42501"),
    ("SELECT (SELECT count(*) FROM (WITH w AS (DELETE FROM orders RETURNING 1) SELECT * FROM w) s)", "42501"),
    ("SELEC * FROM orders", "42601"),
    ("SELECT 'unterminated FROM orders", "42601"),
]

# Each must run on the read-only connection: (SQL, expected first value or None, simple-only).
ALLOWED = [
    ("SELECT 'DROP TABLE orders; DELETE FROM customers'", "DROP TABLE orders; DELETE FROM customers", False),
    ("SELECT 1 /* DELETE FROM orders */", "1", False),
    ("SELECT 1 /* nested /* DROP TABLE orders */ still a comment */", "1", False),
    ("SELECT $$DELETE FROM orders$$", "DELETE FROM orders", False),
    ("SELECT $tag$ ; DROP TABLE orders; $tag$", " ; DROP TABLE orders; ", False),
    ("SELECT count(*) >= 0 FROM orders WHERE status = 'delete'", "t", False),
    ("-- DROP TABLE orders\nSELECT 2", "2", False),
    ("SELECT E'\\'; DROP TABLE orders; --'", "'; DROP TABLE orders; --", False),
    ("SELECT 'it''s; DROP TABLE orders'", "it's; DROP TABLE orders", False),
    ("SELECT U&'\\0044ROP TABLE orders'", "DROP TABLE orders", False),
    ("WITH d AS (SELECT * FROM orders) SELECT count(*) > 0 FROM d", "t", False),
    ("SELECT 1 AS drop_table, 2 AS \"delete\"", "1", False),
    ("SELECT 'x' AS \"DROP TABLE orders\"", "x", False),
    ("SHOW standard_conforming_strings", "on", False),
    ("SHOW default_transaction_read_only", "on", False),
    ("BEGIN; SELECT 1; COMMIT", None, True),
    ("BEGIN READ ONLY; SELECT 1; COMMIT", None, True),
    ("SELECT current_user = 'app'", "t", False),
    ("TABLE products LIMIT 1", "1", False),
    ("VALUES (1, 'DELETE')", "1", False),
    ("SELECT id FROM (SELECT * FROM (SELECT id FROM orders ORDER BY id) a) b LIMIT 1", "1", False),
    ("SELECT count(*) > 0 FROM orders o JOIN customers c ON c.id = o.customer_id", "t", False),
    ("SET statement_timeout = 5000", None, False),
    ("EXPLAIN SELECT * FROM orders", None, False),
    ("SELECT lower('DROP TABLE') || '; DELETE'", "drop table; DELETE", False),
    ("LISTEN some_channel", None, False),
]


def database_state(pg):
    """Everything a refused statement could have changed, as one comparable value."""
    return pg.query("""
        SELECT (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM customers t),
               (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t),
               (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM products t),
               (SELECT string_agg(relname || ':' || relnatts, ',' ORDER BY relname) FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'public'),
               (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc p
                  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'public'),
               (SELECT count(*) FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                  WHERE c.relname IN ('products', 'orders')),
               (SELECT count(*) FROM pg_largeobject_metadata),
               (SELECT last_value FROM orders_id_seq)
    """)


@pytest.fixture(scope="module")
def policy_gw(pg):
    gw = Sluice(pg, extra_toml=POLICY.format(port=pg.port)).start()
    gw.agent_token = gw.token(identity="agent", groups="agents")
    # A backend the refused pg_terminate_backend must leave alone.
    canary = psycopg.connect(pg.dsn(), application_name="canary", autocommit=True)
    before = database_state(pg)
    yield gw
    assert database_state(pg) == before, "a refused statement changed the database"
    assert canary.execute("SELECT 'alive'").fetchone() == ("alive",)
    canary.close()
    assert not os.path.exists("/tmp/sluice-pwned")
    code = gw.stop()
    assert "panicked" not in gw.log(), gw.log()
    assert code == 0, gw.log()[-3000:]
    shutil.rmtree(gw.dir, ignore_errors=True)


def agent_psql(gw, sql, connection="ro"):
    """`sql` run by the policy gateway's agent, with errors in full (VERBOSITY verbose)."""
    return psql(gw.dsn(gw.agent_token, connection=connection), "-At", "-v", "VERBOSITY=verbose", sql=sql)


@pytest.mark.parametrize("sql,code", REFUSED, ids=[s for s, _ in REFUSED])
def test_refused_over_simple_protocol(policy_gw, sql, code):
    result = agent_psql(policy_gw, sql)
    assert result.returncode != 0, result.stdout
    # A syntax error is the server's own, word for word; every other refusal names its rule.
    expected = f"ERROR:  {code}: " if code == "42601" else f"ERROR:  {code}: sluice: refused by rule"
    assert expected in result.stderr and (code != "42601" or "sluice" not in result.stderr), result.stderr
    # Nothing of the message ran: no result of an earlier statement of it was printed either.
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize("sql,code", REFUSED, ids=[s for s, _ in REFUSED])
def test_refused_over_extended_protocol(policy_gw, sql, code):
    with psycopg.connect(policy_gw.dsn(policy_gw.agent_token, connection="ro"), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(sql, prepare=True)
        assert refused.value.sqlstate == code
        assert str(refused.value).startswith("sluice: refused by rule") != (code == "42601"), str(refused.value)
        # The session stays usable.
        assert conn.execute("SELECT 41 + 1", prepare=True).fetchone() == (42,)


@pytest.mark.parametrize("sql,first,simple_only", ALLOWED, ids=[s for s, _, _ in ALLOWED])
def test_look_alikes_run_over_simple_protocol(policy_gw, sql, first, simple_only):
    result = agent_psql(policy_gw, sql)
    assert result.returncode == 0, result.stderr
    if first is not None:
        assert result.stdout.splitlines()[0].split("|")[0] == first, result.stdout


@pytest.mark.parametrize("sql,first,simple_only", [a for a in ALLOWED if not a[2]], ids=[s for s, _, o in ALLOWED if not o])
def test_look_alikes_run_over_extended_protocol(policy_gw, sql, first, simple_only):
    with psycopg.connect(policy_gw.dsn(policy_gw.agent_token, connection="ro"), autocommit=True) as conn:
        cur = conn.execute(sql, prepare=True)
        if first is not None:
            value = cur.fetchone()[0]
            shown = {True: "t", False: "f"}.get(value, value) if isinstance(value, bool) else str(value)
            assert shown == first


def test_refusal_names_rule_match_and_next_step(policy_gw):
    with psycopg.connect(policy_gw.dsn(policy_gw.agent_token, connection="guarded"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("WITH d AS (DELETE FROM public.orders WHERE id = 1 RETURNING *) SELECT * FROM d")
        diag = refused.value.diag
        assert diag.message_primary == 'sluice: refused by rule "orders-append-only": orders are append-only'
        assert diag.message_detail == "DELETE on public.orders inside a WITH clause"
        assert diag.message_hint == "insert a correcting order instead"
        # A statement the rule does not cover still runs on the same session.
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (50,)


def test_review_decision_is_refused_with_the_review_to_approve(policy_gw):
    """A review rule without settings: retry mode, approved by the group "approvers" (approvals
    themselves are tested in test_approvals.py)."""
    with psycopg.connect(policy_gw.dsn(policy_gw.agent_token, connection="guarded"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as held:
            conn.execute("UPDATE products SET price_cents = price_cents")
        assert 'needs approval under rule "bulk-changes"' in held.value.diag.message_primary
        assert re.search(r"review #\d+ requested \(pending approval\)$", held.value.diag.message_primary)
        assert held.value.diag.message_detail == "UPDATE on products without a WHERE clause"
        assert 'ask a member of group "approvers"' in held.value.diag.message_hint
        assert "re-run the same statement (spacing, comments and keyword case may differ; values may not)" in held.value.diag.message_hint


def test_refusal_inside_a_transaction_aborts_it_like_an_error(policy_gw):
    with psycopg.connect(policy_gw.dsn(policy_gw.agent_token, connection="guarded")) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders WHERE id = 1")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sql_prepare_and_execute_are_decided_on_what_runs(policy_gw):
    dsn = policy_gw.dsn(policy_gw.agent_token, connection="guarded", application_name="sql-prepare")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("PREPARE cheap(int) AS SELECT name FROM products WHERE id = $1")
        assert conn.execute("EXECUTE cheap(7)").fetchone() == ("Product 7",)
        # An UPDATE of orders cannot be prepared, so it cannot be executed by name either.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("PREPARE fix AS UPDATE orders SET quantity = 1 WHERE id = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as unknown:
            conn.execute("EXECUTE fix")
        assert "did not see prepared" in unknown.value.diag.message_detail
        conn.execute("DEALLOCATE cheap")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("EXECUTE cheap(7)")
    details = policy_gw.session_with(lambda d: d["session"]["application_name"] == "sql-prepare")
    by_text = {s["text"]: s for s in details["statements"]}
    assert by_text["EXECUTE cheap(7)"]["decision"] in ("allow", "deny")
    refused = by_text["PREPARE fix AS UPDATE orders SET quantity = 1 WHERE id = 1"]
    assert (refused["decision"], refused["rule"], refused["error_code"]) == ("deny", "orders-append-only", "42501")
    allowed = by_text["PREPARE cheap(int) AS SELECT name FROM products WHERE id = $1"]
    assert (allowed["decision"], allowed["rule"]) == ("allow", "default")


def test_extended_protocol_refusal_at_parse_leaves_no_statement_to_bind(policy_gw):
    with psycopg.connect(policy_gw.dsn(policy_gw.agent_token, connection="guarded"), autocommit=True) as conn:
        cur = conn.cursor()
        for _ in range(6):  # psycopg prepares a statement server-side after a few executions
            cur.execute("SELECT price_cents FROM products WHERE id = %s", [3])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("DELETE FROM orders WHERE id = %s", [1], prepare=True)
        # Binding it again goes nowhere: the statement was never prepared upstream.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("DELETE FROM orders WHERE id = %s", [1], prepare=True)
        cur.execute("SELECT price_cents FROM products WHERE id = %s", [3])
        assert cur.fetchone()[0] > 0


def test_asyncpg_prepare_of_a_refused_statement_fails(policy_gw):
    import asyncio
    import asyncpg

    async def main():
        conn = await asyncpg.connect(policy_gw.dsn(policy_gw.agent_token, connection="ro"))
        try:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.prepare("UPDATE orders SET quantity = $1 WHERE id = $2")
            stmt = await conn.prepare("SELECT quantity FROM orders WHERE id = $1")
            assert (await stmt.fetchval(5)) >= 1
        finally:
            await conn.close()

    asyncio.run(main())


def test_read_only_session_is_read_only_upstream_too(policy_gw):
    assert agent_psql(policy_gw, "SHOW default_transaction_read_only").stdout.strip() == "on"
    assert agent_psql(policy_gw, "SHOW default_transaction_read_only", connection="guarded").stdout.strip() == "off"
    # The pinned lexing setting and search_path reach the upstream session.
    assert agent_psql(policy_gw, "SHOW standard_conforming_strings", connection="guarded").stdout.strip() == "on"
    assert agent_psql(policy_gw, "SHOW search_path", connection="guarded").stdout.strip() == '"$user", public'


def test_search_path_startup_parameter_is_refused(policy_gw):
    import asyncio
    import asyncpg

    async def main():
        dsn = policy_gw.dsn(policy_gw.agent_token, connection="guarded")
        with pytest.raises(asyncpg.exceptions.FeatureNotSupportedError, match="search_path"):
            await asyncpg.connect(dsn, server_settings={"search_path": "evil, public"})

    asyncio.run(main())


def test_policy_explain_needs_no_server(policy_gw):
    explained = policy_gw.cli(
        "policy", "explain", "--identity", "agent", "--connection", "ro", "--json",
        "SELECT 1; EXPLAIN ANALYZE DELETE FROM orders", check=False,
    )
    assert explained.returncode == 4  # the exit status says deny
    out = json.loads(explained.stdout)
    assert out["decision"]["effect"] == "deny"
    assert out["decision"]["rule"] == "connection ro: read-only"
    assert out["decision"]["detail"] == "DELETE on orders without a WHERE clause inside EXPLAIN ANALYZE"
    assert out["read_only_session"] is True
    kinds = [op["operation"]["kind"] for op in out["operations"]]
    assert kinds == ["read", "delete"]
    text = policy_gw.cli("policy", "explain", "--identity", "agent", "--connection", "guarded", "SELECT 1").stdout
    assert 'decision: allow (rule "default")' in text


def test_policy_check_reports_shadowed_rules(pg, tmp_path):
    gw = Sluice(pg, extra_toml=POLICY.format(port=pg.port) + """
[[policy.rules]]
name = "let-agents-delete-orders"
effect = "allow"
connections = ["guarded"]
kinds = ["delete"]
objects = ["public.orders"]
""")
    try:
        result = gw.cli("policy", "check", check=False)
        assert result.returncode == 1
        assert '"let-agents-delete-orders" is unreachable: rule "orders-append-only"' in result.stdout
        assert gw.cli("check").returncode == 0
    finally:
        shutil.rmtree(gw.dir, ignore_errors=True)


def test_a_policy_error_stops_the_gateway_from_starting(pg):
    # The test harness stores a credential first, which loads (and so validates) the config.
    with pytest.raises(AssertionError) as failed:
        Sluice(pg, extra_toml="""
[[policy.rules]]
name = "vague"
connections = ["shop"]
""")
    assert 'policy rule "vague": give an effect' in str(failed.value)


def test_refusals_are_recorded_with_their_rule(policy_gw):
    result = agent_psql(policy_gw, "DROP TABLE orders", connection="ro")
    assert result.returncode != 0

    def recorded():
        for s in policy_gw.sessions():
            if s["ended_at"] is None or s["connection"] != "ro":
                continue
            for st in policy_gw.session(s["id"])["statements"]:
                if st["text"] == "DROP TABLE orders":
                    return st
        return None

    st = wait_for(recorded, what="the refused DROP in the recording")
    assert (st["decision"], st["rule"], st["error_code"]) == ("deny", "connection ro: read-only", "42501")


@pytest.mark.parametrize("sql", [
    "MERGE INTO orders o USING (SELECT 8 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE",
    "MERGE INTO orders o USING (SELECT 8 AS id) s ON o.id = s.id WHEN MATCHED AND o.quantity > 0 "
    "THEN UPDATE SET quantity = 0 WHEN NOT MATCHED THEN DO NOTHING",
    "merge into public.orders using orders s on orders.id = s.id when matched then delete",
])
def test_merge_is_judged_as_the_operations_it_performs(policy_gw, pg, sql):
    """A rule on delete/update (orders-append-only) covers MERGE's WHEN … THEN DELETE/UPDATE."""
    before = pg.query("SELECT count(*), sum(quantity) FROM orders")
    result = agent_psql(policy_gw, sql, connection="guarded")
    assert result.returncode != 0, result.stdout
    assert 'refused by rule "orders-append-only"' in result.stderr, result.stderr
    assert "as an action of MERGE" in result.stderr, result.stderr
    assert pg.query("SELECT count(*), sum(quantity) FROM orders") == before


def test_read_write_and_utf8_are_not_pinned_where_nothing_depends_on_them(policy_gw):
    """Issue #23, item 7: a caller who is not read-only may say READ WRITE; setting client_encoding
    to the UTF8 sluice pins anyway is a no-op, not a refusal."""
    for sql in ("BEGIN; SET TRANSACTION READ WRITE; SELECT 1; COMMIT",
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
                "BEGIN READ WRITE; COMMIT",
                "SET default_transaction_read_only = off",
                "SET client_encoding TO UTF8", "SET NAMES 'utf8'", "SET client_encoding = 'unicode'"):
        result = agent_psql(policy_gw, sql, connection="guarded")
        assert result.returncode == 0, (sql, result.stderr)
    assert agent_psql(policy_gw, "SET client_encoding TO UTF8").returncode == 0, "a no-op on read-only too"
    for sql in ("SET client_encoding TO LATIN1", "BEGIN READ WRITE", "SET default_transaction_read_only = off"):
        result = agent_psql(policy_gw, sql)
        assert result.returncode != 0 and "protected-setting" in result.stderr, (sql, result.stderr)


def test_the_search_path_is_the_sessions_unless_a_rule_names_objects_by_schema(policy_gw):
    """Issue #23, cause 3: on "ro" no rule names a schema, so the session sets its search_path;
    on "guarded" orders-append-only names public.orders, which an unqualified `orders` reaches
    only through the connection's search_path: kept, and the refusal names the rule."""
    out = agent_psql(policy_gw, "SET search_path = pg_catalog, public")
    assert out.returncode == 0, out.stderr
    out = agent_psql(policy_gw, "SET search_path = pg_catalog, public", connection="guarded")
    assert out.returncode != 0
    assert 'rule "orders-append-only" names objects by schema' in out.stderr, out.stderr


def test_returning_to_the_connections_own_user_is_not_refused(policy_gw):
    """Issue #23, cause 2: RESET ROLE and friends go back to where the session started; only
    assuming another role stays protected."""
    for sql in ("RESET ROLE", "SET ROLE NONE", "SET LOCAL ROLE NONE", "SET SESSION AUTHORIZATION DEFAULT",
                "RESET SESSION AUTHORIZATION"):
        result = agent_psql(policy_gw, sql)
        assert result.returncode == 0, (sql, result.stderr)
    assert agent_psql(policy_gw, "SELECT current_user").stdout.strip() == "app"
    # Assuming a role is kind assume-role, which a read-only preset refuses, saying what to do.
    result = agent_psql(policy_gw, "SET ROLE app")
    assert result.returncode != 0 and "read-only" in result.stderr, result.stderr
    assert "switch to role app" in result.stderr and "leave the role as it is" in result.stderr, result.stderr
