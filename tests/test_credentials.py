"""Held credentials: from the sealed store, an environment variable or a file; SCRAM and MD5 to the
upstream; verified upstream TLS. The upstream password must appear in no log line and no recording."""

import sqlite3
import stat
import subprocess

import psycopg
import pytest

from conftest import Sluice, sluice_binary


@pytest.mark.parametrize("connection", ["shop", "shop_env", "shop_file", "shop_md5", "shop_verified"])
def test_each_credential_source_and_method_opens_the_upstream(gateway, token, connection):
    with psycopg.connect(gateway.dsn(token, connection=connection)) as conn:
        user, db = conn.execute("SELECT current_user, current_database()").fetchone()
        assert db == "shop"
        upstream_tls = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
    expected_user = {"shop_md5": "legacy_md5", "shop_verified": "tls_only"}.get(connection, "app")
    assert user == expected_user
    # What the upstream hop used: shop_env/shop_md5 say tls = "disable"; the others encrypt.
    assert upstream_tls == (connection not in ("shop_env", "shop_md5"))


def test_verify_full_refuses_a_certificate_for_another_name(make_gateway, pg):
    gw = make_gateway(extra_toml=f'''
[connections.wrong_name]
host = "127.0.0.1"
port = {pg.port}
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
tls = "verify-full"
tls_server_name = "db.example.com"
ca_file = "{pg.ca_file}"
''')
    tok = gw.token()
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gw.dsn(tok, connection="wrong_name"))
    message = str(info.value)
    assert 'upstream of connection "wrong_name" is unavailable' in message
    assert "TLS" in message


def test_missing_env_credential_is_reported_to_the_operator_not_leaked(make_gateway, pg):
    gw = make_gateway(extra_toml=f'''
[connections.no_secret]
host = "127.0.0.1"
port = {pg.port}
user = "app"
password = "env:NOT_SET_ANYWHERE"
''')
    tok = gw.token()
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gw.dsn(tok, connection="no_secret"))
    assert 'connection "no_secret" is not usable' in str(info.value)
    assert "NOT_SET_ANYWHERE" in gw.log()


def test_stored_credential_is_sealed_in_the_store(gateway, pg):
    db = gateway.dir / "state" / "sluice.db"
    raw = db.read_bytes()
    assert pg.app_password.encode() not in raw
    with sqlite3.connect(db) as conn:
        [(sealed,)] = conn.execute("SELECT sealed FROM credentials WHERE connection = 'shop'").fetchall()
    assert pg.app_password.encode() not in sealed
    assert len(sealed) > len(pg.app_password)


def test_literal_password_in_config_is_rejected(tmp_path):
    from conftest import sluice_binary
    config = tmp_path / "sluice.toml"
    config.write_text('[connections.x]\nhost = "h"\nuser = "u"\npassword = "hunter2"\n')
    result = subprocess.run([str(sluice_binary()), "--config", str(config), "check"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "connections.x.password" in result.stderr
    assert "hunter2" not in result.stderr


def test_no_log_line_or_recording_contains_the_upstream_password(gateway, token, pg):
    # Generate some traffic on every connection first, including failures.
    for connection in ["shop", "shop_env", "shop_file", "shop_md5", "shop_verified"]:
        with psycopg.connect(gateway.dsn(token, connection=connection)) as conn:
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(gateway.dsn(token, connection="nowhere"))
    secrets = [pg.app_password, pg.md5_password, pg.tls_only_password, pg.superuser_password]
    log = gateway.log()
    assert "session started" in log
    state = gateway.dir / "state"
    files = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    assert "sluice.db" in files
    for secret in secrets:
        assert secret not in log
        for name, content in files.items():
            assert secret.encode() not in content, f"{name} holds an upstream password"
    for args in (["sessions", "list", "--json"], ["auth", "list", "--json"], ["token", "list", "--json"], ["check"]):
        out = gateway.cli(*args).stdout
        for secret in secrets:
            assert secret not in out


def test_state_is_private_and_serve_refuses_state_others_can_read(pg):
    gw = Sluice(pg)  # `credential set` has created the state directory, the store and the master key
    state = gw.dir / "state"
    try:
        gw.start()
        agent = gw.token()
        with psycopg.connect(gw.dsn(agent), autocommit=True) as conn:
            conn.execute("SELECT 1")
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
        assert {"sluice.db", "sluice.db-wal", "master.key", "tls-key.pem"} <= set(files), files
        assert all(mode & 0o077 == 0 for mode in files.values()), files
        assert gw.stop() == 0
        # Readable by others: refused, naming what and how to fix it.
        state.chmod(0o755)
        (state / "sluice.db").chmod(0o644)
        refused = subprocess.run([str(sluice_binary()), "--config", str(gw.config), "serve"], capture_output=True,
                                 text=True, env=gw.env, timeout=30)
        assert refused.returncode == 1
        assert "sluice: error: other users can read sluice's state" in refused.stderr, refused.stderr
        assert "(mode 755)" in refused.stderr and "sluice.db (mode 644)" in refused.stderr
        assert "sluice: hint: chmod 700" in refused.stderr
        # The operator's explicit choice: start, with a warning.
        gw.config.write_text(gw.config.read_text().replace('state_dir = "state"',
                                                           'state_dir = "state"\nallow_readable_state = true'))
        gw.start()
        assert "other users can read sluice's state" in gw.log()
    finally:
        gw.cleanup()
