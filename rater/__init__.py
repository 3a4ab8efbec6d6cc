"""rater: telecom rating and billing.

The documented Python API::

    from rater import Store, Decks, Deck

    store = Store(Path("rater-data"))
    Decks(store).import_file("deck.csv", "retail", currency="EUR")
    with Deck(store, "retail") as deck:
        call = deck.rate("+44 7911 123456", "2026-11-23 10:15", 61)
        print(call.cost, call.currency)
"""

from .decks import Decks
from .engine import Batch, Deck, RatedCall
from .errors import RaterError
from .reference import ReferenceDeck
from .store import Store

__version__ = "0.1.0"

__all__ = ["Batch", "Deck", "Decks", "RatedCall", "RaterError", "ReferenceDeck", "Store",
           "__version__"]
