"""Who may connect: tokens (wrong, revoked, expired, for another identity), unknown connections,
connection access lists, and the audit records each attempt leaves."""

import time

import psycopg
import pytest

from conftest import wait_for


def connect_error(dsn):
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(dsn, connect_timeout=10)
    return str(info.value)


def auth_outcomes(gateway, user):
    return [e["outcome"] for e in gateway.auth_events() if e["user"] == user]


def test_wrong_token_is_refused_with_28p01_and_audited(gateway):
    bogus = "slu_000000000000_" + "0" * 64
    message = connect_error(gateway.dsn(bogus, user="intruder"))
    assert 'password authentication failed for user "intruder"' in message
    message = connect_error(gateway.dsn("not-a-token", user="intruder2"))
    assert "password authentication failed" in message
    wait_for(lambda: auth_outcomes(gateway, "intruder") == ["unknown_token"], what="audit of the bad token")
    wait_for(lambda: auth_outcomes(gateway, "intruder2") == ["malformed"], what="audit of the malformed token")


def test_a_token_only_proves_its_own_identity(gateway):
    tok = gateway.token(identity="alice")
    message = connect_error(gateway.dsn(tok, user="bob"))
    assert "password authentication failed" in message
    wait_for(lambda: auth_outcomes(gateway, "bob") == ["identity_mismatch"], what="audit")
    with psycopg.connect(gateway.dsn(tok, user="alice")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_revoked_token_is_refused(gateway):
    tok = gateway.token(identity="revokee")
    with psycopg.connect(gateway.dsn(tok, user="revokee")) as conn:
        conn.execute("SELECT 1")
    token_id = tok.split("_")[1]
    gateway.cli("token", "revoke", token_id)
    listed = {t["id"]: t for t in __import__("json").loads(gateway.cli("token", "list", "--json").stdout)}
    assert listed[token_id]["revoked_at"] is not None
    assert "digest" not in listed[token_id]
    assert "password authentication failed" in connect_error(gateway.dsn(tok, user="revokee"))
    wait_for(lambda: "revoked_token" in auth_outcomes(gateway, "revokee"), what="audit")


def test_expired_token_is_refused(gateway):
    tok = gateway.token(identity="shortlived", ttl="1s")
    time.sleep(1.2)
    assert "password authentication failed" in connect_error(gateway.dsn(tok, user="shortlived"))
    wait_for(lambda: auth_outcomes(gateway, "shortlived") == ["expired_token"], what="audit")


def test_unknown_connection_looks_like_a_bad_password(gateway, token):
    unknown = connect_error(gateway.dsn(token, connection="no_such_db"))
    bad = connect_error(gateway.dsn("slu_000000000000_" + "1" * 64, connection="shop"))
    # Same message whether the connection exists or not: nothing to enumerate.
    strip = lambda m: m.split("FATAL:", 1)[1]
    assert strip(unknown) == strip(bad)
    wait_for(lambda: any(e["connection"] == "no_such_db" and e["outcome"] == "unknown_connection"
                         for e in gateway.auth_events()), what="audit")


def test_connection_access_list(gateway):
    agent = gateway.token(identity="plain-agent", groups="agents")
    ops = gateway.token(identity="operator", groups="ops,agents")
    assert "password authentication failed" in connect_error(gateway.dsn(agent, user="plain-agent", connection="ops_only"))
    with psycopg.connect(gateway.dsn(ops, user="operator", connection="ops_only")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("shop",)
    wait_for(lambda: "not_permitted" in auth_outcomes(gateway, "plain-agent"), what="audit")


def test_successful_logins_are_audited_and_touch_the_token(gateway):
    tok = gateway.token(identity="toucher")
    with psycopg.connect(gateway.dsn(tok, user="toucher")) as conn:
        conn.execute("SELECT 1")
    wait_for(lambda: auth_outcomes(gateway, "toucher") == ["success"], what="audit")
    import json
    token_id = tok.split("_")[1]
    wait_for(lambda: json.loads(gateway.cli("token", "list", "--json").stdout)
             and {t["id"]: t for t in json.loads(gateway.cli("token", "list", "--json").stdout)}[token_id]["last_used_at"],
             what="last_used_at")


def test_token_create_prints_only_the_token(gateway):
    result = gateway.cli("token", "create", "--identity", "printer", "--groups", "a,b", "--description", "for CI")
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("slu_")
    assert "shown only once" in result.stderr


def test_a_revoked_or_expired_token_ends_its_open_sessions_within_5_seconds(gateway):
    def ended_now(conn):
        try:
            conn.execute("SELECT 1")
            return None
        except psycopg.OperationalError as e:
            return e

    revokee = gateway.token("revokee", "agents")
    token_id = revokee.split("_")[1]
    with psycopg.connect(gateway.dsn(revokee, user="revokee"), autocommit=True) as conn:
        # Run often enough that psycopg prepares it: later runs are a Bind of a statement decided
        # before the revocation, which must not outlive it either.
        for _ in range(8):
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # Revoked by another process on the same store (the CLI), not by this sluice.
        gateway.cli("token", "revoke", token_id)
        started = time.monotonic()
        ended = wait_for(lambda: ended_now(conn), timeout=5, interval=0.1, what="the revoked token's session to end")
        assert time.monotonic() - started < 5
        assert f"the token this session was opened with ({token_id}) has been revoked or has expired" in str(ended)
        assert ended.diag.sqlstate == "28000" and "reconnect with a valid token" in ended.diag.message_hint
    recorded = gateway.session_with(lambda d: d["session"]["identity"] == "revokee"
                                    and d["session"]["end_reason"] == "its token was revoked or expired")
    assert recorded["statements"]
    # A token that expires: its open session ends once it has.
    short = gateway.token("shortlived", "agents", ttl="3s")
    with psycopg.connect(gateway.dsn(short, user="shortlived"), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        ended = wait_for(lambda: ended_now(conn), timeout=10, interval=0.2, what="the expired token's session to end")
        assert "has been revoked or has expired" in str(ended)
