"""Speed of rating over gRPC, each group against a baseline in the same run.

    python -m pytest bench/test_grpc.py --benchmark-json=b.json && python bench/report.py b.json

The deck: the ~318k-prefix phonenumbers deck (table `pn`); the calls go to
numbers under random deck prefixes. `rater serve --workers 2` listens on a free
port of 127.0.0.1 (metrics off); the load comes from bench/grpcload.py, a
separate client process, on the same 2-core machine.

grpc_unary   20,000 `Rate` calls, 32 outstanding (futures). Baseline:
             bench/grpcecho.py, a grpcio server (same thread pool) whose Rate
             returns one fixed reply, under the same client: the floor of any
             Python gRPC service here.
grpc_stream  1,000,000 calls through one `RateStream`, in 20 batches of 50,000
             (numbers as strings, starts and durations as packed integers), from
             this process (the requests built beforehand; the time is the stream's,
             replies decoded). Baseline: the same calls through `Deck.rate_batch`
             in this process, the engine without gRPC.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from deckgen import calls, deck_prefixes, write_deck
from measure import items

from rater.decks import Decks
from rater.engine import Deck
from rater.radius.server import free_ports
from rater.store import Store

HERE = Path(__file__).resolve().parent
UNARY = 20_000
INFLIGHT = 32
BATCHES, BATCH = 20, 50_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grpc")
    write_deck(root / "deck.csv")
    store = Store(root / "data")
    Decks(store).import_file(root / "deck.csv", "pn", currency="USD")
    store.close()
    numbers, _, _ = calls(deck_prefixes(root / "deck.csv"), 200_000)
    (root / "numbers.txt").write_text("\n".join(map(str, numbers.tolist())))
    return root


def _ready(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if word not in line:
        proc.kill()
        raise AssertionError(f"did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture(scope="module")
def rater(world: Path) -> Iterator[str]:
    (port,) = free_ports("127.0.0.1", [socket.SOCK_STREAM])
    proc = subprocess.Popen([sys.executable, "-m", "rater.cli", "--data", str(world / "data"),
                             "serve", "--listen", "127.0.0.1", "--workers", "2",
                             "--radius-auth-port", "0", "--radius-acct-port", "0",
                             "--grpc-port", str(port), "--set", "metrics.enabled=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _ready(proc, "rater serve: RADIUS")
    yield f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    (port,) = free_ports("127.0.0.1", [socket.SOCK_STREAM])
    proc = subprocess.Popen([sys.executable, str(HERE / "grpcecho.py"), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _ready(proc, "ready")
    yield f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def load(world: Path, *args: str) -> tuple[int, float]:
    out = subprocess.run([sys.executable, str(HERE / "grpcload.py"), *args,
                          str(world / "numbers.txt")], capture_output=True, text=True,
                         timeout=600, check=True).stdout.split()
    return int(out[0]), float(out[1])


def _unary(benchmark, world: Path, address: str) -> None:  # type: ignore[no-untyped-def]
    client_seconds: list[float] = []

    def run() -> None:
        n, seconds = load(world, address, str(UNARY), str(INFLIGHT))
        assert n == UNARY
        client_seconds.append(round(seconds, 3))

    benchmark.pedantic(run, rounds=3, iterations=1)
    items(benchmark, UNARY, inflight=INFLIGHT, client_seconds=client_seconds)


@pytest.mark.benchmark(group="grpc_unary")
def test_unary_rater(benchmark, world: Path, rater: str) -> None:  # type: ignore[no-untyped-def]
    _unary(benchmark, world, rater)


@pytest.mark.benchmark(group="grpc_unary")
def test_unary_echo_baseline(benchmark, world: Path, echo: str) -> None:  # type: ignore[no-untyped-def]
    _unary(benchmark, world, echo)
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="grpc_stream")
def test_stream_rater(benchmark, world: Path, rater: str) -> None:  # type: ignore[no-untyped-def]
    import grpc

    from rater.v1 import rating_pb2, rating_pb2_grpc

    numbers = (world / "numbers.txt").read_text().split()
    requests = []
    for b in range(BATCHES):
        chunk = [numbers[(b * BATCH + i) % len(numbers)] for i in range(BATCH)]
        requests.append(rating_pb2.RateBatch(table="pn", numbers=chunk,
                                             starts=[1_795_000_000] * BATCH,
                                             durations=[61] * BATCH, batch_id=b))
    channel = grpc.insecure_channel(rater)
    stub = rating_pb2_grpc.RatingServiceStub(channel)
    list(stub.RateStream(iter(requests[:1]), timeout=60))       # connected and warm

    def run() -> None:
        answered = sum(len(r.cost_nanos) for r in stub.RateStream(iter(requests), timeout=300))
        assert answered == BATCHES * BATCH

    try:
        benchmark.pedantic(run, rounds=3, iterations=1)
    finally:
        channel.close()
    items(benchmark, BATCHES * BATCH, batch=BATCH)


@pytest.mark.benchmark(group="grpc_stream")
def test_stream_engine_baseline(benchmark, world: Path) -> None:  # type: ignore[no-untyped-def]
    numbers = np.array((world / "numbers.txt").read_text().split(), dtype="S")
    n = BATCHES * BATCH
    numbers = np.resize(numbers, n)
    starts = np.full(n, 1_795_000_000, np.int64)
    durations = np.full(n, 61, np.int64)
    store = Store(world / "data")
    try:
        with Deck(store, "pn") as deck:
            benchmark.pedantic(lambda: [deck.rate_batch(numbers[k:k + BATCH],
                                                        starts[k:k + BATCH],
                                                        durations[k:k + BATCH])
                                        for k in range(0, n, BATCH)], rounds=3, iterations=1)
    finally:
        store.close()
    items(benchmark, n, batch=BATCH, baseline=True)
