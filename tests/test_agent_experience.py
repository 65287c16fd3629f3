"""What an agent sees when sluice refuses or holds a statement: PostgreSQL's own error position for
statements that do not parse, advice that fits the client it uses, and EXPLAIN that never reads as
"this would work" for a statement the policy refuses."""

import subprocess

import psycopg
import pytest

from conftest import Sluice

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
    gw = Sluice(pg, extra_connections=RULES).start()
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
    # The same in psql: the LINE/caret lines are PostgreSQL's own.
    direct_psql = subprocess.run(["psql", pg.dsn(), "-X", "-c", sql], capture_output=True, text=True)
    through_psql = subprocess.run(["psql", agent_gw.dsn(agent_gw.agent_token), "-X", "-c", sql],
                                  capture_output=True, text=True)
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
