"""Shared fixtures: real LMDB stores in temporary directories, the shared data, the CLI."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rater.clients import Client, Registry
from rater.decks import Decks
from rater.journal import Journal
from rater.radius.control import CallControl
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


# -- call control without the wire (tests/test_call_control.py, test_radius_edges.py)

PREMIUM = "900123456"
#: Seconds a reservation outlives its grant in the call-control tests.
GRACE = 60
CONTROL_DECK = ("prefix,destination,rate,connect_fee,increment,effective_from\n"
                "44,UK,0.0200,0.0050,60/6,\n900,PREMIUM,2.0000,,1/1,\n")


@pytest.fixture
def control(store: Store, decks: Decks, tmp_path: Path) -> Iterator[CallControl]:
    """alice: prepaid, 1.00 USD paid and 0.10 of credit, calls of at most an hour, priced
    by table T (CONTROL_DECK)."""
    decks.import_file(write(tmp_path / "deck.csv", CONTROL_DECK), "T", currency="USD")
    reg = Registry(store)
    reg.add_client(Client(id=0, name="alice", currency="USD", rate_tables=[[None, "T"]],
                          credit_limit=100_000_000, max_call_length=3600))
    reg.add_account("alice", username="alice")
    Journal(store).post("alice", "manual-payment", "1.00", key="p")
    c = CallControl(store, reservation_grace=GRACE)
    yield c
    c.close()


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



# -- a real PostgreSQL server on 127.0.0.1 for the tests that need one


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    return found[-1].parent if found else None


def apt_install(package: str) -> None:
    """Install a Debian package, when we are root and apt-get is here (the tests' own
    setup of what they need: radclient, PostgreSQL)."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env,
                       capture_output=True, timeout=900)


def ensure_pango() -> None:
    """What WeasyPrint draws PDF text with (Pango and a font), installed from Debian's
    packages when missing."""
    from rater.documents import DEBIAN_PACKAGES
    from rater.errors import RenderError

    if not all(ctypes.util.find_library(lib) for lib in ("pangoft2-1.0", "harfbuzz-subset")) \
            or not Path("/usr/share/fonts/truetype/dejavu").is_dir():
        for package in DEBIAN_PACKAGES.split():
            apt_install(package)
    try:
        from rater.documents import check_renderer

        check_renderer()
    except RenderError as exc:
        pytest.fail(f"{exc.message}: {exc.hint}")


def ensure_postgres() -> Path:
    """PostgreSQL's programs, installed from Debian's postgresql when missing."""
    bindir = _postgres_bin()
    if bindir is None:
        apt_install("postgresql")
        bindir = _postgres_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is missing: install Debian's postgresql "
                    "(apt-get install postgresql) and run the tests again")
    return bindir


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the test session's own, on a free port of 127.0.0.1 (trust
    authentication, no fsync); its URL without a database name."""
    bindir = ensure_postgres()
    # Not under pytest's temporary directory: the postgres user could not reach it.
    root = Path(tempfile.mkdtemp(prefix="rater-postgres-"))
    # initdb refuses to run as root: the server then runs as Debian's postgres user.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(root, "postgres")
    from rater.radius.server import free_ports

    (port,) = free_ports("127.0.0.1", [socket.SOCK_STREAM])
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(root / "db"), "-U", "rater",
                    "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(root / "db"), "-l",
                    str(root / "log"), "-w", "-t", "60", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start"], check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://rater@127.0.0.1:{port}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(root / "db"), "-m", "fast",
                        "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres: str) -> str:
    """A new, empty database on the session's PostgreSQL server; its URL."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:16]}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """A ledger of each kind: None for the data directory's SQLite file, else a new
    PostgreSQL database's URL (RATER_LEDGER from the environment set aside)."""
    monkeypatch.delenv("RATER_LEDGER", raising=False)
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_db"))


class Inbox:
    """What a real SMTP server on 127.0.0.1 received."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address,  # type: ignore[no-untyped-def]
                          options) -> str:
        if address.endswith("@refused.example"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Inbox, Path]]:
    """An aiosmtpd server on a free port, and a config file naming it."""
    from aiosmtpd.controller import Controller

    from rater.radius.server import free_ports

    [port] = free_ports("127.0.0.1", [socket.SOCK_STREAM])
    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    config = write(tmp_path / "rater.toml", f'[mail]\nport = {port}\n'
                                            f'from = "billing@rater.example"\n')
    try:
        yield inbox, config
    finally:
        server.stop()
