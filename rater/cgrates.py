"""Reading a CGRateS tariff plan folder: the rating files, checked, in memory.

A CGRateS tariff plan is a folder of CSV files; rater reads the six that rate
voice calls:

``Destinations.csv``      Id, Prefix                          a destination's prefixes
``Rates.csv``             Id, ConnectFee, Rate, RateUnit,     the tiers of a rate: each
                          RateIncrement, GroupIntervalStart   row from its interval start
``DestinationRates.csv``  Id, DestinationId, RatesTag,        which rate prices which
                          RoundingMethod, RoundingDecimals,   destination, rounded how,
                          MaxCost, MaxCostStrategy            capped how
``Timings.csv``           Id, Years, Months, MonthDays,       when a plan's line holds
                          WeekDays, Time
``RatingPlans.csv``       Id, DestinationRatesId, TimingTag,  a plan: destination rates
                          Weight                              at timings, weighted
``RatingProfiles.csv``    Tenant, Category, Subject,          who is rated by which
                          ActivationTime, RatingPlanId,       plan from when, and whom
                          RatesFallbackSubject                to ask when it cannot

A file may start with a ``#`` header line; other lines starting with ``#`` are
comments, blank lines are skipped, and a missing file is empty. Durations are
Go's (``60s``, ``1m``, ``1h30m``, ``0s``; a bare ``0`` is 0 s). Every problem is
reported with its file, line and column, and a plan with problems is not used.
Rounding decimals above 9 are read as 9: rater's amounts are nanos.
Two things are skipped with a warning rather than refused: a destination
prefix that is not a number (``voicemail``), and a rate counted in units
instead of time (data and SMS: ``1``, ``1024``), with what uses it.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

from .errors import (
    InvalidArgument,
    InvalidInstant,
    Problem,
    Problems,
    RatingPlanNotFound,
    TariffPlanError,
    UnauthorizedDestination,
)
from .money import MAX_DECIMALS, round_fraction
from .numbers import normalise_number, normalise_prefix
from .tariff import (
    MAX_PROFILES,
    MAX_WEIGHT,
    TABLE_NAME,
    RateRow,
    RateTable,
    Rounding,
    Tier,
    TimeProfile,
)
from .timeutil import parse_instant, wall_instants, zone

FILES = ("Destinations.csv", "Rates.csv", "DestinationRates.csv", "Timings.csv",
         "RatingPlans.csv", "RatingProfiles.csv")
#: CGRateS's rounding methods, as rater's (rater.money.METHODS).
ROUNDING = {"*up": "up", "*middle": "half-up", "*down": "down"}
MAX_COST_STRATEGIES = ("", "*free", "*disconnect")
ANY = "*any"
#: The tenant and category a call is rated for unless told (CGRateS's).
DEFAULT_TENANT, DEFAULT_CATEGORY = "cgrates.org", "call"
#: Go's duration units, in seconds.
_UNITS = {"h": Fraction(3600), "m": Fraction(60), "s": Fraction(1),
          "ms": Fraction(1, 1000), "us": Fraction(1, 10**6), "µs": Fraction(1, 10**6),
          "ns": Fraction(1, 10**9)}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")


@dataclass(frozen=True)
class Rate:
    """A rate's tiers (rater's :class:`rater.tariff.Tier`, from call second ``from_s``)
    and the connect fee of its first, the one a call starting in it pays."""

    connect_fee: Decimal
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class DestinationRate:
    destination: str               # a destination id, or *any
    rate: str
    #: rater's rounding method (``up``, ``half-up``, ``down``) and places, at most 9.
    method: str
    decimals: int
    max_cost: Decimal
    max_cost_strategy: str         # "", *free or *disconnect


@dataclass(frozen=True)
class Timing:
    """When a plan's line holds: each field a set, or None for any; ``start`` seconds
    after midnight (None: *asap, which rating ignores)."""

    years: frozenset[int] | None
    months: frozenset[int] | None
    month_days: frozenset[int] | None
    weekdays: frozenset[int] | None          # 1 Monday .. 7 Sunday (0 read as 7)
    start: int | None

    def on(self, local: datetime) -> bool:
        """Whether ``local``'s date is one of its days."""
        return ((self.years is None or local.year in self.years)
                and (self.months is None or local.month in self.months)
                and (self.month_days is None or local.day in self.month_days)
                and (self.weekdays is None or local.isoweekday() in self.weekdays))


#: The timing ``*any``: every day from midnight.
ALWAYS = Timing(None, None, None, None, 0)


@dataclass(frozen=True)
class PlanLine:
    destination_rates: str
    timing: str
    weight: Decimal


@dataclass(frozen=True)
class RatingProfile:
    tenant: str
    category: str
    subject: str
    #: UNIX seconds.
    activation: int
    plan: str
    fallback_subjects: tuple[str, ...]


def in_turn(first: RatingProfile, lookup: Callable[[str], RatingProfile | None]
            ) -> Iterator[RatingProfile]:
    """A profile, then its fallback subjects' profiles (``lookup``: a subject's in force)
    in turn, breadth first, each subject once: fallbacks that lead back end."""
    seen: set[str] = set()
    queue = [first]
    while queue:
        profile = queue.pop(0)
        if profile.subject in seen:
            continue
        seen.add(profile.subject)
        yield profile
        queue += [p for name in profile.fallback_subjects if (p := lookup(name)) is not None]


@dataclass
class TariffPlan:
    #: The zone of its timings and of activation times without an offset.
    timezone: str = "UTC"
    destinations: dict[str, list[str]] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)
    destination_rates: dict[str, list[DestinationRate]] = field(default_factory=dict)
    #: Every timing, ``*any`` included.
    timings: dict[str, Timing] = field(default_factory=lambda: {ANY: ALWAYS})
    plans: dict[str, list[PlanLine]] = field(default_factory=dict)
    profiles: list[RatingProfile] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def duration(text: str) -> Fraction | None:
    """Seconds in a Go duration (``1m30s``); a bare number is a count of units (data,
    SMS), returned as None, except ``0``, which is 0 s."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return Fraction(0) if int(text) == 0 else None
    if not text or _DURATION.sub("", text):
        raise ValueError(f"{text!r} is not a duration such as 60s, 1m or 1h30m")
    return sum((Fraction(n) * _UNITS[u] for n, u in _DURATION.findall(text)), Fraction(0))


class _File:
    """One file's data rows, headers and comments gone, and where to note what is wrong
    with them."""

    def __init__(self, folder: Path, name: str, columns: int, problems: Problems,
                 plan: TariffPlan) -> None:
        self.name = name
        self.problems = problems
        self.plan = plan
        self.columns = columns
        self.text = ""
        path = folder / name
        if path.exists():
            try:
                self.text = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                self.problem(0, None, None, f"cannot read: {exc}")

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields), trailing empty fields filled in."""
        for number, fields in enumerate(csv.reader(self.text.splitlines()), 1):
            if not any(f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
                continue
            if len(fields) > self.columns:
                self.problem(number, self.columns + 1, None,
                             f"{len(fields)} fields, {self.columns} expected")
                continue
            yield number, [f.strip() for f in fields] + [""] * (self.columns - len(fields))

    def problem(self, line: int, column: int | None, what: str | None, message: str) -> None:
        self.problems.add(line, column, what, message, file=self.name)

    def warn(self, line: int, column: int | None, what: str | None, message: str) -> None:
        self.plan.warnings.append(Problem(self.name, line, column, what, message))

    def amount(self, line: int, column: int, what: str, text: str) -> Decimal | None:
        try:
            value = Decimal(text or "0")
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite() or value < 0:
            self.problem(line, column, what, f"{text!r} is not an amount of 0 or more")
            return None
        return value


def _numbers(text: str, low: int, high: int) -> frozenset[int] | None:
    """A ``;``-separated set of numbers; None for *any or empty."""
    if text in ("", ANY):
        return None
    try:
        values = frozenset(int(v) for v in text.split(";"))
    except ValueError:
        raise ValueError(f"{text!r}: numbers separated by ';', or *any") from None
    if any(not low <= v <= high for v in values):
        raise ValueError(f"{text!r}: each from {low} to {high}")
    return values


def read_plan(folder: Path, timezone: str = "UTC") -> TariffPlan:
    """The tariff plan in ``folder``, checked; ``timezone``: that of its timings and of
    activation times without an offset. Raises TariffPlanError listing every problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgument(f"{folder} is not a folder of CGRateS tariff plan files")
    if not any((folder / name).exists() for name in FILES):
        raise InvalidArgument(f"{folder} holds none of " + ", ".join(FILES))
    tz = zone(timezone)
    problems = Problems(str(folder), TariffPlanError)
    plan = TariffPlan(timezone)

    def rows(name: str, columns: int) -> _File:
        return _File(folder, name, columns, problems, plan)

    unit_rates = _read_rates(rows("Rates.csv", 6), plan)
    _read_destinations(rows("Destinations.csv", 2), plan)
    unit_only = _read_destination_rates(rows("DestinationRates.csv", 7), plan, unit_rates)
    _read_timings(rows("Timings.csv", 6), plan)
    _read_plans(rows("RatingPlans.csv", 4), plan, unit_only)
    _read_profiles(rows("RatingProfiles.csv", 6), plan, tz)
    problems.raise_if_any()
    return plan


def _read_destinations(rows: _File, plan: TariffPlan) -> None:
    for line, (ident, prefix) in rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        prefixes = plan.destinations.setdefault(ident, [])
        try:
            prefixes.append(normalise_prefix(prefix))
        except ValueError:
            rows.warn(line, 2, "Prefix", f"{prefix!r} is not a number: skipped")


def _read_rates(rows: _File, plan: TariffPlan) -> set[str]:
    """Rates.csv into ``plan.rates``; returns the ids of rates counted in units (data,
    SMS), which are left out."""
    units: set[str] = set()
    fees: dict[str, Decimal] = {}
    tiers: dict[str, list[Tier]] = {}
    for line, (ident, fee, rate, unit, increment, start) in rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        fee_d = rows.amount(line, 2, "ConnectFee", fee)
        rate_d = rows.amount(line, 3, "Rate", rate)
        times: list[int] = []
        bad = counted = False
        for column, what, text in ((4, "RateUnit", unit), (5, "RateIncrement", increment),
                                   (6, "GroupIntervalStart", start)):
            try:
                seconds = duration(text or "0")
            except ValueError as exc:
                rows.problem(line, column, what, str(exc))
                bad = True
                continue
            if seconds is None:
                counted = True
            elif seconds.denominator != 1:
                rows.problem(line, column, what, f"{text!r}: whole seconds only")
                bad = True
            else:
                times.append(int(seconds))
        if bad or fee_d is None or rate_d is None:
            continue
        if counted:
            units.add(ident)
            continue
        u, inc, st = times
        if st == 0:
            fees[ident] = fee_d
        # CGRateS reads a unit or increment of 0 as 1 s.
        tiers.setdefault(ident, []).append(Tier(st, rate_d, u or 1, inc or 1))
    for ident, found in tiers.items():
        if ident in units:
            continue
        found.sort(key=lambda t: t.from_s)
        starts = [t.from_s for t in found]
        if starts[0] != 0 or len(set(starts)) != len(starts):
            rows.problem(0, 6, "GroupIntervalStart", f"rate {ident}: its rows start at "
                                                      f"0 s, each at its own second")
            continue
        plan.rates[ident] = Rate(fees[ident], tuple(found))
    return units


def _read_destination_rates(rows: _File, plan: TariffPlan, unit_rates: set[str]) -> set[str]:
    """DestinationRates.csv into ``plan``; returns the ids with rows left out for rating
    units (data, SMS)."""
    skipped: set[str] = set()
    for line, (ident, dest, rate, rounding, decimals, max_cost, strategy) in rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        if rate in unit_rates:
            rows.warn(line, 3, "RatesTag", f"rate {rate} is counted in units (data or SMS), "
                                           f"not time: skipped")
            skipped.add(ident)
            continue
        ok = True
        if dest != ANY and dest not in plan.destinations:
            rows.problem(line, 2, "DestinationId", f"no destination {dest!r}")
            ok = False
        if rate not in plan.rates:
            rows.problem(line, 3, "RatesTag", f"no rate {rate!r}")
            ok = False
        if rounding not in ROUNDING:
            rows.problem(line, 4, "RoundingMethod", f"{rounding!r}: *up, *middle or *down")
            ok = False
        if not re.fullmatch(r"\d{1,2}", decimals or "x"):
            rows.problem(line, 5, "RoundingDecimals", f"{decimals!r}: 0 to 99")
            ok = False
        cap = rows.amount(line, 6, "MaxCost", max_cost)
        if strategy not in MAX_COST_STRATEGIES:
            rows.problem(line, 7, "MaxCostStrategy", f"{strategy!r}: *free, *disconnect or "
                                                     f"empty")
            ok = False
        if ok and cap is not None:
            plan.destination_rates.setdefault(ident, []).append(DestinationRate(
                dest, rate, ROUNDING[rounding], min(int(decimals), MAX_DECIMALS), cap,
                strategy))
    return skipped


def _read_timings(rows: _File, plan: TariffPlan) -> None:
    for line, (ident, *texts, start) in rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        sets = []
        for column, what, text, low, high in zip(
                (2, 3, 4, 5), ("Years", "Months", "MonthDays", "WeekDays"), texts,
                (1, 1, 1, 0), (9999, 12, 31, 7), strict=True):
            try:
                sets.append(_numbers(text, low, high))
            except ValueError as exc:
                rows.problem(line, column, what, str(exc))
        seconds: int | None = 0                      # empty: from midnight
        if start == "*asap":
            seconds = None
        elif start:
            m = re.fullmatch(r"(\d\d):(\d\d):(\d\d)", start)
            if m is None or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3]) > 59:
                rows.problem(line, 6, "Time", f"{start!r}: HH:MM:SS or *asap")
                continue
            seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        if len(sets) < 4:
            continue
        years, months, month_days, weekdays = sets
        if weekdays is not None:
            weekdays = frozenset(7 if d == 0 else d for d in weekdays)     # 0 is Sunday too
        plan.timings[ident] = Timing(years, months, month_days, weekdays, seconds)


def _read_plans(rows: _File, plan: TariffPlan, unit_only: set[str]) -> None:
    for line, (ident, dr, timing, weight) in rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        if dr not in plan.destination_rates:
            if dr in unit_only:
                rows.warn(line, 2, "DestinationRatesId", f"{dr} rates units, not time: "
                                                         f"skipped")
            else:
                rows.problem(line, 2, "DestinationRatesId", f"no destination rates {dr!r}")
            continue
        if timing not in plan.timings:
            rows.problem(line, 3, "TimingTag", f"no timing {timing!r}")
            continue
        w = rows.amount(line, 4, "Weight", weight)
        if w is not None:
            plan.plans.setdefault(ident, []).append(PlanLine(dr, timing, w))


def _read_profiles(rows: _File, plan: TariffPlan, tz: ZoneInfo) -> None:
    for line, (tenant, category, subject, activation, plan_id, fallback) in rows:
        if not tenant or not category or not subject:
            rows.problem(line, 1, "Tenant", "tenant, category and subject are needed")
            continue
        try:
            when = parse_instant(activation, tz)
        except InvalidInstant:
            rows.problem(line, 4, "ActivationTime", f"{activation!r} is not a time such "
                                                    f"as 2014-01-14T00:00:00Z")
            continue
        if plan_id not in plan.plans:
            rows.warn(line, 5, "RatingPlanId", f"no voice rating plan {plan_id!r}: the "
                                               f"profile is skipped")
            continue
        plan.profiles.append(RatingProfile(tenant, category, subject, when, plan_id,
                                           tuple(s for s in fallback.split(";") if s)))


# -- pricing as CGRateS does, exactly


@dataclass(frozen=True)
class Part:
    """A stretch of a call priced by one destination rate: [start, end) in seconds from
    the call's start, the seconds billed (whole increments), and its exact cost."""

    start: int
    end: int
    billed: int
    cost: Fraction
    destination_rates: str
    destination: str
    rate: str


@dataclass(frozen=True)
class Costed:
    cost: Decimal
    subject: str
    plan: str
    prefix: str
    #: The destination of the destination rate the call starts in.
    destination: str
    parts: tuple[Part, ...]


Candidate = tuple[PlanLine, DestinationRate]


class PlanPricer:
    """Prices calls from a :class:`TariffPlan` by CGRateS's rules (docs/cgrates.md),
    exactly: the cost is rounded once, by the destination rate the call starts in."""

    def __init__(self, plan: TariffPlan) -> None:
        self.plan = plan
        self.tz = zone(plan.timezone)
        # Each subject's profiles by activation, and each plan's lines by prefix.
        self._profiles: dict[tuple[str, str, str], list[RatingProfile]] = {}
        for p in sorted(plan.profiles, key=lambda p: p.activation):
            self._profiles.setdefault((p.tenant, p.category, p.subject), []).append(p)
        self._by_prefix: dict[str, dict[str, list[Candidate]]] = {}
        for plan_id, lines in plan.plans.items():
            table = self._by_prefix.setdefault(plan_id, {})
            for line in lines:
                for dr in plan.destination_rates[line.destination_rates]:
                    prefixes = [""] if dr.destination == ANY else \
                        plan.destinations[dr.destination]
                    for prefix in prefixes:
                        table.setdefault(prefix, []).append((line, dr))

    def profile(self, tenant: str, category: str, subject: str, at: int
                ) -> RatingProfile | None:
        """The subject's profile in force at ``at`` (the last activation at or before)."""
        found = self._profiles.get((tenant, category, subject), [])
        k = bisect.bisect_right(found, at, key=lambda p: p.activation)
        return found[k - 1] if k else None

    def price(self, number: str, at: int, seconds: int, *, subject: str,
              tenant: str = DEFAULT_TENANT, category: str = DEFAULT_CATEGORY) -> Costed:
        """The cost of a call of ``seconds`` from ``at`` (UNIX seconds) to ``number``."""
        digits = normalise_number(number)
        own = self.profile(tenant, category, subject, at) or self.profile(
            tenant, category, ANY, at)
        if own is None:
            raise RatingPlanNotFound(f"no rating profile for {tenant}:{category}:{subject} "
                                     f"at {at}")
        for profile in in_turn(own, lambda name: self.profile(tenant, category, name, at)):
            costed = self._price_plan(profile, digits, at, seconds)
            if costed is not None:
                return costed
        raise UnauthorizedDestination(f"no rating plan of {subject} (or its fallbacks) "
                                      f"prices {number}")

    def _price_plan(self, profile: RatingProfile, digits: str, at: int, seconds: int
                    ) -> Costed | None:
        table = self._by_prefix[profile.plan]
        first = self._choose(table, digits, at)
        if first is None:
            return None
        parts: list[Part] = []
        chosen = first
        a = 0
        for b, nxt in self._cuts(table, digits, at, seconds, first):
            if b > a:
                parts.append(self._part(a, b, *chosen[1]))
            a, chosen = b, nxt
        prefix, (_, dr) = first
        fee = self.plan.rates[dr.rate].connect_fee if seconds > 0 else Decimal(0)
        exact = Fraction(fee) + sum((p.cost for p in parts), Fraction(0))
        if dr.max_cost_strategy == "*free" and dr.max_cost > 0:
            exact = min(exact, Fraction(dr.max_cost))
        cost = round_fraction(exact, dr.decimals, dr.method)
        return Costed(cost, profile.subject, profile.plan, prefix or ANY, dr.destination,
                      tuple(parts))

    def _choose(self, table: dict[str, list[Candidate]], digits: str, t: int
                ) -> tuple[str, Candidate] | None:
        """The longest prefix of ``digits`` (*any: "") with a line holding at ``t``, and
        that line: of the lines whose timing is on that day and has started, the one
        that started last (a timing holds until a later-starting one takes over, or the
        day ends), then the one of highest weight, then the first."""
        local = datetime.fromtimestamp(t, self.tz)
        sod = local.hour * 3600 + local.minute * 60 + local.second
        for k in range(len(digits), -1, -1):
            best: Candidate | None = None
            for c in table.get(digits[:k], ()):
                timing = self.plan.timings[c[0].timing]
                if timing.start is None or timing.start > sod or not timing.on(local):
                    continue
                if best is None or (timing.start, c[0].weight) > (
                        self.plan.timings[best[0].timing].start, best[0].weight):
                    best = c
            if best is not None:
                return digits[:k], best
        return None

    def _cuts(self, table: dict[str, list[Candidate]], digits: str, at: int, seconds: int,
              first: tuple[str, Candidate]) -> list[tuple[int, tuple[str, Candidate]]]:
        """Where the call is cut (seconds from its start; its end last) and what prices
        the part from there: cut at each wall-clock midnight, and where the line in force
        changes (a part where the number has none is priced as the call's start)."""
        starts = {t.start for t in self.plan.timings.values() if t.start is not None}
        out: list[tuple[int, tuple[str, Candidate]]] = []
        current = first
        for t, midnight in wall_instants(self.plan.timezone, at, at + seconds, starts):
            now = self._choose(table, digits, t) or first
            if now != current or midnight:
                out.append((t - at, now))
                current = now
        out.append((seconds, current))
        return out

    def _part(self, a: int, b: int, line: PlanLine, dr: DestinationRate) -> Part:
        """Seconds [a, b) of the call by ``dr``'s rate: each stretch in the tier of its
        call seconds, in whole increments; the part ends on a whole increment of its
        own."""
        tiers = self.plan.rates[dr.rate].tiers
        pos = a
        cost = Fraction(0)
        for tier, nxt in itertools.zip_longest(tiers, tiers[1:]):
            end = b if nxt is None else min(b, nxt.from_s)
            if pos >= end:
                continue
            steps = -(-(end - pos) // tier.increment_s)          # rounded up
            cost += Fraction(tier.price) * steps * tier.increment_s / tier.unit_s
            pos += steps * tier.increment_s
        return Part(a, b, pos - a, cost, line.destination_rates, dr.destination, dr.rate)


# -- a plan as rate tables


@dataclass
class PlanTable:
    """A RatingPlan as a rate table (``cut`` mode: parts priced as CGRateS prices them) and
    its rows; ``disconnect``: for each profile (plan line), the MaxCost of the
    destinations it rates with ``*disconnect`` (the call's allowed cost, for
    authorization)."""

    table: RateTable
    rows: list[RateRow]
    disconnect: dict[str, dict[str, Decimal]]


#: Rows of ``*any`` stand at each first digit, ranked below the plan's own prefixes.
ANY_PREFIXES = tuple("0123456789")


def rate_tables(plan: TariffPlan, currency: str, source: str = "") -> list[PlanTable]:
    """Each RatingPlan of ``plan`` as a rate table of the same name, in ``currency``.

    A plan line becomes a time profile (its timing: the days it holds, from its
    start time to midnight) whose weight ranks it as CGRateS does: real
    destinations above ``*any``, then the later start time (a later timing takes
    over), then the higher weight, then the line written first. Raises
    TariffPlanError when a plan cannot be a table.
    """
    problems = Problems(source, TariffPlanError)
    weights = sorted({line.weight for lines in plan.plans.values() for line in lines})
    rank = {w: i for i, w in enumerate(weights)}
    if 2 * 86400 * max(len(weights), 1) > MAX_WEIGHT:
        problems.add(0, 4, "Weight", f"{len(weights)} different weights; rater ranks at "
                                     f"most {MAX_WEIGHT // (2 * 86400)}", file="RatingPlans.csv")
    out: list[PlanTable] = []
    for plan_id, lines in plan.plans.items():
        if not TABLE_NAME.fullmatch(plan_id):
            problems.add(0, 1, "Id", f"plan {plan_id!r} cannot name a rate table: up to 64 "
                                     f"letters, digits, _ . : -", file="RatingPlans.csv")
            continue
        profiles: dict[str, TimeProfile] = {}
        names: dict[tuple[PlanLine, bool], str] = {}
        rows: dict[tuple[str, str], RateRow] = {}
        disconnect: dict[str, dict[str, Decimal]] = {}
        for line in lines:
            timing = plan.timings[line.timing]
            if timing.start is None:                  # *asap: not for rating
                continue
            for dr in plan.destination_rates[line.destination_rates]:
                any_ = dr.destination == ANY
                name = names.get((line, any_), "")
                if not name:
                    # Its destination rates and timing, as a profile name may hold them.
                    base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{line.destination_rates}."
                                  f"{line.timing}{'.any' * any_}".replace("*", ""))
                    name, n = base, 2
                    while name in profiles:
                        name, n = f"{base}-{n}", n + 1
                    names[(line, any_)] = name
                    profiles[name] = TimeProfile(
                        name, weight=(((0 if any_ else 86400) + timing.start) * len(weights)
                                      + rank[line.weight]) if weights else 0,
                        days=frozenset(d - 1 for d in timing.weekdays or range(1, 8)),
                        windows=((timing.start, 86400),) if timing.start else (),
                        years=timing.years or frozenset(), months=timing.months or frozenset(),
                        month_days=timing.month_days or frozenset())
                rate = plan.rates[dr.rate]
                cap = dr.max_cost if dr.max_cost_strategy == "*free" and dr.max_cost > 0 \
                    else None
                if cap is not None and cap != round_fraction(Fraction(cap), dr.decimals, "down"):
                    problems.add(0, 6, "MaxCost", f"destination rates {line.destination_rates}: "
                                                  f"MaxCost {cap} has more places than its "
                                                  f"RoundingDecimals {dr.decimals}",
                                 file="DestinationRates.csv")
                    continue
                if dr.max_cost_strategy == "*disconnect" and dr.max_cost > 0:
                    disconnect.setdefault(name, {})[dr.destination] = dr.max_cost
                for prefix in ANY_PREFIXES if any_ else plan.destinations[dr.destination]:
                    # A prefix listed twice for one line: the first stands, as in CGRateS.
                    rows.setdefault((prefix, name), RateRow(
                        prefix=prefix, tiers=rate.tiers, destination=dr.destination,
                        profile=name, connect_fee=rate.connect_fee, cap=cap,
                        rounding=Rounding(dr.decimals, dr.method)))
        if len(profiles) > MAX_PROFILES:
            problems.add(0, 1, "Id", f"plan {plan_id} has {len(profiles)} lines to rate; a "
                                     f"rate table holds at most {MAX_PROFILES} time profiles",
                         file="RatingPlans.csv")
            continue
        for row in rows.values():
            for what, message in row.problems(Rounding()):
                problems.add(0, None, what, f"plan {plan_id}, destination {row.destination}: "
                                            f"{message}", file="Rates.csv")
        first = plan.destination_rates[lines[0].destination_rates][0]
        table = RateTable(name=plan_id, currency=currency, timezone=plan.timezone,
                          rounding=Rounding(first.decimals, first.method),
                          profile_boundary="cut", profiles=profiles)
        out.append(PlanTable(table, list(rows.values()), disconnect))
    problems.raise_if_any()
    return out

