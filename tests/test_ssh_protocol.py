"""SSH through sluice at the protocol's level, with paramiko: what OpenSSH's own client never sends
(two requests on one channel, a NUL in a command line, several channels at once with different
verdicts, an unknown subsystem, environment variables) and SFTP driven request by request."""

import errno
import socket

import paramiko
import pytest

import test_ssh

# The SSH tests' host and gateway, for this module too.
host = test_ssh.host
gw = test_ssh.gw


@pytest.fixture
def client(gw):
    c = connect(gw, "web1")
    yield c
    c.close()


def connect(gw, target, token=None):
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    c.connect("127.0.0.1", port=gw.ssh_port, username=f"agent+{target}", password=token or gw.agent_token,
              look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20)
    return c


def run(channel, command):
    """Runs `command` on an opened channel: (exit status, stdout, stderr)."""
    channel.exec_command(command)
    out, err = channel.makefile("rb").read(), channel.makefile_stderr("rb").read()
    return channel.recv_exit_status(), out.decode(), err.decode()


def test_each_channel_of_one_connection_gets_its_own_verdict(client):
    transport = client.get_transport()
    allowed, denied = transport.open_session(), transport.open_session()
    allowed.exec_command("echo one")
    denied.exec_command("sudo echo two")
    assert allowed.makefile("rb").read() == b"one\n"
    assert allowed.recv_exit_status() == 0
    assert denied.recv_exit_status() == 126
    assert b'denied by rule "web-no-root"' in denied.makefile_stderr("rb").read()
    # The connection goes on serving.
    assert run(transport.open_session(), "echo three")[:2] == (0, "three\n")


def test_a_second_request_on_a_channel_is_refused_not_run(gw, client):
    channel = client.get_transport().open_session()
    channel.exec_command("sleep 1; echo first-of-two")
    # Refused with SSH's channel-request failure (paramiko then closes the channel).
    with pytest.raises(paramiko.SSHException):
        channel.exec_command("echo second-of-two")
    client.close()
    details = gw.session_with(lambda d: any("first-of-two" in s["text"] for s in d["statements"]))
    assert not any("second-of-two" in s["text"] for s in details["statements"]), details["statements"]


def test_a_line_sluice_cannot_read_is_refused(client):
    for line in ["echo a\x00; rm -rf /tmp/x", "ls " + "x" * 20000]:
        status, out, err = run(client.get_transport().open_session(), line)
        assert status == 126 and out == "" and "cannot tell for certain" in err, (line[:20], err)


def test_environment_and_unknown_subsystems_are_refused(client):
    channel = client.get_transport().open_session()
    # A variable would change what runs after the decision: not passed on.
    channel.set_environment_variable("LD_PRELOAD", "/tmp/evil.so")
    assert run(channel, "echo ${LD_PRELOAD:-unset}")[:2] == (0, "unset\n")
    # X11 forwarding: refused, answered (a client waits for the answer).
    channel = client.get_transport().open_session()
    with pytest.raises(paramiko.SSHException):
        channel.request_x11(screen_number=0, auth_protocol="MIT-MAGIC-COOKIE-1", auth_cookie="00" * 16)
    channel = client.get_transport().open_session()
    channel.invoke_subsystem("netconf")
    assert channel.recv_exit_status() == 126
    assert b"the netconf subsystem is not served through sluice (sftp is)" in channel.makefile_stderr("rb").read()


def test_sftp_requests_are_answered_one_by_one(gw, host):
    pub = host.dir / "proto-pub"
    pub.mkdir(exist_ok=True)
    (pub / "a.txt").write_text("alpha\n")
    c = connect(gw, "web1_ro")
    try:
        sftp = c.open_sftp()
        assert sftp.listdir(str(pub)) == ["a.txt"]
        with sftp.open(str(pub / "a.txt")) as f:
            assert f.read() == b"alpha\n"
        # Refused per request with SFTP's own permission-denied status and sluice's reason.
        with pytest.raises(PermissionError) as refused:
            sftp.open(str(pub / "b.txt"), "w")
        assert refused.value.errno == errno.EACCES
        assert "read-only" in str(refused.value), refused.value
        with pytest.raises(PermissionError):
            sftp.remove(str(pub / "a.txt"))
        with pytest.raises(PermissionError):
            sftp.symlink("/etc/shadow", str(pub / "link"))
        # The session goes on after refusals.
        assert sftp.stat(str(pub / "a.txt")).st_size == 6
        assert sorted(p.name for p in pub.iterdir()) == ["a.txt"]
    finally:
        c.close()


def test_a_malformed_sftp_packet_ends_that_session_and_no_other(gw, host):
    c = connect(gw, "web1_ro")
    try:
        channel = c.get_transport().open_session()
        channel.invoke_subsystem("sftp")
        # An INIT, then a packet announcing 2 GiB.
        channel.sendall(b"\x00\x00\x00\x05\x01\x00\x00\x00\x03")
        channel.recv(1024)
        channel.sendall(b"\x7f\xff\xff\xff\x03")
        assert channel.recv_exit_status() == 126
        assert b"longer than sluice accepts" in channel.makefile_stderr("rb").read()
        # Another channel of the same connection is served.
        sftp = c.open_sftp()
        assert sftp.listdir(str(host.dir / "proto-pub")) == ["a.txt"]
    finally:
        c.close()


def test_a_client_that_vanishes_mid_request_leaves_sluice_serving(gw):
    raw = socket.create_connection(("127.0.0.1", gw.ssh_port), timeout=10)
    t = paramiko.Transport(raw)
    t.start_client(timeout=20)
    t.auth_password("agent+web1", gw.agent_token)
    channel = t.open_session()
    channel.exec_command("sleep 30")
    raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    c = connect(gw, "web1")
    try:
        assert run(c.get_transport().open_session(), "echo still here")[:2] == (0, "still here\n")
    finally:
        c.close()
