"""The README's first command, run as a user would: the demo database comes up, sluice in front of
it, and the printed psql command works."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

from conftest import ROOT, free_port, sluice_binary, wait_for


def test_quickstart_prints_a_working_psql_command():
    demo = tempfile.mkdtemp(prefix="sluice-quickstart-")
    env = dict(os.environ, SLUICE_DEMO_DIR=demo, SLUICE_DEMO_PORT=str(free_port()), SLUICE_DEMO_API_PORT=str(free_port()),
               DEMO_PG_PORT=str(free_port()), SLUICE_BIN=str(sluice_binary()))
    proc = subprocess.Popen([str(ROOT / "scripts" / "quickstart.sh")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        command = approver = None
        for line in proc.stdout:
            if line.strip().startswith("psql "):
                command = line.strip()
            if line.strip().startswith("export SLUICE_TOKEN="):
                approver = line.strip().split("=", 1)[1]
            if "api listening on" in line:
                break
        assert command, "the quick start printed no psql command"
        dsn = re.match(r'psql "(.*)"', command).group(1)
        out = subprocess.run(["psql", dsn, "-XAt", "-c", "SELECT count(*) FROM customers"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "5"
        # The demo's policy refuses what it promises to, the session's other statements run.
        out = subprocess.run(["psql", dsn, "-XAt", "-c", "WITH d AS (DELETE FROM orders RETURNING *) SELECT 1"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0
        assert 'refused by rule "orders-append-only"' in out.stderr, out.stderr
        # Masking is on: personal data comes back masked, the rest untouched.
        out = subprocess.run(["psql", dsn, "-XAt", "-c",
                              "SELECT name, email, ssn, card_number, notes FROM customers WHERE id = 1"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == ("Ada Lovelace|[redacted:email]|[redacted:ssn]|**** **** **** 1111|"
                                      "[redacted:customer-notes]")
        # A bulk change is held until the approver the quick start minted approves it.
        assert approver, "the quick start printed no approver token"
        held = subprocess.Popen(["psql", dsn, "-XAt", "-c", "UPDATE products SET price_cents = price_cents"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        config = os.path.join(demo, "sluice.toml")
        cli_env = dict(env, SLUICE_TOKEN=approver)

        def pending():
            out = subprocess.run([str(sluice_binary()), "--config", config, "review", "list", "--json"],
                                 capture_output=True, text=True, env=cli_env, timeout=30)
            assert out.returncode == 0, out.stderr
            reviews = json.loads(out.stdout)["reviews"]
            return reviews[0]["id"] if reviews else None

        review_id = wait_for(pending, timeout=15, what="the held UPDATE's review")
        assert held.poll() is None
        out = subprocess.run([str(sluice_binary()), "--config", config, "review", "approve", str(review_id)],
                             capture_output=True, text=True, env=cli_env, timeout=30)
        assert out.returncode == 0, out.stderr
        stdout, stderr = held.communicate(timeout=30)
        assert held.returncode == 0 and stdout.strip() == "UPDATE 50", stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        shutil.rmtree(demo, ignore_errors=True)
    assert proc.returncode == 0
