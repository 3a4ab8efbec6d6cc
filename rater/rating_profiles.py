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
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cgrates import (
    ANY,
    DEFAULT_CATEGORY,
    DEFAULT_TENANT,
    RatingProfile,
    in_turn,
    rate_tables,
    read_plan,
)
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
from .tariff import CURRENCY
from .timeutil import instant, zone

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# Keys of the store's rating space.
PROFILE = b"profile\0"      # + tenant \0 category \0 subject \0 activation (8 bytes)
PLAN = b"plan\0"            # + table name: what the table keeps of its plan
IMPORT = b"import"          # the last import: its zone
#: The longest call a ``*disconnect`` MaxCost is checked over, for authorization.


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
    if not CURRENCY.fullmatch(currency.upper()):
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
            number, changed = decks.hold_exactly(txn, pt.table, pt.rows, "import-cgrates",
                                                 source)
            store.rating.put(txn, PLAN + name, json.dumps({
                "disconnect": {profile: {dest: str(cost) for dest, cost in caps.items()}
                               for profile, caps in pt.disconnect.items()}}).encode())
            done.append(ImportedPlan(pt.table.name, number, changed,
                                     len(pt.rows), len(pt.table.profiles)))
        for key, _ in list(store.rating.items(txn, PROFILE)):
            store.rating.delete(txn, key)
        for p in plan.profiles:
            store.rating.put(txn, _profile_key(p.tenant, p.category, p.subject, p.activation),
                             json.dumps({"plan": p.plan,
                                         "fallback": list(p.fallback_subjects)}).encode())
        store.rating.put(txn, IMPORT, json.dumps({"timezone": timezone}).encode())
        return done

    plans = store.write(apply)
    return CgratesImport(str(folder), plans, len(plan.profiles), plan.warnings)


@dataclass(frozen=True)
class Rated:
    """A call priced through the rating profiles (by the table ``explained.call.table``)."""

    explained: Explained
    #: The subject whose plan priced it (the one asked for, ``*any``, or a fallback).
    subject: str
    #: ``*disconnect``: the longest call its MaxCost allows (at most a day).
    max_duration: int | None
    #: The table's zone.
    tz: ZoneInfo


class RatingProfiles:
    """The rating profiles of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def rate(self, number: str, at: int | str | None, seconds: int, *, subject: str,
             tenant: str = DEFAULT_TENANT, category: str = DEFAULT_CATEGORY) -> Rated:
        """Price a call of ``seconds`` from ``at`` (None: now) to ``number`` for
        ``subject``."""
        with self.store.read() as txn:
            raw = self.store.rating.get(txn, IMPORT)    # the zone of the last import
            at = instant(at, zone("UTC" if raw is None else json.loads(raw)["timezone"]))

            def lookup(name: str) -> RatingProfile | None:
                return self._profile(txn, tenant, category, name, at)

            own = lookup(subject) or lookup(ANY)
            if own is None:
                raise RatingPlanNotFound(f"no rating profile for {tenant}:{category}:"
                                         f"{subject} (nor {ANY}) at that time",
                                         hint="`rater deck import-cgrates` imports them")
            chain = list(in_turn(own, lookup))
            caps = {p.plan: json.loads(self.store.rating.get(txn, PLAN + p.plan.encode())
                                       or b'{"disconnect": {}}')["disconnect"]
                    for p in chain}
        for profile in chain:
            with Deck(self.store, profile.plan) as deck:
                try:
                    explained = deck.explain(number, at, seconds)
                except NoRate:
                    continue
                cap = caps[profile.plan].get(explained.profile, {}).get(
                    explained.call.destination)
                limit = None if cap is None else deck.max_duration(number, at, Decimal(cap))
                return Rated(explained, profile.subject, limit, deck.tz)
        others = sorted({p.subject for p in chain} - {subject})
        raise UnauthorizedDestination(f"no rating plan of {subject}"
                                      + (f" (nor of {', '.join(others)})" if others else "")
                                      + f" prices {number}")

    def _profile(self, txn: Any, tenant: str, category: str, subject: str, at: int
                 ) -> RatingProfile | None:
        """The subject's profile in force at ``at`` (the last activation at or before)."""
        found = None
        for key, value in self.store.rating.items(txn, _profile_key(tenant, category,
                                                                    subject)):
            activation = int.from_bytes(key[-8:], "big") - 2**63
            if activation > at:
                break
            found = activation, value
        if found is None:
            return None
        stored = json.loads(found[1])
        return RatingProfile(tenant, category, subject, found[0], stored["plan"],
                             tuple(stored["fallback"]))
