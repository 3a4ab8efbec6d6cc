"""The compiled engine equals the reference engine, on random decks and calls.

Decks are drawn with nested prefixes over a small alphabet, several rows per
prefix (effective dates, closures, time profiles), several tiers per row, and
every optional rule (connect fee, minimum, grace, cap, rounding override);
tables in zones with and without daylight saving (and Lord Howe's half-hour
shift), priced at the start, split at profile boundaries, or cut there and
at midnight. Calls land near
the 2026 daylight-saving changes.
"""

from __future__ import annotations

import os
from datetime import date

import numpy as np
from engines import Compiled, Reference
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rater.errors import InvalidInstant, InvalidNumber, NoRate
from rater.money import METHODS, from_nano, to_nano
from rater.numbers import normalise_number
from rater.tariff import RateRow, RateTable, Rounding, Tier, TimeProfile
from rater.timeutil import parse_instant, transitions, zone

# RATER_HYPOTHESIS=thorough searches ten times harder (run it after changing the engine).
SCALE = 10 if os.environ.get("RATER_HYPOTHESIS") == "thorough" else 1

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# 2026-03-01 .. 2026-04-15 and 2026-10-15 .. 2026-11-15: both DST changes of each zone.
SPANS = [(1772323200, 1776211200), (1792022400, 1794700800)]
UNITS = [1, 6, 30, 60, 3600]

nanos = st.one_of(st.integers(0, 10**9), st.sampled_from([0, 10_000_000, 123_456_789,
                                                         5 * 10**9]))


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, TimeProfile]:
    out = {}
    for i in range(draw(st.integers(0, 3))):
        days = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
        windows = []
        for _ in range(draw(st.integers(0, 2))):
            a = draw(st.integers(0, 47)) * 1800
            b = draw(st.integers(a // 1800 + 1, 48)) * 1800
            windows.append((a, b))
        dates = tuple(date.fromordinal(draw(st.integers(date(2026, 3, 1).toordinal(),
                                                        date(2026, 11, 15).toordinal())))
                      for _ in range(draw(st.integers(0, 1))))
        name = f"p{i}"
        calendar = draw(st.sampled_from([{}, {}, {"months": frozenset({3, 11})},
                                         {"month_days": frozenset({1, 15, 29})},
                                         {"years": frozenset({2025, 2026})},
                                         {"years": frozenset({2027})}]))
        out[name] = TimeProfile(name, weight=draw(st.integers(0, 3)), days=days,
                                windows=tuple(windows), dates=dates, **calendar)
    return out


@st.composite
def tiers(draw: st.DrawFn) -> tuple[Tier, ...]:
    starts = [0, *sorted(draw(st.sets(st.integers(1, 900), max_size=2)))]
    return tuple(Tier(s, from_nano(draw(nanos)), draw(st.sampled_from(UNITS)),
                      draw(st.integers(1, 90))) for s in starts)


@st.composite
def decks(draw: st.DrawFn) -> tuple[RateTable, list[RateRow]]:
    decimals = draw(st.integers(0, 9))
    table = RateTable(name="t", currency="EUR", timezone=draw(st.sampled_from(ZONES)),
                      rounding=Rounding(decimals, draw(st.sampled_from(list(METHODS)))),
                      profile_boundary=draw(st.sampled_from(["start", "split", "cut"])),
                      profiles=draw(profiles()))
    span = draw(st.sampled_from(SPANS))
    prefixes = draw(st.sets(st.text("0123", min_size=1, max_size=4), min_size=1, max_size=12))
    rows: dict[tuple[str, str, int | None], RateRow] = {}
    for prefix in sorted(prefixes):
        for _ in range(draw(st.integers(1, 3))):
            eff = draw(st.one_of(st.none(), st.integers(*span)))
            profile = draw(st.one_of(st.none(), st.sampled_from(sorted(table.profiles) or [""])))
            profile = profile or None
            key = (prefix, profile or "", eff)
            if draw(st.integers(0, 9)) == 0 and eff is not None:
                rows[key] = RateRow(prefix=prefix, effective_from=eff, profile=profile,
                                    closed=True)
                continue
            rule = draw(st.one_of(st.none(), st.builds(
                Rounding, st.integers(0, 9), st.sampled_from(list(METHODS)))))
            places = (rule or table.rounding).decimals
            cap = draw(st.one_of(st.none(), st.integers(0, 3 * 10**9)))
            if cap is not None:
                cap -= cap % 10 ** (9 - places)
            to = draw(st.one_of(st.none(), st.integers(*span)))
            if to is not None and eff is not None and to <= eff:
                to = None
            rows[key] = RateRow(
                prefix=prefix, tiers=draw(tiers()), destination=f"d-{prefix}-{len(rows)}",
                effective_from=eff, effective_to=to, profile=profile,
                connect_fee=from_nano(draw(nanos)),
                min_duration_s=draw(st.sampled_from([0, 0, 30, 61])),
                grace_s=draw(st.sampled_from([0, 0, 3, 10])),
                cap=None if cap is None else from_nano(cap), rounding=rule)
    return table, list(rows.values())


def calls(table_rows: tuple[RateTable, list[RateRow]]) -> st.SearchStrategy[tuple[str, int, int]]:
    prefixes = sorted({r.prefix for r in table_rows[1]})
    numbers = st.one_of(
        st.builds(lambda p, tail: p + tail, st.sampled_from(prefixes), st.text("0123456789",
                                                                               max_size=6)),
        st.text("0123", min_size=1, max_size=8))
    start = st.one_of(*(st.integers(a, b) for a, b in SPANS))
    return st.tuples(numbers, start, st.integers(0, 7200))


SETTINGS = settings(max_examples=300 * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.data())
def test_compiled_equals_reference(data: st.DataObject) -> None:
    table, rows = data.draw(decks())
    compiled, reference = Compiled(table, rows), Reference(table, rows)
    for _ in range(8):
        number, start, duration = data.draw(calls((table, rows)))
        assert compiled.price(number, start, duration) == \
            reference.price(number, start, duration), (number, start, duration)


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_engine_explains_a_call_as_the_reference_bills_it(data: st.DataObject) -> None:
    table, rows = data.draw(decks())
    compiled, reference = Compiled(table, rows), Reference(table, rows)
    number, start, duration = data.draw(calls((table, rows)))
    e = compiled.engine
    cost, billed, _, _, stretches, truncated = e.charges(number, start, duration)
    try:
        priced = reference.deck.price(number, start, duration)
    except NoRate:
        assert cost == -1
        return
    except InvalidNumber:
        assert cost == -2
        return
    assert (cost, billed, truncated) == (priced.cost_nano, priced.billed_s, False)
    got = []
    for r, tier, from_s, increments in stretches:
        _, price, unit, increment = e.tier_info(tier)
        got.append((e.destination(r), from_s, increments, increment, price, unit))
    want = []
    for c in priced.charges:
        # The reference bills with the rows it was given: the tier's row is one of them.
        row_of = next(r for r in rows if any(t is c.tier for t in r.tiers))
        want.append((row_of.destination, c.from_s, c.increments, c.tier.increment_s,
                     to_nano(c.tier.price), c.tier.unit_s))
    assert got == want


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_max_duration_is_the_exact_inverse(data: st.DataObject) -> None:
    table, rows = data.draw(decks())
    compiled, reference = Compiled(table, rows), Reference(table, rows)
    number, start, _ = data.draw(calls((table, rows)))
    amount = data.draw(st.one_of(st.integers(0, 2 * 10**9), st.integers(-10**6, -1)))
    limit = data.draw(st.integers(0, 1800))
    got = compiled.max_duration(number, start, amount, limit)
    assert got == reference.max_duration(number, start, amount, limit)
    if got is not None and amount < 0:
        assert got == 0                    # less than nothing affords no call at all
    elif got is not None:
        # The definition: it is affordable and one more second is not (or the limit).
        assert compiled.price(number, start, got).cost_nano <= amount
        if got < limit:
            assert compiled.price(number, start, got + 1).cost_nano > amount


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_batch_equals_single_calls(data: st.DataObject) -> None:
    table, rows = data.draw(decks())
    compiled = Compiled(table, rows)
    sample = data.draw(st.lists(calls((table, rows)), min_size=1, max_size=40))
    numbers = np.array([int(n) for n, _, _ in sample], np.uint64)
    raw = np.array([n.encode() for n, _, _ in sample], "S")
    starts = np.array([s for _, s, _ in sample], np.int64)
    durations = np.array([d for _, _, d in sample], np.int64)
    e = compiled.engine
    as_bytes = raw.view(np.uint8).reshape(len(sample), raw.dtype.itemsize)
    for arg, as_int in ((numbers, True), (as_bytes, False)):
        n = len(sample)
        cost, billed = np.empty(n, np.int64), np.empty(n, np.int64)
        row, plen = np.empty(n, np.int32), np.empty(n, np.int8)
        e.rate_batch(arg, starts, durations, cost, billed, row, plen)
        for i, (number, start, duration) in enumerate(sample):
            # An integer number has no leading zeros: compare like with like.
            one = e.rate(int(number) if as_int else number, start, duration)
            assert (cost[i], billed[i], row[i], plen[i]) == one


separators = st.sampled_from(["", " ", "-", ".", "(", ")", "\t"])


@settings(max_examples=500 * SCALE, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(list("0123456789+#*ab")), separators), max_size=20),
       st.sampled_from(["", "9#", "12", "00"]))
def test_compiled_normalisation_equals_python(chars: list[str], tech: str) -> None:
    table = RateTable(name="t", currency="EUR")
    rows = [RateRow(prefix=str(d), tiers=(Tier(0, from_nano(1), 60, 1),),
                    destination=str(d)) for d in range(10)]
    engine = Compiled(table, rows).engine
    raw = "".join(chars)
    row, plen = engine.lookup(raw, 1_790_000_000, tech.encode())
    try:
        digits = normalise_number(raw, tech)
    except InvalidNumber:
        assert row == -2, raw
        return
    assert plen == 1 and engine.destination(row) == digits[0]


@st.composite
def instants_text(draw: st.DrawFn) -> str:
    y = draw(st.integers(1969, 2101))
    mo = draw(st.integers(0, 13))
    d = draw(st.integers(0, 32))
    text = f"{y:04d}-{mo:02d}-{d:02d}"
    if draw(st.booleans()):
        text += draw(st.sampled_from(["T", " "]))
        text += f"{draw(st.integers(0, 25)):02d}:{draw(st.integers(0, 61)):02d}"
        if draw(st.booleans()):
            text += f":{draw(st.integers(0, 61)):02d}"
            if draw(st.booleans()):
                text += draw(st.sampled_from([".", ","])) + draw(st.text("0123456789",
                                                                         max_size=4))
        text += draw(st.sampled_from(["", "", "Z", "+01:00", "-0530", "+14", "+24:00",
                                      "-03:61", "x"]))
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " "]))


@settings(max_examples=1500 * SCALE, deadline=None)
@given(st.one_of(instants_text(), st.integers(-5, 5_000_000_000).map(str),
                 st.text("0123456789-:T Z+", max_size=26)),
       st.sampled_from(ZONES))
def test_compiled_instant_parser_equals_python(text: str, tz: str) -> None:
    table = RateTable(name="t", currency="EUR", timezone=tz)
    engine = Compiled(table, []).engine
    try:
        expected: int | None = parse_instant(text, zone(tz))
    except InvalidInstant:
        expected = None
    assert engine.parse_instant(text) == expected, text


@st.composite
def near_a_change(draw: st.DrawFn) -> tuple[str, int]:
    """A zone and an instant within two hours of one of its clock changes (or anywhere)."""
    tz = draw(st.sampled_from(ZONES))
    changes = transitions(tz)[0]
    if not changes or draw(st.integers(0, 9)) == 0:
        return tz, draw(st.integers(1_000_000_000, 4_000_000_000))
    return tz, draw(st.sampled_from(changes)) + draw(st.integers(-7200, 7200))


@settings(max_examples=400 * SCALE, deadline=None)
@given(near_a_change())
def test_wall_clock_reading_matches_zoneinfo_around_every_change(
        at: tuple[str, int]) -> None:
    # Read the local wall time of t back as naive text: fold=0 picks the earlier instant,
    # so a repeated hour reads as its first pass, and each skipped hour is never written.
    from datetime import datetime

    tz, t = at
    assume(t >= 0)

    local = datetime.fromtimestamp(t, zone(tz)).replace(tzinfo=None)
    table = RateTable(name="t", currency="EUR", timezone=tz)
    engine = Compiled(table, []).engine
    text = local.isoformat(sep=" ")
    assume(local.year < 2100)
    assert engine.parse_instant(text) == parse_instant(text, zone(tz))
