"""Instructions per statement of sluice builds, counted by cachegrind: noise-free where the
wall-clock benchmark (run.py) is not. Each build serves sluice-full's configuration (run.py's
FULL_POLICY and FULL_MASKING, one worker thread) under `valgrind --tool=cachegrind`; pgbench runs
`-c 1 -t N1` and then `-t N2` against a fresh instance, and the difference of the two totals over
N2 - N1 is the cost of one statement, start-up and shutdown cancelled out. Repeated runs agree
within 1-4%.

    .venv/bin/python bench/instructions.py base=/tmp/old/sluice new=target/release/sluice
    CG_WORKLOADS="select-extended" .venv/bin/python bench/instructions.py ...
    .venv/bin/python bench/instructions.py rows0=target/release/sluice,result_rows=0 rows3=target/release/sluice

A build may carry `[recording]` settings after commas (`label=binary,key=value,...`).

Needs valgrind (apt-get install valgrind). CG_KEEP=DIR keeps each run's cachegrind output there."""

import os
import re
import shutil
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


def measure(spec, label, workload, n):
    """Instructions sluice-full (`spec`: a binary, then `[recording]` settings after commas)
    executed in all while pgbench ran `n` transactions."""
    binary, *recording = spec.split(",")
    out = b.work / f"{label}-{workload}-{n}.cachegrind"
    wrapper = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
    sluice = b.start_sluice(f"{label}-{workload}-{n}", True, binary, wrapper, server_extra="worker_threads = 1",
                            recording_extra="\n".join(recording))
    args = benchrun.WORKLOADS[workload]["args"]
    subprocess.run(["pgbench", "-n", "-c", "1", "-t", str(n), *args, sluice["dsn"]], check=True, capture_output=True)
    sluice["proc"].send_signal(signal.SIGTERM)
    sluice["proc"].wait(timeout=300)
    if os.environ.get("CG_KEEP"):
        # For `cg_annotate` (per function, or `--diff` of two builds).
        shutil.copy(out, Path(os.environ["CG_KEEP"]) / out.name)
    return int(re.search(r"^summary: (\d+)", out.read_text(), re.M).group(1))


binaries = dict(a.split("=", 1) for a in sys.argv[1:])
plan = [("select-simple", 500, 1500), ("select-extended", 500, 1500), ("10k-rows-simple", 5, 15)]
if os.environ.get("CG_WORKLOADS"):
    plan = [p for p in plan if p[0] in os.environ["CG_WORKLOADS"].split()]
try:
    for workload, n1, n2 in plan:
        for label, binary in binaries.items():
            lo = measure(binary, label, workload, n1)
            hi = measure(binary, label, workload, n2)
            print(f"{workload:16} {label:5} {(hi - lo) / (n2 - n1):12.0f} instructions per statement", flush=True)
finally:
    b.stop()
