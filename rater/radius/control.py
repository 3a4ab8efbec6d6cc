"""Call control: whether a call may go through and for how long, and its accounting.

Independent of the wire: the RADIUS agent (and the gRPC one) turn packets into
these calls and the answers back into packets.

**Authorization.** The account is found as ``cdr import`` finds it (NAS address,
User-Name, Calling-Station-Id, tech prefix of the number), its password checked
when it has one, its client's status and capacity checked (a lower capacity
while below its low-balance threshold, rater.notifications) and the number rated
with the client's table. A prepaid client is granted the included minutes of its
subscriptions left for the number (rater.bundles; less what its calls in
progress hold), then the longest duration its available balance pays for (live
balance + credit limit - what its calls in progress have reserved; the exact
inverse of pricing), up to its max call length; a postpaid client, its max call
length.

**Calls in progress** (``g/``, by call; ``x/``, by the instant each lapses;
``u/``, their sum per client): an accepted prepaid call reserves the money of
its granted time; a call counts against capacity from its Accept (or its Start)
to its Stop. The check and the reservation are one LMDB write transaction, and
LMDB has one writer at a time across every process: concurrent calls of a
client never reserve more than it has, whichever worker answers. A call that
never sends Stop stops counting after its granted time plus
``radius.reservation_grace`` (from the Accept), or after the grace from its
last Interim-Update, whichever is later: each write transaction that decides
calls first lets go of those that have lapsed, oldest first. Calls are keyed by
their own key, not their client's, so that a batch of new calls from many
clients writes a few LMDB pages rather than one per client.

**Accounting.** Start registers the call, Interim-Update keeps it registered,
Stop bills it through ``cdr import``'s path (so mismatches and rerating see it)
and releases it, in one transaction. The CDR's identity is (``radius``,
NAS address / Acct-Session-Id): a Stop sent twice bills once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from ..bundles import hold
from ..clients import AccountIndex, Client, show_amount
from ..engine import Deck
from ..errors import InvalidNumber
from ..ingest import Pricer, bill_call
from ..journal import read_balance
from ..notifications import below
from ..numbers import normalise_number
from ..store import Store

log = logging.getLogger("rater.serve")

#: Seconds between checks for changed clients, accounts and decks.
REFRESH_EVERY = 0.5
SOURCE = "radius"
START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8

# A call in progress (g/ value, msgpack): its client, what it reserved, for how long,
# when it stops counting, whether it started, its NAS, the number it was granted for.
# Then, for a prepaid call, the [counter, seconds] it was granted of included minutes.
C_CLIENT, C_AMOUNT, C_GRANTED, C_EXPIRES, C_STARTED, C_NAS, C_NUMBER, C_BUNDLE = range(8)
# A client's calls in progress in sum (u/ value): how many, what they reserve.
S_COUNT, S_RESERVED = range(2)
#: Lapsed calls let go by one write transaction at most (the rest by the next ones;
#: until then they count, which errs on the side of the client's money).
SWEEP = 1000


@dataclass
class Call:
    """A call as the switch describes it."""

    nas: str
    user_name: str = ""
    password: str | None = None
    calling: str = ""
    called: str = ""
    session_id: str = ""

    def key(self) -> bytes:
        """How the call is known: its Acct-Session-Id, else who calls whom from where."""
        if self.session_id:
            return _short(b"s" + self.nas.encode() + b"\0" + self.session_id.encode())
        return self.alternate_key()

    def alternate_key(self) -> bytes:
        return _short(b"k" + "\0".join((self.nas, self.user_name, self.calling,
                                        self.called)).encode())

    def cdr_id(self) -> str:
        """The id of the CDR its Stop makes (source ``radius``)."""
        return f"{self.nas}/{self.session_id}"


def _short(key: bytes) -> bytes:
    """A call key that fits LMDB's keys (511 bytes, with the space and client prefixes):
    a long one by its SHA-256."""
    return key if len(key) <= 200 else b"h" + hashlib.sha256(key).digest()


@dataclass
class Decision:
    """An authorization: accepted, or the outcome that rejects it."""

    #: "accepted", or one of the reject outcomes (the keys of radius.return_codes).
    outcome: str
    message: str
    seconds: int = 0
    #: What the client may spend (nanos; None: postpaid, unlimited).
    credit: int | None = None
    currency: str = ""
    prepaid: bool = False
    reserved: int = 0

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"

    def credit_text(self) -> str:
        return "" if self.credit is None else show_amount(self.credit)


class _Pending:
    """A call that passed every check but capacity and money."""

    __slots__ = ("call", "client", "deck", "destination", "digits", "key", "prepaid")

    def __init__(self, call: Call, client: Client, deck: Deck, digits: str,
                 destination: str) -> None:
        self.call = call
        self.client = client
        self.deck = deck
        self.digits = digits
        self.destination = destination
        self.key = call.key()
        self.prepaid = client.mode == "prepaid"


class CallControl:
    """Authorization and accounting over one store (one per worker process)."""

    def __init__(self, store: Store, reservation_grace: int = 120) -> None:
        self.store = store
        self.grace = reservation_grace
        self._index = AccountIndex(store)
        self._pricer = Pricer(store, self._index)
        self._checked = time.monotonic()

    def close(self) -> None:
        self._pricer.close()

    # -- keeping up with changes

    def refresh(self, force: bool = False) -> None:
        """See changed clients, accounts and decks (at most every REFRESH_EVERY s)."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_EVERY:
            return
        self._checked = now
        if self._index.stale():
            self._pricer.close()
            self._index = AccountIndex(self.store)
            self._pricer = Pricer(self.store, self._index)
        else:
            self._pricer.renew()

    # -- authorization

    def authorize(self, call: Call, now: int | None = None) -> Decision:
        return self.authorize_many([call], now)[0]

    def authorize_many(self, calls: list[Call], now: int | None = None) -> list[Decision]:
        """Decide several calls: those that reserve or count against capacity in one
        write transaction, in order (as if one after the other)."""
        self.refresh()
        now = int(time.time()) if now is None else now
        decisions: list[Decision | None] = []
        waiting: list[tuple[int, _Pending]] = []
        for k, call in enumerate(calls):
            got = self._check(call, now)
            if isinstance(got, _Pending):
                decisions.append(None)
                waiting.append((k, got))
            else:
                decisions.append(got)
        if waiting:
            for (k, _), d in zip(waiting, self._register([p for _, p in waiting], now),
                                 strict=True):
                decisions[k] = d
        return [d for d in decisions if d is not None]

    def _check(self, call: Call, now: int) -> Decision | _Pending:
        """Everything but capacity and money: a decision, or what registering needs."""
        index = self._index
        account, rest = index.find(call.nas, call.user_name, call.calling, call.called)
        if account is None:
            return Decision("unknown_account", "unknown account")
        client, why = index.client_of(account)
        if why is not None:
            return Decision("unknown_account", "unknown account")
        if not account.password_matches(call.password):
            return Decision("bad_password", "wrong password")
        if client.status != "active":
            return Decision("client_blocked", f"client {client.status}")
        plan = index.plan(account)
        try:
            e164 = plan.to_e164(rest) if plan is not None else normalise_number(rest)
        except InvalidNumber:
            return Decision("no_rate", "not a dialled number")
        table = account.rate_table or client.rate_table_at(now)
        deck = self._pricer.deck(table) if table is not None else None
        if deck is None or deck.currency != client.currency:
            return Decision("no_rate", "no rate table")
        digits = "+" + e164
        destination = ""
        # The gate itself rather than deck.using(): the same hold, for less.
        with self.store.gate.shared:
            engine = deck.engine
            cost, _, row, _ = engine.rate(digits, now, 0)
            if cost >= 0 and self._pricer.allowances().destinations_matter:
                names, dest_of, _ = deck.row_facts(engine)
                destination = str(names[dest_of[row]])
        if cost < 0:
            return Decision("no_rate", "no rate for the number")
        if (client.mode == "postpaid" and client.capacity is None
                and client.low_balance_capacity is None):
            return Decision("accepted", "", seconds=client.max_call_length,
                            currency=client.currency)
        return _Pending(call, client, deck, digits, destination)

    def _grant(self, p: _Pending, available: int | None, now: int, free: int = 0
               ) -> tuple[int, int]:
        """The longest call ``free`` seconds of included minutes and then ``available``
        pay for, and the money it reserves (postpaid: the max call length, nothing
        reserved). The deck is held only while it prices: a write that grows the map
        waits for no reader."""
        limit = p.client.max_call_length
        if available is None:
            return limit, 0
        free = min(free, limit)
        if available <= 0 or free == limit:
            return free, 0
        with self.store.gate.shared:
            engine = p.deck.engine
            seconds, _ = engine.max_duration(p.digits, now, available, limit - free)
            if seconds <= 0:
                return free, 0
            amount, _, _, _ = engine.rate(p.digits, now, seconds)
        return free + seconds, max(amount, 0)

    def _included(self, txn: Any, p: _Pending, now: int) -> list[list[Any]]:
        """What a prepaid call may take of its client's included minutes now: a
        [counter, seconds] share of each allowance with seconds left, in order (less
        what calls in progress were granted)."""
        allowances = self._pricer.allowances()
        return [[counter, left] for counter, a in allowances.for_call(
                    p.client, now, p.digits[1:], p.destination)
                if (left := allowances.left(txn, counter, a, reserved=True)) > 0]

    def _register(self, pending: list[_Pending], now: int) -> list[Decision]:
        """Check capacity and reserve, in one write transaction (requests seen before are
        answered from a read transaction)."""
        answers: list[Decision | None] = [None] * len(pending)
        with self.store.read() as txn:
            if not self._lapse_due(txn, now):
                for k, p in enumerate(pending):
                    raw = self.store.calls_up.get(txn, p.key)
                    if raw is not None:
                        # The same call asking again (a retransmission): the same answer.
                        mine = msgpack.unpackb(raw)
                        if (mine[C_CLIENT] == p.client.id and mine[C_EXPIRES] > now
                                and mine[C_NUMBER] == p.digits):
                            answers[k] = self._same_answer(txn, p, mine)
        todo = [k for k, a in enumerate(answers) if a is None]
        if todo:
            def apply(txn: Any) -> list[Decision]:
                self._sweep(txn, now)
                return [self._register_one(txn, pending[k], now) for k in todo]

            for k, d in zip(todo, self.store.write(apply), strict=True):
                answers[k] = d
        return [a for a in answers if a is not None]

    def _same_answer(self, txn: Any, p: _Pending, mine: list[Any]) -> Decision:
        client = p.client
        credit = None
        if p.prepaid:
            live, _ = read_balance(self.store, txn, client.id)
            credit = (live + client.credit_limit - self._summary(txn, client.id)[S_RESERVED]
                      + mine[C_AMOUNT])
        return Decision("accepted", "", seconds=mine[C_GRANTED], credit=credit,
                        currency=client.currency, prepaid=p.prepaid, reserved=mine[C_AMOUNT])

    def _register_one(self, txn: Any, p: _Pending, now: int) -> Decision:
        client = p.client
        if self._billed(txn, p.call):
            # A late copy of the request of a call already stopped and billed.
            return Decision("call_ended", "the call has ended")
        raw = self.store.calls_up.get(txn, p.key)
        if raw is not None:
            mine = msgpack.unpackb(raw)
            if (mine[C_CLIENT] == client.id and mine[C_NUMBER] == p.digits
                    and mine[C_EXPIRES] > now):
                return self._same_answer(txn, p, mine)
            # The same session asking for another number (or as another client, or
            # lapsed and not yet let go): decided again, from scratch.
            self._remove(txn, p.key, mine)
        count, reserved = self._summary(txn, client.id)
        capacity = client.capacity
        if client.low_balance_capacity is not None and below(self.store, txn, client.id):
            capacity = min(capacity if capacity is not None else client.low_balance_capacity,
                           client.low_balance_capacity)
        if capacity is not None and count >= capacity:
            return Decision("capacity", "too many calls in progress")
        credit = None
        shares: list[list[Any]] = []
        if p.prepaid:
            live, _ = read_balance(self.store, txn, client.id)
            credit = live + client.credit_limit - reserved
            shares = self._included(txn, p, now)
        seconds, amount = self._grant(p, credit, now, sum(n for _, n in shares))
        if seconds <= 0:
            return Decision("no_balance", "no balance", credit=credit,
                            currency=client.currency, prepaid=True)
        granted, left = [], seconds
        for counter, n in shares:
            if left > 0:
                granted.append([counter, min(n, left)])
                left -= n
        self._add(txn, p.key, [client.id, amount, seconds, now + seconds + self.grace, False,
                               p.call.nas, p.digits, granted], (count, reserved))
        return Decision("accepted", "", seconds=seconds, credit=credit,
                        currency=client.currency, prepaid=p.prepaid, reserved=amount)

    # -- calls in progress: a g/ record per call, an x/ key per record (the instant it
    # lapses, then the call key: oldest first), and per client (u/) their count and what
    # they reserve, kept in step with the records by _add and _remove alone.

    def _summary(self, txn: Any, client_id: int) -> tuple[int, int]:
        """(count, reserved) of a client's calls in progress, lapsed ones not yet let go
        included."""
        raw = self.store.calls_load.get(txn, client_id.to_bytes(4, "big"))
        if raw is None:
            return 0, 0
        count, reserved = msgpack.unpackb(raw)
        return count, reserved

    def _put_summary(self, txn: Any, client_id: int, count: int, reserved: int) -> None:
        key = client_id.to_bytes(4, "big")
        if count:
            self.store.calls_load.put(txn, key, msgpack.packb((count, reserved)))
        else:
            self.store.calls_load.delete(txn, key)

    @staticmethod
    def _lapse_key(expires: int, key: bytes) -> bytes:
        return expires.to_bytes(8, "big") + key

    def _add(self, txn: Any, key: bytes, record: list[Any],
             summary: tuple[int, int] | None = None) -> None:
        """Register a call in progress under ``key`` (none is there; ``summary``: its
        client's, if just read)."""
        count, reserved = summary or self._summary(txn, record[C_CLIENT])
        self.store.calls_up.put(txn, key, msgpack.packb(record))
        self.store.calls_lapse.put(txn, self._lapse_key(record[C_EXPIRES], key), b"")
        self._put_summary(txn, record[C_CLIENT], count + 1, reserved + record[C_AMOUNT])
        if len(record) > C_BUNDLE:
            hold(self.store, txn, record[C_BUNDLE], 1)

    def _remove(self, txn: Any, key: bytes, record: list[Any]) -> None:
        """Let go of the call in progress ``record``, stored under ``key``."""
        count, reserved = self._summary(txn, record[C_CLIENT])
        self.store.calls_up.delete(txn, key)
        self.store.calls_lapse.delete(txn, self._lapse_key(record[C_EXPIRES], key))
        self._put_summary(txn, record[C_CLIENT], count - 1, reserved - record[C_AMOUNT])
        if len(record) > C_BUNDLE:
            hold(self.store, txn, record[C_BUNDLE], -1)

    def _move(self, txn: Any, key: bytes, record: list[Any], new_key: bytes,
              expires: int) -> None:
        """Store a call's record again, under ``new_key``, lapsing at ``expires``."""
        if new_key != key:
            # First, so that letting the other call go cannot take this one's new
            # lapse key (the same bytes when both lapse at the same instant).
            self._free(txn, new_key)
            self.store.calls_up.delete(txn, key)
        if expires != record[C_EXPIRES] or new_key != key:
            self.store.calls_lapse.delete(txn, self._lapse_key(record[C_EXPIRES], key))
            self.store.calls_lapse.put(txn, self._lapse_key(expires, new_key), b"")
        record[C_EXPIRES] = expires
        self.store.calls_up.put(txn, new_key, msgpack.packb(record))

    def _free(self, txn: Any, key: bytes) -> None:
        """Let go of whatever call is stored under ``key`` (another client's, with the same
        session id), before another takes the key."""
        raw = self.store.calls_up.get(txn, key)
        if raw is not None:
            self._remove(txn, key, msgpack.unpackb(raw))

    def _lapse_due(self, txn: Any, now: int) -> bool:
        """Whether some call in progress has lapsed and is still counted."""
        for key, _ in self.store.calls_lapse.items(txn):
            return int.from_bytes(key[:8], "big") <= now
        return False

    def _sweep(self, txn: Any, now: int) -> None:
        """Let go of the calls that have lapsed by ``now`` (SWEEP at most)."""
        gone: list[bytes] = []
        for lkey, _ in self.store.calls_lapse.items(txn):
            if int.from_bytes(lkey[:8], "big") > now or len(gone) == SWEEP:
                break
            gone.append(bytes(lkey))
        for lkey in gone:
            key = lkey[8:]
            raw = self.store.calls_up.get(txn, key)
            record = None if raw is None else msgpack.unpackb(raw)
            if record is not None and record[C_EXPIRES] == int.from_bytes(lkey[:8], "big"):
                self._remove(txn, key, record)
            else:
                self.store.calls_lapse.delete(txn, lkey)    # no record of its own

    def out_of_step(self) -> list[str]:
        """What disagrees among the calls in progress: each client's sum against its
        records, each record against its lapse key (empty when all is well)."""
        problems = []
        with self.store.read() as txn:
            sums: dict[int, tuple[int, int]] = {}
            lapses = {bytes(k) for k, _ in self.store.calls_lapse.items(txn)}
            for key, raw in self.store.calls_up.items(txn):
                rec = msgpack.unpackb(raw)
                count, reserved = sums.get(rec[C_CLIENT], (0, 0))
                sums[rec[C_CLIENT]] = (count + 1, reserved + rec[C_AMOUNT])
                lkey = self._lapse_key(rec[C_EXPIRES], bytes(key))
                if lkey not in lapses:
                    problems.append(f"call {bytes(key)!r} has no lapse key")
                lapses.discard(lkey)
            problems += [f"lapse key {k!r} has no call" for k in sorted(lapses)]
            stored = {int.from_bytes(k, "big"): tuple(msgpack.unpackb(v))
                      for k, v in self.store.calls_load.items(txn)}
        for cid in sorted(set(sums) | set(stored)):
            if sums.get(cid) != stored.get(cid):
                problems.append(f"client {cid}: sum {stored.get(cid)}, records {sums.get(cid)}")
        return problems

    def reserved(self, client_id: int, now: int | None = None) -> tuple[int, int]:
        """(calls in progress, money they reserve) of a client, for people and tests."""
        now = int(time.time()) if now is None else now
        with self.store.read() as txn:
            count = total = 0
            for _, raw in self.store.calls_up.items(txn):
                rec = msgpack.unpackb(raw)
                if rec[C_CLIENT] == client_id and rec[C_EXPIRES] > now:
                    count += 1
                    total += rec[C_AMOUNT]
        return count, total

    # -- accounting

    def account(self, call: Call, status: int, session_time: int = 0,
                event_time: int | None = None, connect_time: int | None = None,
                setup_time: int | None = None, now: int | None = None) -> str:
        """Record an Accounting-Request; what was done ("started", "billed", ...).

        Returns once it is committed: the agent then answers.
        """
        self.refresh()
        now = int(time.time()) if now is None else now
        if status == STOP:
            outcome = self._stop(call, session_time, event_time, connect_time, setup_time, now)
        elif status in (START, INTERIM):
            outcome = self._keep(call, status, now)
        elif status in (ACCOUNTING_ON, ACCOUNTING_OFF):
            outcome = self._nas_restarted(call.nas)
        else:
            outcome = "ignored"
        return outcome

    def _find(self, txn: Any, call: Call, client: Client | None
              ) -> tuple[bytes, list[Any]] | None:
        """The key and record of a call in progress (by session id, else who), if it is
        ``client``'s (another client's call with the same key is not this one)."""
        for key in (call.key(), call.alternate_key()):
            raw = self.store.calls_up.get(txn, key)
            if raw is not None:
                record = msgpack.unpackb(raw)
                if client is None or record[C_CLIENT] == client.id:
                    return key, record
        return None

    def _billed(self, txn: Any, call: Call) -> bool:
        """Whether the call's Stop was billed already."""
        if not call.session_id:
            return False
        key = (SOURCE + "\0" + call.cdr_id()).encode("utf-8", "surrogateescape")
        return self.store.calls.get(txn, key) is not None

    def _client(self, call: Call) -> Client | None:
        account, _ = self._index.find(call.nas, call.user_name, call.calling, call.called)
        if account is None:
            return None
        client, why = self._index.client_of(account)
        return None if why is not None else client

    def _keep(self, call: Call, status: int, now: int) -> str:
        client = self._client(call)

        def apply(txn: Any) -> str:
            if self._billed(txn, call):
                # A Start or Interim that crossed its call's Stop: nothing to keep.
                return "ended"
            found = self._find(txn, call, client)
            if found is not None:
                key, rec = found
                rec[C_STARTED] = True
                # The gateway counts the grant from the answer: the call may last that
                # long from its Start.
                last = now + (rec[C_GRANTED] if status == START else 0) + self.grace
                # Registered at Accept without a session id: known by it from now on.
                self._move(txn, key, rec, call.key(), max(rec[C_EXPIRES], last))
                return "started" if status == START else "updated"
            if client is None:
                return "unknown-account"
            self._free(txn, call.key())
            self._add(txn, call.key(), [client.id, 0, client.max_call_length,
                                        now + client.max_call_length + self.grace, True,
                                        call.nas, ""])
            return "started" if status == START else "updated"

        result: str = self.store.write(apply)
        return result

    def _stop(self, call: Call, session_time: int, event_time: int | None,
              connect_time: int | None, setup_time: int | None, now: int) -> str:
        end = event_time if event_time is not None else now
        start = connect_time if connect_time is not None else end - session_time

        client = self._client(call)

        def release(txn: Any) -> None:
            found = self._find(txn, call, client)
            if found is not None:
                self._remove(txn, *found)

        summary = bill_call(self.store, self._pricer, SOURCE, call.cdr_id(), start,
                            session_time, call.called,
                            ip=call.nas, username=call.user_name, ani=call.calling,
                            setup=setup_time, also=release)
        if summary.refused:
            # The same session id with another duration or time: not billed twice, but
            # said, in case it was another call.
            log.warning("Stop of %s refused: %s", call.cdr_id(), "; ".join(summary.refused))
            return "refused"
        if summary.already:
            return "repeated"
        return "mismatched" if summary.mismatched else "billed"

    def _nas_restarted(self, nas: str) -> str:
        """Accounting-On/Off: the NAS restarted, its calls are gone."""
        def apply(txn: Any) -> None:
            for key, raw in list(self.store.calls_up.items(txn)):
                record = msgpack.unpackb(raw)
                if record[C_NAS] == nas:
                    self._remove(txn, key, record)

        self.store.write(apply)
        return "nas-restarted"
