"""Masking end to end: a table of realistic personal data and secrets (in plain columns, inside free
text, inside jsonb, as a bigint) read through psql, psycopg in text and binary, asyncpg and COPY in
every format. No sensitive value may reach the client or the recording; everything else must arrive
untouched and typed as the server sent it."""

import asyncio
import datetime
import json
import subprocess
import uuid

import asyncpg
import psycopg
import pytest

from conftest import psql, sluice_binary

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----"
)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"

# Every one of these must be absent from everything the client receives.
SENSITIVE = [
    "4111 1111 1111 1111", "4111111111111111", "5500-0055-5555-5559", "5500005555555559",
    "123-45-6789", "078-05-1120",
    "jane.doe@example.com", "j.smith+billing@corp.example.org",
    "(415) 555-2671", "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
    "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "xoxb-123456789012-abcdefghijkl",
    "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "sk-proj-abcdefghijklmnopqrstuv123",
    JWT, "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
]

# Look-alikes and ordinary values that must arrive exactly as stored.
UNTOUCHED = [
    "Jane Doe", "John Smith", "ORD-2026-000123", "order 1234567812345678", "4111111111111112",
    "550e8400-e29b-41d4-a716-446655440000", "2026-11-24 12:34:56", "version 1.2.3", "192.168.100.200",
    "call back on Monday",
]

SCHEMA = f"""
DROP TABLE IF EXISTS people;
CREATE TABLE people (
    id int PRIMARY KEY,
    name text NOT NULL,
    email text,
    ssn varchar(11),
    card char(19),
    phone text,
    iban text,
    notes text,
    profile jsonb,
    card_number bigint,
    tags text[],
    ref uuid,
    created_at timestamptz,
    order_ref text
);
INSERT INTO people VALUES
 (1, 'Jane Doe', 'jane.doe@example.com', '123-45-6789', '4111 1111 1111 1111', '(415) 555-2671',
  'DE89 3704 0044 0532 0130 00',
  'call back on Monday; card on file 5500-0055-5555-5559, key AKIAIOSFODNN7EXAMPLE',
  '{{"contact": {{"email": "j.smith+billing@corp.example.org", "phone": "+44 20 7946 0958"}},
    "tokens": ["ghp_abcdefghijklmnopqrstuvwxyz0123456789", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"],
    "card": 4111111111111111, "plan": "pro", "seats": 12}}',
  5500005555555559, ARRAY['xoxb-123456789012-abcdefghijkl', 'vip'],
  '550e8400-e29b-41d4-a716-446655440000', '2026-11-24 12:34:56+00', 'ORD-2026-000123'),
 (2, 'John Smith', NULL, '078-05-1120', NULL, NULL, 'GB82WEST12345698765432',
  $$deploy key {PEM} and jwt {JWT} and AIzaSyA-abcdefghijklmnopqrstuvwxyz01234 sk-proj-abcdefghijklmnopqrstuv123$$,
  '{{"note": "order 1234567812345678", "version": "version 1.2.3", "ip": "192.168.100.200"}}',
  4111111111111112, ARRAY['4111111111111112'], NULL, '2026-11-24 12:34:56+00', 'order 1234567812345678');
GRANT SELECT ON people TO app;
"""

QUERY = "SELECT * FROM people ORDER BY id"


@pytest.fixture(scope="module")
def people(pg):
    with pg.connect() as conn:
        conn.execute(SCHEMA)
    yield
    pg.query("DROP TABLE IF EXISTS people")


def assert_clean(text):
    leaked = [s for s in SENSITIVE if s in text]
    assert not leaked, f"leaked {leaked} in:\n{text}"


def assert_untouched(text, typed=False):
    """`typed`: the text is a repr of driver values, where timestamps are datetime objects."""
    expected = [s for s in UNTOUCHED if not (typed and s == "2026-11-24 12:34:56")]
    missing = [s for s in expected if s not in text]
    assert not missing, f"lost {missing} in:\n{text}"


def test_psql_simple_protocol(gateway, token, people):
    result = psql(gateway.dsn(token), "-A", sql=QUERY)
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout)
    assert_untouched(result.stdout)
    assert "[redacted:credit-card]" in result.stdout and "[redacted:private-key]" in result.stdout


def test_values_spelled_in_escapes_are_masked(gateway, token):
    # A link, a page and an escaped document stored as text: the detectors read what the escapes
    # spell, and mask the escaped bytes.
    sql = ("SELECT 'https://crm/?email=ann%40example.com&page=2' AS link, "
           "'<td>ann&#64;example&#x2e;com</td>' AS page, "
           "'{\\\"card\\\": \\\"4111\\u00201111\\u00201111\\u00201111\\\"}' AS quoted, "
           "'twice: 4111%25201111%25201111%25201111' AS twice, "
           "'/people?ssn=078+05+1120&page=2' AS plus")
    result = psql(gateway.dsn(token), "-A", sql=sql)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for spelled in ["ann%40example.com", "ann&#64;example", "4111\\u00201111", "4111%25201111"]:
        assert spelled not in out, out
    assert "https://crm/?email=[redacted:email]&page=2" in out, out
    assert "<td>[redacted:email]</td>" in out, out
    assert out.count("[redacted:credit-card]") == 2, out
    assert "/people?ssn=[redacted:ssn]&page=2" in out and "078+05" not in out, out


def test_values_shown_through_other_characters_are_masked(gateway, token):
    # What a terminal or a browser shows as a number or an address, though its bytes are not
    # the ASCII ones: a no-break space, fullwidth and Arabic-Indic digits, a zero-width space, a
    # colour code inside the value, letters of other scripts.
    sql = ("SELECT E'4111\\u00a01111\\u00a01111\\u00a01111' AS nbsp, '０７８－０５－１１２０' AS fullwidth, "
           "'٠٧٨-٠٥-١١٢٠' AS arabic, E'ann\\u200b@example.com' AS zero_width, "
           "E'ssn=\\x1b[1m078-05-1120\\x1b[0m' AS coloured, 'josé@exämple.com' AS idn, "
           "'Café “naïve” — 3–4 日本語' AS prose")
    result = psql(gateway.dsn(token), "-A", "-t", sql=sql)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split("|") == [
        "[redacted:credit-card]", "[redacted:ssn]", "[redacted:ssn]", "[redacted:email]", "ssn=\x1b[1m[redacted:ssn]",
        "[redacted:email]", "Café “naïve” — 3–4 日本語"], result.stdout


def test_text_stored_in_base64_is_masked_whole(gateway, token):
    sql = ("SELECT encode(convert_to('owner: ann@example.com', 'UTF8'), 'base64') AS text_file, "
           "encode(sha256('ann@example.com'), 'base64') AS digest")
    result = psql(gateway.dsn(token), "-A", "-t", sql=sql)
    assert result.returncode == 0, result.stderr
    text_file, digest = result.stdout.strip().split("|")
    assert text_file == "[redacted:email]", result.stdout
    assert len(digest) == 44 and digest.endswith("="), result.stdout


def test_without_masking_the_same_query_leaks(make_gateway, people):
    """The control: the same fixture through a gateway with masking off shows the values, so the
    assertions above are about sluice's masking and nothing else."""
    gw = make_gateway(extra_toml="[masking]\nenabled = false\n")
    result = psql(gw.dsn(gw.token()), "-A", sql=QUERY)
    assert result.returncode == 0, result.stderr
    assert "123-45-6789" in result.stdout and "jane.doe@example.com" in result.stdout


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_text_and_binary(gateway, token, people, binary):
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT * FROM people WHERE id = ANY(%s) ORDER BY id", [[1, 2]])
        rows = cur.fetchall()
        assert cur.pgresult.fformat(0) == (1 if binary else 0)
    jane, john = rows
    assert_clean(repr(rows))
    assert_untouched(repr(rows), typed=True)
    assert jane[12] == datetime.datetime(2026, 11, 24, 12, 34, 56, tzinfo=datetime.timezone.utc)
    # Types survive: ints, uuid, timestamps, jsonb as a dict, arrays as lists.
    assert jane[0] == 1 and isinstance(jane[11], uuid.UUID) and isinstance(jane[12], datetime.datetime)
    assert jane[1] == "Jane Doe" and jane[13] == "ORD-2026-000123"
    assert jane[2] == "[redacted:email]" and jane[3] == "[redacted:ssn]"
    profile = jane[8]
    assert isinstance(profile, dict), profile
    assert profile["contact"]["email"] == "[redacted:email]"
    assert profile["card"] == "[redacted:credit-card]"
    assert profile["plan"] == "pro" and profile["seats"] == 12
    assert jane[9] is None, "a card number stored as bigint becomes NULL"
    assert jane[10] == ["[redacted:slack-token]", "vip"], "arrays of text are masked element by element"
    assert john[9] == 4111111111111112, "a number that fails Luhn is left alone"
    assert john[8] == {"note": "order 1234567812345678", "version": "version 1.2.3", "ip": "192.168.100.200"}


def test_psycopg_server_side_prepared_statement(gateway, token, people):
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        for _ in range(3):
            rows = conn.execute("SELECT name, email, notes FROM people WHERE id = %s", [1], prepare=True).fetchall()
            assert rows[0][0] == "Jane Doe"
            assert_clean(repr(rows))


def test_asyncpg_binary_with_described_statements(gateway, token, people):
    async def main():
        conn = await asyncpg.connect(gateway.dsn(token, sslmode="disable"))
        try:
            rows = await conn.fetch(QUERY)
            stmt = await conn.prepare("SELECT email, card_number, profile, ssn FROM people WHERE id = $1")
            one = await stmt.fetchrow(1)
            again = await stmt.fetchrow(1)
            return rows, one, again
        finally:
            await conn.close()

    rows, one, again = asyncio.run(main())
    text = repr([dict(r) for r in rows]) + repr(dict(one)) + repr(dict(again))
    assert_clean(text)
    assert_untouched(text, typed=True)
    assert one["email"] == "[redacted:email]" and one["card_number"] is None
    assert json.loads(one["profile"])["plan"] == "pro"


# 49 characters: in binary form its length prefix ends in the byte "1", which read together with
# the value would glue a digit to the card number and hide it from the detector.
GLUED_CARD = "4111 1111 1111 1111 " + "x" * 29


def test_binary_arrays_and_records_are_read_element_by_element(gateway, token):
    assert len(GLUED_CARD) == 49

    async def main():
        conn = await asyncpg.connect(gateway.dsn(token, sslmode="disable"))
        try:
            return await conn.fetchrow(
                "SELECT ARRAY['fine', NULL, $1::text] AS a, ROW(7, ARRAY[$1::text]) AS r, 'ok'::text AS t", GLUED_CARD)
        finally:
            await conn.close()

    row = asyncio.run(main())
    assert row["a"] == ["fine", None, "[redacted:credit-card] " + "x" * 29]
    assert row["r"] is None, "a record holding the card becomes NULL whole"
    assert row["t"] == "ok"
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        got = conn.cursor(binary=True).execute("SELECT ARRAY[%s::varchar, 'b']", [GLUED_CARD]).fetchone()[0]
        assert got == ["[redacted:credit-card] " + "x" * 29, "b"]
        with conn.cursor().copy("COPY (SELECT 1, ARRAY[%s::text]) TO STDOUT (FORMAT binary)", [GLUED_CARD]) as copy:
            copy.set_types(["int4", "text[]"])
            assert list(copy.rows()) == [(1, None)], "binary COPY: the array field becomes NULL"


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_copy_out_text_and_csv(gateway, token, people, fmt):
    result = psql(gateway.dsn(token), sql=f"COPY (SELECT * FROM people ORDER BY id) TO STDOUT WITH (FORMAT {fmt})")
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout)
    assert "Jane Doe" in result.stdout and "ORD-2026-000123" in result.stdout
    table = psql(gateway.dsn(token), sql=f"COPY people TO STDOUT WITH (FORMAT {fmt})")
    assert table.returncode == 0, table.stderr
    assert_clean(table.stdout)


def test_copy_out_binary(gateway, token, people):
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        with conn.cursor().copy("COPY (SELECT id, name, ssn, notes FROM people ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4", "text", "varchar", "text"])
            rows = list(copy.rows())
    assert rows[0][:2] == (1, "Jane Doe") and rows[1][:2] == (2, "John Smith")
    assert rows[0][2] is None and rows[0][3] is None, "fields with findings become NULL"
    assert_clean(repr(rows))


def test_errors_that_echo_values_are_masked(gateway, token, people):
    result = psql(gateway.dsn(token), sql="SELECT '123-45-6789'::int")
    assert result.returncode != 0
    # psql echoes its own query text after the server's message ("LINE 1: …"); only the server's
    # words came through sluice.
    server_line = result.stderr.splitlines()[0]
    assert "invalid input syntax for type integer" in server_line
    assert "123-45-6789" not in server_line and "[redacted:ssn]" in server_line, server_line
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as err:
            conn.execute("SELECT %s::int", ["jane.doe@example.com"])
        assert "jane.doe@example.com" not in str(err.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'card %', '4111 1111 1111 1111'; END $$")
        assert notices and "4111" not in notices[0] and "[redacted:credit-card]" in notices[0]



def test_every_field_of_errors_and_parameter_status_is_masked(gateway, token, people):
    """RAISE … USING sets schema, table, column, datatype and constraint fields to any text, and
    set_config('application_name', …) reports its value in a ParameterStatus: both from a table."""
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException) as err:
            conn.execute("DO $$BEGIN RAISE EXCEPTION 'x' USING COLUMN = (SELECT email FROM people WHERE id = 1), "
                         "TABLE = (SELECT ssn FROM people WHERE id = 1), SCHEMA = (SELECT card FROM people LIMIT 1), "
                         "DATATYPE = (SELECT email FROM people WHERE id = 1), "
                         "CONSTRAINT = (SELECT ssn FROM people WHERE id = 1); END$$")
        diag = err.value.diag
        fields = [diag.column_name, diag.table_name, diag.schema_name, diag.datatype_name, diag.constraint_name]
        assert all(fields), fields
        assert_clean(repr(fields))
        assert "[redacted:email]" in diag.column_name and "[redacted:ssn]" in diag.table_name, fields
        conn.execute("SELECT set_config('application_name', (SELECT email FROM people WHERE id = 1), false)")
        reported = conn.info.parameter_status("application_name")
        assert reported == "[redacted:email]", reported
        assert conn.execute("SHOW server_version_num").fetchone()[0].isdigit(), "other parameters pass"

def test_recording_keeps_statements_masked(gateway, token, people):
    marker = "recording-mask-check"
    with psycopg.connect(gateway.dsn(token, application_name=marker), autocommit=True) as conn:
        conn.execute("SELECT id FROM people WHERE email = 'jane.doe@example.com' OR ssn = '123-45-6789'")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("SELECT 'AKIAIOSFODNN7EXAMPLE'::int")
    details = gateway.session_with(lambda d: d["session"]["application_name"] == marker)
    recorded = json.dumps(details)
    assert_clean(recorded)
    assert "WHERE email = '[redacted:email]' OR ssn = '[redacted:ssn]'" in recorded
    assert "[redacted:aws-access-key]" in recorded


def test_mask_test_shows_findings_and_result(gateway):
    result = gateway.cli("mask", "test", "--json", "card 4111-1111-1111-1111 for ORD-2026-000123, mail jane.doe@example.com")
    report = json.loads(result.stdout)
    assert [f["detector"] for f in report["findings"]] == ["credit-card", "email"]
    assert report["masked"] == "card [redacted:credit-card] for ORD-2026-000123, mail [redacted:email]"
    plain = gateway.cli("mask", "test", "nothing 1234567812345678 here").stdout
    assert "nothing found" in plain


def test_detector_choice_and_actions_from_config(make_gateway, people):
    gw = make_gateway(extra_toml="""
[masking]
detectors = ["credit-card", "email"]
detector_actions = { credit-card = "partial", email = "token" }

[[masking.custom_detectors]]
name = "order-ref"
pattern = 'ORD-\\d{4}-\\d{6}'
""")
    result = psql(gw.dsn(gw.token()), "-A", "-t", sql="SELECT card, email, ssn, order_ref FROM people WHERE id = 1")
    assert result.returncode == 0, result.stderr
    card, email, ssn, order_ref = result.stdout.strip().split("|")
    assert card == "**** **** **** 1111"
    assert email.startswith("tok_") and len(email) == 20
    assert ssn == "123-45-6789", "the ssn detector is off in this configuration"
    assert order_ref == "[redacted:order-ref]"
    again = psql(gw.dsn(gw.token()), "-A", "-t", sql="SELECT email FROM people WHERE id = 1").stdout.strip()
    assert again == email, "tokens are deterministic, so values stay joinable"


def test_a_bad_masking_config_stops_the_gateway(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[server]\nstate_dir = "state"\n[masking]\ndetectors = ["credit-cards"]\n')
    result = subprocess.run([str(sluice_binary()), "--config", str(config), "serve"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert 'unknown detector "credit-cards"' in result.stderr and "credit-card, ssn" in result.stderr


COLUMN_RULES = """
[[masking.columns]]
name = "hr-private"
columns = ["public.staff.salary", "staff.diagnosis"]
action = "redact"
groups = ["agents"]

[[masking.columns]]
name = "staff-phone"
columns = ["public.staff.phone_ext"]
action = "partial"
keep_last = 2
"""


@pytest.fixture(scope="module")
def staff(pg):
    with pg.connect() as conn:
        conn.execute("""
            DROP TABLE IF EXISTS staff;
            CREATE TABLE staff (id int PRIMARY KEY, name text, salary int, diagnosis text, phone_ext text);
            INSERT INTO staff VALUES (1, 'Ann Lee', 185000, 'chronic migraine', '4471'),
                                     (2, 'Bo Chan', 92000, NULL, '4472');
            GRANT SELECT ON staff TO app;
        """)
    yield
    pg.query("DROP TABLE IF EXISTS staff")


STAFF_VIEWS = """
    CREATE VIEW staff_public AS SELECT id, name, upper(diagnosis) AS condition, salary AS pay, phone_ext FROM staff;
    CREATE VIEW staff_notes AS SELECT id, 'dx: ' || condition AS note FROM staff_public;
    CREATE MATERIALIZED VIEW staff_snapshot AS SELECT id, substr(diagnosis, 1, 5) AS dx_head FROM staff;
    GRANT SELECT ON staff_public, staff_notes, staff_snapshot TO app;
    CREATE FUNCTION staff_dx() RETURNS SETOF text LANGUAGE sql STABLE AS $$ SELECT reverse(diagnosis) FROM staff $$;
    CREATE FUNCTION staff_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM staff $$;
    CREATE FUNCTION staff_row(int) RETURNS SETOF staff LANGUAGE sql STABLE AS $$ SELECT * FROM staff WHERE id = $1 $$;
    CREATE FUNCTION staff_ids(text) RETURNS SETOF int LANGUAGE sql STABLE
        AS $$ SELECT id FROM staff WHERE diagnosis = $1 $$;
"""


@pytest.fixture(scope="module")
def staff_views(pg, staff):
    """Views and functions an operator made over the masked columns (not through sluice)."""
    with pg.connect() as conn:
        conn.execute(STAFF_VIEWS)
    yield
    with pg.connect() as conn:
        conn.execute("DROP VIEW IF EXISTS staff_notes, staff_public; DROP MATERIALIZED VIEW IF EXISTS staff_snapshot; "
                     "DROP FUNCTION IF EXISTS staff_dx(), staff_count(), staff_row(int), staff_ids(text)")


@pytest.fixture(scope="module")
def rules_gw(pg, staff, staff_views):
    from conftest import Sluice

    gw = Sluice(pg, extra_toml=COLUMN_RULES).start()
    yield gw
    assert gw.stop() == 0 and "panicked" not in gw.log(), gw.log()
    gw.cleanup()


def test_column_rules_by_catalog_lineage(rules_gw):
    token = rules_gw.token(groups="agents")
    out = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT id, name, salary, diagnosis, phone_ext FROM staff ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1|Ann Lee||[redacted:hr-private]|**71", "2|Bo Chan|||**72"]
    # Aliases, subqueries and * keep the column's origin, so the rule follows it.
    aliased = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT d FROM (SELECT diagnosis AS d FROM staff WHERE id = 1) s")
    assert aliased.stdout.strip() == "[redacted:hr-private]"
    star = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT * FROM staff WHERE id = 1")
    assert "185000" not in star.stdout and "migraine" not in star.stdout


def test_column_rules_over_the_extended_protocol(rules_gw):
    token = rules_gw.token(groups="agents")
    with psycopg.connect(rules_gw.dsn(token), autocommit=True) as conn:
        for binary in (False, True):
            rows = conn.cursor(binary=binary).execute(
                "SELECT id, salary, diagnosis FROM staff WHERE id = %s", [1], prepare=True).fetchall()
            assert rows == [(1, None, "[redacted:hr-private]")]

    async def main():
        conn = await asyncpg.connect(rules_gw.dsn(token, sslmode="disable"))
        try:
            stmt = await conn.prepare("SELECT id, salary, diagnosis, phone_ext FROM staff WHERE id = $1")
            return [await stmt.fetchrow(1), await stmt.fetchrow(2)]
        finally:
            await conn.close()

    first, second = asyncio.run(main())
    assert tuple(first) == (1, None, "[redacted:hr-private]", "**71")
    assert tuple(second) == (2, None, None, "**72")


def test_column_rules_are_scoped_to_callers(rules_gw):
    token = rules_gw.token(identity="hr-bot", groups="hr")
    out = psql(rules_gw.dsn(token, user="hr-bot"), "-At", sql="SELECT salary, diagnosis, phone_ext FROM staff WHERE id = 1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "185000|chronic migraine|**71", "hr-private applies to agents only"


@pytest.mark.parametrize("sql", [
    "SELECT upper(diagnosis) FROM staff",
    "SELECT diagnosis || '' FROM staff",
    "SELECT substr(diagnosis, 1, 3) AS d FROM staff",
    "SELECT salary::text FROM staff",
    "SELECT row_to_json(s) FROM staff s",
    "SELECT to_jsonb(staff.*) FROM staff",
    "SELECT (SELECT diagnosis FROM staff LIMIT 1) AS x",
    "SELECT upper(x) FROM (SELECT diagnosis AS x FROM staff) t",
    "WITH t AS (SELECT diagnosis FROM staff) SELECT md5(diagnosis) FROM t",
    "CREATE TEMP TABLE leak AS SELECT diagnosis FROM staff",
    "COPY staff TO STDOUT",
    "COPY (SELECT id, diagnosis FROM staff) TO STDOUT",
    "CREATE FUNCTION leak() RETURNS SETOF text LANGUAGE sql AS $$ SELECT reverse(diagnosis) FROM staff $$",
    "CREATE FUNCTION leak2() RETURNS text LANGUAGE plpgsql AS $$ DECLARE d text; "
    "BEGIN SELECT diagnosis INTO d FROM staff LIMIT 1; RETURN reverse(d); END $$",
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT reverse(diagnosis) FROM staff LIMIT 1); END $$",
    "SELECT lower(condition) FROM staff_public",
    "SELECT note || '' FROM staff_notes",
    "SELECT row_to_json(s) FROM staff_snapshot s",
    "CREATE TEMP TABLE leak AS SELECT condition FROM staff_public",
    "SELECT staff_dx()",
    "SELECT * FROM public.staff_dx() AS d",
    # Every query shape, not only the select list (issue #22, item 2).
    "SELECT reverse(x) FROM (SELECT diagnosis FROM staff) s(x)",
    "WITH s(x) AS (SELECT diagnosis FROM staff) SELECT translate(x, 'aeiou', '12345') FROM s",
    "SELECT v.x FROM staff c, LATERAL (VALUES (reverse(c.diagnosis))) v(x)",
    "SELECT v.x FROM staff c, LATERAL (VALUES (c.diagnosis)) v(x)",
    "VALUES (reverse((SELECT diagnosis FROM staff WHERE id = 1)))",
    "SELECT * FROM reverse((SELECT diagnosis FROM staff WHERE id = 1)) t",
    "SELECT translate(row_to_json(s)::text, 'aeiou', '12345') FROM (SELECT * FROM staff) s",
    "SELECT diagnosis FROM staff UNION ALL SELECT NULL WHERE false",
    "SELECT salary FROM staff INTERSECT SELECT salary FROM staff",
    "SELECT 1 FROM staff WHERE translate(diagnosis, ' ', 'x')::int = 0",
    "SELECT 1 FROM staff WHERE salary::text::int / 0 = 1",
    "SELECT reverse(diagnosis) FROM staff_row(1)",
    "SELECT * FROM staff_row(1)",
    "SELECT f.x FROM staff c, LATERAL unnest(ARRAY[c.diagnosis]) f(x)",
    "SELECT s FROM (SELECT diagnosis FROM staff) s",
    "SELECT * FROM staff a FULL JOIN staff b USING (diagnosis)",
    "WITH RECURSIVE t(d) AS (SELECT diagnosis FROM staff) SEARCH DEPTH FIRST BY d SET o SELECT o FROM t",
    "SELECT id FROM staff ORDER BY reverse(diagnosis)",
    "SELECT max(salary) FROM staff",
])
def test_masked_columns_cannot_leave_through_expressions_copies_or_copy(rules_gw, sql):
    token = rules_gw.token(groups="agents")
    out = psql(rules_gw.dsn(token), "-v", "VERBOSITY=verbose", sql=sql)
    assert out.returncode != 0, out.stdout
    assert "42501" in out.stderr and 'refused by rule "masking"' in out.stderr, out.stderr
    assert "HINT:" in out.stderr
    assert "migraine" not in out.stdout + out.stderr and "185000" not in out.stdout + out.stderr


def test_masking_refusals_name_the_rules_and_what_to_run_instead(rules_gw):
    token = rules_gw.token(groups="agents")
    copy = psql(rules_gw.dsn(token), sql="COPY staff TO STDOUT")
    assert "DETAIL:  masked columns in scope: public.staff.salary, *.staff.diagnosis (rule hr-private); " \
           "public.staff.phone_ext (rule staff-phone)" in copy.stderr, copy.stderr
    assert "HINT:  run SELECT * FROM staff instead" in copy.stderr, copy.stderr
    # The rows of that SELECT do come back masked.
    out = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT * FROM staff ORDER BY id")
    assert out.returncode == 0 and "migraine" not in out.stdout and "[redacted:hr-private]" in out.stdout
    computed = psql(rules_gw.dsn(token), sql="SELECT upper(diagnosis) FROM staff")
    assert "DETAIL:  masked columns in scope:" in computed.stderr and "compute on the client" in computed.stderr


@pytest.mark.parametrize("sql, expected", [
    ("SELECT count(*) FROM staff", "2"),
    ("SELECT upper(name) FROM staff WHERE id = 1", "ANN LEE"),
    ("SELECT s.name FROM staff s WHERE id = 1", "Ann Lee"),
    ("SELECT x FROM (SELECT diagnosis AS x FROM staff WHERE id = 1) t", "[redacted:hr-private]"),
    ("SELECT upper(name) FROM staff_public WHERE id = 1", "ANN LEE"),
    ("SELECT count(*) FROM staff_notes", "2"),
    ("SELECT staff_count()", "2"),
    # Compared, not computed on: allowed (a blind oracle, see docs/masking.md).
    ("SELECT id FROM staff WHERE diagnosis LIKE 'chronic%' AND salary > 100000", "1"),
    ("SELECT a.id FROM staff a JOIN staff b ON a.diagnosis = b.diagnosis", "1"),
    ("SELECT id FROM staff WHERE diagnosis IS NULL ORDER BY salary", "2"),
    ("SELECT staff_ids('chronic migraine')", "1"),
    ("WITH s(x) AS (SELECT diagnosis FROM staff WHERE id = 1) SELECT x FROM s", "[redacted:hr-private]"),
])
def test_plain_references_and_other_columns_still_work(rules_gw, sql, expected):
    token = rules_gw.token(groups="agents")
    out = psql(rules_gw.dsn(token), "-A", "-t", sql=sql)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_notification_payloads_are_masked(gateway, token, pg):
    with psycopg.connect(gateway.dsn(token), autocommit=True) as listener:
        listener.execute("LISTEN jobs")
        pg.query("SELECT pg_notify('jobs', 'refund to card 4111 1111 1111 1111 done')")
        notice = next(listener.notifies(timeout=10, stop_after=1))
    assert notice.channel == "jobs"
    assert notice.payload == "refund to card [redacted:credit-card] done"


def test_view_columns_carry_the_rules_of_the_columns_they_are_computed_from(rules_gw):
    token = rules_gw.token(groups="agents")
    out = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT id, name, condition, pay, phone_ext FROM staff_public ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1|Ann Lee|[redacted:hr-private]||**71", "2|Bo Chan|||**72"]
    notes = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT note FROM staff_notes WHERE id = 1")
    assert notes.stdout.strip() == "[redacted:hr-private]", "a view over a view"
    snapshot = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT dx_head FROM staff_snapshot WHERE id = 1")
    assert snapshot.stdout.strip() == "[redacted:hr-private]", "a materialized view keeps its own copy"
    with psycopg.connect(rules_gw.dsn(token), autocommit=True) as conn:
        row = conn.cursor(binary=True).execute("SELECT condition, pay FROM staff_public WHERE id = %s", [1]).fetchone()
    assert row == ("[redacted:hr-private]", None)
    # Scoped like the rule: hr-private is for agents, staff-phone for everyone.
    hr = rules_gw.token(identity="hr-bot", groups="hr")
    clear = psql(rules_gw.dsn(hr, user="hr-bot"), "-At", sql="SELECT condition, phone_ext FROM staff_public WHERE id = 1")
    assert clear.stdout.strip() == "CHRONIC MIGRAINE|**71", clear.stderr


def test_views_and_functions_made_while_sluice_runs_are_read_when_first_used(rules_gw, pg):
    token = rules_gw.token(groups="agents")
    assert psql(rules_gw.dsn(token), sql="SELECT 1").returncode == 0, "the catalog has been read before these exist"
    pg.query("CREATE VIEW staff_late AS SELECT id, lower(diagnosis) AS dx FROM staff")
    pg.query("GRANT SELECT ON staff_late TO app")
    pg.query("CREATE FUNCTION staff_late_dx() RETURNS SETOF text LANGUAGE sql AS $$ SELECT md5(diagnosis) FROM staff $$")
    try:
        out = psql(rules_gw.dsn(token), "-A", "-t", sql="SELECT id, dx FROM staff_late WHERE id = 1")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "1|[redacted:hr-private]"
        refused = psql(rules_gw.dsn(token), sql="SELECT md5(dx) FROM staff_late")
        assert refused.returncode != 0 and 'refused by rule "masking"' in refused.stderr, refused.stderr
        assert "staff_late" in refused.stderr
        called = psql(rules_gw.dsn(token), sql="SELECT staff_late_dx()")
        assert called.returncode != 0 and 'refused by rule "masking"' in called.stderr, called.stderr
        assert "public.staff_late_dx" in called.stderr
    finally:
        pg.query("DROP VIEW staff_late")
        pg.query("DROP FUNCTION staff_late_dx()")


def test_when_the_catalog_cannot_be_read_masking_fails_closed(rules_gw, pg):
    """New side connections refused (the database's connection limit at 0) while a session stays open: a statement that
    needs the catalog is refused, and a result whose column names cannot be looked up loses every
    table column (NULL), rather than either passing in clear."""
    pg.query("DROP TABLE IF EXISTS unseen")
    pg.query("CREATE TABLE unseen (id int, note text)")
    pg.query("INSERT INTO unseen VALUES (1, 'visible only by name')")
    pg.query("GRANT SELECT ON unseen TO app")
    token = rules_gw.token(groups="agents")
    try:
        with psycopg.connect(rules_gw.dsn(token), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            pg.query("ALTER DATABASE shop WITH CONNECTION LIMIT 0")
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute("SELECT made_while_blind()")
            message = str(refused.value)
            assert 'refused by rule "masking"' in message
            assert "cannot read the server's views and functions" in message, message
            assert conn.execute("SELECT id, note, 2 AS two FROM unseen").fetchone() == (None, None, 2)
    finally:
        pg.query("ALTER DATABASE shop WITH CONNECTION LIMIT -1")
        pg.query("DROP TABLE IF EXISTS unseen")
