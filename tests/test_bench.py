"""The benchmark's --quick mode, so the benchmark never rots. Nothing here is about speed: it checks
that every target and workload ran, without failures, and that the report has every figure."""

import json
import os
import subprocess
import sys

from conftest import ROOT, sluice_binary


def test_benchmark_quick_mode_runs_every_target_and_workload(tmp_path):
    env = dict(os.environ, SLUICE_BIN=str(sluice_binary()))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    summary = report["summary"]
    assert set(summary) == {"select-simple", "select-extended", "select-prepared", "connect-select", "10k-rows-simple",
                            "10k-rows-extended", "write-tpcb-like"}
    for workload, targets in summary.items():
        # The write workload also runs sluice recording changes in batches, for the cost of recording
        # them before they are forwarded.
        batched = {"sluice-batched"} if workload == "write-tpcb-like" else set()
        assert set(targets) == {"direct", "pgbouncer", "tokio-relay", "sluice-bare", "sluice-full"} | batched
        for name, entry in targets.items():
            assert entry["failed"] == 0
            assert entry["tps"] > 0 and entry["latency_p99_ms"] > 0
            if name != "direct":
                assert entry["proxy_cpu_us_per_query"] > 0
                assert entry["proxy_user_us_per_query"] >= 0 and entry["proxy_sys_us_per_query"] >= 0
            if workload.startswith("10k"):
                assert entry["rows_per_s"] > 0
    assert all(v > 0 for v in report["peak_rss_kib"].values())
    approval = report["approval_release"]
    assert approval["samples"] == 5 and 0 < approval["p50_ms"] <= approval["p99_ms"] <= approval["max_ms"]
    assert set(report["peak_rss_kib"]) == {"pgbouncer", "tokio-relay", "sluice-bare", "sluice-full", "sluice-batched"}
    assert "| select-simple | sluice-full |" in (tmp_path / "latest.md").read_text()
    assert "Approve → release" in (tmp_path / "latest.md").read_text()


def test_http_benchmark_quick_mode_runs_every_target_and_workload(tmp_path):
    env = dict(os.environ, SLUICE_BIN=str(sluice_binary()))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "http_bench.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "http-latest.json").read_text())
    summary = report["summary"]
    assert set(summary) == {"small-get", "json-64k"}
    for workload, targets in summary.items():
        assert set(targets) == {"direct", "nginx", "tokio-relay", "hyper-relay", "sluice-bare", "sluice"}
        for name, entry in targets.items():
            assert entry["failed"] == 0
            assert entry["rps"] > 0 and entry["p99_ms"] > 0
            if name != "direct":
                assert entry["proxy_cpu_us_per_request"] > 0
    assert "| json-64k | sluice |" in (tmp_path / "http-latest.md").read_text()


def test_ssh_benchmark_quick_mode_runs_every_target(tmp_path):
    env = dict(os.environ, SLUICE_BIN=str(sluice_binary()))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "ssh_bench.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ssh-latest.json").read_text())["summary"]
    assert set(summary) == {"direct", "jump-host", "sluice"}
    for name, entry in summary.items():
        assert entry["commands"] == 2 and entry["median_ms"] > 0
        if name != "direct":
            assert entry["proxy_cpu_ms_per_command"] > 0
    copies = json.loads((tmp_path / "ssh-latest.json").read_text())["scp"]
    assert set(copies) == {"direct", "jump-host", "sluice"}
    for name, entry in copies.items():
        assert entry["copies"] == 1 and entry["median_mib_per_s"] > 0
        if name != "direct":
            assert entry["proxy_cpu_ms_per_mib"] > 0
    assert "| sluice |" in (tmp_path / "ssh-latest.md").read_text()
