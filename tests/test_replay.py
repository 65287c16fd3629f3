"""`sluice sessions replay`: a recorded session played back from the audit log — each statement
with its verdict, rule, outcome and timing, the first rows of its result as the client got them
(masked), in the terminal, as JSON, or at the recorded pace."""

import json
import sqlite3

import psycopg
import pytest

from conftest import NO_DELETES, Sluice



def play(gw):
    """Runs the same three statements in one session; the session's recorded id."""
    token = gw.token()
    with psycopg.connect(gw.dsn(token, application_name="replayed"), autocommit=True) as conn:
        conn.execute("SELECT n, 'user' || n || '@example.com' AS email FROM generate_series(1, 5) n").fetchall()
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT 1 / 0")
        with pytest.raises(psycopg.Error):
            conn.execute("DELETE FROM orders WHERE id = 1")
        conn.execute('SELECT 1 AS "jane.roe@example.com"')
        # Terminal control sequences (clear the screen, retitle the window) in a value.
        conn.execute("SELECT E'\\x1b[2J\\x1b]0;pwned\\x07' AS title")
    session = gw.session_with(lambda s: s["session"]["application_name"] == "replayed"
                              and len(s["statements"]) == 5)
    return session["session"]["id"]


@pytest.fixture(scope="module")
def replayed(pg):
    gw = Sluice(pg, extra_toml=NO_DELETES, settings={"recording": {"result_rows": 3}}).start()
    yield gw, play(gw)
    gw.cleanup()


def test_the_timeline_shows_each_statement_its_outcome_and_its_masked_rows(replayed):
    gw, session = replayed
    text = gw.cli("sessions", "replay", session).stdout
    assert f"session {session} of agent" in text and "replayed" in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "#1 allow: SELECT n, 'user'" in line)
    assert lines[first].lstrip().startswith("+"), "an event's first line carries its offset"
    assert "→ SELECT 5, 5 rows" in lines[first + 1]
    assert lines[first + 2].split() == ["│", "n", "│", "email"]
    kept = lines[first + 3:first + 6]
    assert [line.split("│")[1].strip() for line in kept] == ["1", "2", "3"]
    assert all("@example.com" not in line and "redacted" in line for line in kept), kept
    assert "more than was kept" in lines[first + 6]
    assert "user1@example.com" not in text
    assert "#2 allow: SELECT 1 / 0" in text and "→ error 22012: division by zero" in text
    assert "#3 DENY (rule no-deletes): DELETE FROM orders WHERE id = 1" in text
    assert "→ error 42501" in text
    assert "session started: replayed from 127.0.0.1:" in text
    # What the agent sent or got back cannot drive the reader's terminal.
    assert "\x1b" not in text and "\x07" not in text
    assert "\\u{1b}]0;pwned\\u{7}" in text, text
    assert "session ended: " in text.splitlines()[-1]


def test_json_carries_each_record_with_its_offset_and_chain_hash(replayed):
    gw, session = replayed
    doc = json.loads(gw.cli("sessions", "replay", session, "--json").stdout)
    assert doc["session"]["id"] == session
    kinds = [e["event"]["kind"] for e in doc["events"]]
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
    assert kinds.count("action") == 5
    with sqlite3.connect(gw.dir / "state" / "sluice.db") as conn:
        stored = dict(conn.execute("SELECT seq, hash FROM audit_log WHERE session_id = ?", (session,)).fetchall())
    assert {e["seq"]: e["hash"] for e in doc["events"]} == {seq: h.hex() for seq, h in stored.items()}
    offsets = [e["offset_us"] for e in doc["events"]]
    assert offsets[0] >= 0 and offsets == sorted(offsets)
    first = next(e["event"] for e in doc["events"] if e["event"]["kind"] == "action")
    result = first["detail"]["result"]
    assert result["columns"] == ["n", "email"] and result["truncated"] is True
    assert [row[0] for row in result["rows"]] == ["1", "2", "3"]
    assert all("@example.com" not in row[1] for row in result["rows"])
    actions = [e["event"] for e in doc["events"] if e["event"]["kind"] == "action"]
    assert "result" not in actions[2]["detail"], "a refused statement returned nothing"
    assert actions[3]["detail"]["result"]["columns"] == ["[redacted:email]"], "column names are masked too"
    assert "jane.roe" not in json.dumps(doc)


def test_playing_at_a_pace_prints_the_same_timeline(replayed):
    gw, session = replayed
    at_once = gw.cli("sessions", "replay", session).stdout
    paced = gw.cli("sessions", "replay", session, "--speed", "50", "--idle-limit", "0.05").stdout
    assert paced == at_once
    bad = gw.cli("sessions", "replay", session, "--speed", "0", check=False)
    assert bad.returncode != 0 and "--speed must be a number above 0" in bad.stderr


def test_an_unknown_session_says_where_to_find_one(replayed):
    gw, _ = replayed
    missing = gw.cli("sessions", "replay", "s_nope", check=False)
    assert missing.returncode != 0
    assert "no session s_nope" in missing.stderr and "sluice sessions list" in missing.stderr


def test_no_rows_are_kept_unless_result_rows_asks_for_them(pg):
    gw = Sluice(pg, extra_toml=NO_DELETES).start()
    try:
        session = play(gw)
        doc = json.loads(gw.cli("sessions", "replay", session, "--json").stdout)
        actions = [e["event"] for e in doc["events"] if e["event"]["kind"] == "action"]
        assert len(actions) == 5 and all("result" not in a["detail"] for a in actions)
    finally:
        gw.cleanup()
