"""Included minutes (bundles): a package's units, consumed by calls before money.

A package may include minutes each fee period for numbers that begin with
given prefixes or fall in given destinations of the rate table, at a bundle
price a minute (0 by default). While a client's subscription holds such an
allowance, its calls that match take their seconds from it first:

- the covered seconds are priced at the bundle price, rounded half-up to the
  nano once for each allowance the call draws on, and journaled as a
  ``bundle-call`` entry (kept even when it costs nothing, so that the invoice
  shows a usage line of the bundle: ``PACKAGE: included minutes``);
- the rest of the call, if any, is priced by the rate table as a call of the
  seconds left, at the call's time: the ``rated-call`` entry.

Counting is in answered seconds. An allowance's period is its package's fee
period holding the call's bill instant, in the client's time zone; it holds
its whole minutes in a period its subscription holds only part of.
Allowances are taken in subscription order, then in the package's order.

What each period has used (``d/u``), what calls in progress have been
granted of it (``d/r``) and what each billed call took (``d/c``) live in the
LMDB store, written in the transaction that bills the call: a call is
covered once, however often its CDR arrives, and an allowance never goes
below zero. A call's coverage is decided when it is billed; rerating reprices
the rest and keeps the covered seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgpack

from .clients import Client, parse_amount
from .errors import InvalidArgument
from .store import Store
from .timeutil import zone

BUNDLE_TYPE = "bundle-call"
_USED, _RESERVED = b"u", b"r"
#: Before a billed call's key: what it took of allowances.
COVERED = b"c"


def parse_include(text: str) -> dict[str, Any]:
    """``MINUTES:MATCH[,MATCH...][@PRICE]``: a MATCH of digits is a number prefix, any
    other a destination name; PRICE is the bundle price a minute (default 0)."""
    head, _, price = text.partition("@")
    minutes, sep, matches = head.partition(":")
    # "+49" is the prefix 49.
    items = [m.strip().removeprefix("+") if re.fullmatch(r"\+?[0-9]+", m.strip())
             else m.strip() for m in matches.split(",") if m.strip()]
    if not sep or not re.fullmatch(r"[0-9]{1,7}", minutes.strip()) or not items:
        raise InvalidArgument(f"--include {text!r}: MINUTES:PREFIX-OR-DESTINATION[,...]"
                              f"[@PRICE], such as 100:49,33 or 60:Germany Mobile@0.01")
    if int(minutes) == 0:
        raise InvalidArgument(f"--include {text!r}: at least 1 minute")
    return {"minutes": int(minutes),
            "prefixes": [m for m in items if re.fullmatch("[0-9]+", m)],
            "destinations": [m for m in items if not re.fullmatch("[0-9]+", m)],
            "rate": parse_amount(price or "0", f"--include {text!r} price")}


@dataclass(frozen=True)
class Allowance:
    """One allowance of one subscription."""

    subscription: int
    index: int
    package: str
    #: The package's fee period (monthly from the billing day, weekly, daily).
    period: str
    seconds: int
    prefixes: tuple[str, ...]
    destinations: frozenset[str]
    #: The bundle price of a minute, in nanos.
    rate: int
    start: date
    end: date | None

    def matches(self, digits: str, destination: str) -> bool:
        return digits.startswith(self.prefixes) or destination in self.destinations

    def holds(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)

    def counter(self, day: date, billing_day: int) -> bytes:
        """The key of what the period holding ``day`` has used of it."""
        from .subscriptions import period_of

        return counter(self.subscription, self.index,
                       period_of(day, self.period, billing_day)[0])

    def price(self, seconds: int) -> int:
        """The bundle price of ``seconds``, rounded half-up to the nano."""
        return (self.rate * seconds * 2 + 60) // 120


class Allowances:
    """Every client's allowances, read once (for a pricer's life: a change of
    subscriptions or packages makes the account index stale, and it is read again)."""

    def __init__(self, store: Store) -> None:
        from .subscriptions import Subscription, packages_in

        self.store = store
        self.by_client: dict[int, list[Allowance]] = {}
        with store.read() as txn:
            packages = packages_in(store, txn)
            subs = sorted((Subscription.unpack(v) for _, v
                           in store.subscriptions.items(txn, b"s")), key=lambda s: s.id)
        for s in subs:
            pkg = packages.get(s.package)
            if pkg is None:
                continue
            for i, inc in enumerate(pkg.included):
                self.by_client.setdefault(s.client, []).append(Allowance(
                    s.id, i, s.package, pkg.period, int(inc["minutes"]) * 60,
                    tuple(inc.get("prefixes", [])), frozenset(inc.get("destinations", [])),
                    int(inc.get("rate", 0)), s.start, s.end))
        self.destinations_matter = any(a.destinations for lst in self.by_client.values()
                                       for a in lst)

    def for_call(self, client: Client, instant: int, digits: str, destination: str
                 ) -> list[tuple[bytes, Allowance]]:
        """The allowances a call of ``client`` at ``instant`` to ``digits`` (E.164, no
        "+") may take from, in order, with their counters."""
        mine = self.by_client.get(client.id)
        if not mine:
            return []
        day = datetime.fromtimestamp(instant, zone(client.timezone)).date()
        return [(a.counter(day, client.billing_day), a) for a in mine
                if a.holds(day) and a.matches(digits, destination)]

    # -- in a write transaction

    def left(self, txn: Any, counter: bytes, allowance: Allowance, *,
             reserved: bool = False) -> int:
        """Seconds the counter's period has left (less what calls in progress hold)."""
        used = _int(self.store.bundles.get(txn, _USED + counter))
        held = _int(self.store.bundles.get(txn, _RESERVED + counter)) if reserved else 0
        return max(0, allowance.seconds - used - held)

    def take(self, txn: Any, call_key: bytes, seconds: int,
             found: list[tuple[bytes, Allowance]]) -> tuple[int, int, list[Allowance]]:
        """Cover up to ``seconds`` of a call from ``found``, in order: (seconds covered,
        their bundle price, the allowances taken from). A call covered before keeps what
        it took (and takes nothing more)."""
        if self.store.bundles.get(txn, COVERED + call_key) is not None:
            return (*covered(self.store, txn, call_key), [])
        got = amount = 0
        took: list[list[Any]] = []
        used_from: list[Allowance] = []
        for key, a in found:
            if got == seconds:
                break
            n = min(seconds - got, self.left(txn, key, a))
            if n <= 0:
                continue
            so_far = _int(self.store.bundles.get(txn, _USED + key))
            self.store.bundles.put(txn, _USED + key, _bytes(so_far + n))
            got += n
            amount += a.price(n)
            took.append([key, n])
            used_from.append(a)
        if got:
            self.store.bundles.put(txn, COVERED + call_key, msgpack.packb([got, amount, took]))
        return got, amount, used_from


def hold(store: Store, txn: Any, shares: list[list[Any]], sign: int) -> None:
    """Add (sign 1) or take back (-1) what a call in progress was granted of allowances:
    its [counter, seconds] shares."""
    for counter, n in shares:
        key = _RESERVED + bytes(counter)
        total = _int(store.bundles.get(txn, key)) + sign * n
        if total > 0:
            store.bundles.put(txn, key, _bytes(total))
        else:
            store.bundles.delete(txn, key)


def used(store: Store, subscription: int, index: int, period_start: date) -> int:
    """Seconds a subscription's allowance has used in the period from ``period_start``."""
    with store.read() as txn:
        return _int(store.bundles.get(txn, _USED + counter(subscription, index,
                                                           period_start)))


def counter(subscription: int, index: int, period_start: date) -> bytes:
    """The key of an allowance's use in the period from ``period_start``."""
    return (subscription.to_bytes(8, "big") + index.to_bytes(2, "big")
            + period_start.toordinal().to_bytes(4, "big"))


def _int(raw: bytes | None) -> int:
    return 0 if raw is None else int.from_bytes(raw, "big")


def _bytes(n: int) -> bytes:
    return n.to_bytes(8, "big")


def covered(store: Store, txn: Any, call_key: bytes) -> tuple[int, int]:
    """(seconds, bundle price) a billed call (its key without the calls' tag) took from
    allowances; (0, 0): none."""
    raw = store.bundles.get(txn, COVERED + call_key)
    if raw is None:
        return 0, 0
    seconds, amount, _ = msgpack.unpackb(raw)
    return seconds, amount


def coverings(store: Store, txn: Any) -> Iterator[tuple[bytes, int]]:
    """(call key, bundle price) of every billed call included minutes covered."""
    for key, raw in store.bundles.items(txn, COVERED):
        yield key[len(COVERED):], msgpack.unpackb(raw)[1]


def give_back(store: Store, txn: Any, call_key: bytes) -> int:
    """Return a billed call's seconds to the allowances it took them from (it is another
    client's now, or no longer billed); the bundle price it paid."""
    raw = store.bundles.get(txn, COVERED + call_key)
    if raw is None:
        return 0
    _, amount, took = msgpack.unpackb(raw)
    for counter_key, n in took:
        key = _USED + bytes(counter_key)
        store.bundles.put(txn, key, _bytes(_int(store.bundles.get(txn, key)) - n))
    store.bundles.delete(txn, COVERED + call_key)
    return int(amount)
