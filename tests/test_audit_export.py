"""Exports of the audit log (`[[audit.sinks]]`): JSON lines in a file, syslog to a real rsyslog
over UDP, TCP and TLS, and an HTTP receiver that is stopped mid-run and started again — each gets
every record once, in order, as an Elastic Common Schema document (or as the chained record
itself); a sink that falls too far behind either skips the oldest records or has new sessions
refused until it catches up."""

import hashlib
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from conftest import NO_DELETES, Sluice, free_port, psql, wait_for



def chained(gw):
    """The log's records as stored: (seq, canonical text, hash)."""
    with sqlite3.connect(gw.dir / "state" / "sluice.db") as conn:
        return conn.execute("SELECT seq, record, hash FROM audit_log ORDER BY seq").fetchall()


def metrics(gw):
    with urllib.request.urlopen(gw.api_url + "/metrics", timeout=5) as r:
        return r.read().decode()


def metric(gw, name, sink):
    found = re.search(rf'^sluice_audit_export_{name}{{sink="{sink}",kind="[a-z]+"}} (\d+)$', metrics(gw), re.M)
    assert found, metrics(gw)
    return int(found.group(1))


def some_traffic(gw, token, n=5):
    with psycopg.connect(gw.dsn(token, application_name="exported"), autocommit=True) as conn:
        for i in range(n):
            conn.execute(f"SELECT {i} AS n, 'ann@example.com' AS email")
        with pytest.raises(psycopg.Error):
            conn.execute("DELETE FROM orders WHERE id = 1")


def test_a_file_sink_gets_every_record_once_in_order_as_ecs_and_another_the_chain_itself(pg, tmp_path):
    sinks = [
        {"name": "ecs-file", "kind": "file", "path": str(tmp_path / "audit.jsonl")},
        {"name": "chain-file", "kind": "file", "path": str(tmp_path / "chain.jsonl"), "format": "sluice"},
    ]
    gw = Sluice(pg, extra_toml=NO_DELETES, settings={"audit": {"sinks": sinks}}).start()
    try:
        some_traffic(gw, gw.token())
        wait_for(lambda: [s for s in gw.sessions() if s["application_name"] == "exported" and s["ended_at"]],
                 what="the session's end recorded")
        assert gw.stop() == 0
        stored = chained(gw)
        docs = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [d["event"]["sequence"] for d in docs] == [seq for seq, _, _ in stored]
        instance = json.loads(stored[0][1])["instance"]
        for doc, (seq, _, digest) in zip(docs, stored):
            assert doc["event"]["id"] == f"{instance}:{seq}"
            assert doc["event"]["hash"] == digest.hex()
            assert doc["ecs"]["version"] and doc["@timestamp"].endswith("Z")
        denied = [d for d in docs if d["event"]["action"] == "sql-statement" and "DELETE" in d["sluice"]["action"]["text"]]
        assert denied, docs
        assert denied[0]["event"]["type"] == ["access"] and denied[0]["event"]["outcome"] == "failure"
        assert denied[0]["sluice"]["action"]["verdict"] == "deny"
        assert denied[0]["rule"]["name"] == "no-deletes" and denied[0]["user"]["name"] == "agent"
        selects = [d for d in docs if "ann@example.com" in json.dumps(d)]
        assert not selects, "a statement's text is exported masked, as it is recorded"
        kinds = {d["sluice"]["kind"] for d in docs}
        assert {"admin", "authentication", "session_started", "action", "session_ended"} <= kinds, kinds
        # The chain as exported: the stored bytes and hashes, which recompute from genesis.
        lines = [json.loads(line) for line in (tmp_path / "chain.jsonl").read_text().splitlines()]
        assert [(x["seq"], x["record"], x["hash"]) for x in lines] == [(s, r, h.hex()) for s, r, h in stored]
        head = bytes(32)
        for x in lines:
            head = hashlib.sha256(head + x["record"].encode()).digest()
            assert head.hex() == x["hash"]
    finally:
        gw.cleanup()


def test_a_stdout_sink_writes_json_lines_among_the_announcements(pg):
    gw = Sluice(pg, settings={"audit": {"sinks": [{"name": "out", "kind": "stdout"}]}}).start()
    try:
        assert psql(gw.dsn(gw.token()), "-c", "SELECT 'to stdout'").returncode == 0
        wait_for(lambda: [s for s in gw.sessions() if s["ended_at"]], what="the session's end recorded")
        assert gw.stop() == 0
        lines = gw.exported + gw.proc.stdout.read().splitlines()
        docs = [json.loads(line) for line in lines if line.strip()]
        assert [d["event"]["sequence"] for d in docs] == [seq for seq, _, _ in chained(gw)]
        assert any(d["sluice"].get("action", {}).get("text") == "SELECT 'to stdout'" for d in docs)
    finally:
        gw.cleanup()


def test_a_restarted_gateway_resumes_each_sink_where_it_stopped(pg, tmp_path):
    out = tmp_path / "audit.jsonl"
    gw = Sluice(pg, settings={"audit": {"sinks": [{"name": "f", "kind": "file", "path": str(out)}]}}).start()
    try:
        token = gw.token()
        assert psql(gw.dsn(token), "-c", "SELECT 1").returncode == 0
        assert gw.stop() == 0
        gw.start()
        assert psql(gw.dsn(token), "-c", "SELECT 2").returncode == 0
        assert gw.stop() == 0
        seqs = [json.loads(line)["event"]["sequence"] for line in out.read_text().splitlines()]
        assert seqs == [seq for seq, _, _ in chained(gw)]
    finally:
        gw.cleanup()


def issue_certificate(directory: Path):
    """A private CA (`ca.pem`) and a certificate for localhost it signs (`cert.pem`, `key.pem`)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "cert.csr")
    (directory / "cert.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                        "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "cert.ext", "-out", "cert.pem")


class Rsyslog:
    """rsyslogd from Debian's packages on loopback: UDP, TCP and TLS inputs, each written raw
    (`%rawmsg%`) to a file of its own."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ports = {"udp": free_port(), "tcp": free_port(), "tls": free_port()}
        issue_certificate(directory)
        conf = directory / "rsyslog.conf"
        conf.write_text(f"""
global(workDirectory="{directory}" maxMessageSize="64k"
       DefaultNetstreamDriverCAFile="{directory}/ca.pem"
       DefaultNetstreamDriverCertFile="{directory}/cert.pem"
       DefaultNetstreamDriverKeyFile="{directory}/key.pem")
module(load="imudp")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
input(type="imudp" address="127.0.0.1" port="{self.ports['udp']}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{self.ports['tcp']}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{self.ports['tls']}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
ruleset(name="udp") {{ action(type="omfile" file="{directory}/udp.log" template="raw") }}
ruleset(name="tcp") {{ action(type="omfile" file="{directory}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{directory}/tls.log" template="raw") }}
""")
        self.conf = conf
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslog.pid")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "rsyslogd.log", "ab"))
        for port in (self.ports["tcp"], self.ports["tls"]):
            wait_for(lambda: _accepts(port), what=f"rsyslogd listening on {port}")

    def messages(self, transport):
        path = self.dir / f"{transport}.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) sluice (\d+) ([a-z_]+) - (\{.*\})$")


def test_a_restarted_syslog_receiver_gets_what_comes_after_over_a_new_connection(pg, tmp_path):
    rsyslog = Rsyslog(tmp_path)
    sinks = [{"name": t, "kind": "syslog", "transport": t, "address": f"127.0.0.1:{rsyslog.ports[t]}",
              "ca_file": str(tmp_path / "ca.pem"), "server_name": "localhost"} for t in ("tcp", "tls")]
    for sink in sinks[:1]:
        del sink["ca_file"], sink["server_name"]
    gw = Sluice(pg, settings={"audit": {"sinks": sinks}}).start()
    try:
        token = gw.token()
        assert psql(gw.dsn(token), "-c", "SELECT 'before the restart'").returncode == 0
        wait_for(lambda: all("before the restart" in "".join(rsyslog.messages(t)) for t in ("tcp", "tls")),
                 what="the first session at the receiver")
        rsyslog.stop()
        rsyslog.start()
        assert psql(gw.dsn(token), "-c", "SELECT 'after the restart'").returncode == 0
        assert gw.stop() == 0
        expected = [seq for seq, _, _ in chained(gw)]
        for transport in ("tcp", "tls"):
            wait_for(lambda: len(rsyslog.messages(transport)) >= len(expected), what=f"every record over {transport}")
            seqs = [json.loads(RFC5424.match(m).group(6))["event"]["sequence"] for m in rsyslog.messages(transport)]
            assert seqs == expected, transport
        assert "the syslog receiver closed the connection; reconnecting" in gw.log()
    finally:
        gw.cleanup()
        rsyslog.stop()


def test_syslog_over_udp_tcp_and_tls_reaches_rsyslog_as_rfc5424(pg, tmp_path):
    if not shutil.which("rsyslogd"):
        pytest.fail("rsyslogd is missing: scripts/setup.sh test installs it")
    rsyslog = Rsyslog(tmp_path)
    sinks = [
        {"name": "udp", "kind": "syslog", "transport": "udp", "address": f"127.0.0.1:{rsyslog.ports['udp']}"},
        {"name": "tcp", "kind": "syslog", "transport": "tcp", "address": f"127.0.0.1:{rsyslog.ports['tcp']}",
         "facility": "local4"},
        {"name": "tls", "kind": "syslog", "transport": "tls", "address": f"127.0.0.1:{rsyslog.ports['tls']}",
         "ca_file": str(tmp_path / "ca.pem"), "server_name": "localhost"},
    ]
    gw = Sluice(pg, extra_toml=NO_DELETES, settings={"audit": {"sinks": sinks}}).start()
    try:
        some_traffic(gw, gw.token())
        long = "x" * 20_000
        assert psql(gw.dsn(gw.token()), "-c", f"SELECT '{long}' AS long").returncode == 0
        assert gw.stop() == 0
        stored = chained(gw)
        expected = [seq for seq, _, _ in stored]
        for transport in ("udp", "tcp", "tls"):
            wait_for(lambda: len(rsyslog.messages(transport)) >= len(expected),
                     what=f"every record over {transport}")
            parsed = [RFC5424.match(m) for m in rsyslog.messages(transport)]
            assert all(parsed), rsyslog.messages(transport)
            docs = [json.loads(m.group(6)) for m in parsed]
            assert [d["event"]["sequence"] for d in docs] == expected, transport
            for m, doc in zip(parsed, docs):
                assert m.group(5) == doc["sluice"]["kind"]
                assert m.group(2) == doc["@timestamp"], "the record's own time, not the time of sending"
                assert len(m.group(0)) <= 8192, "cut to the default max_message_bytes"
            facility = 20 if transport == "tcp" else 13
            denied = [(int(m.group(1)), d) for m, d in zip(parsed, docs) if d["sluice"].get("action", {}).get("verdict") == "deny"]
            assert denied and denied[0][0] == facility * 8 + 4, denied
            cut = [d for d in docs if d["sluice"].get("truncated")]
            assert cut and cut[0]["sluice"]["action"]["text"].startswith("SELECT 'xxx"), transport
    finally:
        gw.cleanup()
        rsyslog.stop()


class Receiver:
    """An HTTP endpoint that keeps every batch POSTed to it; it can be stopped and started
    again on the same port."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.batches = []
        self.server = None

    def start(self):
        batches = self.batches

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                docs = [json.loads(line) for line in body.decode().splitlines()]
                seqs = (int(self.headers["X-Sluice-First-Seq"]), int(self.headers["X-Sluice-Last-Seq"]))
                batches.append((self.headers.get("Authorization"), seqs, docs))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def seqs(self):
        return [d["event"]["sequence"] for _, _, docs in list(self.batches) for d in docs]


def test_an_http_receiver_stopped_mid_run_gets_everything_once_in_order(pg, tmp_path):
    receiver = Receiver().start()
    (tmp_path / "token").write_text("s3cret-ingest-token\n")
    sink = {"name": "siem", "kind": "http", "url": f"http://127.0.0.1:{receiver.port}/ingest",
            "bearer_token_file": str(tmp_path / "token"), "batch_max": 20, "batch_wait_ms": 100}
    gw = Sluice(pg, settings={"audit": {"sinks": [sink]}}).start()
    try:
        token = gw.token()
        running = threading.Event()
        running.set()
        done = []

        def load():
            with psycopg.connect(gw.dsn(token), autocommit=True) as conn:
                n = 0
                while running.is_set():
                    conn.execute(f"SELECT {n}")
                    n += 1
                    time.sleep(0.005)
                done.append(n)

        worker = threading.Thread(target=load)
        worker.start()
        wait_for(lambda: len(receiver.seqs()) > 50, what="records delivered")
        receiver.stop()
        down_at = len(receiver.seqs())
        wait_for(lambda: metric(gw, "failures_total", "siem") >= 2, what="failed deliveries while it is down")
        assert metric(gw, "backlog", "siem") > 0
        time.sleep(1)
        receiver.start()
        wait_for(lambda: len(receiver.seqs()) > down_at + 100, what="delivery after the receiver came back")
        running.clear()
        worker.join()
        assert gw.stop() == 0
        expected = [seq for seq, _, _ in chained(gw)]
        assert receiver.seqs() == expected, "every record once, in order"
        assert {auth for auth, _, _ in receiver.batches} == {"Bearer s3cret-ingest-token"}
        for _, (first, last), docs in receiver.batches:
            assert (first, last) == (docs[0]["event"]["sequence"], docs[-1]["event"]["sequence"])
        assert "cannot deliver audit records" in gw.log()
    finally:
        gw.cleanup()
        receiver.stop()


def behind(pg, name, on_backlog_full):
    """A gateway whose HTTP sink `name` may fall 3 records behind, and its receiver, not started."""
    receiver = Receiver()
    sink = {"name": name, "kind": "http", "url": f"http://127.0.0.1:{receiver.port}/",
            "batch_wait_ms": 0, "max_backlog": 3, "on_backlog_full": on_backlog_full}
    return receiver, Sluice(pg, settings={"audit": {"sinks": [sink]}}).start()


def test_a_full_backlog_refuses_new_sessions_until_the_sink_catches_up(pg):
    receiver, gw = behind(pg, "siem", "refuse_sessions")
    try:
        token = gw.token()
        with psycopg.connect(gw.dsn(token), autocommit=True) as open_session:
            open_session.execute("SELECT 1")
            wait_for(lambda: metric(gw, "backlog_full", "siem") == 1, what="the backlog reported full")
            refused = psql(gw.dsn(token), "-c", "SELECT 2")
            assert refused.returncode != 0
            assert "not accepting new sessions" in refused.stderr, refused.stderr
            assert "audit log cannot be exported" in refused.stderr and "siem" not in refused.stderr, refused.stderr
            assert 'audit export \\"siem\\" is' in gw.log() and "cap is 3" in gw.log()
            # What is open goes on.
            assert open_session.execute("SELECT 3").fetchone() == (3,)
            assert "refusing new sessions until this sink catches up" in gw.log()
            receiver.start()
            wait_for(lambda: metric(gw, "backlog_full", "siem") == 0, timeout=40, what="the sink caught up")
            assert psql(gw.dsn(token), "-c", "SELECT 4").returncode == 0
        refusals = [e for e in gw.auth_events() if e["outcome"] == "sessions_refused"]
        assert refusals, gw.auth_events()
    finally:
        gw.cleanup()
        receiver.stop()


def test_a_full_backlog_can_instead_skip_the_oldest_records(pg):
    receiver, gw = behind(pg, "lossy", "drop_oldest")
    try:
        token = gw.token()
        for n in range(3):
            assert psql(gw.dsn(token), "-c", f"SELECT {n}").returncode == 0
        wait_for(lambda: metric(gw, "dropped_total", "lossy") > 0, what="records skipped")
        assert "skipping the oldest records" in gw.log()
        receiver.start()
        assert psql(gw.dsn(token), "-c", "SELECT 9").returncode == 0
        assert gw.stop() == 0
        expected = [seq for seq, _, _ in chained(gw)]
        got = receiver.seqs()
        assert got == sorted(got) and got[-1] == expected[-1], got
        assert len(got) < len(expected)
    finally:
        gw.cleanup()
        receiver.stop()
