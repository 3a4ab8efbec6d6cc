"""rater: telecom rating and billing.

The documented Python API::

    from rater import Store, Decks, Deck

    store = Store(Path("rater-data"))
    Decks(store).import_file("deck.csv", "retail", currency="EUR")
    with Deck(store, "retail") as deck:
        call = deck.rate("+44 7911 123456", "2026-11-23 10:15", 61)
        print(call.cost, call.currency)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so that a command loads only what it needs.
_EXPORTS = {"Batch": "engine", "Deck": "engine", "RatedCall": "engine", "Decks": "decks",
            "RaterError": "errors", "ReferenceDeck": "reference", "Store": "store"}

if TYPE_CHECKING:
    from .decks import Decks
    from .engine import Batch, Deck, RatedCall
    from .errors import RaterError
    from .reference import ReferenceDeck
    from .store import Store

__all__ = ["Batch", "Deck", "Decks", "RatedCall", "RaterError", "ReferenceDeck", "Store",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'rater' has no attribute {name!r}")
