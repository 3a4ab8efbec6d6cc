"""Lint, types and the compiled module's stub, run as tests."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff() -> None:
    r = run("ruff", "check", "rater", "bench", "tests")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = run("mypy")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_stubs_match_the_compiled_modules() -> None:
    r = run("mypy.stubtest", "rater._engine", "rater._ingest", "--mypy-config-file",
            "pyproject.toml", "--allowlist", "tests/stubtest_allowlist.txt")
    assert r.returncode == 0, r.stdout + r.stderr
