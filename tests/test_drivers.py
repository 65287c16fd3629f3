"""Real drivers through sluice: psycopg 3 (simple, server-side prepared, binary, pipeline mode) and
asyncpg (extended protocol with binary formats), and the recording of extended-protocol statements."""

import asyncio
import datetime
import decimal

import asyncpg
import psycopg
import pytest


def test_psycopg_simple_and_parameters(gateway, token):
    with psycopg.connect(gateway.dsn(token, application_name="psycopg-simple"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (200,)
        row = conn.execute("SELECT name FROM customers WHERE email = %s", ["grace@example.net"]).fetchone()
        assert row == ("Grace Hopper",)
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "psycopg-simple")
    paths = {s["text"]: s["path"] for s in details["statements"]}
    assert paths["SELECT count(*) FROM orders"] == "simple"
    assert paths["SELECT name FROM customers WHERE email = $1"] == "extended"


def test_psycopg_server_side_prepared_statements(gateway, token):
    with psycopg.connect(gateway.dsn(token, application_name="psycopg-prepared"), autocommit=True,
                         prepare_threshold=0) as conn:
        for i in range(1, 6):
            row = conn.execute("SELECT sku FROM products WHERE id = %s", [i], prepare=True).fetchone()
            assert row == (f"SKU-{i:04d}",)
        # The statement really is prepared on the server (named, not unnamed).
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql").fetchone()[0]
        assert prepared >= 1
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "psycopg-prepared")
    executions = [s for s in details["statements"] if s["text"] == "SELECT sku FROM products WHERE id = $1"]
    assert len(executions) == 5
    assert all(s["path"] == "extended" and s["rows"] == 1 for s in executions)


def test_psycopg_binary_formats(gateway, token):
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        cur.execute(
            "SELECT id, price_cents, name, price_cents::numeric / 100, now()::date, ARRAY[id, id * 2]"
            " FROM products WHERE id = %s",
            [3],
        )
        ident, cents, name, price, day, arr = cur.fetchone()
        assert (ident, name, arr) == (3, "Product 3", [3, 6])
        assert price == decimal.Decimal(cents) / 100
        assert isinstance(day, datetime.date)
        assert cur.pgresult.fformat(0) == 1  # the server really answered in binary


def test_psycopg_pipeline_mode(gateway, token):
    with psycopg.connect(gateway.dsn(token, application_name="psycopg-pipeline"), autocommit=True) as conn:
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int * 10", [i]) for i in range(20)]
            failing = conn.cursor()
        assert [c.fetchone()[0] for c in cursors] == [i * 10 for i in range(20)]
        # An error inside a pipeline aborts the rest up to the sync point, as on a direct connection.
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                conn.execute("SELECT 1")
                failing.execute("SELECT 1/0")
                conn.execute("SELECT 2")
        assert conn.execute("SELECT 'after'").fetchone() == ("after",)
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "psycopg-pipeline")
    statements = details["statements"]
    assert sum(1 for s in statements if s["text"] == "SELECT $1::int * 10") == 20
    assert any(s["text"] == "SELECT 1/0" and s["error_code"] == "22012" for s in statements)


def test_psycopg_transactions(gateway, token, pg):
    pg.query("CREATE TABLE IF NOT EXISTS tx_check (v int)")
    pg.query("GRANT ALL ON tx_check TO app")
    pg.query("TRUNCATE tx_check")
    with psycopg.connect(gateway.dsn(token)) as conn:
        conn.execute("INSERT INTO tx_check VALUES (1)")
        conn.rollback()
        conn.execute("INSERT INTO tx_check VALUES (2)")
        conn.commit()
    assert pg.query("SELECT v FROM tx_check") == [(2,)]


def test_asyncpg_extended_protocol(gateway, token):
    async def run():
        conn = await asyncpg.connect(gateway.dsn(token, sslmode="require"), server_settings={"application_name": "asyncpg"})
        try:
            rows = await conn.fetch("SELECT id, sku, price_cents FROM products WHERE id <= $1 ORDER BY id", 3)
            assert [r["sku"] for r in rows] == ["SKU-0001", "SKU-0002", "SKU-0003"]
            stmt = await conn.prepare("SELECT name FROM customers WHERE id = $1")
            assert await stmt.fetchval(2) == "Alan Turing"
            assert await stmt.fetchval(3) == "Grace Hopper"
            async with conn.transaction():
                cur_rows = []
                async for r in conn.cursor("SELECT g FROM generate_series(1, 250) g", prefetch=40):
                    cur_rows.append(r[0])
                assert cur_rows == list(range(1, 251))
            with pytest.raises(asyncpg.exceptions.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table")
            assert await conn.fetchval("SELECT 'usable'") == "usable"
            values = await conn.fetchrow("SELECT $1::jsonb, $2::uuid, $3::bytea",
                                         '{"a": 1}', "5f0c3a34-0c4b-4c16-9f50-2f7b2a4d5e6f", b"\x00\x01\xff")
            assert values[2] == b"\x00\x01\xff"
        finally:
            await conn.close()

    asyncio.run(run())
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "asyncpg")
    by_text = {s["text"]: s for s in details["statements"]}
    assert by_text["SELECT id, sku, price_cents FROM products WHERE id <= $1 ORDER BY id"]["rows"] == 3
    assert by_text["SELECT * FROM no_such_table"]["error_code"] == "42P01"
    # The cursor was fetched in portions: several executions of one portal, 250 rows in all.
    fetched = [s for s in details["statements"] if s["text"] == "SELECT g FROM generate_series(1, 250) g"]
    assert sum(s["rows"] for s in fetched) == 250


def test_asyncpg_copy(gateway, token, pg):
    pg.query("CREATE TABLE IF NOT EXISTS asyncpg_copy (id int, label text)")
    pg.query("GRANT ALL ON asyncpg_copy TO app")
    pg.query("TRUNCATE asyncpg_copy")

    async def run():
        conn = await asyncpg.connect(gateway.dsn(token))
        try:
            await conn.copy_records_to_table("asyncpg_copy", records=[(i, f"r{i}") for i in range(500)])
            out = []

            class Sink:
                async def write(self, data):
                    out.append(data)

            await conn.copy_from_query("SELECT id FROM asyncpg_copy ORDER BY id LIMIT 3", output=Sink().write)
            return b"".join(out)
        finally:
            await conn.close()

    copied = asyncio.run(run())
    assert copied == b"0\n1\n2\n"
    assert pg.query("SELECT count(*) FROM asyncpg_copy") == [(500,)]
