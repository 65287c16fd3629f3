"""A small internal API for the HTTP tests: JSON resources, a GraphQL endpoint, compressed and
text bodies, a slow endpoint, an echo of what it received, and a list of the requests that reached
it. Every call needs the upstream's own bearer token, so a test can tell that sluice injected the
credential it holds."""

import asyncio
import base64
import gzip
import html
import io
import json
import os
import re
import sys
import zipfile
import zlib
from urllib.parse import quote

import brotli
import zstandard

import uvicorn
from graphql import build_schema, graphql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

TOKEN = os.environ.get("UPSTREAM_TOKEN", "upstream-secret")

CUSTOMERS = [
    {"id": 1, "name": "Ann", "email": "ann@example.com", "card": "4111 1111 1111 1111",
     "profile": {"password": "hunter2", "ssn": "078-05-1120"}},
    {"id": 2, "name": "Bob", "email": "bob@example.com", "card": 4242424242424242,
     "profile": {"password": "swordfish", "ssn": "219-09-9999"}},
]

SCHEMA = build_schema("""
type Invoice { id: Int! email: String! password: String! }
type Query { invoices: [Invoice!]! me: String! }
type Mutation { deleteInvoice(id: Int!): Boolean! adminReset: Boolean! }
""")
ROOT = {"invoices": [{"id": 7, "email": "billing@example.com", "password": "inv-pw-7"}], "me": "agent",
        "deleteInvoice": lambda info, id: True, "adminReset": lambda info: True}


def authorized(request: Request) -> bool:
    return request.headers.get("authorization") == f"Bearer {TOKEN}"


def guard(handler):
    async def wrapped(request: Request):
        if not authorized(request):
            return JSONResponse({"error": "upstream: bad or missing credential",
                                 "got": request.headers.get("authorization")}, status_code=401)
        return await handler(request)
    return wrapped


async def customers(request):
    return JSONResponse(CUSTOMERS)


async def customer(request):
    cid = int(request.path_params["id"])
    if request.method == "DELETE":
        return JSONResponse({"deleted": cid})
    return JSONResponse(next((c for c in CUSTOMERS if c["id"] == cid), {}))


async def payments(request):
    return JSONResponse({"accepted": await request.json()}, status_code=201)


async def echo(request):
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                         "headers": dict(request.headers), "body": body.decode(errors="replace")})


async def debug_headers(request):
    # A debugging aid some APIs have: it repeats the request's credential in a response header.
    return JSONResponse({"ok": True}, headers={"x-debug-auth": request.headers.get("authorization", ""),
                                               "x-contact": "dave@example.com"})


async def compressed(request):
    body = gzip.compress(b'{"key": "AKIAIOSFODNN7EXAMPLE", "email": "gz@example.com"}')
    return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})


async def encoded(request):
    # The same JSON in whichever encoding the path names.
    raw = b'{"key": "AKIAIOSFODNN7EXAMPLE", "email": "enc@example.com"}'
    encoding = request.path_params["encoding"]
    body = {"br": brotli.compress, "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
            "deflate": zlib.compress}[encoding](raw)
    return Response(body, media_type="application/json", headers={"content-encoding": encoding})


async def two_encodings(request):
    # Content-Encoding twice: "identity", then "gzip". A gateway that reads only the first field
    # would pass the compressed bytes on unread.
    body = gzip.compress(b'{"email": "layered@example.com"}')
    response = Response(body, media_type="application/json", headers={"content-encoding": "identity"})
    response.raw_headers.append((b"content-encoding", b"gzip"))
    return response


# Streams that wait, between their first event and the rest, until the test releases them: a
# client sees the first event before the stream ends only if the gateway passes events on as they
# come.
RELEASES: dict[str, asyncio.Event] = {}


def release_of(name: str) -> asyncio.Event:
    return RELEASES.setdefault(name, asyncio.Event())


async def release(request):
    release_of(request.query_params["id"]).set()
    return JSONResponse({"released": True})


async def events(request):
    name = request.query_params.get("id", "")
    gz = request.query_params.get("gzip") == "1"
    huge = int(request.query_params.get("huge", "0"))
    # An event begun (this many bytes of it) but not ended until the test releases the stream.
    partial = int(request.query_params.get("partial", "0"))
    compressor = zlib.compressobj(wbits=31) if gz else None

    def out(text: str) -> bytes:
        data = text.encode()
        return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH) if compressor else data

    async def stream():
        first = {"n": 1, "email": "first@example.com", "password": "t-first"}
        yield out(f"event: update\nid: 1\ndata: {json.dumps(first)}\n\n")
        if partial:
            yield out("data: " + "y" * partial)
        if name:
            await asyncio.wait_for(release_of(name).wait(), timeout=30)
        if partial:
            yield out("\n\n")
        if huge:
            yield out("data: " + "x" * huge + " leaked@example.com\n\n")
        # One value over several data lines, a comment, and text.
        yield out('data: {"n": 2,\ndata: "card": "4111 1111 1111 1111"}\n\n')
        yield out(": keep-alive\n\ndata: mail erin@example.com\n\n")
        if compressor:
            yield compressor.flush()

    headers = {"content-encoding": "gzip"} if gz else {}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def token_stream(request):
    """A language model's answer as it streams: a few characters per event, 20 ms apart, with a
    card number and an API key each spread over several events (OpenAI's chunk shape), then the
    same card number split across two text events."""
    pieces = ["Your card is 4111 ", "1111 11", "11 1111", " and your key is sk-", "proj-Zq7vK2m",
              "9xWp4LtR8sNb", ". Anything else", "?"]

    async def stream():
        for piece in pieces:
            chunk = {"id": "c1", "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": piece}}]}
            yield f"data: {json.dumps(chunk)}\n\n"
            await asyncio.sleep(0.02)
        yield "data: card 4111 1111\n\n"
        yield "data:  1111 1111 thanks\n\n"
        yield "data: [DONE]\n\n"
    return StreamingResponse(stream(), media_type="text/event-stream")


async def ndjson(request):
    async def stream():
        for i in range(3):
            # The last line without its newline: what is left when the stream ends goes too.
            yield json.dumps({"i": i, "email": f"user{i}@example.com", "password": f"t{i}"}) + ("\n" if i < 2 else "")
    return StreamingResponse(stream(), media_type="application/x-ndjson")


async def chunked_json(request):
    # JSON sent in chunks, without a length: read whole, then walked.
    async def stream():
        yield '[{"email": "chunk'
        yield 'ed@example.com", "password": "pw-in-chunks"}]'
    return StreamingResponse(stream(), media_type="application/json")


async def big(request):
    size = int(request.query_params.get("size", "100000"))
    if request.query_params.get("kind") == "json":
        return JSONResponse({"filler": "x" * size, "email": "big@example.com"})
    line = "row of text with frank@example.com and some filler to make it longer\n"
    return PlainTextResponse(line * (size // len(line) + 1))


async def text(request):
    return PlainTextResponse("contact carol@example.com, card 5555 5555 5555 4444\n")


async def json_as_text(request):
    # JSON declared as text: a client would still read it as JSON.
    return PlainTextResponse('{"user": {"password": "opensesame"}}')


async def wide(request):
    # Text the detectors would read as NULs between letters: JSON in UTF-16 (found by the NULs,
    # as Python's json.loads and requests' .json() find it) or text declared UTF-7.
    if request.path_params["kind"] == "utf-7":
        return Response("card +ADQ-111 1111 1111 1111".encode(), media_type="text/plain; charset=utf-7")
    body = json.dumps({"email": "dora@example.com", "card": "4111 1111 1111 1111"}).encode("utf-16-le")
    return Response(body, media_type="application/json")


REPORTS = {
    # Records as some APIs give them on request: XML or CSV, where a sensitive field is only a name.
    "user.xml": ("application/xml", "<user><name>Ann</name><password>hunter2</password></user>"),
    "users.csv": ("text/csv", "name,Password\nAnn,hunter2\n"),
    "invoice.xml": ("application/xml", "<invoice><id>7</id><email>inv@example.com</email></invoice>"),
}


async def report(request):
    media, body = REPORTS[request.path_params["name"]]
    return Response(body, media_type=media)


# A customer export as a file: the records the detectors would mask, packed where they cannot
# read them.
EXPORT = b"name,ssn,card\nAnn,078-05-1120,4111 1111 1111 1111\n"


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def packed_export(kind: str) -> tuple[bytes, dict]:
    """The export packed as `kind`, and the headers it is served with."""
    gz = gzip.compress(EXPORT)
    if kind == "gzip":
        return gz, {"content-type": "application/gzip"}
    if kind == "gzip-as-bytes":
        return gz, {"content-type": "application/octet-stream"}
    if kind == "gzip-as-text":
        return gz, {"content-type": "text/csv"}
    if kind == "gzip-twice":
        # A .csv.gz sent with a Content-Encoding of its own: decoded once, it is still a gzip file.
        return gzip.compress(gz), {"content-type": "application/gzip", "content-encoding": "gzip"}
    if kind == "zip":
        return zipped("customers.csv", EXPORT), {"content-type": "application/zip"}
    if kind == "xlsx-download":
        return zipped("xl/worksheets/sheet1.xml", EXPORT), {
            "content-type": "application/octet-stream", "content-disposition": "attachment; filename=customers.xlsx"}
    if kind == "pdf":
        stream = zlib.compress(b"BT /F1 12 Tf (" + EXPORT + b") Tj ET")
        head = b"%PDF-1.7\n1 0 obj << /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n"
        return head + stream + b"\nendstream\nendobj\n%%EOF\n", {"content-type": "application/pdf"}
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(EXPORT), {"content-type": "application/zstd"}
    if kind == "brotli":
        return brotli.compress(EXPORT), {"content-type": "application/x-brotli"}
    if kind == "multipart":
        body = (b"--part\r\nContent-Type: text/plain\r\n\r\nyour export\r\n--part\r\n"
                b"Content-Type: application/gzip\r\n\r\n" + gz + b"\r\n--part--\r\n")
        return body, {"content-type": "multipart/mixed; boundary=part"}
    raise KeyError(kind)


async def packed(request):
    body, headers = packed_export(request.path_params["kind"])
    return Response(body, headers=headers)


async def escaped(request):
    # Values spelled in escapes: a pagination link that repeats the filter, a page that hides an
    # address from scrapers, a document quoted twice.
    if request.path_params["kind"] == "file":
        # A file as GitHub's contents API returns it: base64, wrapped at 60 characters.
        encoded = base64.b64encode(b"DB_HOST=db.internal\nOWNER=ann@example.com\nSSN=078-05-1120\n").decode()
        wrapped = "\n".join(encoded[i:i + 60] for i in range(0, len(encoded), 60)) + "\n"
        return JSONResponse({"name": ".env", "encoding": "base64", "content": wrapped,
                             "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4"})
    if request.path_params["kind"] == "file-gz":
        # The export's .csv.gz through the same API: base64 of what the detectors cannot read.
        return JSONResponse({"name": "customers.csv.gz", "encoding": "base64",
                             "content": base64.b64encode(gzip.compress(EXPORT)).decode()})
    if request.path_params["kind"] == "html":
        return Response("<p>Contact: ann&#64;example&#x2E;com</p>", media_type="text/html")
    if request.path_params["kind"] == "shown":
        # Values in characters that show as others or as nothing, sent as UTF-8 (not \u escapes).
        values = {"card": "4111\u00a01111\u00a01111\u00a01111", "ssn": "０７８－０５－１１２０",
                  "ssn_ar": "٠٧٨-٠٥-١١٢٠", "email": "ann\u200b@example.com", "owner": "josé@exämple.com",
                  "log": "ssn=\x1b[1m078-05-1120\x1b[0m", "note": "Café “naïve” — 3–4 日本語"}
        return Response(json.dumps(values, ensure_ascii=False).encode(), media_type="application/json")
    if request.path_params["kind"] == "log":
        # A CI job's log as its API returns it: coloured for a terminal.
        return PlainTextResponse("\x1b[32mINFO\x1b[0m imported \x1b[1mann\x1b[0m@example.com, "
                                 "ssn \x1b[31m078\x1b[0m-05-1120\n")
    return JSONResponse({"next": "/v1/customers?email=ann%40example.com&page=2",
                         "pay": "/pay?card=4111%201111%201111%201111",
                         "payload": json.dumps({"ssn": "078-05-1120"}).replace("-", "\\u002d")})


# Configuration as platforms' APIs return it: each value named by a sibling, not by its key.
POD_ENV = [{"name": "DB_HOST", "value": "db7.internal"}, {"name": "DB_PASSWORD", "value": "hK9mQ2vL7pXwRt"},
           {"name": "LOG_LEVEL", "value": "debug"}]


async def config(request):
    kind = request.path_params["kind"]
    if kind == "pod":
        # Kubernetes' pod, as `kubectl get pod -o json` reads it.
        return JSONResponse({"kind": "Pod", "spec": {"containers": [{"name": "app", "env": POD_ENV}]}})
    if kind == "parameter":
        # AWS Systems Manager's GetParameter: the name, a pair between, then the value.
        return JSONResponse({"Parameter": {"Name": "/prod/billing/stripe_api_key", "Type": "SecureString",
                                           "Value": "rZ7tK2mQ9vXw4pLs", "Version": 4}})
    # The same pod as YAML (`-o yaml`).
    lines = ["kind: Pod", "spec:", "  containers:", "  - name: app", "    env:"]
    for pair in POD_ENV:
        lines += [f"    - name: {pair['name']}", f"      value: {pair['value']}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="application/yaml")


async def moved(request):
    # Redirects and paging links written with the upstream's own URL, as frameworks write them.
    own = str(request.base_url).rstrip("/")
    kind = request.path_params["kind"]
    if kind == "absolute":
        return Response(status_code=302, headers={"Location": f"{own}/api/v1/customers"})
    if kind == "path":
        return Response(status_code=303, headers={"Location": "/api/v1/customers/1"})
    if kind == "elsewhere":
        return Response(status_code=302, headers={"Location": "https://docs.example.com/billing"})
    return JSONResponse([], headers={"Link": f'<{own}/api/v1/customers?page=2>; rel="next", '
                                             f'</api/v1/customers?page=9>; rel="last"'})


async def echo_auth(request):
    # An upstream that writes back the credential it got encoded: in a link, and in base64.
    # (Not guarded: a connection may hold a credential this upstream does not know.)
    secret = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
    return JSONResponse({"link": f"/welcome?from={quote(secret, safe='')}",
                         "base64": base64.b64encode(secret).decode(),
                         "base64url": base64.urlsafe_b64encode(secret).decode(),
                         # Inside an encoded document: the secret falls anywhere among its bytes.
                         "state": base64.b64encode(b'{"user": "svc", "token": "' + secret + b'"}').decode(),
                         # As other encoders escape it: Python's quote() keeping '/', .NET's
                         # lower-case escapes, HTML, Go's JSON (<, >, & as \u00XX), hex.
                         "escaped": {
                             "quote": quote(secret, safe="/"),
                             "lower": re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe="")),
                             "html": html.escape(secret.decode()),
                             "go": secret.decode().replace("&", "\\u0026").replace("<", "\\u003c")
                                   .replace(">", "\\u003e"),
                             "hex": secret.hex()}})


async def set_cookie(request):
    # A session the upstream opens for whoever called it, and a header only sluice may write.
    # Session tokens some frameworks give in headers of their own (Spring Session, Keystone,
    # devise_token_auth): a bare UUID, a Fernet token, a password hint under a sensitive key.
    response = JSONResponse({"ok": True}, headers={
        "x-sluice-review": "approved", "x-auth-token": "3f2a9c1e-7b4d-4e8a-9c3f-2d1b0a9e8f7c",
        "x-subject-token": "gAAAAABlxyz-upstream-subject", "access-token": "wK3pZr8vQ1",
        "x-password-hint": "first pet", "x-request-id": "req-42"})
    response.set_cookie("session", "upstream-session-1")
    return response


async def declared(request):
    # Text in Shift_JIS, declared as the query's `type` says.
    body = "連絡先 carol@example.com".encode("shift_jis")
    return Response(body, headers={"content-type": request.query_params["type"]})


async def export_as(request):
    # A CSV export, or pretty-printed JSON, under the type the query's `type` says.
    if request.query_params.get("body") == "pretty":
        body = json.dumps({"user": {"name": "Ann", "password": "pretty-secret-7"}}, indent=2) + "\n"
    else:
        body = "name,password\nAnn,csv-secret-7\n"
    return Response(body.encode(), headers={"content-type": request.query_params["type"]})


async def cr_events(request):
    # Server-sent events whose lines end with a CR alone, as the format allows.
    return Response('data: hi\r\rdata: {"password":"cr-secret-9"}\r\r', media_type="text/event-stream")


async def ticks(request):
    # An event every 0.2 s for 15 s: a stream that is flowing when a test acts on it.
    async def stream():
        for i in range(75):
            yield f"data: {json.dumps({'tick': i})}\n\n"
            await asyncio.sleep(0.2)
    return StreamingResponse(stream(), media_type="text/event-stream")


# Every HTTP request the upstream received (method, path and query), so that a test can tell a
# refused request never reached it: GET /api/seen?mark=X lists those holding X.
SEEN: list[str] = []


async def seen(request):
    return JSONResponse([s for s in SEEN if request.query_params["mark"] in s])


def recorded(inner):
    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/api/seen":
            SEEN.append(f"{scope['method']} {scope['path']}?{scope['query_string'].decode()}")
        await inner(scope, receive, send)
    return app


async def slow(request):
    await asyncio.sleep(float(request.query_params.get("s", "5")))
    return JSONResponse({"slow": True})


async def admin(request):
    return JSONResponse({"admin": True})


async def graphql_endpoint(request):
    payload = await request.json()
    result = await graphql(SCHEMA, payload["query"], root_value=ROOT)
    out = {"data": result.data}
    if result.errors:
        out["errors"] = [str(e) for e in result.errors]
    return JSONResponse(out)


async def ws_echo(websocket: WebSocket):
    # Refuses a handshake without the upstream's own credential, then echoes each message with
    # a contact address the gateway has to mask.
    if websocket.headers.get("authorization") != f"Bearer {TOKEN}":
        await websocket.close(code=4401)
        return
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                # What a client's close frame brought: its code, and the reason sluice let through.
                SEEN.append(f"WS {websocket.url.path} closed {message.get('code')} reason={message.get('reason')!r}")
                return
            text = message.get("text")
            if text is None:
                text = message["bytes"].decode("utf-8", "replace")
            SEEN.append(f"WS {websocket.url.path} {text}")
            if text.startswith('{"op": "ticks"'):
                # Messages of its own, one every `every` seconds, while the client sends nothing.
                ask = json.loads(text)

                async def tick(n=ask["n"], every=ask["every"]):
                    for i in range(n):
                        await asyncio.sleep(every)
                        await websocket.send_text(json.dumps({"tick": i}))

                asyncio.ensure_future(tick())
                continue
            if text == "packed":
                # The export as a binary message, gzipped by the application (not by the socket).
                await websocket.send_bytes(gzip.compress(EXPORT))
                continue
            if text == "spell":
                # A key a few characters per message, as a model streaming its answer sends it.
                for piece in ["your key is sk-", "proj-Zq7vK2m", "9xWp4LtR8sNb", " ok"]:
                    await websocket.send_text(piece)
                continue
            await websocket.send_text(json.dumps({"echo": text, "contact": "ws@example.com", "password": "pw"}))
    except Exception:
        pass


async def graphql_ws(websocket: WebSocket):
    # The graphql-transport-ws protocol (graphql-ws), as far as a client needs it: an ack, and
    # each subscribe answered with its result and a complete. What arrives is noted in SEEN.
    if websocket.headers.get("authorization") != f"Bearer {TOKEN}":
        await websocket.close(code=4401)
        return
    await websocket.accept(subprotocol="graphql-transport-ws")
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            query = (message.get("payload") or {}).get("query", "")
            SEEN.append(f"WS {websocket.url.path} {message['type']} {query}")
            if message["type"] == "connection_init":
                await websocket.send_text(json.dumps({"type": "connection_ack"}))
            elif message["type"] == "ping":
                await websocket.send_text(json.dumps({"type": "pong"}))
            elif message["type"] == "subscribe":
                result = await graphql(SCHEMA, query, root_value=ROOT)
                await websocket.send_text(json.dumps({"id": message["id"], "type": "next",
                                                      "payload": {"data": result.data}}))
                await websocket.send_text(json.dumps({"id": message["id"], "type": "complete"}))
    except Exception:
        pass


app = recorded(Starlette(routes=[
    WebSocketRoute("/api/graphql", graphql_ws),
    WebSocketRoute("/api/subscriptions", graphql_ws),
    WebSocketRoute("/api/ws", ws_echo),
    WebSocketRoute("/api/ws-admin", ws_echo),
    WebSocketRoute("/api/ws-ops", ws_echo),
    Route("/api/v1/customers", guard(customers)),
    Route("/api/v1/customers/{id}", guard(customer), methods=["GET", "DELETE"]),
    Route("/api/v1/payments", guard(payments), methods=["POST"]),
    Route("/api/echo/{rest:path}", guard(echo), methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    Route("/api/gzip", guard(compressed)),
    Route("/api/debug-headers", guard(debug_headers)),
    Route("/api/text", guard(text)),
    Route("/api/json-as-text", guard(json_as_text)),
    Route("/api/encoded/{encoding}", guard(encoded)),
    Route("/api/two-encodings", guard(two_encodings)),
    Route("/api/events", guard(events)),
    Route("/api/token-stream", guard(token_stream)),
    Route("/api/release", guard(release)),
    Route("/api/ndjson", guard(ndjson)),
    Route("/api/chunked-json", guard(chunked_json)),
    Route("/api/big", guard(big)),
    Route("/api/slow", guard(slow)),
    Route("/api/wide/{kind}", guard(wide)),
    Route("/api/admin/users", guard(admin)),
    Route("/api/graphql", guard(graphql_endpoint), methods=["POST"]),
    Route("/api/report/{name}", guard(report)),
    Route("/api/echo-auth", echo_auth),
    Route("/api/moved/{kind}", guard(moved)),
    Route("/api/config/{kind}", guard(config)),
    Route("/api/packed/{kind}", guard(packed)),
    Route("/api/escaped/{kind}", guard(escaped)),
    Route("/api/set-cookie", guard(set_cookie)),
    Route("/api/declared", guard(declared)),
    Route("/api/export-as", guard(export_as)),
    Route("/api/cr-events", guard(cr_events)),
    Route("/api/ticks", guard(ticks)),
    Route("/api/seen", seen),
]))

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
