"""The HTTP benchmark: wrk against one upstream API, reached directly, through nginx as a reverse
proxy (Debian's package, holding the upstream's credential as sluice does: the peer operators
would deploy instead), through tokio-relay (crates/sluice/examples/plain_relay.rs: a TCP relay that
only copies bytes, the floor any tokio proxy starts from), through hyper-relay
(crates/sluice/examples/hyper_relay.rs: a reverse proxy on hyper, sluice's HTTP library, that only
forwards: the floor any proxy parsing HTTP with hyper starts from) and through sluice with policy, masking
and recording on. The upstream is nginx serving static JSON with a bearer-token check, so that it
is never the bottleneck. Workloads: a small GET (a ~100-byte JSON object) and a 64 KB JSON list
of customers whose e-mail addresses sluice masks (every string walked, the list re-written).

Runs are interleaved (for each workload, every target once per round); figures are medians, and
ratios are medians of per-round ratios. CPU per request is the proxy's own (user + system, from
/proc: every nginx process of the proxy instance, sluice's one process); latency added is the
target's p99 minus direct's p99 in the same round. Called by `bench/run.sh http`, which builds
sluice first."""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402
from run import ROOT, free_port, wait_port  # noqa: E402

UPSTREAM_TOKEN = "bench-upstream-secret"
WORKLOADS = {"small-get": "small.json", "json-64k": "large.json"}
TARGETS = ["direct", "nginx", "tokio-relay", "hyper-relay", "sluice-bare", "sluice"]

# sluice decides every request against a policy of the shape operators write (a default deny,
# reads allowed, an admin area off limits, payments reviewed), masks with every built-in detector
# and a sensitive key, and records every exchange. sluice-bare decides against an empty policy,
# masks nothing and records only sessions: what the relay costs before sluice's work.
SLUICE_POLICY = """
[policy]
default = "deny"
[[policy.rules]]
name = "reads"
effect = "allow"
methods = ["GET", "HEAD"]
paths = ["/**"]
[[policy.rules]]
name = "no-admin"
effect = "deny"
paths = ["/admin/**"]
[[policy.rules]]
name = "payments-reviewed"
effect = "review"
methods = ["POST"]
paths = ["/v1/payments"]
"""
BARE_SETTINGS = """
[recording]
statements = false
""" + run.BARE_MASKING


def cpu_seconds(pids):
    return sum(sum(run.cpu_seconds(pid)) for pid in pids)


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]



def large_json():
    """About 64 KB: customers with names, e-mail addresses and notes."""
    rows, size, i = [], 0, 0
    while size < 64 * 1024:
        row = {"id": i, "name": f"Customer {i}", "email": f"customer{i}@example.com", "status": "active",
               "plan": "business", "note": "renewal due next quarter; prefers e-mail contact"}
        rows.append(row)
        size += len(json.dumps(row)) + 2
        i += 1
    return json.dumps({"customers": rows}).encode()


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="sluice-http-bench-"))
        os.chmod(self.work, 0o755)
        self.procs = []

    def nginx(self, name, server_block, workers):
        d = self.work / name
        for sub in ("", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(d / sub, 0o777)
        conf = d / "nginx.conf"
        conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    {server_block}
}}
""")
        proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", str(d)],
                                stderr=open(d / "stderr.log", "w"))
        self.procs.append(proc)
        return proc

    def start_upstream(self):
        root = self.work / "upstream" / "www"
        (root / "api").mkdir(parents=True)
        (root / "api" / "small.json").write_text(
            '{"id": 1, "name": "Ann", "email": "ann@example.com", "status": "active", "plan": "business"}')
        (root / "api" / "large.json").write_bytes(large_json())
        for p in [root, root / "api", *(root / "api").iterdir()]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        self.upstream_port = free_port()
        # One worker: the same upstream for every target, never the bottleneck at these sizes.
        self.nginx("upstream", f"""
    server {{
        listen 127.0.0.1:{self.upstream_port};
        root {root};
        default_type application/json;
        location /api/ {{
            if ($http_authorization != "Bearer {UPSTREAM_TOKEN}") {{ return 401; }}
        }}
    }}""", workers=1)
        wait_port(self.upstream_port, "the upstream nginx")

    def start_proxy_nginx(self):
        port = free_port()
        proc = self.nginx("proxy", f"""
    upstream api {{ server 127.0.0.1:{self.upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location /billing/ {{
            proxy_pass http://api/api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {UPSTREAM_TOKEN}";
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_max_temp_file_size 0;
        }}
    }}""", workers="auto")
        wait_port(port, "the nginx reverse proxy")
        self.nginx_proxy = {"base": f"http://127.0.0.1:{port}/billing", "token": None,
                            "pids": lambda: [proc.pid, *children(proc.pid)]}

    def start_relay(self):
        binary = os.environ.get("RELAY_BIN") or str(Path(os.environ["SLUICE_BIN"]).parent / "examples" / "plain_relay")
        if not Path(binary).exists():
            raise SystemExit(f"bench: {binary} is missing; build it with `cargo build -p sluice --example plain_relay`")
        port = free_port()
        # Its complaints about connections wrk resets at the end of a run are not news.
        proc = subprocess.Popen([binary, f"127.0.0.1:{port}", f"127.0.0.1:{self.upstream_port}"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        if proc.stdout.readline().strip() != "listening":
            raise SystemExit("bench: plain_relay did not start")
        self.relay = {"base": f"http://127.0.0.1:{port}/api", "token": UPSTREAM_TOKEN, "pids": lambda: [proc.pid]}

    def start_hyper_relay(self):
        binary = str(Path(os.environ["SLUICE_BIN"]).parent / "examples" / "hyper_relay")
        if not Path(binary).exists():
            raise SystemExit(f"bench: {binary} is missing; build it with `cargo build -p sluice --example hyper_relay`")
        port = free_port()
        # Holding the upstream's credential, as nginx and sluice do; reached under the same prefix.
        proc = subprocess.Popen([binary, f"127.0.0.1:{port}", f"http://127.0.0.1:{self.upstream_port}/api", "/billing",
                                 UPSTREAM_TOKEN], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        if proc.stdout.readline().strip() != "listening":
            raise SystemExit("bench: hyper_relay did not start")
        self.hyper_relay = {"base": f"http://127.0.0.1:{port}/billing", "token": None, "pids": lambda: [proc.pid]}

    def start_sluice(self, name, bare):
        d = self.work / name
        d.mkdir()
        config = d / "sluice.toml"
        config.write_text(f"""
[server]
state_dir = "state"
log_level = "warn"
[api]
enabled = false
[postgres]
listen = "127.0.0.1:0"
tls = "disable"
[http]
listen = "127.0.0.1:0"
{BARE_SETTINGS if bare else ""}
[connections.billing]
protocol = "http"
url = "http://127.0.0.1:{self.upstream_port}/api"
password = "env:BENCH_UPSTREAM_TOKEN"
{"" if bare else 'sensitive_keys = ["password"]'}
{"" if bare else SLUICE_POLICY}
""")
        env = dict(os.environ, BENCH_UPSTREAM_TOKEN=UPSTREAM_TOKEN)
        proc, token = run.launch_sluice(os.environ["SLUICE_BIN"], config, env, d / "sluice.log")
        self.procs.append(proc)
        port = run.announced_port(proc, "http", d / "sluice.log")
        return {"base": f"http://127.0.0.1:{port}/billing", "token": token, "pids": lambda: [proc.pid]}

    def targets(self):
        return {
            "direct": {"base": f"http://127.0.0.1:{self.upstream_port}/api", "token": UPSTREAM_TOKEN, "pids": list},
            "nginx": self.nginx_proxy,
            "tokio-relay": self.relay,
            "hyper-relay": self.hyper_relay,
            "sluice-bare": self.sluice_bare,
            "sluice": self.sluice,
        }

    def check(self, name, target, path):
        """One request through the target before measuring: it must answer 200, and sluice's masked."""
        cmd = ["curl", "-sS", "-w", "\n%{http_code}", f"{target['base']}/{path}"]
        if target["token"]:
            cmd += ["-H", f"Authorization: Bearer {target['token']}"]
        body, _, status = subprocess.run(cmd, capture_output=True, text=True).stdout.rpartition("\n")
        if status != "200":
            raise SystemExit(f"bench: {name} answered {status} for {path}")
        if (name == "sluice") == ("@example.com" in body):
            raise SystemExit(f"bench: {name}'s answer to {path} is {'not ' if name == 'sluice' else ''}masked")

    def run_one(self, name, target, path):
        cmd = ["wrk", "-t", str(self.args.threads), "-c", str(self.args.connections), "-d", f"{self.args.duration}s",
               "--latency", f"{target['base']}/{path}"]
        if target["token"]:
            cmd[1:1] = ["-H", f"Authorization: Bearer {target['token']}"]
        pids = target["pids"]()
        before = cpu_seconds(pids)
        result = subprocess.run(cmd, capture_output=True, text=True)
        after = cpu_seconds(pids)
        if result.returncode != 0:
            raise SystemExit(f"bench: wrk failed against {name}:\n{result.stderr}")
        out = result.stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        p = {q: to_ms(v, u) for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
        entry = {"target": name, "rps": rps, "requests": requests, "p50_ms": p["50"], "p99_ms": p["99"],
                 "failed": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)}
        if pids:
            entry["proxy_cpu_us_per_request"] = (after - before) / max(requests, 1) * 1e6
        return entry

    def run(self):
        self.start_upstream()
        self.start_proxy_nginx()
        self.start_relay()
        self.start_hyper_relay()
        self.sluice_bare = self.start_sluice("sluice-bare", bare=True)
        self.sluice = self.start_sluice("sluice", bare=False)
        targets = self.targets()
        runs = []
        for workload in self.args.workloads:
            path = WORKLOADS[workload]
            for name, target in targets.items():
                self.check(name, target, path)
            for round_ in range(self.args.rounds):
                for name, target in targets.items():
                    r = self.run_one(name, target, path)
                    r.update(workload=workload, round=round_)
                    runs.append(r)
                    cpu = r.get("proxy_cpu_us_per_request")
                    print(f"bench: {workload:10} round {round_} {name:12} {r['rps']:10.0f} req/s  p99 {r['p99_ms']:.2f} ms"
                          + (f"  {cpu:.1f} µs CPU/request" if cpu else ""), file=sys.stderr)
        return runs

    def stop(self):
        run.stop_all(self.procs)
        shutil.rmtree(self.work, ignore_errors=True)


def summarise(runs):
    summary = {}
    for workload in dict.fromkeys(r["workload"] for r in runs):
        rows = [r for r in runs if r["workload"] == workload]
        rounds = {}
        for r in rows:
            rounds.setdefault(r["round"], {})[r["target"]] = r
        summary[workload] = {}
        for target in TARGETS:
            mine = [r for r in rows if r["target"] == target]
            entry = {
                "rps": statistics.median(r["rps"] for r in mine),
                "p50_ms": statistics.median(r["p50_ms"] for r in mine),
                "p99_ms": statistics.median(r["p99_ms"] for r in mine),
                "vs_direct": statistics.median(b[target]["rps"] / b["direct"]["rps"] for b in rounds.values()),
                "vs_nginx": statistics.median(b[target]["rps"] / b["nginx"]["rps"] for b in rounds.values()),
                "p99_added_ms": statistics.median(b[target]["p99_ms"] - b["direct"]["p99_ms"] for b in rounds.values()),
                "failed": sum(r["failed"] for r in mine),
            }
            cpu = [r["proxy_cpu_us_per_request"] for r in mine if "proxy_cpu_us_per_request" in r]
            if cpu:
                entry["proxy_cpu_us_per_request"] = statistics.median(cpu)
            summary[workload][target] = entry
    return summary


def markdown(summary, meta):
    lines = [
        f"Run {meta['when']} on {meta['machine']}; `{meta['command']}` ({meta['rounds']} rounds × "
        f"{meta['duration']} s per run, `wrk -t {meta['threads']} -c {meta['connections']}`). Medians; ratios "
        f"and latency added are medians of per-round figures.",
        "",
        "| workload | target | req/s | vs direct | vs nginx | p50 ms | p99 ms | p99 added ms | proxy CPU µs/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, targets in summary.items():
        for target, e in targets.items():
            cpu = f"{e['proxy_cpu_us_per_request']:.1f}" if "proxy_cpu_us_per_request" in e else "–"
            lines.append(f"| {workload} | {target} | {e['rps']:,.0f} | {e['vs_direct']:.2f} | {e['vs_nginx']:.2f} | "
                         f"{e['p50_ms']:.3f} | {e['p99_ms']:.3f} | {e['p99_added_ms']:+.3f} | {cpu} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round; checks that it all runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 1
    bench = Bench(args)
    try:
        runs = bench.run()
    finally:
        bench.stop()
    summary = summarise(runs)
    meta = run.run_meta("bench/run.sh http", rounds=args.rounds, duration=args.duration,
                        connections=args.connections, threads=args.threads)
    run.write_report(args.out, "http-latest", {"meta": meta, "summary": summary, "runs": runs}, markdown(summary, meta))
    failed = sum(r["failed"] for r in runs)
    if failed:
        raise SystemExit(f"bench: {failed} failed requests")


if __name__ == "__main__":
    main()
