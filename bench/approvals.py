"""Approve → release: how long a statement held for a review (mode "wait") takes to reach the
client after an approver's API call. One sluice with a wait rule on pgbench_history inserts; for
each sample a psycopg client sends a distinct INSERT, the benchmark waits until sluice holds it,
then times from just before the approve request is sent to the moment the client's execute()
returns. Reported as p50 / p95 / p99 / max in milliseconds (goal: p99 ≤ 100 ms)."""

import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request

RULES = """
[[policy.rules]]
name = "held-history"
effect = "review"
kinds = ["insert"]
objects = ["pgbench_history"]
reason = "benchmark: every history insert is held"
review = { mode = "wait", approvers = ["approvers"], timeout = "60s" }
"""


def api(url, token, method, path, body=None):
    request = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def start(binary, work, pg_port, app_pw):
    work.mkdir(parents=True, exist_ok=True)
    config = work / "sluice.toml"
    config.write_text(f"""
[server]
state_dir = "state"
log_level = "warn"
[api]
listen = "127.0.0.1:0"
[postgres]
listen = "127.0.0.1:0"
tls = "disable"
[connections.bench]
host = "127.0.0.1"
port = {pg_port}
user = "app"
password = "env:BENCH_PG_PASSWORD"
tls = "disable"
{RULES}
""")
    env = dict(os.environ, BENCH_PG_PASSWORD=app_pw)

    def token(identity, groups):
        return subprocess.run([binary, "--config", str(config), "token", "create", "--identity", identity,
                               "--groups", groups], capture_output=True, text=True, check=True, env=env).stdout.strip()

    agent, approver = token("bench", "agents"), token("approver", "approvers")
    proc = subprocess.Popen([binary, "--config", str(config), "serve"], stdout=subprocess.PIPE,
                            stderr=open(work / "sluice.log", "w"), text=True, env=env)
    pg_line, api_line = proc.stdout.readline(), proc.stdout.readline()
    port = int(pg_line.rsplit(":", 1)[1])
    url = api_line.split("listening on", 1)[1].strip()
    dsn = f"postgresql://bench:{agent}@127.0.0.1:{port}/bench?sslmode=disable"
    return proc, dsn, url, approver


def held_review(url, token, deadline=10.0):
    """The one review a session is being held for right now."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for r in api(url, token, "GET", "/api/v1/reviews?status=pending")["reviews"]:
            if api(url, token, "GET", f"/api/v1/reviews/{r['id']}")["holding_sessions"] > 0:
                return r["id"]
        time.sleep(0.005)
    raise SystemExit("bench: no statement was held for review")


def measure(binary, work, pg_port, app_pw, samples):
    import psycopg

    proc, dsn, url, approver = start(binary, work, pg_port, app_pw)
    release_ms, approve_call_ms = [], []
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(samples):
                done = {}

                def run():
                    conn.execute(f"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                                 f"VALUES (1, 1, 1, {i}, now())")
                    done["at"] = time.perf_counter()

                t = threading.Thread(target=run)
                t.start()
                review = held_review(url, approver)
                started = time.perf_counter()
                api(url, approver, "POST", f"/api/v1/reviews/{review}/approve", {})
                approve_call_ms.append((time.perf_counter() - started) * 1000)
                t.join(timeout=30)
                if "at" not in done:
                    raise SystemExit("bench: an approved statement was not released")
                release_ms.append((done["at"] - started) * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return summary(release_ms) | {"approve_call_p50_ms": statistics.median(approve_call_ms)}


def summary(values):
    ordered = sorted(values)

    def pct(p):
        return ordered[max(0, min(len(ordered) - 1, round(p * len(ordered)) - 1))]

    return {"samples": len(ordered), "p50_ms": statistics.median(ordered), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "max_ms": ordered[-1]}
