"""The SSH benchmark: short commands (`ssh HOST true`, one connection each, as an agent runs them)
against one OpenSSH sshd on 127.0.0.1, reached directly, through an OpenSSH jump host (a second
sshd, `ssh -J`: the peer operators would deploy instead) and through sluice with policy, masking
and recording on. Rounds are interleaved (every target once per round, `--per-round` commands
each); figures are medians of the per-command wall times, and ratios are medians of per-round
ratios to the jump host. CPU per command is the proxy's own: sluice's process, or the jump
sshd with the children it forked (counted once reaped). Called by `bench/run.sh ssh`.

The agent authenticates to the host and to the jump host with a key, and to sluice with its token
through SSH_ASKPASS (sluice has no per-identity keys yet): the askpass script's fork and exec are in
sluice's figures.

Then the throughput of one large file copied with `scp HOST:FILE /dev/null` (over SFTP, as OpenSSH
9's scp does) by the same three routes, interleaved over `--scp-rounds` rounds: MiB/s and the
proxy's CPU per MiB, the ratio against the jump host per round."""

import argparse
import getpass
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402
from run import ROOT, free_port, wait_port  # noqa: E402

TARGETS = ["direct", "jump-host", "sluice"]

POLICY = """
[[policy.rules]]
name = "probes"
effect = "allow"
programs = ["true", "uptime", "hostname"]
"""


def cpu_with_children(pid):
    """The CPU seconds of `pid` and of its children once reaped: it waits (up to 5 s) for the
    children of a connection that just ended to be reaped, or their time would be missed."""
    deadline = time.monotonic() + 5
    while children(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children(pid):
    """The pids whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="sluice-ssh-bench-"))
        os.chmod(self.work, 0o755)
        self.procs = []
        self.user = getpass.getuser()

    def keygen(self, name):
        path = self.work / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        return path

    def sshd(self, name, forwarding):
        """An sshd (scripts/sshd.sh) letting in the client's and sluice's keys: its process, port
        and host key."""
        d = self.work / name
        port = free_port()
        cmd = [str(ROOT / "scripts" / "sshd.sh"), str(d), str(port), str(self.work / "authorized_keys")]
        proc = subprocess.Popen(cmd + (["forwarding"] if forwarding else []))
        self.procs.append(proc)
        wait_port(port, f"sshd {name}")
        return proc, port, (d / "host_key.pub").read_text().strip()

    def start(self):
        self.client_key = self.keygen("client_key")
        sluice_key = self.keygen("sluice_key")
        (self.work / "authorized_keys").write_text(
            Path(f"{self.client_key}.pub").read_text() + Path(f"{sluice_key}.pub").read_text())
        _, self.host_port, host_key = self.sshd("host", forwarding=False)
        self.jump, self.jump_port, _ = self.sshd("jump", forwarding=True)
        d = self.work / "sluice"
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
[ssh]
listen = "127.0.0.1:0"
[connections.web1]
protocol = "ssh"
default = "deny"
host = "127.0.0.1"
port = {self.host_port}
user = "{self.user}"
host_key = "{host_key}"
password = "file:{sluice_key}"
{POLICY}
[[policy.rules]]
name = "downloads"
effect = "allow"
operations = ["read"]
files = ["{self.work}/*"]
""")
        self.big = self.work / "big.bin"
        with open(self.big, "wb") as f:
            for _ in range(self.args.scp_mib):
                f.write(os.urandom(1 << 20))
        proc, self.token = run.launch_sluice(os.environ["SLUICE_BIN"], config, dict(os.environ), d / "sluice.log")
        self.procs.append(proc)
        self.sluice = proc
        run.announced_port(proc, "postgres", d / "sluice.log")
        self.sluice_port = run.announced_port(proc, "ssh", d / "sluice.log")
        askpass = self.work / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{self.token}'\n")
        askpass.chmod(0o700)
        self.askpass = askpass

    def route(self, target):
        """How a client reaches the host by `target`: its options, the port and user@host."""
        common = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
                  "LogLevel=ERROR", "-o", "BatchMode=no", "-o", f"KexAlgorithms={self.args.kex}"]
        if target == "sluice":
            return ([*common, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"],
                    self.sluice_port, "bench+web1@127.0.0.1")
        keyed = [*common, "-o", "PasswordAuthentication=no", "-o", "IdentitiesOnly=yes", "-i", str(self.client_key)]
        if target == "jump-host":
            # ProxyJump's inner ssh gets the same options through ProxyCommand.
            inner = " ".join(["ssh", *keyed, "-W", "%h:%p", "-p", str(self.jump_port), f"{self.user}@127.0.0.1"])
            return [*keyed, "-o", f"ProxyCommand={inner}"], self.host_port, f"{self.user}@127.0.0.1"
        return keyed, self.host_port, f"{self.user}@127.0.0.1"

    def command(self, target):
        options, port, where = self.route(target)
        return ["ssh", *options, "-p", str(port), where, "true"]

    def scp(self, target):
        """Copies the large file from the host by `target`: seconds."""
        options, port, where = self.route(target)
        started = time.perf_counter()
        r = subprocess.run(["scp", "-q", *options, "-P", str(port), f"{where}:{self.big}", "/dev/null"],
                           env=self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - started
        if r.returncode != 0:
            raise SystemExit(f"bench: scp through {target} failed ({r.returncode}): {r.stderr[-500:]}")
        return elapsed

    def env(self):
        return dict(os.environ, SSH_ASKPASS=str(self.askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY="none")

    def once(self, target):
        started = time.perf_counter()
        r = subprocess.run(self.command(target), env=self.env(), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=60)
        elapsed = time.perf_counter() - started
        if r.returncode != 0:
            raise SystemExit(f"bench: `ssh … true` through {target} failed ({r.returncode}): {r.stderr[-500:]}")
        return elapsed

    def cpu(self, target):
        if target == "sluice":
            return sum(run.cpu_seconds(self.sluice.pid))
        if target == "jump-host":
            return cpu_with_children(self.jump.pid)
        return None

    def run(self):
        self.start()
        for target in TARGETS:
            self.once(target)
        runs = []
        for round_ in range(self.args.rounds):
            for target in TARGETS:
                before = self.cpu(target)
                times = [self.once(target) for _ in range(self.args.per_round)]
                after = self.cpu(target)
                entry = {"target": target, "round": round_, "ms": [t * 1000 for t in times]}
                if before is not None:
                    entry["proxy_cpu_ms_per_command"] = (after - before) / len(times) * 1000
                runs.append(entry)
                print(f"bench: round {round_} {target:10} median {statistics.median(entry['ms']):.1f} ms"
                      + (f"  {entry['proxy_cpu_ms_per_command']:.2f} ms CPU/command" if before is not None else ""),
                      file=sys.stderr)
        copies = []
        for round_ in range(self.args.scp_rounds):
            for target in TARGETS:
                before = self.cpu(target)
                seconds = self.scp(target)
                after = self.cpu(target)
                entry = {"target": target, "round": round_, "seconds": seconds,
                         "mib_per_s": self.args.scp_mib / seconds}
                if before is not None:
                    entry["proxy_cpu_ms_per_mib"] = (after - before) / self.args.scp_mib * 1000
                copies.append(entry)
                print(f"bench: scp round {round_} {target:10} {entry['mib_per_s']:.0f} MiB/s"
                      + (f"  {entry['proxy_cpu_ms_per_mib']:.2f} ms CPU/MiB" if before is not None else ""),
                      file=sys.stderr)
        return runs, copies

    def stop(self):
        run.stop_all(self.procs)
        shutil.rmtree(self.work, ignore_errors=True)


def summarise(runs):
    summary = {}
    rounds = {}
    for r in runs:
        rounds.setdefault(r["round"], {})[r["target"]] = r
    for target in TARGETS:
        mine = [r for r in runs if r["target"] == target]
        all_ms = [ms for r in mine for ms in r["ms"]]
        entry = {
            "commands": len(all_ms),
            "median_ms": statistics.median(all_ms),
            "p90_ms": statistics.quantiles(all_ms, n=10)[-1] if len(all_ms) >= 10 else max(all_ms),
            "vs_jump_host": statistics.median(
                statistics.median(b[target]["ms"]) / statistics.median(b["jump-host"]["ms"]) for b in rounds.values()),
        }
        cpu = [r["proxy_cpu_ms_per_command"] for r in mine if "proxy_cpu_ms_per_command" in r]
        if cpu:
            entry["proxy_cpu_ms_per_command"] = statistics.median(cpu)
        summary[target] = entry
    return summary


def summarise_copies(copies):
    rounds = {}
    for c in copies:
        rounds.setdefault(c["round"], {})[c["target"]] = c
    summary = {}
    for target in TARGETS:
        mine = [c for c in copies if c["target"] == target]
        entry = {
            "copies": len(mine),
            "median_mib_per_s": statistics.median(c["mib_per_s"] for c in mine),
            "vs_jump_host": statistics.median(b[target]["mib_per_s"] / b["jump-host"]["mib_per_s"]
                                              for b in rounds.values()),
        }
        cpu = [c["proxy_cpu_ms_per_mib"] for c in mine if "proxy_cpu_ms_per_mib" in c]
        if cpu:
            entry["proxy_cpu_ms_per_mib"] = statistics.median(cpu)
        summary[target] = entry
    return summary


def markdown(summary, copies, meta):
    lines = [
        f"Run {meta['when']} on {meta['machine']}; `{meta['command']}` ({meta['rounds']} rounds × "
        f"{meta['per_round']} commands per target, interleaved; key exchange {meta['kex']} on every hop). Medians; "
        "the ratio is the median of per-round ratios.",
        "",
        "| target | commands | median ms | p90 ms | vs jump host | proxy CPU ms/command |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target, e in summary.items():
        cpu = f"{e['proxy_cpu_ms_per_command']:.2f}" if "proxy_cpu_ms_per_command" in e else "–"
        lines.append(f"| {target} | {e['commands']} | {e['median_ms']:.1f} | {e['p90_ms']:.1f} | "
                     f"{e['vs_jump_host']:.2f} | {cpu} |")
    lines += [
        "",
        f"`scp HOST:FILE /dev/null` of {meta['scp_mib']} MiB ({meta['scp_rounds']} rounds, interleaved):",
        "",
        "| target | copies | median MiB/s | vs jump host | proxy CPU ms/MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for target, e in copies.items():
        cpu = f"{e['proxy_cpu_ms_per_mib']:.2f}" if "proxy_cpu_ms_per_mib" in e else "–"
        lines.append(f"| {target} | {e['copies']} | {e['median_mib_per_s']:.0f} | {e['vs_jump_host']:.2f} | {cpu} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round; checks that it all runs")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=20)
    # Every hop the same key exchange: OpenSSH 9.2 prefers the post-quantum sntrup761x25519, which
    # russh (sluice's side) does not offer, and it alone costs more than the rest of a short command.
    parser.add_argument("--kex", default="curve25519-sha256")
    parser.add_argument("--scp-mib", type=int, default=1024, help="size of the file scp copies")
    parser.add_argument("--scp-rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.per_round, args.scp_mib, args.scp_rounds = 1, 2, 16, 1
    bench = Bench(args)
    try:
        runs, copies = bench.run()
    finally:
        bench.stop()
    summary, copied = summarise(runs), summarise_copies(copies)
    meta = run.run_meta("bench/run.sh ssh", rounds=args.rounds, per_round=args.per_round, kex=args.kex,
                        scp_mib=args.scp_mib, scp_rounds=args.scp_rounds)
    report = {"meta": meta, "summary": summary, "runs": runs, "scp": copied, "copies": copies}
    run.write_report(args.out, "ssh-latest", report, markdown(summary, copied, meta))


if __name__ == "__main__":
    main()
