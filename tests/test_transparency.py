"""Issue #23: with nothing in the policy that needs it, sluice is invisible to ordinary sessions;
where the policy does need a setting pinned, it says so. Run with real psql against the real server."""
import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from conftest import psql, sluice_binary

ROOT = Path(__file__).resolve().parent.parent

ALLOW_ALL_NO_MASKING = """
[policy]
default = "allow"

[masking]
enabled = false

[connections.shop_ro]
host = "127.0.0.1"
port = {port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
policy = "read-only"
"""

COLUMN_RULE = """
[[masking.columns]]
name = "notes"
columns = ["public.customers.notes"]
"""


def test_a_syntax_error_is_the_servers_own(gateway, token):
    """Cause 4: the server's message, position and hint, so psql shows LINE 1 and the caret."""
    out = psql(gateway.dsn(token), "-At", "-c", "SELECT 123abc", check=False)
    assert out.returncode != 0
    assert "ERROR:  trailing junk after numeric literal at or near \"123abc\"" in out.stderr, out.stderr
    assert "LINE 1: SELECT 123abc" in out.stderr, out.stderr
    assert "sluice" not in out.stderr, out.stderr
    # The extended protocol gets the same: the server's message and position.
    with psycopg.connect(gateway.dsn(token)) as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as raised:
            conn.execute("SELECT 1 FRM t WHERE x = %s", (1,))
        diag = raised.value.diag
        assert diag.message_primary == 'syntax error at or near "t"', diag.message_primary
        assert diag.statement_position == "14"
        conn.rollback()
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


def test_a_statement_only_the_server_parses_is_refused_and_not_run(gateway, token, pg):
    """`system_user` is a keyword of PostgreSQL 16 and later (sluice's parser is 18's), an
    ordinary name to 15: the server's parse succeeds, yet the statement never runs, and the
    transaction fails as a syntax error would have made it."""
    script = """
        BEGIN;
        CREATE TABLE only_the_server_parses (system_user int);
        SELECT 1;
        ROLLBACK;
    """
    out = psql(gateway.dsn(token), "-At", "-v", "ON_ERROR_STOP=0", input=script, check=False)
    # sluice's parser's words, with its position.
    assert 'syntax error at or near "system_user"' in out.stderr, out.stderr
    assert "LINE 1: CREATE TABLE only_the_server_parses (system_user int);" in out.stderr, out.stderr
    assert "current transaction is aborted" in out.stderr, out.stderr
    assert pg.query("SELECT to_regclass('public.only_the_server_parses') IS NULL")[0][0]


def test_where_the_policy_enforces_nothing_role_search_path_and_strings_follow_the_session(make_gateway, pg):
    gw = make_gateway(extra_toml=ALLOW_ALL_NO_MASKING.format(port=pg.port))
    tok = gw.token()
    pg.query("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'transparency_reader') THEN "
             "CREATE ROLE transparency_reader; END IF; END$$")
    pg.query("GRANT transparency_reader TO app")
    script = r"""
        SET search_path = pg_catalog;
        SHOW search_path;
        SET ROLE transparency_reader;
        SELECT current_user;
        RESET ROLE;
        SET standard_conforming_strings = off;
        SELECT 'it\'s' AS quoted;
        CREATE TEMP TABLE notes (t text) ON COMMIT DROP;
        DO $$ BEGIN EXECUTE 'SELECT 1'; END $$;
    """
    out = psql(gw.dsn(tok), "-At", input=script, check=True)
    lines = out.stdout.split()
    assert lines[:4] == ["SET", "pg_catalog", "SET", "transparency_reader"], out.stdout
    assert "it's" in lines, out.stdout


def test_column_masking_keeps_the_role_and_says_why(make_gateway, pg):
    gw = make_gateway(extra_toml=COLUMN_RULE)
    tok = gw.token()
    out = psql(gw.dsn(tok), "-At", "-c", "SET ROLE transparency_reader", check=False)
    assert out.returncode != 0
    assert 'refused by rule "assume-role"' in out.stderr, out.stderr
    assert "column masking" in out.stderr and "assume-role" in out.stderr, out.stderr
    out = psql(gw.dsn(tok), "-At", "-c", "SET standard_conforming_strings = off", check=False)
    assert 'refused by rule "protected-setting"' in out.stderr, out.stderr
    # Masking reads an unqualified name in every schema, so the search_path is the session's.
    assert psql(gw.dsn(tok), "-At", "-c", "SET search_path = other, public", check=True).stdout.strip() == "SET"


def test_the_search_path_is_kept_only_where_a_rule_names_schemas_and_the_refusal_says_which(make_gateway):
    gw = make_gateway(extra_toml="""
[policy]
default = "deny"

[[policy.rules]]
name = "app-schema"
effect = "allow"
objects = ["public.*"]

[[policy.rules]]
name = "sessions"
effect = "allow"
kinds = ["set", "read", "transaction"]
""")
    tok = gw.token()
    out = psql(gw.dsn(tok), "-At", "-c", "SET search_path = other, public", check=False)
    assert out.returncode != 0
    assert 'rule "app-schema" names objects by schema' in out.stderr, out.stderr
    assert "schema-qualify names instead" in out.stderr, out.stderr


def test_a_column_rule_on_a_table_this_database_lacks_costs_nothing_until_it_exists(make_gateway, pg):
    """A column rule elsewhere: with no column it covers in the database, the session is followed
    as if there were no rule. Once such a column exists, a session that changed its role or ran
    dynamic SQL meanwhile cannot go on (masking reads statements under the connection's state),
    and a new one keeps the role."""
    gw = make_gateway(extra_toml="""
[[masking.columns]]
name = "vault"
columns = ["public.transparency_vault.secret"]
""")
    tok = gw.token()
    pg.query("DROP TABLE IF EXISTS transparency_vault")
    pg.query("GRANT transparency_reader TO app")
    with psycopg.connect(gw.dsn(tok), autocommit=True) as conn:
        assert conn.execute("SET ROLE transparency_reader").statusmessage == "SET"
        conn.execute("RESET ROLE")
        conn.execute("DO $$ BEGIN EXECUTE 'SELECT 1'; END $$")
        pg.query("CREATE TABLE transparency_vault (secret text)")
        # sluice trusts a reading of the catalog for a second (docs/policy.md).
        time.sleep(1.2)
        try:
            with pytest.raises(psycopg.OperationalError) as ended:
                conn.execute("SELECT 1")
            assert "now exists in this database" in str(ended.value), ended.value
        finally:
            with psycopg.connect(gw.dsn(tok), autocommit=True) as again:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                    again.execute("SET ROLE transparency_reader")
                assert "assume-role" in str(refused.value)
            pg.query("DROP TABLE transparency_vault")


def test_large_objects_through_the_fast_path(make_gateway, pg, tmp_path):
    """Cause 8: psql's \\lo_import and \\lo_unlink use fast-path FunctionCalls: decided like the
    SELECT they amount to, allowed under an allow policy, refused on a read-only connection."""
    gw = make_gateway(extra_toml=ALLOW_ALL_NO_MASKING.format(port=pg.port))
    tok = gw.token()
    source = tmp_path / "blob.txt"
    source.write_text("a large object through sluice\n")
    out = psql(gw.dsn(tok), "-At", "-c", f"\\lo_import {source}", check=True)
    oid = int(out.stdout.split()[-1])
    try:
        assert pg.query(f"SELECT convert_from(lo_get({oid}), 'UTF8')")[0][0] == source.read_text()
        out = psql(gw.dsn(tok, connection="shop_ro"), "-At", "-c", f"\\lo_import {source}", check=False)
        assert out.returncode != 0
        assert "read-only" in out.stderr, out.stderr
        psql(gw.dsn(tok), "-At", "-c", f"\\lo_unlink {oid}", check=True)
        assert pg.query(f"SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}")[0][0] == 0
    finally:
        pg.query(f"SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = {oid}")


def test_a_large_object_read_through_the_fast_path_is_masked(gateway, token, pg, tmp_path):
    r"""The default gateway's detectors: \lo_export reads with loread over the fast path, and what
    it reads is masked like any result."""
    oid = pg.query("SELECT lo_from_bytea(0, convert_to('card 4111 1111 1111 1111 on file', 'UTF8'))")[0][0]
    pg.query(f"ALTER LARGE OBJECT {oid} OWNER TO app")
    target = tmp_path / "exported.txt"
    try:
        psql(gateway.dsn(token), "-At", "-c", f"\\lo_export {oid} {target}", check=True)
        exported = target.read_text()
        # A bytea value with a finding is withheld whole (docs/masking.md); over the fast path
        # it keeps its length, as libpq reads it into a buffer of the size it asked for.
        assert "4111" not in exported and len(exported) == len("card 4111 1111 1111 1111 on file"), exported
    finally:
        pg.query(f"SELECT lo_unlink({oid})")


@pytest.mark.slow
def test_postgresql_regression_suite_passes_through_sluice(capsys):
    """The bar of issue #23: every test of PostgreSQL's own parallel schedule that passes straight
    to the server passes through sluice with an allow-all policy and masking off, and with a column
    rule elsewhere. The script prints the counts; it fails when any test is lost."""
    env = dict(os.environ, SLUICE_BIN=str(sluice_binary()))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "pg-regress.sh")], capture_output=True, text=True,
                            env=env, timeout=1800)
    with capsys.disabled():
        # The counts, in the suite's output whether it passes or not.
        print("\nPostgreSQL regression suite (scripts/pg-regress.sh):\n" + result.stdout)
    assert result.returncode == 0, result.stderr[-4000:]
    counts = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert set(counts) == {"direct", "allow-all", "masked"}, result.stdout


def test_a_number_the_grammar_rejects_does_not_refuse_the_same_statement_with_another(gateway, token, pg):
    """The classification cache folds numbers out of its keys; a rejection is kept for its own text
    only (the regression suite's alter_table found this)."""
    pg.query("CREATE TABLE IF NOT EXISTS folded_numbers (a int, d float8, e float8)")
    pg.query("CREATE INDEX IF NOT EXISTS folded_numbers_idx ON folded_numbers (a, (d + e))")
    pg.query("ALTER TABLE folded_numbers OWNER TO app")
    script = ("ALTER INDEX folded_numbers_idx ALTER COLUMN 0 SET STATISTICS 100;\n"
              "ALTER INDEX folded_numbers_idx ALTER COLUMN 2 SET STATISTICS 100;\n")
    out = psql(gateway.dsn(token), "-At", "-v", "ON_ERROR_STOP=0", input=script)
    assert "LINE 1: ALTER INDEX folded_numbers_idx ALTER COLUMN 0" in out.stderr, out.stderr
    assert out.stdout.strip() == "ALTER INDEX", (out.stdout, out.stderr)
    assert pg.query("SELECT attstattarget FROM pg_attribute WHERE attrelid = 'folded_numbers_idx'::regclass "
                    "AND attnum = 2")[0][0] == 100
