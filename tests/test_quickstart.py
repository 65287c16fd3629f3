"""The README's first command, run as a user would: the demo database comes up with sluice in front
of it, and everything the quick start prints does what it says."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from conftest import ROOT, free_port, psql, sluice_binary

BANNER_END = "Ctrl-C here stops sluice and the demo database."


class QuickStart:
    """One run of scripts/quickstart.sh in its own demo directory, until stop()."""

    def __init__(self, demo: Path, env: dict):
        self.demo = demo
        self.proc = subprocess.Popen([str(ROOT / "scripts" / "quickstart.sh")], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.printed = []
        for line in self.proc.stdout:
            self.printed.append(line)
            if line.strip() == BANNER_END:
                break
        assert self.printed and self.printed[-1].strip() == BANNER_END, \
            f"the quick start ended early:\n{''.join(self.printed)}\n{self.proc.stderr.read()}"
        self.banner = "".join(self.printed)
        self.psql = re.search(r'^  psql "(.*)"$', self.banner, re.M).group(1)

    def section(self, title_start: str, until: str) -> list[str]:
        """The indented example lines under the banner's paragraph that starts with title_start."""
        part = self.banner.split(title_start, 1)[1].split(until, 1)[0]
        return [line.strip() for line in part.splitlines() if line.startswith("  ") and line.strip()]

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=60)
        return self.proc.returncode


def test_quickstart_does_what_its_banner_says_and_reuses_its_tokens_on_a_second_run():
    demo = Path(tempfile.mkdtemp(prefix="sluice-quickstart-"))
    elsewhere = Path(tempfile.mkdtemp(prefix="sluice-quickstart-cwd-"))
    env = dict(os.environ, SLUICE_DEMO_DIR=str(demo), SLUICE_DEMO_PORT=str(free_port()),
               SLUICE_DEMO_API_PORT=str(free_port()), DEMO_PG_PORT=str(free_port()),
               SLUICE_BIN=str(sluice_binary()), XDG_STATE_HOME=str(demo / "xdg"))
    env.pop("SLUICE_CONFIG", None)
    env.pop("SLUICE_TOKEN", None)
    run = QuickStart(demo, env)
    try:
        # The banner is kept in a file, and sluice's log goes to a file instead of the terminal.
        assert (demo / "README.txt").read_text() == run.banner
        assert "PostgreSQL listener ready" in (demo / "sluice.log").read_text()
        assert " INFO " not in run.banner

        # Masking: personal data comes back masked, the rest untouched.
        [masked_query] = run.section("Personal data comes back masked", "Refused")
        out = psql(run.psql, "-At", sql=masked_query.replace(";", " WHERE id = 1;"))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == ("Ada Lovelace|[redacted:email]|[redacted:phone]|[redacted:ssn]|"
                                      "**** **** **** 1111|[redacted:customer-notes]")

        # Every statement listed as refused is refused, naming a rule, and no row changed.
        refused = run.section("Refused, however it is written", "Held for a human")
        assert len(refused) == 4, refused
        for statement in refused:
            out = psql(run.psql, "-At", sql=statement)
            assert out.returncode != 0, statement
            assert re.search(r'ERROR:  sluice: refused by rule "[a-z-]+"', out.stderr), (statement, out.stderr)
            assert "HINT:" in out.stderr, (statement, out.stderr)
        assert psql(run.psql, "-At", sql="SELECT count(*) FROM orders").stdout.strip() != "0"

        # The held statement waits; the command its NOTICE names works as pasted once env.sh is
        # sourced, from a directory without a sluice.toml and with no --config.
        [held_statement] = run.section("Held for a human", "2. In another terminal")
        held = subprocess.Popen(["psql", run.psql, "-XAt", "-c", held_statement], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        notice = held.stderr.readline()
        assert "NOTICE:" in notice and "review #" in notice, notice
        hint = held.stderr.readline()
        command = re.search(r"`(sluice review approve \d+)`", hint).group(1)
        env_sh = run.section("2. In another terminal", "and look around")[0]
        assert env_sh == f". {demo}/env.sh"
        approver = subprocess.run(["bash", "-c", f"{env_sh} && {command}"], capture_output=True, text=True,
                                  cwd=elsewhere, env=env, timeout=30)
        assert approver.returncode == 0, approver.stderr
        stdout, stderr = held.communicate(timeout=30)
        assert held.returncode == 0 and stdout.strip() == "UPDATE 50", stderr
        # The approver has a name, and the listing commands the banner names work the same way.
        review_id = command.rsplit(" ", 1)[1]
        shown = subprocess.run(["bash", "-c", f"{env_sh} && sluice review show {review_id}"], capture_output=True,
                               text=True, cwd=elsewhere, env=env, timeout=30)
        assert shown.returncode == 0 and "approved" in shown.stdout and "dana" in shown.stdout, shown
        for line in run.section("and look around", "Ctrl-C here"):
            if "<ID>" in line:
                continue
            out = subprocess.run(["bash", "-c", f"{env_sh} && {line}"], capture_output=True, text=True,
                                 cwd=elsewhere, env=env, timeout=30)
            assert out.returncode in (0, 4), (line, out.stderr)  # 4: policy explain says deny
    finally:
        assert run.stop() == 0

    # A second run reuses the demo and the tokens: the same psql command still works.
    again = QuickStart(demo, env)
    try:
        assert again.psql == run.psql
        out = psql(again.psql, "-At", sql="SELECT count(*) FROM customers")
        assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr
    finally:
        assert again.stop() == 0
        shutil.rmtree(demo, ignore_errors=True)
        shutil.rmtree(elsewhere, ignore_errors=True)
