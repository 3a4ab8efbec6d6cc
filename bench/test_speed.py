"""Speed of the compiled engine, each group against a baseline measured in the same run.

    python -m pytest bench --benchmark-json=bench.json && python bench/report.py bench.json

Groups (``extra_info["items"]`` is how many calls, rows or lookups one round does):

lookup       longest-prefix lookups alone, numpy in and out; baseline: the reference
rate_batch   batch rating, numpy in and out, GIL released; baseline: the reference
single_call  one call of Engine.rate from Python; baseline: one reference call
rate_file    `rate-file` on a 1,000,000-row canonical CSV, in process and as the
             `rater` command; baseline: csv module + reference engine
import       a deck import into LMDB; baseline: csv module into a dict
open         opening a deck in a new process; baseline: loading its rows for the reference
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import Bench
from measure import items

from rater.cdr import rate_file
from rater.decks import Decks
from rater.store import Store
from rater.timeutil import parse_instant, zone

START = 1_790_000_000


# -- lookup

@pytest.mark.benchmark(group="lookup")
def test_lookup_compiled(benchmark, bench: Bench, million) -> None:  # type: ignore[no-untyped-def]
    numbers, starts, _ = million
    out = np.empty(len(numbers), np.int32)
    found = benchmark(bench.deck.engine.lookup_batch, numbers, starts, out)
    assert found == len(numbers)
    items(benchmark, len(numbers), deck=bench.name)


@pytest.mark.benchmark(group="lookup")
def test_lookup_reference(benchmark, bench: Bench, million) -> None:  # type: ignore[no-untyped-def]
    numbers = [str(n) for n in million[0][:20_000].tolist()]

    def run() -> int:
        return sum(bench.reference.find(n, START, START) is not None for n in numbers)

    assert benchmark.pedantic(run, rounds=3) == len(numbers)
    items(benchmark, len(numbers), deck=bench.name, baseline=True)


# -- batch rating

@pytest.mark.benchmark(group="rate_batch")
def test_rate_batch_compiled(benchmark, bench: Bench, million) -> None:  # type: ignore[no-untyped-def]
    numbers, starts, durations = million
    batch = benchmark(bench.deck.rate_batch, numbers, starts, durations)
    assert batch.priced == len(numbers)
    items(benchmark, len(numbers), deck=bench.name)


@pytest.mark.benchmark(group="rate_batch")
def test_rate_batch_reference(benchmark, bench: Bench, million) -> None:  # type: ignore[no-untyped-def]
    sample = [(str(n), s, d) for n, s, d in zip(*(a[:500].tolist() for a in million),
                                                 strict=True)]
    costs = benchmark.pedantic(lambda: [bench.reference.price(*c).cost_nano for c in sample],
                               rounds=3)
    batch = bench.deck.rate_batch(*(a[:500] for a in million))
    assert costs == batch.cost_nanos.tolist()          # the same answers, just slower
    items(benchmark, len(sample), deck=bench.name, baseline=True)


# -- one call from Python

@pytest.mark.benchmark(group="single_call")
def test_single_call_compiled(benchmark, bench: Bench, million) -> None:  # type: ignore[no-untyped-def]
    number = int(million[0][12345])
    result = benchmark(bench.deck.engine.rate, number, START, 61)
    assert result[0] >= 0
    items(benchmark, 1, deck=bench.name)


@pytest.mark.benchmark(group="single_call")
def test_single_call_reference(benchmark, bench: Bench, million) -> None:  # type: ignore[no-untyped-def]
    number = str(million[0][12345])
    benchmark(bench.reference.price, number, START, 61)
    items(benchmark, 1, deck=bench.name, baseline=True)


# -- rate-file

@pytest.mark.benchmark(group="rate_file")
def test_rate_file_in_process(benchmark, bench: Bench, cdr_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rated.csv"
    summary = benchmark.pedantic(rate_file, (bench.deck, cdr_file, out),
                                 {"progress": False}, rounds=5)
    assert summary.rows == summary.rated == 1_000_000
    items(benchmark, summary.rows, deck=bench.name)


@pytest.mark.benchmark(group="rate_file")
def test_rate_file_command(benchmark, bench: Bench, cdr_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rated.csv"
    cmd = [sys.executable, "-m", "rater", "--data", str(bench.data), "rate-file", str(cdr_file),
           "--table", bench.deck.name, "-o", str(out)]
    benchmark.pedantic(subprocess.run, (cmd,), {"check": True, "capture_output": True},
                       rounds=3)
    with open(out) as f:
        assert sum(1 for _ in f) == 1_000_001
    items(benchmark, 1_000_000, deck=bench.name, end_to_end=True)


@pytest.mark.benchmark(group="rate_file")
def test_rate_file_reference(benchmark, bench: Bench, cdr_file: Path) -> None:  # type: ignore[no-untyped-def]
    tz = zone(bench.reference.table.timezone)
    with open(cdr_file) as f:
        head = [next(f) for _ in range(5001)]

    def run() -> int:
        rows = csv.reader(head[1:])
        out = []
        for rid, start, number, duration in rows:
            p = bench.reference.price(number, parse_instant(start, tz), int(duration))
            out.append((rid, p.prefix, p.row.destination, p.cost_nano))
        return len(out)

    assert benchmark.pedantic(run, rounds=3) == 5000
    items(benchmark, 5000, deck=bench.name, baseline=True)


# -- import

@pytest.mark.benchmark(group="import")
def test_import_into_lmdb(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    def setup():  # type: ignore[no-untyped-def]
        store = Store(Path(tempfile.mkdtemp()) / "data")
        return (Decks(store),), {}

    report = benchmark.pedantic(lambda d: d.import_file(bench.csv, "x", **bench.import_kwargs),
                                setup=setup, rounds=3)
    assert report.prefixes == len(set(bench.prefixes))
    items(benchmark, report.file_rows, deck=bench.name, compiled_bytes=report.size)


@pytest.mark.benchmark(group="import")
def test_import_baseline_dict(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    def run() -> int:
        with open(bench.csv, newline="") as f:
            return len({row[0]: row for row in csv.reader(f)})

    benchmark.pedantic(run, rounds=3)
    items(benchmark, len(bench.prefixes), deck=bench.name, baseline=True)


# -- open in a new process

OPEN = """
    import json, sys, time
    from pathlib import Path
    from rater.engine import Deck
    from rater.store import Store
    def uss():
        return sum(int(l.split()[1]) * 1024 for l in open("/proc/self/smaps_rollup")
                   if l.startswith(("Private_Clean:", "Private_Dirty:")))
    store = Store(Path(sys.argv[1]), create=False)
    before = uss()
    t = time.perf_counter()
    deck = Deck(store, sys.argv[2])
    opened = time.perf_counter() - t
    deck.engine.validate()
    print(json.dumps({"open_s": opened, "uss_added": uss() - before}))
"""


@pytest.mark.benchmark(group="open")
def test_open_in_a_new_process(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    # This process holds the deck open, so the new one shares its pages.
    results = []

    def run() -> None:
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(OPEN), str(bench.data),
                            bench.deck.name], capture_output=True, text=True, check=True)
        results.append(json.loads(p.stdout))

    benchmark.pedantic(run, rounds=5)
    opens = sorted(r["open_s"] for r in results)
    uss = sorted(r["uss_added"] for r in results)
    items(benchmark, 1, deck=bench.name, open_median_ms=round(opens[len(opens) // 2] * 1000, 2),
          uss_added_median=uss[len(uss) // 2], deck_bytes=bench.size,
          note="time is the whole process; open_median_ms is Deck() alone")


@pytest.mark.benchmark(group="open")
def test_open_reference_loads_rows(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    from rater.reference import ReferenceDeck

    decks = Decks(bench.deck.store)     # LMDB opens an environment once per process

    def run() -> None:
        ReferenceDeck(decks.table(bench.deck.name), decks.rows(bench.deck.name))

    benchmark.pedantic(run, rounds=2)
    items(benchmark, 1, deck=bench.name, baseline=True)
