"""The hash-chained audit log: every kind of record is chained in order, `sluice audit verify`
passes on an untouched log, and names the first bad record when the store is tampered with
directly (SQLite) — a record modified, deleted, inserted or reordered, the tail cut after a
checkpoint, the log rewritten wholesale with its hashes recomputed, a checkpoint deleted."""

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import time

import psycopg
import pytest

from conftest import NO_DELETES, Sluice, psql, wait_for

AUDIT = {"audit": {"checkpoint_every": 4}}


def db(gw):
    return sqlite3.connect(gw.dir / "state" / "sluice.db")


def rows(gw, sql, params=()):
    with db(gw) as conn:
        return conn.execute(sql, params).fetchall()


def verify(gw, *args):
    return gw.cli("audit", "verify", *args, check=False)


def assert_broken(gw, *phrases, args=()):
    """`sluice audit verify` fails, saying each of `phrases`."""
    failed = verify(gw, *args)
    assert failed.returncode == 1, failed.stdout
    for phrase in phrases:
        assert phrase in failed.stderr, failed.stderr


@pytest.fixture(scope="module")
def recorded(pg):
    """A stopped gateway whose log holds every kind of record, with checkpoints every 4."""
    gw = Sluice(pg, extra_toml=NO_DELETES, settings=AUDIT).start()
    token = gw.token()
    bad = psql(gw.dsn("not-a-token"), "-c", "SELECT 1")
    assert bad.returncode != 0
    with psycopg.connect(gw.dsn(token, application_name="audited"), autocommit=True) as conn:
        for n in range(12):
            conn.execute(f"SELECT {n} AS n")
            if n % 3 == 2:
                # Recorded in batches of at least 4 records (one batch per flush interval).
                time.sleep(0.3)
        with pytest.raises(psycopg.Error):
            conn.execute("DELETE FROM orders WHERE id = 1")
    wait_for(lambda: [s for s in gw.sessions() if s["application_name"] == "audited" and s["ended_at"]],
             what="the session's end recorded")
    assert gw.stop() == 0
    state = gw.dir / "state"
    pristine = gw.dir / "pristine"
    shutil.copytree(state, pristine)
    yield gw
    gw.cleanup()


@pytest.fixture
def gw(recorded):
    """The recorded gateway's store as it was written; a test may tamper with it freely."""
    state = recorded.dir / "state"
    shutil.rmtree(state)
    shutil.copytree(recorded.dir / "pristine", state)
    return recorded


def test_every_kind_of_record_is_chained_in_order_and_the_chain_is_as_documented(gw):
    records = rows(gw, "SELECT seq, kind, record, hash FROM audit_log ORDER BY seq")
    kinds = [kind for _, kind, _, _ in records]
    for kind in ["admin", "authentication", "session_started", "action", "session_ended"]:
        assert kind in kinds, kinds
    assert [seq for seq, *_ in records] == list(range(1, len(records) + 1))
    # h_n = SHA-256(h_{n-1} ‖ the record's canonical bytes), from 32 zero bytes (docs/audit.md).
    head = bytes(32)
    for seq, _, record, stored in records:
        head = hashlib.sha256(head + record.encode()).digest()
        assert head == stored, seq
        body = json.loads(record)
        assert (body["v"], body["seq"]) == (1, seq)
    [instance] = {json.loads(r)["instance"] for _, _, r, _ in records}
    refused = [json.loads(r)["event"] for _, k, r, _ in records if k == "action" and "DELETE" in r]
    assert refused and refused[0]["verdict"] == "deny" and refused[0]["rule"] == "no-deletes", refused
    # A checkpoint after every batch that brought 4 records or more since the last one, and one
    # when sluice stopped, each naming the one before.
    checkpoints = rows(gw, "SELECT seq, previous FROM audit_checkpoints ORDER BY seq")
    assert len(checkpoints) >= 3, checkpoints
    assert checkpoints[-1][0] == len(records)
    assert [p for _, p in checkpoints] == [0] + [s for s, _ in checkpoints[:-1]]
    done = verify(gw)
    assert done.returncode == 0, done.stderr
    assert f"audit log of instance {instance}: records 1..={len(records)} verified" in done.stdout, done.stdout


def test_a_modified_record_is_named(gw):
    [(seq,)] = rows(gw, "SELECT seq FROM audit_log WHERE record LIKE '%SELECT 5 AS n%'")
    with db(gw) as conn:
        conn.execute("UPDATE audit_log SET record = replace(record, 'SELECT 5', 'SELECT 6') WHERE seq = ?", (seq,))
    assert_broken(gw, f"record {seq}: ", "modified")


def test_a_deleted_record_is_named(gw):
    with db(gw) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 6")
    assert_broken(gw, "record 6: missing", "deleted")


def test_an_inserted_record_is_named(gw):
    # Records from 5 on moved up by one, and a record put in at 5 that links to record 4.
    with db(gw) as conn:
        conn.execute("UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= 5")
        conn.execute("UPDATE audit_log SET seq = seq - 1000000 + 1 WHERE seq > 1000000")
        [(prev_hash, template)] = conn.execute("SELECT hash, record FROM audit_log WHERE seq = 4").fetchall()
        body = json.loads(template)
        body["seq"] = 5
        forged = json.dumps(body, separators=(",", ":"))
        digest = hashlib.sha256(prev_hash + forged.encode()).digest()
        conn.execute("INSERT INTO audit_log (seq, at, kind, session_id, record, hash) VALUES (5, 0, ?, NULL, ?, ?)",
                     (body["event"]["kind"], forged, digest))
    # Record 5 links correctly; record 6 is the old record 5.
    assert_broken(gw, "record 6: ", "reordered")


def test_reordered_records_are_named(gw):
    with db(gw) as conn:
        a = conn.execute("SELECT record, hash FROM audit_log WHERE seq = 7").fetchone()
        b = conn.execute("SELECT record, hash FROM audit_log WHERE seq = 8").fetchone()
        conn.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = 7", b)
        conn.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = 8", a)
    assert_broken(gw, "record 7: ", "reordered")


def test_a_tail_cut_after_a_checkpoint_is_found(gw):
    [(last,)] = rows(gw, "SELECT MAX(seq) FROM audit_checkpoints")
    cut = last - 3
    # The first checkpoint signed beyond the cut names the records that went.
    [(beyond,)] = rows(gw, "SELECT MIN(seq) FROM audit_checkpoints WHERE seq > ?", (cut,))
    with db(gw) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (cut,))
    assert_broken(gw, f"record {cut + 1}: missing", f"{cut + 1}..={beyond}")


def test_a_log_rewritten_wholesale_with_recomputed_hashes_fails_at_the_first_checkpoint_it_covers(gw):
    with db(gw) as conn:
        records = conn.execute("SELECT seq, record FROM audit_log ORDER BY seq").fetchall()
        head = bytes(32)
        for seq, record in records:
            if seq == 2:
                record = record.replace('"event":{', '"event":{"forged":true,', 1)
            head = hashlib.sha256(head + record.encode()).digest()
            conn.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = ?", (record, head, seq))
        [(first,)] = conn.execute("SELECT MIN(seq) FROM audit_checkpoints WHERE seq >= 2").fetchall()
    assert_broken(gw, f"record {first}: ", "rewritten")


def test_a_deleted_checkpoint_is_found(gw):
    with db(gw) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE seq = (SELECT MIN(seq) FROM audit_checkpoints)")
    assert_broken(gw, "checkpoint was deleted")


def test_checkpoints_are_verified_with_the_public_key_kept_elsewhere(gw):
    public = gw.cli("audit", "public-key").stdout.strip()
    assert len(public) == 64
    assert verify(gw, "--public-key", public).returncode == 0
    # A thief who replaces the key and re-signs cannot match the key the verifier kept.
    (gw.dir / "state" / "audit-signing.key").unlink()
    gw.start()
    with psycopg.connect(gw.dsn(gw.token()), autocommit=True) as conn:
        conn.execute("SELECT 'signed with the new key'")
    gw.stop()
    assert gw.cli("audit", "public-key").stdout.strip() != public
    assert_broken(gw, "not by the verifying key", args=("--public-key", public))


def test_verification_can_start_at_a_record(gw):
    [(total,)] = rows(gw, "SELECT COUNT(*) FROM audit_log")
    done = verify(gw, "--from", "10")
    assert done.returncode == 0, done.stderr
    assert f"records 10..={total} verified" in done.stdout, done.stdout


def test_the_chain_survives_a_killed_gateway_and_continues_after_restart(pg):
    gw = Sluice(pg, settings=AUDIT).start()
    try:
        token = gw.token()
        conn = psycopg.connect(gw.dsn(token, application_name="killed"), autocommit=True)
        for n in range(50):
            conn.execute(f"SELECT {n}")
        wait_for(lambda: rows(gw, "SELECT COUNT(*) FROM audit_log WHERE kind = 'action'")[0][0] >= 50,
                 what="statements recorded")
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        conn.close()
        gw.stderr.close()
        assert verify(gw).returncode == 0, verify(gw).stderr
        gw.start()
        with psycopg.connect(gw.dsn(token), autocommit=True) as conn:
            conn.execute("SELECT 'after restart'")
        assert gw.stop() == 0
        done = verify(gw)
        assert done.returncode == 0, done.stderr
        # The killed session's end is in the chain too, recorded at restart.
        ended = [json.loads(r)["event"] for (r,) in rows(gw, "SELECT record FROM audit_log WHERE kind = 'session_ended'")]
        assert any(e["reason"] == "gateway stopped before the session ended" for e in ended), ended
        assert any("after restart" in r for (r,) in rows(gw, "SELECT record FROM audit_log WHERE kind = 'action'"))
    finally:
        gw.cleanup()


def test_no_change_runs_unrecorded_when_the_gateway_is_killed_in_the_middle_of_a_write_load(pg):
    """Every UPDATE and INSERT PostgreSQL received through sluice (its own statement log) has its
    decision in the chain: sluice forwards a change only once that record is durable."""
    pg.query("ALTER DATABASE bench SET log_statement = 'mod'", dbname="postgres")
    server_log = pg.dir / "server.log"
    logged_before = server_log.stat().st_size
    gw = Sluice(pg).start()
    try:
        token = gw.token()
        load = subprocess.Popen(
            ["pgbench", "-n", "-N", "-c", "4", "-j", "2", "-T", "60", gw.dsn(token, connection="bench")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        wait_for(lambda: rows(gw, "SELECT COUNT(*) FROM audit_log WHERE kind = 'action_decided'")[0][0] >= 300,
                 timeout=60, what="a few hundred changes decided")
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        load.communicate(timeout=60)
        gw.stderr.close()
        # The next start chains what the killed run had journaled but not yet written to the log.
        gw.start()
        assert gw.stop() == 0
        executed = [line.split("statement: ", 1)[1].strip()
                    for line in server_log.read_text(errors="replace")[logged_before:].splitlines()
                    if "LOG:  statement: " in line and ("UPDATE " in line or "INSERT " in line)]
        decided = {json.loads(r)["event"]["text"].strip()
                   for (r,) in rows(gw, "SELECT record FROM audit_log WHERE kind = 'action_decided'")}
        assert len(executed) >= 300, len(executed)
        missing = [s for s in executed if s not in decided]
        assert not missing, f"{len(missing)} of {len(executed)} changes ran unrecorded, e.g. {missing[:3]}"
        done = verify(gw)
        assert done.returncode == 0, done.stderr
    finally:
        pg.query("ALTER DATABASE bench RESET log_statement", dbname="postgres")
        gw.cleanup()


def test_every_configuration_put_in_force_or_refused_is_in_the_log_with_its_digest(pg):
    gw = Sluice(pg).start()
    try:
        def configurations():
            records = [json.loads(r)["event"] for (r,) in rows(gw, "SELECT record FROM audit_log WHERE kind = 'admin'")]
            return [(e["action"], e["detail"]) for e in records if e["action"].startswith("configuration-")]

        def digest():
            return "sha256 " + hashlib.sha256(gw.config.read_bytes()).hexdigest()

        started = digest()
        wait_for(lambda: configurations() == [("configuration-loaded", f"{started}; loaded at start")],
                 what="the configuration loaded at start recorded")
        good = gw.config.read_text()
        gw.config.write_text(good + "\n[policy]\nno_such_key = 1\n")
        broken = digest()
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(configurations()) == 2, what="the refused reload recorded")
        action, detail = configurations()[1]
        assert action == "configuration-refused" and detail.startswith(broken) and "no_such_key" in detail, detail
        gw.config.write_text(good)
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(configurations()) == 3, what="the reload recorded")
        assert configurations()[2] == ("configuration-loaded", f"{started}; reloaded")
        assert gw.stop() == 0
        assert verify(gw).returncode == 0
    finally:
        gw.cleanup()


def test_a_change_is_recorded_masked_before_it_runs(pg):
    gw = Sluice(pg).start()
    try:
        with psycopg.connect(gw.dsn(gw.token()), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("UPDATE no_such_table SET contact = 'jane.roe@example.com', ssn = '123-45-6789'")
        assert gw.stop() == 0
        decided = [r for (r,) in rows(gw, "SELECT record FROM audit_log WHERE kind = 'action_decided'")]
        assert len(decided) == 1, decided
        assert "contact = '[redacted:email]', ssn = '[redacted:ssn]'" in decided[0], decided[0]
        stored = b"".join(p.read_bytes() for p in (gw.dir / "state").iterdir() if p.is_file())
        assert b"jane.roe@example.com" not in stored and b"123-45-6789" not in stored
    finally:
        gw.cleanup()


def test_retention_keeps_the_newest_records_verifiable_from_a_signed_anchor(pg, tmp_path):
    """`[audit.retention] max_records`: the oldest records go, a signed anchor at the last one
    removed carries its hash, and what remains verifies; removing more records, or the anchor, or
    forging one, is found. A sink's undelivered records are kept."""
    sink = {"name": "archive", "kind": "file", "path": str(tmp_path / "archive.jsonl")}
    gw = Sluice(pg, settings={"audit": {"checkpoint_every": 4, "retention": {"max_records": 8}, "sinks": [sink]}})
    try:
        gw.start()
        token = gw.token()
        for n in range(4):
            assert psql(gw.dsn(token), "-c", f"SELECT {n}").returncode == 0
        assert gw.stop() == 0
        [(head,)] = rows(gw, "SELECT MAX(seq) FROM audit_log")
        assert head > 16
        gw.start()  # retention runs at start
        wait_for(lambda: rows(gw, "SELECT COUNT(*) FROM audit_anchors")[0][0] == 1, what="the retention anchor")
        [(anchor,)] = rows(gw, "SELECT seq FROM audit_anchors")
        assert anchor >= head - 8, (anchor, head)
        wait_for(lambda: rows(gw, "SELECT MIN(seq) FROM audit_log")[0][0] == anchor + 1, what="the records removed")
        assert gw.stop() == 0
        assert rows(gw, "SELECT COUNT(*) FROM audit_checkpoints WHERE seq <= ?", (anchor,)) == [(0,)]
        removal = [json.loads(r)["event"] for (r,) in rows(gw, "SELECT record FROM audit_log WHERE kind = 'admin'")
                   if "audit-records-removed" in r]
        assert removal and f"records 1..={anchor} removed" in removal[0]["detail"], removal
        # The sink had everything before it was removed.
        exported = [json.loads(line)["event"]["sequence"] for line in (tmp_path / "archive.jsonl").read_text().splitlines()]
        assert exported[:anchor] == list(range(1, anchor + 1))
        done = verify(gw)
        assert done.returncode == 0, done.stderr
        assert f"records {anchor + 1}..=" in done.stdout and f"records 1..={anchor} were removed by retention" in done.stdout
        state = gw.dir / "state"
        pristine = gw.dir / "retained"
        shutil.copytree(state, pristine)

        def tampered(change, *phrases):
            shutil.rmtree(state)
            shutil.copytree(pristine, state)
            with db(gw) as conn:
                change(conn)
            assert_broken(gw, *phrases)

        # More records removed than the anchor says.
        tampered(lambda c: c.execute("DELETE FROM audit_log WHERE seq <= ?", (anchor + 2,)),
                 f"record {anchor + 1}: missing")
        # The anchor removed: the remaining log no longer starts where its chain can be checked.
        tampered(lambda c: c.execute("DELETE FROM audit_anchors"), f"record 1: missing")
        # The anchor moved to cover more: its signature no longer matches.
        tampered(lambda c: c.execute("UPDATE audit_anchors SET seq = seq + 2"), "anchor", "forged")
        # The first remaining record altered: it no longer chains from the anchor's hash.
        tampered(lambda c: c.execute("UPDATE audit_log SET record = replace(record, '\"v\":1', '\"v\":1 ') "
                                     "WHERE seq = ?", (anchor + 1,)), f"record {anchor + 1}: ")
    finally:
        gw.cleanup()


def test_a_rotated_signing_key_keeps_the_old_checkpoints_verifiable(pg):
    gw = Sluice(pg, settings=AUDIT)
    try:
        gw.start()
        token = gw.token()
        assert psql(gw.dsn(token), "-c", "SELECT 'before rotation'").returncode == 0
        assert gw.stop() == 0
        old = gw.cli("audit", "public-key").stdout.strip()
        gw.start()
        refused = gw.cli("audit", "rotate-key", check=False)
        assert refused.returncode != 0 and "stop it" in refused.stderr, refused.stderr
        assert gw.stop() == 0
        rotated = gw.cli("audit", "rotate-key").stdout
        new = gw.cli("audit", "public-key").stdout.strip()
        assert new != old and new in rotated, rotated
        gw.start()
        assert psql(gw.dsn(token), "-c", "SELECT 'after rotation'").returncode == 0
        assert gw.stop() == 0
        key_ids = {k for (k,) in rows(gw, "SELECT DISTINCT key_id FROM audit_checkpoints")}
        assert len(key_ids) == 2, key_ids
        # By default: the current key and the one it replaced (kept beside it).
        done = verify(gw)
        assert done.returncode == 0, done.stderr
        assert "keys " in done.stdout, done.stdout
        # With the public keys kept elsewhere: both are needed.
        assert verify(gw, "--public-key", old, "--public-key", new).returncode == 0
        assert_broken(gw, "not by the verifying key", args=("--public-key", new))
        # Only the old key's public half stays, with the last record it signed for: a signature of
        # the old key beyond it is refused.
        state = gw.dir / "state"
        [retired] = list(state.glob("audit-signing.key.retired-*"))
        assert retired.name.endswith(".pub") and f"public_key={old}" in retired.read_text()
        [(last_old,)] = rows(gw, "SELECT MAX(seq) FROM audit_checkpoints WHERE key_id = ?",
                             (retired.name.split("retired-")[1].removesuffix(".pub"),))
        retired.write_text(retired.read_text().replace(f"valid_through={last_old}", f"valid_through={last_old - 1}"))
        assert_broken(gw, f"record {last_old}: ", "retired at record")
    finally:
        gw.cleanup()


def test_retention_removes_nothing_whose_chain_does_not_hold(pg):
    gw = Sluice(pg, settings={"audit": {"retention": {"max_records": 4}}})
    try:
        gw.start()
        assert psql(gw.dsn(gw.token()), "-c", "SELECT 1").returncode == 0
        assert gw.stop() == 0
        with db(gw) as conn:
            conn.execute("UPDATE audit_log SET record = replace(record, '\"v\":1', '\"v\":1 ') WHERE seq = 2")
        gw.start()
        wait_for(lambda: "retention removes nothing: record 2: it does not chain" in gw.log(),
                 what="retention refusing the tampered range")
        assert gw.stop() == 0
        assert rows(gw, "SELECT COUNT(*) FROM audit_anchors") == [(0,)]
        assert rows(gw, "SELECT MIN(seq) FROM audit_log") == [(1,)], "the evidence is kept"
        assert_broken(gw, "record 2: ")
    finally:
        gw.cleanup()
