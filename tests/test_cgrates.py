"""CGRateS tariff plans: reading the folder, with every problem named where it is."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import write

from rater.cgrates import ALWAYS, Tier, Timing, duration, read_plan
from rater.errors import InvalidArgument, TariffPlanError

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
    assert plan.rates["RT_DAY"] == [Tier(Decimal("0.10"), Decimal("0.60"), 60, 60, 0),
                                    Tier(Decimal(0), Decimal("0.30"), 60, 1, 60)]
    assert plan.rates["RT_EVE"] == [Tier(Decimal(0), Decimal("0.12"), 60, 1, 0)]  # 0: 1 s
    assert "RT_SMS" not in plan.rates
    assert [(d.rounding, d.decimals, d.max_cost, d.max_cost_strategy)
            for d in plan.destination_rates["DR_EVE"]] == [("*middle", 2, Decimal("1.5"),
                                                            "*free")]
    assert plan.timings["T_EVE"] == Timing(None, None, None, frozenset({6, 7}), 66600)
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
    assert ALWAYS.start == 0


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
            len(plan.timings), len(plan.plans), len(plan.profiles)) == counts
    assert len(plan.warnings) == warnings
    # Every warning is about data, SMS or a prefix that is not a number.
    assert all("units" in str(w) or "not a number" in str(w) or "voice rating plan" in
               str(w) for w in plan.warnings)
