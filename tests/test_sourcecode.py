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
    r = run("mypy.stubtest", "rater._engine", "rater._ingest", "rater._radius",
            "--mypy-config-file", "pyproject.toml", "--allowlist", "tests/stubtest_allowlist.txt")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_dockerfile_serves_as_the_defaults_say() -> None:
    """What can be checked without building it: the files it copies exist, it runs as a
    user of its own, and it exposes the default ports of rater/serve.toml."""
    import tomllib

    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    for ln in lines:
        if ln.startswith("COPY ") and "--from" not in ln:
            for name in ln.split()[1:-1]:
                assert (ROOT / name).exists(), name
    assert any(ln.startswith("USER rater") for ln in lines)
    defaults = tomllib.loads((ROOT / "rater" / "serve.toml").read_text())
    exposed = next(ln for ln in lines if ln.startswith("EXPOSE")).split()[1:]
    assert f"{defaults['radius']['auth_port']}/udp" in exposed
    assert f"{defaults['radius']['acct_port']}/udp" in exposed
    assert f"{defaults['metrics']['port']}/tcp" in exposed
    assert f"{defaults['grpc']['port']}/tcp" in exposed
    assert 'ENTRYPOINT ["rater", "serve"]' in lines
    assert f":{defaults['metrics']['port']}/metrics" in text
