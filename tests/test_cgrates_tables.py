"""CGRateS plans as rate tables: `rater deck import-cgrates` and `rater rate --subject`.

The tables a plan becomes price every call as the plan's own pricer does
(Hypothesis, on generated plans); the import is atomic; and the shared plans,
imported into a real store, price calls at the costs worked out by hand below
from the rules in docs/cgrates.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import failed, ok, run_cli
from engines import Compiled, Reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cgrates import PRICED, folder, utc

from rater.cgrates import (
    ALWAYS,
    ANY,
    DestinationRate,
    PlanLine,
    PlanPricer,
    Rate,
    RatingProfile,
    TariffPlan,
    Timing,
    rate_tables,
)
from rater.errors import TariffPlanError, UnauthorizedDestination
from rater.money import to_nano
from rater.rating_profiles import RatingProfiles, import_plan
from rater.store import Store
from rater.tariff import Tier

# -- the tables price as the plan does

prices = st.sampled_from(["0", "0.01", "0.05", "0.6", "1.2", "0.0333"]).map(Decimal)


@st.composite
def rates(draw: st.DrawFn) -> Rate:
    starts = [0, *sorted(draw(st.sets(st.sampled_from([30, 60, 90]), max_size=2)))]
    tiers = tuple(Tier(s, draw(prices), draw(st.sampled_from([1, 60])),
                       draw(st.sampled_from([1, 30, 60]))) for s in starts)
    return Rate(draw(st.sampled_from(["0", "0.1", "0.25"]).map(Decimal)), tiers)


@st.composite
def timings(draw: st.DrawFn) -> Timing:
    return Timing(
        years=draw(st.sampled_from([None, None, frozenset({2026}), frozenset({2025})])),
        months=draw(st.sampled_from([None, None, frozenset({3, 10})])),
        month_days=draw(st.sampled_from([None, None, frozenset({1, 29, 31})])),
        weekdays=draw(st.one_of(st.none(), st.frozensets(st.integers(1, 7), min_size=1))),
        start=draw(st.sampled_from([0, 8 * 3600, 12 * 3600 + 1800, 18 * 3600, 86400 - 30])))


@st.composite
def plans(draw: st.DrawFn) -> TariffPlan:
    plan = TariffPlan(draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])))
    for i in range(draw(st.integers(1, 3))):
        plan.destinations[f"D{i}"] = draw(st.lists(st.text("123", min_size=1, max_size=3),
                                                   min_size=1, max_size=2, unique=True))
    for i in range(draw(st.integers(1, 3))):
        plan.rates[f"R{i}"] = draw(rates())
    for i in range(draw(st.integers(1, 3))):
        plan.destination_rates[f"DR{i}"] = [
            DestinationRate(draw(st.sampled_from([*plan.destinations, ANY])),
                            draw(st.sampled_from(sorted(plan.rates))),
                            draw(st.sampled_from(["up", "half-up", "down"])),
                            draw(st.integers(0, 5)),
                            Decimal(draw(st.sampled_from([0, 1, 2]))),
                            draw(st.sampled_from(["", "*free", "*disconnect"])))
            for _ in range(draw(st.integers(1, 2)))]
    for i in range(draw(st.integers(0, 3))):
        plan.timings[f"T{i}"] = draw(timings())
    plan.plans["P"] = [PlanLine(draw(st.sampled_from(sorted(plan.destination_rates))),
                                draw(st.sampled_from(sorted(plan.timings))),
                                Decimal(draw(st.sampled_from([0, 10, 20]))))
                       for _ in range(draw(st.integers(1, 4)))]
    plan.profiles.append(RatingProfile("cgrates.org", "call", "s", 0, "P", ()))
    return plan


# 2026: around both daylight-saving changes of Europe and North America, and the
# turn of March into April (month days 29 and 31, months 3 and 10).
SPANS = [(1772236800, 1775001600), (1792195200, 1794700800)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_tables_of_a_plan_price_as_the_plan(data: st.DataObject) -> None:
    plan = data.draw(plans())
    (pt,) = rate_tables(plan, "EUR")
    compiled, reference = Compiled(pt.table, pt.rows), Reference(pt.table, pt.rows)
    pricer = PlanPricer(plan)
    prefixes = sorted({p for ps in plan.destinations.values() for p in ps})
    for _ in range(6):
        number = data.draw(st.sampled_from(prefixes)) + data.draw(st.text("0123", max_size=3))
        at = data.draw(st.one_of(*(st.integers(a, b) for a, b in SPANS)))
        seconds = data.draw(st.one_of(st.integers(0, 400), st.integers(0, 2 * 86400)))
        got = compiled.price(number, at, seconds)
        assert got == reference.price(number, at, seconds)
        try:
            want = pricer.price(number, at, seconds, subject="s")
        except UnauthorizedDestination:
            assert got is None, (number, at, seconds)
            continue
        assert got is not None, (number, at, seconds)
        assert got.cost_nano == to_nano(want.cost), (number, at, seconds, want)
        assert got.destination == want.destination


def test_a_plan_that_cannot_be_a_table_is_refused() -> None:
    plan = TariffPlan()
    plan.destinations["D"] = ["49"]
    plan.rates["R"] = Rate(Decimal(0), (Tier(0, Decimal("0.0000000001"), 60, 1),))
    plan.destination_rates["DR"] = [DestinationRate("D", "R", "up", 2, Decimal("0.125"),
                                                    "*free")]
    plan.plans["P P"] = plan.plans["OK"] = [PlanLine("DR", ANY, Decimal(10))]
    before = copy.deepcopy(plan)
    with pytest.raises(TariffPlanError) as caught:
        rate_tables(plan, "EUR", "tp")
    text = str(caught.value) + "".join(f"\n{p}" for p in caught.value.problems)
    assert "plan 'P P' cannot name a rate table" in text
    assert "MaxCost 0.125 has more places than its RoundingDecimals 2" in text
    assert plan.timings[ANY] is ALWAYS          # rate_tables leaves the plan as it was
    assert plan == before


def test_a_plan_with_more_lines_than_a_table_has_profiles_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rater import cgrates

    plan = TariffPlan()
    plan.destinations["D"] = ["49"]
    plan.rates["R"] = Rate(Decimal(0), (Tier(0, Decimal("0.1"), 60, 1),))
    plan.destination_rates["DR"] = [DestinationRate("D", "R", "up", 2, Decimal(0), "")]
    plan.timings["T"] = Timing(None, None, None, frozenset({1}), 3600)
    plan.plans["P"] = [PlanLine("DR", ANY, Decimal(10)), PlanLine("DR", "T", Decimal(10))]
    monkeypatch.setattr(cgrates, "MAX_PROFILES", 1)
    with pytest.raises(TariffPlanError) as caught:
        rate_tables(plan, "EUR", "tp")
    assert "plan P has 2 lines to rate; a rate table holds at most 1 time profiles" in \
        str(caught.value.problems[0])


# -- the import and `rater rate --subject`, through the command line


def rate(data: Path, *args: str) -> dict[str, Any]:
    return json.loads(ok(run_cli("rate", *args, "--json", data=data)))


def test_import_then_rate_through_the_rating_profiles(tmp_path: Path) -> None:
    tp = folder(tmp_path, PRICED)
    data = tmp_path / "data"
    report = json.loads(ok(run_cli("deck", "import-cgrates", str(tp), "--currency", "EUR",
                                   "--json", data=data)))
    # RP_SMS rates units, not time: it and the sms profile are left out, with warnings.
    assert sorted(p["table"] for p in report["plans"]) == ["RP_FR", "RP_STD"]
    assert report["rating_profiles"] == 6
    assert any("voicemail" in w for w in report["warnings"])
    assert any("RP_SMS" in w for w in report["warnings"])
    # Hand-worked (test_cgrates.py): Wednesday 07:59:00, 120 s on RP_STD = 0.42.
    out = rate(data, "+49 30 123", "--subject", "1002", "--at", "2026-11-18T07:59:00Z",
               "--duration", "120")
    assert (out["cost"], out["currency"], out["plan"], out["rated_as"], out["prefix"]) == (
        "0.42", "EUR", "RP_STD", "1002", "4930")
    assert [(t["from_second"], t["seconds"]) for t in out["tiers"]] == [(0, 60), (60, 60)]
    # 1001 moves to RP_FR on 19 November: before, France is not priced (falls back to
    # 1002 and *any, neither of which prices it).
    out = rate(data, "33123", "--subject", "1001", "--at", "2026-11-20T10:00:00Z",
               "--duration", "60")
    assert (out["cost"], out["plan"]) == ("0.70", "RP_FR")
    proc = run_cli("rate", "33123", "--subject", "1001", "--at", "2026-11-18T10:00:00Z",
                   "--json", data=data)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["error"] == "UNAUTHORIZED_DESTINATION"
    proc = run_cli("rate", "4930", "--subject", "nobody", "--json", data=data)
    assert (proc.returncode, json.loads(proc.stdout)["error"]) == (4, "RATING_PLAN_NOT_FOUND")
    # Without --json: the one-line error.
    assert "prices 33123" in failed(run_cli("rate", "33123", "--subject", "1002", data=data),
                                    "UNAUTHORIZED_DESTINATION", 3)
    text = ok(run_cli("rate", "4930123", "--subject", "1002", "--at", "2026-11-18T08:00:00Z",
                      "--duration", "61", data=data))
    assert "cost      0.7050 EUR" in text and "rated by plan RP_STD" in text
    assert "not an ISO 4217 code" in failed(run_cli("deck", "import-cgrates", str(tp),
                                                    "--currency", "eu", data=data),
                                            "INVALID_ARGUMENT", 64)
    # The same folder again changes nothing.
    again = json.loads(ok(run_cli("deck", "import-cgrates", str(tp), "--currency", "EUR",
                                  "--json", data=data)))
    assert not any(p["changed"] for p in again["plans"])


def test_the_import_is_all_or_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(run_cli("deck", "create", "RP_FR", "--currency", "EUR", data=data))
    tp = folder(tmp_path, PRICED)
    message = failed(run_cli("deck", "import-cgrates", str(tp), "--currency", "EUR",
                             data=data), "CONFLICT", 5)
    assert "RP_FR exists and was not imported from CGRateS" in message
    # RP_STD, written before RP_FR was reached, went with the rest.
    listed = json.loads(ok(run_cli("deck", "list", "--json", data=data)))
    assert [t["name"] for t in listed] == ["RP_FR"]
    (tp / "Rates.csv").write_text("RT_DAY,x,0.6,60s,60s,0s\n")
    proc = run_cli("deck", "import-cgrates", str(tp), data=data)
    assert proc.returncode == 65
    assert "Rates.csv:1:2: ConnectFee: 'x' is not an amount" in proc.stderr
    proc = run_cli("rate", "4930", "--subject", "1002", "--json", data=data)
    assert json.loads(proc.stdout)["error"] == "RATING_PLAN_NOT_FOUND"


# -- the shared plans, imported into a store; costs worked out by hand

CASES = [
    # tutorial. RT_20CNT: fee 0.40, a first minute 0.20, then 0.10/min by the second.
    ("tutorial", "1001", "cgrates.org", "call", "1002", "2014-01-15T10:00:00", 120,
     "0.7000", "1001", None),
    # *disconnect (DR_1003_MAXCOST_DISC, 0.01/s, MaxCost 0.12): 30 s cost 0.30, not
    # capped; the call may last 12 s.
    ("tutorial", "1001", "cgrates.org", "call", "1003", "2014-01-15T10:00:00", 30,
     "0.3000", "1001", 12),
    # An activation time: before 2014-01-14 1001 is on RP_1002, which prices 1001 (the
    # same RT_20CNT: 61 s = 0.40 + 0.20 + 1/60 of 0.10, *up) but not 1002.
    ("tutorial", "1001", "cgrates.org", "call", "1001", "2013-06-01T10:00:00", 61,
     "0.6017", "1001", None),
    ("tutorial", "1001", "cgrates.org", "call", "1002", "2013-06-01T10:00:00", 61,
     "UNAUTHORIZED_DESTINATION", None, None),
    # Another tenant's *any subject: RP_1001, a minute to 1002 = 0.40 + 0.20.
    ("tutorial", "anyone", "cgrates.com", "call", "1002", "2014-01-15T10:00:00", 60,
     "0.6000", "*any", None),
    ("tutorial", "1005", "cgrates.org", "call", "1002", "2014-01-15T10:00:00", 60,
     "RATING_PLAN_NOT_FOUND", None, None),
    # tutorial2. 1001's RP_1001 prices 1002 (RT_60C: fee 0.10, 0.01/s): 90 s = 1.00.
    ("tutorial2", "1001", "cgrates.org", "call", "1002", "2024-03-05T10:00:00", 90,
     "1.0000", "1001", None),
    # 1099 falls back to *any (RP_STANDARD): Tuesday 10:00 PEAK (08:00) has taken over
    # from OFFPEAK_MORNING; RT_120C: fee 0.20, a minute 1.20, 30 s at 1.20/min = 0.60.
    ("tutorial2", "1001", "cgrates.org", "call", "1099", "2024-03-05T10:00:00", 90,
     "2.0000", "*any", None),
    # Across a timing boundary: Tuesday 18:59:30, 120 s. PEAK until 19:00: 30 s billed
    # as RT_120C's first minute, 1.20; then OFFPEAK_EVENING, RT_60C for 90 s, 0.90; the
    # fee of the rate the call starts in, 0.20. 2.30.
    ("tutorial2", "2000", "cgrates.org", "call", "1099", "2024-03-05T18:59:30", 120,
     "2.3000", "*any", None),
    # Across midnight into New Year: Sunday 2023-12-31 23:59:30, 90 s to 2012. Prefix 20
    # is DST_20 (NEW_YEAR, weight 20) and DST_2030 (*any, weight 10). 30 s on RT_120C
    # billed a minute, 1.20; from midnight NEW_YEAR outweighs *any: RT_60C, 60 s, 0.60;
    # fee 0.20. 2.00.
    ("tutorial2", "2000", "cgrates.org", "call", "2012", "2023-12-31T23:59:30", 90,
     "2.0000", "*any", None),
    # The same call to 3012 (DST_2030 only): RT_120C on both sides of midnight, each part
    # billed by the minute: 1.20 + 1.20 + 0.20 = 2.60 (uncut it would be 2.00).
    ("tutorial2", "2000", "cgrates.org", "call", "3012", "2023-12-31T23:59:30", 90,
     "2.6000", "*any", None),
    # A connect fee and nothing else (RT_10C_CN), and a category of its own (RT_10CNT).
    ("tutorial2", "RPF_SPECIAL_BLC", "cgrates.org", "call", "555", "2024-03-05T10:00:00",
     300, "0.1000", "RPF_SPECIAL_BLC", None),
    ("tutorial2", "r1", "cgrates.org", "reseller1", "555", "2024-03-05T10:00:00", 300,
     "0.1000", "*any", None),
    # Data is not rated (its rates count units): no profile for it was kept.
    ("tutorial2", "1001", "cgrates.org", "data", "555", "2024-03-05T10:00:00", 300,
     "RATING_PLAN_NOT_FOUND", None, None),
    # Nothing prices 5000: not 1001's plan, not *any's.
    ("tutorial2", "1001", "cgrates.org", "call", "5000", "2024-03-05T10:00:00", 60,
     "UNAUTHORIZED_DESTINATION", None, None),
    # testtp. +4915 is GERMANY_MOBILE (the longer prefix), RT_1CENT: 1 a second.
    ("testtp", "someone", "cgrates.org", "call", "+4915123", "2015-06-01T10:00:00", 90,
     "90.0000", "*any", None),
    # "free" is on RP_FREE from 2016 only (RT_ZERO, *middle 2): before, *any's plan.
    ("testtp", "free", "cgrates.org", "call", "+4915123", "2015-06-01T10:00:00", 90,
     "90.0000", "*any", None),
    ("testtp", "free", "cgrates.org", "call", "+4915123", "2016-06-01T10:00:00", 90,
     "0.00", "free", None),
    # tp_destination_with_any: 1002 (weight 20, RT_1CNT: 0.01 a minute by the minute):
    # 90 s = 0.02; anything else is *any (RT_10CNT: fee 0.20, a minute 0.10, then 0.05/min
    # by the second): 90 s = 0.20 + 0.10 + 0.025 = 0.325.
    ("tp_destination_with_any", "1001", "cgrates.org", "call", "10021", "2014-02-01T10:00:00",
     90, "0.0200", "1001", None),
    ("tp_destination_with_any", "1001", "cgrates.org", "call", "1003", "2014-02-01T10:00:00",
     90, "0.3250", "1001", None),
    # lcsv (categories "0" and "call"). An activation time: rif:from:tm is on PREMIUM,
    # then from 2012-02-28 on STANDARD, which alone prices 112 (R_URG, free).
    ("lcsv", "rif:from:tm", "CUSTOMER_1", "0", "112", "2012-02-27T10:00:00", 60,
     "UNAUTHORIZED_DESTINATION", None, None),
    ("lcsv", "rif:from:tm", "CUSTOMER_1", "0", "112", "2012-03-01T10:00:00", 60,
     "0.0000", "rif:from:tm", None),
    # "fall" (PREMIUM) does not price 0723 (NAT); its fallback rif (EVENING) does. Tuesday
    # 17:59:30, 120 s: P1 (R4: fee 1, 1/s) for 30 s, then from 18:00 P2 (R5: 0.5/s) for
    # 90 s: 1 + 30 + 45 = 76.
    ("lcsv", "fall", "vdf", "0", "0723", "2013-03-05T17:59:30", 120, "76.0000", "rif", None),
    # A fallback of a fallback: fallback1 (G) -> fallback2 (R: P1, workdays) prices 0723:
    # Wednesday, 10 s: 1 + 10 = 11.
    ("lcsv", "fallback1", "vdf", "0", "0723", "2013-11-20T10:00:00", 10, "11.0000",
     "fallback2", None),
    # A fallback to itself is tried once.
    ("lcsv", "inf", "vdf", "0", "0723", "2013-11-20T10:00:00", 10,
     "UNAUTHORIZED_DESTINATION", None, None),
    # *free: max on a Tuesday evening (MX_FREE, 1/s, MaxCost 10): 30 s cost 10.
    ("lcsv", "max", "cgrates.org", "call", "0723", "2013-03-26T19:00:00", 30, "10.0000",
     "max", None),
    # *disconnect in the day (MX_DISC): 30 s cost 30, and a call may last 10 s.
    ("lcsv", "max", "cgrates.org", "call", "0723", "2013-03-26T10:00:00", 30, "30.0000",
     "max", 10),
    # Neither timing holds on a Saturday: nothing prices the call.
    ("lcsv", "max", "cgrates.org", "call", "0723", "2013-03-30T10:00:00", 30,
     "UNAUTHORIZED_DESTINATION", None, None),
    # One rounding: dy (RT_DY: fee 0.15, 0.05/min by the second, *up 2): 61 s =
    # 0.15 + 0.0508333... = 0.2008333... -> 0.21.
    ("lcsv", "dy", "cgrates.org", "call", "0723", "2015-03-04T10:00:00", 61, "0.21", "dy",
     None),
    # round (DEFAULT: R2, 0.10/min by the second, *middle 4): 7 s = 0.011666... -> 0.0117.
    ("lcsv", "round", "cgrates.org", "call", "49", "2016-07-06T10:00:00", 7, "0.0117",
     "round", None),
    # UK mobile for *any (RT_UK_Mobile_BIG5: fee 0.01, 0.10/s): 10 s = 1.01.
    ("lcsv", "x", "cgrates.org", "call", "447956123", "2014-01-01T10:00:00", 10, "1.0100",
     "*any", None),
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "cgrates").is_dir():
        pytest.skip("../shared/data is not here")
    stores = {}
    for name in sorted({c[0] for c in CASES}):
        store = Store(tmp_path_factory.mktemp(name))
        import_plan(store, SHARED_DATA / "cgrates" / name)
        stores[name] = store
    yield stores
    for store in stores.values():
        store.close()


@pytest.mark.parametrize(("plan", "subject", "tenant", "category", "number", "at", "seconds",
                          "expected", "rated_as", "allowed"), CASES)
def test_the_shared_plans_price_as_worked_out(
        imported: dict[str, Store], plan: str, subject: str, tenant: str, category: str,
        number: str, at: str, seconds: int, expected: str, rated_as: str | None,
        allowed: int | None) -> None:
    from rater.errors import RaterError

    profiles = RatingProfiles(imported[plan])
    try:
        rated = profiles.rate(number, utc(at), seconds, subject=subject, tenant=tenant,
                              category=category)
    except RaterError as exc:
        assert exc.code == expected
        return
    assert str(rated.explained.call.cost) == expected
    assert (rated.subject, rated.max_duration) == (rated_as, allowed)
