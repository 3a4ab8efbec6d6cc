"""Included minutes: consumed before money by rating, by CDR import and rerating, and
by real-time authorization; never below zero, never twice for a call."""

from __future__ import annotations

import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import GRACE, write
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.bundles import used
from rater.clients import Client, Registry
from rater.decks import Decks
from rater.engine import Deck
from rater.ingest import import_cdrs, rerate
from rater.journal import Journal
from rater.radius.control import STOP, Call, CallControl
from rater.store import Store
from rater.subscriptions import Subscriptions

T0 = 1_795_000_000                  # 2026-11-18 (a Wednesday), 11:06:40 UTC
UK = "442079460000"
DE = "4930123456"
DECK = ("prefix,destination,rate,connect_fee,increment,effective_from\n"
        "44,UK,0.0200,0.0050,60/6,\n49,Germany,0.0100,,1/1,\n")


def cost(store: Store, number: str, seconds: int) -> int:
    if seconds == 0:
        return 0
    with Deck(store, "T") as deck:
        return int(deck.rate(number, T0, seconds).cost * 10**9)


def entries(store: Store, client: str) -> list[tuple[str, int, int]]:
    """(type, amount, billed seconds) of a client's call entries."""
    return [(e.type, e.amount, e.call[6]) for e in Journal(store).entries(client)
            if e.call is not None]


def make_zoe(store: Store, tmp_path: Path) -> Store:
    """zoe: prepaid, nothing in her wallet, 10 free minutes a month to the UK."""
    Decks(store).import_file(write(tmp_path / "deck.csv", DECK), "T", currency="USD")
    reg = Registry(store)
    reg.add_client(Client(id=0, name="zoe", currency="USD", rate_tables=[[None, "T"]],
                          max_call_length=3600))
    reg.add_account("zoe", username="zoe")
    subs = Subscriptions(store)
    subs.add_package("uk10", currency="USD", fee="0",
                     included=[{"minutes": 10, "prefixes": ["44"], "destinations": [],
                                "rate": 0}])
    subs.subscribe("zoe", "uk10", date(2026, 11, 1))
    return store


@pytest.fixture
def zoe(store: Store, tmp_path: Path) -> Store:
    return make_zoe(store, tmp_path)


def test_free_minutes_are_granted_at_zero_balance(zoe: Store) -> None:
    control = CallControl(zoe, reservation_grace=GRACE)
    try:
        d = control.authorize(Call(nas="10.0.0.1", user_name="zoe", called=UK,
                                   session_id="a"), now=T0)
        assert (d.outcome, d.seconds, d.reserved) == ("accepted", 600, 0)
        # What one call in progress holds, another is not granted.
        d2 = control.authorize(Call(nas="10.0.0.1", user_name="zoe", called=UK,
                                    session_id="b"), now=T0)
        assert d2.outcome == "no_balance"
        # Germany is not in the allowance: no money, no call.
        d3 = control.authorize(Call(nas="10.0.0.1", user_name="zoe", called=DE,
                                    session_id="c"), now=T0)
        assert d3.outcome == "no_balance"
        # The first call talks 250 s: the other 350 s are free again.
        assert control.account(Call(nas="10.0.0.1", user_name="zoe", called=UK,
                                    session_id="a"), STOP, 250, event_time=T0 + 250,
                               now=T0 + 250) == "billed"
        assert entries(zoe, "zoe") == [("bundle-call", 0, 250)]
        d4 = control.authorize(Call(nas="10.0.0.1", user_name="zoe", called=UK,
                                    session_id="d"), now=T0 + 300)
        assert (d4.outcome, d4.seconds) == ("accepted", 350)
    finally:
        control.close()
    assert used(zoe, 1, 0, date(2026, 11, 1)) == 250


def test_the_rest_of_a_call_is_priced_by_the_table(zoe: Store) -> None:
    Journal(zoe).post("zoe", "manual-payment", "0.10")
    control = CallControl(zoe, reservation_grace=GRACE)
    try:
        d = control.authorize(Call(nas="10.0.0.1", user_name="zoe", called=UK,
                                   session_id="a"), now=T0)
        # 600 s free, then what 0.10 pays: 0.005 + 0.02 a minute by 6 s, 4 min 42 s.
        with Deck(zoe, "T") as deck:
            paid = deck.max_duration(UK, T0, Decimal("0.10"), 3000)
        assert (d.outcome, d.seconds, d.reserved) == ("accepted", 600 + paid,
                                                      cost(zoe, UK, paid))
        assert (paid, d.reserved) == (282, 99_000_000)     # 0.005 + 282 s at 0.02/min
        control.account(Call(nas="10.0.0.1", user_name="zoe", called=UK, session_id="a"),
                        STOP, 700, event_time=T0 + 700, now=T0 + 700)
    finally:
        control.close()
    # The 100 s left bill as 102 (60/6): 0.005 + 0.034.
    assert entries(zoe, "zoe") == [("rated-call", -cost(zoe, UK, 100), 102),
                                   ("bundle-call", 0, 600)]
    assert cost(zoe, UK, 100) == 39_000_000
    assert Journal(zoe).check() == []


def cdr_file(path: Path, calls: list[tuple[str, str, int]]) -> Path:
    lines = ["id,start,number,duration,username"]
    lines += [f"{cid},{T0 + 10 * k},+{number},{seconds},zoe"
              for k, (cid, number, seconds) in enumerate(calls)]
    return write(path, "\n".join(lines) + "\n")


def test_imported_calls_use_the_minutes_once_and_rerating_keeps_them(
        zoe: Store, tmp_path: Path) -> None:
    subs = Subscriptions(zoe)
    subs.add_package("de", currency="USD", fee="0",
                     included=[{"minutes": 1, "prefixes": [], "destinations": ["Germany"],
                                "rate": 600_000_000}])           # 0.60 a minute
    subs.subscribe("zoe", "de", date(2026, 11, 1))
    path = cdr_file(tmp_path / "cdrs.csv", [("1", UK, 400), ("2", UK, 400), ("3", DE, 90),
                                           ("4", UK, 0)])
    for _ in range(2):                  # the second import bills nothing again
        import_cdrs(zoe, path)
        assert sorted(entries(zoe, "zoe")) == sorted([
            ("bundle-call", 0, 400),
            ("rated-call", -cost(zoe, UK, 200), 204), ("bundle-call", 0, 200),
            # Germany by destination: 60 s at 0.60 a minute, 30 s by the table.
            ("rated-call", -cost(zoe, DE, 30), 30), ("bundle-call", -600_000_000, 60)])
    # 200 s bill as 204: 0.005 + 0.068; 30 s to Germany at 0.01/min: 0.005.
    assert (cost(zoe, UK, 200), cost(zoe, DE, 30)) == (73_000_000, 5_000_000)
    assert used(zoe, 1, 0, date(2026, 11, 1)) == 600
    assert used(zoe, 2, 0, date(2026, 11, 1)) == 60
    # New prices: only what the minutes did not cover changes.
    before = cost(zoe, UK, 200)
    Decks(zoe).import_file(write(tmp_path / "deck2.csv", DECK.replace("0.0200", "0.0400")),
                           "T", currency="USD")
    summary = rerate(zoe, T0 - 86400, T0 + 86400)
    assert summary.changed == 1
    rerated = [e for e in Journal(zoe).entries("zoe") if e.type == "rerate"]
    assert [e.amount for e in rerated] == [before, -cost(zoe, UK, 200)]
    assert [e.amount for e in rerated] == [73_000_000, -141_000_000]    # 0.005 + 0.136
    assert used(zoe, 1, 0, date(2026, 11, 1)) == 600
    assert Journal(zoe).check() == []


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from([UK, DE]), st.integers(0, 400)),
                      min_size=1, max_size=30),
       chunks=st.lists(st.integers(1, 30), min_size=1, max_size=4))
def test_minutes_never_go_below_zero_nor_count_a_call_twice(
        calls: list[tuple[str, int]], chunks: list[int]) -> None:
    with tempfile.TemporaryDirectory() as d:         # a store of its own per example
        store = Store(Path(d) / "data")
        try:
            minutes_in_turn(make_zoe(store, Path(d)), Path(d), calls, chunks)
        finally:
            store.close()


def minutes_in_turn(zoe: Store, tmp: Path, calls: list[tuple[str, int]],
                    chunks: list[int]) -> None:
    files, k = [], 0
    for size in chunks:                 # the calls arrive in overlapping files
        files.append(range(max(0, k - 2), min(k + size, len(calls))))
        k += size
    for n, part in enumerate(files):
        lines = ["id,start,number,duration,username"]
        lines += [f"c{i},{T0 + 10 * i},+{calls[i][0]},{calls[i][1]},zoe" for i in part]
        import_cdrs(zoe, write(tmp / f"cdrs-{n}.csv", "\n".join(lines) + "\n"))
    covered: dict[str, int] = {}
    rest: dict[str, int] = {}
    for e in Journal(zoe).entries("zoe"):
        if e.call is None:
            continue
        side = covered if e.type == "bundle-call" else rest
        assert e.call[1] not in side                # one entry of each kind per call
        side[e.call[1]] = e.call[6] if e.type == "bundle-call" else e.amount
    allowance = 600
    for i, (number, seconds) in enumerate(calls[:k]):
        free = covered.get(f"c{i}", 0)
        # The minutes go to UK calls in order until they are used up.
        assert free == (min(seconds, allowance) if number == UK else 0)
        allowance -= free
        assert rest.get(f"c{i}", 0) == -cost(zoe, number, seconds - free)
    assert used(zoe, 1, 0, date(2026, 11, 1)) == 600 - allowance
    assert Journal(zoe).check() == []


def test_a_call_rerated_to_another_client_gives_its_minutes_back(zoe: Store,
                                                                 tmp_path: Path) -> None:
    import_cdrs(zoe, cdr_file(tmp_path / "cdrs.csv", [("1", UK, 900)]))
    assert used(zoe, 1, 0, date(2026, 11, 1)) == 600
    reg = Registry(zoe)
    reg.add_client(Client(id=0, name="max", currency="USD", rate_tables=[[None, "T"]]))
    [account] = reg.accounts("zoe")
    reg.delete_account(account.id)
    reg.add_account("max", username="zoe")          # the line was max's all along
    rerate(zoe, T0 - 86400, T0 + 86400)
    assert used(zoe, 1, 0, date(2026, 11, 1)) == 0
    assert sum(e.amount for e in Journal(zoe).entries("zoe")) == 0
    assert sum(e.amount for e in Journal(zoe).entries("max")) == -cost(zoe, UK, 900)
    assert Journal(zoe).check() == []
