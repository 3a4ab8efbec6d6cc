"""Rating: the documented face of the compiled engine.

:class:`Deck` opens a rate table's compiled deck *in place*: it holds one LMDB
read transaction and hands the engine a read-only view of the deck's pages in
LMDB's memory map. Nothing is copied, so any number of processes rating from
the same data directory share one physical copy of every deck, and a new
import, which replaces the compiled deck in one write transaction, is never
seen half-done: a Deck reads its snapshot until :meth:`Deck.refresh` moves it
to the newest one.

Arguments are checked here; the engine's loops run without the GIL. Money
crosses this boundary as :class:`~decimal.Decimal`; inside, it is integer nanos.

Threads: a Deck may be used from several threads at once. Each rating call
holds the store's gate shared; ``refresh()``, ``close()`` and a resize of the
LMDB map (which moves the memory the engine reads) take it exclusively, so
they wait for calls in flight. Code that uses :attr:`Deck.engine` directly
should hold :meth:`Deck.using` around it. After a resize a deck reads the
newest committed deck.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._engine import Engine, address_of
from .errors import (
    DeckFormatError,
    InvalidArgument,
    InvalidNumber,
    NoRate,
    RaterError,
    UnknownTable,
)
from .money import from_nano, to_nano
from .numbers import normalise_number
from .store import Store
from .tariff import MAX_SECONDS, RateTable
from .timeutil import format_instant, instant, zone

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Negative costs from the engine are statuses (ext/_deckformat.pxd, Status).
UNMATCHED, BAD_NUMBER, BAD_CALL, OVERFLOW = -1, -2, -3, -4


@dataclass(frozen=True)
class RatedCall:
    """One priced call."""

    number: str
    prefix: str
    destination: str
    start: int
    duration_s: int
    billed_seconds: int
    cost: Decimal
    currency: str
    table: str

    def to_json(self, tz: Any = None) -> dict[str, Any]:
        return {"table": self.table, "number": self.number, "prefix": self.prefix,
                "destination": self.destination,
                "start": format_instant(self.start, tz) if tz is not None else self.start,
                "duration": self.duration_s, "billed_seconds": self.billed_seconds,
                "cost": str(self.cost), "currency": self.currency}


@dataclass(frozen=True)
class Charge:
    """A stretch of a call billed by one tier of one row."""

    destination: str
    from_s: int
    increments: int
    increment_s: int
    price: Decimal
    unit_s: int

    @property
    def seconds(self) -> int:
        return self.increments * self.increment_s


@dataclass(frozen=True)
class Explained:
    """A priced call and how it was billed."""

    call: RatedCall
    connect_fee: Decimal
    charges: tuple[Charge, ...]
    truncated: bool
    #: The time profile of the row the call started in (None: a row without one).
    profile: str | None = None


@dataclass
class Batch:
    """Results of rating many calls; ``cost_nanos`` < 0 where a call was not priced."""

    cost_nanos: npt.NDArray[np.int64]
    billed_seconds: npt.NDArray[np.int64]
    row: npt.NDArray[np.int32]
    prefix_len: npt.NDArray[np.int8]
    priced: int

    @property
    def matched(self) -> npt.NDArray[np.bool_]:
        return self.cost_nanos >= 0


class _Using:
    """The context of :meth:`Deck.using`: a plain class, as it is on every rating call
    (a generator-based one costs more than the hold itself)."""

    __slots__ = ("_deck",)

    def __init__(self, deck: Deck) -> None:
        self._deck = deck

    def __enter__(self) -> Engine:
        self._deck.store.gate.shared.__enter__()
        try:
            return self._deck.engine
        except BaseException:
            self._deck.store.gate.shared.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        self._deck.store.gate.shared.__exit__(*exc)


class Deck:
    """A rate table's compiled deck, open for rating (see the module docstring)."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._txn: Any = None
        self._engine: Engine | None = None
        self._lost: RaterError | None = None
        self._attach()
        store.register(self)

    # -- lifetime

    def _attach(self) -> None:
        self._take(*self._open())

    def _open(self) -> tuple[Any, Engine, dict[str, Any]]:
        """A read transaction on the newest compiled deck, its engine and the table record."""
        txn = self.store.begin(buffers=True)
        try:
            raw = self.store.tables.get(txn, self.name.encode())
            if raw is None:
                raise UnknownTable(f"no rate table named {self.name!r}",
                                   hint="`rater deck list` shows the rate tables")
            record = _json(raw)
            blob = self.store.compiled.get(txn, self.name.encode())
            if blob is not None and address_of(blob) % 8:
                # LMDB aligns only values on overflow pages (larger than half a page);
                # a deck that small is copied, to the 8-byte alignment the engine reads.
                blob = bytes(blob)
            try:
                engine = Engine(blob, txn)
            except ValueError as exc:
                raise DeckFormatError(f"compiled deck of {self.name}: {exc}") from None
        except BaseException:
            txn.abort()
            raise
        return txn, engine, record

    def _take(self, txn: Any, engine: Engine, record: dict[str, Any]) -> None:
        self._lost = None
        self.table = RateTable.from_json(record["settings"])
        self.tz = zone(self.table.timezone)
        self.version: int = record["version"]
        self.stamp: int = record["stamp"]
        self._txn, self._engine = txn, engine
        self._row_facts: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None = None

    def _detach(self) -> None:
        self._engine = None
        if self._txn is not None:
            self._txn.abort()
            self._txn = None

    def _reattach(self) -> None:
        """After a resize of the map: the newest compiled deck, or closed with the reason."""
        try:
            self._attach()
        except RaterError as exc:
            self._lost = exc

    def refresh(self, renew: bool = False) -> bool:
        """Move to the newest compiled deck if the table changed; whether it did.

        ``renew``: take a new read snapshot even if it did not. A long-lived reader
        (a server) renews now and then: LMDB cannot reuse the pages written since
        the oldest snapshot, and the data file would grow with every write.

        Safe while other threads rate with this deck: the swap waits for calls
        in flight. If the table is gone, UnknownTable, and the deck stays as it was.
        """
        before = self.stamp
        with self.store.read() as txn:       # adopting a resized map reattaches: newest
            raw = self.store.tables.get(txn, self.name.encode())
        if raw is not None and _json(raw)["stamp"] == self.stamp and not renew:
            return self.stamp != before
        opened = self._open()
        with self.store.gate.exclusive():
            old = self._txn
            self._take(*opened)
            if old is not None:
                old.abort()
        return self.stamp != before

    def close(self) -> None:
        """Let the deck go (after calls in flight on any deck of the store finish)."""
        with self.store.gate.exclusive():
            self._detach()
        self.store.unregister(self)

    def __enter__(self) -> Deck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The compiled engine itself: plain integers in and out, no checks."""
        if self._engine is None:
            if self._lost is not None:
                raise self._lost
            raise InvalidArgument(f"deck {self.name} is closed")
        return self._engine

    def using(self) -> _Using:
        """``with deck.using() as engine``: the engine, with the store's gate held shared
        (no resize while it is used)."""
        return _Using(self)

    @property
    def currency(self) -> str:
        return self.table.currency

    # -- one call

    def instant(self, at: int | str | datetime | None) -> int:
        """An instant from an int, an ISO string (in the table's zone if naive) or a datetime."""
        return instant(at, self.tz)

    def rate(self, number: str, at: int | str | datetime | None = None, duration_s: int = 60,
             tech_prefix: str = "") -> RatedCall:
        """Price one call; NoRate when no row matches, InvalidNumber for a bad number."""
        digits, start = self._call(number, at, duration_s, tech_prefix)
        with self.using() as engine:
            # The raw number: the engine normalises it by the same rules (normalising
            # digits again would cut a second "00" from "+00...").
            cost, billed, row, plen = engine.rate(number, start, duration_s,
                                                  tech_prefix.encode())
            return self._rated(engine, number, digits, start, duration_s, cost, billed, row,
                               plen)

    def _call(self, number: str, at: int | str | datetime | None, seconds: int,
              tech_prefix: str, what: str = "duration") -> tuple[str, int]:
        """A call's arguments checked: the number's digits and the start instant."""
        digits = normalise_number(number, tech_prefix)
        start = self.instant(at)
        if not 0 <= seconds <= MAX_SECONDS:
            raise InvalidArgument(f"{what} {seconds} must be 0..{MAX_SECONDS} seconds")
        return digits, start

    def _rated(self, engine: Engine, number: str, digits: str, start: int, duration_s: int,
               cost: int, billed: int, row: int, plen: int) -> RatedCall:
        if cost == UNMATCHED:
            raise NoRate(f"no rate for {number} in table {self.name} at "
                         f"{format_instant(start, self.tz)}")
        if cost < 0:
            raise InvalidArgument(f"cannot price {number} for {duration_s} s (status {cost})")
        return RatedCall(number=digits, prefix=digits[:plen],
                         destination=engine.destination(row), start=start,
                         duration_s=duration_s, billed_seconds=billed,
                         cost=from_nano(cost, engine.row_decimals(row)),
                         currency=self.currency, table=self.name)

    def explain(self, number: str, at: int | str | datetime | None = None, duration_s: int = 60,
                tech_prefix: str = "") -> Explained:
        """Price one call and say how: each stretch billed by one tier of one row."""
        digits, start = self._call(number, at, duration_s, tech_prefix)
        with self.using() as engine:
            cost, billed, row, plen, stretches, truncated = engine.charges(
                number, start, duration_s, tech_prefix.encode())
            call = self._rated(engine, number, digits, start, duration_s, cost, billed, row,
                               plen)
            charges = []
            for r, tier, from_s, increments in stretches:
                _, price, unit, increment = engine.tier_info(tier)
                charges.append(Charge(engine.destination(r), from_s, increments, increment,
                                      from_nano(price), unit))
            info = engine.row_info(row)
        fee = info["connect_fee"] if billed else 0
        profile = list(self.table.profiles)[info["profile"]] if info["profile"] >= 0 else None
        return Explained(call, from_nano(fee), tuple(charges), truncated, profile)

    def max_duration(self, number: str, at: int | str | datetime | None, amount: Decimal,
                     limit_s: int = 86400, tech_prefix: str = "") -> int:
        """The longest call, up to ``limit_s``, whose cost does not exceed ``amount``."""
        _, start = self._call(number, at, limit_s, tech_prefix, "limit")
        try:
            nanos = to_nano(amount)
        except ValueError as exc:
            raise InvalidArgument(f"amount: {exc}") from None
        with self.using() as engine:
            seconds, row = engine.max_duration(number, start, nanos, limit_s,
                                               tech_prefix.encode())
        if row == UNMATCHED:
            raise NoRate(f"no rate for {number} in table {self.name}")
        if row < 0:
            raise InvalidNumber(f"{number!r} is not a dialled number")
        return int(seconds)

    # -- many calls

    def rate_batch(self, numbers: npt.ArrayLike, starts: npt.ArrayLike,
                   durations: npt.ArrayLike, tech_prefix: str = "") -> Batch:
        """Rate arrays of calls without the GIL.

        ``numbers``: uint64 E.164 digits, or a bytes array (dtype ``S``) of raw
        numbers to normalise; ``starts``: int64 instants; ``durations``: int64
        seconds.
        """
        with self.using() as engine:
            return rate_arrays(engine, numbers, starts, durations, tech_prefix)

    def destinations(self, rows: npt.NDArray[np.int32]) -> list[str]:
        """Destination names for a batch's rows ('' where unmatched)."""
        names, dest, _ = self.row_facts()
        return [names[dest[r]] if r >= 0 else "" for r in rows.tolist()]

    def costs(self, batch: Batch) -> list[Decimal | None]:
        """A batch's costs as Decimals with their rows' decimal places (None: unmatched)."""
        _, _, decimals = self.row_facts()
        return [from_nano(c, int(decimals[r])) if c >= 0 else None
                for c, r in zip(batch.cost_nanos.tolist(), batch.row.tolist(), strict=True)]

    def row_facts(self, engine: Engine | None = None
                  ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        """For the deck now attached: destination names (an object array), and each
        compiled row's index into them and its decimal places (copies, read once per
        attach, so a batch indexes them with its ``row`` array).

        ``engine``: the caller's, when it already holds it with :meth:`using`.
        """
        facts = self._row_facts
        if facts is None:
            if engine is None:
                with self.using() as held:
                    return self.row_facts(held)
            facts = self._row_facts = self._read_row_facts(engine)
        return facts

    def _read_row_facts(self, engine: Engine
                        ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        import numpy as np

        from . import deckformat as fmt

        h = engine.header()
        blob = self.store.compiled.get(self._txn, self.name.encode())
        rows = np.frombuffer(blob, fmt.ROW_DTYPE, count=h["n_rows"], offset=h["off_rows"])
        listed = engine.destination_names()
        names = np.empty(len(listed), dtype=object)
        names[:] = listed
        return names, rows["dest"].copy(), rows["decimals"].copy()


def rate_arrays(engine: Engine, numbers: npt.ArrayLike, starts: npt.ArrayLike,
                durations: npt.ArrayLike, tech_prefix: str = "") -> Batch:
    """Deck.rate_batch on an engine the caller holds (with Deck.using)."""
    import numpy as np

    nums = np.asarray(numbers)
    st = np.ascontiguousarray(starts, dtype=np.int64)
    du = np.ascontiguousarray(durations, dtype=np.int64)
    n = len(st)
    if nums.dtype.kind == "S":
        if nums.dtype.itemsize == 0:
            nums = nums.astype("S1")
        arg: Any = np.ascontiguousarray(nums).view(np.uint8).reshape(n, nums.dtype.itemsize)
    elif nums.dtype.kind in "iu":
        arg = np.ascontiguousarray(nums, dtype=np.uint64)
    else:
        raise InvalidArgument("numbers must be a uint64 array or a bytes (S) array")
    out = Batch(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int32),
                np.empty(n, np.int8), 0)
    out.priced = engine.rate_batch(arg, st, du, out.cost_nanos, out.billed_seconds, out.row,
                                   out.prefix_len, tech_prefix.encode())
    return out


def _json(raw: bytes) -> dict[str, Any]:
    return dict(json.loads(bytes(raw)))
