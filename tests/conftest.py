"""Fixtures for sluice's end-to-end tests: a real PostgreSQL started by scripts/pg.sh and real sluice
processes in front of it, driven with the clients agents use (psql, psycopg, asyncpg, pgbench)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import tomllib

import psycopg
import pytest
import tomli_w

ROOT = Path(__file__).resolve().parents[1]


def sluice_binary() -> Path:
    if os.environ.get("SLUICE_BIN"):
        return Path(os.environ["SLUICE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "sluice"


def api_request(base_url, token, method, path, body=None):
    """One call of sluice's REST API as the holder of `token` (None: no credentials): (status, JSON)."""
    request = urllib.request.Request(base_url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def psql(dsn, *args, sql=None, input=None, check=False, timeout=60, env=None):
    """psql as an agent runs it against `dsn`: no psqlrc, stopping at the first error, with `args`
    (`-At`, `-c …`) and then `sql` as one more command. `check`: fail unless psql succeeds."""
    command = ["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", *args]
    if sql is not None:
        command += ["-c", sql]
    result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"psql failed ({result.returncode}): {result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls until predicate() returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Postgres:
    def __init__(self, directory: Path, port: int):
        self.dir = directory
        self.port = port
        env = {}
        for line in (directory / "passwords.env").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        self.superuser_password = env["PG_SUPERUSER_PASSWORD"]
        self.app_password = env["PG_APP_PASSWORD"]
        self.md5_password = env["PG_MD5_PASSWORD"]
        self.tls_only_password = env["PG_TLS_ONLY_PASSWORD"]
        self.ca_file = directory / "ca.crt"

    def dsn(self, dbname="shop", user="postgres", password=None):
        password = password or self.superuser_password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def connect(self, dbname="shop", **kw):
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kw)

    def query(self, sql, params=None, dbname="shop"):
        """Runs one statement directly (not through sluice); its rows, or None if it returns none."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else None


@pytest.fixture(scope="session")
def pg():
    directory = Path(tempfile.mkdtemp(prefix="sluice-test-pg-"))
    os.chmod(directory, 0o755)
    port = free_port()
    subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start", str(directory), str(port)], check=True)
    server = Postgres(directory, port)
    with server.connect("postgres") as conn:
        conn.execute("CREATE DATABASE bench OWNER app")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "1", server.dsn("bench", "app", server.app_password)],
        check=True, capture_output=True,
    )
    yield server
    subprocess.run([str(ROOT / "scripts" / "pg.sh"), "stop", str(directory)], check=False)
    shutil.rmtree(directory, ignore_errors=True)


def pg_target(pg: Postgres, user="app", password="env:SHOP_PG_PASSWORD", **options) -> dict:
    """A PostgreSQL target of the test server, as `[connections.NAME]` holds it."""
    return {"host": "127.0.0.1", "port": pg.port, "user": user, "password": password, **options}


def merged(base: dict, extra: dict) -> dict:
    """`extra` laid over `base`, table by table (a key in both takes extra's value)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def base_settings(pg: Postgres) -> dict:
    """The configuration every test gateway starts from: its listeners on free ports, and targets
    of the test server that each use one way of holding the credential, one TLS mode or one
    access list."""
    return {
        "server": {"state_dir": "state"},
        "api": {"listen": "127.0.0.1:0"},
        "postgres": {"listen": "127.0.0.1:0"},
        "connections": {
            "shop": pg_target(pg, password="stored"),
            "shop_env": pg_target(pg, database="shop", tls="disable"),
            "shop_file": pg_target(pg, database="shop", password="file:app.pw", tls="require"),
            "shop_md5": pg_target(pg, database="shop", user="legacy_md5", password="env:MD5_PG_PASSWORD",
                                  tls="disable"),
            "shop_verified": {**pg_target(pg, database="shop", user="tls_only", password="env:TLS_ONLY_PG_PASSWORD",
                                          tls="verify-full", ca_file=str(pg.ca_file)), "host": "localhost"},
            "bench": pg_target(pg),
            "nowhere": {**pg_target(pg), "port": free_port()},
            "ops_only": pg_target(pg, database="shop", allow_groups=["ops"]),
        },
    }


# A rule the audit tests refuse a statement with.
NO_DELETES = """
[[policy.rules]]
name = "no-deletes"
effect = "deny"
kinds = ["delete"]
"""


class Sluice:
    """A `sluice serve` process with its own config and state directory. Its configuration is
    built as data: `base_settings`, then `extra_toml` (TOML text, such as a test's rules, read
    into data), then `settings`, each laid over what came before."""

    def __init__(self, pg: Postgres, extra_toml="", env=None, settings=None):
        self.pg = pg
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-test-gw-"))
        self.config = self.dir / "sluice.toml"
        self.password_file = self.dir / "app.pw"
        self.password_file.write_text(pg.app_password + "\n")
        # Each gateway registers itself for the CLI's discovery (instance.rs) in a place of its own.
        self.env = dict(os.environ, SHOP_PG_PASSWORD=pg.app_password, RUST_LOG="info",
                        XDG_STATE_HOME=str(self.dir / "xdg"))
        self.env.update(env or {})
        self.settings = base_settings(pg)
        for extra in (tomllib.loads(extra_toml), settings or {}):
            self.settings = merged(self.settings, extra)
        self.config.write_text(tomli_w.dumps(self.settings))
        self.env["MD5_PG_PASSWORD"] = pg.md5_password
        self.env["TLS_ONLY_PG_PASSWORD"] = pg.tls_only_password
        self.stderr_path = self.dir / "sluice.log"
        self.proc = None
        self.port = None
        self.cli("credential", "set", "--connection", "shop", input=pg.app_password + "\n")

    def cli(self, *args, input=None, check=True):
        result = subprocess.run(
            [str(sluice_binary()), "--config", str(self.config), *args],
            input=input, capture_output=True, text=True, env=self.env, timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed: {result.stderr}")
        return result

    def start(self):
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [str(sluice_binary()), "--config", str(self.config), "serve"],
            stdout=subprocess.PIPE, stderr=self.stderr, env=self.env, text=True,
        )
        line = self.announcement()
        if "listening on" not in line:
            self.proc.kill()
            raise AssertionError(f"sluice did not start: {line!r}\n{self.log()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.api_url = None
        self.http_port = self.listener_port("http", "HTTP")
        self.ssh_port = self.listener_port("ssh", "SSH")
        if self.settings["api"].get("enabled", True):
            line = self.announcement()
            if "api listening on" not in line:
                self.proc.kill()
                raise AssertionError(f"sluice's API did not start: {line!r}\n{self.log()}")
            self.api_url = line.split("listening on", 1)[1].strip()
        return self

    def listener_port(self, protocol, title):
        """The port of the listener for `protocol`, which sluice starts (and announces) when a
        connection has that protocol; `None` otherwise."""
        if not any(c.get("protocol") == protocol for c in self.settings["connections"].values()):
            return None
        line = self.announcement()
        if f"{protocol} listening on" not in line:
            self.proc.kill()
            raise AssertionError(f"sluice's {title} listener did not start: {line!r}\n{self.log()}")
        return int(line.rsplit(":", 1)[1])

    def announcement(self):
        """The next line sluice announces on stdout; the JSON lines of a `stdout` audit sink,
        which may come before it, are kept in `self.exported`."""
        self.exported = getattr(self, "exported", [])
        line = self.proc.stdout.readline()
        while line.startswith("{"):
            self.exported.append(line)
            line = self.proc.stdout.readline()
        return line

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "stderr", None):
            self.stderr.close()
        if sig == signal.SIGTERM and self.proc:
            # A clean stop writes every audit record before exiting; one that gave up waiting for
            # the recorder may have lost some.
            assert "the recorder did not finish writing" not in self.log(), self.log()[-2000:]
        return self.proc.returncode if self.proc else None

    def log(self):
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def token(self, identity="agent", groups="agents", ttl=None):
        args = ["token", "create", "--identity", identity, "--groups", groups]
        if ttl:
            args += ["--ttl", ttl]
        return self.cli(*args).stdout.strip()

    def dsn(self, token, connection="shop", user="agent", sslmode="require", **params):
        query = "&".join([f"sslmode={sslmode}"] + [f"{k}={v}" for k, v in params.items()])
        return f"postgresql://{user}:{token}@127.0.0.1:{self.port}/{connection}?{query}"

    def sessions(self):
        return json.loads(self.cli("sessions", "list", "--json", "--limit", "1000").stdout)

    def session(self, session_id):
        return json.loads(self.cli("sessions", "show", session_id, "--json").stdout)

    def auth_events(self):
        return json.loads(self.cli("auth", "list", "--json", "--limit", "1000").stdout)

    def session_with(self, predicate, timeout=10.0):
        """The first ended, recorded session (with its statements) for which predicate(details)
        holds. Recording is asynchronous, so this polls."""

        # A session read once is read again only when its statement count has changed: a pass
        # over every session of a long module (a process per session) would outlast the timeout
        # on a loaded machine, and what a stream records as its connection closes may land just
        # after its session's end.
        read_with = {}

        def find():
            for s in self.sessions():
                if s["ended_at"] is None or read_with.get(s["id"]) == s["statements"]:
                    continue
                details = self.session(s["id"])
                if predicate(details):
                    return details
                read_with[s["id"]] = s["statements"]
            return None

        return wait_for(find, timeout=timeout, what="a matching recorded session")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(pg):
    gw = Sluice(pg).start()
    yield gw
    code = gw.stop()
    log = gw.log()
    assert "panicked" not in log, log
    assert code == 0, f"sluice exited with {code}\n{log[-3000:]}"
    shutil.rmtree(gw.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def token(gateway):
    return gateway.token()


@pytest.fixture
def make_gateway(pg):
    """Starts extra sluice instances with their own settings; stops them after the test."""
    started = []

    def make(**kw):
        gw = Sluice(pg, **kw)
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        code = gw.stop()
        assert "panicked" not in gw.log(), gw.log()
        assert code == 0, f"sluice exited with {code}\n{gw.log()[-3000:]}"
        shutil.rmtree(gw.dir, ignore_errors=True)
