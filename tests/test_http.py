"""Internal HTTP APIs through sluice (docs/http.md): real clients (curl, requests, httpx) against a
real upstream (tests/http/upstream.py under uvicorn) that checks its own bearer token."""

import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import requests

from conftest import free_port, port_open, sluice_binary, wait_for

UPSTREAM = Path(__file__).parent / "http" / "upstream.py"
ODD_TOKEN = "up/str+eam?key>>1x"

RULES = """
[[policy.rules]]
name = "no-customer-deletes"
effect = "deny"
methods = ["DELETE"]
paths = ["/v1/customers/{id}"]
reason = "customers are never deleted by agents"
hint = "ask the billing team"

[[policy.rules]]
name = "admin-off"
effect = "deny"
paths = ["/admin/**"]

[[policy.rules]]
name = "big-payments-reviewed"
effect = "review"
methods = ["POST"]
paths = ["/v1/payments"]
json = [{ pointer = "/amount", matches = "[0-9]{4,}" }]

[[policy.rules]]
name = "no-graphql-mutations"
effect = "deny"
graphql = { operations = ["mutation"] }

[[policy.rules]]
name = "no-admin-sockets"
effect = "deny"
paths = ["/ws-admin"]
reason = "the admin socket is off limits"

[[policy.rules]]
name = "no-socket-drops"
effect = "deny"
paths = ["/ws-ops"]
json = [{ pointer = "/op", equals = "drop" }]
reason = "tables are not dropped over the socket"
hint = "ask the billing team"

[[policy.rules]]
name = "socket-refunds-reviewed"
effect = "review"
paths = ["/ws-ops"]
json = [{ pointer = "/op", equals = "refund" }]

[[policy.rules]]
name = "socket-purges-wait"
effect = "review"
paths = ["/ws-ops"]
json = [{ pointer = "/op", equals = "purge" }]
review = { mode = "wait", timeout = "60s" }

[[policy.rules]]
name = "no-big-invoice-ids"
effect = "deny"
paths = ["/graphql"]
json = [{ pointer = "/variables/id", matches = "[0-9]{5,}" }]

[[policy.rules]]
name = "no-report-runs"
effect = "deny"
methods = ["GET"]
paths = ["/v1/reports/run"]

[[policy.rules]]
name = "forced-echo-denied"
effect = "deny"
paths = ["/echo/**"]
query = { force = "true" }
"""


@pytest.fixture(scope="module")
def upstream():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(UPSTREAM), str(port)], stderr=subprocess.PIPE)

    wait_for(lambda: port_open(port), timeout=20, what="the upstream API")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def api(pg, upstream):
    from conftest import Sluice
    connections = {
        "billing": {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api", "password": "env:BILLING_TOKEN",
                    "hosts": ["billing.sluice.internal"], "sensitive_keys": ["password"], "timeout_s": 2},
        "billing_down": {"protocol": "http", "url": f"http://127.0.0.1:{free_port()}/api",
                         "password": "env:BILLING_TOKEN"},
        "billing_wrong": {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api",
                          "password": "env:WRONG_TOKEN"},
        "billing_ro": {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api", "password": "env:BILLING_TOKEN",
                       "policy": "read-only"},
        # A credential with characters a URL escapes and base64 groups that differ by alphabet.
        "billing_odd": {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api", "password": "env:ODD_TOKEN"},
        # A connection that serves files: packed ones pass unopened.
        "billing_files": {"protocol": "http", "url": f"http://127.0.0.1:{upstream}/api",
                          "password": "env:BILLING_TOKEN", "archives": "pass"},
    }
    gw = Sluice(pg, extra_toml=RULES, settings={"connections": connections,
                                                "recording": {"result_rows": 5, "result_max_bytes": 120},
                                                         "http": {"listen": "127.0.0.1:0", "oversize": "truncate",
                                                                  "max_response_body_bytes": 65536}},
                env={"BILLING_TOKEN": "upstream-secret", "WRONG_TOKEN": "not-the-upstream-secret",
                     "ODD_TOKEN": ODD_TOKEN})
    yield from serving(gw)


def serving(gw):
    """Starts a gateway for a module's fixture (its HTTP base URL and an agent token set), yields
    it, and stops it: it must stop cleanly, without a panic."""
    gw.start()
    gw.base = f"http://127.0.0.1:{gw.http_port}"
    gw.agent_token = gw.token()
    yield gw
    code = gw.stop()
    assert "panicked" not in gw.log(), gw.log()
    assert code == 0, gw.log()[-3000:]


def curl(*args, token=None):
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20", *args]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    body, _, status = out.stdout.rpartition("\n")
    return int(status or 0), body


def test_an_allowed_call_gets_the_held_credential_and_a_masked_answer(api):
    status, body = curl(f"{api.base}/billing/v1/customers", token=api.agent_token)
    assert status == 200, body
    customers = json.loads(body)
    assert customers[0]["name"] == "Ann"
    text = json.dumps(customers)
    for secret in ["ann@example.com", "4111 1111 1111 1111", "4242424242424242", "078-05-1120", "hunter2"]:
        assert secret not in text, f"{secret} leaked: {text}"
    assert customers[0]["profile"]["password"].startswith("[redacted")


def test_the_agents_token_never_reaches_the_upstream(api):
    status, body = curl("-H", "Connection: x-hop", "-H", "X-Hop: 1", f"{api.base}/billing/echo/a?x=1",
                        token=api.agent_token)
    # The upstream answers only its own credential (see the wrong one below): sluice injected it.
    assert status == 200, body
    seen = json.loads(body)
    # ... and what the upstream repeats of it never reaches the agent.
    assert seen["headers"]["authorization"] == "[redacted:held-credential]"
    assert "upstream-secret" not in body
    assert api.agent_token not in body
    assert "x-hop" not in seen["headers"]
    assert seen["path"] == "/api/echo/a" and seen["query"] == "x=1"


def test_the_held_credential_is_never_handed_back_in_a_header_or_an_error(api):
    r = requests.get(f"{api.base}/billing/debug-headers", headers={"Authorization": f"Bearer {api.agent_token}"},
                     timeout=20)
    assert r.status_code == 200, r.text
    assert r.headers["x-debug-auth"] == "[redacted:held-credential]"
    assert "dave@example.com" not in r.headers["x-contact"]
    # A connection holding the wrong credential: the upstream refuses it, quoting what it got.
    status, body = curl(f"{api.base}/billing_wrong/v1/customers", token=api.agent_token)
    assert status == 401, body
    assert json.loads(body)["got"] == "[redacted:held-credential]"
    assert "not-the-upstream-secret" not in body


def test_redirects_and_paging_links_keep_the_agent_on_sluice(api):
    # curl -L and requests follow a redirect the upstream wrote with its own URL: through sluice,
    # to the path the agent reaches it at, with the agent's token and the answer masked.
    status, body = curl("-L", f"{api.base}/billing/moved/absolute", token=api.agent_token)
    assert status == 200, body
    assert json.loads(body)[0]["name"] == "Ann" and "ann@example.com" not in body, body
    r = requests.get(f"{api.base}/billing/moved/path", headers=bearer(api), timeout=20)
    assert r.status_code == 200 and r.url == f"{api.base}/billing/v1/customers/1", (r.url, r.text)
    assert [h.headers["location"] for h in r.history] == ["/billing/v1/customers/1"]
    r = requests.get(f"{api.base}/billing/moved/absolute", headers=bearer(api), allow_redirects=False, timeout=20)
    assert r.status_code == 302 and r.headers["location"] == "/billing/v1/customers", r.headers
    # Routed by host name, the path has no prefix.
    r = requests.get(f"{api.base}/moved/path", headers={**bearer(api), "Host": "billing.sluice.internal"},
                     allow_redirects=False, timeout=20)
    assert r.status_code == 303 and r.headers["location"] == "/v1/customers/1", r.headers
    # A next page, as GitHub's API links it.
    r = requests.get(f"{api.base}/billing/moved/paged", headers=bearer(api), timeout=20)
    assert r.links["next"]["url"] == "/billing/v1/customers?page=2", r.headers
    assert r.links["last"]["url"] == "/billing/v1/customers?page=9", r.headers
    # Elsewhere is left as it is.
    r = requests.get(f"{api.base}/billing/moved/elsewhere", headers=bearer(api), allow_redirects=False, timeout=20)
    assert r.headers["location"] == "https://docs.example.com/billing", r.headers


def test_missing_and_bad_tokens_get_401_with_the_next_step(api):
    status, body = curl(f"{api.base}/billing/v1/customers")
    assert status == 401
    answer = json.loads(body)
    assert answer["error"] == "unauthenticated" and "Bearer" in answer["hint"]
    status, body = curl(f"{api.base}/billing/v1/customers", token="sluice_nope_nope")
    assert status == 401, body


def test_basic_auth_with_the_token_as_password_and_routing_by_host(api):
    r = requests.get(f"{api.base}/v1/customers/1", auth=("agent", api.agent_token),
                     headers={"Host": "billing.sluice.internal"}, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Ann"


def test_a_denied_call_says_which_rule_and_what_next(api):
    status, body = curl("-X", "DELETE", f"{api.base}/billing/v1/customers/2", token=api.agent_token)
    assert status == 403, body
    answer = json.loads(body)
    assert answer["rule"] == "no-customer-deletes"
    assert answer["reason"] == "customers are never deleted by agents"
    assert answer["hint"] == "ask the billing team"
    assert answer["detail"] == "DELETE /v1/customers/2"


@pytest.mark.parametrize("path", [
    "/billing/admin/users", "/billing//admin/users", "/billing/v1/../admin/users", "/billing/%61dmin/users",
    "/billing/ADMIN/users", "/billing/./admin/./users",
])
def test_paths_are_decided_as_the_upstream_sees_them(api, path):
    status, body = curl("--path-as-is", f"{api.base}{path}", token=api.agent_token)
    assert status == 403, (path, body)
    assert json.loads(body)["rule"] == "admin-off"


@pytest.mark.parametrize("path", ["/billing/admin%2fusers", "/billing/admin;x=1/users", "/billing/../../etc",
                                  "/billing/x/..%20/admin", "/billing/%EF%BC%8E%EF%BC%8E/admin"])
def test_paths_servers_read_differently_are_refused(api, path):
    status, body = curl("--path-as-is", f"{api.base}{path}", token=api.agent_token)
    assert status == 400, (path, body)
    assert json.loads(body)["error"] == "bad_request"


@pytest.mark.parametrize("override", [
    ["-X", "POST", "-H", "X-HTTP-Method-Override: DELETE"],
    ["-H", "X-Original-URL: /admin/users"],
    ["-H", "X-Rewrite-URL: /admin/users"],
    ["-X", "POST", "--url-query", "_method=DELETE"],
    ["-d", "_method=DELETE"],
    ["-F", "_method=DELETE"],
    ["-H", "Content-Type: application/json", "-d", '{"_method": "DELETE"}'],
])
def test_method_and_path_overrides_are_refused(api, override):
    status, body = curl(*override, f"{api.base}/billing/v1/customers/2", token=api.agent_token)
    assert status == 400, body
    answer = json.loads(body)
    assert "another method" in answer["reason"] and answer["hint"]


def test_a_repeated_query_parameter_cannot_hide_from_a_deny(api):
    status, body = curl(f"{api.base}/billing/echo/x?force=false&force=true", token=api.agent_token)
    assert status == 403, body


def raw(api, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", api.http_port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


@pytest.mark.parametrize("framing", [
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    b"Content-Length: 4\r\nContent-Length: 4\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
])
def test_ambiguously_framed_requests_are_refused_before_anything_is_forwarded(api, framing):
    request = (b"POST /billing/echo/smuggle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + api.agent_token.encode() + b"\r\n" + framing + b"\r\n0\r\n\r\n")
    answer = raw(api, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer


@pytest.mark.parametrize("head, status", [
    (b"GET /billing/v1/customers/1 HTTP/1.1\r\nUpgrade: TLS/1.2\r\nConnection: Upgrade\r\n", b"501"),
    (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n", b"400"),   # its authority is not the Host
    # Forwarded, answered 200: the protocol was not switched all the same.
    (b"GET /billing/v1/customers/1 HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
     b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n", b"200"),
], ids=["upgrade", "connect", "h2c"])
def test_an_upgrade_or_tunnel_that_switches_nothing_closes_the_connection(api, head, status):
    # What follows an upgrade or CONNECT is not HTTP/1 requests to sluice's framing watcher: an
    # answer that does not switch protocols ends the connection, and the request pipelined
    # behind it is not answered (before, it got 400 "framing could not be checked").
    auth = b"Host: x\r\nAuthorization: Bearer " + api.agent_token.encode() + b"\r\n\r\n"
    after = b"GET /billing/v1/customers/1 HTTP/1.1\r\n" + auth
    answer = raw(api, head + auth + after)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    assert answer.count(b"HTTP/1.1 ") == 1 and b"connection: close" in answer.lower(), answer


def test_a_trickled_body_is_cut_off_with_408(api):
    request = (b"POST /billing/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer " + api.agent_token.encode() + b"\r\nContent-Length: 50\r\n\r\n{\"am")
    started = time.monotonic()
    answer = raw(api, request)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_timeout" in answer
    assert time.monotonic() - started < 10


def test_obs_fold_is_refused(api):
    answer = raw(api, b"GET /billing/v1/customers HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_a_reviewed_call_is_refused_with_428_until_approved_then_runs_once(api):
    pay = {"amount": "25000", "to": "acme"}
    r = httpx.post(f"{api.base}/billing/v1/payments", json=pay,
                   headers={"Authorization": f"Bearer {api.agent_token}"}, timeout=20)
    assert r.status_code == 428, r.text
    answer = r.json()
    assert answer["error"] == "review_pending" and answer["rule"] == "big-payments-reviewed"
    assert r.headers["retry-after"] == "30"
    review_id = answer["review_id"]
    assert answer["review_url"].endswith(f"/api/v1/reviews/{review_id}")
    assert f"approve {review_id}" in answer["hint"]
    approver = api.token("olga", "approvers")
    env = dict(api.env, SLUICE_TOKEN=approver, SLUICE_URL=api.api_url)
    subprocess.run([str(sluice_binary()), "--config", str(api.config), "review", "approve", str(review_id)],
                   env=env, check=True, capture_output=True, timeout=60)
    r = httpx.post(f"{api.base}/billing/v1/payments", json=pay,
                   headers={"Authorization": f"Bearer {api.agent_token}"}, timeout=20)
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == pay
    # A small payment is not reviewed; another body is another request.
    r = httpx.post(f"{api.base}/billing/v1/payments", json={"amount": "12", "to": "acme"},
                   headers={"Authorization": f"Bearer {api.agent_token}"}, timeout=20)
    assert r.status_code == 201, r.text


def test_a_secret_in_json_is_known_by_the_key_it_is_assigned_to(api):
    # "api_token" is not among the target's sensitive keys: the credential detector reads the key
    # the value is assigned to, in JSON as in text; the value alone would look like any word.
    secret = "Zq7vW2xR9kLm4pTb"
    r = httpx.post(f"{api.base}/billing/v1/payments", json={"amount": "3", "api_token": secret, "note": secret[:6]},
                   headers={"Authorization": f"Bearer {api.agent_token}"}, timeout=20)
    assert r.status_code == 201, r.text
    assert secret not in r.text
    assert r.json()["accepted"] == {"amount": "3", "api_token": "[redacted:credential]", "note": secret[:6]}


def test_json_sluice_cannot_read_but_the_upstream_can_is_held_to_the_refusing_rules(api):
    # The upstream reads a body as JSON whatever its declared type, in UTF-16 or behind a
    # byte-order mark (Python's json.loads does): a payment spelled so must not pass the review
    # that the same payment in UTF-8 gets.
    pay = json.dumps({"amount": "25000", "to": "acme"})
    for body in [pay.encode("utf-16-le"), pay.encode("utf-16"), b"\xef\xbb\xbf" + pay.encode()]:
        r = httpx.post(f"{api.base}/billing/v1/payments", content=body, timeout=20,
                       headers={"Authorization": f"Bearer {api.agent_token}", "Content-Type": "text/plain"})
        assert r.status_code == 428, (body[:8], r.status_code, r.text)
        answer = r.json()
        assert answer["rule"] == "big-payments-reviewed" and "sluice could not read them" in answer["hint"]
    # A body that reads as what it is declared goes on as before.
    r = httpx.post(f"{api.base}/billing/v1/payments", json={"amount": "7"}, timeout=20,
                   headers={"Authorization": f"Bearer {api.agent_token}"})
    assert r.status_code == 201, r.text


def test_a_response_in_an_encoding_the_detectors_cannot_read_is_refused(api):
    for kind, named in [("utf-16", "UTF-16LE"), ("utf-7", "utf-7")]:
        r = httpx.get(f"{api.base}/billing/wide/{kind}", headers={"Authorization": f"Bearer {api.agent_token}"},
                      timeout=20)
        assert r.status_code == 502, (kind, r.status_code, r.content[:80])
        answer = r.json()
        assert answer["error"] == "upstream_response_refused" and named in answer["reason"], answer
        assert "Accept-Charset: utf-8" in answer["hint"]
        assert b"4111" not in r.content and b"d\0o\0r\0a" not in r.content


def gql(api, query, **kw):
    return httpx.post(f"{api.base}/billing/graphql", headers={"Authorization": f"Bearer {api.agent_token}"},
                      timeout=20, **({"json": {"query": query}} | kw))


def test_graphql_queries_run_and_mutations_are_refused(api):
    r = gql(api, "{ invoices { id email } }")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["invoices"][0]["id"] == 7
    assert "billing@example.com" not in r.text
    r = gql(api, "mutation { deleteInvoice(id: 7) }")
    assert r.status_code == 403 and r.json()["rule"] == "no-graphql-mutations", r.text
    # Hidden behind a fragment, it is still a mutation.
    r = gql(api, "mutation M { ...F } fragment F on Mutation { deleteInvoice(id: 7) }")
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("payload", [
    {"json": [{"query": "{ me }"}, {"query": "mutation { adminReset }"}]},
    {"json": {"query": "query A { me } mutation B { adminReset }", "operationName": "A"}},
    {"json": {"query": "{ me "}},
    {"content": b'{"query": "{ me }", "query": "mutation { adminReset }"}', "headers": {"content-type": "application/json"}},
])
def test_graphql_that_is_not_one_readable_operation_is_refused(api, payload):
    headers = {"Authorization": f"Bearer {api.agent_token}", **payload.pop("headers", {})}
    r = httpx.post(f"{api.base}/billing/graphql", headers=headers, timeout=20, **payload)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("unreadable", "bad_request"), r.text


def test_compressed_and_text_bodies_are_masked(api):
    r = requests.get(f"{api.base}/billing/gzip", headers={"Authorization": f"Bearer {api.agent_token}"}, timeout=20)
    assert r.status_code == 200, r.text
    assert "AKIAIOSFODNN7EXAMPLE" not in r.text and "gz@example.com" not in r.text
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    status, body = curl("--compressed", f"{api.base}/billing/text", token=api.agent_token)
    assert status == 200
    assert "carol@example.com" not in body and "5555 5555 5555 4444" not in body
    status, body = curl(f"{api.base}/billing/json-as-text", token=api.agent_token)
    assert status == 200, body
    assert json.loads(body)["user"]["password"] == "[redacted:password]"


def test_a_dead_or_slow_upstream_gets_a_clear_502_or_504_naming_the_target(api):
    start = time.monotonic()
    status, body = curl(f"{api.base}/billing_down/v1/customers", token=api.agent_token)
    assert status == 502, body
    assert "billing_down" in json.loads(body)["reason"]
    status, body = curl(f"{api.base}/billing/slow?s=5", token=api.agent_token)
    assert status == 504, body
    assert "billing" in json.loads(body)["reason"]
    assert time.monotonic() - start < 15
    # And the gateway goes on serving.
    assert curl(f"{api.base}/billing/v1/customers/1", token=api.agent_token)[0] == 200


def test_http2_prior_knowledge_and_unknown_routes(api):
    status, body = curl("--http2-prior-knowledge", f"{api.base}/billing/v1/customers/1", token=api.agent_token)
    assert status == 200, body
    status, body = curl(f"{api.base}/nothing/here", token=api.agent_token)
    assert status == 404 and json.loads(body)["error"] == "no_route"


def test_exchanges_are_recorded_with_status_and_verdict(api):
    curl("-X", "DELETE", f"{api.base}/billing/v1/customers/1", token=api.agent_token)

    def recorded(details):
        seen = [(a["text"], a["decision"], a["tag"], a["path"]) for a in details["statements"]]
        return ("DELETE /v1/customers/1", "deny", "HTTP 403", "http") in seen

    # Sessions end with their connection; curl's connection is closed.
    api.session_with(recorded, timeout=15)


def bearer(api):
    return {"Authorization": f"Bearer {api.agent_token}"}


@pytest.mark.parametrize("encoding", ["br", "zstd", "deflate"])
def test_every_encoding_sluice_asks_for_is_decoded_and_masked(api, encoding):
    r = requests.get(f"{api.base}/billing/encoded/{encoding}", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert "AKIAIOSFODNN7EXAMPLE" not in r.text and "enc@example.com" not in r.text
    assert "content-encoding" not in r.headers and int(r.headers["content-length"]) == len(r.content)


def test_every_content_encoding_field_is_undone_before_masking(api):
    r = requests.get(f"{api.base}/billing/two-encodings", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert r.json() == {"email": "[redacted:email]"}
    assert "content-encoding" not in r.headers


def read_until(chunks, marker: str) -> str:
    seen = ""
    while marker not in seen:
        seen += next(chunks)
    return seen


def test_server_sent_events_are_masked_event_by_event_as_they_come(api):
    name = "sse-" + "".join(chr(ord("a") + int(d)) for d in str(time.monotonic_ns()))
    with httpx.Client(timeout=20) as client:
        with client.stream("GET", f"{api.base}/billing/events?id={name}", headers=bearer(api)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert "content-length" not in r.headers
            chunks = r.iter_text()
            # The upstream holds the rest back until it is released: this event came on its own.
            first = read_until(chunks, "\n\n")
            assert first.startswith("event: update\nid: 1\ndata: {")
            event = json.loads(first.split("data: ", 1)[1])
            assert event["password"] == "[redacted:password]" and "first@example.com" not in first
            assert requests.get(f"{api.base}/billing/release?id={name}", headers=bearer(api), timeout=20).ok
            rest = "".join(chunks)
    # A value over several data lines is read as one, and masked as one.
    assert "4111 1111 1111 1111" not in rest and "erin@example.com" not in rest, rest
    assert ": keep-alive\n\n" in rest and rest.endswith("\n\n")
    second = rest.split("\n\n", 1)[0]
    data = "\n".join(line[len("data: "):] for line in second.split("\n") if line.startswith("data: "))
    assert json.loads(data) == {"n": 2, "card": "[redacted:credit-card]"}


def test_a_secret_a_stream_spells_across_events_is_masked(api):
    # A model's answer, a few characters per event: no one event holds the card number or the
    # key, the text the client joins does. Every event still arrives, as JSON where it was.
    with httpx.Client(timeout=20) as client:
        with client.stream("GET", f"{api.base}/billing/token-stream", headers=bearer(api)) as r:
            assert r.status_code == 200
            body = "".join(r.iter_text())
    events = [e[len("data: "):] for e in body.split("\n\n") if e]
    assert len(events) == 11 and events[-1] == "[DONE]", body
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:8])
    assert "4111" not in text.replace(" ", "") and "Zq7vK2m" not in text and "9xWp4LtR8sNb" not in text, text
    assert "[redacted:credit-card]" in text and "[redacted:openai-key]" in text
    assert text.endswith(". Anything else?"), "pieces no finding touches go as they came"
    # The same across two text events.
    assert events[8:10] == ["[redacted:credit-card]", "[redacted:credit-card]"], events


def test_a_compressed_event_stream_is_decoded_and_masked(api):
    status, body = curl("-N", f"{api.base}/billing/events?gzip=1", token=api.agent_token)
    assert status == 200, body
    assert body.count("\n\n") == 4, body
    for secret in ["first@example.com", "t-first", "4111 1111 1111 1111", "erin@example.com"]:
        assert secret not in body


def test_json_lines_are_masked_line_by_line(api):
    # Closed after the answer, so that the session ends (an idle connection would keep it open).
    r = requests.get(f"{api.base}/billing/ndjson", headers={**bearer(api), "Connection": "close"}, timeout=20)
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["i"] for line in lines] == [0, 1, 2]
    assert all(line["password"] == "[redacted:password]" and "@example.com" not in line["email"] for line in lines)
    # The stream's record counts every byte the client got, the last piece too.
    session = api.session_with(lambda d: any(a["text"] == "GET /ndjson" for a in d["statements"]), timeout=15)
    replay = json.loads(api.cli("sessions", "replay", session["session"]["id"], "--json").stdout)
    sizes = [e["event"]["detail"]["response_bytes"] for e in replay["events"]
             if e["event"]["kind"] == "action" and e["event"]["text"] == "GET /ndjson"]
    assert sizes == [len(r.content)], sizes


def test_a_chunked_json_body_is_read_whole_and_walked(api):
    r = requests.get(f"{api.base}/billing/chunked-json", headers=bearer(api), timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()[0]["password"] == "[redacted:password]"
    assert "chunked@example.com" not in r.text and int(r.headers["content-length"]) == len(r.content)


def test_an_event_over_the_cap_ends_the_stream_without_passing_it_on(api):
    received = ""
    with pytest.raises(httpx.HTTPError):
        with httpx.Client(timeout=20) as client:
            with client.stream("GET", f"{api.base}/billing/events?huge=70000", headers=bearer(api)) as r:
                assert r.status_code == 200
                for text in r.iter_text():
                    received += text
    assert received.startswith("event: update") and "leaked@example.com" not in received
    assert "xxxxxxxxxx" not in received
    assert curl(f"{api.base}/billing/v1/customers/1", token=api.agent_token)[0] == 200


def test_a_body_over_the_cap_is_cut_at_a_line_or_refused_when_json(api):
    r = requests.get(f"{api.base}/billing/big?size=200000", headers=bearer(api), timeout=20)
    assert r.status_code == 200
    assert r.headers["x-sluice-truncated"] == "65536"
    assert len(r.content) <= 65536 and r.text.endswith("\n") and "frank@example.com" not in r.text
    status, body = curl(f"{api.base}/billing/big?size=200000&kind=json", token=api.agent_token)
    assert status == 502, body
    answer = json.loads(body)
    assert answer["error"] == "upstream_response_refused" and "cut short" in answer["reason"]
    assert "big@example.com" not in body


def test_a_client_that_leaves_mid_stream_is_recorded_and_nothing_else_stops(api):
    # In letters: a run of digits in the record's line can pass for a card number and be masked.
    name = "gone-" + "".join(chr(ord("a") + int(d)) for d in str(time.monotonic_ns()))
    client = httpx.Client(timeout=20)
    with client.stream("GET", f"{api.base}/billing/events?id={name}", headers=bearer(api)) as r:
        read_until(r.iter_text(), "\n\n")
    client.close()
    assert requests.get(f"{api.base}/billing/release?id={name}", headers=bearer(api), timeout=20).ok
    assert curl(f"{api.base}/billing/v1/customers/1", token=api.agent_token)[0] == 200

    def recorded(details):
        return any(a["text"] == f"GET /events?id={name}" and "went away" in (a["error_message"] or "")
                   for a in details["statements"])

    # Generous: the stream is recorded once the upstream's next write finds the client gone, and
    # the session once its connection closes; a loaded machine is slow at both.
    api.session_with(recorded, timeout=30)


NODE_FETCH = r"""
const [base, token] = process.argv.slice(1);
const auth = { Authorization: `Bearer ${token}` };
(async () => {
  const ok = await fetch(`${base}/billing/v1/customers/1`, { headers: auth });
  const denied = await fetch(`${base}/billing/v1/customers/2`, { method: "DELETE", headers: auth });
  const gone = await fetch(`${base}/billing/v1/customers/1`);
  console.log(JSON.stringify({
    ok: { status: ok.status, body: await ok.json() },
    denied: { status: denied.status, body: await denied.json() },
    gone: { status: gone.status, body: await gone.json() },
  }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_node_fetch_works_unchanged(api):
    out = subprocess.run(["node", "-e", NODE_FETCH, api.base, api.agent_token], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["ok"]["status"] == 200 and seen["ok"]["body"]["name"] == "Ann"
    assert "ann@example.com" not in json.dumps(seen["ok"]["body"])
    assert seen["denied"]["status"] == 403 and seen["denied"]["body"]["rule"] == "no-customer-deletes"
    assert seen["gone"]["status"] == 401 and seen["gone"]["body"]["error"] == "unauthenticated"


def test_a_session_exports_as_har(api, tmp_path):
    # One connection, three exchanges: allowed with a query, denied, and GraphQL.
    with httpx.Client(base_url=f"{api.base}/billing", headers=bearer(api), timeout=20) as client:
        assert client.get("/v1/customers", params={"status": "open", "mail": "har@example.com"}).status_code == 200
        refused = client.request("DELETE", "/v1/customers/9", json={"reason": "dup of ann@example.com"})
        assert refused.status_code == 403
        assert client.post("/graphql", json={"query": "{ invoices { id } }"}).status_code == 200

    def recorded(details):
        return any(a["text"] == "DELETE /v1/customers/9" for a in details["statements"])

    details = api.session_with(recorded, timeout=15)
    out = tmp_path / "session.har"
    api.cli("sessions", "export", details["session"]["id"], "--har", "-o", str(out))
    har = json.loads(out.read_text())["log"]
    assert har["version"] == "1.2" and har["creator"]["name"] == "sluice"
    entries = har["entries"]
    assert [(e["request"]["method"], e["response"]["status"]) for e in entries] == [
        ("GET", 200), ("DELETE", 403), ("POST", 200)]
    first = entries[0]
    assert first["request"]["url"].startswith(f"http://127.0.0.1:{api_upstream_port(api)}/api/v1/customers?status=open")
    # The query is as recorded: masked.
    assert "har@example.com" not in json.dumps(har)
    assert first["response"]["bodySize"] > 0 and first["time"] > 0 and first["startedDateTime"].endswith("Z")
    assert entries[1]["_sluice"] == {"seq": 2, "verdict": "deny", "rule": "no-customer-deletes",
                                     "error": None, "graphql": None}
    assert entries[2]["_sluice"]["graphql"] == "query invoices"
    # The bodies' beginnings are kept ([recording] result_rows), masked and cut.
    assert "invoices" in entries[2]["request"]["postData"]["text"]
    # A refused request's body is kept too (what was refused is what a reviewer asks about), masked.
    assert json.loads(entries[1]["request"]["postData"]["text"]) == {"reason": "dup of [redacted:email]"}
    content = first["response"]["content"]["text"]
    assert content.startswith('[{"id":1,') and "[redacted:email]" in content and "ann@example.com" not in content
    assert len(content) <= 121 and content.endswith("…")
    replay = api.cli("sessions", "replay", details["session"]["id"]).stdout
    assert "→ HTTP 403" in replay and "response: [{" in replay
    # Only HTTP sessions have exchanges to export.
    import psycopg
    with psycopg.connect(api.dsn(api.agent_token, sslmode="disable")) as conn:
        conn.execute("SELECT 1")
    pg = api.session_with(lambda d: d["session"]["protocol"] == "postgres", timeout=15)
    result = api.cli("sessions", "export", pg["session"]["id"], "--har", check=False)
    assert result.returncode != 0 and "HTTP" in result.stderr, result.stderr


def test_a_record_keeps_escaped_what_would_read_as_another_part(api, tmp_path):
    # `%3F` in a segment is not a query, `%26` in a value not another pair, `%0A` not another
    # line: the record line escapes them again, and the HAR reads them back as one part each.
    request = (b"GET /billing/v1/customers/a%3Fadmin=1?note=x%26role%3Dadmin%0Aforged HTTP/1.1\r\n"
               b"Host: x\r\nConnection: close\r\nAuthorization: Bearer " + api.agent_token.encode() + b"\r\n\r\n")
    assert raw(api, request).startswith(b"HTTP/1.1 "), "no answer"
    line = "GET /v1/customers/a%3Fadmin=1?note=x%26role=admin%0Aforged"

    details = api.session_with(lambda d: any(a["text"] == line for a in d["statements"]), timeout=15)
    out = tmp_path / "session.har"
    api.cli("sessions", "export", details["session"]["id"], "--har", "-o", str(out))
    [entry] = json.loads(out.read_text())["log"]["entries"]
    assert entry["request"]["url"].endswith("/api/v1/customers/a%3Fadmin=1?note=x%26role%3Dadmin%0Aforged")
    assert entry["request"]["queryString"] == [{"name": "note", "value": "x&role=admin\nforged"}]


@pytest.mark.parametrize("target, mark", [
    ("/billing/v1/customers?note=%0A4111111111111111&mark=glued", "mark=glued"),
    ("/billing/v1/customers/4111%201111%201111%201111?mark=spaced", "mark=spaced"),
    # A target sluice refuses is recorded as sent, unless what it decodes to has something to mask.
    ("/billing/v1/refused-glued/%0A4111111111111111/%zz", "refused-glued"),
    # Its query is recorded as far as it decodes, masked the same way; an escape encoded twice too.
    ("/billing/v1/refused-query/%zz?note=%0A4111111111111111", "refused-query"),
    ("/billing/v1/refused-twice/x%250A4111111111111111/%zz", "refused-twice"),
])
def test_a_part_escaped_in_the_record_line_is_masked_as_it_was_sent(api, target, mark):
    # `%0A` glued to a card number, or a space escaped between its groups, would hide it from
    # the detectors the line meets when it is recorded: such a part is masked before it is escaped.
    request = (f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               f"Authorization: Bearer {api.agent_token}\r\n\r\n").encode()
    assert raw(api, request).startswith(b"HTTP/1.1 "), "no answer"
    details = api.session_with(lambda d: any(mark in a["text"] for a in d["statements"]), timeout=15)
    [line] = [a["text"] for a in details["statements"] if mark in a["text"]]
    assert "4111" not in line and "[redacted:" in line, line


def api_upstream_port(api):
    return int(api.settings["connections"]["billing"]["url"].split(":")[2].split("/")[0])


def test_a_websocket_is_decided_on_its_path_then_joined_masked_and_recorded(api, tmp_path):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{api.base.rsplit(':', 1)[1]}/billing/ws?room=1"
    with connect(url, additional_headers=bearer(api), open_timeout=20) as ws:
        ws.send("hello from carol@example.com")
        answer = json.loads(ws.recv(timeout=20))
        ws.send("second")
        second = json.loads(ws.recv(timeout=20))
        # A key the upstream spells over several messages: each message is masked in what the
        # client joins, and every message still arrives.
        ws.send("spell")
        spelled = [ws.recv(timeout=20) for _ in range(4)]
    # The upstream accepted the held credential; what it sends back (the address it echoes too)
    # is masked like a response.
    assert answer["echo"] == "hello from [redacted:email]" and second["echo"] == "second"
    assert answer["contact"] == "[redacted:email]" and answer["password"] == "[redacted:password]"
    assert spelled == ["[redacted:openai-key]"] * 3 + [" ok"], spelled
    with pytest.raises(InvalidStatus) as refused:
        connect(url.replace("/ws?", "/ws-admin?"), additional_headers=bearer(api), open_timeout=20)
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["rule"] == "no-admin-sockets"

    def recorded(details):
        texts = [a["text"] for a in details["statements"]]
        return "GET /ws?room=1" in texts and any(t.startswith("WS /ws?room=1 ended:") for t in texts)

    details = api.session_with(recorded, timeout=15)
    texts = [(a["text"], a["tag"]) for a in details["statements"]]
    # Each message names its socket by path and query.
    assert ("WS /ws?room=1 → text hello from [redacted:email]", "HTTP 101") in texts
    assert any(t.startswith("WS /ws?room=1 ← text") and "ws@example.com" not in t and "[redacted" in t
               for t, _ in texts)
    assert ("WS /ws?room=1 → text second", "HTTP 101") in texts
    # The HAR export holds them with the upgrade's entry, as browsers' developer tools do.
    out = tmp_path / "socket.har"
    api.cli("sessions", "export", details["session"]["id"], "--har", "-o", str(out))
    [upgrade] = [e for e in json.loads(out.read_text())["log"]["entries"] if e["response"]["status"] == 101]
    messages = upgrade["_webSocketMessages"]
    assert {"type": "send", "opcode": 1, "data": "hello from [redacted:email]"}.items() <= messages[0].items()
    assert [m["type"] for m in messages if m["opcode"] == 1].count("send") == 3, messages
    assert messages[-1]["opcode"] == 8, messages


def ws_url(api, path):
    return f"ws://127.0.0.1:{api.base.rsplit(':', 1)[1]}/billing{path}"


def closed_by_sluice(ws, message):
    """Sends `message` and returns the close frame sluice ends the socket with."""
    from websockets.exceptions import ConnectionClosed

    ws.send(message)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
    return closed.value.rcvd.reason


def upstream_saw(api, mark):
    return requests.get(f"http://127.0.0.1:{api_upstream_port(api)}/api/seen", params={"mark": mark}, timeout=10).json()


def test_a_clients_close_reason_never_reaches_the_upstream(api):
    # A close frame's reason (and a ping's data) are bytes no policy reads: the upstream gets
    # the close and its code, not the words.
    from websockets.sync.client import connect

    mark = "closing-" + "".join(chr(ord("a") + int(d)) for d in str(time.monotonic_ns()))
    with connect(ws_url(api, "/ws"), additional_headers=bearer(api), open_timeout=20) as ws:
        ws.send(mark)
        assert json.loads(ws.recv(timeout=20))["echo"] == mark
        # sluice answers a ping itself, with its data.
        assert ws.ping(b"POST /v1/refunds " + mark.encode()).wait(timeout=20)
        ws.close(code=4000, reason=f"POST /v1/refunds {mark}")
    seen = wait_for(lambda: upstream_saw(api, "closed 4000"), timeout=15, what="the upstream to see the close")
    assert all(s.endswith("reason=''") for s in seen), seen
    assert not [s for s in upstream_saw(api, mark) if "refunds" in s]


def test_each_message_a_client_sends_on_a_websocket_is_decided_by_policy(api):
    # The upgrade is allowed on its path; what each message asks is decided as that request with
    # the message as its body, so a JSON rule refuses a message as it refuses a POST. A refused
    # message never reaches the upstream: the socket is closed (1008) naming the rule.
    from websockets.sync.client import connect

    with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20) as ws:
        ws.send('{"op": "list", "mark": "ws-list-1"}')
        assert json.loads(ws.recv(timeout=20))["echo"] == '{"op": "list", "mark": "ws-list-1"}'
        reason = closed_by_sluice(ws, '{"op": "drop", "mark": "ws-drop-1"}')
    assert "no-socket-drops" in reason and "tables are not dropped" in reason, reason
    # The same refusal for the field in another case (as Go's encoding/json reads it), and for
    # messages sluice cannot read as JSON, which a server may read in its own framing (Socket.IO's
    # event frame, msgpack): refusing JSON rules hold for them.
    for message in ['{"OP": "drop", "mark": "ws-drop-2"}', '42["op",{"op":"drop","mark":"ws-drop-3"}]',
                    b"\x82\xa2op\xa4drop\xa4mark\xa9ws-drop-4"]:
        with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20) as ws:
            assert "no-socket-drops" in closed_by_sluice(ws, message)
    # A graphql-ws operation is GraphQL on any socket, whatever the upstream agreed to speak.
    with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20) as ws:
        start = {"id": "1", "type": "start", "payload": {"query": "mutation { deleteInvoice(id: 3) }"}}
        assert "no-graphql-mutations" in closed_by_sluice(ws, json.dumps(start))
    assert [s for s in upstream_saw(api, "ws-") if "drop" in s] == []
    assert upstream_saw(api, "ws-list-1"), "an allowed message reaches the upstream"
    assert not [s for s in upstream_saw(api, "WS /api/ws-ops") if "deleteInvoice" in s]

    def recorded(details):
        return any("ws-drop-1" in a["text"] for a in details["statements"])

    session = api.session_with(recorded, timeout=15)
    statements = session["statements"]
    [refused] = [a for a in statements if "ws-drop-1" in a["text"]]
    assert refused["text"].startswith("WS /ws-ops → text") and refused["decision"] == "deny", refused
    assert any(a["text"].startswith("WS /ws-ops ended: sluice refused") for a in statements)
    # The allowed message was recorded durably before it went, by its digest.
    replay = json.loads(api.cli("sessions", "replay", session["session"]["id"], "--json").stdout)
    digest = hashlib.sha256(b'{"op": "list", "mark": "ws-list-1"}').hexdigest()
    decided = [e["event"]["text"] for e in replay["events"] if e["event"]["kind"] == "action_decided"]
    assert f"WS /ws-ops message [body sha256 {digest}]" in decided, decided


def test_a_websocket_message_over_a_cap_ends_the_socket_with_1009(api):
    # A message the client sends is a request's body (max_request_body_bytes: 10 MiB here), one the
    # upstream sends a response's (max_response_body_bytes: 64 KiB here). Over its cap, a message
    # goes nowhere, in whole or in part: the socket ends with 1009 (message too big) saying which.
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def close_after(message):
        with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20, max_size=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.send(message)
                while True:
                    ws.recv(timeout=20)
        assert closed.value.rcvd is not None, closed.value
        return closed.value.rcvd

    # 100 KB: under the request cap, so it reaches the upstream; its echo is over the response cap.
    frame = close_after(json.dumps({"op": "list", "mark": "ws-big-1", "pad": "x" * 100_000}))
    assert frame.code == 1009 and "max_response_body_bytes" in frame.reason, frame
    assert len(upstream_saw(api, "ws-big-1")) == 1
    frame = close_after(json.dumps({"op": "list", "mark": "ws-huge-1", "pad": "x" * (10 * 1024 * 1024)}))
    assert frame.code == 1009 and "10485760 bytes" in frame.reason and "max_request_body_bytes" in frame.reason, frame
    assert upstream_saw(api, "ws-huge-1") == []

    def recorded(details):
        return any("over the cap" in a["text"] for a in details["statements"])

    statements = api.session_with(recorded, timeout=15)["statements"]
    refused = [a for a in statements if "over the cap" in a["text"]]
    assert refused[0]["decision"] == "deny" and "max_request_body_bytes" in refused[0]["error_message"], refused
    api.session_with(lambda d: any("over 65536 bytes (http.max_response_body_bytes)" in a["text"]
                                   for a in d["statements"]), timeout=15)


def test_a_reviewed_websocket_message_goes_once_approved(api):
    from websockets.sync.client import connect

    refund = '{"op": "refund", "amount": 5, "mark": "ws-refund-1"}'
    with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20) as ws:
        reason = closed_by_sluice(ws, refund)
    assert "approval #" in reason and "socket-refunds-reviewed" in reason and "same message" in reason, reason
    review_id = reason.split("#")[1].split(" ")[0]
    assert upstream_saw(api, "ws-refund-1") == []
    approver = api.token("olga", "approvers")
    env = dict(api.env, SLUICE_TOKEN=approver, SLUICE_URL=api.api_url)
    subprocess.run([str(sluice_binary()), "--config", str(api.config), "review", "approve", review_id],
                   env=env, check=True, capture_output=True, timeout=60)
    with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20) as ws:
        ws.send(refund)
        assert json.loads(ws.recv(timeout=20))["echo"] == refund
    assert len(upstream_saw(api, "ws-refund-1")) == 1


def test_a_socket_goes_on_while_a_message_waits_for_review(api):
    # In `wait` mode a message waits for its approval; the upstream's messages keep coming
    # meanwhile, and the message goes once approved (the client's next ones after it).
    from websockets.sync.client import connect

    approver = api.token("olga", "approvers")
    with connect(ws_url(api, "/ws-ops"), additional_headers=bearer(api), open_timeout=20) as ws:
        ws.send('{"op": "ticks", "n": 8, "every": 0.5}')
        purge = '{"op": "purge", "mark": "ws-purge-1"}'
        ws.send(purge)
        ws.send('{"op": "list", "mark": "ws-after-purge"}')
        ticks = [json.loads(ws.recv(timeout=20)) for _ in range(3)]
        assert [t.get("tick") for t in ticks] == [0, 1, 2], ticks
        assert upstream_saw(api, "ws-purge-1") == [] and upstream_saw(api, "ws-after-purge") == []

        def pending():
            r = requests.get(f"{api.api_url}/api/v1/reviews", params={"status": "pending"},
                             headers={"Authorization": f"Bearer {approver}"}, timeout=10)
            return [v["id"] for v in r.json()["reviews"] if "ws-purge-1" in v["subject"].get("text", "")]

        [review_id] = wait_for(pending, timeout=15, what="the purge's review")
        env = dict(api.env, SLUICE_TOKEN=approver, SLUICE_URL=api.api_url)
        subprocess.run([str(sluice_binary()), "--config", str(api.config), "review", "approve", str(review_id)],
                       env=env, check=True, capture_output=True, timeout=60)
        echoes = []
        while len(echoes) < 2:
            message = json.loads(ws.recv(timeout=20))
            if "echo" in message:
                echoes.append(json.loads(message["echo"])["mark"])
    assert echoes == ["ws-purge-1", "ws-after-purge"], echoes


def test_a_graphql_operation_over_a_websocket_is_decided_as_over_http(api):
    # graphql-ws (subscriptions and queries over a socket): each subscribe message's operation
    # meets the GraphQL rules a POST to the same endpoint meets, aliases of masked fields included.
    from websockets.sync.client import connect

    @contextlib.contextmanager
    def socket(path="/graphql"):
        with connect(ws_url(api, path), additional_headers=bearer(api), open_timeout=20,
                     subprotocols=["graphql-transport-ws"]) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(ws.recv(timeout=20))["type"] == "connection_ack"
            yield ws

    def subscribe(query, id="1"):
        return json.dumps({"id": id, "type": "subscribe", "payload": {"query": query}})

    with socket() as ws:
        ws.send(subscribe("{ invoices { id email } }"))
        answer = json.loads(ws.recv(timeout=20))
        assert answer["type"] == "next" and answer["payload"]["data"]["invoices"][0]["email"] == "[redacted:email]"
        assert json.loads(ws.recv(timeout=20))["type"] == "complete"
        reason = closed_by_sluice(ws, subscribe("mutation { deleteInvoice(id: 7) }", "2"))
    assert "no-graphql-mutations" in reason, reason
    # JSON rules read the operation's payload, as they read a POST's body.
    with socket() as ws:
        query = {"id": "3", "type": "subscribe",
                 "payload": {"query": "query($id: Int!) { me }", "variables": {"id": 12345}}}
        assert "no-big-invoice-ids" in closed_by_sluice(ws, json.dumps(query))
    # On a path not listed as GraphQL, once the upstream agreed to speak graphql-ws, a message
    # outside that protocol is refused too.
    with socket("/subscriptions") as ws:
        assert "no-graphql-mutations" in closed_by_sluice(ws, subscribe("mutation { deleteInvoice(id: 8) }"))
    with socket("/subscriptions") as ws:
        assert closed_by_sluice(ws, "mutation { adminReset }").startswith("sluice refused (unreadable)")
    # A subscription filtering by a masked field would tell its value, one guess at a time.
    with socket() as ws:
        reason = closed_by_sluice(ws, subscribe('{ invoices(where: {password: {eq: "x"}}) { id } }'))
        assert "sensitive-filter" in reason, reason
    for message, why in [(subscribe("{ invoices { pw: password } }"), "alias"),
                         (subscribe("{ me } { invoices { id } }"), "parse"),
                         (json.dumps({"type": "execute", "query": "mutation { adminReset }"}), "execute"),
                         ("mutation { adminReset }", "graphql-ws")]:
        with socket() as ws:
            reason = closed_by_sluice(ws, message)
        assert reason.startswith("sluice refused (unreadable)"), (why, reason)
    seen = upstream_saw(api, "WS /api/graphql")
    assert any("subscribe { invoices { id email } }" in s for s in seen), seen
    assert not any("deleteInvoice" in s or "password" in s or "adminReset" in s or "{ me }" in s for s in seen), seen


def test_a_read_only_connection_opens_no_websocket(api):
    # A WebSocket opens with a GET, but its messages go to the upstream unread: not a read.
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    assert requests.get(f"{api.base}/billing_ro/v1/customers", headers=bearer(api), timeout=20).status_code == 200
    url = f"ws://127.0.0.1:{api.base.rsplit(':', 1)[1]}/billing_ro/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=bearer(api), open_timeout=20)
    assert refused.value.response.status_code == 403
    answer = json.loads(refused.value.response.body)
    assert "not WebSockets" in answer["hint"], answer


def test_a_websocket_ends_when_its_token_is_revoked(api):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    token = api.token(identity="ws-revokee")
    url = f"ws://127.0.0.1:{api.base.rsplit(':', 1)[1]}/billing/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=20) as ws:
        ws.send("before")
        assert json.loads(ws.recv(timeout=20))["echo"] == "before"
        api.cli("token", "revoke", token.split("_")[1])
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=15)
    assert closed.value.rcvd.code == 1008 and "revoked" in closed.value.rcvd.reason


def test_a_request_that_waited_never_goes_on_with_another_tokens_session(api):
    # One HTTP/2 connection (driven frame by frame with the h2 library), two tokens: while the
    # first request's body is still coming, a request with another token takes the connection's
    # session. The first must not be sent upstream with it.
    import h2.config
    import h2.connection
    import h2.events

    other = api.token(identity="h2-other")
    sock = socket.create_connection(("127.0.0.1", api.http_port), timeout=20)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    def headers(method, path, token, **extra):
        return [(":method", method), (":path", f"/billing{path}"), (":scheme", "http"),
                (":authority", f"127.0.0.1:{api.http_port}"), ("authorization", f"Bearer {token}"),
                *extra.items()]

    def responses(wanted):
        got = {}
        while not wanted <= {k for k, v in got.items() if v.get("ended")}:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    got.setdefault(event.stream_id, {})["status"] = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    got.setdefault(event.stream_id, {}).setdefault("body", b"")
                    got[event.stream_id]["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    got.setdefault(event.stream_id, {})["ended"] = True
            sock.sendall(conn.data_to_send())
        return got

    conn.send_headers(1, headers("POST", "/echo/waited", api.agent_token, **{"content-type": "application/json"}))
    conn.send_data(1, b'{"amount":')
    sock.sendall(conn.data_to_send())
    time.sleep(0.3)
    conn.send_headers(3, headers("GET", "/v1/customers/1", other), end_stream=True)
    sock.sendall(conn.data_to_send())
    second = responses({3})[3]
    assert second["status"] == b"200", second
    conn.send_data(1, b" 1}", end_stream=True)
    sock.sendall(conn.data_to_send())
    first = responses({1})[1]
    sock.close()
    assert first["status"] == b"409", first
    assert json.loads(first["body"])["error"] == "session_changed"


def test_requests_refused_for_their_shape_are_recorded_in_the_callers_session(api):
    probes = [
        (["-H", "X-HTTP-Method-Override: DELETE"], "/billing/v1/customers/7", 400),
        (["-H", "X_Env: prod"], "/billing/v1/customers/8", 400),
        (["--path-as-is"], "/billing/v1/%252e%252e/admin", 400),
        (["-X", "POST", "-H", "Content-Encoding: gzip", "--data-binary", "x"], "/billing/v1/payments", 415),
    ]
    for args, path, expected in probes:
        status, body = curl(*args, f"{api.base}{path}", token=api.agent_token)
        assert status == expected, (path, body)
        assert json.loads(body)["hint"], body

    # Each curl is a connection of its own, so a session of its own.
    for text, tag in [
        ("GET /v1/customers/7", "HTTP 400"),
        ("GET /v1/customers/8", "HTTP 400"),
        ("GET /v1/%252e%252e/admin", "HTTP 400"),
        ("POST /v1/payments", "HTTP 415"),
    ]:
        api.session_with(
            lambda details: (text, "deny", tag) in {(a["text"], a["decision"], a["tag"]) for a in details["statements"]},
            timeout=15,
        )
