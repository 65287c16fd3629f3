"""SSH through sluice: OpenSSH's sshd on 127.0.0.1 as the target host (its own config, host key and
authorized_keys), OpenSSH's ssh as the agent's client, authenticating with its sluice token. sluice
logs in to the host with a key the agent never sees, runs what policy allows, and masks what comes
back."""

import getpass
import json
import os
import re
import shutil
import subprocess
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, port_open, sluice_binary, wait_for

RULES = """
[[policy.rules]]
name = "web-reads"
effect = "allow"
connections = ["web1*"]
programs = ["echo", "cat", "printf", "whoami", "ls", "true", "grep", "wc", "sleep"]

[[policy.rules]]
name = "web-deletes-reviewed"
effect = "review"
connections = ["web1*"]
programs = ["rm"]

[[policy.rules]]
name = "web-touch-waits"
effect = "review"
connections = ["web1*"]
programs = ["touch"]
review = { mode = "wait", timeout = "1m" }

[[policy.rules]]
name = "web-no-root"
effect = "deny"
connections = ["web1*"]
sudo = true
reason = "agents do not run commands as another user"
hint = "run it without sudo, or ask an operator"
"""


@pytest.fixture(scope="module")
def host():
    """An unprivileged sshd (scripts/sshd.sh) that lets in whoever holds sluice's key."""
    d = Path(tempfile.mkdtemp(prefix="sluice-sshd-"))
    os.chmod(d, 0o755)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "sluice_key")], check=True)
    (d / "authorized_keys").write_text((d / "sluice_key.pub").read_text())
    port = free_port()
    # TCP forwarding on: sluice's login may forward where a rule allows the agent to.
    proc = subprocess.Popen([str(ROOT / "scripts" / "sshd.sh"), str(d), str(port), str(d / "authorized_keys"),
                             "forwarding"])
    wait_for(lambda: port_open(port), timeout=15, what="sshd")
    host = type("Host", (), {})()
    host.dir, host.port, host.user = d, port, getpass.getuser()
    # Where the host may listen for the agent (ssh -R), by rule.
    host.listen_port = free_port()
    host.host_key = (d / "host_key.pub").read_text().strip()
    yield host
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(d, ignore_errors=True)


def host_rules(host):
    """Rules for file transfers on web1: the host's directory `pub` may be read, `up` read and
    written; no .pem file is read anywhere. Forwarding to the host's own sshd only."""
    d = host.dir
    return f"""
[[policy.rules]]
name = "web-forwards"
effect = "allow"
connections = ["web1"]
forwards = ["127.0.0.1:{host.port}"]

[[policy.rules]]
name = "web-listens"
effect = "allow"
connections = ["web1"]
listens = ["127.0.0.1:{host.listen_port}"]

[[policy.rules]]
name = "web-files-public"
effect = "allow"
connections = ["web1"]
operations = ["read", "list"]
files = ["{d}/pub", "{d}/pub/*"]

[[policy.rules]]
name = "web-files-uploads"
effect = "allow"
connections = ["web1"]
operations = ["read", "list", "write", "mkdir", "rename", "remove", "setstat"]
files = ["{d}/up", "{d}/up/*"]

[[policy.rules]]
name = "web-shells"
effect = "allow"
connections = ["web1_sh"]
shell = true

[[policy.rules]]
name = "web-no-keys"
effect = "deny"
connections = ["web1"]
operations = ["read"]
files = ["*.pem"]
reason = "private keys are not read by agents"
"""


@pytest.fixture(scope="module")
def gw(pg, host):
    from conftest import Sluice
    other_key = host.dir / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    web1 = {"protocol": "ssh", "default": "deny", "host": "127.0.0.1", "port": host.port, "user": host.user,
            "host_key": f"[127.0.0.1]:{host.port} {host.host_key}", "password": f"file:{host.dir / 'sluice_key'}"}
    connections = {
        "web1": web1,
        # The same host pinned to another key: a host key mismatch.
        "web1_impostor": {**web1, "host_key": (host.dir / "other_key.pub").read_text().strip()},
        "web1_down": {**web1, "port": free_port(), "connect_timeout_ms": 1000},
        "web1_ro": {**web1, "policy": "read-only"},
        "web1_sh": web1,
    }
    gw = Sluice(pg, extra_toml=RULES + host_rules(host), settings={"connections": connections,
                                                         "ssh": {"listen": "127.0.0.1:0", "auth_timeout_secs": 3}})
    gw.start()
    gw.agent_token = gw.token()
    yield gw
    code = gw.stop()
    assert "panicked" not in gw.log(), gw.log()
    assert code == 0, gw.log()[-3000:]


def ssh_env(gw, token=None):
    """The client's environment: the token given by SSH_ASKPASS, as an agent without a terminal
    gives it."""
    askpass = Path(gw.dir) / "askpass.sh"
    if not askpass.exists():
        askpass.write_text("#!/bin/sh\nprintf '%s\\n' \"$SLUICE_TEST_TOKEN\"\n")
        askpass.chmod(0o700)
    return dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY="none",
                SLUICE_TEST_TOKEN=token or gw.agent_token)


def ssh_command(gw, command, target="web1", token=None, extra=()):
    # ssh keeps the first value it is given for an option: `extra` comes first to override.
    cmd = ["ssh", *extra, "-p", str(gw.ssh_port), "-o", "StrictHostKeyChecking=no", "-o",
           "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no", "-o",
           "NumberOfPasswordPrompts=1", "-o", "PreferredAuthentications=password", f"agent+{target}@127.0.0.1"]
    return cmd + ([command] if command is not None else [])


def ssh(gw, command, target="web1", token=None, stdin=None, extra=()):
    """Runs `command` through sluice with the real ssh client."""
    return subprocess.run(ssh_command(gw, command, target, token, extra), input=stdin, capture_output=True, text=True,
                          env=ssh_env(gw, token), timeout=60, stdin=None if stdin is not None else subprocess.DEVNULL)


def test_an_allowed_command_runs_on_the_host_with_the_held_key(gw, host):
    r = ssh(gw, "whoami; echo hello from $(cat /etc/hostname | wc -c) bytes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == host.user
    assert lines[1].startswith("hello from ")
    # The agent authenticated with its token; sluice's key to the host never left sluice.
    assert "PRIVATE KEY" not in r.stdout + r.stderr


def test_output_and_input_are_masked_and_passed(gw):
    r = ssh(gw, "echo card 4111 1111 1111 1111; echo mail ann@example.com >&2")
    assert r.returncode == 0, r.stderr
    assert "4111" not in r.stdout and "[redacted:credit-card]" in r.stdout
    assert "ann@example.com" not in r.stderr and "[redacted:email]" in r.stderr
    r = ssh(gw, "cat", stdin="one line from the agent with bob@example.com\nand a second\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "one line from the agent with [redacted:email]\nand a second\n"


def test_values_a_terminal_shows_through_colours_or_other_characters_are_masked(gw, host):
    # grep's colours split the number it matched from the rest; man's bold strikes each letter
    # twice; a file may hold fullwidth digits and a zero-width space in an address.
    bold = "".join(f"{c}\b{c}" for c in "078-05-1120")
    f = host.dir / "shown.txt"
    f.write_text(f"ssn 078-05-1120\nSSN: {bold}\nid ０７８－０５－１１２０\nmail ann\u200b@example.com\n", encoding="utf-8")
    f.chmod(0o644)
    r = ssh(gw, f"grep --color=always 078 {f}; cat {f}")
    assert r.returncode == 0, r.stderr
    assert "1120" not in r.stdout and "１１２０" not in r.stdout and "example.com" not in r.stdout, repr(r.stdout)
    assert r.stdout.count("[redacted:ssn]") == 1 + 3 and r.stdout.count("[redacted:email]") == 1, repr(r.stdout)


def test_a_credential_named_on_the_line_above_in_an_earlier_packet_is_masked(gw):
    # `kubectl get pod -o yaml` names a variable on one line and gives its value on the next; the
    # pause sends the two lines in separate packets.
    r = ssh(gw, "printf -- '- name: DB_PASSWORD\\n'; sleep 0.5; printf -- '  value: hK9mQ2vL7pXwRt\\n'; "
                "printf -- '- name: DB_HOST\\n  value: db7.internal\\n'")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("- name: DB_PASSWORD\n  value: [redacted:credential]\n"
                        "- name: DB_HOST\n  value: db7.internal\n"), repr(r.stdout)


def test_the_exit_status_comes_back(gw):
    r = ssh(gw, "ls /nonexistent-dir")
    assert r.returncode == 2, (r.returncode, r.stderr)


def test_a_denied_command_says_which_rule_and_what_to_do(gw):
    r = ssh(gw, "sudo ls /root")
    assert r.returncode == 126
    assert 'sluice: denied by rule "web-no-root": agents do not run commands as another user' in r.stderr
    assert "next: run it without sudo" in r.stderr
    r = ssh(gw, "curl http://example.com")
    assert r.returncode == 126 and "denied by rule" in r.stderr


def approve(gw, review_id):
    approver = gw.token("olga", "approvers")
    env = dict(gw.env, SLUICE_TOKEN=approver, SLUICE_URL=gw.api_url)
    subprocess.run([str(sluice_binary()), "--config", str(gw.config), "review", "approve", str(review_id)],
                   env=env, check=True, capture_output=True, timeout=60)


def test_a_reviewed_command_names_its_review_and_runs_once_approved(gw, host):
    target = host.dir / "reviewed-file"
    target.write_text("x")
    line = f"rm -f {target}"
    r = ssh(gw, line)
    assert r.returncode == 126
    assert "approval #" in r.stderr and "pending" in r.stderr and "web-deletes-reviewed" in r.stderr
    assert "re-run the same command once approved" in r.stderr
    assert target.exists()
    review_id = int(re.search(r"approval #(\d+)", r.stderr).group(1))
    approve(gw, review_id)
    # Another line is another command: the approval is bound to this one.
    r = ssh(gw, line + " ")
    assert r.returncode == 126 and f"approval #{review_id} " not in r.stderr, r.stderr
    assert target.exists()
    r = ssh(gw, line)
    assert r.returncode == 0, r.stderr
    assert not target.exists()
    # Once: the same line again needs a new approval.
    r = ssh(gw, line)
    assert r.returncode == 126 and "pending" in r.stderr


def test_a_command_in_wait_mode_is_held_then_runs_when_approved(gw, host):
    target = host.dir / "waited-file"
    client = subprocess.Popen(ssh_command(gw, f"touch {target}"), env=ssh_env(gw), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    notice = client.stderr.readline()
    assert "approval #" in notice and "waiting" in notice, notice
    assert not target.exists()
    approve(gw, int(re.search(r"approval #(\d+)", notice).group(1)))
    assert client.wait(timeout=30) == 0, client.stderr.read()
    assert target.exists()


def test_what_cannot_be_read_is_refused(gw):
    for line in ['eval "$CMD"', "r''m -rf $'/'", "echo $(rm -rf /tmp/x)", "X=rm; $X -rf /tmp", "cat x | sh"]:
        r = ssh(gw, line)
        assert r.returncode == 126, (line, r.stdout, r.stderr)
        assert r.stdout == "", line


def test_a_host_key_mismatch_or_a_dead_host_is_told_clearly(gw):
    r = ssh(gw, "true", target="web1_impostor")
    assert r.returncode == 126
    assert "not the one pinned for it" in r.stderr, r.stderr
    r = ssh(gw, "true", target="web1_down")
    assert r.returncode == 126
    assert "cannot reach web1_down" in r.stderr, r.stderr


def test_a_bad_token_is_refused_and_shells_and_forwarding_are_not_served(gw):
    r = ssh(gw, "true", token="not-a-token")
    assert r.returncode == 255 and "Permission denied" in r.stderr
    # A user name without a connection, and none named by SetEnv: told how to name one, and
    # recorded like any attempt.
    cmd = ssh_command(gw, "true")
    cmd[-2] = "agent@127.0.0.1"
    r = subprocess.run(cmd, env=ssh_env(gw), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 126 and "no connection named" in r.stderr and "SetEnv=SLUICE_TARGET" in r.stderr
    wait_for(lambda: ("agent", "unknown_connection") in [(a["user"], a["outcome"]) for a in gw.auth_events()],
             timeout=10, what="the attempt recorded")
    # A shell needs a rule of its own (web1 has none).
    r = ssh(gw, None, extra=("-T",))
    assert r.returncode == 126 and 'denied by rule "default"' in r.stderr, r.stderr
    assert "what matched: (interactive shell)" in r.stderr
    # A transfer is decided by the files it reaches (here by no rule: the default), and recorded.
    r = ssh(gw, "scp -f /etc/hostname")
    assert r.returncode == 126 and 'denied by rule "default"' in r.stderr, r.stderr
    assert "scp read /etc/hostname" in r.stderr, r.stderr
    details = gw.session_with(lambda d: any(s["text"] == "scp -f /etc/hostname" for s in d["statements"]))
    statement = next(s for s in details["statements"] if s["text"] == "scp -f /etc/hostname")
    assert statement["decision"] == "deny" and statement["rule"] == "default"


def test_every_command_and_its_verdict_is_recorded(gw):
    ssh(gw, "echo recorded-marker")
    ssh(gw, "sudo echo refused-marker")
    ran = gw.session_with(lambda d: "echo recorded-marker" in json.dumps(d))
    refused = gw.session_with(lambda d: "sudo echo refused-marker" in json.dumps(d))
    assert ran["session"]["protocol"] == "ssh" and ran["session"]["connection"] == "web1"
    assert ran["session"]["end_reason"] == "the client disconnected"
    statement = next(s for s in ran["statements"] if "recorded-marker" in s["text"])
    assert statement["decision"] == "allow" and statement["rule"] == "web-reads"
    # What the command printed is kept (masked) as a terminal's recording.
    cast = gw.cli("sessions", "replay", ran["session"]["id"], "--cast").stdout.splitlines()
    assert json.loads(cast[0])["version"] == 2
    assert any(json.loads(line)[2] == "recorded-marker\r\n" for line in cast[1:]), cast
    statement = next(s for s in refused["statements"] if "refused-marker" in s["text"])
    assert statement["decision"] == "deny" and statement["rule"] == "web-no-root"


def test_a_revoked_token_runs_nothing_more_on_a_shared_connection(gw):
    """OpenSSH's connection sharing (ControlMaster) runs many commands over one authenticated
    connection: each is checked against the token's standing."""
    token = gw.token()
    control = str(Path(gw.dir) / "cm-%C")
    shared = ("-o", f"ControlPath={control}")
    master = ssh_command(gw, None, token=token, extra=("-f", "-N", "-o", "ControlMaster=yes", *shared))
    subprocess.run(master, env=ssh_env(gw, token), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30, check=True)
    try:
        r = ssh(gw, "echo over the shared connection", token=token, extra=("-o", "ControlMaster=no", *shared))
        assert r.returncode == 0 and r.stdout == "over the shared connection\n", r.stderr
        # A command running when the token is revoked is stopped (sessions learn of revocations
        # within a few seconds), and the next one is refused.
        running = subprocess.Popen(ssh_command(gw, "echo running; sleep 60; echo never", token=token,
                                               extra=("-o", "ControlMaster=no", *shared)),
                                   env=ssh_env(gw, token), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert running.stdout.readline() == "running\n"
        gw.cli("token", "revoke", token.split("_")[1])
        out, err = running.communicate(timeout=30)
        assert "never" not in out and "the command was stopped: its token was revoked" in err, err
        r = ssh(gw, "echo after revocation", token=token, extra=("-o", "ControlMaster=no", *shared))
        assert r.returncode == 126, (r.stdout, r.stderr)
        assert "its token was revoked" in r.stderr
        assert r.stdout == ""
    finally:
        subprocess.run(ssh_command(gw, None, token=token, extra=("-O", "exit", *shared)), env=ssh_env(gw, token),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def test_a_client_that_goes_away_stops_its_command(gw):
    started = time.monotonic()
    client = subprocess.Popen(ssh_command(gw, "echo started; sleep 60; echo never"), env=ssh_env(gw),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert client.stdout.readline() == "started\n"
    client.kill()
    client.wait()
    # The command's record is written when it ends: well before the minute it would have run.
    details = gw.session_with(lambda d: any("sleep 60" in s["text"] for s in d["statements"]), timeout=20)
    assert time.monotonic() - started < 30
    assert details["session"]["end_reason"] == "the client disconnected"


def test_input_and_output_in_bulk_both_ways_at_once(gw):
    # `cat` sends everything back while its input still comes: neither direction may wait on the
    # other, and nothing is lost or reordered on the way.
    lines = "".join(f"line {i:07d} of the agent's input\n" for i in range(200_000))
    r = ssh(gw, "cat", stdin=lines)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout) == len(lines) and r.stdout == lines


def test_a_client_that_does_not_authenticate_in_time_is_let_go(gw):
    # Without a word after TCP's handshake.
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.ssh_port), timeout=20) as s:
        while s.recv(4096):
            pass
    assert time.monotonic() - started < 10
    # After the SSH handshake, slow to give a token.
    slow = Path(gw.dir) / "slow-askpass.sh"
    slow.write_text("#!/bin/sh\nsleep 6\nprintf '%s\\n' \"$SLUICE_TEST_TOKEN\"\n")
    slow.chmod(0o700)
    env = dict(ssh_env(gw), SSH_ASKPASS=str(slow))
    started = time.monotonic()
    r = subprocess.run(ssh_command(gw, "echo too late"), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 255 and "too late" not in r.stdout, (r.stdout, r.stderr)


def test_an_interactive_shell_runs_where_a_rule_allows_one_and_is_recorded_masked(gw):
    # A line typed without echo (read -s, as a password prompt reads) is not recorded.
    typed = "echo shell-$((6*7))\necho card 4111 1111 1111 1111\nexit 3\n"
    r = ssh(gw, None, target="web1_sh", stdin=typed, extra=("-tt",))
    assert r.returncode == 3, (r.stdout, r.stderr)
    # The terminal echoes what is typed: masked on the way back like the output.
    assert "shell-42" in r.stdout
    assert "4111" not in r.stdout and "[redacted:credit-card]" in r.stdout
    details = gw.session_with(lambda d: any(s["text"] == "echo shell-$((6*7))" for s in d["statements"]), timeout=30)
    statements = {s["text"]: s for s in details["statements"]}
    assert statements["(interactive shell)"]["decision"] == "allow"
    assert statements["(interactive shell)"]["rule"] == "web-shells"
    # Each typed line is recorded with what policy would say of it, as an audit aid.
    assert statements["echo shell-$((6*7))"]["decision"] == "typed"
    assert "4111" not in json.dumps(details)
    assert "hunter2" not in json.dumps(details)
    session_id = details["session"]["id"]
    cast = gw.cli("sessions", "replay", session_id, "--cast").stdout.splitlines()
    header = json.loads(cast[0])
    assert header["version"] == 2 and header["width"] > 0
    output = "".join(json.loads(line)[2] for line in cast[1:] if json.loads(line)[1] == "o")
    assert "shell-42" in output and "[redacted:credit-card]" in output and "4111" not in output
    played = gw.cli("sessions", "replay", session_id, "--terminal").stdout
    assert "shell-42" in played and "4111" not in played
    # The read-only preset refuses shells.
    r = ssh(gw, None, target="web1_ro", stdin="exit\n", extra=("-tt",))
    assert r.returncode == 126 and "read-only" in r.stdout + r.stderr, (r.stdout, r.stderr)


def test_forwarding_reaches_what_a_rule_names_and_nothing_else(gw, host):
    # ssh -W joins the client's stdin and stdout to a connection from the host: here to the host's
    # own sshd, which greets with its banner.
    client = subprocess.Popen(ssh_command(gw, None, extra=("-W", f"127.0.0.1:{host.port}")), env=ssh_env(gw),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = client.stdout.readline()
    client.stdin.close()
    client.wait(timeout=30)
    assert banner.startswith("SSH-2.0-OpenSSH"), (banner, client.stderr.read())
    for elsewhere in ("127.0.0.1:22", "169.254.169.254:80", f"localhost:{host.port}"):
        r = ssh(gw, None, stdin="", extra=("-W", elsewhere))
        assert r.returncode == 255 and "forwarding failed" in r.stderr, (elsewhere, r.stderr)
    # Recorded, allowed and refused.
    details = gw.session_with(lambda d: any(s["text"] == "(forward to 169.254.169.254:80)" for s in d["statements"]))
    statement = next(s for s in details["statements"] if s["text"] == "(forward to 169.254.169.254:80)")
    assert statement["decision"] == "deny" and statement["rule"] == "default"
    details = gw.session_with(lambda d: any(s["text"] == f"(forward to 127.0.0.1:{host.port})" for s in d["statements"]))
    statement = next(s for s in details["statements"] if s["text"] == f"(forward to 127.0.0.1:{host.port})")
    assert statement["decision"] == "allow" and statement["rule"] == "web-forwards"


def test_a_public_key_registered_to_the_identity_stands_for_its_token(gw, host, tmp_path):
    key = tmp_path / "agent_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    added = gw.cli("identity", "add-key", "--identity", "agent", "--description", "ci agent", f"{key}.pub")
    key_id = re.search(r"as id ([0-9a-f]{12})", added.stderr).group(1)
    with_key = ("-o", "PubkeyAuthentication=yes", "-o", "PreferredAuthentications=publickey,password",
                "-o", "IdentitiesOnly=yes", "-i", str(stranger), "-i", str(key))
    # The stranger's key is refused before it is used; the agent's logs in, no token asked.
    r = ssh(gw, "echo by key", token="not-a-token", extra=with_key)
    assert r.returncode == 0 and r.stdout == "by key\n", r.stderr
    listed = gw.cli("token", "list").stdout
    assert key_id in listed and "SHA256:" in listed
    # The key proves `agent`, not another identity.
    cmd = ssh_command(gw, "true", token="not-a-token", extra=with_key)
    cmd[-2] = "olga+web1@127.0.0.1"
    r = subprocess.run(cmd, env=ssh_env(gw, "not-a-token"), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 255 and ("Permission denied" in r.stderr or "authentication attempts" in r.stderr)
    # A private key is not taken for a public one, and one key is registered once.
    assert gw.cli("identity", "add-key", "--identity", "agent", str(key), check=False).returncode != 0
    assert gw.cli("identity", "add-key", "--identity", "x", f"{key}.pub", check=False).returncode != 0
    # Revoked like a token: refused, and recorded as such.
    gw.cli("token", "revoke", key_id)
    r = ssh(gw, "true", token="not-a-token", extra=with_key)
    assert r.returncode == 255 and ("Permission denied" in r.stderr or "authentication attempts" in r.stderr)
    outcomes = [(a["user"], a["outcome"]) for a in gw.auth_events()]
    assert ("olga", "identity_mismatch") in outcomes, outcomes[-5:]


def test_the_host_listens_for_the_agent_only_where_a_rule_allows(gw, host):
    # The agent's side: a service that greets whoever connects.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    local_port = server.getsockname()[1]
    greeting = b"hello from the agent's side\n"

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(greeting)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    forward = ("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{host.listen_port}:127.0.0.1:{local_port}")
    client = subprocess.Popen(ssh_command(gw, None, extra=forward), env=ssh_env(gw), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # On the host, a connection to the port it listens on reaches the agent's service.
        wait_for(lambda: port_open(host.listen_port), timeout=20, what="the host listening for the agent")
        with socket.create_connection(("127.0.0.1", host.listen_port), timeout=10) as s:
            assert s.recv(100) == greeting
    finally:
        client.terminate()
        client.wait(timeout=10)
        server.close()
    # Nowhere else.
    elsewhere = ("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{free_port()}:127.0.0.1:{local_port}")
    r = ssh(gw, None, extra=elsewhere)
    assert r.returncode == 255 and "forwarding failed" in r.stderr, r.stderr
    details = gw.session_with(lambda d: any(s["text"] == f"(listen on 127.0.0.1:{host.listen_port})"
                                            for s in d["statements"]))
    statement = next(s for s in details["statements"] if s["text"] == f"(listen on 127.0.0.1:{host.listen_port})")
    assert statement["decision"] == "allow" and statement["rule"] == "web-listens"
    # Once the agent is gone, the host listens no more.
    wait_for(lambda: not port_open(host.listen_port), timeout=10, what="the host to stop listening")


def test_the_connection_may_be_named_with_setenv(gw):
    def named(target, token=None):
        cmd = ssh_command(gw, "echo named", token=token, extra=("-o", f"SetEnv=SLUICE_TARGET={target}"))
        cmd[-2] = "agent@127.0.0.1"
        return subprocess.run(cmd, env=ssh_env(gw, token), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)
    r = named("web1")
    assert r.returncode == 0 and r.stdout == "named\n", r.stderr
    # The token is checked when the connection is named: a bad one opens nothing.
    r = named("web1", token="slu_000000000000_" + "0" * 64)
    assert r.returncode != 0 and r.stdout == ""
    r = named("no-such-connection")
    assert r.returncode != 0 and r.stdout == ""
    def recorded():
        outcomes = [a["outcome"] for a in gw.auth_events() if a["user"] == "agent"]
        return "unknown_token" in outcomes and "unknown_connection" in outcomes

    wait_for(recorded, timeout=10, what="the refused attempts recorded")


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_reads_slowly_holds_its_command_back_not_sluices_memory(gw, host):
    big = host.dir / "zeros.bin"
    with open(big, "wb") as f:
        f.truncate(512 * 1024 * 1024)
    before = rss_mib(gw.proc.pid)
    client = subprocess.Popen(ssh_command(gw, f"cat {big}"), env=ssh_env(gw), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert len(client.stdout.read(1024 * 1024)) == 1024 * 1024
        # The host could send the rest in a second or two; the client takes no more for a while.
        time.sleep(4)
        grown = rss_mib(gw.proc.pid) - before
        assert grown < 64, f"sluice grew by {grown:.0f} MiB for a client that does not read"
    finally:
        client.kill()
        client.wait()
        big.unlink()


def test_a_line_typed_without_echo_is_not_recorded(gw):
    client = subprocess.Popen(ssh_command(gw, None, target="web1_sh", extra=("-tt",)), env=ssh_env(gw),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # As a person types: a line, the prompt (read -s turns echo off), the password, then exit.
    for line, pause in ((b"echo before-the-prompt\n", 1.5), (b"read -rs word\n", 1.5),
                        (b"hunter2-typed-unseen\n", 1.5), (b"exit 4\n", 0)):
        client.stdin.write(line)
        client.stdin.flush()
        time.sleep(pause)
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 4, out
    assert b"hunter2" not in out
    details = gw.session_with(lambda d: any(s["text"] == "echo before-the-prompt" for s in d["statements"]),
                              timeout=30)
    texts = [s["text"] for s in details["statements"]]
    assert "read -rs word" in texts and "(a line typed without echo)" in texts, texts
    assert "hunter2" not in json.dumps(details)


def test_an_agent_can_read_the_rules_of_a_host_before_acting(gw, host):
    from conftest import api_request
    status, policy = api_request(gw.api_url, gw.agent_token, "GET", "/api/v1/connections/web1/policy")
    assert status == 200, policy
    rules = {r["name"]: r for r in policy["rules"]}
    assert rules["web-reads"]["protocol"] == "ssh" and rules["web-reads"]["kinds"] == []
    assert any(m.startswith('programs = ["echo"') for m in rules["web-reads"]["matches"]), rules["web-reads"]
    assert rules["web-no-root"]["matches"] == ["sudo = true"]
    assert rules["web-forwards"]["matches"] == [f'forwards = ["127.0.0.1:{host.port}"]']
    # Only rules about what the connection serves (and those of scope only).
    assert all(r["protocol"] in ("ssh", "any") for r in policy["rules"]), policy["rules"]
    status, policy = api_request(gw.api_url, gw.agent_token, "GET", "/api/v1/connections/web1_ro/policy")
    shown = {r["effect"]: r["matches"] for r in policy["rules"] if r["name"] == "connection web1_ro: read-only"}
    assert "file operations that read" in shown["allow"][0] and "every command line" in shown["deny"][0], shown
