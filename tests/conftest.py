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

