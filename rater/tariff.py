"""The rate model: tables, time profiles, rows and tiers.

A *rate table* (deck) has a currency, a time zone, a default rounding rule and
named *time profiles*. A *row* prices one prefix from its effective date: a
destination name, a connect fee and one or more *tiers* ("from second S on,
price P per unit of U seconds, billed in increments of I seconds"), plus an
optional minimum billed duration, grace period, cost cap and rounding rule.

The wholesale shorthand ``A/B`` (first A seconds, then B-second increments)
is two tiers of one price: ``(0, P, 60, A)`` and ``(A, P, 60, B)``.

These objects are the one description of a deck that both engines read: the
compiler turns them into the flat structure the Cython engine reads in place,
and the reference engine prices straight from them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .money import MAX_DECIMALS, METHODS, from_nano, to_nano

#: Limits that keep every intermediate of the compiled engine inside its integers.
MAX_SECONDS = 2**31 - 1
MAX_NANOS = 2**62
MAX_WEIGHT = 2**31 - 1
MAX_TIERS = 1000
#: Time profiles a table may have (the compiled row's profile index is 16 bits).
MAX_PROFILES = 32767

#: What a rate table's name may hold.
TABLE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: An ISO 4217 currency code, as rater writes them (upper case).
CURRENCY = re.compile(r"[A-Z]{3}")
#: The years rater rates calls in (timeutil's instants: 1970..2099).
FIRST_YEAR, LAST_YEAR = 1970, 2099
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
PROFILE_BOUNDARY_MODES = ("start", "split", "cut")


@dataclass(frozen=True, slots=True)
class Rounding:
    """Round to ``decimals`` places by ``method`` (see :data:`rater.money.METHODS`)."""

    decimals: int = 4
    method: str = "half-up"

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= MAX_DECIMALS:
            raise ValueError(f"decimals must be 0..{MAX_DECIMALS}, not {self.decimals}")
        if self.method not in METHODS:
            raise ValueError(f"rounding must be one of {', '.join(METHODS)}, "
                             f"not {self.method!r}")

    def __str__(self) -> str:
        return f"{self.decimals} decimals, {self.method}"


@dataclass(frozen=True, slots=True)
class Tier:
    """From call second ``from_s``: ``price`` per ``unit_s`` seconds, in ``increment_s`` steps."""

    from_s: int
    price: Decimal
    unit_s: int = 60
    increment_s: int = 1


@dataclass(frozen=True, slots=True)
class TimeProfile:
    """When a row applies, in the table's wall-clock time.

    Active on the given weekdays (0 = Monday), and, when ``dates`` is not
    empty, only on those dates; likewise only in ``years``, ``months`` (1..12)
    and on ``month_days`` (1..31) when these are not empty. Within the day,
    inside one of ``windows`` (``[start, end)`` in seconds since midnight), or
    all day when there are none. Where profiles overlap the higher ``weight``
    wins, then the profile defined first; a row without a profile yields to any
    profile row.
    """

    name: str
    weight: int = 10
    days: frozenset[int] = ALL_DAYS
    windows: tuple[tuple[int, int], ...] = ()
    dates: tuple[date, ...] = ()
    years: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    month_days: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"profile name {self.name!r}: use letters, digits, _ . -")
        if not 0 <= self.weight <= MAX_WEIGHT:
            raise ValueError(f"weight must be 0..{MAX_WEIGHT}")
        if not self.days or not self.days <= ALL_DAYS:
            raise ValueError("a profile needs at least one weekday")
        for start, end in self.windows:
            if not 0 <= start < end <= 86400:
                raise ValueError(f"bad time window {start}..{end}")
        for what, values, low, high in (("year", self.years, 1, 9999),
                                        ("month", self.months, 1, 12),
                                        ("month day", self.month_days, 1, 31)):
            if any(not low <= v <= high for v in values):
                raise ValueError(f"each {what} must be {low}..{high}")

    def on(self, day: date) -> bool:
        """Whether the profile holds on ``day`` (at some time of it)."""
        return (day.weekday() in self.days
                and (not self.dates or day in self.dates)
                and (not self.years or day.year in self.years)
                and (not self.months or day.month in self.months)
                and (not self.month_days or day.day in self.month_days))

    def only_on(self) -> list[date] | None:
        """The days the profile is limited to by its dates and calendar fields, as far
        as rater rates (1970..2099); None when it is not limited to given days."""
        if not (self.dates or self.years or self.months or self.month_days):
            return None
        if self.dates:
            return sorted(d for d in set(self.dates) if self.on(d))
        days = []
        for year in sorted(self.years) or range(FIRST_YEAR, LAST_YEAR + 1):
            if not FIRST_YEAR <= year <= LAST_YEAR:
                continue
            for month in sorted(self.months) or range(1, 13):
                for day in sorted(self.month_days) or range(1, 32):
                    try:
                        d = date(year, month, day)
                    except ValueError:              # the 31st of a short month
                        continue
                    if d.weekday() in self.days:
                        days.append(d)
        return days

    def active(self, local: datetime) -> bool:
        """Whether the profile holds at wall-clock time ``local``."""
        if not self.on(local.date()):
            return False
        if not self.windows:
            return True
        sod = local.hour * 3600 + local.minute * 60 + local.second
        return any(start <= sod < end for start, end in self.windows)

    def describe(self) -> str:
        days = "every day" if self.days == ALL_DAYS else ",".join(
            DAY_NAMES[d] for d in sorted(self.days))
        parts = [days]
        if self.windows:
            parts.append(" ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in self.windows))
        if self.dates:
            parts.append("on " + ",".join(d.isoformat() for d in self.dates))
        for what, values in (("years", self.years), ("months", self.months),
                             ("month days", self.month_days)):
            if values:
                parts.append(f"{what} " + ",".join(str(v) for v in sorted(values)))
        return "; ".join(parts) + f" (weight {self.weight})"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name, "weight": self.weight, "days": sorted(self.days),
            "windows": [list(w) for w in self.windows],
            "dates": [d.isoformat() for d in self.dates]}
        for key, values in (("years", self.years), ("months", self.months),
                            ("month_days", self.month_days)):
            if values:                  # only where set: tables without them read as before
                out[key] = sorted(values)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> TimeProfile:
        days = obj["days"]
        windows = obj["windows"]
        dates = obj["dates"]
        assert isinstance(days, list) and isinstance(windows, list) and isinstance(dates, list)
        weight = obj["weight"]
        assert isinstance(weight, int)
        calendar = {}
        for key in ("years", "months", "month_days"):
            values = obj.get(key, [])
            assert isinstance(values, list)
            calendar[key] = frozenset(int(v) for v in values)
        return cls(name=str(obj["name"]), weight=weight, days=frozenset(days),
                   windows=tuple((int(a), int(b)) for a, b in windows),
                   dates=tuple(date.fromisoformat(d) for d in dates), **calendar)


def _hhmm(sod: int) -> str:
    return f"{sod // 3600:02d}:{sod % 3600 // 60:02d}"


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri,sun`` -> {0, 1, 2, 3, 4, 6}; also ``all``, ``weekdays``, ``weekend``."""
    named = {"all": ALL_DAYS, "weekdays": frozenset(range(5)), "weekend": frozenset({5, 6})}
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if part in named:
            days |= named[part]
            continue
        a, _, b = part.partition("-")
        try:
            ia = DAY_NAMES.index(a[:3]) if a else -1
            ib = DAY_NAMES.index(b[:3]) if b else ia
        except ValueError:
            raise ValueError(f"{part!r} is not a weekday (mon..sun)") from None
        if ia < 0:
            raise ValueError(f"{text!r} is not a list of weekdays")
        d = ia
        while True:
            days.add(d)
            if d == ib:
                break
            d = (d + 1) % 7
    return frozenset(days)


def parse_window(text: str) -> list[tuple[int, int]]:
    """``08:00-18:00`` -> one window; ``22:00-06:00`` wraps midnight into two."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?-(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a window such as 08:00-18:00")
    a = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)
    b = int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6] or 0)
    if (a > 86400 or b > 86400 or int(m[2]) > 59 or int(m[5]) > 59
            or int(m[3] or 0) > 59 or int(m[6] or 0) > 59):
        raise ValueError(f"{text!r} is not a time of day")
    if a == b:
        raise ValueError(f"{text!r} is an empty window")
    if a < b:
        return [(a, b)]
    out = [(a, 86400)] if a < 86400 else []
    return out + ([(0, b)] if b > 0 else [])


@dataclass(frozen=True, slots=True)
class RateRow:
    """One prefix's price from ``effective_from`` (``None``: always) to the next row.

    A ``closed`` row is a closure: from its effective date the prefix has no
    price in this table (calls fall back to a shorter prefix).
    """

    prefix: str
    tiers: tuple[Tier, ...] = ()
    destination: str = ""
    effective_from: int | None = None
    effective_to: int | None = None
    profile: str | None = None
    connect_fee: Decimal = Decimal(0)
    min_duration_s: int = 0
    grace_s: int = 0
    cap: Decimal | None = None
    rounding: Rounding | None = None
    closed: bool = False

    @property
    def key(self) -> tuple[str, str, int | None]:
        return (self.prefix, self.profile or "", self.effective_from)

    def problems(self, table_rounding: Rounding) -> list[tuple[str, str]]:
        """What is wrong with the row, as (field, message) pairs."""
        if self.closed:
            return []
        out = _amount_problems("connect_fee", self.connect_fee)
        for t in self.tiers:
            out += _amount_problems("rate", t.price)
        if self.cap is not None:
            out += _amount_problems("cap", self.cap)
        return out or stored_problems(self.to_stored(), table_rounding, self.effective_from)

    def to_stored(self) -> Stored:
        """The stored form: plain integers (money in nanos), as rows are kept and compiled."""
        if self.closed:
            return [1, "", 0, [], 0, 0, None, None, None, self.effective_to]
        r = self.rounding
        return [0, self.destination, to_nano(self.connect_fee),
                [[t.from_s, to_nano(t.price), t.unit_s, t.increment_s] for t in self.tiers],
                self.min_duration_s, self.grace_s,
                None if self.cap is None else to_nano(self.cap),
                None if r is None else r.decimals, None if r is None else r.method,
                self.effective_to]

    @classmethod
    def from_stored(cls, prefix: str, profile: str, effective_from: int | None,
                    st: Stored) -> RateRow:
        closed, dest, fee, tiers, min_s, grace, cap, dec, method, to = st
        return cls(prefix=prefix, profile=profile or None, effective_from=effective_from,
                   effective_to=to, closed=bool(closed), destination=dest,
                   tiers=tuple(Tier(a, from_nano(p), u, i) for a, p, u, i in tiers),
                   connect_fee=from_nano(fee), min_duration_s=min_s, grace_s=grace,
                   cap=None if cap is None else from_nano(cap),
                   rounding=None if dec is None else Rounding(dec, method))


#: A row's stored form: [closed, destination, connect_fee_nanos,
#: [[from_s, price_nanos, unit_s, increment_s], ...], min_duration_s, grace_s,
#: cap_nanos | None, decimals | None, method | None, effective_to | None].
Stored = list[Any]

#: A row as stored and compiled: prefix, profile ('' for none), effective_from, stored form.
Item = tuple[str, str, int | None, Stored]


_quote = json.encoder.encode_basestring


def encode_stored(st: Stored) -> bytes:
    """JSON of a stored row, written by hand: this runs once per row of every import."""
    closed, dest, fee, tiers, min_s, grace, cap, dec, method, to = st
    t = ",".join(f"[{a},{p},{u},{i}]" for a, p, u, i in tiers)
    return (f"[{closed},{_quote(dest)},{fee},[{t}],{min_s},{grace},"
            f"{'null' if cap is None else cap},{'null' if dec is None else dec},"
            f"{'null' if method is None else _quote(method)},"
            f"{'null' if to is None else to}]").encode()


def decode_stored(raw: bytes) -> Stored:
    return list(json.loads(raw))


def is_closed(raw: bytes) -> bool:
    """Whether a stored row is a closure, without decoding it (as encode_stored begins)."""
    return raw.startswith(b"[1,")


def cap_fits(cap: int, places: int) -> bool:
    """Whether a cost cap (nanos) is a whole number of the rounding rule's places."""
    step: int = 10 ** (MAX_DECIMALS - places)
    return cap % step == 0


def stored_problems(st: Stored, table_rounding: Rounding,
                    effective_from: int | None = None) -> list[tuple[str, str]]:
    """What is wrong with a stored row (amounts already exact nanos), as (field, message)."""
    closed, _, fee, tiers, min_s, grace, cap, dec, _, eff_to = st
    if closed:
        return []
    out: list[tuple[str, str]] = []
    if not tiers:
        out.append(("rate", "a row needs a price"))
    if len(tiers) > MAX_TIERS:
        out.append(("from_second", f"{len(tiers)} tiers; a row may have {MAX_TIERS}"))
    prev = -1
    for i, (from_s, price, unit, inc) in enumerate(tiers):
        if i == 0 and from_s != 0:
            out.append(("from_second", "the first tier must start at second 0"))
        if from_s <= prev:
            out.append(("from_second", f"tier at second {from_s} overlaps the tier before"))
        if not 0 <= from_s <= MAX_SECONDS:
            out.append(("from_second", f"{from_s} is out of range"))
        prev = from_s
        if not 0 <= price < MAX_NANOS:
            out.append(("rate", f"{from_nano(price)} is out of range"))
        if not 1 <= inc <= 86400:
            out.append(("increment", f"increment {inc} must be 1..86400 seconds"))
        if not 1 <= unit <= 86400:
            out.append(("unit", f"unit {unit} must be 1..86400 seconds"))
    if not 0 <= fee < MAX_NANOS:
        out.append(("connect_fee", f"{from_nano(fee)} is out of range"))
    if cap is not None:
        places = table_rounding.decimals if dec is None else dec
        if not 0 <= cap < MAX_NANOS:
            out.append(("cap", f"{from_nano(cap)} is out of range"))
        elif not cap_fits(cap, places):
            out.append(("cap", f"{from_nano(cap)} has more places than the "
                               f"rounding rule's {places}"))
    for name, v in (("min_duration", min_s), ("grace", grace)):
        if not 0 <= v <= MAX_SECONDS:
            out.append((name, f"{v} must be 0..{MAX_SECONDS} seconds"))
    if eff_to is not None and effective_from is not None and eff_to <= effective_from:
        out.append(("effective_to", "must be after effective_from"))
    return out


def _amount_problems(name: str, value: Decimal) -> list[tuple[str, str]]:
    if value < 0:
        return [(name, f"{value} is negative")]
    try:
        to_nano(value)
    except ValueError as exc:
        return [(name, str(exc))]
    return []


def shorthand_tiers(price: Decimal, first_s: int, next_s: int, from_s: int = 0,
                    unit_s: int = 60) -> list[Tier]:
    """The tiers of ``first_s/next_s`` billing at one price, starting at ``from_s``."""
    if first_s == next_s:
        return [Tier(from_s, price, unit_s, next_s)]
    return [Tier(from_s, price, unit_s, first_s), Tier(from_s + first_s, price, unit_s, next_s)]


def describe_tiers(row: RateRow) -> str:
    """A row's tiers as operators write them: ``0.0500/min 60/6``, then later tiers."""
    parts: list[str] = []
    tiers = row.tiers
    i = 0
    while i < len(tiers):
        t = tiers[i]
        nxt = tiers[i + 1] if i + 1 < len(tiers) else None
        if (nxt is not None and nxt.price == t.price and nxt.unit_s == t.unit_s
                and nxt.from_s == t.from_s + t.increment_s):
            inc = f"{t.increment_s}/{nxt.increment_s}"
            i += 2
        else:
            inc = f"{t.increment_s}/{t.increment_s}"
            i += 1
        per = "min" if t.unit_s == 60 else f"{t.unit_s}s"
        text = f"{t.price}/{per} {inc}"
        parts.append(f"from {t.from_s}s {text}" if t.from_s else text)
    return "; ".join(parts)


@dataclass
class RateTable:
    """A rate table's settings; its rows are stored apart."""

    name: str
    currency: str = "USD"
    timezone: str = "UTC"
    rounding: Rounding = field(default_factory=Rounding)
    #: ``start``: a call is priced by the rows in force at its start;
    #: ``split``: each increment by the row in force when it starts;
    #: ``cut``: the call is cut where the row in force changes and at each
    #: midnight, and each part is billed in whole increments of its own (CGRateS).
    profile_boundary: str = "start"
    profiles: dict[str, TimeProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not TABLE_NAME.fullmatch(self.name):
            raise ValueError(f"table name {self.name!r}: use up to 64 letters, digits, _ . : -")
        if not CURRENCY.fullmatch(self.currency):
            raise ValueError(f"currency {self.currency!r} is not an ISO 4217 code such as USD")
        if self.profile_boundary not in PROFILE_BOUNDARY_MODES:
            raise ValueError(f"profile boundary must be start, split or cut, "
                             f"not {self.profile_boundary!r}")

    def profile_id(self, name: str) -> int:
        return list(self.profiles).index(name)

    def row_rounding(self, row: RateRow) -> Rounding:
        return row.rounding or self.rounding

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "currency": self.currency, "timezone": self.timezone,
                "decimals": self.rounding.decimals, "rounding": self.rounding.method,
                "profile_boundary": self.profile_boundary,
                "profiles": [p.to_json() for p in self.profiles.values()]}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> RateTable:
        profiles = obj.get("profiles", [])
        assert isinstance(profiles, list)
        decimals = obj["decimals"]
        assert isinstance(decimals, int)
        return cls(name=str(obj["name"]), currency=str(obj["currency"]),
                   timezone=str(obj["timezone"]),
                   rounding=Rounding(decimals, str(obj["rounding"])),
                   profile_boundary=str(obj.get("profile_boundary", "start")),
                   profiles={p["name"]: TimeProfile.from_json(p) for p in profiles})

    def copy(self) -> RateTable:
        return replace(self, profiles=dict(self.profiles))
