"""Bypass classes of the HTTP gateway (docs/http.md, "Policy" and "Masking"), each through a real
client against the real upstream of test_http.py: a field a framework reads wherever it is given,
names and paths lenient servers read alike, request shapes policy cannot see through, and what a
response says in forms masking cannot follow."""

import base64
import gzip
import json
import re
import socket
import subprocess
import time
from urllib.parse import quote

import httpx
import pytest
import requests

from test_http import (  # noqa: F401 (fixtures)
    ODD_TOKEN, api, bearer, closed_by_sluice, curl, read_until, serving, upstream, upstream_saw, ws_url)
from test_http import raw as raw_http
from conftest import Sluice, wait_for


def send(api, method, path, mark, **kw):
    """`method` on the billing connection with `?mark=<mark>`, by which `reached` finds it upstream."""
    params = {**kw.pop("params", {}), "mark": mark}
    headers = {**bearer(api), **kw.pop("headers", {})}
    return httpx.request(method, f"{api.base}/billing{path}", params=params, headers=headers, timeout=20, **kw)


def reached(api, mark):
    """The requests carrying `mark` that reached the upstream (as it recorded them)."""
    r = httpx.get(f"{api.base}/billing/seen", params={"mark": mark}, headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mark, body", [
    ("pay-number", {"json": {"amount": 25000}}),
    ("pay-key-case", {"json": {"AMOUNT": "25000"}}),
    ("pay-query", {"params": {"amount": "25000"}, "json": {}}),
    ("pay-form", {"data": {"amount": "25000"}}),
    ("pay-multipart", {"files": {"amount": (None, "25000")}}),
])
def test_a_big_payment_is_reviewed_wherever_a_framework_reads_its_amount(api, mark, body):
    r = send(api, "POST", "/v1/payments", mark, **dict(body))
    assert r.status_code == 428, r.text
    answer = r.json()
    assert answer["error"] == "review_pending" and answer["rule"] == "big-payments-reviewed", answer
    assert reached(api, mark) == []


def test_a_small_payment_as_a_number_still_goes_through(api):
    r = send(api, "POST", "/v1/payments", "pay-small", json={"amount": 12})
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == {"amount": 12}
    assert reached(api, "pay-small") == ["POST /api/v1/payments?mark=pay-small"]


def test_json_keys_that_differ_only_in_case_are_refused_as_unreadable(api):
    r = send(api, "POST", "/v1/payments", "two-cases", content=b'{"amount":"1","AMOUNT":"2"}',
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"] == "unreadable" and "ignore case" in answer["reason"], answer
    assert reached(api, "two-cases") == []


def test_a_graphql_document_in_both_the_url_and_the_body_is_refused(api):
    r = send(api, "POST", "/graphql", "gql-both", params={"query": "mutation { adminReset }"},
             json={"query": "{ me }"})
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"] == "unreadable" and "both in the query string and in the body" in answer["reason"]
    assert reached(api, "gql-both") == []


def test_a_graphql_path_in_another_case_is_read_as_graphql(api):
    r = send(api, "POST", "/GraphQL", "gql-case", json={"query": "mutation { adminReset }"})
    assert r.status_code == 403, r.text
    assert r.json()["rule"] == "no-graphql-mutations"
    assert reached(api, "gql-case") == []


@pytest.mark.parametrize("mark, method, path, body, status, rule", [
    ("suffix-pay", "POST", "/v1/payments.json", {"json": {"amount": "25000"}}, 428, "big-payments-reviewed"),
    ("suffix-admin", "GET", "/admin.json", {}, 403, "admin-off"),
    ("suffix-socket", "GET", "/ws-admin.json", {}, 403, "no-admin-sockets"),
    # Letters as .NET's case-insensitive routing folds them (`ı` is `I` upper-cased), segments
    # as Windows servers trim them.
    ("folded-admin", "GET", "/adm%C4%B1n/users", {}, 403, "admin-off"),
    ("trimmed-admin", "GET", "/admin./users", {}, 403, "admin-off"),
    ("dotted-i-admin", "GET", "/adm%C4%B0n/users", {}, 403, "admin-off"),
    ("blank-admin", "GET", "/%20admin/users", {}, 403, "admin-off"),
    ("fullwidth-admin", "GET", "/%EF%BD%81dmin/users", {}, 403, "admin-off"),
    ("trimmed-pay", "POST", "/v1/payments%20", {"json": {"amount": "25000"}}, 428, "big-payments-reviewed"),
])
def test_a_refusing_path_rule_reads_a_format_suffix_and_lenient_spellings(api, mark, method, path, body, status, rule):
    r = send(api, method, path, mark, **dict(body))
    assert r.status_code == status, r.text
    assert r.json()["rule"] == rule
    assert reached(api, mark) == []


def test_a_double_encoded_path_escape_is_refused(api):
    status, body = curl("--path-as-is", f"{api.base}/billing/x/%252e%252e/admin?mark=double-dot",
                        token=api.agent_token)
    assert status == 400, body
    assert "double encoding" in body and '"bad_request"' in body
    assert reached(api, "double-dot") == []


def test_a_header_name_with_an_underscore_is_refused(api):
    r = send(api, "GET", "/echo/underscore", "underscore", headers={"X_Env": "prod"})
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"] == "bad_request" and "underscore" in answer["reason"] and "x-env" in answer["reason"]
    assert reached(api, "underscore") == []


@pytest.mark.parametrize("header", ["Impersonate-User", "Impersonate-Group", "Impersonate-Extra-Scopes", "Sudo",
                                    "es-security-runas-user", "X-Forwarded-User", "X-Remote-User", "Destination"])
def test_a_request_acting_as_another_user_or_on_another_resource_is_refused(api, header):
    mark = f"acting-{header.lower()}"
    r = send(api, "GET", "/echo/acting", mark, headers={header: "system:admin"})
    assert r.status_code == 400, r.text
    answer = r.json()
    assert header.lower() in answer["reason"] and "operator" in answer["hint"], answer
    assert reached(api, mark) == []


def test_gitlabs_sudo_parameter_is_refused_in_the_query_and_the_body(api):
    r = send(api, "GET", "/echo/acting", "sudo-query", params={"sudo": "root"})
    assert r.status_code == 400 and "sudo" in r.json()["reason"], r.text
    r = send(api, "POST", "/echo/acting", "sudo-body", json={"name": "x", "sudo": "root"})
    assert r.status_code == 400 and "sudo" in r.json()["reason"], r.text
    assert reached(api, "sudo-query") == [] and reached(api, "sudo-body") == []


def test_forwarding_fields_a_client_sends_do_not_reach_the_upstream(api):
    forged = {"X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1", "X-Real-IP": "10.0.0.1",
              "X-Forwarded-Host": "admin.internal", "X-Forwarded-Prefix": "/admin", "X-Kept": "1"}
    r = send(api, "GET", "/echo/forwarded", "forwarded", headers=forged)
    assert r.status_code == 200, r.text
    seen = {k.lower() for k in r.json()["headers"]}
    assert "x-kept" in seen and not seen & {k.lower() for k in forged if k != "X-Kept"}, seen


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/png"])
def test_a_text_export_declared_binary_is_read_as_the_document_it_is(api, content_type):
    # A CSV naming a sensitive field is refused whatever type it is declared; it was passed as
    # it came when declared binary.
    r = httpx.get(f"{api.base}/billing/export-as", params={"type": content_type}, headers=bearer(api), timeout=20)
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "upstream_response_refused" and "csv-secret-7" not in r.text, r.text


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "text/event-stream"])
def test_a_stream_unit_naming_a_sensitive_field_outside_json_ends_the_stream(api, content_type):
    # Pretty-printed JSON sent as a stream: one line is `"password": "…"`, a field no record
    # holds. The stream ends with an error before it (what came before may have been sent).
    url = f"{api.base}/billing/export-as?type={content_type}&body=pretty"
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "20", "-H", f"Authorization: Bearer {api.agent_token}",
                          url], capture_output=True, timeout=30)
    assert out.returncode != 0, out
    assert b"pretty-secret-7" not in out.stdout, out.stdout


def test_a_request_body_in_a_charset_that_spells_ascii_otherwise_is_refused(api):
    # UTF-7, as Express's body-parser decodes it: {"amount": 25000}, which a rule refuses.
    for body in [b'{"+AGE-mount": 25000}', b'{"amount": "+ADI-5000"}']:
        r = send(api, "POST", "/v1/payments", "utf-7", content=body,
                 headers={"Content-Type": "application/json; charset=utf-7"})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "unreadable" and "utf-7" in r.json()["reason"], r.text
    assert reached(api, "utf-7") == []


def test_a_compressed_request_body_is_refused_with_415(api):
    r = send(api, "POST", "/v1/payments", "gzip-body", content=gzip.compress(b'{"amount": "25000"}'),
             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert r.json()["error"] == "unsupported_media_type"
    assert reached(api, "gzip-body") == []


def test_range_headers_are_not_forwarded(api):
    r = send(api, "GET", "/echo/range", "range", headers={"Range": "bytes=0-10", "If-Range": '"v1"', "X-Kept": "1"})
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    assert seen["x-kept"] == "1"
    assert "range" not in seen and "if-range" not in seen, seen


@pytest.mark.parametrize("name", ["user.xml", "users.csv"])
def test_a_response_that_is_not_json_and_names_a_sensitive_field_is_refused(api, name):
    r = requests.get(f"{api.base}/billing/report/{name}", headers=bearer(api), timeout=20)
    assert r.status_code == 502, r.text
    answer = r.json()
    assert answer["error"] == "upstream_response_refused" and '"password"' in answer["reason"], answer
    assert "hunter2" not in r.text


def test_a_response_that_is_not_json_and_names_no_sensitive_field_passes_masked(api):
    r = requests.get(f"{api.base}/billing/report/invoice.xml", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert r.text.startswith("<invoice><id>7</id><email>") and "inv@example.com" not in r.text, r.text


@pytest.mark.parametrize("connection, secret", [("billing", "upstream-secret"), ("billing_odd", ODD_TOKEN)])
def test_the_held_credential_echoed_percent_encoded_or_in_base64_is_redacted(api, connection, secret):
    r = httpx.get(f"{api.base}/{connection}/echo-auth", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    redacted = "[redacted:held-credential]"
    answer = r.json()
    assert {k: answer[k] for k in ("link", "base64", "base64url")} == {
        "link": f"/welcome?from={redacted}", "base64": redacted, "base64url": redacted}, r.text
    assert redacted in answer["state"], answer
    for spelled in [quote(secret, safe=""), base64.b64encode(secret.encode()).decode(),
                    base64.urlsafe_b64encode(secret.encode()).decode()]:
        assert spelled not in r.text
    # Escaped as other encoders escape it, each copy is replaced whole.
    assert answer["escaped"] == {k: redacted for k in answer["escaped"]}, answer["escaped"]
    # Wherever it fell among the encoded bytes, no run of base64 spelling its middle is left.
    middle = secret.encode()[3:-3]
    for skip in range(3):
        whole = middle[skip:][:len(middle[skip:]) // 3 * 3]
        assert base64.b64encode(whole).decode() not in r.text, skip



@pytest.fixture(scope="module")
def brisk(pg, upstream):
    """A gateway in front of the same upstream with a 2-second header timeout, a 5-second idle
    timeout and a 3-second send timeout."""
    billing = {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api", "password": "env:BILLING_TOKEN"}
    timeouts = {"header_timeout_secs": 2, "idle_timeout_secs": 5, "send_timeout_secs": 3}
    gw = Sluice(pg, settings={"connections": {"billing": billing}, "http": {"listen": "127.0.0.1:0", **timeouts}},
                env={"BILLING_TOKEN": "upstream-secret"})
    yield from serving(gw)


def seconds_until_closed(sock, limit, request=None):
    """Sends `request` (if any) every half second, reading the answers, until the peer closes the
    connection: the seconds that took, or None if it was still open after `limit`."""
    started = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - started < limit:
        try:
            if request:
                sock.sendall(request)
            if not sock.recv(65536):
                return time.monotonic() - started
        except socket.timeout:
            continue
        except ConnectionError:
            return time.monotonic() - started
        if request:
            time.sleep(0.5)
    return None


@pytest.mark.parametrize("request_sent", [None, b"GET /billing/v1/customers/1 HTTP/1.1\r\nHost: x\r\n\r\n"],
                         ids=["silent", "unauthenticated-requests"])
def test_a_connection_that_never_authenticates_is_closed_at_the_header_timeout(brisk, request_sent):
    with socket.create_connection(("127.0.0.1", brisk.http_port), timeout=10) as sock:
        took = seconds_until_closed(sock, 8, request_sent)
    assert took is not None and took < 4, took


def test_an_authenticated_connection_is_kept_past_the_header_timeout(brisk):
    # A request a second on one connection, for twice the header timeout.
    addresses = set()
    with httpx.Client(base_url=f"{brisk.base}/billing", headers={"Authorization": f"Bearer {brisk.token()}"},
                      timeout=20) as client:
        for _ in range(5):
            r = client.get("/v1/customers/1")
            assert r.status_code == 200, r.text
            addresses.add(r.extensions["network_stream"].get_extra_info("client_addr"))
            time.sleep(1)
    # The same connection (the same local address) carried them all.
    assert len(addresses) == 1, addresses


def answered(sock, request):
    """Sends `request` and reads its answer whole (by its Content-Length): the status code."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-answer"
        body += chunk
    return int(head.split()[1])


def authenticated_request(brisk):
    return (f"GET /billing/v1/customers/1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {brisk.token()}\r\n\r\n").encode()


def test_an_idle_connection_has_the_idle_timeout_not_the_header_timeout(brisk):
    request = authenticated_request(brisk)
    with socket.create_connection(("127.0.0.1", brisk.http_port), timeout=10) as sock:
        assert answered(sock, request) == 200
        # Idle longer than the header timeout (2 s), shorter than the idle timeout (5 s).
        time.sleep(3.5)
        assert answered(sock, request) == 200
        # Then idle past the idle timeout: closed.
        took = seconds_until_closed(sock, 12)
    assert took is not None and 4 < took < 8, took


def test_a_request_head_begun_on_an_authenticated_connection_has_the_header_timeout(brisk):
    request = authenticated_request(brisk)
    with socket.create_connection(("127.0.0.1", brisk.http_port), timeout=10) as sock:
        assert answered(sock, request) == 200
        # Half a head, then nothing (slowloris): closed at the header timeout, not the idle one.
        sock.sendall(request[:30])
        took = seconds_until_closed(sock, 12)
    assert took is not None and took < 4, took


def test_a_silent_stream_and_a_slow_answer_are_not_idle(brisk):
    # Longer than the idle timeout (5 s) without a byte either way: a request is in flight.
    headers = {"Authorization": f"Bearer {brisk.token()}"}
    name = "silent-" + "".join(chr(ord("a") + int(d)) for d in str(time.monotonic_ns()))
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{brisk.base}/billing/events?id={name}", headers=headers) as r:
            assert r.status_code == 200
            chunks = r.iter_text()
            assert read_until(chunks, "\n\n").startswith("event: update")
            time.sleep(7)
            assert requests.get(f"{brisk.base}/billing/release?id={name}", headers=headers, timeout=20).ok
            assert "".join(chunks).endswith("\n\n")
        r = client.get(f"{brisk.base}/billing/slow", params={"s": "7"}, headers=headers)
        assert r.status_code == 200 and r.json() == {"slow": True}, r.text


def asked_for_a_big_answer(brisk, size, mark):
    """A connection with a small receive buffer that has asked for a JSON answer of `size` bytes."""
    sock = socket.create_connection(("127.0.0.1", brisk.http_port), timeout=20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall((f"GET /billing/big?size={size}&kind=json&mark={mark} HTTP/1.1\r\nHost: x\r\n"
                  f"Connection: close\r\nAuthorization: Bearer {brisk.token()}\r\n\r\n").encode())
    return sock


def test_a_slow_reader_of_a_large_answer_is_not_idle(brisk):
    # An answer read over longer than the idle timeout (5 s) is in flight until written whole.
    size = 12_000_000
    with asked_for_a_big_answer(brisk, size, "slow-reader") as sock:
        started, got = time.monotonic(), b""
        while chunk := sock.recv(65536):
            got += chunk
            time.sleep(0.03)
        took = time.monotonic() - started
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == int(re.search(rb"(?i)content-length: *(\d+)", head).group(1)) > size, len(body)
    assert took > 6, took


def test_an_idle_http2_connection_is_closed_and_a_slow_request_on_one_is_not(brisk):
    # HTTP/2 (prior knowledge) is timed by its requests in flight: one that takes 7 s keeps the
    # connection past the idle timeout (5 s); 7 s with none closes it (GOAWAY), and the client
    # goes on on a new one.
    with httpx.Client(http1=False, http2=True, base_url=f"{brisk.base}/billing",
                      headers={"Authorization": f"Bearer {brisk.token()}"}, timeout=30) as client:
        r = client.get("/slow", params={"s": "7", "mark": "h2-idle"})
        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.http_version, r.text)
        first = r.extensions["network_stream"].get_extra_info("client_addr")
        time.sleep(7)
        r = client.get("/v1/customers/1")
        assert r.status_code == 200, r.text
        second = r.extensions["network_stream"].get_extra_info("client_addr")
        # A large answer comes whole (handed over in slices), masked.
        r = client.get("/big", params={"size": "3000000", "kind": "json"})
        assert r.status_code == 200 and len(r.content) == int(r.headers["content-length"]) > 3_000_000
        assert r.json()["email"] == "[redacted:email]" and len(r.json()["filler"]) == 3_000_000
    assert first != second

    details = brisk.session_with(lambda d: any("h2-idle" in a["text"] for a in d["statements"]), timeout=20)
    assert "HTTP/2 connection had no request in flight" in details["session"]["end_reason"], details["session"]


@pytest.mark.parametrize("window, size, mark", [
    (0, 300_000, "no-window"),
    # A byte of window: hyper queues a whole piece for the stream, and the answer's last piece
    # queued is timed as well (it was let go of, and the connection kept till its idle timeout).
    (1, 1_000, "one-byte-window"),
])
def test_an_http2_client_that_grants_no_window_is_let_go_at_the_send_timeout(brisk, window, size, mark):
    # It reads every byte of the connection (and answers pings) but gives the stream no flow
    # control window, so no write ever waits: the answer held back is what is timed.
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import h2.settings

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                          (":path", f"/billing/big?size={size}&kind=json&mark={mark}"),
                          ("authorization", f"Bearer {brisk.token()}")], end_stream=True)
    status, data, took = None, 0, None
    with socket.create_connection(("127.0.0.1", brisk.http_port), timeout=20) as sock:
        sock.sendall(conn.data_to_send())
        sock.settimeout(0.5)
        started = time.monotonic()
        while time.monotonic() - started < 15:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionError:
                chunk = b""
            if not chunk:
                took = time.monotonic() - started
                break
            try:
                events = conn.receive_data(chunk)
            except h2.exceptions.ProtocolError:
                # A frame after a GOAWAY: whoever closes now, the session's end says why.
                took = time.monotonic() - started
                break
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    data += len(event.data)
            if any(isinstance(event, h2.events.ConnectionTerminated) for event in events):
                # A GOAWAY: whoever closes now, the session's end says why.
                took = time.monotonic() - started
                break
            sock.sendall(conn.data_to_send())
    assert status == b"200" and data == window, (status, data)
    assert took is not None and took < 12, took

    details = brisk.session_with(lambda d: any(mark in a["text"] for a in d["statements"]), timeout=20)
    assert "flow control" in details["session"]["end_reason"], details["session"]


def test_a_client_that_stops_reading_is_let_go_at_the_send_timeout(brisk):
    # It asks for 12 MB and takes nothing for 9 s: once sluice's writes have waited 3 s the
    # connection is closed, so it cannot hold its place, its buffers and its upstream request.
    with asked_for_a_big_answer(brisk, 12_000_000, "stops-reading") as sock:
        time.sleep(9)
        got = b""
        try:
            while chunk := sock.recv(1 << 20):
                got += chunk
        except ConnectionError:
            pass
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    assert 0 < len(body) < length, (len(body), length)
    # Recorded as cut short; everyone else is served.
    with socket.create_connection(("127.0.0.1", brisk.http_port), timeout=10) as sock:
        assert answered(sock, authenticated_request(brisk)) == 200

    def recorded(details):
        return any("stops-reading" in a["text"] for a in details["statements"])

    # The answer was handed to the connection whole, so its record says 200; the session's end
    # says what became of it.
    details = brisk.session_with(recorded, timeout=20)
    assert "send_timeout_secs" in details["session"]["end_reason"], details["session"]


def test_the_agents_cookie_never_reaches_the_upstream(api):
    r = send(api, "GET", "/echo/cookie", "cookie", headers={"Cookie": "session=agent-held; theme=dark"})
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    assert "cookie" not in seen and "agent-held" not in r.text, seen


def test_the_upstreams_set_cookie_and_x_sluice_headers_never_reach_the_agent(api):
    with httpx.Client(headers=bearer(api), timeout=20) as client:
        r = client.get(f"{api.base}/billing/set-cookie")
        assert r.status_code == 200 and r.json() == {"ok": True}, r.text
        assert "set-cookie" not in r.headers and "x-sluice-review" not in r.headers, r.headers
        assert not client.cookies
    # A header named for a credential (or a sensitive key) is masked whatever its value looks like.
    for name in ["x-auth-token", "x-subject-token", "access-token", "x-password-hint"]:
        assert r.headers[name] == "[redacted:credential]", (name, r.headers)
    assert r.headers["x-request-id"] == "req-42"


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded, text/plain",   # Rack and PHP cut at ','
    "application/x-www-form-urlencoded text/plain",    # PHP cuts at a space
    "",
])
def test_a_content_type_that_is_not_one_media_type_is_refused(api, content_type):
    r = send(api, "POST", "/echo/ct", f"ct-{len(content_type)}", content=b"_method=DELETE",
             headers={"Content-Type": content_type})
    assert r.status_code == 400 and "media type" in r.json()["reason"], r.text
    assert reached(api, f"ct-{len(content_type)}") == []


def test_two_content_types_are_refused(api):
    # gunicorn keeps the last of several fields; sluice would read the first.
    answer = raw_http(api, b"POST /billing/echo/two-ct?mark=two-ct HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                      + api.agent_token.encode() + b"\r\nContent-Type: application/json\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\n_method=DELETE")
    assert answer.startswith(b"HTTP/1.1 400") and b"more than one Content-Type" in answer, answer[:300]
    assert reached(api, "two-ct") == []


def test_a_parameter_name_php_would_cut_at_nul_is_refused(api):
    r = send(api, "GET", "/echo/nul", "nul-query", params={"_method\x00x": "DELETE"})
    assert r.status_code == 400 and "control character" in r.json()["reason"], r.text
    r = send(api, "POST", "/echo/nul", "nul-form", content=b"_method%00=DELETE",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "control character" in r.json()["reason"], r.text
    assert reached(api, "nul-query") == [] and reached(api, "nul-form") == []


@pytest.mark.parametrize("path", ["/graphql/x", "/GraphQL/", "/graphql.json"])
def test_a_graphql_endpoint_is_known_below_it_and_with_a_format_suffix(api, path):
    # Apollo's and express-graphql's middleware answer below their mount point; Rails routes
    # /graphql.json to /graphql.
    r = send(api, "POST", path, "gql-under", json={"query": "mutation { deleteInvoice(id: 3) }"})
    assert r.status_code == 403 and r.json()["rule"] == "no-graphql-mutations", r.text
    r = send(api, "POST", path, "gql-under", json={"query": "{ invoices { id pw: password } }"})
    assert r.status_code == 400, r.text


def test_a_refusal_of_get_refuses_head_and_the_method_goes_as_decided(api):
    # Frameworks answer HEAD with the GET handler.
    r = send(api, "HEAD", "/v1/reports/run", "head-run")
    assert r.status_code == 403, r.status_code
    # A method in lower case is decided upper case, and goes so.
    answer = raw_http(api, b"get /billing/echo/lower HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                      + api.agent_token.encode() + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["method"] == "GET"


def test_a_client_gone_before_the_answer_leaves_a_record(api):
    # The upstream answers after 3 s; the client gives up after 0.5 s. The request went upstream,
    # so it is recorded (499, as nginx logs it), not lost with the connection.
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{api.base}/billing/slow", params={"s": "3", "mark": "gone-early"}, headers=bearer(api), timeout=0.5)

    def recorded(details):
        return any("gone-early" in a["text"] and a["tag"] == "HTTP 499" for a in details["statements"])

    session = api.session_with(recorded, timeout=20)
    [gone] = [a for a in session["statements"] if "gone-early" in a["text"]]
    assert gone["decision"] == "allow" and "went away" in gone["error_message"], gone


def test_a_graphql_alias_renaming_a_sensitive_field_is_refused(api):
    r = send(api, "POST", "/graphql", "gql-alias", json={"query": "{ invoices { id pw: password } }"})
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"] == "unreadable" and "password" in answer["reason"], answer
    assert "inv-pw-7" not in r.text
    assert reached(api, "gql-alias") == []
    # Without the alias the field goes, masked by its name.
    r = send(api, "POST", "/graphql", "gql-plain", json={"query": "{ invoices { id password } }"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["invoices"] == [{"id": 7, "password": "[redacted:password]"}]


@pytest.mark.parametrize("content_type", ["text/plain; charset=Shift_JIS", "text/plain; charset=utf-8; charset=utf-7"])
def test_a_response_in_a_charset_where_ascii_is_not_always_ascii_is_refused(api, content_type):
    r = httpx.get(f"{api.base}/billing/declared", params={"type": content_type}, headers=bearer(api), timeout=20)
    assert r.status_code == 502, (r.status_code, r.content)
    answer = r.json()
    assert answer["error"] == "upstream_response_refused" and "Accept-Charset: utf-8" in answer["hint"], answer
    assert b"carol@example.com" not in r.content


def sse_events(text):
    """The data of each event, as an EventSource reads it (lines end at CR, LF or CRLF)."""
    events, data = [], []
    for line in re.split(r"\r\n|\r|\n", text):
        if line == "":
            if data:
                events.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


def test_an_event_stream_with_cr_line_ends_is_masked_event_by_event(api):
    with httpx.Client(timeout=20) as client:
        with client.stream("GET", f"{api.base}/billing/cr-events", headers=bearer(api)) as r:
            assert r.status_code == 200
            body = r.read().decode()
    assert "cr-secret-9" not in body, body
    events = sse_events(body)
    assert events[0] == "hi" and json.loads(events[1]) == {"password": "[redacted:password]"}, events


def test_a_stream_ends_when_its_token_is_revoked(api):
    token = api.token(identity="stream-revokee")
    before, after, revoked_at = 0, 0, None
    with httpx.Client(timeout=20) as client:
        with client.stream("GET", f"{api.base}/billing/ticks", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status_code == 200
            try:
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    if revoked_at is None:
                        before += 1
                        if before == 3:
                            api.cli("token", "revoke", token.split("_")[1])
                            revoked_at = time.monotonic()
                    else:
                        after += 1
            except httpx.HTTPError:
                pass
            ended_at = time.monotonic()
    assert before == 3 and revoked_at is not None
    # The stream (75 events over 15 s) was cut short soon after the revocation.
    assert ended_at - revoked_at < 5, (ended_at - revoked_at, after)


@pytest.fixture(scope="module")
def tight(pg, upstream):
    """A gateway that may hold 256 KiB of bodies at once, whose caps allow 200 KiB each."""
    billing = {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api", "password": "env:BILLING_TOKEN"}
    gw = Sluice(pg, settings={"connections": {"billing": billing},
                              "http": {"listen": "127.0.0.1:0", "max_buffered_bytes": 262144,
                                       "max_request_body_bytes": 204800, "max_response_body_bytes": 204800}},
                env={"BILLING_TOKEN": "upstream-secret"})
    yield from serving(gw)


def test_bodies_held_at_once_are_bounded_across_clients(tight):
    """One stream holding 150 KB of an event not yet ended leaves no room for another 150 KB
    body, sent or received: those get 503 `busy` (and small requests go on); once the stream
    gives its share back, the same requests pass."""
    name = "held-" + "".join(chr(ord("a") + int(d)) for d in str(time.monotonic_ns()))
    payload = b'{"note": "' + b"z" * 150_000 + b'"}'

    def post():
        return requests.post(f"{tight.base}/billing/echo/held", data=payload, timeout=20,
                             headers={**bearer(tight), "Content-Type": "application/json"})

    with httpx.Client(timeout=20) as client:
        url = f"{tight.base}/billing/events?id={name}&partial=150000"
        with client.stream("GET", url, headers=bearer(tight)) as stream:
            assert stream.status_code == 200
            chunks = stream.iter_text()
            read_until(chunks, "\n\n")
            # The stream's 150 KB reach sluice soon after its first event.
            # (A Response is falsy when its status is an error: it is returned in a list.)
            [refused] = wait_for(lambda: [r for r in [post()] if r.status_code == 503], timeout=10,
                                 what="a body refused for the budget")
            answer = refused.json()
            assert answer["error"] == "busy" and "max_buffered_bytes" in answer["reason"], answer
            assert "retry" in answer["hint"] and refused.headers["retry-after"] == "1", (answer, refused.headers)
            big = requests.get(f"{tight.base}/billing/big?size=150000", headers=bearer(tight), timeout=20)
            assert big.status_code == 503 and big.json()["error"] == "busy", big.text
            assert curl(f"{tight.base}/billing/v1/customers/1", token=tight.agent_token)[0] == 200
            assert requests.get(f"{tight.base}/billing/release?id={name}", headers=bearer(tight), timeout=20).ok
            rest = "".join(chunks)
    assert "y" * 1000 in rest and "4111 1111 1111 1111" not in rest
    passed = post()
    assert passed.status_code == 200 and len(passed.json()["body"]) == len(payload), passed.text[:200]
    big = requests.get(f"{tight.base}/billing/big?size=150000", headers=bearer(tight), timeout=20)
    assert big.status_code == 200 and len(big.content) > 140_000
    tight.session_with(lambda d: any("max_buffered_bytes" in (a["error_message"] or "") for a in d["statements"]),
                       timeout=30)


@pytest.mark.parametrize("mark, params", [
    ("rename-postgrest", {"select": "id,pw:password"}),
    ("rename-postgrest-arrow", {"select": "id,x:data->>password"}),
    ("rename-postgrest-aggregate", {"select": "password.max()"}),
    ("rename-odata", {"$apply": "compute(tolower(password) as pw)"}),
    ("rename-directus", {"alias[pw]": "password", "fields": "pw"}),
    ("rename-in-a-name", {"select password as pw from users": ""}),
    ("rename-double-escaped", {"select": "id,pw:%70assword"}),
    ("rename-other-word", {"select": "id,password pw"}),
])
def test_a_query_string_that_may_rename_a_sensitive_field_is_refused(api, mark, params):
    r = send(api, "GET", "/echo/renamed", mark, params=params)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"] == "unreadable" and '"password"' in answer["reason"], answer
    assert "under its own name" in answer["reason"], answer
    assert reached(api, mark) == []


@pytest.mark.parametrize("mark, method, kw", [
    ("named-select", "GET", {"params": {"select": "id,password"}}),
    ("named-embedded", "GET", {"params": {"select": "id,profile(email,password)", "order": "password.desc"}}),
    ("named-orders", "GET", {"params": {"or": "(id.eq.1,id.eq.2)", "sort": "-password",
                                        "next": "/account/password-reset"}}),
    ("named-odata", "GET", {"params": {"$expand": "Profile($select=Password)", "$select": "Profile/Password"}}),
    ("named-prose", "POST", {"json": {"note": "password", "how": "keep the password as is, thanks",
                                      "field": "input type: password"}}),
    ("named-form-prose", "POST", {"data": {"comment": "I reset the password as admin; done"}}),
])
def test_a_request_naming_a_sensitive_field_where_it_keeps_its_name_passes(api, mark, method, kw):
    r = send(api, method, "/echo/named", mark, **kw)
    assert r.status_code == 200, r.text
    assert len(reached(api, mark)) == 1


NARROW_SOCKETS = """
[policy]
default = "deny"

[[policy.rules]]
name = "plain-reads"
effect = "allow"
methods = ["GET"]
websocket = "none"

[[policy.rules]]
name = "ops-socket-opens"
effect = "allow"
paths = ["/ws-ops"]
websocket = "opening"

[[policy.rules]]
name = "ops-socket-lists"
effect = "allow"
paths = ["/ws-ops"]
websocket = "message"
json = [{ pointer = "/op", in = ["list", "get"] }]
"""


@pytest.fixture(scope="module")
def narrow(pg, upstream):
    """A gateway whose policy denies by default and allows a socket's messages by what they ask."""
    billing = {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api", "password": "env:BILLING_TOKEN"}
    gw = Sluice(pg, extra_toml=NARROW_SOCKETS, settings={"connections": {"billing": billing},
                                                         "http": {"listen": "127.0.0.1:0"}},
                env={"BILLING_TOKEN": "upstream-secret"})
    yield from serving(gw)


def test_allow_rules_can_narrow_what_a_websocket_carries(narrow):
    # `websocket = "opening"` allows the socket and not its messages, `websocket = "message"`
    # allows messages by what they ask, and `websocket = "none"` keeps a rule for plain GETs off
    # sockets: under a default deny, a message no rule allows is refused.
    from websockets.sync.client import connect

    with connect(ws_url(narrow, "/ws-ops"), additional_headers=bearer(narrow), open_timeout=20) as ws:
        ws.send('{"op": "list", "mark": "narrow-list"}')
        assert json.loads(ws.recv(timeout=20))["echo"] == '{"op": "list", "mark": "narrow-list"}'
        reason = closed_by_sluice(ws, '{"op": "rename", "mark": "narrow-rename"}')
    assert "default" in reason, reason
    for message in ['{"mark": "narrow-no-op"}', "not json narrow-text"]:
        with connect(ws_url(narrow, "/ws-ops"), additional_headers=bearer(narrow), open_timeout=20) as ws:
            closed_by_sluice(ws, message)
    assert upstream_saw(narrow, "narrow-list") and upstream_saw(narrow, "narrow-rename") == []
    assert upstream_saw(narrow, "narrow-no-op") == [] and upstream_saw(narrow, "narrow-text") == []
    # A socket on another path is a GET no rule allows as an opening.
    with pytest.raises(Exception) as refused:
        with connect(ws_url(narrow, "/ws"), additional_headers=bearer(narrow), open_timeout=20):
            pass
    assert "403" in str(refused.value), refused.value
    assert curl(f"{narrow.base}/billing/v1/customers/1", token=narrow.agent_token)[0] == 200


@pytest.mark.parametrize("how", [{"params": {"force": "on"}}, {"params": {"force[0]": "true"}},
                                 {"data": {"force": "1"}}, {"params": {"FORCE": "Yes"}}])
def test_a_query_rule_refuses_every_way_a_framework_reads_the_parameter(api, how):
    # `forced-echo-denied` refuses force=true on /echo: Spring and pydantic read 1/on/yes as true,
    # qs and Rails read force[0] as force, and Rails, Laravel, Flask and Spring merge form fields
    # with the query's.
    mark = f"force-{sorted(how)[0]}-{len(str(how))}"
    r = send(api, "POST", "/echo/force", mark, **how)
    assert r.status_code == 403 and r.json()["rule"] == "forced-echo-denied", r.text
    assert reached(api, mark) == []


def test_formats_whose_field_names_sluice_cannot_read_are_refused_where_keys_are_sensitive(api):
    # Asked for (Spring answers CBOR or Smile when a client asks), or answered anyway.
    for accept in ["application/cbor", "application/json;q=0.5, application/x-msgpack", "application/x-protobuf"]:
        r = send(api, "GET", "/v1/customers/1", "accept-binary", headers={"Accept": accept})
        assert r.status_code == 400 and "field names" in r.json()["reason"], (accept, r.text)
        assert "Accept: application/json" in r.json()["reason"], r.text
    assert send(api, "GET", "/v1/customers/1", "accept-json", headers={"Accept": "application/json, */*"}).status_code == 200
    r = send(api, "GET", "/declared", "declared-cbor", params={"type": "application/cbor"})
    assert r.status_code == 502 and "application/cbor" in r.json()["reason"], r.text
    assert "Accept: application/json" in r.json()["hint"], r.text


def test_an_http2_connection_gone_mid_request_records_the_request_before_the_session_ends(api):
    # HTTP/2 runs each request on its own task: one in flight when its connection drops (here
    # waiting 2 s for the upstream) is recorded (499) before the session's end, not after it.
    import h2.connection

    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                          (":path", "/billing/slow?s=2&mark=h2-gone"),
                          ("authorization", f"Bearer {api.agent_token}")], end_stream=True)
    with socket.create_connection(("127.0.0.1", int(api.base.rsplit(":", 1)[1])), timeout=20) as sock:
        sock.sendall(conn.data_to_send())
        time.sleep(0.5)

    def recorded(details):
        return any("h2-gone" in a["text"] for a in details["statements"])

    session = api.session_with(recorded, timeout=20)
    replay = json.loads(api.cli("sessions", "replay", session["session"]["id"], "--json").stdout)
    kinds = [(e["event"]["kind"], e["event"].get("text", "")) for e in replay["events"]]
    gone = [i for i, (kind, text) in enumerate(kinds) if "h2-gone" in text]
    assert len(gone) == 1 and kinds[-1][0] == "session_ended" and gone[0] < len(kinds) - 1, kinds
    [statement] = [a for a in session["statements"] if "h2-gone" in a["text"]]
    assert statement["tag"] == "HTTP 499" and "went away" in statement["error_message"], statement


@pytest.mark.parametrize("connection, method, path, kw, rule", [
    ("billing", "POST", "/echo/search", {"json": {"query": "mutation { adminReset }"}}, "no-graphql-mutations"),
    ("billing", "GET", "/echo/gql", {"params": {"query": "# a comment\n, mutation { adminReset }"}},
     "no-graphql-mutations"),
    ("billing_ro", "GET", "/echo/gql", {"params": {"query": "mutation { adminReset }"}}, "read-only"),
    # The multipart request spec's operations field (GraphQL Yoga and Apollo take uploads so), and
    # a multipart query field.
    ("billing", "POST", "/echo/gql", {"files": {"operations": (None, '{"query": "mutation { adminReset }"}'),
                                                "map": (None, "{}")}}, "no-graphql-mutations"),
    ("billing", "PUT", "/echo/gql", {"files": {"query": (None, "mutation { adminReset }")}}, "no-graphql-mutations"),
])
def test_graphql_off_a_declared_graphql_path_meets_the_rules_that_refuse(api, connection, method, path, kw, rule):
    # A server may answer GraphQL where the operator did not declare it: a document sent there is
    # read as one (a mutation in a GET's query string is no read).
    mark = f"off-gql-{connection}-{method}"
    params = {**kw.pop("params", {}), "mark": mark}
    r = httpx.request(method, f"{api.base}/{connection}{path}", params=params, headers=bearer(api), timeout=20, **kw)
    assert r.status_code == 403, r.text
    assert rule in r.json()["rule"], r.json()
    assert reached(api, mark) == []


def test_text_that_only_looks_like_a_query_off_a_graphql_path_goes(api):
    for mark, kw in [("not-gql-text", {"params": {"query": "status:open"}}),
                     ("not-gql-json", {"json": {"query": {"match": "mutation"}}})]:
        r = send(api, "POST", "/echo/search", mark, **kw)
        assert r.status_code == 200, r.text
        assert len(reached(api, mark)) == 1


@pytest.mark.parametrize("mark, method, path, kw", [
    ("filter-eq", "GET", "/echo/filter", {"params": {"password": "eq.hunter2"}}),
    ("filter-bracket", "GET", "/echo/filter", {"params": {"filter[password]": "hunter2"}}),
    ("filter-django", "GET", "/echo/filter", {"params": {"password__startswith": "h"}}),
    ("filter-logical", "GET", "/echo/filter", {"params": {"or": "(id.eq.1,password.like.h*)"}}),
    ("filter-graphql", "POST", "/graphql", {"json": {"query": '{ invoices(where: {password: {eq: "x"}}) { id } }'}}),
    ("filter-graphql-vars", "POST", "/graphql", {"json": {"query": "query($w: F) { invoices(where: $w) { id } }",
                                                          "variables": {"w": {"password": "x"}}}}),
])
def test_a_filter_on_a_masked_field_is_refused(api, mark, method, path, kw):
    # Whether rows come back would tell the masked value, one guess at a time.
    r = send(api, method, path, mark, **kw)
    assert r.status_code == 403, r.text
    answer = r.json()
    assert answer["rule"] == "sensitive-filter" and "password" in answer["reason"], answer
    assert "select by another field" in answer["hint"], answer
    assert reached(api, mark) == []


@pytest.mark.parametrize("kind, named", [
    ("gzip", "gzip file"),
    ("gzip-as-bytes", "gzip file"),
    ("gzip-as-text", "gzip file"),
    ("gzip-twice", "gzip file"),
    ("zip", "zip archive"),
    ("xlsx-download", "zip archive"),
    ("pdf", "PDF"),
    ("zstd", "zstd file"),
    ("brotli", "brotli file"),
    ("multipart", "a part of the response is a gzip file"),
])
def test_a_packed_export_is_refused_where_the_detectors_cannot_read_it(api, kind, named):
    # The detectors would read only compressed bytes: the SSN and card inside would pass. Known by
    # its first bytes whatever it is declared (octet-stream, text/csv), decoded once and still
    # packed, or a part of a multipart answer.
    r = httpx.get(f"{api.base}/billing/packed/{kind}", headers=bearer(api), timeout=20)
    assert r.status_code == 502, r.text
    answer = r.json()
    assert answer["error"] == "upstream_response_refused" and named in answer["reason"], answer
    assert 'archives = "pass"' in answer["hint"] and "uncompressed" in answer["hint"], answer


def test_a_connection_that_serves_files_passes_packed_ones_unopened(api):
    r = httpx.get(f"{api.base}/billing_files/packed/gzip", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert gzip.decompress(r.content).startswith(b"name,ssn,card\nAnn,078-05-1120")
    # Text on it is masked as on any other connection.
    r = httpx.get(f"{api.base}/billing_files/v1/customers", headers=bearer(api), timeout=20)
    assert r.status_code == 200 and "078-05-1120" not in r.text, r.text


def test_a_packed_message_from_the_upstream_on_a_websocket_is_withheld(api):
    from websockets.sync.client import connect

    with connect(ws_url(api, "/ws"), additional_headers=bearer(api), open_timeout=20) as ws:
        ws.send("packed")
        message = ws.recv(timeout=20)
    assert isinstance(message, str) and message.startswith("[sluice: message withheld:"), message
    assert "gzip file" in message, message


def test_values_spelled_in_escapes_are_masked_in_responses(api):
    r = httpx.get(f"{api.base}/billing/escaped/json", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["next"] == "/v1/customers?email=[redacted:email]&page=2", answer
    assert answer["pay"] == "/pay?card=[redacted:credit-card]", answer
    assert "1120" not in answer["payload"] and "[redacted:ssn]" in answer["payload"], answer
    r = httpx.get(f"{api.base}/billing/escaped/html", headers=bearer(api), timeout=20)
    assert r.status_code == 200 and r.text == "<p>Contact: [redacted:email]</p>", r.text


def test_values_shown_through_other_characters_are_masked_in_responses(api):
    r = httpx.get(f"{api.base}/billing/escaped/shown", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert r.json() == {"card": "[redacted:credit-card]", "ssn": "[redacted:ssn]", "ssn_ar": "[redacted:ssn]",
                        "email": "[redacted:email]", "owner": "[redacted:email]", "log": "ssn=\x1b[1m[redacted:ssn]",
                        "note": "Café “naïve” — 3–4 日本語"}, r.text
    r = httpx.get(f"{api.base}/billing/escaped/log", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert "example.com" not in r.text and "1120" not in r.text, repr(r.text)
    assert r.text.count("[redacted:") == 2 and r.text.startswith("\x1b[32mINFO\x1b[0m imported "), repr(r.text)


def test_a_credential_named_beside_its_value_is_masked(api):
    # Kubernetes' env and AWS's parameters name a value in a sibling ("name": "DB_PASSWORD"),
    # under a key ("value") that says nothing.
    r = httpx.get(f"{api.base}/billing/config/pod", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    env = r.json()["spec"]["containers"][0]["env"]
    assert env == [{"name": "DB_HOST", "value": "db7.internal"}, {"name": "DB_PASSWORD", "value": "[redacted:credential]"},
                   {"name": "LOG_LEVEL", "value": "debug"}], env
    r = httpx.get(f"{api.base}/billing/config/parameter", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["Parameter"]["Value"] == "[redacted:credential]", r.text
    r = httpx.get(f"{api.base}/billing/config/yaml", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert "hK9mQ2vL7pXwRt" not in r.text and "      value: [redacted:credential]\n" in r.text, r.text
    assert "      value: db7.internal\n" in r.text, r.text


def test_a_file_in_base64_that_holds_a_finding_is_replaced_whole(api):
    r = httpx.get(f"{api.base}/billing/escaped/file", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["content"] == "[redacted:email]\n", answer
    # A packed file in base64 is content the detectors cannot read: replaced whole too.
    r = httpx.get(f"{api.base}/billing/escaped/file-gz", headers=bearer(api), timeout=20)
    assert r.status_code == 200 and r.json()["content"] == "[redacted:unreadable-content]", r.text
    # What decodes to no text (a hash) is left as it is.
    assert answer["sha"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4" and answer["name"] == ".env", answer
