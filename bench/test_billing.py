"""Speed of billing: CDR import and journal posting, each against a baseline in the same run.

    python -m pytest bench/test_billing.py --benchmark-json=b.json && python bench/report.py b.json

cdr_import   `import_cdrs` of 1,000,000 canonical CDRs naming 10,000 accounts (1,000
             postpaid clients) priced on the 318k-prefix deck: parse, match, price,
             record, journal and debit. Each round imports the file under a new
             source (so a round bills 1,000,000 new CDRs into a store already
             holding the earlier rounds'). Baseline: the csv module reading the file
             into a dict by id, the least any Python importer does.
journal      100,000 journal entries with their balance updates, in write
             transactions of 1,000 entries over 1,000 clients. Baseline: the same
             entries put into LMDB without balances or numbering.
"""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

import pytest
from billinggen import populate, write_billing_cdrs
from deckgen import deck_prefixes, write_deck
from measure import items

from rater.config import StorageConfig
from rater.decks import Decks
from rater.ingest import import_cdrs
from rater.journal import Entry, append
from rater.store import Store

CDRS = 1_000_000
ENTRIES = 100_000
BATCH = 1_000


@pytest.fixture(scope="module")
def billing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    root = tmp_path_factory.mktemp("billing")
    write_deck(root / "deck.csv")
    write_billing_cdrs(root / "cdrs.csv", deck_prefixes(root / "deck.csv"), CDRS)
    store = Store(root / "data", StorageConfig(sync=False))
    Decks(store).import_file(root / "deck.csv", "pn", currency="USD")
    populate(store, "pn")
    return store, root / "cdrs.csv"


@pytest.mark.benchmark(group="cdr_import")
def test_cdr_import(benchmark, billing) -> None:  # type: ignore[no-untyped-def]
    store, path = billing
    sources = (f"round{i}" for i in itertools.count())

    def run() -> None:
        summary = import_cdrs(store, path, source=next(sources))
        assert summary.billed == CDRS

    benchmark.pedantic(run, rounds=3, iterations=1)
    items(benchmark, CDRS, deck="phonenumbers-318k", accounts=10_000)


@pytest.mark.benchmark(group="cdr_import")
def test_cdr_import_baseline_csv(benchmark, billing) -> None:  # type: ignore[no-untyped-def]
    _, path = billing

    def run() -> None:
        with open(path, newline="") as f:
            rows = csv.reader(f)
            next(rows)
            by_id = {r[0]: r for r in rows}
        assert len(by_id) == CDRS

    benchmark.pedantic(run, rounds=3, iterations=1)
    items(benchmark, CDRS, deck="phonenumbers-318k", baseline=True)


def _entries(offset: int) -> list[list[Entry]]:
    now = int(time.time())
    return [[Entry(0, "manual-payment", 1 + (i % 1000), 1_000_000_000 + i, now, now,
                   f"bench:{offset}:{i}") for i in range(lo, lo + BATCH)]
            for lo in range(0, ENTRIES, BATCH)]


@pytest.mark.benchmark(group="journal")
def test_journal_append(benchmark, billing) -> None:  # type: ignore[no-untyped-def]
    store, _ = billing
    rounds = itertools.count()

    def run() -> None:
        for batch in _entries(next(rounds)):
            store.write(lambda txn, b=batch: append(store, txn, b))

    benchmark.pedantic(run, rounds=3, iterations=1)
    items(benchmark, ENTRIES, deck="-", batch=BATCH)


@pytest.mark.benchmark(group="journal")
def test_journal_baseline_puts(benchmark, billing) -> None:  # type: ignore[no-untyped-def]
    store, _ = billing
    rounds = itertools.count()

    def run() -> None:
        r = next(rounds)
        for k, batch in enumerate(_entries(r)):
            packed = [(b"x/%d/%d/%d" % (r, k, i), e.pack()) for i, e in enumerate(batch)]
            store.write(lambda txn, p=packed: txn.cursor().putmulti(p))

    benchmark.pedantic(run, rounds=3, iterations=1)
    items(benchmark, ENTRIES, deck="-", baseline=True)
