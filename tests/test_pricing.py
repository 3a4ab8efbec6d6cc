"""Pricing rules, call by call, with the expected cost worked out by hand.

Every test runs on both engines: the compiled one and the reference one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal as D

import pytest
from engines import ENGINES, INVALID, Compiled, Reference

from rater.tariff import RateRow, RateTable, Rounding, Tier, TimeProfile, shorthand_tiers
from rater.timeutil import parse_instant, zone

Make = Callable[..., Compiled | Reference]

BERLIN = "Europe/Berlin"
MON = "2026-11-23"  # a Monday


def at(text: str, tz: str = "UTC") -> int:
    return parse_instant(text, zone(tz))


def per_minute(price: str, first: int = 1, nxt: int = 1, from_s: int = 0) -> tuple[Tier, ...]:
    return tuple(shorthand_tiers(D(price), first, nxt, from_s))


@pytest.fixture(params=ENGINES, ids=lambda e: e.name)
def make(request: pytest.FixtureRequest) -> Make:
    engine = request.param

    def build(rows: Sequence[RateRow], **table: object) -> Compiled | Reference:
        settings: dict[str, object] = {"name": "t", "currency": "EUR"}
        settings.update(table)
        return engine(RateTable(**settings), list(rows))  # type: ignore[arg-type]

    return build


def cost(engine: Compiled | Reference, number: str, start: int, duration: int,
         decimals: int = 4) -> tuple[D, int] | None:
    r = engine.price(number, start, duration)
    if r is None:
        return None
    return D(r.cost_nano).scaleb(-9).quantize(D(1).scaleb(-decimals)), r.billed_s


T0 = at(f"{MON}T10:00")


# -- increments, tiers, fees


@pytest.mark.parametrize(("duration", "expected"), [
    (0, (D("0.0000"), 0)), (1, (D("0.0600"), 60)), (60, (D("0.0600"), 60)),
    (61, (D("0.0660"), 66)), (66, (D("0.0660"), 66)), (67, (D("0.0720"), 72)),
])
def test_sixty_six_shorthand(make: Make, duration: int, expected: tuple[D, int]) -> None:
    e = make([RateRow("44", per_minute("0.06", 60, 6))])
    assert cost(e, "44123", T0, duration) == expected


def test_per_second_billing(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.06"))])
    assert cost(e, "44123", T0, 61) == (D("0.0610"), 61)


def test_connect_fee_once_and_never_for_a_zero_second_call(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.06", 60, 60), connect_fee=D("0.01"))])
    assert cost(e, "44123", T0, 1) == (D("0.0700"), 60)
    assert cost(e, "44123", T0, 121) == (D("0.1900"), 180)
    assert cost(e, "44123", T0, 0) == (D("0.0000"), 0)


def test_tiers_price_each_stretch_of_the_call(make: Make) -> None:
    # 5 minutes at 0.10 in whole minutes, then 0.05 per second.
    tiers = (Tier(0, D("0.10"), 60, 60), Tier(300, D("0.05"), 60, 1))
    e = make([RateRow("44", tiers)])
    assert cost(e, "44", T0, 299) == (D("0.5000"), 300)
    # 0.50 + 0.05/60 = 0.500833..., rounded once: 0.5008
    assert cost(e, "44", T0, 301) == (D("0.5008"), 301)


def test_first_increment_runs_over_a_tier_start(make: Make) -> None:
    # A 7-second increment walks past the tier at second 10: increments are priced
    # by the tier in force where they start.
    tiers = (Tier(0, D("0.60"), 60, 7), Tier(10, D("0.06"), 60, 1))
    e = make([RateRow("44", tiers)], rounding=Rounding(9, "half-up"))
    # 0..7 and 7..14 at 0.60/min (0.14), then 14..20 at 0.06/min (0.006)
    assert cost(e, "44", T0, 20, 9) == (D("0.146000000"), 20)


def test_price_per_unit_other_than_a_minute(make: Make) -> None:
    e = make([RateRow("44", (Tier(0, D("1.20"), 3600, 1),))])   # 1.20 an hour
    assert cost(e, "44", T0, 90) == (D("0.0300"), 90)


def test_minimum_duration_and_grace(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.06"), min_duration_s=30, grace_s=5)])
    assert cost(e, "44", T0, 5) == (D("0.0000"), 0)      # within grace: free
    assert cost(e, "44", T0, 6) == (D("0.0300"), 30)     # then billed at least 30 s
    assert cost(e, "44", T0, 40) == (D("0.0400"), 40)


def test_cost_cap(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.60"), connect_fee=D("0.10"), cap=D("1.5"))])
    assert cost(e, "44", T0, 60) == (D("0.7000"), 60)
    assert cost(e, "44", T0, 3600) == (D("1.5000"), 3600)


# -- rounding, once


@pytest.mark.parametrize(("method", "tie_odd", "tie_even", "above"), [
    ("up", "0.002", "0.003", "0.002"),
    ("half-up", "0.002", "0.003", "0.002"),
    ("half-even", "0.002", "0.002", "0.002"),
    ("down", "0.001", "0.002", "0.001"),
])
def test_rounding_methods(make: Make, method: str, tie_odd: str, tie_even: str,
                          above: str) -> None:
    rows = [RateRow("1", per_minute("0.009")),    # 10 s: 0.0015, a tie after an odd digit
            RateRow("2", per_minute("0.015")),    # 10 s: 0.0025, a tie after an even digit
            RateRow("3", per_minute("0.0096"))]   # 10 s: 0.0016
    e = make(rows, rounding=Rounding(3, method))
    assert cost(e, "1", T0, 10, 3) == (D(tie_odd), 10)
    assert cost(e, "2", T0, 10, 3) == (D(tie_even), 10)
    assert cost(e, "3", T0, 10, 3) == (D(above), 10)


def test_a_cost_is_rounded_once_not_per_increment(make: Make) -> None:
    # 7 seconds at 0.01/min is 0.0011666...; rounding each second would make 0.0014.
    e = make([RateRow("44", per_minute("0.01"))], rounding=Rounding(4, "up"))
    assert cost(e, "44", T0, 7) == (D("0.0012"), 7)


def test_row_rounding_overrides_the_table(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.01"), rounding=Rounding(2, "up")),
              RateRow("33", per_minute("0.01"))], rounding=Rounding(6, "down"))
    assert cost(e, "44", T0, 7, 6) == (D("0.010000"), 7)
    assert cost(e, "33", T0, 7, 6) == (D("0.001166"), 7)


def test_nine_decimal_rates_are_exact(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.000000001")),
              RateRow("33", per_minute("0.123456789"))], rounding=Rounding(9, "half-even"))
    assert cost(e, "44", T0, 6000, 9) == (D("0.000000100"), 6000)
    # 0.123456789 * 7 / 60 = 0.01440329205 exactly
    assert cost(e, "33", T0, 7, 9) == (D("0.014403292"), 7)


# -- lookup


def test_longest_prefix_wins_and_falls_back(make: Make) -> None:
    e = make([RateRow("4", per_minute("0.40"), destination="zone 4"),
              RateRow("44", per_minute("0.44"), destination="UK"),
              RateRow("4479", per_minute("0.79"), destination="UK mobile")])
    assert e.price("447911", T0, 60).prefix == "4479"
    assert e.price("447811", T0, 60).prefix == "44"
    assert e.price("4", T0, 60).destination == "zone 4"
    assert e.price("5", T0, 60) is None
    assert e.price("++", T0, 60) == INVALID


def test_effective_dates(make: Make) -> None:
    change = at("2026-12-01")
    stop = at("2027-01-01")
    e = make([RateRow("44", per_minute("0.10")),
              RateRow("447", per_minute("0.20")),
              RateRow("447", per_minute("0.30"), effective_from=change, effective_to=stop)])
    assert cost(e, "4479", change - 1, 60) == (D("0.2000"), 60)
    assert cost(e, "4479", change, 60) == (D("0.3000"), 60)
    # effective_to is exclusive and nothing of 447 follows: fall back to 44.
    assert cost(e, "4479", stop - 1, 60) == (D("0.3000"), 60)
    r = e.price("4479", stop, 60)
    assert r is not None and r.prefix == "44"


def test_a_call_is_priced_by_the_row_in_force_at_its_start(make: Make) -> None:
    change = at("2026-12-01")
    e = make([RateRow("44", per_minute("0.10")),
              RateRow("44", per_minute("0.20"), effective_from=change)])
    assert cost(e, "44", change - 30, 3600) == (D("6.0000"), 3600)


def test_a_closed_prefix_falls_back_to_a_shorter_one(make: Make) -> None:
    close = at("2026-12-01")
    e = make([RateRow("44", per_minute("0.10")),
              RateRow("447", per_minute("0.20")),
              RateRow("447", effective_from=close, closed=True),
              RateRow("447", per_minute("0.25"), effective_from=at("2027-02-01"))])
    assert e.price("4479", close - 1, 60).prefix == "447"
    assert e.price("4479", close, 60).prefix == "44"
    assert cost(e, "4479", at("2027-02-01"), 60) == (D("0.2500"), 60)


# -- time profiles


def peak_offpeak(boundary: str = "start") -> dict[str, object]:
    return {"timezone": BERLIN, "profile_boundary": boundary,
            "profiles": {"peak": TimeProfile("peak", 10, frozenset(range(5)),
                                             ((8 * 3600, 20 * 3600),))}}


def test_profile_rows_apply_in_their_window_in_the_table_zone(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.05")),
              RateRow("44", per_minute("0.10"), profile="peak")], **peak_offpeak())
    assert cost(e, "44", at(f"{MON}T07:59:59", BERLIN), 60) == (D("0.0500"), 60)
    assert cost(e, "44", at(f"{MON}T08:00:00", BERLIN), 60) == (D("0.1000"), 60)
    assert cost(e, "44", at(f"{MON}T19:59:59", BERLIN), 60) == (D("0.1000"), 60)
    assert cost(e, "44", at(f"{MON}T20:00:00", BERLIN), 60) == (D("0.0500"), 60)
    assert cost(e, "44", at("2026-11-28T12:00", BERLIN), 60) == (D("0.0500"), 60)  # Saturday


def test_a_prefix_without_a_row_at_that_time_falls_back(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.05")),
              RateRow("447", per_minute("0.10"), profile="peak")], **peak_offpeak())
    assert e.price("4479", at(f"{MON}T12:00", BERLIN), 60).prefix == "447"
    assert e.price("4479", at(f"{MON}T21:00", BERLIN), 60).prefix == "44"


def test_the_higher_weight_wins_then_the_profile_defined_first(make: Make) -> None:
    profiles = {"weekday": TimeProfile("weekday", 10, frozenset(range(5))),
                "xmas": TimeProfile("xmas", 20, dates=(date(2026, 12, 25),)),
                "same": TimeProfile("same", 10, frozenset(range(7)))}
    e = make([RateRow("44", per_minute("0.30"), profile="same"),
              RateRow("44", per_minute("0.10"), profile="weekday"),
              RateRow("44", per_minute("0.01"), profile="xmas")],
             timezone=BERLIN, profiles=profiles)
    assert cost(e, "44", at("2026-12-24T12:00", BERLIN), 60) == (D("0.1000"), 60)
    assert cost(e, "44", at("2026-12-25T12:00", BERLIN), 60) == (D("0.0100"), 60)
    assert cost(e, "44", at("2026-12-26T12:00", BERLIN), 60) == (D("0.3000"), 60)  # Saturday
    # The holiday is a Berlin date: 23:30 UTC on the 24th is already the 25th there.
    assert cost(e, "44", at("2026-12-24T23:30Z", BERLIN), 60) == (D("0.0100"), 60)


def test_priced_at_the_start_or_split_at_the_boundary(make: Make) -> None:
    rows = [RateRow("44", per_minute("0.05")), RateRow("44", per_minute("0.10"), profile="peak")]
    start = at(f"{MON}T19:59:00", BERLIN)
    whole = make(rows, **peak_offpeak("start"))
    split = make(rows, **peak_offpeak("split"))
    assert cost(whole, "44", start, 120) == (D("0.2000"), 120)
    assert cost(split, "44", start, 120) == (D("0.1500"), 120)   # 60 s peak + 60 s off-peak


def test_split_prices_each_increment_by_the_row_where_it_starts(make: Make) -> None:
    rows = [RateRow("44", per_minute("0.05", 60, 60)),
            RateRow("44", per_minute("0.10", 60, 60), profile="peak")]
    e = make(rows, **peak_offpeak("split"))
    # 19:59:30-20:00:30 starts in peak, 20:00:30-20:01:30 in off-peak.
    assert cost(e, "44", at(f"{MON}T19:59:30", BERLIN), 61) == (D("0.1500"), 120)
    # The connect fee, minimum and rounding come from the row at the start.


def test_split_across_a_daylight_saving_change(make: Make) -> None:
    # Berlin skips 02:00-03:00 on 2026-03-29; "night" is 00:00-03:00 wall clock.
    profiles = {"night": TimeProfile("night", 10, windows=((0, 3 * 3600),))}
    rows = [RateRow("44", per_minute("0.60")), RateRow("44", per_minute("0.06"), profile="night")]
    e = make(rows, timezone=BERLIN, profile_boundary="split", profiles=profiles)
    start = at("2026-03-29T01:59:00", BERLIN)
    # One real minute of night (to 02:00, which is 03:00), then a day rate for 60 s.
    assert cost(e, "44", start, 120) == (D("0.6600"), 120)


# -- prepaid: the longest affordable call


def test_max_duration_is_the_inverse_of_pricing(make: Make) -> None:
    e = make([RateRow("44", per_minute("0.06", 60, 6), connect_fee=D("0.01")),
              RateRow("33", per_minute("0.06"), grace_s=10),
              RateRow("49", per_minute("0.06"), cap=D("0.50"))])
    # 0.01 + 0.06 * billed / 60 <= 0.10  =>  billed <= 90
    assert e.max_duration("44", T0, 100_000_000, 3600) == 90
    assert e.max_duration("44", T0, 69_999_999, 3600) == 0    # not even the first minute
    assert e.max_duration("33", T0, 0, 3600) == 10            # the grace period is free
    assert e.max_duration("49", T0, 500_000_000, 3600) == 3600  # capped: any length
    assert e.max_duration("5", T0, 10**9, 3600) is None
