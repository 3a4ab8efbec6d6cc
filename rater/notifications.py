"""Low-balance notifications: once per crossing, decided where balances move.

A client with a low-balance threshold has a watch record (``W/t`` + id: the
threshold and its credit limit), kept by the registry whenever the client is
saved. Every journal write checks the clients whose balances it moved: a
client whose available balance (live + credit limit) is below its threshold
and is not flagged yet is flagged (``W/f``) and a notice goes into the outbox
(``N/``), in the same LMDB transaction; a flagged client at or above its
threshold again loses its flag (it is re-armed). So one crossing makes one
notice however many calls cross it, and no notice is lost: it waits in the
outbox until it is delivered.

Delivering (:func:`deliver`; ``rater serve`` does it every few seconds, ``rater
billing scheduler`` at each look, ``rater balance notices --send`` from cron): each
notice is logged (``rater.notifications``, WARNING), counted in the metrics of
``rater serve`` (``rater_low_balance_notices_total`` by outcome) and e-mailed to
the client's billing address through the ``[mail]`` SMTP server. A delivery
first takes the notices it sends (a lease of ``LEASE`` seconds), so deliveries
running at once send each once; a notice that could not be sent stays for the
next delivery, up to ``ATTEMPTS`` tries.

While flagged, a client with ``low_balance_capacity`` has at most that many calls
in progress (capacity reduction below the threshold).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import msgpack

from .store import Store

if TYPE_CHECKING:
    from email.message import EmailMessage

    from .clients import Client
    from .settings import MailSettings

log = logging.getLogger("rater.notifications")

_WATCH, _FLAG = b"t", b"f"
_SEQUENCE = b"notice-sequence"
#: Seconds a delivery holds the notices it is sending (another delivery leaves them).
LEASE = 120
#: Deliveries a notice is tried at most (then dropped, logged as an error).
ATTEMPTS = 5


def watch(store: Store, txn: Any, client: Client) -> None:
    """Keep the client's watch record in step with it (the registry calls this on every
    save), and its flag with its balance (a threshold set while below it notifies now)."""
    key = _WATCH + client.id.to_bytes(4, "big")
    if client.low_balance_threshold is None or client.status == "deleted":
        store.watch.delete(txn, key)
        store.watch.delete(txn, _FLAG + client.id.to_bytes(4, "big"))
        return
    store.watch.put(txn, key, msgpack.packb([client.low_balance_threshold,
                                             client.credit_limit]))
    from .journal import read_balance

    live, _ = read_balance(store, txn, client.id)
    check(store, txn, [(client.id, live)], int(time.time()))


def check(store: Store, txn: Any, moved: list[tuple[int, int]], now: int) -> None:
    """After balances moved: ``moved`` is (client id, live balance now) of each."""
    for cid, live in moved:
        tag = cid.to_bytes(4, "big")
        raw = store.watch.get(txn, _WATCH + tag)
        if raw is None:
            continue
        threshold, credit_limit = msgpack.unpackb(raw)
        available = live + credit_limit
        flagged = store.watch.get(txn, _FLAG + tag) is not None
        if available < threshold and not flagged:
            store.watch.put(txn, _FLAG + tag, b"")
            # Numbered by a counter of their own: a number is never taken twice.
            raw = store.meta.get(txn, _SEQUENCE)
            number = 1 + (0 if raw is None else int(raw))
            store.meta.put(txn, _SEQUENCE, str(number).encode())
            store.notices.put(txn, number.to_bytes(8, "big"),
                              _pack(Notice(number, cid, available, threshold, now, 0)))
        elif available >= threshold and flagged:
            store.watch.delete(txn, _FLAG + tag)


def watch_all(store: Store, txn: Any) -> None:
    """Every client's watch record and flag (a store from before they were kept)."""
    from .clients import Registry

    for client in Registry(store).iter_clients(txn):
        watch(store, txn, client)


def below(store: Store, txn: Any, cid: int) -> bool:
    """Whether the client is flagged below its threshold."""
    return store.watch.get(txn, _FLAG + cid.to_bytes(4, "big")) is not None


@dataclass
class Notice:
    number: int
    client: int
    available: int
    threshold: int
    at: int
    attempts: int
    #: Until when a delivery holds it (0: none does).
    lease: int = 0

    def to_json(self, name: str) -> dict[str, Any]:
        from .clients import show_amount

        return {"number": self.number, "client": name,
                "available": show_amount(self.available),
                "threshold": show_amount(self.threshold), "at": self.at,
                "attempts": self.attempts}


def pending(store: Store) -> list[Notice]:
    """The notices in the outbox, oldest first."""
    with store.read() as txn:
        return [Notice(int.from_bytes(k, "big"), *msgpack.unpackb(v))
                for k, v in store.notices.items(txn)]


def deliver(store: Store, mail: MailSettings | None, counter: Any = None
            ) -> list[tuple[Notice, str]]:
    """Deliver the outbox: log, count (``counter``: a Counter labelled by outcome) and
    e-mail each notice (``mail`` None: logged and counted only). Returns each notice
    and its outcome: ``sent``, ``no-email`` (the client has no billing address, or no
    mail server is given), ``failed`` (tried again next time) or ``dropped`` (tried
    ATTEMPTS times)."""
    from .clients import Registry, show_amount

    now = int(time.time())

    def claim(txn: Any) -> list[Notice]:
        mine = []
        for k, v in store.notices.items(txn):
            n = Notice(int.from_bytes(k, "big"), *msgpack.unpackb(v))
            if n.lease <= now:
                n.lease = now + LEASE
                store.notices.put(txn, k, _pack(n))
                mine.append(n)
        return mine

    if not pending(store):             # nothing to take: no write transaction
        return []
    notices = store.write(claim)
    if not notices:
        return []
    registry = Registry(store)
    with store.read() as txn:
        clients = {n.client: registry.client_by_id(txn, n.client) for n in notices}
    outcomes: list[tuple[Notice, str]] = []
    server = None
    from_address = ""
    unreachable: str | None = None
    try:
        for n in notices:
            c = clients[n.client]
            log.warning("low balance: client %s has %s %s available, below its threshold %s",
                        c.name, show_amount(n.available), c.currency,
                        show_amount(n.threshold))
            if mail is None or not c.billing_email:
                outcomes.append((n, "no-email"))
                continue
            try:
                if unreachable is not None:
                    raise OSError(unreachable)      # one timeout per delivery, not per notice
                if server is None:
                    from .mail import connect, sender

                    from_address = sender(mail)     # a name lookup when not configured
                    try:
                        server = connect(mail)
                    except Exception as exc:
                        unreachable = f"SMTP {mail.host}:{mail.port}: {exc}"
                        raise
                server.send_message(_message(n, c, from_address))
                outcomes.append((n, "sent"))
            except Exception as exc:        # the SMTP server's or the network's: try again
                log.error("low-balance notice %d to %s not sent: %s", n.number,
                          c.billing_email, exc)
                outcomes.append((n, "failed" if n.attempts + 1 < ATTEMPTS else "dropped"))
    finally:
        if server is not None:
            try:
                server.quit()
            except Exception:
                server.close()

    def settle(txn: Any) -> None:
        for n, outcome in outcomes:
            key = n.number.to_bytes(8, "big")
            raw = store.notices.get(txn, key)
            if raw is None or Notice(n.number, *msgpack.unpackb(raw)).lease != n.lease:
                continue                    # no longer this delivery's
            if outcome == "failed":
                store.notices.put(txn, key, _pack(replace(n, attempts=n.attempts + 1,
                                                          lease=0)))
            else:
                store.notices.delete(txn, key)

    store.write(settle)
    for _, outcome in outcomes:
        if counter is not None:
            counter.labels(outcome).inc()
    return outcomes


def _pack(n: Notice) -> bytes:
    packed: bytes = msgpack.packb([n.client, n.available, n.threshold, n.at, n.attempts,
                                   n.lease])
    return packed


def _message(n: Notice, client: Client, from_address: str) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    from .clients import show_amount

    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = client.billing_email
    msg["Subject"] = f"Low balance: {show_amount(n.available)} {client.currency} available"
    msg["Date"] = formatdate(n.at, localtime=False)
    msg["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2])
    msg.set_content(
        f"Dear {client.name},\n\n"
        f"your available balance is {show_amount(n.available)} {client.currency}, below "
        f"{show_amount(n.threshold)} {client.currency}. Please top up your account to keep "
        f"your service running.\n")
    return msg
