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
Two things are skipped with a warning rather than refused: a destination
prefix that is not a number (``voicemail``), and a rate counted in units
instead of time (data and SMS: ``1``, ``1024``), with what uses it.
"""

from __future__ import annotations

import csv
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

from .errors import InvalidArgument, Problem, TariffPlanError
from .numbers import normalise_prefix
from .timeutil import zone

FILES = ("Destinations.csv", "Rates.csv", "DestinationRates.csv", "Timings.csv",
         "RatingPlans.csv", "RatingProfiles.csv")
ROUNDING = ("*up", "*middle", "*down")
MAX_COST_STRATEGIES = ("", "*free", "*disconnect")
ANY = "*any"
#: Go's duration units, in seconds.
_UNITS = {"h": Fraction(3600), "m": Fraction(60), "s": Fraction(1),
          "ms": Fraction(1, 1000), "us": Fraction(1, 10**6), "µs": Fraction(1, 10**6),
          "ns": Fraction(1, 10**9)}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")


@dataclass(frozen=True)
class Tier:
    """One row of a rate: from ``start`` seconds into the call, ``rate`` per ``unit``
    seconds, billed in steps of ``increment`` seconds."""

    connect_fee: Decimal
    rate: Decimal
    unit: int
    increment: int
    start: int


@dataclass(frozen=True)
class DestinationRate:
    destination: str               # a destination id, or *any
    rate: str
    rounding: str                  # *up, *middle or *down
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


@dataclass
class TariffPlan:
    destinations: dict[str, list[str]] = field(default_factory=dict)
    rates: dict[str, list[Tier]] = field(default_factory=dict)
    destination_rates: dict[str, list[DestinationRate]] = field(default_factory=dict)
    timings: dict[str, Timing] = field(default_factory=dict)
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


class _Rows:
    """The data rows of one file: (line number, fields), headers and comments gone."""

    def __init__(self, folder: Path, name: str, columns: int,
                 problems: list[Problem]) -> None:
        self.name = name
        self.problems = problems
        self.rows: list[tuple[int, list[str]]] = []
        path = folder / name
        if not path.exists():
            return
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(name, 0, None, None, f"cannot read: {exc}"))
            return
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = next(csv.reader([line]))
            if len(fields) < columns:
                # Trailing empty columns may be left out.
                fields += [""] * (columns - len(fields))
            if len(fields) > columns:
                self.problem(number, columns + 1, None,
                             f"{len(fields)} fields, {columns} expected")
                continue
            self.rows.append((number, [f.strip() for f in fields]))

    def problem(self, line: int, column: int | None, what: str | None, message: str) -> None:
        self.problems.append(Problem(self.name, line, column, what, message))

    def warn(self, plan: TariffPlan, line: int, column: int | None, what: str | None,
             message: str) -> None:
        plan.warnings.append(Problem(self.name, line, column, what, message))


def _decimal(rows: _Rows, line: int, column: int, what: str, text: str) -> Decimal | None:
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        rows.problem(line, column, what, f"{text!r} is not an amount of 0 or more")
        return None
    return value


def _set(rows: _Rows, line: int, column: int, what: str, text: str, low: int,
         high: int) -> frozenset[int] | bool | None:
    """A ``;``-separated set of numbers, None for *any or empty; False on a problem."""
    if text in ("", ANY):
        return None
    try:
        values = frozenset(int(v) for v in text.split(";"))
    except ValueError:
        rows.problem(line, column, what, f"{text!r}: numbers separated by ';', or *any")
        return False
    if any(not low <= v <= high for v in values):
        rows.problem(line, column, what, f"{text!r}: each from {low} to {high}")
        return False
    return values


def read_plan(folder: Path, timezone: str = "UTC") -> TariffPlan:
    """The tariff plan in ``folder``, checked; ``timezone``: that of activation times
    without an offset. Raises TariffPlanError listing every problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgument(f"{folder} is not a folder of CGRateS tariff plan files")
    if not any((folder / name).exists() for name in FILES):
        raise InvalidArgument(f"{folder} holds none of " + ", ".join(FILES))
    tz = zone(timezone)
    problems: list[Problem] = []
    plan = TariffPlan()
    unit_rates = _read_rates(folder, plan, problems)
    _read_destinations(folder, plan, problems)
    unit_only = _read_destination_rates(folder, plan, problems, unit_rates)
    _read_timings(folder, plan, problems)
    _read_plans(folder, plan, problems, unit_only)
    _read_profiles(folder, plan, problems, tz)
    if problems:
        raise TariffPlanError(problems[:50], total=len(problems))
    return plan


def _read_destinations(folder: Path, plan: TariffPlan, problems: list[Problem]) -> None:
    rows = _Rows(folder, "Destinations.csv", 2, problems)
    for line, (ident, prefix) in rows.rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        try:
            digits = normalise_prefix(prefix)
        except ValueError:
            rows.warn(plan, line, 2, "Prefix", f"{prefix!r} is not a number: skipped")
            plan.destinations.setdefault(ident, [])
            continue
        plan.destinations.setdefault(ident, []).append(digits)


def _read_rates(folder: Path, plan: TariffPlan, problems: list[Problem]) -> set[str]:
    """Rates.csv into ``plan.rates``; returns the ids of rates counted in units (data,
    SMS), which are left out."""
    rows = _Rows(folder, "Rates.csv", 6, problems)
    units: set[str] = set()
    for line, (ident, fee, rate, unit, increment, start) in rows.rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        fee_d = _decimal(rows, line, 2, "ConnectFee", fee)
        rate_d = _decimal(rows, line, 3, "Rate", rate)
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
        # CGRateS reads a unit or increment of 0 as 1 s.
        plan.rates.setdefault(ident, []).append(Tier(fee_d, rate_d, u or 1, inc or 1, st))
    for ident in sorted(units):
        plan.rates.pop(ident, None)
    for ident, tiers in plan.rates.items():
        tiers.sort(key=lambda t: t.start)
        starts = [t.start for t in tiers]
        if len(set(starts)) != len(starts):
            problems.append(Problem("Rates.csv", 0, None, "GroupIntervalStart",
                                    f"rate {ident}: two rows from the same interval start"))
    return units


def _read_destination_rates(folder: Path, plan: TariffPlan, problems: list[Problem],
                            unit_rates: set[str]) -> set[str]:
    """DestinationRates.csv into ``plan``; returns the ids with rows left out for rating
    units (data, SMS)."""
    rows = _Rows(folder, "DestinationRates.csv", 7, problems)
    skipped: set[str] = set()
    for line, (ident, dest, rate, rounding, decimals, max_cost, strategy) in rows.rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        if rate in unit_rates:
            rows.warn(plan, line, 3, "RatesTag", f"rate {rate} is counted in units (data "
                                                 f"or SMS), not time: skipped")
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
        cap = _decimal(rows, line, 6, "MaxCost", max_cost)
        if strategy not in MAX_COST_STRATEGIES:
            rows.problem(line, 7, "MaxCostStrategy", f"{strategy!r}: *free, *disconnect or "
                                                     f"empty")
            ok = False
        if ok and cap is not None:
            plan.destination_rates.setdefault(ident, []).append(DestinationRate(
                dest, rate, rounding, int(decimals), cap, strategy))
    return skipped


def _read_timings(folder: Path, plan: TariffPlan, problems: list[Problem]) -> None:
    rows = _Rows(folder, "Timings.csv", 6, problems)
    for line, (ident, *texts, start) in rows.rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        sets = [_set(rows, line, column, what, text, low, high) for column, what, text, low,
                high in zip((2, 3, 4, 5), ("Years", "Months", "MonthDays", "WeekDays"),
                            texts, (1, 1, 1, 0), (9999, 12, 31, 7), strict=True)]
        seconds: int | None = None
        if start not in ("*asap", ""):
            m = re.fullmatch(r"(\d\d):(\d\d):(\d\d)", start)
            if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59 \
                    or int(m.group(3)) > 59:
                rows.problem(line, 6, "Time", f"{start!r}: HH:MM:SS or *asap")
                continue
            seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
        elif start == "":
            seconds = 0
        if any(s is False for s in sets):
            continue
        years, months, month_days, weekdays = (s if isinstance(s, frozenset) else None
                                               for s in sets)
        if weekdays is not None:
            weekdays = frozenset(7 if d == 0 else d for d in weekdays)     # 0 is Sunday too
        plan.timings[ident] = Timing(years, months, month_days, weekdays, seconds)


def _read_plans(folder: Path, plan: TariffPlan, problems: list[Problem],
                unit_only: set[str]) -> None:
    rows = _Rows(folder, "RatingPlans.csv", 4, problems)
    for line, (ident, dr, timing, weight) in rows.rows:
        if not ident:
            rows.problem(line, 1, "Id", "empty")
            continue
        if dr not in plan.destination_rates:
            if dr in unit_only:
                rows.warn(plan, line, 2, "DestinationRatesId",
                          f"{dr} rates units, not time: skipped")
            else:
                rows.problem(line, 2, "DestinationRatesId", f"no destination rates {dr!r}")
            continue
        if timing != ANY and timing not in plan.timings:
            rows.problem(line, 3, "TimingTag", f"no timing {timing!r}")
            continue
        w = _decimal(rows, line, 4, "Weight", weight)
        if w is None:
            continue
        plan.plans.setdefault(ident, []).append(PlanLine(dr, timing, w))


def _read_profiles(folder: Path, plan: TariffPlan, problems: list[Problem], tz: object
                   ) -> None:
    rows = _Rows(folder, "RatingProfiles.csv", 6, problems)
    for line, (tenant, category, subject, activation, plan_id, fallback) in rows.rows:
        if not tenant or not category or not subject:
            rows.problem(line, 1, "Tenant", "tenant, category and subject are needed")
            continue
        try:
            when = datetime.fromisoformat(activation.replace("Z", "+00:00"))
        except ValueError:
            rows.problem(line, 4, "ActivationTime", f"{activation!r} is not a time such "
                                                    f"as 2014-01-14T00:00:00Z")
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)   # type: ignore[arg-type]
        if plan_id not in plan.plans:
            rows.warn(plan, line, 5, "RatingPlanId", f"no voice rating plan {plan_id!r}: "
                                                     f"the profile is skipped")
            continue
        plan.profiles.append(RatingProfile(
            tenant, category, subject, int(when.timestamp()), plan_id,
            tuple(s for s in fallback.split(";") if s)))


# -- pricing as CGRateS does, exactly


class CgratesError(Exception):
    """Why a call cannot be priced, in CGRateS's words (``UNAUTHORIZED_DESTINATION``,
    ``RATING_PLAN_NOT_FOUND``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    #: Before the one rounding: connect fee and parts, exactly.
    exact: Fraction
    connect_fee: Decimal
    subject: str
    plan: str
    prefix: str
    parts: tuple[Part, ...]


_METHOD = {"*up": "up", "*middle": "half-up", "*down": "down"}


class PlanPricer:
    """Prices calls from a :class:`TariffPlan` by CGRateS's rules (docs/cgrates.md),
    exactly: the cost is rounded once, by the destination rate the call starts in."""

    def __init__(self, plan: TariffPlan, timezone: str = "UTC") -> None:
        self.plan = plan
        self.tz = zone(timezone)

    # -- who is rated by which plan

    def profile(self, tenant: str, category: str, subject: str, at: int
                ) -> RatingProfile | None:
        """The subject's profile in force at ``at`` (the last activation at or before)."""
        found = [p for p in self.plan.profiles if (p.tenant, p.category, p.subject) == (
            tenant, category, subject) and p.activation <= at]
        return max(found, key=lambda p: p.activation) if found else None

    def price(self, number: str, at: int, seconds: int, *, subject: str,
              tenant: str = "cgrates.org", category: str = "call") -> Costed:
        """The cost of a call of ``seconds`` from ``at`` (UNIX seconds) to ``number``."""
        from .numbers import normalise_number

        digits = normalise_number(number)
        own = self.profile(tenant, category, subject, at)
        if own is None:
            own = self.profile(tenant, category, ANY, at)
        if own is None:
            raise CgratesError("RATING_PLAN_NOT_FOUND",
                               f"no rating profile for {tenant}:{category}:{subject} at {at}")
        seen: set[str] = set()
        queue = [own]
        while queue:
            profile = queue.pop(0)
            if profile.subject in seen:
                continue                     # fallbacks that lead back: tried once
            seen.add(profile.subject)
            costed = self._price_plan(profile, digits, at, seconds)
            if costed is not None:
                return costed
            for name in profile.fallback_subjects:
                nxt = self.profile(tenant, category, name, at)
                if nxt is not None:
                    queue.append(nxt)
        raise CgratesError("UNAUTHORIZED_DESTINATION",
                           f"no rating plan of {subject} (or its fallbacks) prices {number}")

    # -- one plan

    def _candidates(self, plan_id: str, digits: str
                    ) -> tuple[str, list[tuple[PlanLine, DestinationRate]]] | None:
        """The longest prefix the plan prices for ``digits``, and every line and
        destination rate of it (``*any`` when no prefix matches)."""
        lines = self.plan.plans[plan_id]
        best = -1
        found: list[tuple[PlanLine, DestinationRate]] = []
        for line in lines:
            for dr in self.plan.destination_rates[line.destination_rates]:
                if dr.destination == ANY:
                    length = 0
                else:
                    prefixes = [p for p in self.plan.destinations.get(dr.destination, [])
                                if digits.startswith(p)]
                    if not prefixes:
                        continue
                    length = max(len(p) for p in prefixes)
                if length > best:
                    best, found = length, []
                if length == best:
                    found.append((line, dr))
        if not found:
            return None
        return digits[:best] if best > 0 else ANY, found

    def _holds(self, timing_id: str, others: list[str], local: datetime) -> bool:
        """Whether a timing holds at wall-clock ``local``: its date sets match, and the
        time is from its start until a later-starting timing of the plan that applies
        that day, or the day's end."""
        timing = ALWAYS if timing_id == ANY else self.plan.timings[timing_id]
        if timing.start is None or not _on(timing, local):
            return False
        sod = local.hour * 3600 + local.minute * 60 + local.second
        if sod < timing.start:
            return False
        for other in others:
            t = ALWAYS if other == ANY else self.plan.timings[other]
            if t.start is not None and timing.start < t.start <= sod and _on(t, local):
                return False
        return True

    def _cuts(self, at: int, seconds: int, timings: list[str]) -> list[int]:
        """The call seconds where the call is cut: each midnight and each start time of
        the plan's timings during the call (wall clock of the plan's zone)."""
        starts = sorted({0} | {(ALWAYS if t == ANY else self.plan.timings[t]).start or 0
                               for t in timings})
        cuts = {0, seconds}
        day = datetime.fromtimestamp(at, self.tz).date()
        while True:
            for sod in starts:
                t = int(datetime.combine(day, dtime(sod // 3600, sod % 3600 // 60, sod % 60),
                                         self.tz).timestamp())
                if at < t < at + seconds:
                    cuts.add(t - at)
            day += timedelta(days=1)
            if datetime.combine(day, dtime(0), self.tz).timestamp() >= at + seconds:
                return sorted(cuts)

    def _price_plan(self, profile: RatingProfile, digits: str, at: int, seconds: int
                    ) -> Costed | None:
        found = self._candidates(profile.plan, digits)
        if found is None:
            return None
        prefix, candidates = found
        timings = sorted({line.timing for line, _ in candidates})
        cuts = self._cuts(at, seconds, timings)
        parts: list[Part] = []
        first: DestinationRate | None = None
        # A call of 0 seconds still has a start: its rate there says the connect fee.
        for a, b in itertools.pairwise(cuts if seconds else [0, 0]):
            chosen = self._choose(candidates, timings, datetime.fromtimestamp(at + a, self.tz))
            if chosen is None:
                return None
            line, dr = chosen
            first = first or dr
            if b > a:
                parts.append(self._part(a, b, line, dr))
        assert first is not None
        tiers = self.plan.rates[first.rate]
        fee = tiers[0].connect_fee if tiers[0].start == 0 else Decimal(0)
        exact = Fraction(fee) + sum((p.cost for p in parts), Fraction(0))
        if first.max_cost_strategy == "*free" and first.max_cost > 0:
            exact = min(exact, Fraction(first.max_cost))
        cost = _round(exact, first.decimals, _METHOD[first.rounding])
        return Costed(cost, exact, fee, profile.subject, profile.plan, prefix, tuple(parts))

    def _choose(self, candidates: list[tuple[PlanLine, DestinationRate]], timings: list[str],
                local: datetime) -> tuple[PlanLine, DestinationRate] | None:
        """The candidate whose timing holds at ``local`` with the highest weight."""
        holding = [c for c in candidates if self._holds(c[0].timing, timings, local)]
        return max(holding, key=lambda c: c[0].weight) if holding else None

    def _part(self, a: int, b: int, line: PlanLine, dr: DestinationRate) -> Part:
        """Seconds [a, b) of the call by ``dr``'s rate: increment by increment, each
        priced by the tier in force at its call second; the part rounded up to whole
        increments of its own."""
        tiers = self.plan.rates[dr.rate]
        pos = a
        cost = Fraction(0)
        while pos < b:
            tier = [t for t in tiers if t.start <= pos]
            t = tier[-1] if tier else tiers[0]
            cost += Fraction(t.rate) * t.increment / t.unit
            pos += t.increment
        return Part(a, b, pos - a, cost, line.destination_rates, dr.destination, dr.rate)


def _on(timing: Timing, local: datetime) -> bool:
    """Whether ``local``'s date is one of the timing's days."""
    return ((timing.years is None or local.year in timing.years)
            and (timing.months is None or local.month in timing.months)
            and (timing.month_days is None or local.day in timing.month_days)
            and (timing.weekdays is None or local.isoweekday() in timing.weekdays))


def _round(exact: Fraction, decimals: int, method: str) -> Decimal:
    from .money import round_fraction

    places = min(decimals, 9)
    return round_fraction(exact, places, method)
