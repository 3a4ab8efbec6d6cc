"""Benchmark data: the ~318k-prefix phonenumbers deck and the ASTPP deck, imported once.

Every group has a baseline measured in the same run (the pure-Python reference
engine, or for import a plain dict load of the same file); `bench/report.py`
turns the JSON into medians, per-item rates and ratios.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rater.decks import Decks
from rater.engine import Deck
from rater.reference import ReferenceDeck
from rater.store import Store

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
sys.path.insert(0, str(HERE))

from deckgen import calls, deck_prefixes, write_cdrs, write_deck  # noqa: E402


@dataclass
class Bench:
    name: str
    csv: Path
    data: Path
    deck: Deck
    reference: ReferenceDeck
    prefixes: list[str]
    size: int
    import_kwargs: dict[str, str]


def _load(root: Path, name: str, csv: Path, **kwargs: str) -> Iterator[Bench]:
    store = Store(root / "data")
    decks = Decks(store)
    report = decks.import_file(csv, name, **kwargs)  # type: ignore[arg-type]
    deck = Deck(store, name)
    reference = ReferenceDeck(decks.table(name), decks.rows(name))
    yield Bench(name, csv, root / "data", deck, reference, deck_prefixes(csv), report.size,
                dict(kwargs))
    deck.close()
    store.close()


@pytest.fixture(scope="session", params=["phonenumbers-318k", "astpp-36k"])
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Bench]:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "astpp-36k":
        csv = SHARED / "ratedecks" / "astpp_outbound_routes_az_36k.csv"
        if not csv.exists():
            pytest.skip(f"{csv} is absent")
        yield from _load(root, "astpp", csv, currency="USD", on_duplicate="last")
    else:
        csv = root / "deck.csv"
        write_deck(csv)
        yield from _load(root, "pn", csv, currency="USD")


@pytest.fixture(scope="session")
def million(bench: Bench) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return calls(bench.prefixes, 1_000_000)


@pytest.fixture(scope="session")
def cdr_file(bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cdrs") / "cdrs.csv"
    write_cdrs(path, bench.prefixes, 1_000_000)
    return path
