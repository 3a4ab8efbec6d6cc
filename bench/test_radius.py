"""Speed of `rater serve` answering RADIUS, each group against FreeRADIUS in the same run.

    python -m pytest bench/test_radius.py --benchmark-json=b.json && python bench/report.py b.json

Both servers listen on 127.0.0.1 (free ports), share one secret with the client,
require a Message-Authenticator in Access-Requests and accept every request here.

rater        `rater serve --workers 2` with its default storage settings (commits
             fsynced in groups every 5 ms in the background; an authorization never
             waits for the disk). Its data: one deck (the UK, 44, at 0.02 a minute) and 1,000
             prepaid clients pp00000 .. pp00999, each with one account known by that
             User-Name and 10,000,000.00 USD, so no call is ever short of money. One
             data directory serves the whole module, so reservations (two hours each)
             pile up from group to group: `calls_in_progress` is how many a rater
             line started with, `data_mb` how much of the LMDB file was in use before
             and after it.
FreeRADIUS   3.2, `freeradius -f -d bench/freeradius -l stdout`: the `files` module,
             whose users file (written by the benchmark) gives the same User-Names
             Auth-Type := Accept and the reply rater sends (Session-Timeout, the h323
             VSAs, Message-Authenticator); nothing else (no accounting, detail or
             logging).

radius_auth      Access-Requests answered a second (items / median: answered over the
                 wall time of two concurrent radclient processes, their start-up
                 included) from `radclient -q -s -r 1 -c 313 -p 32 -f FILE`, FILE 32
                 Access-Requests (10,016 requests a process; -r 1: a lost request is
                 counted, not retried). radclient sends each request of its file 313
                 times with the same Acct-Session-Id, so after the first pass rater
                 answers repetitions of calls it has reserved for already (its cheaper
                 path). Two processes are two source ports, which the kernel may hash
                 to the same rater worker: `busiest` is the share of the workers' CPU
                 time the busier one took, each round. radclient polls while it waits,
                 so it takes CPU from the server in proportion to the wall time
                 (`client_cpu_s`, each round). Baseline: FreeRADIUS.
radius_sessions  The same number of Access-Requests, every one its own Acct-Session-Id
                 (so every answer is a new reservation), from bench/radload.py in closed
                 loop: 16 source ports, 4 requests outstanding each (64, as above),
                 packets built beforehand, new sessions every round. (radclient cannot
                 do this fairly: with a file of 10,016 distinct requests its own CPU
                 caps it at a few thousand a second against either server.)
                 Baseline: FreeRADIUS under the same load.
radius_latency   Latency of Access-Requests offered at a constant LOAD = 10,000 a second
                 (half of what FreeRADIUS answers in radius_auth on a 2-core machine; a
                 constant, not a share of what a run measured, so runs compare) for
                 5 s, open loop, every request its own session, from 16
                 source ports (bench/radload.py). p50/p90/p99/max, the rate the
                 generator achieved and how far it fell behind its schedule (lag) are
                 in extra_info, and printed with pytest -s. Items: requests answered.
                 Baseline: FreeRADIUS under the same load. At least 99% must be
                 answered.

RATER_SERVE_ARGS (environment) adds arguments to `rater serve`, to measure other
settings the same way, e.g. RATER_SERVE_ARGS='--set storage.sync=false'.

Every line carries `client_cpu_s` (the load generator's CPU time, each round) and
`server_cpu_us` (the server processes' CPU time a request); the rater lines also
carry its workers' counters, as they log them at SIGTERM.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import radload
from measure import items

from rater.clients import Client, Registry
from rater.config import StorageConfig
from rater.decks import Decks
from rater.journal import Journal
from rater.nas import add as add_nas
from rater.radius.server import free_ports
from rater.store import Store

HERE = Path(__file__).resolve().parent
FREERADIUS_DIR = HERE / "freeradius"
SECRET = "bench-secret-42"
CLIENTS = 1000
USERS = [f"pp{k:05d}" for k in range(CLIENTS)]
BALANCE = "10000000.00"
UK = "442079460000"
DECK = "prefix,destination,rate,connect_fee,increment,effective_from\n44,UK,0.0200,,1/1,\n"
ROUNDS = 3

# radius_auth
PROCS = 2
PER_FILE = 32
COUNT = 313
PARALLEL = 32
REQUESTS = PROCS * PER_FILE * COUNT  # 20,032 a round

# radius_sessions and radius_latency
SOCKETS = 16
WINDOW = 4
LOAD = 10000
LOAD_SECONDS = 5

#: rater's Access-Accept for these clients, which FreeRADIUS is given to send as well.
REPLY = (("Session-Timeout", "7200"),
         ("h323-credit-time", '"h323-credit-time=7200"'),
         ("h323-credit-amount", '"h323-credit-amount=9999999.99"'),
         ("h323-currency", '"h323-currency=USD"'),
         ("h323-billing-model", '"h323-billing-model=1"'),
         ("h323-return-code", '"h323-return-code=0"'),
         ("Message-Authenticator", "0x00"))


def tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        pytest.skip(f"{name} is missing (Debian: apt-get install freeradius freeradius-utils)")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the servers

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rater data directory and the FreeRADIUS users file, side by side."""
    tool("radclient")
    root = tmp_path_factory.mktemp("radius")
    data = root / "data"
    store = Store(data, StorageConfig(sync=False))
    try:
        (root / "deck.csv").write_text(DECK)
        Decks(store).import_file(root / "deck.csv", "T", currency="USD")
        reg = Registry(store)

        def apply(txn: object) -> None:
            for name in USERS:
                reg.add_client(Client(id=0, name=name, currency="USD", mode="prepaid",
                                      rate_tables=[[None, "T"]]), txn)
                reg.add_account(name, username=name, txn=txn)

        store.write(apply)
        journal = Journal(store)
        for name in USERS:
            journal.post(name, "manual-payment", BALANCE, key=f"pay-{name}")
        add_nas(store, "127.0.0.1", SECRET, "bench")
    finally:
        store.close()
    reply = ",\n".join(f"\t{k} = {v}" for k, v in REPLY)
    (root / "users").write_text("".join(f"{u} Auth-Type := Accept\n{reply}\n\n" for u in USERS))
    return root


@dataclass
class Running:
    """A server started for one benchmark: its port, process and log."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    pids: list[int]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def cpu(self) -> list[float]:
        return [cpu_seconds(p) for p in self.pids]


def _start(argv: list[str], log: Path, ready: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if ready in log.read_text(errors="replace"):
            return proc
        time.sleep(0.05)
    _stop(proc)
    raise AssertionError(f"{argv[0]} did not start: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def rater_serve(world: Path) -> Iterator[Running]:
    auth, acct = free_ports("127.0.0.1", [socket.SOCK_DGRAM, socket.SOCK_DGRAM])
    log = world / f"rater-{auth}.log"
    proc = _start([sys.executable, "-m", "rater.cli", "--data", str(world / "data"), "serve",
                   "--listen", "127.0.0.1", "--radius-auth-port", str(auth),
                   "--radius-acct-port", str(acct), "--workers", "2", "--metrics-port", "0",
                   "--grpc-port", "0", *os.environ.get("RATER_SERVE_ARGS", "").split()],
                  log,
                  "rater serve: RADIUS")
    found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    try:
        yield Running(auth, proc, log, [int(p) for p in found.stdout.split()])
    finally:
        _stop(proc)


@contextlib.contextmanager
def freeradius(world: Path) -> Iterator[Running]:
    (port,) = free_ports("127.0.0.1", [socket.SOCK_DGRAM])
    run = world / f"freeradius-{port}"
    run.mkdir()
    env = {**os.environ, "RATER_BENCH_PORT": str(port), "RATER_BENCH_SECRET": SECRET,
           "RATER_BENCH_USERS": str(world / "users"), "RATER_BENCH_RUN": str(run)}
    proc = _start([tool("freeradius"), "-f", "-d", str(FREERADIUS_DIR), "-l", "stdout"],
                  run / "out.log", "Ready to process requests", env)
    try:
        yield Running(port, proc, run / "out.log", [proc.pid])
    finally:
        _stop(proc)


def rater_log(running: Running) -> dict[str, object]:
    """What rater's workers logged at SIGTERM (their counters), and any complaint."""
    lines = running.text().splitlines()
    counters = sorted(re.sub(r"^.*? INFO (worker \d+: )", r"\1", x) for x in lines
                      if re.search(r" INFO worker \d+: ", x))
    other = [x for x in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", x)]
    out: dict[str, object] = {"workers": " | ".join(counters)}
    if other:
        out["log_complaints"] = len(other)
        out["log_first"] = other[0][-200:]
    return out


def store_state(world: Path) -> tuple[int, float]:
    """(calls in progress, MB of the data file in use) of rater's store."""
    with Store(world / "data", StorageConfig(sync=False)) as store, store.read() as txn:
        calls = sum(1 for _ in store.calls_up.items(txn))
        info, stat = store.env.info(), store.env.stat()
    return calls, round((info["last_pgno"] + 1) * stat["psize"] / 1e6, 1)


@contextlib.contextmanager
def rater_serve_measured(world: Path, benchmark) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    """rater_serve, and in extra_info: the calls in progress it started with, how much
    of its data file was in use before and after, its workers' log."""
    calls, before = store_state(world)
    with rater_serve(world) as server:
        yield server
    benchmark.extra_info.update(rater_log(server))
    benchmark.extra_info["calls_in_progress"] = calls
    benchmark.extra_info["data_mb"] = [before, store_state(world)[1]]


class Rounds:
    """Per-round facts beside pytest-benchmark's timings: the server's CPU time (and how
    it fell on its processes), the client's."""

    def __init__(self, server: Running) -> None:
        self.server = server
        self.busiest: list[float] = []
        self.client: list[float] = []
        self.server_cpu = 0.0
        self.answered = 0

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        before, own, kids = self.server.cpu(), time.process_time(), children_cpu()
        yield
        used = [a - b for a, b in zip(self.server.cpu(), before, strict=True)]
        self.server_cpu += sum(used)
        if len(used) > 1:
            self.busiest.append(round(max(used) / max(sum(used), 1e-9), 2))
        self.client.append(round(time.process_time() - own + children_cpu() - kids, 2))

    def info(self) -> dict[str, object]:
        out: dict[str, object] = {"client_cpu_s": self.client}
        if self.busiest:
            out["busiest"] = self.busiest
        if self.answered:
            out["server_cpu_us"] = round(self.server_cpu / self.answered * 1e6, 1)
        return out


# -- radius_auth: radclient

def request_file(path: Path, requests: list[tuple[str, str]]) -> Path:
    """A radclient file: one Access-Request per (User-Name, Acct-Session-Id)."""
    path.write_text("".join(
        f'User-Name = "{user}"\nCalled-Station-Id = "{UK}"\nCalling-Station-Id = "15550001"\n'
        f'Acct-Session-Id = "{session}"\nMessage-Authenticator = 0x00\n\n'
        for user, session in requests))
    return path


def radclient(port: int, files: list[Path]) -> tuple[int, int]:
    """One radclient a file, all at once; (accepted, answered) over all of them."""
    procs = [subprocess.Popen(["radclient", "-q", "-s", "-r", "1", "-c", str(COUNT), "-p",
                               str(PARALLEL), "-f", str(f), f"127.0.0.1:{port}", "auth", SECRET],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for f in files]
    accepted = answered = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        counts = dict(re.findall(r"^\s*(Accepted|Rejected|Lost)\s*:\s*(\d+)", out, re.M))
        assert "Accepted" in counts, out
        accepted += int(counts["Accepted"])
        answered += int(counts["Accepted"]) + int(counts.get("Rejected", 0))
    return accepted, answered


def auth_bench(benchmark, server: Running, root: Path) -> None:  # type: ignore[no-untyped-def]
    files = [request_file(root / f"requests-{p}.txt",
                          [(USERS[p * PER_FILE + j], f"rep-{p}-{j}") for j in range(PER_FILE)])
             for p in range(PROCS)]
    rounds = Rounds(server)

    def run() -> None:
        with rounds.round():
            accepted, answered = radclient(server.port, files)
        assert answered == REQUESTS, f"{REQUESTS - answered} of {REQUESTS} unanswered"
        assert accepted == REQUESTS, f"{REQUESTS - accepted} of {REQUESTS} rejected"
        rounds.answered += answered

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    items(benchmark, REQUESTS, sessions="32 a file, each sent 313 times", **rounds.info())


@pytest.mark.benchmark(group="radius_auth")
def test_auth_rater(benchmark, world: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with rater_serve_measured(world, benchmark) as server:
        auth_bench(benchmark, server, tmp_path)


@pytest.mark.benchmark(group="radius_auth")
def test_auth_freeradius_baseline(benchmark, world: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with freeradius(world) as server:
        auth_bench(benchmark, server, tmp_path)
    benchmark.extra_info["baseline"] = True


# -- radius_sessions: every request its own session, closed loop

def sessions_bench(benchmark, server: Running, name: str) -> None:  # type: ignore[no-untyped-def]
    tags = (f"{name}-{time.time_ns()}-{i}" for i in itertools.count())
    rounds = Rounds(server)

    def setup() -> tuple[tuple[list[bytes]], dict[str, object]]:
        return (radload.build(REQUESTS, SECRET, USERS, next(tags), SOCKETS),), {}

    def run(packets: list[bytes]) -> None:
        with rounds.round():
            result = radload.run_closed("127.0.0.1", server.port, packets, SOCKETS, WINDOW)
        assert result.answered == REQUESTS, result.line()
        assert result.accepted == REQUESTS, result.line()
        rounds.answered += result.answered

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS)
    items(benchmark, REQUESTS, sessions="every request its own", **rounds.info())


@pytest.mark.benchmark(group="radius_sessions")
def test_sessions_rater(benchmark, world: Path) -> None:  # type: ignore[no-untyped-def]
    with rater_serve_measured(world, benchmark) as server:
        sessions_bench(benchmark, server, "sess-rater")


@pytest.mark.benchmark(group="radius_sessions")
def test_sessions_freeradius_baseline(benchmark, world: Path) -> None:  # type: ignore[no-untyped-def]
    with freeradius(world) as server:
        sessions_bench(benchmark, server, "sess-freeradius")
    benchmark.extra_info["baseline"] = True


# -- radius_latency: a fixed offered load, open loop

def latency_bench(benchmark, server: Running, name: str) -> None:  # type: ignore[no-untyped-def]
    packets = radload.build(LOAD * LOAD_SECONDS, SECRET, USERS, f"{name}-{time.time_ns()}",
                            SOCKETS)
    results: list[radload.Result] = []
    rounds = Rounds(server)

    def run() -> None:
        with rounds.round():
            results.append(radload.run("127.0.0.1", server.port, packets, LOAD, SOCKETS))

    benchmark.pedantic(run, rounds=1, iterations=1)
    (result,) = results
    print(f"\n{name}: {result.line()}")
    assert result.answered >= 0.99 * result.sent, result.line()
    rounds.answered = result.answered
    items(benchmark, result.answered, **result.summary(), **rounds.info())


@pytest.mark.benchmark(group="radius_latency")
def test_latency_rater(benchmark, world: Path) -> None:  # type: ignore[no-untyped-def]
    with rater_serve_measured(world, benchmark) as server:
        latency_bench(benchmark, server, "rater")


@pytest.mark.benchmark(group="radius_latency")
def test_latency_freeradius_baseline(benchmark, world: Path) -> None:  # type: ignore[no-untyped-def]
    with freeradius(world) as server:
        latency_bench(benchmark, server, "freeradius")
    benchmark.extra_info["baseline"] = True

