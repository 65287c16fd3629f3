"""Bad input and broken peers: each gets a precise error in the PostgreSQL protocol, only the
session concerned ends, everything else keeps working, and the recording stays complete."""

import errno
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

import psycopg
import pytest

from conftest import Sluice, psql, wait_for
from pgwire import Raw, fields, message, startup


def still_serving(gateway, token):
    with psycopg.connect(gateway.dsn(token), connect_timeout=5) as conn:
        return conn.execute("SELECT 'ok'").fetchone() == ("ok",)


def test_upstream_down_is_a_clear_error_not_a_hang(gateway, token):
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gateway.dsn(token, connection="nowhere"), connect_timeout=20)
    assert time.monotonic() - started < 5
    message_ = str(info.value)
    assert 'the upstream of connection "nowhere" is unavailable' in message_
    assert "Connection refused" in message_ or "refused" in message_
    wait_for(lambda: any(e["connection"] == "nowhere" and e["outcome"] == "upstream_unavailable"
                         for e in gateway.auth_events()), what="audit")
    assert still_serving(gateway, token)


def test_malformed_length_ends_only_that_session(gateway, token):
    bystander = psycopg.connect(gateway.dsn(token), autocommit=True)
    raw = Raw(gateway.port, token)
    raw.send(b"Q\x00\x00\x00\x02")
    tag, body = raw.read()
    assert tag == b"E"
    err = fields(body)
    assert err["C"] == "08P01" and "invalid message length" in err["M"]
    assert raw.read() == (None, None)
    assert bystander.execute("SELECT 'unaffected'").fetchone() == ("unaffected",)
    bystander.close()


def test_unknown_message_type_is_a_protocol_violation(gateway, token):
    raw = Raw(gateway.port, token)
    raw.send(message(b"\x01", b"junk"))
    tag, body = raw.read()
    assert tag == b"E" and fields(body)["C"] == "08P01"
    assert still_serving(gateway, token)


def test_oversized_message_is_refused_with_the_limit_named(make_gateway):
    gw = make_gateway(settings={"postgres": {"max_message_bytes": 4096}})
    tok = gw.token()
    raw = Raw(gw.port, tok)
    raw.query("SELECT '" + "x" * 10_000 + "'")
    tag, body = raw.read()
    err = fields(body)
    assert tag == b"E" and err["C"] == "54000"
    assert "4096" in err["M"] and "max_message_bytes" in err["H"]
    # A query under the limit still works on a new session.
    small = Raw(gw.port, tok)
    small.query("SELECT 1")
    assert [t for t, _ in small.until_ready()][-1] == b"Z"
    details = gw.session_with(lambda d: "client protocol error" in (d["session"]["end_reason"] or ""))
    assert "over sluice's limit" in details["session"]["end_reason"]


def test_garbage_before_startup_gets_an_error_and_the_server_lives(gateway, token):
    for junk in [b"\x00\x00\x00\x03", b"\xff" * 64, struct.pack("!ii", 12, 1234) + b"abcd", b"GET / HTTP/1.1\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
            answer = b""
            # sluice answers and closes after the first bad bytes; the rest it never read makes the
            # kernel reset the connection, which can reach this side at any of these calls.
            try:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                while chunk := s.recv(4096):
                    answer += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    raise
            if answer:
                assert answer[:1] == b"E", answer
    assert still_serving(gateway, token)


def test_random_frames_never_crash_the_gateway(gateway, token):
    rng = random.Random(1234)
    for _ in range(40):
        raw = Raw(gateway.port, token)
        frames = b"".join(
            rng.choice(b"QPBEDSCHFXdcfp\x00\xff").to_bytes(1, "big")
            + struct.pack("!i", rng.choice([4, 5, 8, 64, rng.randrange(4, 200)]))
            + rng.randbytes(rng.randrange(0, 80))
            for _ in range(rng.randrange(1, 6))
        )
        try:
            raw.send(frames)
            raw.sock.settimeout(2)
            for _ in range(10):
                tag, _ = raw.read()
                if tag is None:
                    break
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        raw.close()
    assert still_serving(gateway, token)
    assert "panicked" not in gateway.log()


def test_client_vanishing_mid_result(gateway, token):
    raw = Raw(gateway.port, token, user="agent")
    raw.query("SELECT g, repeat('x', 500) FROM generate_series(1, 500000) g /* vanish */")
    tag, _ = raw.read()
    assert tag == b"T"
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()  # reset mid-result
    assert still_serving(gateway, token)
    details = gateway.session_with(
        lambda d: any("/* vanish */" in s["text"] for s in d["statements"]), timeout=20)
    assert details["session"]["end_reason"].startswith("client disconnected")
    [stmt] = [s for s in details["statements"] if "/* vanish */" in s["text"]]
    assert stmt["error_message"].startswith("interrupted: client disconnected")


def test_upstream_dying_mid_query(gateway, token, pg):
    conn = psycopg.connect(gateway.dsn(token, application_name="doomed"), autocommit=True)
    upstream_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    killer = threading.Timer(0.5, lambda: pg.query("SELECT pg_terminate_backend(%s)", [upstream_pid]))
    killer.start()
    with pytest.raises(psycopg.OperationalError) as info:
        conn.execute("SELECT pg_sleep(20) /* doomed */")
    assert "terminating connection due to administrator command" in str(info.value)
    conn.close()
    assert still_serving(gateway, token)
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "doomed")
    assert details["session"]["end_reason"].startswith("upstream ended the session: terminating connection")
    [stmt] = [s for s in details["statements"] if "/* doomed */" in s["text"]]
    assert stmt["error_code"] == "57P01"


def test_client_that_never_finishes_the_handshake_is_dropped(make_gateway):
    gw = make_gateway(settings={"postgres": {"handshake_timeout_secs": 1}})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(startup("agent", "shop"))
        started = time.monotonic()
        data = s.recv(64)  # the password request
        assert data[:1] == b"R"
        assert s.recv(64) == b""  # closed after the timeout, never answered
        assert time.monotonic() - started < 5


def test_session_limit_refuses_with_53300(make_gateway):
    gw = make_gateway(settings={"postgres": {"max_sessions": 2}})
    tok = gw.token()
    held = [psycopg.connect(gw.dsn(tok)) for _ in range(2)]
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gw.dsn(tok, sslmode="disable"))
    assert "maximum of 2 sessions" in str(info.value)
    held[0].close()
    wait_for(lambda: _connects(gw.dsn(tok)), what="a free session slot")
    held[1].close()


def test_idle_unauthenticated_sockets_cannot_lock_out_a_login(make_gateway):
    """1,000 sockets that each sent two bytes (issue #22, item 9): they hold no session slot, the
    handshake budget evicts the oldest of them, and a real login gets in at once."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    gw = make_gateway(settings={"postgres": {"max_sessions": 200, "max_unauthenticated": 128,
                                        "max_unauthenticated_per_source": 64}})
    tok = gw.token()
    idle = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s.sendall(b"\x00\x00")
            idle.append(s)
        started = time.monotonic()
        with psycopg.connect(gw.dsn(tok), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started < 5, "the login waited for the idle sockets"
        # The gateway closed all but the newest of them: past twice the budget (256) the oldest goes.
        closed = 0
        for s in idle:
            s.settimeout(0.2)
            try:
                closed += s.recv(1) == b""
            except (socket.timeout, ConnectionResetError):
                closed += isinstance(sys.exc_info()[1], ConnectionResetError)
        assert closed >= 1000 - 256, closed
        assert "evicting the oldest unauthenticated connection" in gw.log()
    finally:
        for s in idle:
            s.close()
    assert still_serving(gw, tok)


def _connects(dsn):
    try:
        psycopg.connect(dsn).close()
        return True
    except psycopg.OperationalError:
        return False


def test_refused_startup_parameters(gateway, token):
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gateway.dsn(token), options="-c standard_conforming_strings=off")
    assert 'does not accept the startup parameter "standard_conforming_strings"' in str(info.value)
    for options, named in [("-c search_path=evil", "search_path"), ("--log-statement=none", "log_statement"),
                           ("-c work_mem=8MB -d 5", '"-d" in the startup options')]:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(gateway.dsn(token), options=options)
        assert named in str(info.value), (options, str(info.value))


def test_startup_options_carry_settings_sluice_does_not_control(gateway, token):
    """pg_regress and many tools export PGOPTIONS (issue #23): its `-c` settings reach the server."""
    options = r"-c intervalstyle=postgres_verbose --work-mem=8MB -c application_name=with\ space"
    with psycopg.connect(gateway.dsn(token), options=options, autocommit=True) as conn:
        assert conn.execute("SHOW intervalstyle").fetchone() == ("postgres_verbose",)
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
        assert conn.execute("SHOW application_name").fetchone() == ("with space",)
    env = dict(os.environ, PGOPTIONS="-c intervalstyle=sql_standard")
    out = psql(gateway.dsn(token), "-At", sql="SHOW intervalstyle", env=env)
    assert out.returncode == 0 and out.stdout.strip() == "sql_standard", out.stderr


def test_shutdown_tells_clients_and_records_everything(pg):
    gw = Sluice(pg).start()
    try:
        tok = gw.token()
        conn = psycopg.connect(gw.dsn(tok, application_name="at-shutdown"), autocommit=True)
        conn.execute("SELECT 1")
        assert gw.stop(signal.SIGTERM) == 0
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("SELECT 2")
        assert "sluice is shutting down" in str(info.value)
        conn.close()
        sessions = gw.sessions()
        [s] = [s for s in sessions if s["application_name"] == "at-shutdown"]
        assert s["ended_at"] is not None
        assert "shutting down" in s["end_reason"]
    finally:
        gw.cleanup()


def test_sessions_left_open_by_a_killed_gateway_are_closed_at_restart(pg):
    gw = Sluice(pg).start()
    try:
        tok = gw.token()
        conn = psycopg.connect(gw.dsn(tok, application_name="orphan"), autocommit=True)
        conn.execute("SELECT 1")
        wait_for(lambda: [s for s in gw.sessions() if s["application_name"] == "orphan"], what="session recorded")
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        conn.close()
        gw.stderr.close()
        gw.start()
        [s] = [s for s in gw.sessions() if s["application_name"] == "orphan"]
        assert s["end_reason"] == "gateway stopped before the session ended"
    finally:
        gw.cleanup()


def test_a_fast_path_call_of_an_unknown_function_is_refused_in_place(gateway, token):
    raw = Raw(gateway.port, token)
    # FunctionCall for OID 1 (no function has it) with no arguments, text result.
    raw.send(message(b"F", struct.pack("!ihhh", 1, 0, 0, 0)))
    replies = raw.until_ready()
    assert [t for t, _ in replies] == [b"E", b"Z"]
    err = fields(replies[0][1])
    assert err["C"] == "0A000" and "fast-path" in err["M"] and "does not have" in err["M"], err
    assert "SELECT" in err["H"]
    raw.query("SELECT 'usable after refusal'")
    replies = raw.until_ready()
    assert any(t == b"D" and b"usable after refusal" in body for t, body in replies)
    raw.send(message(b"X", b""))
    raw.close()
    text = "<fast-path call of function 1>"
    details = gateway.session_with(lambda d: any(s["text"] == text for s in d["statements"]))
    [call] = [s for s in details["statements"] if s["text"] == text]
    assert call["refused_by"] == "fast-path"


def test_a_fast_path_result_goes_through_the_detectors(gateway, token, pg):
    """A fast-path result is masked as a value of the type the function returns."""
    oid = pg.query("SELECT 'pg_catalog.btrim(text)'::regprocedure::oid")[0][0]
    secret = b"  write to ada@example.com  "
    raw = Raw(gateway.port, token)
    raw.send(message(b"F", struct.pack("!ihhi", oid, 0, 1, len(secret)) + secret + struct.pack("!h", 0)))
    replies = raw.until_ready()
    assert [t for t, _ in replies] == [b"V", b"Z"], replies
    value = replies[0][1][4:]
    assert struct.unpack("!i", replies[0][1][:4])[0] == len(value)
    assert value.startswith(b"write to ") and b"ada@example.com" not in value, value
    raw.close()
    text = 'SELECT "pg_catalog"."btrim"($1)'
    details = gateway.session_with(lambda d: any(s["text"] == text for s in d["statements"]))
    [call] = [s for s in details["statements"] if s["text"] == text]
    assert call["decision"] == "allow"


def test_statements_are_utf8_and_the_encoding_is_pinned(gateway, token):
    """sluice parses statements as UTF-8; a client may not make the server read them otherwise (a
    multi-byte encoding such as SJIS can hide a quote from one reader and not the other)."""
    raw = Raw(gateway.port, token)
    assert raw.params["client_encoding"] == "UTF8"
    for statement in [b"SELECT 'caf\xe9'\0", b"SELEC 'caf\xe9'\0"]:
        # Also where it would not parse either: the server is not asked about a lossy reading.
        raw.send(message(b"Q", statement))
        answer = raw.until_ready()
        err = fields(answer[0][1])
        assert answer[0][0] == b"E" and err["C"] == "42601" and "not valid UTF-8" in err["M"], err
    for change in ["SET client_encoding = 'SJIS'", "SET NAMES 'LATIN1'", "SELECT set_config('client_encoding', 'SJIS', false)"]:
        raw.query(change)
        answer = raw.until_ready()
        assert answer[0][0] == b"E" and "protected-setting" in fields(answer[0][1])["M"], (change, answer)
    raw.query("SELECT 'still usable'")
    assert any(t == b"D" for t, _ in raw.until_ready())
    raw.close()
    # A driver asking for another encoding at startup gets UTF-8 (the request is dropped, not refused).
    with psycopg.connect(gateway.dsn(token, client_encoding="LATIN1"), autocommit=True) as conn:
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
