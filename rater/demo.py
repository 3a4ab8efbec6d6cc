"""``rater demo``: a sample deck imported, sample calls rated, the results shown.

Everything runs on the embedded defaults: the data directory's LMDB
environment, nothing else to set up.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from decimal import Decimal
from importlib import resources
from pathlib import Path

import numpy as np

from .cdr import rate_file
from .config import storage_from_env
from .decks import Decks
from .engine import Deck
from .errors import UnknownTable
from .money import from_nano
from .store import Store
from .tariff import TimeProfile, parse_window

TABLE = "demo"


def run(data: Path) -> int:
    samples = resources.files("rater") / "samples"
    print(f"rater demo: data directory {data}\n")
    with Store(data, storage_from_env()) as store:
        decks = Decks(store)
        try:
            table = decks.table(TABLE)
        except UnknownTable:
            decks.create(TABLE, currency="EUR", timezone="Europe/Berlin")
            table = decks.table(TABLE)
        if "offpeak" not in table.profiles:
            decks.configure(TABLE, profile=TimeProfile(
                "offpeak", weight=10, windows=tuple(parse_window("20:00-08:00"))))
        with resources.as_file(samples / "demo_deck.csv") as deck_file:
            report = decks.import_file(deck_file, TABLE)
        print(f"1. Imported {deck_file.name} into table {TABLE} (EUR, Europe/Berlin): "
              f"{report.file_rows} rows, {report.prefixes} prefixes, version {report.version}.")
        print("   Off-peak (20:00-08:00) is cheaper to UK mobiles; Germany - Mobile drops "
              "to 0.07/min on 2027-01-01;\n   France - Mobile is cheaper from the 10th minute.\n")

        with Deck(store, TABLE) as deck:
            out = data / "demo-rated.csv"
            with resources.as_file(samples / "demo_cdrs.csv") as cdrs:
                summary = rate_file(deck, cdrs, out, progress=False)
            print(f"2. Rated {cdrs.name} -> {out}:")
            with open(out, newline="") as f:
                rows = list(csv.reader(f))
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for r in rows:
                print("   " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
            print(f"   {summary.rated} rated, {summary.unmatched} unmatched (no rate for +882), "
                  f"total {summary.total_cost} {summary.currency}\n")

            credit = Decimal("1.00")
            longest = deck.max_duration("+44 7911 123456", "2026-11-23 10:15", credit)
            print(f"3. A prepaid caller with {credit} EUR may talk {longest} s to "
                  f"+44 7911 123456 at 10:15\n   (connect fee and 60/6 increments "
                  f"included): the inverse of pricing.\n")

            n = 1_000_000
            rng = np.random.default_rng(1)
            prefixes = np.array([1212, 336, 4420, 447, 4915, 91, 8613], np.uint64)
            numbers = prefixes[rng.integers(0, len(prefixes), n)] * np.uint64(10**7) + \
                rng.integers(0, 10**7, n).astype(np.uint64)
            starts = 1_795_000_000 + rng.integers(0, 86400 * 30, n)
            durations = rng.integers(0, 3600, n)
            t = time.perf_counter()
            batch = deck.rate_batch(numbers, starts, durations)
            took = time.perf_counter() - t
            total = from_nano(int(batch.cost_nanos[batch.matched].sum()), 4)
            print(f"4. Rated {n:,} random calls in one batch in {took * 1000:.0f} ms "
                  f"({n / took / 1e6:.1f} million calls/s on one core); total {total} EUR.\n")
    rater = _program()
    print("Try next:")
    print(f"  {rater} --data {data} rate +447911123456 --table {TABLE} "
          f"--at 2026-11-23T21:00 --duration 61")
    print(f"  {rater} --data {data} deck show {TABLE}")
    print(f"  {rater} --data {data} deck history {TABLE}")
    return 0


def _program() -> str:
    """How the user ran rater (``.venv/bin/rater``, say), to suggest commands they can paste."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "rater" or shutil.which("rater") == str(argv0.resolve()):
        return "rater"
    try:
        return str(argv0.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(argv0)
