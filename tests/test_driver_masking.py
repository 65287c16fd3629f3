"""Masking through the drivers agents use, each running a prepared statement 12 times with column
rules and detectors on: pgjdbc (which switches to a server-side statement after five runs and then
binds it without a Describe), node-postgres (a named statement bound again each run) and
tokio-postgres (every result in binary). Every run must return exactly what the simple protocol
returns through sluice: the masked columns masked, every other value intact."""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, psql
from test_protocol_model import SECRETS, model_gw, tables  # noqa: F401 (fixtures)

QUERIES = [
    "SELECT id, name, ssn, card, email, 10 * id AS tens FROM pm_customers WHERE id = $1",
    "SELECT id, 10 * id AS tens, note FROM pm_customers WHERE id = $1",
    "SELECT * FROM pm_customers WHERE id = $1",
]


def expected(gw, token):
    """What each query returns through sluice over the simple protocol, run by run."""
    lines = []
    for query in QUERIES:
        for run in range(12):
            sql = query.replace("$1", str(run % 2 + 1))
            out = psql(gw.dsn(token), "-At", sql=sql, check=True)
            lines += [f"{run}:{row}" for row in out.stdout.splitlines()]
    # psql prints NULL as an empty field; the drivers print "null".
    return [line.split(":", 1)[0] + ":" + "|".join(v or "null" for v in line.split(":", 1)[1].split("|"))
            for line in lines]


def check(out, gw, token):
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    want = expected(gw, token)
    assert lines == want, "\n".join(f"{a!r} != {b!r}" for a, b in zip(lines, want) if a != b) or (lines, want)
    assert not [s for s in SECRETS if s.decode() in out.stdout]
    assert "[redacted:customer-secrets]" in out.stdout and "|20|" in out.stdout


def test_pgjdbc_prepared_statements(model_gw):
    jar = Path("/usr/share/java/postgresql.jar")
    if not jar.exists():
        pytest.fail("pgjdbc is missing: scripts/setup.sh test installs libpostgresql-jdbc-java")
    token = model_gw.agent_token
    url = f"jdbc:postgresql://127.0.0.1:{model_gw.port}/shop?sslmode=disable"
    out = subprocess.run(["java", "-cp", str(jar), str(ROOT / "tests/drivers/PreparedMasking.java"), url, "agent",
                          token, *[q.replace("$1", "?") for q in QUERIES]],
                         capture_output=True, text=True, timeout=180)
    check(out, model_gw, token)


def test_node_postgres_named_statements(model_gw):
    token = model_gw.agent_token
    dsn = f"postgresql://agent:{token}@127.0.0.1:{model_gw.port}/shop?sslmode=disable"
    out = subprocess.run(["node", str(ROOT / "tests/drivers/node/prepared.js"), dsn, *QUERIES],
                         capture_output=True, text=True, timeout=120)
    check(out, model_gw, token)


def test_tokio_postgres_binary_results(model_gw):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    example = target / "debug" / "examples" / "tokio_postgres_prepared"
    token = model_gw.agent_token
    dsn = f"host=127.0.0.1 port={model_gw.port} user=agent password={token} dbname=shop sslmode=disable"
    out = subprocess.run([str(example), dsn, *QUERIES], capture_output=True, text=True, timeout=120)
    check(out, model_gw, token)
