"""What an agent sees when sluice refuses or holds a statement: PostgreSQL's own error position for
statements that do not parse, advice that fits the client it uses, EXPLAIN that never reads as
"this would work" for a statement the policy refuses; and what it can ask before acting, from its
own client (sluice.policy(), sluice.explain('…')) or the API with its own token."""

import asyncio

import asyncpg

import psycopg
import pytest

from conftest import Sluice, api_request, psql

RULES = """
[[policy.rules]]
name = "orders-append-only"
effect = "deny"
kinds = ["update", "delete"]
objects = ["public.orders"]
reason = "orders are append-only"

[[policy.rules]]
name = "bulk-changes"
effect = "review"
kinds = ["update", "delete"]
when = ["no-where"]
reason = "changes to every row need a human"
review = { approvers = ["dba"] }

[[masking.columns]]
name = "customer-notes"
columns = ["public.customers.notes"]
"""

UNPARSEABLE = [
    "SELEC 1",
    "SELECT 1 FROM FROM orders",
    "SELECT * FROM orders WHERE",
    "SELECT 'é', 'ü' FROM FROM orders",
    "SELECT 1;\nSELECT 2 2",
    "SELECT (1 + 2",
    "INSERT INTO orders VALUES (1,, 2)",
]


@pytest.fixture(scope="module")
def agent_gw(pg):
    gw = Sluice(pg, extra_toml=RULES).start()
    gw.agent_token = gw.token()
    yield gw
    assert gw.stop() == 0
    assert "panicked" not in gw.log()


def error_of(dsn, sql, **connect):
    with psycopg.connect(dsn, autocommit=True, **connect) as conn:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(sql)
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
    return raised.value.diag


@pytest.mark.parametrize("sql", UNPARSEABLE)
def test_a_syntax_error_keeps_postgresqls_position(pg, agent_gw, sql):
    direct = error_of(pg.dsn(), sql)
    through = error_of(agent_gw.dsn(agent_gw.agent_token), sql)
    assert through.sqlstate == direct.sqlstate == "42601"
    assert through.statement_position == direct.statement_position and direct.statement_position
    # Word for word the server's error: no mention of sluice (the recording has the refusal).
    assert through.message_primary == direct.message_primary and through.message_hint is None
    # The same in psql: the LINE/caret lines are PostgreSQL's own.
    direct_psql = psql(pg.dsn(), sql=sql)
    through_psql = psql(agent_gw.dsn(agent_gw.agent_token), sql=sql)
    caret = [line for line in direct_psql.stderr.splitlines() if line.startswith("LINE") or line.strip() == "^"]
    assert caret and all(line in through_psql.stderr.splitlines() for line in caret), through_psql.stderr


def test_a_syntax_error_over_the_extended_protocol_has_its_position_too(pg, agent_gw):
    sql = "SELECT %s FROM FROM orders"
    with psycopg.connect(agent_gw.dsn(agent_gw.agent_token), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as raised:
            conn.execute(sql, (1,))
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as direct:
            conn.execute(sql, (1,))
    assert raised.value.diag.statement_position == direct.value.diag.statement_position == "16"


def test_parameters_under_review_get_advice_for_the_client_that_asks(agent_gw):
    dsn = agent_gw.dsn(agent_gw.agent_token)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            conn.execute("UPDATE products SET price_cents = %s", (1,))
    hint = raised.value.diag.message_hint
    assert "values written in the SQL text instead of $1 placeholders" in hint
    assert "psycopg" not in hint and "pgjdbc" not in hint, hint
    for program, advice in [("PostgreSQL JDBC Driver", "preferQueryMode=simple"),
                            ("psycopg-app", "ClientCursor"), ("asyncpg", "asyncpg")]:
        with psycopg.connect(dsn, autocommit=True, application_name=program) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
                conn.execute("UPDATE products SET price_cents = %s", (1,))
        assert advice in raised.value.diag.message_hint, (program, raised.value.diag.message_hint)


def test_explain_of_a_refused_statement_is_refused_and_of_a_reviewed_one_is_planned(pg, agent_gw):
    dsn = agent_gw.dsn(agent_gw.agent_token)
    for sql in ["EXPLAIN DELETE FROM orders WHERE id = 1",
                "EXPLAIN (FORMAT JSON) UPDATE orders SET quantity = 2 WHERE id = 1",
                "explain with d as (delete from orders where id = 1 returning *) select * from d"]:
        diag = error_of(dsn, sql)
        assert diag.sqlstate == "42501", sql
        assert diag.message_primary.startswith(
            'sluice: refused by rule "orders-append-only": EXPLAIN of a statement the policy refuses'), diag.message_primary
        assert "running the statement would be refused" in diag.message_hint
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Under review, not refused: the plan is what an approver wants to see; nothing runs.
        plan = conn.execute("EXPLAIN UPDATE products SET price_cents = 0").fetchall()
        assert plan and "Update on products" in plan[0][0]
        assert conn.execute("EXPLAIN SELECT * FROM orders").fetchall()
    assert pg.query("SELECT count(*) FROM products WHERE price_cents = 0") == [(0,)]


def rows_of(dsn, sql):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def as_dict(rows):
    out = {}
    for item, value in rows:
        out.setdefault(item, []).append(value)
    return out


def test_an_agent_asks_what_it_may_do_from_its_own_client(pg, agent_gw):
    dsn = agent_gw.dsn(agent_gw.agent_token)
    answer = as_dict(rows_of(dsn, "SELECT * FROM sluice.policy()"))
    assert answer["identity"] == ["agent (groups: agents)"]
    assert answer["connection"] == ["shop"] and answer["default"] == ["allow (for what no rule covers)"]
    rules = answer["rule"]
    assert any(r.startswith("orders-append-only: deny update, delete on public.orders — orders are append-only")
               for r in rules), rules
    assert any(r.startswith("bulk-changes: review update, delete without a WHERE clause") and "group dba" in r
               for r in rules), rules
    assert answer["masked columns"] == ["public.customers.notes (customer-notes: redact); expressions over them are refused"]
    assert "credit-card" in answer["detectors"][0] and "standard_conforming_strings" in answer["pinned settings"][0]
    assert "sluice.explain" in answer["ask"][0]
    # psql over the simple protocol gets the same rows.
    out = psql(dsn, "-At", "-F", "|", sql="SELECT sluice.policy()")
    assert out.returncode == 0 and "orders-append-only: deny" in out.stdout, out.stderr


def test_an_agent_asks_whether_a_statement_would_pass_without_running_it(pg, agent_gw):
    dsn = agent_gw.dsn(agent_gw.agent_token)
    before = pg.query("SELECT count(*) FROM orders")
    denied = as_dict(rows_of(dsn, "SELECT sluice.explain('DELETE FROM orders WHERE id = 1')"))
    assert denied["decision"] == ["deny"] and denied["rule"] == ["orders-append-only"]
    assert denied["reason"] == ["orders are append-only"] and denied["detail"] == ["DELETE on orders"]
    assert denied["operation"] == ["DELETE on orders: deny (rule orders-append-only)"]
    reviewed = as_dict(rows_of(dsn, "SELECT * FROM sluice.explain($$UPDATE products SET price_cents = 0$$)"))
    assert reviewed["decision"] == ["review"] and reviewed["rule"] == ["bulk-changes"]
    assert "opens a review that 1 of group dba must approve" in reviewed["next step"][0], reviewed
    allowed = as_dict(rows_of(dsn, "SELECT sluice.explain('SELECT * FROM orders')"))
    assert allowed["decision"] == ["allow"] and allowed["next step"] == ["run it"]
    masked = as_dict(rows_of(dsn, "SELECT sluice.explain('SELECT upper(notes) FROM customers')"))
    assert masked["decision"] == ["deny"] and masked["rule"] == ["masking"]
    broken = as_dict(rows_of(dsn, "SELECT sluice.explain('SELEC 1')"))
    assert broken["decision"] == ["deny"] and broken["rule"] == ["unparseable"]
    # asyncpg prepares and describes before it executes: the answer has a shape like any result.
    async def ask():
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch("SELECT * FROM sluice.explain('TRUNCATE orders')")
        finally:
            await conn.close()
    assert dict(asyncio.run(ask()))["decision"] == "allow"
    # Nothing ran, and no review was opened by asking.
    assert pg.query("SELECT count(*) FROM orders") == before
    assert pg.query("SELECT count(*) FROM products WHERE price_cents = 0") == [(0,)]
    assert agent_gw.cli("sessions", "list", "--json").returncode == 0


def test_only_the_plain_forms_are_answered_and_the_rest_is_refused_with_the_forms_to_use(agent_gw):
    dsn = agent_gw.dsn(agent_gw.agent_token)
    for sql, params in [("SELECT sluice.explain(%s)", ("DELETE FROM orders",)),
                        ("SELECT sluice.policy() FROM orders", None),
                        ("SELECT upper(sluice.explain('x'))", None),
                        ("SELECT sluice.nothing()", None)]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(sql, params)
            assert 'refused by rule "sluice-functions"' in refused.value.diag.message_primary
            assert "SELECT sluice.explain('the statement')" in refused.value.diag.message_primary
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_asking_is_recorded_like_any_statement(agent_gw):
    dsn = agent_gw.dsn(agent_gw.agent_token, application_name="asker")
    rows_of(dsn, "SELECT sluice.explain('DROP TABLE orders')")
    found = agent_gw.session_with(lambda d: any("sluice.explain('DROP TABLE orders')" in s["text"]
                                                for s in d["statements"]))
    statement = next(s for s in found["statements"] if "sluice.explain" in s["text"])
    assert statement["decision"] == "allow" and statement["rule"] == "sluice.explain()"


def api_call(gw, token, method, path, body=None):
    return api_request(gw.api_url, token, method, path, body)


def test_the_same_answers_through_the_api_with_the_agents_own_token(agent_gw):
    token = agent_gw.agent_token
    status, policy = api_call(agent_gw, token, "GET", "/api/v1/connections/shop/policy")
    assert status == 200 and policy["identity"] == "agent" and policy["default"] == "allow"
    assert {r["name"]: r["effect"] for r in policy["rules"]}["orders-append-only"] == "deny"
    assert policy["masked_columns"][0]["columns"] == ["public.customers.notes"]
    status, answer = api_call(agent_gw, token, "POST", "/api/v1/connections/shop/explain",
                              {"sql": "DELETE FROM orders WHERE id = 1"})
    assert status == 200 and answer["decision"] == "deny" and answer["rule"] == "orders-append-only"
    # A connection the identity may not use answers like one that does not exist.
    for name in ["ops_only", "nowhere-at-all"]:
        status, body = api_call(agent_gw, token, "GET", f"/api/v1/connections/{name}/policy")
        assert status == 404 and body["error"] == f'no connection "{name}" that this token may use'
    status, _ = api_call(agent_gw, "slu_000000000000_" + "0" * 64, "GET", "/api/v1/connections/shop/policy")
    assert status == 401
