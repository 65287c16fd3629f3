"""The supply-chain check of the test command (scripts/audit.sh: cargo audit against the RustSec
advisory snapshot in third_party/): it passes on sluice's own Cargo.lock (scripts/test.sh runs it
before these tests), and here it is shown to fail on a lockfile holding a crate with a known
advisory — a check that could not fail would prove nothing."""

import subprocess

from conftest import ROOT

VULNERABLE_LOCK = """version = 4

[[package]]
name = "russh"
version = "0.60.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "0000000000000000000000000000000000000000000000000000000000000000"
"""


def audit(*args):
    return subprocess.run([str(ROOT / "scripts" / "audit.sh"), *args], capture_output=True, text=True, timeout=120)


def test_a_lockfile_with_a_known_advisory_fails_the_check(tmp_path):
    lock = tmp_path / "Cargo.lock"
    lock.write_text(VULNERABLE_LOCK)
    r = audit("--lockfile", str(lock))
    assert r.returncode != 0, r.stdout + r.stderr
    assert "RUSTSEC-2026-0154" in r.stdout + r.stderr


def test_sluices_own_lockfile_passes_the_check():
    r = audit()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Loaded" in r.stdout + r.stderr
