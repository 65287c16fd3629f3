"""File transfers through sluice with the real clients — sftp, scp (over SFTP, and its original
protocol with -O), rsync and git — against OpenSSH's sshd: each file operation decided by its path,
the read-only preset letting reads through and nothing that writes, every operation recorded."""

import json
import os
import subprocess
import time

import pytest

import test_ssh
from test_ssh import ssh, ssh_env

# The SSH tests' host and gateway, for this module too.
host = test_ssh.host
gw = test_ssh.gw

OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
           "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
           "-o", "PreferredAuthentications=password"]


def run(gw, cmd, cwd=None, stdin=None, env=None):
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
                          env=env or ssh_env(gw), stdin=None if stdin is not None else subprocess.DEVNULL)


def sftp(gw, batch, target="web1"):
    """Runs sftp's batch mode; a line starting with `-` may fail without ending the batch. (Batch
    mode turns ssh's BatchMode on, which would not ask for the token: an option given before -b
    comes first.)"""
    return run(gw, ["sftp", "-P", str(gw.ssh_port), *OPTIONS, "-o", "BatchMode=no", "-b", "-",
                    f"agent+{target}@127.0.0.1"],
               stdin=batch)


def scp(gw, *args, legacy=False):
    return run(gw, ["scp", *(["-O"] if legacy else []), "-P", str(gw.ssh_port), *OPTIONS, *args])


def remote(target, path):
    return f"agent+{target}@127.0.0.1:{path}"


def ssh_transport(gw):
    return " ".join(["ssh", "-p", str(gw.ssh_port), *OPTIONS])


@pytest.fixture(scope="module")
def tree(host):
    """The host's files: `pub` (readable on web1), `up` (writable on web1), `secret` (neither), a
    bare git repository in `up`."""
    d = host.dir
    for sub in ("pub", "up", "secret"):
        (d / sub).mkdir(exist_ok=True)
    (d / "pub" / "notes.txt").write_text("public notes\n")
    (d / "pub" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (d / "pub" / "tls.pem").write_text("-----BEGIN PRIVATE KEY-----\nxyz\n")
    (d / "secret" / "plan.txt").write_text("secret plan\n")
    repo = d / "up" / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    work = d / "seed"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (work / "README").write_text("seed\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "seed"], check=True)
    subprocess.run([*git, "push", "-q", str(repo), "HEAD:refs/heads/main"], check=True)
    subprocess.run(["git", "-C", str(repo), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    return d


def test_sftp_reads_and_writes_where_rules_allow_and_nowhere_else(gw, tree, tmp_path):
    local = tmp_path / "local.txt"
    local.write_text("uploaded by the agent\n")
    r = sftp(gw, f"get {tree}/pub/notes.txt {tmp_path}/notes.txt\n"
                 f"ls {tree}/pub\n"
                 f"put {local} {tree}/up/local.txt\n"
                 f"rename {tree}/up/local.txt {tree}/up/moved.txt\n"
                 f"mkdir {tree}/up/newdir\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "notes.txt").read_text() == "public notes\n"
    assert "notes.txt" in r.stdout
    assert (tree / "up" / "moved.txt").read_text() == "uploaded by the agent\n"
    assert (tree / "up" / "newdir").is_dir()
    # Elsewhere: refused per operation, saying which rule; the session goes on.
    r = sftp(gw, f"-get {tree}/secret/plan.txt {tmp_path}/plan.txt\n"
                 f"-put {local} {tree}/pub/local.txt\n"
                 f"-rm {tree}/pub/notes.txt\n"
                 f"-get {tree}/pub/tls.pem {tmp_path}/tls.pem\n"
                 f"-rename {tree}/up/moved.txt {tree}/pub/moved.txt\n"
                 f"get {tree}/pub/notes.txt {tmp_path}/again.txt\n")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "plan.txt").exists() and not (tmp_path / "tls.pem").exists()
    assert not (tree / "pub" / "local.txt").exists() and (tree / "pub" / "notes.txt").exists()
    assert (tree / "up" / "moved.txt").exists() and not (tree / "pub" / "moved.txt").exists()
    assert (tmp_path / "again.txt").read_text() == "public notes\n"
    assert 'sluice: denied by rule "default"' in r.stderr, r.stderr
    assert f"what matched: sftp read {tree}/secret/plan.txt" in r.stderr, r.stderr
    assert 'denied by rule "web-no-keys": private keys are not read by agents' in r.stderr, r.stderr
    # A directory's files are not known before they are sent: a recursive read is refused where a
    # refusing rule may match something below it (pub holds a .pem; rsync reads recursively).
    r = run(gw, ["rsync", "-a", "-e", ssh_transport(gw), remote("web1", f"{tree}/pub/"), str(tmp_path / "rs")])
    assert r.returncode != 0 and 'denied by rule "web-no-keys"' in r.stderr, r.stderr
    assert f"rsync read {tree}/pub/**" in r.stderr
    # A symbolic link is decided where it leads too: one in an allowed directory opens no other,
    # and a `..` after a link goes up from where the link leads, not from the link.
    (tree / "secret" / "inner").mkdir(exist_ok=True)
    (tree / "pub" / "door").symlink_to(tree / "secret")
    (tree / "pub" / "hatch").symlink_to(tree / "secret" / "inner")
    try:
        r = sftp(gw, f"-get {tree}/pub/door/plan.txt {tmp_path}/plan.txt\n-ls {tree}/pub/door\n"
                     f"-get {tree}/pub/hatch/../plan.txt {tmp_path}/plan.txt\n")
        listed = [line for line in r.stdout.splitlines() if not line.startswith("sftp>")]
        assert not (tmp_path / "plan.txt").exists() and listed == [], r.stdout
        assert f"what matched: sftp read {tree}/secret" in r.stderr, r.stderr
        # The same for transfers run as commands (scp's original protocol, rsync).
        for source in (f"{tree}/pub/door/plan.txt", f"{tree}/pub/hatch/../plan.txt"):
            r = scp(gw, remote("web1", source), str(tmp_path / "plan.txt"), legacy=True)
            assert r.returncode != 0 and f"scp read {tree}/secret" in r.stderr, (source, r.stderr)
            r = run(gw, ["rsync", "-e", ssh_transport(gw), remote("web1", source), str(tmp_path / "plan.txt")])
            # (rsync's paths are read as trees: web-no-keys, for the .pem in pub, may refuse first.)
            assert r.returncode != 0 and "sluice: denied by rule" in r.stderr, (source, r.stderr)
        assert not (tmp_path / "plan.txt").exists()
    finally:
        (tree / "pub" / "door").unlink()
        (tree / "pub" / "hatch").unlink()
        (tree / "secret" / "inner").rmdir()
    # Relative paths lead from the home directory, `..` and all: decided where they lead.
    r = sftp(gw, f"-get ../../../../../../../{tree}/secret/plan.txt {tmp_path}/plan.txt\n")
    assert not (tmp_path / "plan.txt").exists()
    assert f"sftp read {tree}/secret/plan.txt" in r.stderr, r.stderr


def test_every_sftp_operation_is_recorded_with_its_verdict(gw, tree, tmp_path):
    sftp(gw, f"-get {tree}/secret/plan.txt {tmp_path}/x\nget {tree}/pub/notes.txt {tmp_path}/y\n")
    details = gw.session_with(lambda d: f"sftp read {tree}/secret/plan.txt" in json.dumps(d)
                              and str(tmp_path) not in json.dumps(d) and f"{tree}/pub/notes.txt" in json.dumps(d))
    verdicts = {(s["text"], s["decision"], s["rule"]) for s in details["statements"]}
    assert (f"sftp read {tree}/secret/plan.txt", "deny", "default") in verdicts, verdicts
    assert (f"sftp read {tree}/pub/notes.txt", "allow", "web-files-public") in verdicts, verdicts
    assert any(text == "(subsystem sftp)" for text, _, _ in verdicts), verdicts


def test_read_only_lets_every_client_read_and_none_write(gw, tree, tmp_path):
    # sftp
    r = sftp(gw, f"get {tree}/secret/plan.txt {tmp_path}/sftp.txt\n", target="web1_ro")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sftp.txt").read_text() == "secret plan\n"
    for line in (f"put {tmp_path}/sftp.txt {tree}/secret/new.txt", f"rm {tree}/secret/plan.txt",
                 f"mkdir {tree}/secret/d", f"chmod 600 {tree}/secret/plan.txt",
                 f"rename {tree}/secret/plan.txt {tree}/secret/p2.txt", f"ln -s /etc {tree}/secret/etc"):
        r = sftp(gw, line + "\n", target="web1_ro")
        assert r.returncode != 0 and "this host is read-only here" in r.stderr, (line, r.stderr)
    assert sorted(p.name for p in (tree / "secret").iterdir()) == ["plan.txt"]
    assert (tree / "secret" / "plan.txt").stat().st_mode & 0o777 != 0o600
    # scp, over SFTP and with its original protocol
    for legacy in (False, True):
        out = tmp_path / f"scp-{legacy}.bin"
        r = scp(gw, remote("web1_ro", f"{tree}/pub/big.bin"), str(out), legacy=legacy)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == (tree / "pub" / "big.bin").read_bytes()
        r = scp(gw, str(out), remote("web1_ro", f"{tree}/secret/"), legacy=legacy)
        assert r.returncode != 0 and "read-only" in r.stderr, r.stderr
        assert not (tree / "secret" / out.name).exists()
    # rsync
    r = run(gw, ["rsync", "-a", "-e", ssh_transport(gw), remote("web1_ro", f"{tree}/pub/"), str(tmp_path / "rs")])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rs" / "big.bin").read_bytes() == (tree / "pub" / "big.bin").read_bytes()
    r = run(gw, ["rsync", "-a", "-e", ssh_transport(gw), str(tmp_path / "rs") + "/", remote("web1_ro", f"{tree}/secret/")])
    assert r.returncode != 0 and "read-only" in r.stderr, r.stderr
    assert sorted(p.name for p in (tree / "secret").iterdir()) == ["plan.txt"]
    # A command, even one that only reads, is not a transfer: whether it writes cannot be known.
    r = ssh(gw, "cat /etc/hostname", target="web1_ro")
    assert r.returncode == 126 and "read-only" in r.stderr, r.stderr


def test_git_clones_where_it_may_read_and_pushes_where_it_may_write(gw, tree, tmp_path):
    env = dict(ssh_env(gw), GIT_SSH_COMMAND=ssh_transport(gw))
    url = f"ssh://agent+web1_ro@127.0.0.1:{gw.ssh_port}{tree}/up/repo.git"
    r = run(gw, ["git", "clone", "-q", url, str(tmp_path / "clone")], env=env)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "clone"
    assert (work / "README").read_text() == "seed\n"
    git = ["git", "-C", str(work), "-c", "user.name=a", "-c", "user.email=a@example.com"]
    (work / "change.txt").write_text("from the agent\n")
    subprocess.run([*git, "add", "change.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "change"], check=True)
    r = run(gw, [*git, "push", "-q", "origin", "HEAD:main"], env=env)
    assert r.returncode != 0 and "read-only" in r.stderr, r.stderr
    head = subprocess.run(["git", "-C", str(tree / "up" / "repo.git"), "log", "--oneline"], capture_output=True,
                          text=True, check=True).stdout
    assert "change" not in head
    # web1 lets the agent write in `up`.
    rw = url.replace("web1_ro", "web1")
    r = run(gw, [*git, "push", "-q", rw, "HEAD:main"], env=env)
    assert r.returncode == 0, r.stderr
    head = subprocess.run(["git", "-C", str(tree / "up" / "repo.git"), "log", "--oneline"], capture_output=True,
                          text=True, check=True).stdout
    assert "change" in head


def test_a_client_that_goes_away_mid_transfer_leaves_sluice_serving(gw, tree, tmp_path):
    big = tree / "pub" / "huge.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(64 * 1024 * 1024))
    client = subprocess.Popen(["scp", "-P", str(gw.ssh_port), *OPTIONS, "-l", "8000",
                               remote("web1", str(big)), str(tmp_path / "huge.bin")],
                              env=ssh_env(gw), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (tmp_path / "huge.bin").exists() and (tmp_path / "huge.bin").stat().st_size > 0:
                break
            time.sleep(0.1)
        client.kill()
        client.wait(timeout=10)
    finally:
        big.unlink()
    r = sftp(gw, f"get {tree}/pub/notes.txt {tmp_path}/after.txt\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "after.txt").read_text() == "public notes\n"
    details = gw.session_with(lambda d: f"sftp read {big}" in json.dumps(d), timeout=20)
    assert details["session"]["end_reason"] == "the client disconnected"


def test_what_sluice_cannot_read_of_a_transfer_is_refused(gw, tree):
    for line in (f"rsync --server --sender -vlogDtpre.iLsfxCIvu --remove-source-files . {tree}/pub/",
                 f"scp -f {tree}/pub/notes.txt; rm -rf {tree}/pub",
                 "/usr/lib/openssh/sftp-server",
                 f"git-upload-pack --upload-pack=sh {tree}/up/repo.git"):
        r = ssh(gw, line, target="web1_ro")
        assert r.returncode == 126 and "cannot tell for certain" in r.stderr, (line, r.stderr)
    assert (tree / "pub" / "notes.txt").exists()
