"""Runs the benchmark matrix and reports it. Called by bench/run.sh, which builds sluice first.

Targets: direct PostgreSQL, pgbouncer (session pooling), tokio-relay (a relay on sluice's runtime
layout that only copies bytes, `crates/sluice/examples/plain_relay.rs`: the floor any tokio proxy
starts from on this machine), sluice bare (statement recording and
masking off, an empty SQL policy, so statements are still classified) and sluice full (everything
that exists turned on: recording, the policy in FULL_POLICY, masking with every detector and a
column rule, in FULL_MASKING). Workloads: pgbench -S in simple, extended and
prepared mode, and a 10,000-row result in simple and extended mode. Runs are interleaved (for each
workload, every target once per round), so a noisy neighbour hits all targets alike; figures are
reported per run and as medians of per-round ratios."""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import approvals

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")

WORKLOADS = {
    "select-simple": {"args": ["-S", "-M", "simple"], "statements": 1},
    "select-extended": {"args": ["-S", "-M", "extended"], "statements": 1},
    "select-prepared": {"args": ["-S", "-M", "prepared"], "statements": 1},
    # A new connection for every statement, as an agent running `psql -c` per command does.
    "connect-select": {"args": ["-S", "-M", "simple", "-C"], "statements": 1},
    "10k-rows-simple": {"args": ["-f", str(ROOT / "bench" / "large.sql"), "-M", "simple"], "statements": 1, "rows": 10000},
    "10k-rows-extended": {"args": ["-f", str(ROOT / "bench" / "large.sql"), "-M", "extended"], "statements": 1, "rows": 10000},
    # pgbench's TPC-B-like transaction without the teller and branch updates: BEGIN, UPDATE, SELECT,
    # INSERT, END. Its two changes are forwarded by sluice-full only once their decisions are
    # durable; sluice-batched records them in batches like reads (the cost of the guarantee).
    "write-tpcb-like": {"args": ["-N", "-M", "simple"], "statements": 5, "writes": True},
}
# The targets of every run, in the order each round visits them (`--baseline` adds baseline-full;
# write workloads add sluice-batched).
TARGETS = ["direct", "pgbouncer", "tokio-relay", "sluice-bare", "sluice-full"]

# sluice-full decides every statement against a policy of the shape operators write: a default
# deny, reads and writes allowed, a schema that is off limits, deletes under review. (sluice-bare
# classifies against an empty policy.)
FULL_POLICY = """
[policy]
default = "deny"
[[policy.rules]]
name = "reads-and-writes"
effect = "allow"
kinds = ["read", "set", "transaction", "insert", "update"]
[[policy.rules]]
name = "no-secrets"
effect = "deny"
objects = ["secret.*", "*.credentials"]
[[policy.rules]]
name = "deletes-reviewed"
effect = "review"
kinds = ["delete"]
"""


# sluice-full masks as operators configure it: every built-in detector on every text value (the
# 10,000-row workload scans each row's `filler`), and a column rule, so every result's columns are
# matched against the catalog. sluice-bare turns masking off.
FULL_MASKING = """
[[masking.columns]]
name = "teller-notes"
columns = ["public.pgbench_tellers.filler"]
"""
BARE_MASKING = """
[masking]
enabled = false
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=15):
    """Waits until something listens on 127.0.0.1:`port`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {what} did not start")


def stop_all(procs):
    """SIGTERM to every process still running, then a kill for any that does not end in 15 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def run_meta(command, **settings):
    """When, where and how a run was made, for its report."""
    return {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.release()}",
        "command": command + " " + " ".join(sys.argv[1:]),
        **settings,
    }


def write_report(out, name, report, table):
    """The report as NAME.json and its table as NAME.md in `out`; the table printed too."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(table)
    print(table)


def cpu_seconds(pid):
    """The process's CPU time so far, (user, system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def peak_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def launch_sluice(binary, config, env, log, wrapper=()):
    """Mints a token for identity `bench` and starts `sluice serve` on `config` (through
    `wrapper`, its log in `log`): the process, whose stdout announces its listeners, and the token."""
    token = subprocess.run([binary, "--config", str(config), "token", "create", "--identity", "bench"],
                           capture_output=True, text=True, check=True, env=env).stdout.strip()
    proc = subprocess.Popen([*wrapper, binary, "--config", str(config), "serve"], stdout=subprocess.PIPE,
                            stderr=open(log, "w"), text=True, env=env)
    return proc, token


def announced_port(proc, listener, log):
    """The port sluice announces for `listener` (`postgres`, `http`) on its stdout."""
    for line in proc.stdout:
        if f"{listener} listening on" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"bench: sluice did not start its {listener} listener:\n{Path(log).read_text()[-2000:]}")


def as_postgres(cmd):
    return ["su", "postgres", "-s", "/bin/sh", "-c", cmd] if os.geteuid() == 0 else ["sh", "-c", cmd]


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        os.chmod(self.work, 0o755)
        self.procs = []

    def start_postgres(self):
        self.pg_dir = self.work / "pg"
        self.pg_port = free_port()
        subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start", str(self.pg_dir), str(self.pg_port)], check=True)
        env = dict(line.split("=", 1) for line in (self.pg_dir / "passwords.env").read_text().split())
        self.app_pw = env["PG_APP_PASSWORD"]
        self.super_pw = env["PG_SUPERUSER_PASSWORD"]
        su = f"postgresql://postgres:{self.super_pw}@127.0.0.1:{self.pg_port}/postgres?sslmode=disable"
        subprocess.run(["psql", su, "-qXc", "CREATE DATABASE bench OWNER app"], check=True)
        print(f"bench: pgbench -i -s {self.args.scale}", file=sys.stderr)
        subprocess.run(["pgbench", "-i", "-q", "-s", str(self.args.scale), "--unlogged-tables",
                        f"postgresql://app:{self.app_pw}@127.0.0.1:{self.pg_port}/bench?sslmode=disable"],
                       check=True, capture_output=True)

    def start_pgbouncer(self):
        d = self.work / "pgbouncer"
        d.mkdir()
        self.bouncer_port = free_port()
        (d / "userlist.txt").write_text(f'"app" "{self.app_pw}"\n')
        (d / "pgbouncer.ini").write_text(f"""
[databases]
bench = host=127.0.0.1 port={self.pg_port} dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.bouncer_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {d}/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
pidfile = {d}/pgbouncer.pid
logfile = {d}/pgbouncer.log
""")
        if os.geteuid() == 0:
            shutil.chown(d, "postgres")
            for f in d.iterdir():
                shutil.chown(f, "postgres")
        proc = subprocess.Popen(as_postgres(f"exec pgbouncer {d}/pgbouncer.ini"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        pidfile = d / "pgbouncer.pid"
        deadline = time.time() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()):
            if time.time() > deadline:
                raise SystemExit("bench: pgbouncer did not start")
            time.sleep(0.05)
        self.bouncer_pid = int(pidfile.read_text())

    def start_sluice(self, name, record_statements, binary=None, wrapper=(), server_extra="", batched=False,
                     recording_extra=""):
        """sluice bare or full (`record_statements`) on the bench database, started through
        `wrapper` (a command line prefix such as valgrind's) with `server_extra` in `[server]` and
        `recording_extra` in `[recording]`; `batched` (and bare) records changes in batches
        instead of before forwarding them."""
        d = self.work / name
        d.mkdir()
        config = d / "sluice.toml"
        config.write_text(f"""
[server]
state_dir = "state"
log_level = "warn"
{server_extra}
[api]
enabled = false
[postgres]
listen = "127.0.0.1:0"
tls = "disable"
[recording]
statements = {str(record_statements).lower()}
{"changes_before_forwarding = false" if batched or not record_statements else ""}
{recording_extra}
[connections.bench]
host = "127.0.0.1"
port = {self.pg_port}
user = "app"
password = "env:BENCH_PG_PASSWORD"
tls = "disable"
{FULL_POLICY + FULL_MASKING if record_statements else BARE_MASKING}
""")
        env = dict(os.environ, BENCH_PG_PASSWORD=self.app_pw)
        proc, token = launch_sluice(binary or os.environ["SLUICE_BIN"], config, env, d / "sluice.log", wrapper)
        self.procs.append(proc)
        port = announced_port(proc, "postgres", d / "sluice.log")
        return {"dsn": f"postgresql://bench:{token}@127.0.0.1:{port}/bench?sslmode=disable", "pid": proc.pid,
                "proc": proc, "dir": d}

    def start_relay(self):
        """The floor: crates/sluice/examples/plain_relay.rs, built beside the sluice binary."""
        binary = os.environ.get("RELAY_BIN") or str(Path(os.environ["SLUICE_BIN"]).parent / "examples" / "plain_relay")
        if not Path(binary).exists():
            raise SystemExit(f"bench: {binary} is missing; build it with `cargo build -p sluice --example plain_relay`")
        port = free_port()
        proc = subprocess.Popen([binary, f"127.0.0.1:{port}", f"127.0.0.1:{self.pg_port}"], stdout=subprocess.PIPE,
                                text=True)
        self.procs.append(proc)
        if proc.stdout.readline().strip() != "listening":
            raise SystemExit("bench: plain_relay did not start")
        return {"dsn": f"postgresql://app:{self.app_pw}@127.0.0.1:{port}/bench?sslmode=disable", "pid": proc.pid}

    def targets(self):
        """TARGETS by name (and baseline-full with --baseline)."""
        return {
            "direct": {"dsn": f"postgresql://app:{self.app_pw}@127.0.0.1:{self.pg_port}/bench?sslmode=disable", "pid": None},
            "pgbouncer": {"dsn": f"postgresql://app:{self.app_pw}@127.0.0.1:{self.bouncer_port}/bench?sslmode=disable",
                          "pid": self.bouncer_pid},
            "tokio-relay": self.relay,
            "sluice-bare": self.sluice_bare,
            "sluice-full": self.sluice_full,
            **({"sluice-batched": self.sluice_batched} if self.sluice_batched else {}),
            **({"baseline-full": self.baseline_full} if self.args.baseline else {}),
        }

    def run_one(self, workload, target):
        spec = WORKLOADS[workload]
        logdir = self.work / "logs" / f"{workload}-{target['name']}-{time.monotonic_ns()}"
        logdir.mkdir(parents=True)
        cmd = ["pgbench", "-n", "-c", str(self.args.clients), "-j", str(self.args.clients), "-T",
               str(self.args.duration), "-l", "--log-prefix", str(logdir / "tx"), *spec["args"], target["dsn"]]
        pid = target["pid"]
        cpu_before = cpu_seconds(pid) if pid else None
        result = subprocess.run(cmd, capture_output=True, text=True)
        cpu_after = cpu_seconds(pid) if pid else None
        if result.returncode != 0:
            raise SystemExit(f"bench: pgbench failed against {target['name']}:\n{result.stderr}")
        tps = float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))
        processed = int(re.search(r"number of transactions actually processed: (\d+)", result.stdout).group(1))
        failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
        latencies = []
        for f in logdir.iterdir():
            for line in f.read_text().splitlines():
                parts = line.split()
                if len(parts) > 2:
                    latencies.append(int(parts[2]))
        shutil.rmtree(logdir, ignore_errors=True)
        latencies.sort()
        statements = processed * spec["statements"]
        out = {
            "workload": workload, "target": target["name"], "tps": tps, "transactions": processed,
            "failed": int(failed.group(1)) if failed else 0,
            "latency_mean_ms": statistics.fmean(latencies) / 1000 if latencies else None,
            "latency_p99_ms": latencies[int(len(latencies) * 0.99) - 1] / 1000 if latencies else None,
        }
        if "rows" in spec:
            out["rows_per_s"] = tps * spec["rows"]
        if pid and statements:
            (user_before, sys_before), (user_after, sys_after) = cpu_before, cpu_after
            out["proxy_cpu_s"] = (user_after - user_before) + (sys_after - sys_before)
            out["proxy_cpu_us_per_query"] = out["proxy_cpu_s"] / statements * 1e6
            out["proxy_user_us_per_query"] = (user_after - user_before) / statements * 1e6
            out["proxy_sys_us_per_query"] = (sys_after - sys_before) / statements * 1e6
        return out

    def run(self):
        self.start_postgres()
        self.start_pgbouncer()
        self.relay = self.start_relay()
        self.sluice_bare = self.start_sluice("sluice-bare", record_statements=False)
        self.sluice_full = self.start_sluice("sluice-full", record_statements=True)
        self.sluice_batched = None
        if any(WORKLOADS[w].get("writes") for w in self.args.workloads):
            self.sluice_batched = self.start_sluice("sluice-batched", record_statements=True, batched=True)
        if self.args.baseline:
            self.baseline_full = self.start_sluice("baseline-full", record_statements=True, binary=self.args.baseline)
        targets = self.targets()
        for name, t in targets.items():
            t["name"] = name
        runs = []
        for workload in self.args.workloads:
            for round_ in range(self.args.rounds):
                for name in targets:
                    if name == "sluice-batched" and not WORKLOADS[workload].get("writes"):
                        continue
                    r = self.run_one(workload, targets[name])
                    r["round"] = round_
                    runs.append(r)
                    print(f"bench: {workload:18} round {round_} {name:12} {r['tps']:10.1f} tps"
                          + (f"  {r['proxy_cpu_us_per_query']:.1f} µs CPU/query" if r.get("proxy_cpu_us_per_query") else ""),
                          file=sys.stderr)
        rss = {name: peak_rss_kib(targets[name]["pid"]) for name in targets if name != "direct"}
        approval = approvals.measure(os.environ["SLUICE_BIN"], self.work / "sluice-approvals", self.pg_port, self.app_pw,
                                     self.args.approval_samples)
        print(f"bench: approve → release p50 {approval['p50_ms']:.1f} ms, p99 {approval['p99_ms']:.1f} ms", file=sys.stderr)
        return runs, rss, approval

    def stop(self):
        stop_all(self.procs)
        if hasattr(self, "pg_dir"):
            subprocess.run([str(ROOT / "scripts" / "pg.sh"), "stop", str(self.pg_dir)], check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def summarise(runs, rounds):
    """Medians per workload and target, with per-round ratios to direct and to pgbouncer."""
    summary = {}
    for workload in dict.fromkeys(r["workload"] for r in runs):
        rows = [r for r in runs if r["workload"] == workload]
        by_round = {}
        for r in rows:
            by_round.setdefault(r["round"], {})[r["target"]] = r
        summary[workload] = {}
        for target in dict.fromkeys(r["target"] for r in rows):
            mine = [r for r in rows if r["target"] == target]
            entry = {
                "tps": statistics.median(r["tps"] for r in mine),
                "latency_mean_ms": statistics.median(r["latency_mean_ms"] for r in mine),
                "latency_p99_ms": statistics.median(r["latency_p99_ms"] for r in mine),
                "vs_direct": statistics.median(b[target]["tps"] / b["direct"]["tps"] for b in by_round.values()),
                "vs_pgbouncer": statistics.median(b[target]["tps"] / b["pgbouncer"]["tps"] for b in by_round.values()),
                "failed": sum(r["failed"] for r in mine),
            }
            if "rows_per_s" in mine[0]:
                entry["rows_per_s"] = statistics.median(r["rows_per_s"] for r in mine)
            for key in ("proxy_cpu_us_per_query", "proxy_user_us_per_query", "proxy_sys_us_per_query"):
                values = [r[key] for r in mine if key in r]
                if values:
                    entry[key] = statistics.median(values)
            if "proxy_cpu_us_per_query" in entry:
                entry["proxy_cpu_s_per_1000"] = entry["proxy_cpu_us_per_query"] / 1000
            summary[workload][target] = entry
    return summary


def markdown(summary, rss, meta, approval):
    lines = [
        f"Run {meta['when']} on {meta['machine']}; `{meta['command']}` "
        f"({meta['rounds']} rounds × {meta['duration']} s per run, `-c {meta['clients']} -j {meta['clients']}`, "
        f"scale {meta['scale']}). Medians; ratios are medians of per-round ratios.",
        "",
        "| workload | target | TPS | vs direct | vs pgbouncer | mean ms | p99 ms | proxy CPU µs/query | user + sys µs | rows/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, targets in summary.items():
        for target, e in targets.items():
            cpu = f"{e['proxy_cpu_us_per_query']:.1f}" if "proxy_cpu_us_per_query" in e else "–"
            split = (f"{e['proxy_user_us_per_query']:.1f} + {e['proxy_sys_us_per_query']:.1f}"
                     if "proxy_user_us_per_query" in e else "–")
            rows = f"{e['rows_per_s']:,.0f}" if "rows_per_s" in e else "–"
            lines.append(
                f"| {workload} | {target} | {e['tps']:,.0f} | {e['vs_direct']:.2f} | {e['vs_pgbouncer']:.2f} | "
                f"{e['latency_mean_ms']:.3f} | {e['latency_p99_ms']:.3f} | {cpu} | {split} | {rows} |"
            )
    lines += ["", "Peak RSS: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in rss.items()), ""]
    lines += [
        f"Approve → release ({approval['samples']} statements held in `wait` mode, from the approve API call to the "
        f"client's result): p50 {approval['p50_ms']:.1f} ms, p95 {approval['p95_ms']:.1f} ms, "
        f"p99 {approval['p99_ms']:.1f} ms, max {approval['max_ms']:.1f} ms (the approve call alone: p50 "
        f"{approval['approve_call_p50_ms']:.1f} ms).",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round at scale 1; checks that it all runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--baseline", metavar="SLUICE_BINARY",
                        help="another sluice build (e.g. the one before a change), run as target baseline-full with "
                             "sluice-full's settings in the same interleaved rounds: an A/B")
    parser.add_argument("--approval-samples", type=int, default=200, help="held statements approved for approve → release")
    parser.add_argument("--update-benchmarks-md", action="store_true",
                        help="replace the results section of BENCHMARKS.md with this run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.scale, args.approval_samples = 1, 1, 1, 5
    bench = Bench(args)
    try:
        runs, rss, approval = bench.run()
    finally:
        bench.stop()
    summary = summarise(runs, args.rounds)
    meta = run_meta("bench/run.sh", rounds=args.rounds, duration=args.duration, clients=args.clients,
                    scale=args.scale)
    failed = sum(r["failed"] for r in runs)
    report = {"meta": meta, "summary": summary, "peak_rss_kib": rss, "approval_release": approval, "runs": runs}
    table = markdown(summary, rss, meta, approval)
    write_report(args.out, "latest", report, table)
    if args.update_benchmarks_md:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text()
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        before, _, rest = text.partition(start)
        _, _, after = rest.partition(end)
        path.write_text(f"{before}{start}\n{table}\n{end}{after}")
    if failed:
        raise SystemExit(f"bench: {failed} failed transactions")


if __name__ == "__main__":
    main()
