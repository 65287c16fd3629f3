"""Instructions per statement of sluice builds, counted by cachegrind: noise-free where the
wall-clock benchmark (run.py) is not. Each build serves sluice-full's configuration (run.py's
FULL_POLICY and FULL_MASKING, one worker thread) under `valgrind --tool=cachegrind`; pgbench runs
`-c 1 -t N1` and then `-t N2` against a fresh instance, and the difference of the two totals over
N2 - N1 is the cost of one statement, start-up and shutdown cancelled out. Repeated runs agree
within 1-4%.

    .venv/bin/python bench/instructions.py base=/tmp/old/sluice new=target/release/sluice
    CG_WORKLOADS="select-extended" .venv/bin/python bench/instructions.py ...

Needs valgrind (apt-get install valgrind)."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as benchrun  # noqa: E402


class Args:
    scale = 1


b = benchrun.Bench(Args())
b.start_postgres()


def measure(binary, label, workload, n):
    d = b.work / f"{label}-{workload}-{n}"
    d.mkdir()
    config = d / "sluice.toml"
    config.write_text(f"""
[server]
state_dir = "state"
log_level = "warn"
worker_threads = 1
[api]
enabled = false
[postgres]
listen = "127.0.0.1:0"
tls = "disable"
[recording]
statements = true
[connections.bench]
host = "127.0.0.1"
port = {b.pg_port}
user = "app"
password = "env:BENCH_PG_PASSWORD"
tls = "disable"
{benchrun.FULL_POLICY + benchrun.FULL_MASKING}
""")
    env = dict(os.environ, BENCH_PG_PASSWORD=b.app_pw)
    token = subprocess.run([binary, "--config", str(config), "token", "create", "--identity", "bench"],
                           capture_output=True, text=True, check=True, env=env).stdout.strip()
    out = d / "cg.out"
    proc = subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
                             binary, "--config", str(config), "serve"], stdout=subprocess.PIPE,
                            stderr=open(d / "log", "w"), text=True, env=env)
    line = proc.stdout.readline()
    port = int(line.rsplit(":", 1)[1])
    dsn = f"postgresql://bench:{token}@127.0.0.1:{port}/bench?sslmode=disable"
    args = benchrun.WORKLOADS[workload]["args"]
    subprocess.run(["pgbench", "-n", "-c", "1", "-t", str(n), *args, dsn], check=True, capture_output=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    text = out.read_text()
    return int(re.search(r"^summary: (\d+)", text, re.M).group(1))

binaries = dict(a.split("=", 1) for a in sys.argv[1:])
plan = [("select-simple", 500, 1500), ("select-extended", 500, 1500), ("10k-rows-simple", 5, 15)]
if os.environ.get("CG_WORKLOADS"):
    plan = [p for p in plan if p[0] in os.environ["CG_WORKLOADS"].split()]
for workload, n1, n2 in plan:
    for label, binary in binaries.items():
        lo = measure(binary, label, workload, n1)
        hi = measure(binary, label, workload, n2)
        print(f"{workload:16} {label:5} {(hi - lo) / (n2 - n1):12.0f} instructions per statement", flush=True)
for p in b.procs:
    p.terminate()
subprocess.run([str(benchrun.ROOT / "scripts" / "pg.sh"), "stop", str(b.pg_dir)], capture_output=True)
