"""The journal: the book of record for money, and the balances it moves.

Every money movement is one journal entry, numbered in the order it was
written, with an idempotency key, written in the same LMDB write transaction
as the balance it changes. So a balance always equals the sum of its client's
entries (``rater check`` proves it), and a movement posted twice under one key
moves money once.

One sign convention everywhere: a client in credit has a positive balance.

``live``   payments and adjustments minus rated calls (and their corrections)
``fixed``  payments and adjustments minus issued invoices (an ``invoice`` entry
           moves fixed alone: by minus what the invoice adds to what the
           client owes, its adjustments being in fixed already)
``available``  live + credit limit for a prepaid client; unlimited (None) for
           a postpaid one

The types, and which way they move the balances (seed 004's PortaBilling
adjustments, whose balance counts what the customer owes, turned round):

====================  ======  ===========================================
type                  sign    notes
====================  ======  ===========================================
rated-call            -       a CDR's price (live only)
bundle-call           -       a CDR's seconds covered by included minutes, at
                              the bundle price, maybe 0 (live only)
rerate                +/-     a rerating correction (live only)
manual-charge         -
manual-credit         +
manual-payment        +
promotional-credit    +
refund                -       no more than the live balance in credit
ecommerce-payment     +
ecommerce-refund      -
authorization         0       reserves an amount until it expires
capture               +       at most the authorized amount, before expiry
void                  0       cancels an open authorization
invoice               +/-     an invoice issued (-), voided or credited (+);
                              written by bill runs, fixed only
====================  ======  ===========================================

An entry is stored as a msgpack array (see :class:`Entry`); amounts are signed
integers of nanos (10**-9 of the client's currency).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgpack

from . import notifications
from .clients import Client, Registry, parse_amount, show_amount
from .errors import CheckFailed, Conflict, InvalidArgument, Refused, StoreError
from .store import Store

#: Direction of each type on the balances: +1 raises, -1 lowers, 0 leaves alone.
SIGNS = {
    "rated-call": -1,
    "bundle-call": -1,     # a call's seconds covered by included minutes (rater.bundles)
    "rerate": 0,           # signed amount, as computed
    "manual-charge": -1,
    "manual-credit": 1,
    "manual-payment": 1,
    "promotional-credit": 1,
    "refund": -1,
    "ecommerce-payment": 1,
    "ecommerce-refund": -1,
    "authorization": 0,
    "capture": 1,
    "void": 0,
    "invoice": 0,          # signed amount, as the invoice has it
    "recurring-fee": -1,   # a subscription's fee for a whole period (rater.subscriptions)
    "prorated-fee": -1,    # ... for the days of a period it holds
    "one-off-fee": -1,
    "fee-credit": 1,       # the days of a charged period after a subscription ended
}
#: Types that only move the live balance (calls); the others move fixed (and live too,
#: but for INVOICE_TYPES).
CALL_TYPES = ("rated-call", "bundle-call", "rerate")
#: The entries that bill a call (a call covered in part by included minutes has both).
BILLED_TYPES = ("rated-call", "bundle-call")
#: Types that only move the fixed balance (what invoices add to what a client owes).
INVOICE_TYPES = ("invoice",)
#: Key prefixes of the entries rater writes itself: a person's key may not take them.
RESERVED_KEYS = ("cdr:", "invoice:", "fee:")
#: Types of subscription fees, posted by rater (rater.subscriptions).
FEE_TYPES = ("recurring-fee", "prorated-fee", "one-off-fee", "fee-credit")
#: Types a person posts with ``rater transaction add``.
TRANSACTION_TYPES = tuple(t for t in SIGNS if t not in CALL_TYPES + INVOICE_TYPES + FEE_TYPES)
AUTHORIZATION_DAYS = 7
#: What a call's entry (rated-call, bundle-call, rerate) keeps of it (a msgpack array, in
#: this order).
CALL_FIELDS = ("source", "id", "rev", "number", "date", "duration", "billed", "prefix",
               "destination", "table", "account", "cost", "vendor")
_MAX = 2**63 - 1


@dataclass
class Entry:
    """One money movement."""

    number: int
    type: str
    client: int
    #: Signed nanos: what the movement adds to the balance.
    amount: int
    #: When it was written (UNIX seconds).
    at: int
    #: The instant that places it in a period (a call's bill event; else ``at``).
    date: int
    key: str
    ref: int | None = None
    note: str | None = None
    #: A call's facts (:data:`CALL_FIELDS`) for the entries of CALL_TYPES.
    call: list[Any] | None = None
    #: The amount an authorization reserves (or a void releases); it moves no balance.
    held: int | None = None

    def pack(self) -> bytes:
        return _pack([self.type, self.client, self.amount, self.at, self.date, self.key,
                      self.ref, self.note, self.call, self.held])

    def __post_init__(self) -> None:
        if self.key is None and self.call is not None:
            # A rated call's key is implied by its call (stored without it).
            self.key = f"cdr:{self.call[0]}:{self.call[1]}"

    @classmethod
    def unpack(cls, number: int, raw: bytes) -> Entry:
        return cls(number, *msgpack.unpackb(raw))

    @property
    def moves_fixed(self) -> bool:
        return self.type not in CALL_TYPES

    @property
    def moves_live(self) -> bool:
        return self.type not in INVOICE_TYPES

    def to_json(self, clients: dict[int, str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"number": self.number, "type": self.type,
                             "client": (clients or {}).get(self.client, self.client),
                             "amount": show_amount(self.amount), "at": self.at,
                             "date": self.date, "key": self.key}
        if self.ref is not None:
            d["ref"] = self.ref
        if self.note is not None:
            d["note"] = self.note
        if self.held is not None:
            d["held"] = show_amount(self.held)
        if self.call is not None:
            d["call"] = dict(zip(CALL_FIELDS, self.call, strict=True))
            cost = d["call"]["cost"]
            d["call"]["cost"] = None if cost is None else show_amount(cost)
        return d


_pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack


def _num(n: int) -> bytes:
    return n.to_bytes(8, "big")


@dataclass
class Balance:
    client: str
    currency: str
    live: int
    fixed: int
    #: None: unlimited (postpaid)
    available: int | None
    credit_limit: int
    mode: str
    low: bool

    def to_json(self) -> dict[str, Any]:
        return {"client": self.client, "currency": self.currency,
                "live": show_amount(self.live), "fixed": show_amount(self.fixed),
                "available": None if self.available is None else show_amount(self.available),
                "credit_limit": show_amount(self.credit_limit), "mode": self.mode,
                "low": self.low}


def read_balance(store: Store, txn: Any, client_id: int) -> tuple[int, int]:
    raw = store.balances.get(txn, client_id.to_bytes(4, "big"))
    if raw is None:
        return 0, 0
    live, fixed = msgpack.unpackb(raw)
    return int(live), int(fixed)


def has_entries(store: Store, txn: Any, client_id: int) -> bool:
    return store.balances.get(txn, client_id.to_bytes(4, "big")) is not None


def available(client: Client, live: int) -> int | None:
    return None if client.mode == "postpaid" else live + client.credit_limit


def add_move(sums: dict[int, list[int]], e: Entry) -> None:
    """Add what ``e`` moves to its client's [live, fixed] in ``sums``."""
    s = sums.setdefault(e.client, [0, 0])
    if e.moves_live:
        s[0] += e.amount
    if e.moves_fixed:
        s[1] += e.amount


def last_number(store: Store, txn: Any) -> int:
    """The number of the journal's last entry (0: none yet)."""
    last = store.journal.last(txn)
    return int.from_bytes(last, "big") if last else 0


def append(store: Store, txn: Any, entries: list[Entry]) -> int:
    """Write ``entries`` (numbered here) and move their clients' balances, in ``txn``.

    Returns the first entry's number.
    """
    deltas: dict[int, list[int]] = {}
    for e in entries:
        add_move(deltas, e)
    first = append_packed(store, txn, [e.pack() for e in entries], deltas)
    for i, e in enumerate(entries):
        e.number = first + i
    return first


def append_packed(store: Store, txn: Any, packed: list[bytes],
                  deltas: Mapping[int, Sequence[int]]) -> int:
    """Write packed entries after the last one and add ``deltas`` (client -> live, fixed
    change) to the balances, in ``txn``; the caller's deltas must be those of the entries.
    """
    first = last_number(store, txn) + 1
    from . import _ingest

    # Not putmulti(append=True): the journal shares the main database with other spaces.
    keys = _ingest.numbered(store.journal.tag, first, len(packed))
    _, added = txn.cursor().putmulti(list(zip(keys, packed, strict=True)), overwrite=False)
    if added != len(packed):
        raise StoreError(f"journal entries {first}.. exist already; nothing was written")
    moved = []
    for cid, (dl, df) in deltas.items():
        live, fixed = read_balance(store, txn, cid)
        live += dl
        fixed += df
        if not (-_MAX <= live <= _MAX and -_MAX <= fixed <= _MAX):
            raise Refused(f"client {cid}: the balance would leave the range rater stores")
        store.balances.put(txn, cid.to_bytes(4, "big"), _pack([live, fixed]))
        if dl:
            moved.append((cid, live))
    if moved:
        notifications.check(store, txn, moved, int(time.time()))
    return first


def unposted(store: Store, txn: Any, entries: Iterable[Entry]) -> list[Entry]:
    """The entries whose idempotency keys are not in the journal yet."""
    return [e for e in entries if store.keys.get(txn, e.key.encode()) is None]


def append_keyed(store: Store, txn: Any, entries: list[Entry]) -> None:
    """Append entries (none of whose keys is taken) and record their keys, in ``txn``."""
    if entries:
        append(store, txn, entries)
        for e in entries:
            store.keys.put(txn, e.key.encode(), _num(e.number))


def post_many(store: Store, entries: list[Entry]) -> list[Entry]:
    """Write entries that carry their own idempotency keys, in one transaction, skipping
    each whose key is in the journal already; returns those written."""
    def apply(txn: Any) -> list[Entry]:
        new = unposted(store, txn, entries)
        append_keyed(store, txn, new)
        return new

    return store.write(apply)


def iter_entries(store: Store, txn: Any, after: int = 0) -> Iterator[Entry]:
    """Entries numbered above ``after``, in order (to tail the journal)."""
    cur = txn.cursor()
    tag = store.journal.tag
    if not cur.set_range(tag + _num(after + 1)):
        return
    for key, raw in cur:
        if not key.startswith(tag):
            break
        yield Entry.unpack(int.from_bytes(key[len(tag):], "big"), raw)


@dataclass
class PostResult:
    entry: Entry
    #: True when the key was already posted with the same content: nothing moved.
    duplicate: bool
    balance: tuple[int, int]
    #: True when the payment restarted a suspended prepaid client (its fees due today
    #: were debited: ``balance`` is after them).
    restarted: bool = False


class Journal:
    """Posting money movements, reading balances, checking them against the journal."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = Registry(store)

    def post(self, client_name: str, type_: str, amount: str | Decimal | None, *,
             key: str | None = None, ref: int | None = None, note: str | None = None,
             currency: str | None = None, expires: int | None = None,
             now: int | None = None) -> PostResult:
        """Post one transaction (``rater transaction add``)."""
        if type_ not in TRANSACTION_TYPES:
            raise InvalidArgument(f"unknown transaction type {type_!r}",
                                  hint="one of " + ", ".join(TRANSACTION_TYPES))
        if type_ in ("capture", "void") and ref is None:
            raise InvalidArgument(f"a {type_} names its authorization (--ref ENTRY)")
        if type_ not in ("capture", "void") and ref is not None:
            raise InvalidArgument(f"a {type_} takes no --ref")
        if amount is None:
            if type_ != "void":
                raise InvalidArgument(f"a {type_} needs an amount")
            nanos = None
        else:
            nanos = parse_amount(amount, "amount")
            if nanos == 0:
                raise InvalidArgument("amount: must be more than 0")
        if key is not None and not (0 < len(key) <= 200):
            raise InvalidArgument("key: 1 to 200 characters")
        if key is not None and key.startswith(RESERVED_KEYS):
            raise InvalidArgument(f"key {key!r}: keys beginning {' or '.join(RESERVED_KEYS)} "
                                  f"are rater's own (calls, invoices and fees)")
        if note is not None and len(note) > 1000:
            raise InvalidArgument("note: at most 1000 characters")
        now = int(time.time()) if now is None else now

        def apply(txn: Any) -> PostResult:
            client = self.registry.get_client(txn, client_name)
            if currency is not None and currency != client.currency:
                raise InvalidArgument(f"client {client.name} is billed in {client.currency}, "
                                      f"not {currency}")
            hold = None
            amt = nanos
            if ref is not None:
                hold = self._hold(txn, client, ref)
                if amt is None:
                    amt = hold[1]
            assert amt is not None
            signed = SIGNS[type_] * amt
            entry = Entry(0, type_, client.id, signed, now, now,
                          key or f"tx:{secrets.token_hex(12)}", ref, note, None,
                          amt if type_ in ("authorization", "void") else None)
            if key is not None:
                seen = self.store.keys.get(txn, key.encode())
                if seen is not None:
                    n = int.from_bytes(seen, "big")
                    old = Entry.unpack(n, self.store.journal.get(txn, _num(n)))
                    same = (old.type, old.client, old.amount, old.ref, old.note, old.held) == \
                        (entry.type, entry.client, entry.amount, ref, note, entry.held)
                    if not same:
                        raise Conflict(f"key {key!r} was used for entry {n} "
                                       f"({old.type} {show_amount(abs(old.amount))}) with "
                                       f"other content; nothing was posted")
                    return PostResult(old, True, read_balance(self.store, txn, client.id))
            live, _ = read_balance(self.store, txn, client.id)
            if type_ == "refund" and amt > max(live, 0):
                raise Refused(f"a refund of {show_amount(amt)} is more than the balance in "
                              f"credit ({show_amount(max(live, 0))} {client.currency})")
            if hold is not None:
                _, h_amount, h_expires, h_state = hold
                if h_state != "open":
                    raise Refused(f"authorization {ref} is {h_state}")
                if now >= h_expires:
                    raise Refused(f"authorization {ref} expired")
                if type_ == "capture" and amt > h_amount:
                    raise Refused(f"a capture of {show_amount(amt)} is more than authorization "
                                  f"{ref} ({show_amount(h_amount)})")
                if type_ == "void" and amt != h_amount:
                    raise InvalidArgument(f"a void cancels all of authorization {ref} "
                                          f"({show_amount(h_amount)})")
            append(self.store, txn, [entry])
            if key is not None:
                self.store.keys.put(txn, key.encode(), _num(entry.number))
            if type_ == "authorization":
                until = now + AUTHORIZATION_DAYS * 86400 if expires is None else expires
                if until <= now:
                    raise InvalidArgument("an authorization must expire in the future")
                self.store.holds.put(txn, _num(entry.number),
                                     _pack([client.id, amt, until, "open"]))
            elif hold is not None:
                self.store.holds.put(txn, _num(ref or 0), _pack(
                    [hold[0], hold[1], hold[2], "captured" if type_ == "capture" else "voided"]))
            return PostResult(entry, False, read_balance(self.store, txn, client.id))

        result: PostResult = self.store.write(apply)
        if SIGNS[type_] > 0 and not result.duplicate:
            # Money in: a client a prepaid run suspended is restarted as soon as it pays.
            from .subscriptions import restart_if_paid

            if restart_if_paid(self.store, client_name, now):
                result.restarted = True
                with self.store.read() as txn:
                    result.balance = read_balance(self.store, txn, result.entry.client)
        return result

    def _hold(self, txn: Any, client: Client, ref: int) -> tuple[int, int, int, str]:
        raw = self.store.holds.get(txn, _num(ref))
        if raw is None:
            raise Refused(f"entry {ref} is not an authorization")
        h_client, h_amount, h_expires, h_state = msgpack.unpackb(raw)
        if h_client != client.id:
            raise Refused(f"authorization {ref} belongs to another client")
        return h_client, h_amount, h_expires, h_state

    # -- reading

    def balance(self, client_name: str) -> Balance:
        with self.store.read() as txn:
            client = self.registry.get_client(txn, client_name)
            live, fixed = read_balance(self.store, txn, client.id)
        avail = available(client, live)
        # Below the threshold: as the notices count it, live + credit limit (a postpaid
        # client's too).
        low = (client.low_balance_threshold is not None
               and live + client.credit_limit < client.low_balance_threshold)
        return Balance(client.name, client.currency, live, fixed, avail, client.credit_limit,
                       client.mode, low)

    def balances(self) -> dict[int, tuple[int, int]]:
        with self.store.read() as txn:
            return {int.from_bytes(k, "big"): tuple(msgpack.unpackb(v))
                    for k, v in self.store.balances.items(txn)}

    def entries(self, client_name: str | None = None, *, since: int | None = None,
                until: int | None = None, types: Iterable[str] | None = None) -> list[Entry]:
        """A client's entries (or everybody's) whose date is in [since, until)."""
        wanted = set(types) if types is not None else None
        with self.store.read() as txn:
            cid = self.registry.client_id(txn, client_name) if client_name else None
            return [e for e in iter_entries(self.store, txn)
                    if (cid is None or e.client == cid)
                    and (since is None or e.date >= since)
                    and (until is None or e.date < until)
                    and (wanted is None or e.type in wanted)]

    def check(self) -> list[str]:
        """Differences between stored balances and their journal; [] when all agree.

        Also proves that no call is billed twice: the entries of each call sum
        to minus the price its record says it stands at.
        """
        problems: list[str] = []
        sums: dict[int, list[int]] = {}
        per_call: dict[tuple[str, str], int] = {}
        with self.store.read() as txn:
            names = {c.id: c.name for c in self.registry.iter_clients(txn)}
            for e in iter_entries(self.store, txn):
                add_move(sums, e)
                if e.call is not None:
                    k = (e.call[0], e.call[1])
                    per_call[k] = per_call.get(k, 0) + e.amount
            stored = {int.from_bytes(k, "big"): msgpack.unpackb(v)
                      for k, v in self.store.balances.items(txn)}
            from .ingest import call_amounts

            billed = call_amounts(self.store, txn)
        for cid in sorted(set(sums) | set(stored)):
            want = sums.get(cid, [0, 0])
            have = stored.get(cid, [0, 0])
            name = names.get(cid, f"#{cid}")
            for i, what in enumerate(("live", "fixed")):
                if want[i] != have[i]:
                    problems.append(f"client {name}: {what} balance {show_amount(have[i])}, "
                                    f"journal {show_amount(want[i])}")
        for k in sorted(set(per_call) | set(billed)):
            if per_call.get(k, 0) != -billed.get(k, 0):
                problems.append(f"call {k[1]} of {k[0]}: stands at "
                                f"{show_amount(billed.get(k, 0))}, journal "
                                f"{show_amount(-per_call.get(k, 0))}")
        return problems

    def require_consistent(self) -> None:
        CheckFailed.unless_none(self.check())
