"""psql through sluice: the simple query protocol, TLS, COPY, notices and the recording."""

import subprocess

from conftest import psql, wait_for


def test_psql_over_tls_sees_the_real_data(gateway, token):
    out = psql(gateway.dsn(token), "-At", "-c", "SELECT name FROM customers ORDER BY id LIMIT 2",
               "-c", "SHOW ssl", check=True).stdout
    assert out.splitlines()[:2] == ["Ada Lovelace", "Alan Turing"]
    # The TLS psql sees is sluice's; the upstream hop is separate (this connection uses prefer).
    info = psql(gateway.dsn(token), "-At", "-c", "\\conninfo", check=True).stdout
    assert "SSL connection" in info


def test_upstream_password_never_reaches_the_client(gateway, token, pg):
    out = psql(gateway.dsn(token), "-At", "-c", "SELECT current_user, current_database()", check=True).stdout.strip()
    assert out == "app|shop"
    assert pg.app_password not in out


def test_errors_keep_the_session_usable_and_are_recorded(gateway, token):
    result = psql(gateway.dsn(token, application_name="err-check"), "-At", "-v", "ON_ERROR_STOP=0",
                  "-c", "SELECT 1/0", "-c", "SELECT 'still here'", check=True)
    assert "division by zero" in result.stderr
    assert "still here" in result.stdout
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "err-check")
    texts = [(s["text"], s["error_code"], s["path"]) for s in details["statements"]]
    assert ("SELECT 1/0", "22012", "simple") in texts
    assert ("SELECT 'still here'", None, "simple") in texts
    assert details["session"]["end_reason"] == "client terminated"
    assert details["session"]["client_tls"] is True


def test_multi_statement_query_and_row_counts_are_recorded(gateway, token):
    psql(gateway.dsn(token, application_name="multi"), "-At",
         "-c", "SELECT id FROM products ORDER BY id LIMIT 7; SELECT 1", check=True)
    details = gateway.session_with(lambda d: d["session"]["application_name"] == "multi")
    [stmt] = [s for s in details["statements"] if "products" in s["text"]]
    assert stmt["rows"] == 8  # 7 + 1 across both statements of the one message
    assert stmt["tag"] == "SELECT 1"


def test_copy_from_stdin_and_to_stdout(gateway, token, pg):
    pg.query("CREATE TABLE IF NOT EXISTS copy_target (id int, label text)")
    pg.query("GRANT ALL ON copy_target TO app")
    pg.query("TRUNCATE copy_target")
    rows = "".join(f"{i}\tlabel {i}\n" for i in range(1, 1001))
    psql(gateway.dsn(token), "-At", "-c", "\\copy copy_target FROM STDIN", input=rows, check=True)
    assert pg.query("SELECT count(*), sum(id) FROM copy_target") == [(1000, 500500)]
    out = psql(gateway.dsn(token), "-At", "-c", "\\copy (SELECT * FROM copy_target ORDER BY id) TO STDOUT", check=True).stdout
    assert out == rows
    csv = psql(gateway.dsn(token), "-At", "-c", "COPY (SELECT id, label FROM copy_target WHERE id <= 2 ORDER BY id) TO STDOUT WITH (FORMAT csv)", check=True).stdout
    assert csv == "1,label 1\n2,label 2\n"


def test_notices_and_parameter_status_pass_through(gateway, token):
    result = psql(gateway.dsn(token), "-At", "-c", "DO $$BEGIN RAISE NOTICE 'hello from upstream'; END$$",
                  "-c", "SET application_name = 'renamed'", "-c", "SHOW application_name",
                  "-c", "SHOW server_version", check=True)
    assert "NOTICE:  hello from upstream" in result.stderr
    lines = result.stdout.splitlines()
    assert "renamed" in lines
    assert any(line.startswith("15") or line[:2].isdigit() for line in lines)


def test_plaintext_is_accepted_when_allowed(gateway, token):
    out = psql(gateway.dsn(token, sslmode="disable"), "-At", "-c", "SELECT 42", check=True).stdout.strip()
    assert out == "42"
    details = gateway.session_with(lambda d: not d["session"]["client_tls"])
    assert details["session"]["identity"] == "agent"


def test_tls_required_refuses_plaintext(make_gateway, pg):
    gw = make_gateway(settings={"postgres": {"tls": "require"}})
    tok = gw.token()
    refused = psql(gw.dsn(tok, sslmode="disable"), "-At", "-c", "SELECT 1", check=False)
    assert refused.returncode != 0
    assert "only TLS connections" in refused.stderr
    assert psql(gw.dsn(tok, sslmode="require"), "-At", "-c", "SELECT 1", check=True).stdout.strip() == "1"


def test_tls_disabled_answers_sslrequest_with_no(make_gateway):
    gw = make_gateway(settings={"postgres": {"tls": "disable"}})
    tok = gw.token()
    refused = psql(gw.dsn(tok, sslmode="require"), "-At", "-c", "SELECT 1", check=False)
    assert refused.returncode != 0
    assert "SSL" in refused.stderr or "ssl" in refused.stderr
    assert psql(gw.dsn(tok, sslmode="prefer"), "-At", "-c", "SELECT 1", check=True).stdout.strip() == "1"


def test_listen_notify_reaches_the_listener(gateway, token):
    import psycopg
    with psycopg.connect(gateway.dsn(token), autocommit=True) as listener, \
            psycopg.connect(gateway.dsn(token), autocommit=True) as notifier:
        listener.execute("LISTEN sluice_channel")
        notifier.execute("NOTIFY sluice_channel, 'payload-1'")
        notes = wait_for(lambda: list(listener.notifies(timeout=1, stop_after=1)), what="a notification")
        assert notes[0].channel == "sluice_channel"
        assert notes[0].payload == "payload-1"


def test_parameter_status_updates_reach_the_driver(gateway, token):
    import psycopg
    with psycopg.connect(gateway.dsn(token), autocommit=True) as conn:
        assert conn.info.parameter_status("server_version")
        conn.execute("SET application_name = 'via-parameter-status'")
        # psycopg reads this from the ParameterStatus message the server sent, relayed by sluice.
        assert conn.info.parameter_status("application_name") == "via-parameter-status"
        conn.execute("SET TimeZone = 'Asia/Tokyo'")
        assert conn.info.parameter_status("TimeZone") == "Asia/Tokyo"


def test_generated_certificate_is_persisted_and_verifiable(pg):
    from conftest import Sluice
    gw = Sluice(pg).start()
    try:
        tok = gw.token()
        cert = gw.dir / "state" / "tls-cert.pem"
        first = cert.read_bytes()
        assert oct((gw.dir / "state" / "tls-key.pem").stat().st_mode & 0o777) == "0o600"
        gw.stop()
        gw.start()
        assert cert.read_bytes() == first, "the certificate must survive a restart"
        out = psql(gw.dsn(tok, sslmode="verify-full", sslrootcert=str(cert)).replace("127.0.0.1", "localhost"), "-At",
                   "-c", "SELECT 'verified'", check=True).stdout.strip()
        assert out == "verified"
    finally:
        gw.cleanup()


def test_certificate_from_config(make_gateway, tmp_path):
    cert, key = tmp_path / "gw.crt", tmp_path / "gw.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=sluice.test", "-addext", "subjectAltName=DNS:sluice.test,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    gw = make_gateway(settings={"postgres": {"tls": "require", "tls_cert": str(cert), "tls_key": str(key)}})
    tok = gw.token()
    out = psql(gw.dsn(tok, sslmode="verify-ca", sslrootcert=str(cert)), "-At", "-c", "SELECT 'custom cert'", check=True).stdout.strip()
    assert out == "custom cert"
    assert not (gw.dir / "state" / "tls-cert.pem").exists(), "no certificate is generated when one is configured"


def test_an_agent_can_create_and_fire_a_plpgsql_trigger(gateway, token, pg):
    """Issue #23, cause 5: every PL/pgSQL trigger function used to be refused as unparseable."""
    pg.query("GRANT CREATE ON SCHEMA public TO app")
    script = """
        CREATE TABLE trig_items (id int PRIMARY KEY, note text);
        CREATE TABLE trig_log (op text, id int);
        CREATE FUNCTION trig_note() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO trig_log VALUES (TG_OP, COALESCE(NEW.id, OLD.id));
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER trig_items_note AFTER INSERT OR DELETE ON trig_items
            FOR EACH ROW EXECUTE FUNCTION trig_note();
        INSERT INTO trig_items VALUES (1, 'a');
        DELETE FROM trig_items WHERE id = 1;
        SELECT string_agg(op || ':' || id, ',' ORDER BY op DESC) FROM trig_log;
    """
    try:
        out = psql(gateway.dsn(token), "-At", input=script, check=True)
        assert out.stdout.strip().splitlines()[-1] == "INSERT:1,DELETE:1", out.stdout
    finally:
        pg.query("DROP TABLE IF EXISTS trig_items, trig_log; DROP FUNCTION IF EXISTS trig_note()")
