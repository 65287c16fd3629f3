"""Bypass classes of the HTTP gateway (docs/http.md, "Policy" and "Masking"), each through a real
client against the real upstream of test_http.py: a field a framework reads wherever it is given,
names and paths lenient servers read alike, request shapes policy cannot see through, and what a
response says in forms masking cannot follow."""

import base64
import gzip
from urllib.parse import quote

import httpx
import pytest
import requests

from test_http import ODD_TOKEN, api, bearer, curl, upstream  # noqa: F401 (fixtures)


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
])
def test_a_refusing_path_rule_reads_a_format_suffix(api, mark, method, path, body, status, rule):
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
    assert r.json() == {"link": f"/welcome?from={redacted}", "base64": redacted, "base64url": redacted}, r.text
    for spelled in [quote(secret, safe=""), base64.b64encode(secret.encode()).decode(),
                    base64.urlsafe_b64encode(secret.encode()).decode()]:
        assert spelled not in r.text

