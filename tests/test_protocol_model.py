"""The relay's model of the extended protocol, checked against PostgreSQL itself.

Each pipeline is sent twice: through sluice (column rules and detectors on, a table denied) and
straight to PostgreSQL over its Unix socket, where every statement sluice refuses is replaced by
text the server cannot parse (what sluice forwards in its place). The answers must match message
for message, except that no value of a masked column may ever come through sluice in clear, and
every value that is not masked must come through unchanged.

The seeded generator sends random pipelines of Parse/Bind/Describe/Execute/Close/Sync/Flush and
simple queries, SQL PREPARE/DEALLOCATE, cursors (DECLARE/FETCH/MOVE/CLOSE), transactions and
refused statements. `SLUICE_PIPELINE_SEEDS=500` runs it longer; a failing seed is named in the
assertion so it can be replayed with `SLUICE_PIPELINE_SEED=<n>`.
"""

import os
import random
import struct

import pytest

from pgwire import Raw, fields, message

REFUSAL_MARKER = "sluice refused this statement"

# Values that must never come through sluice in clear: the masked columns' and the denied table's.
SECRETS = [b"123-45-6789", b"234-56-7890", b"4111 1111 1111 1111", b"5500 0000 0000 0004",
           b"sk_live_4eC39HqLyjWDarjtT1zdp7dc", b"AKIAIOSFODNN7EXAMPLE", b"ann@example.com",
           b"bo@example.org", b"TOPSECRET-alpha"]

CONFIG = """
[[masking.columns]]
name = "customer-secrets"
columns = ["public.pm_customers.ssn", "public.pm_customers.card", "public.pm_customers.api_key"]
action = "redact"

[[policy.rules]]
name = "no-secrets"
effect = "deny"
objects = ["public.pm_secrets"]
reason = "the secrets table is off limits"
"""

STATEMENTS = [
    "SELECT id, name FROM pm_customers ORDER BY id",
    "SELECT 1::int4 AS x, 2::int8 AS y",
    "SELECT ssn, card, api_key, email FROM pm_customers ORDER BY id",
    "SELECT * FROM pm_customers ORDER BY id",
    "SELECT id, note FROM pm_customers WHERE id = 1",
    "SELECT * FROM pm_secrets",
    "SELECT reverse(ssn) FROM pm_customers",
    "SELEC 1",
]
# What sluice refuses (the direct run gets the marker in their place).
REFUSED = ("pm_secrets", "reverse(ssn)")


@pytest.fixture(scope="module")
def tables(pg):
    with pg.connect() as conn:
        conn.execute("""
            DROP TABLE IF EXISTS pm_customers, pm_secrets;
            CREATE TABLE pm_customers (id int PRIMARY KEY, name text, ssn text, card text, api_key text,
                                       email text, note text);
            INSERT INTO pm_customers VALUES
              (1, 'Ann', '123-45-6789', '4111 1111 1111 1111', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc',
               'ann@example.com', 'plain note'),
              (2, 'Bo', '234-56-7890', '5500 0000 0000 0004', 'AKIAIOSFODNN7EXAMPLE', 'bo@example.org', NULL);
            CREATE TABLE pm_secrets (v text);
            INSERT INTO pm_secrets VALUES ('TOPSECRET-alpha');
            GRANT SELECT ON pm_customers, pm_secrets TO app;
        """)
    yield
    pg.query("DROP TABLE IF EXISTS pm_customers, pm_secrets")


@pytest.fixture(scope="module")
def model_gw(pg, tables):
    from conftest import Sluice

    gw = Sluice(pg, extra_toml=CONFIG).start()
    gw.agent_token = gw.token()
    yield gw
    assert gw.stop() == 0 and "panicked" not in gw.log(), gw.log()[-3000:]
    gw.cleanup()


# --- messages -------------------------------------------------------------------------------------

def cstr(s):
    return s.encode() + b"\0"


def parse(name, sql):
    return message(b"P", cstr(name) + cstr(sql) + struct.pack("!h", 0))


def bind(portal, statement, formats=()):
    return message(b"B", cstr(portal) + cstr(statement) + struct.pack("!hh", 0, 0)
                   + struct.pack("!h", len(formats)) + b"".join(struct.pack("!h", f) for f in formats))


def describe(which, name):
    return message(b"D", which + cstr(name))


def execute(portal, max_rows=0):
    return message(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(which, name):
    return message(b"C", which + cstr(name))


SYNC, FLUSH = message(b"S", b""), message(b"H", b"")


def query(sql):
    return message(b"Q", cstr(sql))


def as_sent_directly(msg: bytes) -> bytes:
    """A message as sluice forwards it: a Query or Parse it refuses becomes text the server rejects."""
    tag = msg[:1]
    if tag == b"Q" and any(r in msg.decode() for r in REFUSED):
        return query(REFUSAL_MARKER)
    if tag == b"P":
        name, sql, _ = msg[5:].split(b"\0", 2)
        if any(r in sql.decode() for r in REFUSED):
            return parse(name.decode(), REFUSAL_MARKER)
    return msg


# --- running a pipeline both ways -------------------------------------------------------------------

# Answered in any state, an aborted transaction included: the server's "does not exist" error
# for this name marks the end of a batch's answers.
END = "__end_of_batch__"


def answers(raw, batch):
    """Sends one batch (ending in Sync) and the end marker; the answers to the batch."""
    raw.send(b"".join(batch) + describe(b"S", END) + SYNC)
    out = []
    while True:
        tag, body = raw.read()
        assert tag is not None, f"the connection closed; answers so far: {out}"
        if tag == b"E" and END.encode() in body:
            assert raw.read()[0] == b"Z"
            return out
        out.append((tag, body))


def values(body):
    count = struct.unpack("!h", body[:2])[0]
    pos, out = 2, []
    for _ in range(count):
        n = struct.unpack("!i", body[pos:pos + 4])[0]
        pos += 4
        out.append(None if n < 0 else body[pos:pos + n])
        pos += max(n, 0)
    return out


def compare(through, direct, context):
    """Checks sluice's answers against the server's own (see the module's docstring)."""
    for tag, body in through:
        leaked = [s for s in SECRETS if s in body]
        assert not leaked, f"{context}: {leaked} in clear in {tag} {body!r}"
    keep = lambda msgs: [(t, b) for t, b in msgs if t not in (b"S", b"N")]
    through, direct = keep(through), keep(direct)
    assert [t for t, _ in through] == [t for t, _ in direct], \
        f"{context}: message kinds differ\nsluice: {through}\ndirect: {direct}"
    for (tag, mine), (_, theirs) in zip(through, direct):
        if tag == b"E":
            continue  # sluice's refusals word their errors differently
        if tag != b"D":
            assert mine == theirs, f"{context}: {tag} differs: {mine!r} != {theirs!r}"
            continue
        a, b = values(mine), values(theirs)
        assert len(a) == len(b), f"{context}: row widths differ: {a} / {b}"
        for x, y in zip(a, b):
            secret = y is not None and any(s in y for s in SECRETS)
            if not secret:
                assert x == y, f"{context}: an unmasked value was altered: {x!r} != {y!r} (row {b})"


def run_both(gw, pg, batches, context):
    through = Raw(gw.port, gw.agent_token)
    direct = Raw.direct(pg.dir, pg.port, "app", "shop")
    try:
        for i, batch in enumerate(batches):
            theirs = answers(direct, [as_sent_directly(m) for m in batch])
            try:
                mine = answers(through, batch)
            except TimeoutError:
                raise AssertionError(f"{context}, batch {i}: sluice did not answer {batch}; the server did: {theirs}")
            compare(mine, theirs, f"{context}, batch {i}")
    finally:
        through.close()
        direct.close()


# --- the review's examples, and variants ------------------------------------------------------------

MASKED = "SELECT ssn, card, api_key, email FROM pm_customers ORDER BY id"


def test_a_closed_statement_prepared_again_in_sql_is_masked_by_its_own_shape(model_gw, pg):
    run_both(model_gw, pg, [
        [parse("foo", "SELECT 1::int4 AS x"), describe(b"S", "foo"), SYNC],
        [close(b"S", "foo"), SYNC],
        [query(f"PREPARE foo AS {MASKED}")],
        [bind("", "foo"), execute(""), SYNC],
        [bind("", "foo", [1]), execute(""), SYNC],
        # The name freed by DEALLOCATE and parsed again (no Describe) carries no old shape either.
        [query("DEALLOCATE foo"), parse("foo", "SELECT 7::int4"), bind("", "foo"), execute(""), SYNC],
    ], "stale statement shape")


def test_a_cursor_declared_again_under_a_described_name_is_masked_by_its_own_shape(model_gw, pg):
    run_both(model_gw, pg, [
        [query("BEGIN")],
        [query("DECLARE cur CURSOR FOR SELECT 1::int4 AS x"), describe(b"P", "cur"), execute("cur"), SYNC],
        [query("CLOSE cur")],
        [query(f"DECLARE cur CURSOR FOR {MASKED}")],
        [execute("cur", 1), SYNC],
        [execute("cur"), SYNC],
        [query("COMMIT")],
        # A portal described as int4, then replaced by a Bind of another statement under its name.
        [parse("a", "SELECT 1::int4"), bind("p", "a"), describe(b"P", "p"), SYNC],
        [parse("b", MASKED), bind("p", "b"), execute("p"), SYNC],
    ], "stale portal shape")


def test_a_query_skipped_after_a_pipeline_error_does_not_shift_the_answers(model_gw, pg):
    run_both(model_gw, pg, [
        [parse("x", "SELECT * FROM pm_secrets"), query("SELECT 1"), SYNC],
        [parse("y", "SELECT id FROM pm_customers ORDER BY id"), describe(b"S", "y"), bind("", "y"), execute(""),
         parse("z", MASKED), describe(b"S", "z"), bind("", "z"), execute(""), SYNC],
        [query("SELECT 42::int4"), parse("", "SELECT 'after'"), bind("", ""), execute(""), SYNC],
        # Every kind of message after the error is skipped, up to Sync.
        [parse("bad", "SELEC 1"), bind("", "y"), describe(b"P", ""), execute(""), close(b"S", "y"),
         query("SELECT 2"), FLUSH, SYNC],
        [bind("", "y"), execute(""), SYNC],
    ], "reply queue after an error")


def test_statement_names_follow_the_server(model_gw, pg):
    run_both(model_gw, pg, [
        # A Parse under a name SQL's PREPARE holds fails; a Bind runs SQL's statement.
        [query(f"PREPARE n1 AS {MASKED}")],
        [parse("n1", "SELECT 1::int4"), SYNC],
        [bind("", "n1"), execute(""), SYNC],
        # A Close skipped after an error leaves the statement in place.
        [parse("n2", "SELECT 2::int4"), SYNC],
        [parse("bad", "SELEC 1"), close(b"S", "n2"), SYNC],
        [bind("", "n2"), execute(""), SYNC],
        # A refused Parse under a held name leaves the old statement; an unnamed one is dropped.
        [parse("n2", "SELECT * FROM pm_secrets"), SYNC],
        [bind("", "n2"), execute(""), SYNC],
        [parse("", "SELECT 3::int4"), SYNC, parse("", "SELECT * FROM pm_secrets"), SYNC],
        [bind("", ""), execute(""), SYNC],
        # Closed and prepared again in one pipeline.
        [close(b"S", "n2"), parse("n2", "SELECT 4::int4"), bind("", "n2"), execute(""), SYNC],
        [query("DEALLOCATE ALL"), parse("n1", "SELECT 5::int4"), bind("", "n1"), execute(""), SYNC],
    ], "statement names")


# --- random pipelines ---------------------------------------------------------------------------------

NAMES, PORTALS = ["", "s1", "s2"], ["", "p1", "c1"]


def random_sql(rng):
    stmt = rng.choice(STATEMENTS)
    return rng.choice([
        stmt, stmt, f"SELECT 1; {stmt}",
        f"PREPARE {rng.choice(NAMES[1:])} AS {stmt}",
        f"DEALLOCATE {rng.choice(NAMES[1:])}", "DEALLOCATE ALL",
        f"DECLARE c1 CURSOR WITH HOLD FOR {stmt}", f"DECLARE c1 CURSOR FOR {stmt}",
        "CLOSE ALL", "FETCH 1 FROM c1", "FETCH ALL FROM c1", "MOVE 1 IN c1",
        "BEGIN", "COMMIT", "ROLLBACK",
    ])


def random_batch(rng):
    batch = []
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice("PPBBDEECHSQ")
        if kind == "P":
            batch.append(parse(rng.choice(NAMES), rng.choice(STATEMENTS)))
        elif kind == "B":
            formats = rng.choice([(), (0,), (1,)])
            batch.append(bind(rng.choice(PORTALS), rng.choice(NAMES), formats))
        elif kind == "D":
            which = rng.choice([b"S", b"P"])
            batch.append(describe(which, rng.choice(NAMES if which == b"S" else PORTALS)))
        elif kind == "E":
            batch.append(execute(rng.choice(PORTALS), rng.choice([0, 0, 1])))
        elif kind == "C":
            which = rng.choice([b"S", b"P"])
            batch.append(close(which, rng.choice(NAMES if which == b"S" else PORTALS)))
        elif kind == "H":
            batch.append(FLUSH)
        elif kind == "S":
            batch.append(SYNC)
        else:
            batch.append(query(random_sql(rng)))
    batch.append(SYNC)
    return batch


def seeds():
    if os.environ.get("SLUICE_PIPELINE_SEED"):
        return [int(os.environ["SLUICE_PIPELINE_SEED"])]
    return range(int(os.environ.get("SLUICE_PIPELINE_SEEDS", "25")))


def test_random_pipelines_match_the_server_and_never_leak(model_gw, pg):
    for seed in seeds():
        rng = random.Random(seed)
        batches = [random_batch(rng) for _ in range(12)]
        run_both(model_gw, pg, batches, f"seed {seed} (replay with SLUICE_PIPELINE_SEED={seed})")


def test_the_records_follow_the_pipeline(model_gw):
    """After the games above the session's record is complete: every Execute and query is there
    once, with its outcome, and none is attributed another's error."""
    raw = Raw(model_gw.port, model_gw.agent_token, user="agent")
    raw.send(parse("r1", "SELECT * FROM pm_secrets") + query("SELECT 'skipped'") + SYNC
             + parse("r2", "SELECT 41 + 1") + bind("", "r2") + execute("") + SYNC)
    out = raw.until_ready() + raw.until_ready()
    assert [t for t, _ in out if t in (b"E", b"D")] == [b"E", b"D"], out
    assert fields(next(b for t, b in out if t == b"E"))["C"] == "42501"
    raw.send(message(b"X", b""))
    raw.close()
    session = model_gw.session_with(lambda s: any(st["text"] == "SELECT 41 + 1" for st in s["statements"]))
    by_text = {st["text"]: st for st in session["statements"]}
    assert by_text["SELECT * FROM pm_secrets"]["decision"] == "deny"
    assert "not executed" in (by_text["SELECT 'skipped'"]["error_message"] or ""), by_text["SELECT 'skipped'"]
    assert by_text["SELECT 41 + 1"]["rows"] == 1 and by_text["SELECT 41 + 1"]["error_code"] is None
