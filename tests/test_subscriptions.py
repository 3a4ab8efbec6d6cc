"""Packages, subscriptions, proration and prepaid runs."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import failed, ok, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.clients import Client, Registry
from rater.errors import InvalidArgument
from rater.journal import Journal
from rater.store import Store
from rater.subscriptions import (
    Subscription,
    Subscriptions,
    active_days,
    period_of,
    prepaid_run,
    share,
)

CENT = 10**7


@given(fee=st.integers(0, 10**6), days=st.integers(1, 31),
       cuts=st.lists(st.integers(0, 31), max_size=6))
def test_the_parts_of_a_period_add_up_to_its_fee(fee: int, days: int, cuts: list[int]) -> None:
    # However a period is cut (starts, ends, upgrades), its parts pay the fee exactly,
    # each day within a cent of the others.
    edges = sorted({0, days, *(c for c in cuts if c <= days)})
    parts = [share(fee * CENT, CENT, days, a, b) for a, b in itertools.pairwise(edges)]
    assert sum(parts) == fee * CENT
    daily = [share(fee * CENT, CENT, days, d, d + 1) for d in range(days)]
    assert max(daily) - min(daily) <= CENT


@settings(max_examples=200)
@given(start=st.dates(date(2025, 1, 1), date(2027, 12, 31)),
       length=st.integers(1, 800), billing_day=st.integers(1, 28),
       period=st.sampled_from(["monthly", "weekly", "daily"]))
def test_a_subscription_pays_each_full_period_in_full(start: date, length: int,
                                                      billing_day: int, period: str) -> None:
    sub = Subscription(1, 1, "p", start, start + timedelta(days=length))
    fee = 2999 * CENT
    day, full, paid = start, 0, 0
    while day < sub.end:                # every period the subscription touches, once
        a, b = period_of(day, period, billing_day)
        first, last = active_days(sub, a, b)
        assert a <= day < b and first < last
        paid += share(fee, CENT, (b - a).days, first, last)
        full += (first, last) == (0, (b - a).days)
        day = b
    # Whole periods pay the fee; the partial ones at either end pay less than a fee each.
    assert full * fee <= paid < (full + 2) * fee
    # And what it pays is what its days pay, one by one.
    assert paid == sum(day_share(fee, start + timedelta(days=i), period, billing_day)
                       for i in range(length))


def day_share(fee: int, day: date, period: str, billing_day: int) -> int:
    a, b = period_of(day, period, billing_day)
    return share(fee, CENT, (b - a).days, (day - a).days, (day - a).days + 1)


def test_periods() -> None:
    assert period_of(date(2026, 11, 20), "monthly", 1) == (date(2026, 11, 1), date(2026, 12, 1))
    assert period_of(date(2026, 11, 20), "monthly", 25) == (date(2026, 10, 25),
                                                            date(2026, 11, 25))
    assert period_of(date(2026, 1, 3), "monthly", 10) == (date(2025, 12, 10), date(2026, 1, 10))
    assert period_of(date(2026, 11, 22), "weekly") == (date(2026, 11, 16), date(2026, 11, 23))
    # 100.00 over 30 days: 3.34 on the first 10 days, 3.33 on the others.
    assert share(100 * 10**9, CENT, 30, 0, 1) == 334 * CENT
    assert share(100 * 10**9, CENT, 30, 10, 11) == 333 * CENT
    assert share(100 * 10**9, CENT, 30, 15, 30) == 4995 * CENT


@pytest.fixture
def setup(store: Store) -> tuple[Store, Subscriptions, Journal]:
    Registry(store).add_client(Client(0, "acme", "EUR", mode="prepaid",
                                      timezone="Europe/Berlin"))
    subs = Subscriptions(store)
    subs.add_package("basic", currency="EUR", fee="30", one_off=[("setup", "5")])
    subs.add_package("plus", currency="EUR", fee="60")
    return store, subs, Journal(store)


def wallet(journal: Journal) -> Decimal:
    return Decimal(journal.balance("acme").to_json()["live"])


def test_a_month_of_a_prepaid_client(setup: tuple[Store, Subscriptions, Journal]) -> None:
    """Subscribes mid-month, upgrades, runs out of money, is suspended, pays, is
    restarted: the wallet's history line by line."""
    store, subs, journal = setup
    journal.post("acme", "manual-payment", "40")
    basic = subs.subscribe("acme", "basic", date(2026, 11, 16))
    run = prepaid_run(store, date(2026, 11, 16))
    # 16..30 November: 15 of 30 days of 30.00 = 15.00, and the 5.00 setup fee.
    assert [(c["type"], c["amount"]) for c in run.charged] == [("prorated-fee", "15.00"),
                                                              ("one-off-fee", "5.00")]
    assert wallet(journal) == Decimal("20")
    assert prepaid_run(store, date(2026, 11, 17)).charged == []        # charged once
    # Upgrade on the 21st: basic's 21..30 (10 days, 10.00) come back, plus costs 10 of
    # 30 days of 60.00 = 20.00.
    _, credits = subs.end(basic.id, date(2026, 11, 21))
    assert [(e.type, e.amount) for e in credits] == [("fee-credit", 10 * 10**9)]
    subs.subscribe("acme", "plus", date(2026, 11, 21))
    run = prepaid_run(store, date(2026, 11, 21))
    assert [(c["type"], c["amount"]) for c in run.charged] == [("prorated-fee", "20.00")]
    assert wallet(journal) == Decimal("10")
    # December: 60.00 due, 10.00 in the wallet: suspended, nothing debited.
    run = prepaid_run(store, date(2026, 12, 1))
    assert (run.charged, run.suspended) == ([], ["acme"])
    with store.read() as txn:
        assert Registry(store).get_client(txn, "acme").status == "stop"
    assert prepaid_run(store, date(2026, 12, 2)).suspended == []       # once per crossing
    journal.post("acme", "manual-payment", "50")
    run = prepaid_run(store, date(2026, 12, 3))
    assert [(c["type"], c["amount"]) for c in run.charged] == [("recurring-fee", "60.00")]
    assert run.restarted == ["acme"]
    with store.read() as txn:
        assert Registry(store).get_client(txn, "acme").status == "active"
    assert wallet(journal) == Decimal("0")
    history = [(e.type, e.amount // 10**7) for e in journal.entries("acme")]
    assert history == [("manual-payment", 4000), ("prorated-fee", -1500),
                       ("one-off-fee", -500), ("fee-credit", 1000), ("prorated-fee", -2000),
                       ("manual-payment", 5000), ("recurring-fee", -6000)]
    assert journal.check() == []


def test_an_end_moved_earlier_credits_the_days_between(
        setup: tuple[Store, Subscriptions, Journal]) -> None:
    store, subs, journal = setup
    journal.post("acme", "manual-payment", "100")
    sub = subs.subscribe("acme", "basic", date(2026, 11, 1))
    prepaid_run(store, date(2026, 11, 1))           # 30.00 and the 5.00 setup
    _, first = subs.end(sub.id, date(2026, 11, 21))  # 21..30: 10.00 back
    _, second = subs.end(sub.id, date(2026, 11, 11))  # 11..20: 10.00 more
    assert [e.amount for e in first + second] == [10 * 10**9, 10 * 10**9]
    assert wallet(journal) == Decimal("85")
    with pytest.raises(InvalidArgument, match="ends on 2026-11-11 already"):
        subs.end(sub.id, date(2026, 11, 15))


def test_bad_packages_and_subscriptions_are_refused(
        setup: tuple[Store, Subscriptions, Journal]) -> None:
    _, subs, _ = setup
    with pytest.raises(InvalidArgument, match="not a whole number of the EUR minor unit"):
        subs.add_package("odd", currency="EUR", fee="0.005")
    with pytest.raises(InvalidArgument, match="period"):
        subs.add_package("odd", currency="EUR", fee="1", period="yearly")
    with pytest.raises(InvalidArgument, match="no package"):
        subs.subscribe("acme", "gold", date(2026, 11, 1))
    with pytest.raises(InvalidArgument, match="not after"):
        subs.subscribe("acme", "basic", date(2026, 11, 1), date(2026, 11, 1))


def test_the_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(run_cli("client", "add", "acme", "--currency", "EUR", "--prepaid", data=data))
    ok(run_cli("transaction", "add", "acme", "manual-payment", "10", data=data))
    ok(run_cli("package", "add", "daily", "--currency", "EUR", "--fee", "1.50", "--period",
               "daily", "--include", "100:44,49", data=data))
    shown = json.loads(ok(run_cli("package", "show", "daily", data=data)))
    assert (shown["fee"], shown["included"]) == ("1.50", [{"minutes": 100,
                                                           "prefixes": ["44", "49"]}])
    ok(run_cli("subscription", "add", "acme", "daily", "--from", "2026-11-20", data=data))
    for _ in range(2):                  # the same day twice debits once
        run = json.loads(ok(run_cli("billing", "run", "--mode", "prepaid", "--as-of",
                                    "2026-11-21", "--json", data=data)))
    first = json.loads(ok(run_cli("transaction", "list", "acme", "--type", "recurring-fee",
                                  "--json", data=data)))
    assert (run["state"], run["charged"], len(first)) == ("completed", [], 1)
    listed = json.loads(ok(run_cli("subscription", "list", "--json", data=data)))
    assert listed == [{"id": 1, "client": "acme", "package": "daily", "from": "2026-11-20",
                       "to": None}]
    assert "a date YYYY-MM-DD" in failed(run_cli("billing", "run", "--mode", "prepaid",
                                                 "--as-of", "soon", data=data),
                                         "INVALID_ARGUMENT", 64)
    assert "keys beginning" in failed(run_cli("transaction", "add", "acme", "manual-charge",
                                              "1", "--key", "fee:1:2026-11-22", data=data),
                                      "INVALID_ARGUMENT", 64)
