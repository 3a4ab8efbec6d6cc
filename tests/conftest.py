"""Shared fixtures: real LMDB stores in temporary directories, the shared data, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rater.decks import Decks
from rater.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))   # the seeded deck generator lives in bench/


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def decks(store: Store) -> Decks:
    return Decks(store)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the project; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the real rate decks and CDRs are not here")
    return SHARED_DATA


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert a command succeeded; return its output."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def failed(proc: subprocess.CompletedProcess[str], code: str, exit_code: int) -> str:
    """Assert the one-line failure of error ``code`` with exit ``exit_code``; return its message."""
    from rater.cli import EXIT_CODES

    assert EXIT_CODES[code] == exit_code
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines and lines[0].startswith("rater: error: "), proc.stderr
    assert all(line.startswith("rater: hint: ") for line in lines[1:]), proc.stderr
    return lines[0].removeprefix("rater: error: ")


def run_cli(*args: str, data: Path | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rater`` as a user would; returns the finished process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("RATER_DATA", None) if env is None or "RATER_DATA" not in env else None
    cmd = [sys.executable, "-m", "rater"]
    if data is not None:
        cmd += ["--data", str(data)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)

