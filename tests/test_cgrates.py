"""CGRateS tariff plans: reading the folder, with every problem named where it is."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import write

from rater.cgrates import Rate, Timing, duration, read_plan
from rater.errors import InvalidArgument, TariffPlanError
from rater.tariff import Tier

# A small plan of our own: two destinations, a tiered rate, evenings cheaper.
PLAN = {
    "Destinations.csv": "#Id,Prefix\nDST_DE,+49\nDST_DE,4930\nDST_VM,voicemail\n",
    "Rates.csv": ("#Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart\n"
                  "# the day rate: a minute, then seconds\n"
                  "RT_DAY,0.10,0.60,1m,60s,0s\n"
                  "RT_DAY,0,0.30,60s,1s,1m\n"
                  "RT_EVE,0,0.12,60s,0,0\n"
                  "RT_SMS,0,0.05,1,1,0\n"),
    "DestinationRates.csv": ("#Id,DestinationId,RatesTag,RoundingMethod,RoundingDecimals,"
                             "MaxCost,MaxCostStrategy\n"
                             "DR_DAY,DST_DE,RT_DAY,*up,4,0,\n"
                             "DR_EVE,DST_DE,RT_EVE,*middle,2,1.5,*free\n"
                             "DR_SMS,*any,RT_SMS,*up,4,0,\n"),
    "Timings.csv": ("#Id,Years,Months,MonthDays,WeekDays,Time\n"
                    "T_DAY,*any,*any,*any,1;2;3;4;5,08:00:00\n"
                    "T_EVE,*any,*any,*any,0;6,18:30:00\n"),
    "RatingPlans.csv": ("#Id,DestinationRatesId,TimingTag,Weight\n"
                        "RP_STD,DR_DAY,T_DAY,10\nRP_STD,DR_EVE,T_EVE,20\n"
                        "RP_STD,DR_EVE,*any,5\nRP_SMS,DR_SMS,*any,10\n"),
    "RatingProfiles.csv": ("#Tenant,Category,Subject,ActivationTime,RatingPlanId,"
                           "RatesFallbackSubject\n"
                           "cgrates.org,call,1001,2014-01-14T00:00:00Z,RP_STD,1002;*any\n"
                           "cgrates.org,call,1002,2014-01-14T00:00:00,RP_STD,\n"
                           "cgrates.org,sms,*any,2014-01-14T00:00:00Z,RP_SMS,\n"),
}


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    tp = tmp_path / "tp"
    tp.mkdir(exist_ok=True)
    for name, text in files.items():
        write(tp / name, text)
    return tp


def test_durations_are_gos() -> None:
    assert duration("60s") == duration("1m") == 60
    assert duration("1h30m") == 5400
    assert duration("0s") == duration("0") == 0
    assert duration("1.5s") == Fraction(3, 2)
    assert duration("1") is None and duration("1024") is None      # units: data, SMS
    for bad in ("", "1x", "m", "-1s", "1s2"):
        with pytest.raises(ValueError):
            duration(bad)


def test_a_plan_is_read_with_its_warnings(tmp_path: Path) -> None:
    plan = read_plan(folder(tmp_path, PLAN), "Europe/Berlin")
    assert plan.destinations == {"DST_DE": ["49", "4930"], "DST_VM": []}
    assert plan.rates["RT_DAY"] == Rate(Decimal("0.10"), (Tier(0, Decimal("0.60"), 60, 60),
                                                          Tier(60, Decimal("0.30"), 60, 1)))
    assert plan.rates["RT_EVE"] == Rate(Decimal(0), (Tier(0, Decimal("0.12"), 60, 1),))  # 0: 1 s
    assert "RT_SMS" not in plan.rates
    assert [(d.method, d.decimals, d.max_cost, d.max_cost_strategy)
            for d in plan.destination_rates["DR_EVE"]] == [("half-up", 2, Decimal("1.5"),
                                                            "*free")]
    assert plan.timings["T_EVE"] == Timing(None, None, None, frozenset({6, 7}), 66600)
    assert plan.timings["*any"] == Timing(None, None, None, None, 0)     # every day
    assert [(ln.destination_rates, ln.timing, ln.weight) for ln in plan.plans["RP_STD"]] == [
        ("DR_DAY", "T_DAY", 10), ("DR_EVE", "T_EVE", 20), ("DR_EVE", "*any", 5)]
    assert "RP_SMS" not in plan.plans
    first, second = plan.profiles
    assert (first.subject, first.activation, first.fallback_subjects) == (
        "1001", 1_389_657_600, ("1002", "*any"))
    assert second.activation == 1_389_657_600 - 3600          # no offset: Berlin time
    assert [str(w) for w in plan.warnings] == [
        "Destinations.csv:4:2: Prefix: 'voicemail' is not a number: skipped",
        "DestinationRates.csv:4:3: RatesTag: rate RT_SMS is counted in units (data or SMS), "
        "not time: skipped",
        "RatingPlans.csv:5:2: DestinationRatesId: DR_SMS rates units, not time: skipped",
        "RatingProfiles.csv:4:5: RatingPlanId: no voice rating plan 'RP_SMS': the profile "
        "is skipped"]


def test_headers_are_optional_and_missing_files_empty(tmp_path: Path) -> None:
    tp = folder(tmp_path, {"Destinations.csv": "\nDST_A,1\n\n",
                           "Rates.csv": "RT,0,1,60s,60s,0s"})
    plan = read_plan(tp)
    assert (plan.destinations, list(plan.rates), plan.plans, plan.profiles) == (
        {"DST_A": ["1"]}, ["RT"], {}, [])


def test_every_problem_is_named_where_it_is(tmp_path: Path) -> None:
    broken = {
        **PLAN,
        "Rates.csv": ("RT_DAY,0.1,abc,60s,60s,0s\nRT_X,0,1,60q,60s,0s\n"
                      "RT_Y,0,1,60s,60s,0s,extra\nRT_Z,-1,1,60s,1.5s,0s\n"),
        "DestinationRates.csv": "DR_DAY,DST_NONE,RT_NONE,*sideways,x,0,*maybe\n",
        "Timings.csv": "T_DAY,*any,13,*any,1;8,25:00:00\nT_EVE,x,*any,*any,*any,00:00:00\n",
        "RatingProfiles.csv": "cgrates.org,call,1001,yesterday,RP_STD,\n",
    }
    with pytest.raises(TariffPlanError) as caught:
        read_plan(folder(tmp_path, broken))
    shown = [str(p) for p in caught.value.problems]
    for expected in (
            "Rates.csv:1:3: Rate: 'abc' is not an amount of 0 or more",
            "Rates.csv:2:4: RateUnit: '60q' is not a duration such as 60s, 1m or 1h30m",
            "Rates.csv:3:7: 7 fields, 6 expected",
            "Rates.csv:4:2: ConnectFee: '-1' is not an amount of 0 or more",
            "Rates.csv:4:5: RateIncrement: '1.5s': whole seconds only",
            "DestinationRates.csv:1:2: DestinationId: no destination 'DST_NONE'",
            "DestinationRates.csv:1:3: RatesTag: no rate 'RT_NONE'",
            "DestinationRates.csv:1:4: RoundingMethod: '*sideways': *up, *middle or *down",
            "DestinationRates.csv:1:5: RoundingDecimals: 'x': 0 to 99",
            "DestinationRates.csv:1:7: MaxCostStrategy: '*maybe': *free, *disconnect or empty",
            "Timings.csv:1:3: Months: '13': each from 1 to 12",
            "Timings.csv:1:5: WeekDays: '1;8': each from 0 to 7",
            "Timings.csv:1:6: Time: '25:00:00': HH:MM:SS or *asap",
            "Timings.csv:2:2: Years: 'x': numbers separated by ';', or *any",
            "RatingPlans.csv:2:2: DestinationRatesId: no destination rates 'DR_DAY'",
            "RatingProfiles.csv:1:4: ActivationTime: 'yesterday' is not a time such as "
            "2014-01-14T00:00:00Z"):
        assert expected in shown, expected
    assert len(shown) == 19, shown    # and nothing else (the plan lines of DR_EVE, DR_SMS)
    assert caught.value.code == "BAD_TARIFF_PLAN"


def test_a_folder_that_is_not_a_plan(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a folder"):
        read_plan(tmp_path / "nowhere")
    with pytest.raises(InvalidArgument, match="holds none of"):
        read_plan(tmp_path)


# -- the shared plans (CGRateS's own, AGPL: read in place, never copied)


@pytest.mark.parametrize(("name", "counts", "warnings"), [
    ("tutorial", (4, 5, 4, 0, 4, 6), 6),
    ("tutorial2", (6, 6, 9, 6, 5, 4), 9),
    ("testtp", (3, 2, 2, 2, 2, 2), 9),
    ("tp_destination_with_any", (1, 2, 2, 0, 1, 1), 0),
    ("lcsv", (14, 15, 15, 4, 14, 27), 0),
    ("reratecdrs", (0, 1, 1, 0, 1, 3), 0),
])
def test_the_shared_plans_read(shared_data: Path, name: str, counts: tuple[int, ...],
                               warnings: int) -> None:
    plan = read_plan(shared_data / "cgrates" / name)
    assert (len(plan.destinations), len(plan.rates), len(plan.destination_rates),
            len(plan.timings) - 1, len(plan.plans), len(plan.profiles)) == counts  # less *any
    assert len(plan.warnings) == warnings
    # Every warning is about data, SMS or a prefix that is not a number.
    assert all("units" in str(w) or "not a number" in str(w) or "voice rating plan" in
               str(w) for w in plan.warnings)


# -- pricing, with costs worked out by hand from the rules (docs/cgrates.md)

PRICED = {
    **PLAN,
    "Destinations.csv": PLAN["Destinations.csv"] + "DST_FR,33\n",
    "DestinationRates.csv": PLAN["DestinationRates.csv"] + "DR_FR,DST_FR,RT_DAY,*down,2,0,\n",
    "RatingPlans.csv": PLAN["RatingPlans.csv"] + "RP_FR,DR_FR,*any,10\n",
    "RatingProfiles.csv": PLAN["RatingProfiles.csv"]
    + "cgrates.org,call,2000,2014-01-14T00:00:00Z,RP_FR,\n"
    + "cgrates.org,call,3000,2014-01-14T00:00:00Z,RP_STD,3001\n"
    + "cgrates.org,call,3001,2014-01-14T00:00:00Z,RP_STD,3000\n"
    + "cgrates.org,call,1001,2026-11-19T00:00:00Z,RP_FR,\n",
}


@pytest.fixture
def pricer(tmp_path: Path):  # type: ignore[no-untyped-def]
    from rater.cgrates import PlanPricer

    return PlanPricer(read_plan(folder(tmp_path, PRICED), "UTC"))


def utc(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text + "+00:00").timestamp())


def cost(pricer, number: str, when: str, seconds: int, subject: str = "1002"  # type: ignore[no-untyped-def]
         ) -> Decimal:
    return pricer.price(number, utc(when), seconds, subject=subject).cost


def test_a_call_across_a_timing_boundary_is_split_there(pricer) -> None:  # type: ignore[no-untyped-def]
    # Wednesday: *any (DR_EVE) until 08:00, then T_DAY (DR_DAY). 07:59:00 for 120 s:
    # 60 s at 0.12/min = 0.12, then from call second 60 RT_DAY's second tier, 60 x 1 s at
    # 0.30/min = 0.30; no connect fee (the call starts in RT_EVE); *middle, 2 places.
    c = pricer.price("+49 30 123", utc("2026-11-18T07:59:00"), 120, subject="1002")
    assert (c.cost, c.prefix) == (Decimal("0.42"), "4930")
    assert [(p.start, p.end, p.billed, p.rate) for p in c.parts] == [
        (0, 60, 60, "RT_EVE"), (60, 120, 60, "RT_DAY")]
    # 07:59:30 for 40 s: 30 s at 0.12/min = 0.06, then 10 s billed as RT_DAY's first
    # increment, a whole minute at 0.60: each part is rounded up to its own increment.
    assert cost(pricer, "4930123", "2026-11-18T07:59:30", 40) == Decimal("0.66")
    # 08:00 for 61 s: the connect fee 0.10, a first minute 0.60, one second at 0.30/min
    # = 0.005; *up to 4 places.
    assert cost(pricer, "4930123", "2026-11-18T08:00:00", 61) == Decimal("0.7050")


def test_a_call_across_midnight_is_split_there(pricer) -> None:  # type: ignore[no-untyped-def]
    # Friday 23:59:30 (T_DAY, DR_DAY) into Saturday (*any until 18:30: DR_EVE), 60 s:
    # fee 0.10 + a first minute 0.60 for the first 30 s + 30 s at 0.12/min = 0.06;
    # rounded by the rate the call starts in (*up, 4 places).
    c = pricer.price("4930123", utc("2026-11-20T23:59:30"), 60, subject="1002")
    assert (c.cost, [p.rate for p in c.parts]) == (Decimal("0.7600"), ["RT_DAY", "RT_EVE"])
    # Saturday 18:30 on: T_EVE (weight 20) takes over from *any.
    assert cost(pricer, "4930123", "2026-11-21T18:30:00", 60) == Decimal("0.12")


def test_fallback_subjects_and_activation_times(pricer) -> None:  # type: ignore[no-untyped-def]
    from rater.errors import RaterError

    # RP_STD does not price France (33), and 1002 has no fallback.
    with pytest.raises(RaterError) as caught:
        pricer.price("33123", utc("2026-11-18T10:00:00"), 60, subject="1002")
    assert caught.value.code == "UNAUTHORIZED_DESTINATION"
    # From 19 November 1001 is on RP_FR: a minute to France, fee 0.10 + 0.60, *down.
    c = pricer.price("33123", utc("2026-11-20T10:00:00"), 60, subject="1001")
    assert (c.cost, c.plan, c.subject) == (Decimal("0.70"), "RP_FR", "1001")
    # Before, on RP_STD, France falls back to 1002 (RP_STD again) and *any (none).
    with pytest.raises(RaterError) as caught:
        pricer.price("33123", utc("2026-11-18T10:00:00"), 60, subject="1001")
    assert caught.value.code == "UNAUTHORIZED_DESTINATION"
    # Fallbacks that lead back to each other are tried once each.
    with pytest.raises(RaterError) as caught:
        pricer.price("33123", utc("2026-11-18T10:00:00"), 60, subject="3000")
    assert caught.value.code == "UNAUTHORIZED_DESTINATION"
    with pytest.raises(RaterError) as caught:
        pricer.price("4930", utc("2026-11-18T10:00:00"), 60, subject="nobody")
    assert caught.value.code == "RATING_PLAN_NOT_FOUND"


def test_max_cost_free_caps_the_cost(pricer) -> None:  # type: ignore[no-untyped-def]
    # Wednesday 02:00 (*any, DR_EVE: 0.12/min, *free above 1.5): 1,000 s would be 2.00.
    assert cost(pricer, "4930123", "2026-11-18T02:00:00", 1000) == Decimal("1.50")
    assert cost(pricer, "4930123", "2026-11-18T02:00:00", 600) == Decimal("1.20")


@pytest.mark.parametrize(("number", "subject", "seconds", "expected"), [
    # RT_20CNT: 0.40 connect fee, 0.20 for the first minute, then 0.10/min by the second.
    # 120 s: 0.40 + 0.20 + 0.10 = 0.70 exactly (CGRateS's increments give 0.7002).
    ("1002", "1001", 120, "0.7000"),
    ("1002", "1001", 61, "0.6017"),       # 0.60 + 1 s at 0.10/min = 0.601666..., *up
    ("1001", "1002", 60, "0.6000"),
    # DR_1003_MAXCOST_DISC: *disconnect limits a call's length, not its cost: 200 s at
    # 0.01/s = 2.00 although MaxCost is 0.12.
    ("1003", "1001", 200, "2.0000"),
])
def test_the_tutorial_plan(shared_data: Path, number: str, subject: str, seconds: int,
                           expected: str) -> None:
    from rater.cgrates import PlanPricer

    pricer = PlanPricer(read_plan(shared_data / "cgrates" / "tutorial"))
    assert pricer.price(number, utc("2014-01-15T10:00:00"), seconds,
                        subject=subject).cost == Decimal(expected)


def test_the_drift_the_docs_describe(shared_data: Path) -> None:
    """docs/cgrates.md's example: CGRateS rounds each 1 s increment of 0.10/min up to 5
    places before adding (0.00167 each, 0.1002 a minute); rater adds exactly."""
    from decimal import ROUND_UP

    from rater.cgrates import PlanPricer

    increment = (Decimal("0.1") / 60).quantize(Decimal("0.00001"), rounding=ROUND_UP)
    assert increment == Decimal("0.00167")
    assert Decimal("0.4") + Decimal("0.2") + 60 * increment == Decimal("0.7002")
    assert Fraction("0.4") + Fraction("0.2") + 60 * Fraction(1, 600) == Fraction(7, 10)
    # The call itself, 120 s from 1001 to 1002 on the tutorial plan, priced by rater.
    pricer = PlanPricer(read_plan(shared_data / "cgrates" / "tutorial"))
    assert pricer.price("1002", utc("2014-01-15T10:00:00"), 120,
                        subject="1001").cost == Decimal("0.7000")
