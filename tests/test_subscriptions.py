"""Packages, subscriptions, proration and prepaid runs."""

from __future__ import annotations

import itertools
import json
import tempfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Inbox, failed, ok, run_cli, write
from hypothesis import given, settings
from hypothesis import strategies as st

from rater import notifications
from rater.billrun import BillRuns, Schedules, Selection
from rater.bundles import parse_include
from rater.clients import Client, Registry
from rater.decks import Decks
from rater.errors import InvalidArgument
from rater.ingest import import_cdrs
from rater.invoices import Invoicing, Issuer
from rater.journal import FEE_TYPES, Journal
from rater.ledger import Ledger
from rater.money import format_nanos
from rater.radius.control import Call, CallControl
from rater.settings import load
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
UK = "442079460000"
DE = "4930123456"
MONTH_DECK = ("prefix,destination,rate,connect_fee,increment,effective_from\n"
              "44,UK,0.0200,,1/1,\n49,Germany,0.0500,,1/1,\n")


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


def at(day: int, month: int = 11, hour: int = 10, year: int = 2026) -> int:
    """A frozen clock: an instant in Berlin."""
    return int(datetime(year, month, day, hour, tzinfo=ZoneInfo("Europe/Berlin")).timestamp())


def call(tmp_path: Path, cid: str, when: int, number: str, seconds: int) -> Path:
    return write(tmp_path / f"{cid}.csv", "id,start,number,duration,username\n"
                                          f"{cid},{when},+{number},{seconds},acme\n")


def test_a_month_of_a_prepaid_client(store: Store, tmp_path: Path,
                                     smtp: tuple[Inbox, Path]) -> None:
    """Subscribes mid-month, talks on its included minutes, upgrades, runs out of money,
    is suspended, pays, is restarted; is warned of a low balance once per crossing. The
    wallet's history and the month's invoice, line by line."""
    inbox, config = smtp
    Decks(store).import_file(write(tmp_path / "deck.csv", MONTH_DECK), "T", currency="EUR")
    Registry(store).add_client(Client(0, "acme", "EUR", mode="prepaid",
                                      timezone="Europe/Berlin", rate_tables=[[None, "T"]],
                                      billing_email="acme@acme.example",
                                      low_balance_threshold=10 * 10**9))
    Registry(store).add_account("acme", username="acme")
    subs = Subscriptions(store)
    subs.add_package("basic", currency="EUR", fee="30", one_off=[("setup", "5")],
                     included=[parse_include("10:44")])
    subs.add_package("plus", currency="EUR", fee="60", included=[parse_include("30:44")])
    with Ledger(store) as ledger:
        Invoicing(ledger).add_issuer(Issuer("Rater Telecom", "Keizersgracht 1", "NL1B01"))
    journal = Journal(store)

    journal.post("acme", "manual-payment", "40", now=at(16, hour=8))
    basic = subs.subscribe("acme", "basic", date(2026, 11, 16))
    # 16..30 November: 15 of 30 days of 30.00 = 15.00, and the 5.00 setup fee.
    run = prepaid_run(store, date(2026, 11, 16), now=at(16))
    assert [(c["type"], c["amount"]) for c in run.charged] == [("prorated-fee", "15.00"),
                                                              ("one-off-fee", "5.00")]
    assert prepaid_run(store, date(2026, 11, 17), now=at(17)).charged == []   # once
    # 15 minutes to the UK: 10 on the bundle, 5 at 0.02.
    import_cdrs(store, call(tmp_path, "c1", at(17), UK, 900))
    # Upgrade on the 21st: basic's 21..30 (10 days, 10.00) come back, plus costs 10 of
    # 30 days of 60.00 = 20.00.
    _, credits = subs.end(basic.id, date(2026, 11, 21), now=at(21, hour=9))
    assert [(e.type, e.amount) for e in credits] == [("fee-credit", 10 * 10**9)]
    subs.subscribe("acme", "plus", date(2026, 11, 21))
    run = prepaid_run(store, date(2026, 11, 21), now=at(21))
    assert [(c["type"], c["amount"]) for c in run.charged] == [("prorated-fee", "20.00")]
    assert wallet(journal) == Decimal("9.90")              # below 10.00: warned
    # 20 minutes on plus's 30 of November: free.
    import_cdrs(store, call(tmp_path, "c2", at(22), UK, 1200))
    # December: 60.00 due, 9.90 in the wallet: suspended, nothing debited.
    run = prepaid_run(store, date(2026, 12, 1), now=at(1, 12))
    assert (run.charged, run.suspended) == ([], ["acme"])
    assert [x[2:] for x in run.exceptions] == [
        ("insufficient-funds", "the wallet cannot pay 60.00 EUR due; service stopped until "
                               "it can")]
    assert status(store) == "stop"
    assert prepaid_run(store, date(2026, 12, 2), now=at(2, 12, 1)).suspended == []   # once
    # A payment restarts it at once: December's 60.00 is debited then.
    paid = journal.post("acme", "manual-payment", "55", now=at(2, 12))
    assert paid.restarted and status(store) == "active"
    assert prepaid_run(store, date(2026, 12, 3), now=at(3, 12)).charged == []
    # Germany is not in the bundle: 1 minute at 0.05, still below 10.00, no new warning.
    import_cdrs(store, call(tmp_path, "c3", at(2, 12, 14), DE, 60))
    assert wallet(journal) == Decimal("4.85")
    history = [(e.type, Decimal(e.amount) / 10**9) for e in journal.entries("acme")]
    assert history == [
        ("manual-payment", 40), ("prorated-fee", -15), ("one-off-fee", -5),
        ("rated-call", Decimal("-0.10")), ("bundle-call", 0), ("fee-credit", 10),
        ("prorated-fee", -20), ("bundle-call", 0), ("manual-payment", 55),
        ("recurring-fee", -60), ("rated-call", Decimal("-0.05"))]
    assert journal.check() == []

    # Warned when made (its empty wallet is below 10.00), at 9.90 (21 November) after
    # the first payment had taken it above, and at 4.90 after the second had; not for
    # the calls in between.
    done = notifications.deliver(store, load(config).mail)
    assert [(n.available // 10**7, outcome) for n, outcome in done] == [
        (0, "sent"), (990, "sent"), (490, "sent")]
    assert [to for to, _ in inbox.messages] == [["acme@acme.example"]] * 3
    assert b"Low balance: 9.90 EUR available" in inbox.messages[1][1]
    assert notifications.pending(store) == []

    # November's invoice: the calls by destination, the bundles' own lines at their
    # price (0), the fees by kind; the payment of 40.00 is the statement's.
    with Ledger(store) as ledger:
        runs = BillRuns(store, ledger)
        run = runs.execute(runs.create("production", "2026-11", Selection()), pdf=False,
                           now=at(3, 12))
        [inv] = Invoicing(ledger).invoices(lines=True)
    assert run.state == "completed"
    assert [(ln.kind, ln.description, ln.calls, ln.seconds, format_nanos(ln.amount, 2))
            for ln in inv.lines] == [
        ("usage", "UK", 1, 300, "0.10"),
        ("usage", "basic: included minutes", 1, 600, "0.00"),
        ("usage", "plus: included minutes", 1, 1200, "0.00"),
        ("prorated", "Prorated fee: basic 2026-11-01 to 2026-12-01", 0, 0, "15.00"),
        ("one-off", "One off fee: basic: setup", 0, 0, "5.00"),
        ("prorated", "Fee credit: basic: 2026-11-21 to 2026-12-01", 0, 0, "-10.00"),
        ("prorated", "Prorated fee: plus 2026-11-01 to 2026-12-01", 0, 0, "20.00")]
    assert (format_nanos(inv.total, 2), format_nanos(inv.payments, 2)) == ("30.10", "40.00")


def status(store: Store) -> str:
    with store.read() as txn:
        return Registry(store).get_client(txn, "acme").status


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
    assert (shown["fee"], shown["included"]) == ("1.50", [
        {"minutes": 100, "prefixes": ["44", "49"], "destinations": [], "rate": "0.00"}])
    ok(run_cli("subscription", "add", "acme", "daily", "--from", "2026-11-20", data=data))
    for _ in range(2):                  # the same day twice debits once
        run = json.loads(ok(run_cli("billing", "run", "--mode", "prepaid", "--as-of",
                                    "2026-11-21", "--json", data=data)))
    first = json.loads(ok(run_cli("transaction", "list", "acme", "--type", "recurring-fee",
                                  "--json", data=data)))
    assert (run["state"], run["results"]["charged"], len(first)) == ("completed", [], 1)
    # 8.50 left, 1.50 a day from the 22nd: the 22nd..26th leave 1.00, the 27th cannot pay.
    assert run["results"]["estimates"] == {"acme": "2026-11-27"}
    runs = json.loads(ok(run_cli("billing", "runs", "--json", data=data)))
    assert [(r["mode"], r["period"], r["results"]["wallet_transactions"]) for r in runs] == [
        ("prepaid", "2026-11-21", 1), ("prepaid", "2026-11-21", 0)]
    listed = json.loads(ok(run_cli("subscription", "list", "--json", data=data)))
    assert listed == [{"id": 1, "client": "acme", "package": "daily", "from": "2026-11-20",
                       "to": None}]
    assert "a date YYYY-MM-DD" in failed(run_cli("billing", "run", "--mode", "prepaid",
                                                 "--as-of", "soon", data=data),
                                         "INVALID_ARGUMENT", 64)
    assert "keys beginning" in failed(run_cli("transaction", "add", "acme", "manual-charge",
                                              "1", "--key", "fee:1:2026-11-22", data=data),
                                      "INVALID_ARGUMENT", 64)


@settings(max_examples=60, deadline=None)
@given(days=st.lists(st.integers(0, 90), min_size=1, max_size=12),
       start=st.integers(0, 40), length=st.one_of(st.none(), st.integers(1, 80)),
       period=st.sampled_from(["monthly", "weekly", "daily"]))
def test_prepaid_runs_are_idempotent(days: list[int], start: int, length: int | None,
                                     period: str) -> None:
    # Runs on any days, in any order, debit each period a run's day falls in exactly
    # once, and what the period is owed; the same runs again debit nothing.
    with tempfile.TemporaryDirectory() as d:          # a store of its own per example
        store = Store(Path(d) / "data")
        try:
            runs_in_any_order(store, days, start, length, period)
        finally:
            store.close()


def runs_in_any_order(store: Store, days: list[int], start: int, length: int | None,
                      period: str) -> None:
    Registry(store).add_client(Client(0, "c", "EUR", mode="prepaid", credit_limit=10**15,
                                      billing_day=5))
    subs = Subscriptions(store)
    subs.add_package("p", currency="EUR", fee="29.99", period=period,
                     one_off=[("setup", "1")])
    first = date(2026, 1, 1) + timedelta(days=start)
    sub = subs.subscribe("c", "p", first, None if length is None else
                         first + timedelta(days=length))
    journal = Journal(store)

    def run(order: list[int]) -> list[tuple[str, int]]:
        for d in order:
            prepaid_run(store, date(2026, 1, 1) + timedelta(days=d), estimate=False,
                        clients={sub.client})
        return [(e.key, e.amount) for e in journal.entries("c") if e.type in FEE_TYPES]

    fees = run(days + days[::-1])
    assert run(days[::-1] + days) == fees                # nothing more, whatever the order
    owed = 0
    periods = {period_of(date(2026, 1, 1) + timedelta(days=d), period, 5) for d in days}
    for a, b in periods:
        lo, hi = active_days(sub, a, b)
        # Each day of the period its part by largest remainder, worked out here.
        units, n = divmod(2999, (b - a).days)
        owed += sum(units + (i < n) for i in range(lo, hi)) * CENT
        owed += 10**9 if lo < hi and sub.start >= a else 0
    assert len({k for k, _ in fees}) == len(fees)
    assert -sum(amount for _, amount in fees) == owed


def test_a_first_partial_period_pays_its_days_and_the_setup(store: Store) -> None:
    # Billing day 5: the period 5 December 2025 to 5 January 2026 has 31 days; 29.99 is
    # 96 cents a day and 23 cents more for its first 23 days. From 1 January: its last 4
    # days, 4 x 0.96 = 3.84, and the setup fee 1.00.
    runs_in_any_order(store, [0], 0, None, "monthly")
    fees = [(e.type, e.amount) for e in Journal(store).entries("c")]
    assert fees == [("prorated-fee", -384 * CENT), ("one-off-fee", -100 * CENT)]


def test_postpaid_fees_are_posted_by_the_normal_run_once(store: Store, tmp_path: Path) -> None:
    Decks(store).import_file(write(tmp_path / "deck.csv", MONTH_DECK), "T", currency="EUR")
    Registry(store).add_client(Client(0, "beta", "EUR", mode="postpaid",
                                      rate_tables=[[None, "T"]]))
    subs = Subscriptions(store)
    subs.add_package("office", currency="EUR", fee="30", one_off=[("install", "50")])
    subs.subscribe("beta", "office", date(2026, 11, 10))
    with Ledger(store) as ledger:
        Invoicing(ledger).add_issuer(Issuer("Rater Telecom", "Keizersgracht 1", "NL1B01"))
        runs = BillRuns(store, ledger)
        for mode in ("pre-production", "pre-production", "production"):
            run = runs.execute(runs.create(mode, "2026-11", Selection()), pdf=False,
                               now=at(2, 12))
            assert run.state == "completed"
        [inv] = Invoicing(ledger).invoices(lines=True, state="issued")
        report = run.control_report
    # 10..30 November: 21 of 30 days of 30.00; the installation once.
    assert [(ln.kind, format_nanos(ln.amount, 2)) for ln in inv.lines] == [
        ("prorated", "21.00"), ("one-off", "50.00")]
    assert [e.type for e in Journal(store).entries("beta")] == ["prorated-fee", "one-off-fee"]
    # December: the whole fee.
    with Ledger(store) as ledger:
        runs = BillRuns(store, ledger)
        runs.execute(runs.create("production", "2026-12", Selection()), pdf=False,
                     now=at(2, 1, 12, 2027))
        [dec] = Invoicing(ledger).invoices(lines=True, period="2026-12")
    assert [(ln.kind, format_nanos(ln.amount, 2)) for ln in dec.lines] == [
        ("recurring", "30.00")]
    from openpyxl import load_workbook

    rows = [[c.value for c in r] for r in load_workbook(report).active.iter_rows()]
    got = dict(zip(rows[1], rows[2], strict=True))      # a title row first
    assert [Decimal(str(got[k])) for k in ("Prorated amount", "One-off items",
                                           "Recurring items", "Total billed")] == [21, 50, 0, 71]


def test_auto_invoiced_clients_are_invoiced_on_their_billing_day(store: Store,
                                                                  tmp_path: Path) -> None:
    Decks(store).import_file(write(tmp_path / "deck.csv", MONTH_DECK), "T", currency="EUR")
    reg = Registry(store)
    reg.add_client(Client(0, "auto", "EUR", mode="postpaid", rate_tables=[[None, "T"]],
                          billing_day=5, auto_invoice=True, invoice_template="extended"))
    reg.add_client(Client(0, "manual", "EUR", mode="postpaid", rate_tables=[[None, "T"]],
                          billing_day=5))
    Subscriptions(store).add_package("office", currency="EUR", fee="30")
    for name in ("auto", "manual"):
        Subscriptions(store).subscribe(name, "office", date(2026, 10, 5))
    with Ledger(store) as ledger:
        Invoicing(ledger).add_issuer(Issuer("Rater Telecom", "Keizersgracht 1", "NL1B01"))
        schedules = Schedules(BillRuns(store, ledger))
        # On the 4th, the last month that ended is September's (nothing in it).
        [(month, run)] = schedules.run_auto_invoicing(at(4))
        assert (month, run.results["issued"], run.results["empty"]) == ("2026-09", 0, 1)
        [(month, run)] = schedules.run_auto_invoicing(at(5))
        assert (month, run.mode, run.state, run.results["issued"]) == (
            "2026-10", "production", "completed", 1)
        assert schedules.run_auto_invoicing(at(6)) == []          # once
        [inv] = Invoicing(ledger).invoices(lines=True)
    assert (inv.client_name, inv.period, [ln.kind for ln in inv.lines]) == (
        "auto", "2026-10-05/2026-11-04", ["recurring"])
    assert inv.pdf is not None and inv.pdf.endswith(".pdf")


def test_below_the_threshold_a_client_has_fewer_calls(store: Store, tmp_path: Path) -> None:
    Decks(store).import_file(write(tmp_path / "deck.csv", MONTH_DECK), "T", currency="EUR")
    reg = Registry(store)
    reg.add_client(Client(0, "acme", "EUR", mode="prepaid", rate_tables=[[None, "T"]],
                          capacity=3, low_balance_threshold=5 * 10**9,
                          low_balance_capacity=1))
    reg.add_account("acme", username="acme")
    journal = Journal(store)
    journal.post("acme", "manual-payment", "6")
    control = CallControl(store)
    try:
        def ask(session: str) -> str:
            return control.authorize(Call(nas="10.0.0.1", user_name="acme", called=UK,
                                          session_id=session)).outcome

        assert [ask("a"), ask("b")] == ["accepted", "accepted"]     # 3 while above
        journal.post("acme", "manual-charge", "2")                   # 4.00: below 5.00
        control.refresh(force=True)
        assert ask("c") == "capacity"                                 # 1 while below
        # Notified when made (0.00), and at 4.00 after the payment had re-armed it.
        assert [n.available for n in notifications.pending(store)] == [0, 4 * 10**9]
        journal.post("acme", "manual-payment", "10")                 # above again
        assert ask("c") == "accepted"
    finally:
        control.close()
    assert len(notifications.pending(store)) == 2                  # once per crossing
