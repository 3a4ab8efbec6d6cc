"""Instants, time zones and the transition tables the compiled engine reads.

An instant is an integer count of seconds since 1970-01-01T00:00:00Z. Text
without a zone (a CDR time, ``--at``, a date-only effective date) is wall-clock
time in the rate table's zone. Where the wall clock is ambiguous (the repeated
hour in autumn) or missing (the skipped hour in spring), the reading is the one
of PEP 495 ``fold=0``: the UTC offset in force *before* the transition.

Instants are accepted from 1970 to 2099, the span the compiled engine carries
each zone's transitions for.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInstant

#: First and last instants rater accepts: 1970-01-01 and 2100-01-01 (exclusive), UTC.
MIN_INSTANT = 0
END_INSTANT = 4102444800

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?")


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; an unknown zone is an InvalidArgument."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInstant(f"unknown time zone {name!r}",
                             hint="use an IANA name such as Europe/Berlin or UTC") from None


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    return date(y, m, d).toordinal() - 719163


def instant(at: int | str | datetime | None, tz: ZoneInfo) -> int:
    """An instant from an int, an ISO string or a datetime (in ``tz`` when naive); None:
    now."""
    if at is None:
        return int(time.time())
    if isinstance(at, datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=tz)
        t = int(at.timestamp())
        if not 0 <= t < END_INSTANT:
            raise InvalidInstant(f"{at.isoformat()} is outside 1970..2099")
        return t
    if isinstance(at, int):
        if not 0 <= at < END_INSTANT:
            raise InvalidInstant(f"{at} is outside 1970..2099")
        return at
    return parse_instant(at, tz)


def parse_instant(text: str, tz: ZoneInfo) -> int:
    """Seconds since the epoch of an ISO 8601 date or date-time, or of a count of seconds.

    Accepted: ``2026-11-21``, ``2026-11-21T09:30``, ``2026-11-21 09:30:15``,
    a fraction of a second (dropped: calls are billed in whole seconds),
    ``Z`` or an offset such as ``+01:00``; a bare integer is a UNIX time.
    A date or time without offset is wall-clock time in ``tz``.
    """
    s = text.strip(" \t")
    if s.isascii() and s.isdigit():
        t = int(s)
        return _check_range(t, text)
    m = _ISO.fullmatch(s)
    if not m:
        raise InvalidInstant(f"{text!r} is not an ISO 8601 date or date-time")
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    hh = int(m[4]) if m[4] else 0
    mi = int(m[5]) if m[5] else 0
    ss = int(m[6]) if m[6] else 0
    try:
        naive = datetime(y, mo, d, hh, mi, ss)
    except ValueError as exc:
        raise InvalidInstant(f"{text!r}: {exc}") from None
    off = m[8]
    if off is None:
        t = int(naive.replace(tzinfo=tz).timestamp())
    elif off == "Z":
        t = int(naive.replace(tzinfo=UTC).timestamp())
    else:
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:] or 0)
        if oh > 23 or om > 59:
            raise InvalidInstant(f"{text!r}: bad UTC offset {off}")
        delta = timedelta(hours=oh, minutes=om) * sign
        t = int(naive.replace(tzinfo=timezone(delta)).timestamp())
    return _check_range(t, text)


def _check_range(t: int, text: str) -> int:
    if not MIN_INSTANT <= t < END_INSTANT:
        raise InvalidInstant(f"{text!r} is outside 1970..2099")
    return t


def format_instant(t: int, tz: ZoneInfo) -> str:
    """An instant as ISO 8601 wall-clock time with its offset in ``tz``."""
    return datetime.fromtimestamp(t, tz).isoformat()


@functools.lru_cache(maxsize=64)
def transitions(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The UTC-offset changes of zone ``name`` from 1970 to 2099.

    Returns ``(at, offset)``: ``at[i]`` is the instant of the i-th change and
    ``offset[i + 1]`` the offset (seconds east of UTC) from then on;
    ``offset[0]`` is the offset in force on 1970-01-01.
    """
    tz = zone(name)

    def off(t: int) -> int:
        u = datetime.fromtimestamp(t, tz).utcoffset()
        assert u is not None
        return int(u.total_seconds())

    at: list[int] = []
    offsets = [off(MIN_INSTANT)]
    step = 86400
    t = MIN_INSTANT
    while t < END_INSTANT:
        nxt = min(t + step, END_INSTANT)
        o = off(nxt)
        if o != offsets[-1]:
            lo, hi = t, nxt  # off(lo) is the old offset, off(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if off(mid) == offsets[-1]:
                    lo = mid
                else:
                    hi = mid
            at.append(hi)
            offsets.append(o)
        t = nxt
    return tuple(at), tuple(offsets)


def wall_instants(name: str, start: int, end: int, seconds_of_day: set[int]
                  ) -> list[tuple[int, bool]]:
    """The instants in (start, end) where the wall clock of zone ``name`` reaches one of
    ``seconds_of_day`` (either reading of an hour that comes twice) or jumps (an offset
    change), in order, each with whether it is midnight on the wall clock. Anything that
    holds by wall-clock time can change only there."""
    tz = zone(name)
    found = {a for a in transitions(name)[0] if start < a < end}
    day = datetime.fromtimestamp(start, tz).date() - timedelta(days=1)
    while datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() < end + 86400:
        for sod in seconds_of_day | {0}:
            for fold in (0, 1):
                wall = datetime(day.year, day.month, day.day, sod // 3600, sod // 60 % 60,
                                sod % 60, tzinfo=tz, fold=fold)
                found.add(int(wall.timestamp()))
        day += timedelta(days=1)
    return [(t, datetime.fromtimestamp(t, tz).time() == datetime.min.time())
            for t in sorted(t for t in found if start < t < end)]
