"""Session-level behaviour: cancel requests mapped to the upstream, 100 concurrent sessions, and
pgbench through the gateway."""

import asyncio
import re
import subprocess
import threading
import time

import asyncpg
import psycopg
import pytest

from conftest import psql


def test_cancel_stops_the_query_upstream(gateway, token, pg):
    with psycopg.connect(gateway.dsn(token, application_name="cancel-me"), autocommit=True) as conn:
        # The key the client holds is sluice's own, not the upstream backend's.
        upstream_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert conn.info.backend_pid != upstream_pid
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        # The upstream backend is idle again, not still sleeping.
        state = pg.query("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [upstream_pid])
        assert state and state[0][0] == "idle"
        assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "cancel-me")
    [sleep] = [s for s in details["statements"] if "pg_sleep" in s["text"]]
    assert sleep["error_code"] == "57014"


def test_cancel_with_a_wrong_key_does_nothing(gateway, token):
    import socket
    import struct

    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        pid = conn.info.backend_pid
        with socket.create_connection(("127.0.0.1", gateway.port)) as s:
            s.sendall(struct.pack("!iiii", 16, 80877102, pid, 12345))
            s.settimeout(5)
            assert s.recv(16) == b""  # closed without an answer, as PostgreSQL does
        assert conn.execute("SELECT pg_sleep(0.3), 'not cancelled'").fetchone()[1] == "not cancelled"


def test_hundred_concurrent_sessions_see_only_their_own_results(gateway, token):
    async def one(i):
        conn = await asyncpg.connect(gateway.dsn(token))
        try:
            seen = []
            for round_ in range(5):
                value = await conn.fetchval("SELECT $1::text || ':' || pg_backend_pid()", f"client-{i}-{round_}")
                seen.append(value)
                await asyncio.sleep(0.01)
            pids = {v.split(":")[1] for v in seen}
            assert len(pids) == 1, "a session must keep one upstream backend"
            assert [v.split(":")[0] for v in seen] == [f"client-{i}-{r}" for r in range(5)]
            return pids.pop()
        finally:
            await conn.close()

    async def run():
        return await asyncio.gather(*(one(i) for i in range(100)))

    pids = asyncio.run(run())
    assert len(set(pids)) == 100, "each client had its own upstream session"


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only_through_sluice(gateway, token, mode):
    result = subprocess.run(
        ["pgbench", "-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-T", "3",
         gateway.dsn(token, connection="bench", sslmode="disable")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
    assert failed and failed.group(1) == "0", result.stdout
    processed = int(re.search(r"number of transactions actually processed: (\d+)", result.stdout).group(1))
    assert processed > 100, result.stdout


LARGE_RESULT = ("SELECT g, 'row ' || g || ' ' || repeat('x', g % 300) AS t"
                " FROM generate_series(1, 40000) g ORDER BY g")


def test_large_results_arrive_whole_and_in_order(gateway, token, pg):
    """A result of ~6 MB, far beyond the relay's buffers, in the simple protocol (psql) and the
    extended one (psycopg), two sessions at once: byte for byte what a direct read returns."""
    direct = psql(pg.dsn(), "-At", sql=LARGE_RESULT, check=True)
    expected_rows = pg.query(LARGE_RESULT)
    assert len(expected_rows) == 40000

    def read_through_sluice():
        return psql(gateway.dsn(token), "-At", sql=LARGE_RESULT, check=True).stdout

    results = {}
    reader = threading.Thread(target=lambda: results.update(psql=read_through_sluice()))
    reader.start()
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        assert conn.execute(LARGE_RESULT, prepare=False).fetchall() == expected_rows
    reader.join(timeout=60)
    assert results["psql"] == direct.stdout


def test_rows_of_a_slow_query_are_not_held_back(gateway, token, pg):
    """The relay gathers a streamed result into large writes, but never waits long for the rest of
    a message: here the server flushes its 8 KiB buffer twice, each time inside a row, then spends
    3 s on the last row; the rows it sent must reach the client long before that."""
    sql = ("SELECT i, repeat('x', 100), CASE WHEN i = 200 THEN pg_sleep(3) END"
           " FROM generate_series(1, 200) i")

    def first_row_after(dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.monotonic()
            rows = conn.cursor().stream(sql)
            first = next(rows)
            first_at = time.monotonic() - started
            rest = list(rows)
            total = time.monotonic() - started
        assert first[0] == 1 and [r[0] for r in rest] == list(range(2, 201))
        assert total >= 3
        return first_at

    assert first_row_after(pg.dsn()) < 1.5, "direct: the premise of this test (rows flushed early) holds"
    for connection, sslmode in (("shop", "require"), ("shop_env", "disable")):
        first_at = first_row_after(gateway.dsn(token, connection=connection, sslmode=sslmode))
        assert first_at < 1.5, f"through sluice ({connection}) the first row waited {first_at:.1f} s"
