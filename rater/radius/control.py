"""Call control: whether a call may go through and for how long, and its accounting.

Independent of the wire: the RADIUS agent (and the gRPC one) turn packets into
these calls and the answers back into packets.

**Authorization.** The account is found as ``cdr import`` finds it (NAS address,
User-Name, Calling-Station-Id, tech prefix of the number), its password checked
when it has one, its client's status and capacity checked and the number rated
with the client's table. A prepaid client is granted the longest duration its
available balance pays for (live balance + credit limit - what its calls in
progress have reserved; the exact inverse of pricing), up to its max call
length; a postpaid client, its max call length.

**Calls in progress** (``g/``, keyed by client and call; ``u/``, their sum per
client): an accepted prepaid
call reserves the money of its granted time; a call counts against capacity
from its Accept (or its Start) to its Stop. The check and the reservation are
one LMDB write transaction, and LMDB has one writer at a time across every
process: concurrent calls of a client never reserve more than it has, whichever
worker answers. A call that never sends Stop stops counting after its granted
time plus ``radius.reservation_grace`` (from the Accept), or after the grace
from its last Interim-Update, whichever is later.

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

from ..clients import AccountIndex, Client, show_amount
from ..engine import Deck
from ..errors import InvalidNumber
from ..ingest import Pricer, bill_call
from ..journal import read_balance
from ..numbers import normalise_number
from ..store import Store

log = logging.getLogger("rater.serve")

#: Seconds between checks for changed clients, accounts and decks.
REFRESH_EVERY = 0.5
SOURCE = "radius"
START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8

# A call in progress (g/ value, msgpack): what it reserved, for how long, when it stops
# counting, whether it started, its NAS, the number it was granted for.
C_AMOUNT, C_GRANTED, C_EXPIRES, C_STARTED, C_NAS, C_NUMBER = range(6)
# A client's calls in progress in sum (u/ value): how many, what they reserve, the
# earliest instant one of them may lapse.
S_COUNT, S_RESERVED, S_NEXT = range(3)
NEVER = 1 << 62


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


@dataclass
class _Pending:
    """A call that passed every check but capacity and money."""

    call: Call
    client: Client
    deck: Deck
    digits: str

    @property
    def key(self) -> bytes:
        return self.call.key()

    @property
    def tag(self) -> bytes:
        return self.client.id.to_bytes(4, "big")

    @property
    def prepaid(self) -> bool:
        return self.client.mode == "prepaid"


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
        with deck.using() as engine:
            cost, _, _, _ = engine.rate(digits, now, 0)
        if cost < 0:
            return Decision("no_rate", "no rate for the number")
        if client.mode == "postpaid" and client.capacity is None:
            return Decision("accepted", "", seconds=client.max_call_length,
                            currency=client.currency)
        return _Pending(call, client, deck, digits)

    def _grant(self, p: _Pending, available: int | None, now: int) -> tuple[int, int]:
        """The longest call ``available`` pays for, and its cost (postpaid: the max call
        length, nothing reserved). The deck is held only while it prices: a write that
        grows the map waits for no reader."""
        limit = p.client.max_call_length
        if available is None:
            return limit, 0
        if available <= 0:
            return 0, 0
        with p.deck.using() as engine:
            seconds, _ = engine.max_duration(p.digits, now, available, limit)
            if seconds <= 0:
                return 0, 0
            amount, _, _, _ = engine.rate(p.digits, now, seconds)
        return seconds, max(amount, 0)

    def _register(self, pending: list[_Pending], now: int) -> list[Decision]:
        """Check capacity and reserve, in one write transaction (requests seen before are
        answered from a read transaction)."""
        answers: list[Decision | None] = [None] * len(pending)
        with self.store.read() as txn:
            for k, p in enumerate(pending):
                raw = self.store.calls_up.get(txn, p.tag + p.key)
                if raw is not None:
                    # The same call asking again (a retransmission): the same answer.
                    mine = msgpack.unpackb(raw)
                    summary = self._stored_summary(txn, p.client.id)
                    if (mine[C_EXPIRES] > now and mine[C_NUMBER] == p.digits
                            and summary is not None and now < summary[S_NEXT]):
                        answers[k] = self._same_answer(txn, p, mine, summary[S_RESERVED])
        todo = [k for k, a in enumerate(answers) if a is None]
        if todo:
            def apply(txn: Any) -> list[Decision]:
                return [self._register_one(txn, pending[k], now) for k in todo]

            for k, d in zip(todo, self.store.write(apply), strict=True):
                answers[k] = d
        return [a for a in answers if a is not None]

    def _same_answer(self, txn: Any, p: _Pending, mine: list[Any], reserved: int) -> Decision:
        client = p.client
        live, _ = read_balance(self.store, txn, client.id)
        credit = (live + client.credit_limit - reserved + mine[C_AMOUNT] if p.prepaid
                  else None)
        return Decision("accepted", "", seconds=mine[C_GRANTED], credit=credit,
                        currency=client.currency, prepaid=p.prepaid, reserved=mine[C_AMOUNT])

    def _register_one(self, txn: Any, p: _Pending, now: int) -> Decision:
        client = p.client
        if self._billed(txn, p.call):
            # A late copy of the request of a call already stopped and billed.
            return Decision("call_ended", "the call has ended")
        count, reserved, _ = self._summary(txn, client.id, now)
        raw = self.store.calls_up.get(txn, p.tag + p.key)
        if raw is not None:
            mine = msgpack.unpackb(raw)
            if mine[C_NUMBER] == p.digits:
                return self._same_answer(txn, p, mine, reserved)
            # The same session asking for another number: decided again, from scratch.
            self._remove(txn, p.tag + p.key, now)
            count, reserved, _ = self._summary(txn, client.id, now)
        if client.capacity is not None and count >= client.capacity:
            return Decision("capacity", "too many calls in progress")
        credit = None
        if p.prepaid:
            live, _ = read_balance(self.store, txn, client.id)
            credit = live + client.credit_limit - reserved
        seconds, amount = self._grant(p, credit, now)
        if seconds <= 0:
            return Decision("no_balance", "no balance", credit=credit,
                            currency=client.currency, prepaid=True)
        record = [amount, seconds, now + seconds + self.grace, False, p.call.nas, p.digits]
        self._add(txn, client.id, p.key, record, now)
        return Decision("accepted", "", seconds=seconds, credit=credit,
                        currency=client.currency, prepaid=p.prepaid, reserved=amount)

    # -- calls in progress: g/ records, and per client (u/) their count, what they
    # reserve and the earliest time one of them may lapse; a summary is read instead of
    # every record until that time comes (then the records are read, lapsed ones let go).

    def _stored_summary(self, txn: Any, client_id: int) -> list[int] | None:
        raw = self.store.calls_load.get(txn, client_id.to_bytes(4, "big"))
        return None if raw is None else list(msgpack.unpackb(raw))

    def _summary(self, txn: Any, client_id: int, now: int) -> list[int]:
        """[count, reserved, next lapse] of a client's calls in progress (write txn)."""
        summary = self._stored_summary(txn, client_id)
        if summary is not None and now < summary[S_NEXT]:
            return summary
        tag = client_id.to_bytes(4, "big")
        count = reserved = 0
        nearest = NEVER
        gone = []
        for k, raw in self.store.calls_up.items(txn, tag):
            rec = msgpack.unpackb(raw)
            if rec[C_EXPIRES] <= now:
                gone.append(k)
                continue
            count += 1
            reserved += rec[C_AMOUNT]
            nearest = min(nearest, rec[C_EXPIRES])
        for k in gone:
            self.store.calls_up.delete(txn, k)
            self.store.call_owner.delete(txn, k[4:])
        summary = [count, reserved, nearest]
        self._put_summary(txn, client_id, summary)
        return summary

    def _put_summary(self, txn: Any, client_id: int, summary: list[int]) -> None:
        key = client_id.to_bytes(4, "big")
        if summary[S_COUNT]:
            self.store.calls_load.put(txn, key, msgpack.packb(summary))
        else:
            self.store.calls_load.delete(txn, key)

    def _add(self, txn: Any, client_id: int, key: bytes, record: list[Any], now: int) -> None:
        summary = self._summary(txn, client_id, now)
        tag = client_id.to_bytes(4, "big")
        self.store.calls_up.put(txn, tag + key, msgpack.packb(record))
        self.store.call_owner.put(txn, key, tag)
        self._put_summary(txn, client_id, [summary[S_COUNT] + 1,
                                           summary[S_RESERVED] + record[C_AMOUNT],
                                           min(summary[S_NEXT], record[C_EXPIRES])])

    def _remove(self, txn: Any, gkey: bytes, now: int) -> None:
        """Let a call in progress go (its g/ key: client id + call key)."""
        client_id = int.from_bytes(gkey[:4], "big")
        summary = self._summary(txn, client_id, now)
        raw = self.store.calls_up.get(txn, gkey)
        if raw is None:
            return                      # lapsed, and let go by _summary just now
        record = msgpack.unpackb(raw)
        self.store.calls_up.delete(txn, gkey)
        self.store.call_owner.delete(txn, gkey[4:])
        self._put_summary(txn, client_id, [summary[S_COUNT] - 1,
                                           summary[S_RESERVED] - record[C_AMOUNT],
                                           summary[S_NEXT]])

    def reserved(self, client_id: int, now: int | None = None) -> tuple[int, int]:
        """(calls in progress, money they reserve) of a client, for people and tests."""
        now = int(time.time()) if now is None else now
        with self.store.read() as txn:
            count = total = 0
            for _, raw in self.store.calls_up.items(txn, client_id.to_bytes(4, "big")):
                rec = msgpack.unpackb(raw)
                if rec[C_EXPIRES] > now:
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

    def _find(self, txn: Any, call: Call, client: Client | None) -> tuple[bytes, bytes] | None:
        """The g/ key of a call in progress and its own key (by session id, else who),
        if it is ``client``'s (another client's call with the same key is not this one)."""
        for key in (call.key(), call.alternate_key()):
            owner = self.store.call_owner.get(txn, key)
            if owner is not None and (client is None
                                      or int.from_bytes(owner, "big") == client.id):
                return bytes(owner) + key, key
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
                gkey, key = found
                rec = msgpack.unpackb(self.store.calls_up.get(txn, gkey))
                rec[C_STARTED] = True
                # The gateway counts the grant from the answer: the call may last that
                # long from its Start.
                last = now + (rec[C_GRANTED] if status == START else 0) + self.grace
                rec[C_EXPIRES] = max(rec[C_EXPIRES], last)
                if key != call.key():
                    # Registered at Accept without a session id: known by it from now on.
                    self.store.calls_up.delete(txn, gkey)
                    self.store.call_owner.delete(txn, key)
                    gkey = gkey[:4] + call.key()
                    self.store.call_owner.put(txn, call.key(), gkey[:4])
                self.store.calls_up.put(txn, gkey, msgpack.packb(rec))
                return "started" if status == START else "updated"
            if client is None:
                return "unknown-account"
            rec = [0, client.max_call_length, now + client.max_call_length + self.grace, True,
                   call.nas, ""]
            self._add(txn, client.id, call.key(), rec, now)
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
                self._remove(txn, found[0], now)

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
            for k, raw in list(self.store.calls_up.items(txn)):
                if msgpack.unpackb(raw)[C_NAS] == nas:
                    self.store.calls_up.delete(txn, k)
                    self.store.call_owner.delete(txn, k[4:])
                    # The client's sum is read again from its records next time.
                    self.store.calls_load.delete(txn, k[:4])

        self.store.write(apply)
        return "nas-restarted"
