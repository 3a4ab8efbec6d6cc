"""Packages, subscriptions, their fees, and prepaid billing runs.

A *package* (a product) has a recurring fee charged each period (``monthly``:
the client's billing months, from its billing day; ``weekly``: Monday to
Sunday; ``daily``), one-off fees (installation, deposit) charged once when a
subscription starts, and included minutes that calls use before money
(:mod:`rater.bundles`).

A *subscription* ties a client to a package from a date, to an optional end
date (not included). Dates are the client's: its periods begin at midnight in
its time zone.

**Proration.** A period's fee is spread over its days by largest remainder in
the currency's minor unit: each day gets the fee / days rounded down, and the
cents left over go one each to the first days. A subscription pays for the
days of a period it is active, so the parts of any period add up to the fee
exactly, however the period is cut by starts, ends and upgrades.

**Fees** are journal entries under the key ``fee:SUBSCRIPTION:PERIOD_START``
(one-off fees ``fee:SUBSCRIPTION:one-off:N``), so each is posted once however
often it is asked for: by a normal bill run for postpaid clients
(:func:`post_fees`), by a prepaid run for prepaid ones.

**Prepaid runs** (:func:`prepaid_run`, recorded by rater.billrun): for each
prepaid client's subscriptions whose period holds the run's date, debit the
period's fee (its active days) from the wallet. A client whose wallet cannot
pay is not debited: its service is suspended (status ``stop``: its accounts
stop authorizing) until a payment (:func:`restart_if_paid`) or a later run
finds it able to pay. Ending a subscription inside a period it was charged for
credits the days left. :func:`runs_out` estimates when a wallet is used up.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from .clients import Client, Registry, parse_amount, show_amount
from .errors import Conflict, InvalidArgument, RaterError
from .invoices import add_month, midnight
from .journal import Entry, append_keyed, available, post_many, read_balance, unposted
from .money import UNITS, minor_unit
from .store import Store
from .tariff import CURRENCY
from .timeutil import zone

PERIODS = ("monthly", "weekly", "daily")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass
class Package:
    name: str
    currency: str
    #: The recurring fee in nanos (a whole number of the currency's minor unit) and its period.
    fee: int
    period: str = "monthly"
    #: [name, nanos] of each fee charged once when a subscription starts.
    one_off: list[list[Any]] = field(default_factory=list)
    #: Included minutes per fee period: [{"minutes": N, "prefixes": [...], "destinations":
    #: [...], "rate": nanos a minute}] (rater.bundles).
    included: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0

    def check(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidArgument(f"package name {self.name!r}: up to 64 letters, digits, "
                                  f"_ . : - (a letter or digit first)")
        for inc in self.included:
            if not (isinstance(inc.get("minutes"), int) and inc["minutes"] > 0
                    and all(p.isdigit() for p in inc.get("prefixes", []))
                    and (inc.get("prefixes") or inc.get("destinations"))):
                raise InvalidArgument(f"included minutes {inc!r}: a number of minutes and "
                                      f"the prefixes or destinations they cover")
        if not CURRENCY.fullmatch(self.currency):
            raise InvalidArgument(f"currency {self.currency!r} is not an ISO 4217 code")
        if self.period not in PERIODS:
            raise InvalidArgument(f"period {self.period!r}: one of {', '.join(PERIODS)}")
        unit = UNITS[minor_unit(self.currency)]
        for what, amount in [("fee", self.fee), *((n, a) for n, a in self.one_off)]:
            if amount % unit:
                raise InvalidArgument(f"{what}: {show_amount(amount)} is not a whole number "
                                      f"of the {self.currency} minor unit")

    @classmethod
    def unpack(cls, raw: bytes) -> Package:
        return cls(**json.loads(raw))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fee": show_amount(self.fee),
                "one_off": [[n, show_amount(a)] for n, a in self.one_off],
                "included": [{**i, "rate": show_amount(i.get("rate", 0))}
                             for i in self.included]}


@dataclass
class Subscription:
    id: int
    client: int
    package: str
    start: date
    #: The first day it no longer holds (None: open-ended).
    end: date | None = None
    created: int = 0

    def pack(self) -> bytes:
        return json.dumps({**asdict(self), "start": self.start.isoformat(),
                           "end": self.end.isoformat() if self.end else None}).encode()

    @classmethod
    def unpack(cls, raw: bytes) -> Subscription:
        obj = json.loads(raw)
        return cls(obj["id"], obj["client"], obj["package"], date.fromisoformat(obj["start"]),
                   date.fromisoformat(obj["end"]) if obj["end"] else None, obj["created"])

    def to_json(self, clients: dict[int, str]) -> dict[str, Any]:
        return {"id": self.id, "client": clients.get(self.client, str(self.client)),
                "package": self.package, "from": self.start.isoformat(),
                "to": self.end.isoformat() if self.end else None}


# -- periods and proration


def period_of(day: date, period: str, billing_day: int = 1) -> tuple[date, date]:
    """The fee period holding ``day``: [start, end)."""
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = date(day.year, day.month, billing_day)
    if start > day:
        y, m = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
        start = date(y, m, billing_day)
    return start, add_month(start)


def share(fee: int, unit: int, days: int, first: int, last: int) -> int:
    """What days ``first`` to ``last`` (not included; 0 is the period's first day) of a
    period of ``days`` pay of ``fee`` (nanos, whole ``unit``s), by largest remainder: each
    day fee // days units rounded down, the units left one each to the first days."""
    if not 0 <= first <= last <= days:
        raise ValueError(f"days {first}..{last} are not in a period of {days}")
    units = fee // unit
    each, left = divmod(units, days)
    extra = max(0, min(last, left) - first)
    return ((last - first) * each + extra) * unit


def active_days(sub: Subscription, start: date, end: date) -> tuple[int, int]:
    """Which days of the period [start, end) the subscription holds: (first, last) indices,
    equal when none."""
    a = max(sub.start, start)
    b = min(sub.end or end, end)
    if b <= a:
        return 0, 0
    return (a - start).days, (b - start).days


# -- the store


class Subscriptions:
    """The packages and subscriptions of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = Registry(store)

    # packages

    def add_package(self, name: str, *, currency: str, fee: str, period: str = "monthly",
                    one_off: list[tuple[str, str]] | None = None,
                    included: list[dict[str, Any]] | None = None) -> Package:
        pkg = Package(name, currency.upper(), parse_amount(fee, "fee"), period,
                      [[n, parse_amount(a, f"one-off fee {n}")] for n, a in one_off or []],
                      included or [], int(time.time()))
        pkg.check()

        def apply(txn: Any) -> Package:
            if self.store.packages.get(txn, name.encode()) is not None:
                raise Conflict(f"package {name!r} exists already")
            self.store.packages.put(txn, name.encode(), json.dumps(asdict(pkg)).encode())
            self.registry.bump(txn)
            return pkg

        return self.store.write(apply)

    def package_in(self, txn: Any, name: str) -> Package:
        """The package named ``name``, read in ``txn``."""
        raw = self.store.packages.get(txn, name.encode())
        if raw is None:
            raise InvalidArgument(f"no package named {name!r}",
                                  hint="`rater package list` shows them")
        return Package.unpack(raw)

    def package(self, name: str) -> Package:
        with self.store.read() as txn:
            return self.package_in(txn, name)

    def packages(self) -> list[Package]:
        with self.store.read() as txn:
            return [Package.unpack(v) for _, v in self.store.packages.items(txn)]

    # subscriptions

    def subscribe(self, client_name: str, package: str, start: date,
                  end: date | None = None) -> Subscription:
        if end is not None and end <= start:
            raise InvalidArgument(f"--to {end} is not after --from {start}")

        def apply(txn: Any) -> Subscription:
            client = self.registry.get_client(txn, client_name)
            pkg = self.package_in(txn, package)
            if pkg.currency != client.currency:
                raise Conflict(f"package {package} is priced in {pkg.currency}; client "
                               f"{client.name} pays in {client.currency}")
            sid = 1 + max((int.from_bytes(k[1:], "big") for k, _ in
                           self.store.subscriptions.items(txn, b"s")), default=0)
            sub = Subscription(sid, client.id, package, start, end, int(time.time()))
            self.store.subscriptions.put(txn, _sub_key(sid), sub.pack())
            self.registry.bump(txn)
            return sub

        return self.store.write(apply)

    def subscriptions(self, client_name: str | None = None) -> list[Subscription]:
        with self.store.read() as txn:
            cid = None if client_name is None else \
                self.registry.get_client(txn, client_name).id
            subs = [Subscription.unpack(v) for _, v in self.store.subscriptions.items(txn, b"s")]
        return [s for s in subs if cid is None or s.client == cid]

    def end(self, sid: int, end: date, now: int | None = None
            ) -> tuple[Subscription, list[Entry]]:
        """End subscription ``sid`` at ``end`` (not included); the days it was charged for
        from then on are credited (written ``now``)."""
        now = int(time.time()) if now is None else now

        def apply(txn: Any) -> tuple[Subscription, list[Entry]]:
            raw = self.store.subscriptions.get(txn, _sub_key(sid))
            if raw is None:
                raise InvalidArgument(f"no subscription {sid}")
            sub = Subscription.unpack(raw)
            if end <= sub.start:
                raise InvalidArgument(f"subscription {sid} starts on {sub.start}: it cannot "
                                      f"end on {end}")
            if sub.end is not None and sub.end <= end:
                raise InvalidArgument(f"subscription {sid} ends on {sub.end} already")
            client = self.registry.client_by_id(txn, sub.client)
            pkg = self.package_in(txn, sub.package)
            credits: list[Entry] = []
            start, stop = period_of(end, pkg.period, client.billing_day)
            while start < (sub.end or date.max) and self._charged(txn, sub, start):
                before = _due(pkg, sub, start, stop)
                after = _due(pkg, replace(sub, end=end), start, stop)
                if before > after:
                    credits.append(Entry(0, "fee-credit", client.id, before - after, now, now,
                                         f"fee:{sub.id}:{start}:end:{end}", None,
                                         f"{sub.package}: {end} to {stop}", None, None))
                start, stop = period_of(stop, pkg.period, client.billing_day)
            sub.end = end
            self.store.subscriptions.put(txn, _sub_key(sid), sub.pack())
            self.registry.bump(txn)
            append_keyed(self.store, txn, unposted(self.store, txn, credits))
            return sub, credits

        return self.store.write(apply)

    def _charged(self, txn: Any, sub: Subscription, start: date) -> bool:
        return self.store.keys.get(txn, f"fee:{sub.id}:{start}".encode()) is not None



def _due(pkg: Package, sub: Subscription, start: date, stop: date) -> int:
    """What ``sub`` pays of the period [start, stop) of its package's fee."""
    first, last = active_days(sub, start, stop)
    return share(pkg.fee, UNITS[minor_unit(pkg.currency)], (stop - start).days, first, last)


def fee_entries(client: Client, sub: Subscription, pkg: Package, start: date, stop: date,
                at: int, when: int) -> list[Entry]:
    """What ``sub`` owes for its package's fee period [start, stop): the fee of the days
    it holds, and its one-off fees in its first period (written at ``at``, dated
    ``when``)."""
    first, last = active_days(sub, start, stop)
    if first == last:
        return []
    due = []
    amount = _due(pkg, sub, start, stop)
    kind = "recurring-fee" if (first, last) == (0, (stop - start).days) else "prorated-fee"
    if amount:
        due.append(Entry(0, kind, client.id, -amount, at, when, f"fee:{sub.id}:{start}", None,
                         f"{sub.package} {start} to {stop}", None, None))
    if sub.start >= start:      # its first period: the one-off fees too
        due += [Entry(0, "one-off-fee", client.id, -a, at, when, f"fee:{sub.id}:one-off:{i}",
                      None, f"{sub.package}: {n}", None, None)
                for i, (n, a) in enumerate(pkg.one_off) if a]
    return due


def post_fees(store: Store, due: list[tuple[Client, date, date]], now: int | None = None
              ) -> dict[int, str]:
    """Post what postpaid clients' subscriptions owe for the fee periods holding the days
    [start, end) of each (client, start, end) (an invoice period), in one transaction,
    each once: a period already charged (by its key) is not charged again. Each is dated
    at the first day it pays for, so that the invoice of that day takes it. Returns the
    clients whose fees could not be worked out, and why (nothing of theirs is posted)."""
    now = int(time.time()) if now is None else now
    with store.read() as txn:
        held = _by_client(store, txn)
        packages = packages_in(store, txn)
    entries: list[Entry] = []
    failed: dict[int, str] = {}
    for client, start, end in due:
        try:
            entries += _fees_of(client, held.get(client.id, []), packages, start, end, now)
        except RaterError as exc:
            failed[client.id] = exc.message
    if entries:
        post_many(store, entries)
    return failed


def _fees_of(client: Client, held: list[Subscription], packages: dict[str, Package],
             start: date, end: date, now: int) -> list[Entry]:
    due: list[Entry] = []
    for sub in held:
        if sub.start >= end or (sub.end or end) <= start:
            continue
        pkg = packages.get(sub.package)
        if pkg is None:
            raise InvalidArgument(f"subscription {sub.id}: no package named {sub.package!r}")
        day = max(start, sub.start)
        while day < min(end, sub.end or end):
            a, b = period_of(day, pkg.period, client.billing_day)
            due += fee_entries(client, sub, pkg, a, b, now,
                               midnight(max(a, sub.start), client.timezone))
            day = b
    return due


def packages_in(store: Store, txn: Any) -> dict[str, Package]:
    """Every package, by name."""
    return {k.decode(): Package.unpack(v) for k, v in store.packages.items(txn)}


def _by_client(store: Store, txn: Any) -> dict[int, list[Subscription]]:
    """Every client's subscriptions, in order."""
    held: dict[int, list[Subscription]] = {}
    for _, raw in store.subscriptions.items(txn, b"s"):
        sub = Subscription.unpack(raw)
        held.setdefault(sub.client, []).append(sub)
    return held


def _sub_key(sid: int) -> bytes:
    return b"s" + sid.to_bytes(8, "big")


def _suspended(cid: int) -> bytes:
    """The mark of a client a prepaid run suspended (and only such a one it restarts)."""
    return b"x" + cid.to_bytes(4, "big")


# -- prepaid runs


@dataclass
class PrepaidRun:
    as_of: str
    charged: list[dict[str, Any]] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    #: (client id, name, reason code, message) of each client's exception.
    exceptions: list[tuple[int, str, str, str]] = field(default_factory=list)
    total: dict[str, str] = field(default_factory=dict)
    #: Client -> the day its wallet is estimated to be used up (None: not within a year).
    estimates: dict[str, str | None] = field(default_factory=dict)

    def results(self) -> dict[str, Any]:
        return {"wallet_transactions": len(self.charged), "charged": self.charged,
                "suspended": self.suspended, "restarted": self.restarted,
                "estimates": self.estimates, "totals": self.total}


def prepaid_run(store: Store, as_of: date, *, suspend: bool = True, estimate: bool = True,
                clients: set[int] | None = None, now: int | None = None) -> PrepaidRun:
    """Debit each prepaid client's fees due on ``as_of`` (``clients``: only these);
    see the module docstring. One client's problem is an exception of the run, and
    the run goes on."""
    subs = Subscriptions(store)
    now = int(time.time()) if now is None else now
    result = PrepaidRun(as_of.isoformat())
    with store.read() as txn:
        by_client = {cid: held for cid, held in _by_client(store, txn).items()
                     if clients is None or cid in clients}
        packages = packages_in(store, txn)
    totals: dict[str, int] = {}
    spent: dict[int, int] | None = None         # read when a first estimate needs it
    for cid, held in sorted(by_client.items()):
        try:
            client, live = _charge_client(store, subs, cid, held, as_of, suspend, now,
                                          result, totals)
            if estimate and client.prepaid and client.status != "deleted":
                if spent is None:
                    spent = usage_window(store, as_of)
                day = _runs_out(client, live, held, packages, spent.get(cid, 0), as_of)
                result.estimates[client.name] = None if day is None else day.isoformat()
        except RaterError as exc:
            with store.read() as txn:
                name = subs.registry.client_by_id(txn, cid).name
            result.exceptions.append((cid, name, "error", exc.message))
    result.total = {cur: show_amount(v) for cur, v in sorted(totals.items())}
    return result


def restart_if_paid(store: Store, client_name: str, now: int | None = None) -> bool:
    """After a payment: a client a prepaid run suspended is charged what is due today (in
    its time zone) and restarted, if its wallet now pays it. Whether it was."""
    now = int(time.time()) if now is None else now
    registry = Registry(store)
    with store.read() as txn:
        client = registry.get_client(txn, client_name)
        if store.subscriptions.get(txn, _suspended(client.id)) is None:
            return False
    today = datetime.fromtimestamp(now, zone(client.timezone)).date()
    run = prepaid_run(store, today, estimate=False, clients={client.id}, now=now)
    return client.name in run.restarted


def _charge_client(store: Store, subs: Subscriptions, cid: int, held: list[Subscription],
                   as_of: date, suspend: bool, now: int, result: PrepaidRun,
                   totals: dict[str, int]) -> tuple[Client, int]:
    """Charge one client; the client, and its live balance after."""
    def apply(txn: Any) -> tuple[Client, list[Entry], str | None, int, int]:
        client = subs.registry.client_by_id(txn, cid)
        live, _ = read_balance(store, txn, cid)
        if not client.prepaid or client.status == "deleted":
            return client, [], None, 0, live
        due: list[Entry] = []
        for sub in held:
            pkg = subs.package_in(txn, sub.package)
            start, stop = period_of(as_of, pkg.period, client.billing_day)
            due += fee_entries(client, sub, pkg, start, stop, now, now)
        due = unposted(store, txn, due)
        cost = -sum(e.amount for e in due)
        can_pay = (available(client, live) or 0) >= cost
        change = None
        if due and not can_pay and suspend:
            if client.status == "active":
                subs.registry.set_status(txn, client, "stop", "suspend (prepaid run)")
                store.subscriptions.put(txn, _suspended(cid), b"1")
                change = "suspended"
            return client, [], change, cost, live
        append_keyed(store, txn, due)
        if (suspend and can_pay and client.status == "stop"
                and store.subscriptions.get(txn, _suspended(cid))):
            subs.registry.set_status(txn, client, "active", "restart (prepaid run)")
            store.subscriptions.delete(txn, _suspended(cid))
            change = "restarted"
        return client, due, change, 0, live - cost

    client, posted, change, unpaid, live = store.write(apply)
    for e in posted:
        result.charged.append({"client": client.name, "type": e.type, "key": e.key,
                               "amount": show_amount(-e.amount), "note": e.note or ""})
        totals[client.currency] = totals.get(client.currency, 0) - e.amount
    if change == "suspended":
        result.suspended.append(client.name)
    elif change == "restarted":
        result.restarted.append(client.name)
    if unpaid:
        result.exceptions.append((
            client.id, client.name, "insufficient-funds",
            f"the wallet cannot pay {show_amount(unpaid)} {client.currency} due; "
            f"{'service stopped' if change else 'service stays stopped'} until it can"))
    return client, live


# -- when a wallet runs out

#: The days of usage an estimate averages.
USAGE_DAYS = 30
#: How far ahead an estimate looks.
HORIZON_DAYS = 366


def runs_out(store: Store, client_name: str, as_of: date) -> date | None:
    """The first day after ``as_of`` a prepaid client's available balance is estimated
    to go below zero (see :func:`_runs_out`); None when not within a year."""
    registry = Registry(store)
    subs = Subscriptions(store)
    with store.read() as txn:
        client = registry.get_client(txn, client_name)
        live, _ = read_balance(store, txn, client.id)
        held = _by_client(store, txn).get(client.id, [])
        packages = {s.package: subs.package_in(txn, s.package) for s in held}
    return _runs_out(client, live, held, packages,
                     usage_window(store, as_of).get(client.id, 0), as_of)


def _runs_out(client: Client, live: int, held: list[Subscription],
              packages: dict[str, Package], spent: int, as_of: date) -> date | None:
    """The first day after ``as_of`` the client's available balance (from ``live``) goes
    below zero when each day costs the average of ``spent``, its calls of the 30 days to
    ``as_of`` (UTC days), and each fee period of its subscriptions costs its fee the day
    it begins. None when not within a year (or it spends nothing). Exact: the average is
    kept as a fraction."""
    left = available(client, live)
    if left is None:
        return None
    # In thirtieths of a nano: a day of calls costs exactly their sum over 30 days.
    balance = left * USAGE_DAYS
    day = as_of + timedelta(days=1)
    for _ in range(HORIZON_DAYS):
        balance -= max(spent, 0)
        for s in held:
            pkg = packages[s.package]
            start, stop = period_of(day, pkg.period, client.billing_day)
            if start == day and s.start <= day < (s.end or date.max):
                balance -= _due(pkg, s, start, stop) * USAGE_DAYS
        if balance < 0:
            return day
        day += timedelta(days=1)
    return None


def usage_window(store: Store, as_of: date) -> dict[int, int]:
    """Every client's calls of the 30 UTC days to ``as_of`` (included)."""
    from .ingest import usage

    end = midnight(as_of + timedelta(days=1), "UTC")
    return usage(store, end - USAGE_DAYS * 86400, end)
