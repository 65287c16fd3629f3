"""Side doors around table denies and read-only sessions, with a superuser upstream so that only
sluice protects (issue #22, items 3 and 8): system catalogs that hold credentials or sample
values, TOAST relations of denied tables, functions that run a query string or read a table by
name, settings that switch off the database's own logging or load libraries, and side-effect
functions under read-only. Each refusal must be sluice's (rule named), and the same statement
straight to the server must show what it would have given away."""
import asyncio

import asyncpg
import psycopg
import pytest

from conftest import Sluice, psql

SECRET = "s3cr3t-" + "".join(f"{i:04x}" for i in range(900))  # ~3.6 kB, stored out of line

SIDE_DOORS = """
[connections.su]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "postgres"
password = "env:PG_SUPERUSER_PASSWORD"

[connections.su_ro]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "postgres"
password = "env:PG_SUPERUSER_PASSWORD"
policy = "read-only"

[policy]
default = "allow"

[[policy.rules]]
name = "no-secrets"
effect = "deny"
objects = ["public.secrets"]
reason = "secrets are off limits"

[[masking.columns]]
name = "vault"
columns = ["public.vault.token"]
action = "redact"
"""


@pytest.fixture(scope="module")
def doors_gw(pg):
    with pg.connect() as conn:
        conn.execute("""
            DROP TABLE IF EXISTS secrets, vault;
            CREATE TABLE secrets (id int PRIMARY KEY, body text);
            ALTER TABLE secrets ALTER COLUMN body SET STORAGE EXTERNAL;
            CREATE TABLE vault (id int PRIMARY KEY, token text, label text);
            INSERT INTO vault VALUES (1, 'tok-alpha-1111', 'north'), (2, 'tok-beta-2222', 'south');
            CREATE INDEX vault_brin ON vault USING brin (id);
            DROP SERVER IF EXISTS side_srv CASCADE;
            DROP FOREIGN DATA WRAPPER IF EXISTS side_fdw CASCADE;
            CREATE FOREIGN DATA WRAPPER side_fdw;
            CREATE SERVER side_srv FOREIGN DATA WRAPPER side_fdw;
            CREATE USER MAPPING FOR app SERVER side_srv OPTIONS (user 'remote', password 'fdw-hunter2');
        """)
        conn.execute("INSERT INTO secrets VALUES (1, %s), (2, 'short-secret-zz9')", [SECRET])
        conn.execute("ANALYZE secrets; ANALYZE vault")
    gw = Sluice(pg, extra_toml=SIDE_DOORS.format(port=pg.port),
                env={"PG_SUPERUSER_PASSWORD": pg.superuser_password}).start()
    gw.agent = gw.token(identity="agent", groups="agents")
    yield gw
    code = gw.stop()
    assert code == 0 and "panicked" not in gw.log(), gw.log()[-3000:]
    gw.cleanup()
    with pg.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS secrets, vault; DROP SERVER IF EXISTS side_srv CASCADE; "
                     "DROP FOREIGN DATA WRAPPER IF EXISTS side_fdw CASCADE")


def toast_of(pg, table):
    return pg.query("SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = %s::regclass", [table])[0][0]


def run(gw, sql, connection="su"):
    return psql(gw.dsn(gw.agent, connection=connection), "-At", "-v", "VERBOSITY=verbose", sql=sql)


def refused_by(gw, sql, rule, connection="su"):
    out = run(gw, sql, connection)
    assert out.returncode != 0, f"{sql}: ran: {out.stdout[:300]}"
    assert f'refused by rule "{rule}"' in out.stderr, out.stderr
    for leaked in (SECRET[:40], "short-secret-zz9", "fdw-hunter2", "SCRAM-SHA-256$", "tok-alpha", "tok-beta"):
        assert leaked not in out.stdout + out.stderr, f"{sql} leaked {leaked}"
    return out.stderr


@pytest.mark.parametrize("sql", [
    "SELECT rolpassword FROM pg_authid WHERE rolname = current_user",
    "SELECT passwd FROM pg_catalog.pg_shadow",
    "TABLE pg_authid",
    "SELECT umoptions FROM pg_user_mapping",
    "SELECT umoptions FROM pg_user_mappings",
    "SELECT option_value FROM information_schema.user_mapping_options",
    "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'secrets'",
    "SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE tablename = 'vault'",
    "SELECT stavalues1::text FROM pg_statistic",
    "SELECT * FROM pg_stats_ext",
    "SELECT * FROM pg_stats_ext_exprs",
    "SELECT count(*) FROM (SELECT * FROM pg_authid) a",
    "WITH s AS (SELECT * FROM pg_shadow) SELECT count(*) FROM s",
])
def test_credential_and_statistics_catalogs_are_refused(doors_gw, pg, sql):
    refused_by(doors_gw, sql, "protected-catalog")


def test_the_catalogs_do_hold_what_was_refused(pg):
    """Control: straight to the server, the superuser reads the verifier and the samples."""
    assert pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")[0][0].startswith("SCRAM-SHA-256$")
    samples = pg.query("SELECT concat(most_common_vals::text, histogram_bounds::text) FROM pg_stats "
                       "WHERE tablename = 'vault' AND attname = 'token'")
    assert samples and "tok-alpha" in samples[0][0]


def test_a_denied_tables_toast_relation_is_refused(doors_gw, pg):
    toast = toast_of(pg, "secrets")
    assert toast.startswith("pg_toast.pg_toast_")
    direct = pg.query(f"SELECT string_agg(encode(chunk_data, 'escape'), '' ORDER BY chunk_seq) FROM {toast}")
    assert direct[0][0].startswith("s3cr3t-"), "control: the TOAST relation holds the secret"
    for sql in (f"SELECT string_agg(encode(chunk_data, 'escape'), '' ORDER BY chunk_seq) FROM {toast}",
                f"TABLE {toast}", f"SELECT count(*) FROM {toast.split('.')[1]}",
                f"SELECT * FROM {toast.upper().replace('PG_TOAST.', 'pg_toast.')}"):
        refused_by(doors_gw, sql, "protected-catalog")


@pytest.mark.parametrize("sql, rule", [
    ("SELECT * FROM ts_stat('SELECT to_tsvector(body) FROM public.secrets')", "no-secrets"),
    ("SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, to_tsquery(body) FROM secrets')", "no-secrets"),
    ("SELECT query_to_xml('SELECT body FROM secrets', true, false, '')", "no-secrets"),
    ("SELECT table_to_xml('public.secrets', true, false, '')", "no-secrets"),
    ("SELECT table_to_xml('\"secrets\"', true, false, '')", "no-secrets"),
    ("SELECT table_to_xml(('secr' || 'ets')::regclass, true, false, '')", "dynamic-sql"),
    ("SELECT ts_stat(current_setting('application_name'))", "dynamic-sql"),
    ("SELECT schema_to_xml('public', true, false, '')", "dynamic-sql"),
    ("SELECT * FROM ts_stat('SELECT to_tsvector(token) FROM vault')", "masking"),
    ("SELECT table_to_xml('vault', true, false, '')", "masking"),
    ("SELECT query_to_xml('SELECT token FROM vault', true, false, '')", "masking"),
])
def test_functions_that_read_a_query_string_or_a_table_by_name(doors_gw, sql, rule):
    refused_by(doors_gw, sql, rule)


def test_query_string_functions_still_work_on_what_may_be_read(doors_gw):
    out = run(doors_gw, "SELECT word FROM ts_stat('SELECT to_tsvector(label) FROM vault') ORDER BY word")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["north", "south"]
    out = run(doors_gw, "SELECT query_to_xml('SELECT label FROM vault WHERE id = 1', true, false, '')")
    assert out.returncode == 0 and "<label>north</label>" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("sql", [
    "SET log_statement = 'none'",
    "SET LOCAL log_min_duration_statement = -1",
    "SET log_min_error_statement = panic",
    "SELECT set_config('log_statement', 'none', false)",
    "RESET log_statement",
    "SET session_replication_role = replica",
    "SET session_preload_libraries = 'auto_explain'",
    "SET local_preload_libraries = 'auto_explain'",
    "SET track_activities = off",
    "SET pgaudit.log = 'none'",
])
def test_audit_and_library_settings_are_protected(doors_gw, sql):
    stderr = refused_by(doors_gw, sql, "protected-setting")
    assert "HINT:" in stderr


def test_audit_and_library_settings_cannot_come_in_the_startup_packet(doors_gw, pg):
    async def connect(settings):
        conn = await asyncpg.connect(doors_gw.dsn(doors_gw.agent, connection="su"), server_settings=settings)
        await conn.close()

    for name, value in [("log_statement", "none"), ("session_preload_libraries", "auto_explain"),
                        ("log_min_duration_statement", "-1"), ("session_replication_role", "replica")]:
        with pytest.raises(asyncpg.exceptions.PostgresError, match=name):
            asyncio.run(connect({name: value}))
    # An ordinary setting still goes through.
    asyncio.run(connect({"application_name": "side-doors", "work_mem": "8MB"}))
    with psycopg.connect(doors_gw.dsn(doors_gw.agent, connection="su"), autocommit=True) as conn:
        assert conn.execute("SHOW log_statement").fetchone() == tuple(pg.query("SHOW log_statement")[0])
        conn.execute("SET work_mem = '16MB'")
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'app'").fetchone() == (1,)


@pytest.mark.parametrize("sql, function", [
    ("SELECT brin_summarize_new_values('vault_brin')", "brin_summarize_new_values"),
    ("SELECT brin_desummarize_range('vault_brin', 0)", "brin_desummarize_range"),
    ("SELECT pg_catalog.gin_clean_pending_list('vault_brin')", "gin_clean_pending_list"),
    ("SELECT setseed(0.5)", "setseed"),
    ("SELECT pg_export_snapshot()", "pg_export_snapshot"),
    ("SELECT 1 FROM vault WHERE pg_advisory_xact_lock(id) IS NULL", "pg_advisory_xact_lock"),
])
def test_read_only_calls_only_functions_free_of_side_effects(doors_gw, pg, sql, function):
    before = pg.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    stderr = refused_by(doors_gw, sql, "connection su_ro: read-only", connection="su_ro")
    assert f"{function}()" in stderr, stderr
    assert "ask an operator for write access" not in stderr, "the hint must fit a function, not a write"
    assert pg.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == before


@pytest.mark.parametrize("sql", [
    "SELECT random() < 2, gen_random_uuid() IS NOT NULL, clock_timestamp() > now()",
    "SELECT now() AT TIME ZONE 'UTC' IS NOT NULL",
    "SELECT pg_sleep(0) IS NOT NULL",
    "SELECT pg_relation_size('vault') >= 0",
    "SELECT count(*) >= 0 FROM vault TABLESAMPLE system (50)",
    "SELECT lower(label) = label FROM vault WHERE id = 1",
])
def test_read_only_still_runs_harmless_volatile_functions(doors_gw, sql):
    out = run(doors_gw, sql, connection="su_ro")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.strip().split("|")) == {"t"}


def test_read_only_refusals_say_what_to_do_instead(doors_gw):
    lock = refused_by(doors_gw, "LOCK TABLE vault IN ACCESS EXCLUSIVE MODE", "connection su_ro: read-only", connection="su_ro")
    assert "lock on vault" in lock and "row lock" not in lock and "without locking" in lock
    copy = refused_by(doors_gw, "COPY vault TO '/tmp/sluice-vault-copy'", "connection su_ro: read-only", connection="su_ro")
    assert "TO STDOUT" in copy


def test_currtid2_names_a_table(doors_gw):
    refused_by(doors_gw, "SELECT currtid2('secrets', '(0,1)'::tid)", "no-secrets")


def test_raw_pages_of_a_denied_table_are_refused(doors_gw, pg):
    pg.query("CREATE EXTENSION IF NOT EXISTS pageinspect")
    try:
        raw = pg.query("SELECT encode(get_raw_page('secrets', 0), 'escape')")[0][0]
        assert "short-secret-zz9" in raw, "control: the page holds the secret"
        for sql in ("SELECT encode(get_raw_page('secrets', 0), 'escape')",
                    "SELECT t_data FROM heap_page_items(get_raw_page('public.secrets', 'main', 0))",
                    "SELECT data FROM bt_page_items('secrets_pkey', 1)"):
            refused_by(doors_gw, sql, "dynamic-sql")
    finally:
        pg.query("DROP EXTENSION IF EXISTS pageinspect")


def test_read_only_refuses_volatile_user_functions(doors_gw, pg):
    """A user-defined function PostgreSQL marks VOLATILE may have effects the read-only
    transaction does not stop (here an advisory lock that outlives the statement): refused in a
    read-only session, naming it; a STABLE one runs; one made after sluice read the catalog too."""
    pg.query("CREATE OR REPLACE FUNCTION side_lock() RETURNS int LANGUAGE plpgsql "
             "AS $$BEGIN PERFORM pg_advisory_lock(4242); RETURN 1; END$$")
    pg.query("CREATE OR REPLACE FUNCTION vault_rows() RETURNS bigint LANGUAGE sql STABLE "
             "AS 'SELECT count(*) FROM vault'")
    locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as direct:
            assert direct.execute("SELECT side_lock()").fetchone() == (1,), "control: it runs"
            assert direct.execute(locks).fetchone() == (1,), "control: and leaves a lock behind"
        assert pg.query(locks) == [(0,)]
        for sql in ("SELECT side_lock()", "SELECT public.side_lock()", "SELECT * FROM side_lock()"):
            stderr = refused_by(doors_gw, sql, "read-only", connection="su_ro")
            assert "side_lock() is a user-defined function PostgreSQL marks VOLATILE" in stderr, stderr
            assert "ALTER FUNCTION" in stderr
        assert pg.query(locks) == [(0,)]
        out = run(doors_gw, "SELECT vault_rows()", connection="su_ro")
        assert out.returncode == 0 and out.stdout.strip() == "2", out.stderr
        # Made after sluice last read the functions: read again, and refused as well.
        pg.query("CREATE OR REPLACE FUNCTION side_lock_later() RETURNS void LANGUAGE sql "
                 "AS 'SELECT pg_advisory_lock(4243)'")
        refused_by(doors_gw, "SELECT side_lock_later()", "read-only", connection="su_ro")
        # Not read-only: policy decides as before (default allow).
        out = run(doors_gw, "SELECT vault_rows(), 1", connection="su")
        assert out.returncode == 0, out.stderr
    finally:
        pg.query("DROP FUNCTION IF EXISTS side_lock(), vault_rows(), side_lock_later()")
