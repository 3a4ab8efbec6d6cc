"""CGRateS tariff plans in the store, and calls priced through their rating profiles.

``rater deck import-cgrates DIR`` reads a tariff plan folder (rater.cgrates),
makes each RatingPlan a rate table of the same name (``cut`` mode: a call is
cut where its rate changes and at midnight, as CGRateS cuts it), and keeps the
rating profiles: who (tenant, category, subject) is rated by which plan from
when, and whom to ask when that plan cannot price a number. The import is one
write transaction: every table and every profile, or nothing. Importing again
replaces the rating profiles and makes each table hold its plan's rows exactly;
tables of plans no longer in the folder are kept.

``rater rate NUMBER --subject S`` prices a call as CGRateS's rating would:
the subject's profile in force at the call's start (else the ``*any``
subject's), its plan's table, and the fallback subjects in turn when that table
has no rate for the number (each subject tried once).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .cgrates import ANY, rate_tables, read_plan
from .decks import Decks
from .engine import Deck, Explained
from .errors import (
    Conflict,
    InvalidArgument,
    NoRate,
    Problem,
    RatingPlanNotFound,
    UnauthorizedDestination,
)
from .store import Store
from .timeutil import parse_instant, zone

# Keys of the store's rating space.
PROFILE = b"profile\0"      # + tenant \0 category \0 subject \0 activation (8 bytes)
PLAN = b"plan\0"            # + table name: what the table keeps of its plan
IMPORT = b"import"          # the last import: folder, zone, currency
#: The longest call a ``*disconnect`` MaxCost is checked over, for authorization.
MAX_AUTHORIZED_S = 86400
DEFAULT_TENANT, DEFAULT_CATEGORY = "cgrates.org", "call"


@dataclass
class ImportedPlan:
    table: str
    #: The table's version after the import (unchanged: the one it had).
    version: int
    changed: bool
    rows: int
    profiles: int


@dataclass
class CgratesImport:
    folder: str
    plans: list[ImportedPlan]
    rating_profiles: int
    warnings: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "plans": [p.__dict__ for p in self.plans],
                "rating_profiles": self.rating_profiles,
                "warnings": [str(w) for w in self.warnings]}


def _profile_key(tenant: str, category: str, subject: str, activation: int | None = None
                 ) -> bytes:
    key = PROFILE + "\0".join((tenant, category, subject)).encode() + b"\0"
    return key if activation is None else key + (activation + 2**63).to_bytes(8, "big")


def import_plan(store: Store, folder: str | Path, timezone: str = "UTC",
                currency: str = "XXX") -> CgratesImport:
    """Import the tariff plan in ``folder`` (atomic). ``currency``: the plan's amounts'
    (a CGRateS plan names none; XXX is ISO 4217's "no currency")."""
    if not re.fullmatch(r"[A-Z]{3}", currency.upper()):
        raise InvalidArgument(f"--currency {currency!r} is not an ISO 4217 code such as EUR")
    plan = read_plan(Path(folder), timezone)
    tables = rate_tables(plan, currency.upper(), str(folder))
    decks = Decks(store)
    source = {"cgrates": str(folder), "timezone": timezone}

    def apply(txn: Any) -> list[ImportedPlan]:
        done = []
        for pt in tables:
            name = pt.table.name.encode()
            if (store.tables.get(txn, name) is not None
                    and store.rating.get(txn, PLAN + name) is None):
                raise Conflict(f"rate table {pt.table.name} exists and was not imported from "
                               f"CGRateS: nothing was imported",
                               hint="give the RatingPlan another id")
            version = decks.hold_exactly(txn, pt.table, pt.rows, "import-cgrates", source)
            record = json.loads(store.tables.get(txn, pt.table.name.encode()))
            store.rating.put(txn, PLAN + pt.table.name.encode(), json.dumps({
                "disconnect": {profile: {dest: str(cost) for dest, cost in caps.items()}
                               for profile, caps in pt.disconnect.items()}}).encode())
            done.append(ImportedPlan(pt.table.name, record["version"], version is not None,
                                     len(pt.rows), len(pt.table.profiles)))
        for key, _ in list(store.rating.items(txn, PROFILE)):
            store.rating.delete(txn, key)
        for p in plan.profiles:
            store.rating.put(txn, _profile_key(p.tenant, p.category, p.subject, p.activation),
                             json.dumps({"plan": p.plan,
                                         "fallback": list(p.fallback_subjects)}).encode())
        store.rating.put(txn, IMPORT, json.dumps({"folder": str(folder), "timezone": timezone,
                                                  "currency": currency.upper()}).encode())
        return done

    plans = store.write(apply)
    return CgratesImport(str(folder), plans, len(plan.profiles), plan.warnings)


@dataclass(frozen=True)
class Rated:
    """A call priced through the rating profiles."""

    explained: Explained
    #: The subject whose plan priced it (the one asked for, ``*any``, or a fallback).
    subject: str
    plan: str
    #: ``*disconnect``: the longest call its MaxCost allows (at most a day).
    max_duration: int | None


class RatingProfiles:
    """The rating profiles of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def timezone(self) -> str:
        """The zone of the last import (of instants written without an offset)."""
        with self.store.read() as txn:
            raw = self.store.rating.get(txn, IMPORT)
        return "UTC" if raw is None else str(json.loads(raw)["timezone"])

    def _profile(self, tenant: str, category: str, subject: str, at: int
                 ) -> dict[str, Any] | None:
        """The subject's profile in force at ``at`` (the last activation at or before)."""
        found = None
        with self.store.read() as txn:
            for key, value in self.store.rating.items(txn, _profile_key(tenant, category,
                                                                        subject)):
                if int.from_bytes(key[-8:], "big") - 2**63 > at:
                    break
                found = json.loads(value)
        return found

    def rate(self, number: str, at: int | str | None, seconds: int, *, subject: str,
             tenant: str = DEFAULT_TENANT, category: str = DEFAULT_CATEGORY) -> Rated:
        """Price a call of ``seconds`` from ``at`` (None: now) to ``number`` for
        ``subject``."""
        if at is None:
            at = int(time.time())
        elif isinstance(at, str):
            at = parse_instant(at, zone(self.timezone()))
        own = self._profile(tenant, category, subject, at)
        if own is None:
            own = self._profile(tenant, category, ANY, at)
            if own is None:
                raise RatingPlanNotFound(f"no rating profile for {tenant}:{category}:{subject} "
                                         f"(nor {ANY}) at that time",
                                         hint="`rater deck import-cgrates` imports them")
            own["subject"] = ANY
        else:
            own["subject"] = subject
        tried: set[str] = set()
        for profile in self._in_turn(own, tenant, category, at, tried):
            with Deck(self.store, profile["plan"]) as deck:
                try:
                    explained = deck.explain(number, at, seconds)
                except NoRate:
                    continue
                limit = self._disconnect(deck, explained, number, at)
            return Rated(explained, profile["subject"], profile["plan"], limit)
        others = sorted(tried - {subject})
        raise UnauthorizedDestination(f"no rating plan of {subject}"
                                      + (f" (nor of {', '.join(others)})" if others else "")
                                      + f" prices {number}")

    def _in_turn(self, first: dict[str, Any], tenant: str, category: str, at: int,
                 tried: set[str]) -> Iterator[dict[str, Any]]:
        """The profile, then its fallback subjects' in turn (breadth first), each subject
        once, so that fallbacks that lead back end."""
        queue = [first]
        while queue:
            profile = queue.pop(0)
            if profile["subject"] in tried:
                continue
            tried.add(profile["subject"])
            yield profile
            for name in profile["fallback"]:
                nxt = self._profile(tenant, category, name, at)
                if nxt is not None:
                    nxt["subject"] = name
                    queue.append(nxt)

    def _disconnect(self, deck: Deck, explained: Explained, number: str, at: int
                    ) -> int | None:
        with self.store.read() as txn:
            raw = self.store.rating.get(txn, PLAN + deck.name.encode())
        caps = {} if raw is None else json.loads(raw)["disconnect"].get(explained.profile, {})
        dest = explained.call.destination
        cap = caps.get(dest)
        if cap is None:
            return None
        return deck.max_duration(number, at, Decimal(cap), MAX_AUTHORIZED_S)
