"""The journal: posting money movements, their balances, idempotency, refusals, ``check``.

In-process tests go through :class:`rater.journal.Journal` on a real store; the
command tests run ``python -m rater`` on the same data directory. A stateful
Hypothesis machine mixes postings, authorizations, CDR imports, a new account
and rerating, and proves after every step that each balance is the sum of its
journal and equals what a plain model of the rules expects.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import failed, ok, run_cli, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from rater.cli import EXIT_CODES
from rater.clients import Client, Registry, show_amount
from rater.decks import Decks
from rater.errors import Conflict, InvalidArgument, Refused, UnknownClient
from rater.ingest import import_cdrs, rerate
from rater.journal import (
    CALL_TYPES,
    FEE_TYPES,
    INVOICE_TYPES,
    SIGNS,
    TRANSACTION_TYPES,
    Journal,
)
from rater.store import Store

NANO = 10**9
RATES = ("prefix,destination,rate,increment\n"
         "49,Germany,0.02,60/60\n"
         "4930,Berlin,0.01,1/1\n")
CDR_HEADER = "id,start,number,duration,ip,username,ani,vendor\n"
#: 2026-01-01T00:00:00Z
JAN1 = 1_767_225_600
DAY = 86400
#: Every type a person posts, and which way it moves live and fixed (both alike).
MOVES = {
    "manual-charge": -1,
    "manual-credit": 1,
    "manual-payment": 1,
    "promotional-credit": 1,
    "refund": -1,
    "ecommerce-payment": 1,
    "ecommerce-refund": -1,
    "authorization": 0,
    "capture": 1,
    "void": 0,
}


def nanos(text: str) -> int:
    return int(Decimal(text).scaleb(9))


def text(n: int) -> str:
    """Nanos as a plain decimal string with 9 places, as a person might type it."""
    return f"{Decimal(n).scaleb(-9):f}"


def setup_world(store: Store, root: Path) -> Journal:
    """Table ``retail`` (EUR); alice (prepaid, credit limit 5), bob (postpaid), carol
    (prepaid, no limit, no account); accounts alice1 and bob1."""
    Decks(store).import_file(write(root / "rates.csv", RATES), "retail", currency="EUR")
    reg = Registry(store)
    reg.add_client(Client(id=0, name="alice", currency="EUR", rate_tables=[[None, "retail"]],
                          credit_limit=5 * NANO))
    reg.add_client(Client(id=0, name="bob", currency="EUR", rate_tables=[[None, "retail"]],
                          mode="postpaid"))
    reg.add_client(Client(id=0, name="carol", currency="EUR", rate_tables=[[None, "retail"]]))
    reg.add_account("alice", username="alice1")
    reg.add_account("bob", username="bob1")
    return Journal(store)


@pytest.fixture
def journal(store: Store, tmp_path: Path) -> Journal:
    return setup_world(store, tmp_path)


@pytest.fixture
def data(journal: Journal) -> Path:
    """The data directory of ``journal`` (for the command)."""
    return journal.store.data_dir


def client_id(store: Store, name: str) -> int:
    with store.read() as txn:
        return Registry(store).client_id(txn, name)


def snapshot(j: Journal) -> tuple[Any, ...]:
    """Everything a posting may write: entries, balances, holds, idempotency keys."""
    s = j.store
    with s.read() as txn:
        holds = list(s.holds.items(txn))
        keys = list(s.keys.items(txn))
    return ([(e.number, e.type, e.client, e.amount) for e in j.entries()], j.balances(),
            holds, keys)


def live_fixed(j: Journal, name: str) -> tuple[int, int]:
    b = j.balance(name)
    return b.live, b.fixed


# -- the types and their signs

def test_transaction_types_are_the_person_posted_ones() -> None:
    assert set(TRANSACTION_TYPES) == set(MOVES)
    assert set(SIGNS) == set(MOVES) | set(CALL_TYPES) | set(INVOICE_TYPES) | set(FEE_TYPES)
    assert INVOICE_TYPES == ("invoice",)
    # Fees are rater's own: charges but the credit of the days after a subscription ends.
    assert {t: SIGNS[t] for t in FEE_TYPES} == {"recurring-fee": -1, "prorated-fee": -1,
                                               "one-off-fee": -1, "fee-credit": 1}
    assert set(CALL_TYPES) == {"rated-call", "bundle-call", "rerate"}
    assert SIGNS["bundle-call"] == -1 and "bundle-call" not in TRANSACTION_TYPES


@pytest.mark.parametrize("type_", [t for t in MOVES if t not in ("authorization", "capture",
                                                                 "void")])
def test_each_plain_type_moves_live_and_fixed(journal: Journal, type_: str) -> None:
    journal.post("alice", "manual-payment", "100", now=JAN1)
    r = journal.post("alice", type_, "1.234567891", note="n", now=JAN1 + 5)
    sign = MOVES[type_]
    e = r.entry
    assert (e.type, e.amount, e.at, e.date, e.note, e.held, e.ref, e.call) == (
        type_, sign * 1_234_567_891, JAN1 + 5, JAN1 + 5, "n", None, None, None)
    assert e.number == 2 and not r.duplicate
    want = 100 * NANO + sign * 1_234_567_891
    assert r.balance == (want, want)
    assert live_fixed(journal, "alice") == (want, want)
    assert journal.entries("alice")[-1] == e
    shown = journal.balance("alice").to_json()
    assert (shown["live"], shown["fixed"]) == (text(want), text(want))
    assert shown["available"] == text(want + 5 * NANO)
    assert e.to_json({e.client: "alice"})["amount"] == ("-" if sign < 0 else "") + "1.234567891"
    assert journal.check() == []


def test_authorization_capture_and_void(journal: Journal) -> None:
    auth = journal.post("alice", "authorization", "30.5", now=JAN1).entry
    assert (auth.type, auth.amount, auth.held) == ("authorization", 0, nanos("30.5"))
    assert live_fixed(journal, "alice") == (0, 0)          # a reservation moves nothing
    assert auth.to_json()["held"] == "30.50" and auth.to_json()["amount"] == "0.00"

    cap = journal.post("alice", "capture", "20.000000001", ref=auth.number, now=JAN1 + 60).entry
    assert (cap.type, cap.amount, cap.ref, cap.held) == (
        "capture", 20 * NANO + 1, auth.number, None)
    assert live_fixed(journal, "alice") == (20 * NANO + 1, 20 * NANO + 1)

    auth2 = journal.post("alice", "authorization", "7", now=JAN1).entry
    void = journal.post("alice", "void", None, ref=auth2.number, now=JAN1 + 60).entry
    assert (void.type, void.amount, void.held, void.ref) == ("void", 0, 7 * NANO, auth2.number)
    auth3 = journal.post("alice", "authorization", "8", now=JAN1).entry
    void3 = journal.post("alice", "void", "8.000", ref=auth3.number, now=JAN1 + 1).entry
    assert (void3.amount, void3.held) == (0, 8 * NANO)
    assert live_fixed(journal, "alice") == (20 * NANO + 1, 20 * NANO + 1)
    assert [e.type for e in journal.entries("alice")] == [
        "authorization", "capture", "authorization", "void", "authorization", "void"]
    assert journal.check() == []


def test_calls_and_rerates_move_only_live(journal: Journal, tmp_path: Path) -> None:
    journal.post("bob", "manual-payment", "1", now=JAN1)
    cdrs = write(tmp_path / "c.csv", CDR_HEADER +
                 "1,2026-01-05T10:00:00,4930123456,61,,bob1,,\n"      # Berlin 1/1: 0.0102
                 "2,2026-01-05T11:00:00,4989123456,61,,bob1,,\n"      # Germany 60/60: 0.04
                 "3,2026-01-05T12:00:00,4930123456,30,,carol1,,\n")   # no account yet
    s = import_cdrs(journal.store, cdrs)
    assert (s.billed, s.mismatched, s.already, s.refused) == (2, 1, 0, [])
    assert s.amounts == {"EUR": nanos("0.0502")}
    assert live_fixed(journal, "bob") == (NANO - nanos("0.0502"), NANO)
    calls = journal.entries("bob", types=["rated-call"])
    assert [(e.amount, e.date) for e in calls] == [
        (-nanos("0.0102"), JAN1 + 4 * DAY + 10 * 3600),
        (-nanos("0.04"), JAN1 + 4 * DAY + 11 * 3600)]
    assert calls[0].to_json()["amount"] == "-0.0102"

    Registry(journal.store).add_account("carol", username="carol1")
    r = rerate(journal.store, JAN1, JAN1 + 31 * DAY)
    assert (r.calls, r.changed, r.now_billed) == (3, 1, 1)
    [entry] = journal.entries("carol")
    assert (entry.type, entry.amount, entry.note) == ("rerate", -nanos("0.0050"), "new price")
    assert live_fixed(journal, "carol") == (-nanos("0.005"), 0)
    assert journal.balance("carol").available == -nanos("0.005")      # limit 0
    assert journal.check() == []


def test_available_prepaid_postpaid_and_low(journal: Journal) -> None:
    journal.post("alice", "manual-charge", "7.25")
    journal.post("bob", "manual-charge", "7.25")
    a, b = journal.balance("alice"), journal.balance("bob")
    assert (a.live, a.fixed, a.available, a.mode) == (
        -nanos("7.25"), -nanos("7.25"), -nanos("2.25"), "prepaid")
    assert (b.live, b.available, b.mode) == (-nanos("7.25"), None, "postpaid")
    assert not a.low and not b.low
    Registry(journal.store).edit_client("alice", low_balance_threshold=0)
    assert journal.balance("alice").low                       # -2.25 available < 0
    journal.post("alice", "manual-payment", "2.25")
    assert not journal.balance("alice").low                   # 0 is not below 0


# -- exact amounts

@pytest.mark.parametrize(("amount", "n"), [
    ("100", 100 * NANO),
    ("0.0017", 1_700_000),
    (" 3.5 ", nanos("3.5")),
    ("123456789.123456789", 123_456_789_123_456_789),
    ("4611686018.427387903", 2**62 - 1),
    ("0.000000001", 1),
    (Decimal("12.340000000"), nanos("12.34")),
])
def test_amounts_keep_nine_decimals(journal: Journal, amount: str | Decimal, n: int) -> None:
    e = journal.post("alice", "manual-payment", amount).entry
    assert e.amount == n
    assert live_fixed(journal, "alice") == (n, n)
    assert journal.entries()[0].amount == n


@pytest.mark.parametrize(("n", "shown"), [
    (100 * NANO, "100.00"),
    (1_700_000, "0.0017"),
    (-1_700_000, "-0.0017"),
    (0, "0.00"),
    (nanos("1.5"), "1.50"),
    (-nanos("0.5"), "-0.50"),
    (nanos("1234.5678"), "1234.5678"),
    (100 * NANO + 1, "100.000000001"),
    (123_456_789, "0.123456789"),
    (10**6 * NANO, "1000000.00"),
])
def test_show_amount(n: int, shown: str) -> None:
    assert show_amount(n) == shown


@pytest.mark.parametrize(("n", "shown"), [
    (1, "0.000000001"),
    (-1, "-0.000000001"),
    (100, "0.0000001"),
    (123, "0.000000123"),
])
def test_show_amount_tiny_amounts_are_plain_decimals(n: int, shown: str) -> None:
    assert show_amount(n) == shown


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_show_amount_is_the_decimal_at_cents_or_exact(n: int) -> None:
    value = Decimal(n).scaleb(-9)
    cents = value.quantize(Decimal("0.01"))
    assert Decimal(show_amount(n)) == value
    assert show_amount(n) == format(cents if cents == value else value.normalize(), "f")


def test_balance_never_leaves_the_stored_range(journal: Journal) -> None:
    top = text(2**62 - 1)
    journal.post("alice", "manual-payment", top)
    journal.post("alice", "manual-payment", top)
    before = snapshot(journal)
    with pytest.raises(Refused, match="range"):
        journal.post("alice", "manual-payment", top, key="third")
    assert snapshot(journal) == before
    assert journal.check() == []


# -- idempotency

def test_same_key_same_content_posts_once(journal: Journal) -> None:
    first = journal.post("alice", "manual-payment", "10", key="pay-1", note="wire")
    assert not first.duplicate and first.entry.key == "pay-1"
    before = snapshot(journal)
    again = journal.post("alice", "manual-payment", Decimal("10.000000000"), key="pay-1",
                         note="wire")
    assert again.duplicate
    assert again.entry == first.entry
    assert again.balance == (10 * NANO, 10 * NANO)
    assert snapshot(journal) == before


@pytest.mark.parametrize("change", [
    {"amount": "10.000000001"},
    {"type_": "manual-credit"},
    {"client_name": "bob"},
    {"note": "cheque"},
    {"note": None},
])
def test_same_key_other_content_conflicts(journal: Journal, change: dict[str, Any]) -> None:
    journal.post("alice", "manual-payment", "10", key="pay-1", note="wire")
    before = snapshot(journal)
    args: dict[str, Any] = {"client_name": "alice", "type_": "manual-payment",
                            "amount": "10", "key": "pay-1", "note": "wire", **change}
    with pytest.raises(Conflict, match="key 'pay-1' was used for entry 1"):
        journal.post(**args)
    assert snapshot(journal) == before


def test_duplicate_refund_is_not_refused_again(journal: Journal) -> None:
    journal.post("alice", "manual-payment", "10")
    journal.post("alice", "refund", "10", key="r-1")
    assert live_fixed(journal, "alice") == (0, 0)
    before = snapshot(journal)
    assert journal.post("alice", "refund", "10", key="r-1").duplicate
    assert snapshot(journal) == before


def test_settled_capture_and_void_repost_as_duplicates(journal: Journal) -> None:
    a1 = journal.post("alice", "authorization", "4", now=JAN1).entry
    a2 = journal.post("alice", "authorization", "6", now=JAN1).entry
    cap = journal.post("alice", "capture", "3", ref=a1.number, key="cap", now=JAN1 + 1).entry
    void = journal.post("alice", "void", None, ref=a2.number, key="void", now=JAN1 + 1).entry
    before = snapshot(journal)
    # Settled (and, later, expired) authorizations: the key answers before the refusal.
    for now in (JAN1 + 2, JAN1 + 30 * DAY):
        r = journal.post("alice", "capture", "3", ref=a1.number, key="cap", now=now)
        assert r.duplicate and r.entry == cap
        r = journal.post("alice", "void", "6", ref=a2.number, key="void", now=now)
        assert r.duplicate and r.entry == void
    with pytest.raises(Conflict):
        journal.post("alice", "capture", "4", ref=a1.number, key="cap", now=JAN1 + 2)
    assert snapshot(journal) == before
    assert live_fixed(journal, "alice") == (3 * NANO, 3 * NANO)


def test_cli_idempotency(data: Path, journal: Journal) -> None:
    out = ok(run_cli("transaction", "add", "alice", "manual-payment", "100", "--key", "pay-1",
                     data=data))
    assert out == ("Entry 1: manual-payment 100.00 EUR for alice; live balance 100.00, "
                   "fixed 100.00\n")
    before = snapshot(journal)
    out = ok(run_cli("transaction", "add", "alice", "manual-payment", "100.00", "--key",
                     "pay-1", data=data))
    assert out == "Already posted as entry 1 (key pay-1): nothing changed\n"
    report = json.loads(ok(run_cli("transaction", "add", "alice", "manual-payment", "100",
                                   "--key", "pay-1", "--json", data=data)))
    assert report["duplicate"] is True
    assert report["entry"]["number"] == 1 and report["entry"]["amount"] == "100.00"
    assert (report["balance"]["live"], report["balance"]["fixed"]) == ("100.00", "100.00")
    assert snapshot(journal) == before

    msg = failed(run_cli("transaction", "add", "alice", "manual-payment", "100.5", "--key",
                         "pay-1", data=data), "CONFLICT", 5)
    assert msg == ("key 'pay-1' was used for entry 1 (manual-payment 100.00) with other "
                   "content; nothing was posted")
    failed(run_cli("transaction", "add", "bob", "manual-payment", "100", "--key", "pay-1",
                   data=data), "CONFLICT", 5)
    assert snapshot(journal) == before


def test_cli_add_json_and_small_amounts(data: Path) -> None:
    report = json.loads(ok(run_cli("transaction", "add", "alice", "promotional-credit",
                                   "0.0017", "--note", "welcome", "--json", data=data)))
    assert report["duplicate"] is False
    e = report["entry"]
    assert (e["number"], e["type"], e["amount"], e["note"]) == (
        1, "promotional-credit", "0.0017", "welcome")
    assert e["key"].startswith("tx:") and e["at"] == e["date"]
    assert report["balance"] == {"client": "alice", "currency": "EUR", "live": "0.0017",
                                 "fixed": "0.0017", "available": "5.0017",
                                 "credit_limit": "5.00", "mode": "prepaid", "low": False}
    out = ok(run_cli("transaction", "add", "alice", "manual-charge", "12.123456789",
                     data=data))
    assert out == ("Entry 2: manual-charge 12.123456789 EUR for alice; live balance "
                   "-12.121756789, fixed -12.121756789\n")


def test_cli_add_json_names_the_client_like_list(data: Path) -> None:
    report = json.loads(ok(run_cli("transaction", "add", "alice", "manual-payment", "1",
                                   "--json", data=data)))
    [listed_entry] = json.loads(ok(run_cli("transaction", "list", "alice", "--json",
                                           data=data)))
    assert listed_entry["client"] == "alice"
    assert report["entry"] == listed_entry


def test_cli_balance_show(data: Path, journal: Journal) -> None:
    journal.post("alice", "manual-payment", "1.5")
    journal.post("alice", "manual-charge", "0.0017")
    journal.post("bob", "manual-charge", "3")
    bal = json.loads(ok(run_cli("balance", "show", "alice", "--json", data=data)))
    assert {k: bal[k] for k in ("live", "fixed", "available", "currency")} == {
        "live": "1.4983", "fixed": "1.4983", "available": "6.4983", "currency": "EUR"}
    bal = json.loads(ok(run_cli("balance", "show", "bob", "--json", data=data)))
    assert {k: bal[k] for k in ("live", "fixed", "available", "currency")} == {
        "live": "-3.00", "fixed": "-3.00", "available": None, "currency": "EUR"}
    out = ok(run_cli("balance", "show", "bob", data=data))
    assert out == "bob (EUR, postpaid): live -3.00, fixed -3.00, available unlimited\n"
    bal = json.loads(ok(run_cli("balance", "show", "carol", "--json", data=data)))
    assert (bal["live"], bal["fixed"], bal["available"]) == ("0.00", "0.00", "0.00")
    failed(run_cli("balance", "show", "nobody", data=data), "UNKNOWN_CLIENT", 4)


# -- refusals

def test_refund_no_more_than_the_live_balance_in_credit(journal: Journal) -> None:
    journal.post("alice", "manual-payment", "10")
    before = snapshot(journal)
    with pytest.raises(Refused, match="more than the balance in credit"):
        journal.post("alice", "refund", "10.000000001")
    assert snapshot(journal) == before
    journal.post("alice", "refund", "10")
    assert live_fixed(journal, "alice") == (0, 0)
    journal.post("alice", "manual-charge", "1")
    before = snapshot(journal)
    with pytest.raises(Refused):                    # in debt: nothing to refund
        journal.post("alice", "refund", "0.000000001")
    assert snapshot(journal) == before
    # An e-commerce refund is not bounded by the balance.
    journal.post("alice", "ecommerce-refund", "2")
    assert live_fixed(journal, "alice") == (-3 * NANO, -3 * NANO)


def test_refund_is_bounded_by_live_not_fixed(journal: Journal, tmp_path: Path) -> None:
    journal.post("alice", "manual-payment", "1")
    import_cdrs(journal.store, write(tmp_path / "c.csv", CDR_HEADER +
                                     "1,2026-01-05T10:00:00,4989123456,61,,alice1,,\n"))
    assert live_fixed(journal, "alice") == (nanos("0.96"), NANO)
    before = snapshot(journal)
    with pytest.raises(Refused):
        journal.post("alice", "refund", "0.97")
    assert snapshot(journal) == before
    journal.post("alice", "refund", "0.96")
    assert live_fixed(journal, "alice") == (0, nanos("0.04"))


def test_capture_refusals(journal: Journal) -> None:
    auth = journal.post("alice", "authorization", "10", now=JAN1, expires=JAN1 + 3600).entry
    pay = journal.post("alice", "manual-payment", "1", now=JAN1).entry
    bob_auth = journal.post("bob", "authorization", "10", now=JAN1).entry
    before = snapshot(journal)

    def refused(match: str, client: str = "alice", type_: str = "capture",
                amount: str | None = "5", **kw: Any) -> None:
        with pytest.raises(Refused, match=match):
            journal.post(client, type_, amount, **kw)
        assert snapshot(journal) == before

    refused("more than authorization", amount="10.000000001", ref=auth.number, now=JAN1 + 1)
    refused("expired", ref=auth.number, now=JAN1 + 3600)                  # at the expiry
    refused("expired", ref=auth.number, now=JAN1 + 7200)
    refused("expired", type_="void", amount=None, ref=auth.number, now=JAN1 + 3600)
    refused("not an authorization", ref=pay.number, now=JAN1 + 1)
    refused("not an authorization", ref=999, now=JAN1 + 1)
    refused("belongs to another client", ref=bob_auth.number, now=JAN1 + 1)
    refused("belongs to another client", client="bob", ref=auth.number, now=JAN1 + 1)
    refused("belongs to another client", type_="void", amount=None, ref=bob_auth.number,
            now=JAN1 + 1)

    # One second before the expiry it may still be captured, all of it.
    cap = journal.post("alice", "capture", "10", ref=auth.number, now=JAN1 + 3599).entry
    assert cap.amount == 10 * NANO
    before = snapshot(journal)
    refused("captured", ref=auth.number, now=JAN1 + 2)
    refused("captured", type_="void", amount=None, ref=auth.number, now=JAN1 + 2)

    journal.post("bob", "void", "10", ref=bob_auth.number, now=JAN1 + 1)
    before = snapshot(journal)
    refused("voided", client="bob", ref=bob_auth.number, now=JAN1 + 2)
    refused("voided", client="bob", type_="void", amount=None, ref=bob_auth.number,
            now=JAN1 + 2)
    assert live_fixed(journal, "alice") == (11 * NANO, 11 * NANO)
    assert live_fixed(journal, "bob") == (0, 0)
    assert journal.check() == []


def test_capture_and_void_argument_errors(journal: Journal) -> None:
    auth = journal.post("alice", "authorization", "10", now=JAN1).entry
    before = snapshot(journal)

    def invalid(match: str, type_: str, amount: str | None, **kw: Any) -> None:
        with pytest.raises(InvalidArgument, match=match):
            journal.post("alice", type_, amount, now=JAN1 + 1, **kw)
        assert snapshot(journal) == before

    invalid("cancels all of authorization", "void", "9.999999999", ref=auth.number)
    invalid("cancels all of authorization", "void", "10.000000001", ref=auth.number)
    invalid(r"names its authorization \(--ref ENTRY\)", "capture", "5")
    invalid(r"names its authorization", "void", None)
    invalid("takes no --ref", "manual-payment", "5", ref=auth.number)
    invalid("takes no --ref", "authorization", "5", ref=auth.number)
    invalid("needs an amount", "capture", None, ref=auth.number)
    invalid("needs an amount", "manual-payment", None)
    invalid("must expire in the future", "authorization", "5", expires=JAN1 + 1)
    invalid("must expire in the future", "authorization", "5", expires=JAN1)
    # Still open after all that: a full void succeeds.
    assert journal.post("alice", "void", None, ref=auth.number, now=JAN1 + 2).entry.held == \
        10 * NANO


def test_authorization_default_expiry_is_seven_days(journal: Journal) -> None:
    auth = journal.post("alice", "authorization", "1", now=JAN1).entry
    with pytest.raises(Refused, match="expired"):
        journal.post("alice", "capture", "1", ref=auth.number, now=JAN1 + 7 * DAY)
    journal.post("alice", "capture", "1", ref=auth.number, now=JAN1 + 7 * DAY - 1)
    assert live_fixed(journal, "alice") == (NANO, NANO)


def test_cli_refusals(data: Path, journal: Journal) -> None:
    journal.post("alice", "manual-payment", "5")
    auth = journal.post("alice", "authorization", "3").entry
    before = snapshot(journal)
    msg = failed(run_cli("transaction", "add", "alice", "refund", "5.01", data=data),
                 "REFUSED", 6)
    assert msg == "a refund of 5.01 is more than the balance in credit (5.00 EUR)"
    failed(run_cli("transaction", "add", "alice", "capture", "3.01", "--ref", str(auth.number),
                   data=data), "REFUSED", 6)
    failed(run_cli("transaction", "add", "bob", "capture", "3", "--ref", str(auth.number),
                   data=data), "REFUSED", 6)
    failed(run_cli("transaction", "add", "alice", "capture", "3", "--ref", "1", data=data),
           "REFUSED", 6)
    failed(run_cli("transaction", "add", "alice", "capture", "3", data=data),
           "INVALID_ARGUMENT", 64)
    failed(run_cli("transaction", "add", "alice", "void", data=data), "INVALID_ARGUMENT", 64)
    failed(run_cli("transaction", "add", "alice", "void", "2", "--ref", str(auth.number),
                   data=data), "INVALID_ARGUMENT", 64)
    failed(run_cli("transaction", "add", "alice", "authorization", "3", "--expires",
                   "2020-01-01", data=data), "INVALID_ARGUMENT", 64)
    assert snapshot(journal) == before

    out = ok(run_cli("transaction", "add", "alice", "void", "--ref", str(auth.number),
                     data=data))
    assert out.startswith("Entry 3: void 3.00 EUR for alice; live balance 5.00, fixed 5.00")


# -- bad input changes nothing

@pytest.mark.parametrize(("client", "type_", "amount", "kw", "error", "match"), [
    ("alice", "manual-payment", "-5", {}, InvalidArgument, "negative"),
    ("alice", "manual-payment", "-0.000000001", {}, InvalidArgument, "negative"),
    ("alice", "manual-payment", "0", {}, InvalidArgument, "more than 0"),
    ("alice", "manual-payment", "0.000000000", {}, InvalidArgument, "more than 0"),
    ("alice", "manual-payment", "-0", {}, InvalidArgument, "more than 0"),
    ("alice", "manual-payment", "ten", {}, InvalidArgument, "not an amount"),
    ("alice", "manual-payment", "", {}, InvalidArgument, "not an amount"),
    ("alice", "manual-payment", "NaN", {}, InvalidArgument, "not an amount"),
    ("alice", "manual-payment", "Infinity", {}, InvalidArgument, "not an amount"),
    ("alice", "manual-payment", "1,5", {}, InvalidArgument, "not an amount"),
    ("alice", "manual-payment", "0.0000000001", {}, InvalidArgument, "9 decimal"),
    ("alice", "manual-payment", "1.1234567891", {}, InvalidArgument, "9 decimal"),
    ("alice", "manual-payment", "4611686018.427387904", {}, InvalidArgument, "too large"),
    ("alice", "gift", "5", {}, InvalidArgument, "unknown transaction type"),
    ("alice", "rated-call", "5", {}, InvalidArgument, "unknown transaction type"),
    ("alice", "rerate", "5", {}, InvalidArgument, "unknown transaction type"),
    ("nobody", "manual-payment", "5", {}, UnknownClient, "no client named 'nobody'"),
    ("alice", "manual-payment", "5", {"currency": "USD"}, InvalidArgument,
     "billed in EUR, not USD"),
    ("alice", "manual-payment", "5", {"key": ""}, InvalidArgument, "key"),
    ("alice", "manual-payment", "5", {"key": "k" * 201}, InvalidArgument, "key"),
    ("alice", "manual-payment", "5", {"note": "n" * 1001}, InvalidArgument, "note"),
])
def test_bad_input_changes_nothing(journal: Journal, client: str, type_: str, amount: str,
                                   kw: dict[str, Any], error: type[Exception],
                                   match: str) -> None:
    journal.post("alice", "manual-payment", "1", key="seed")
    journal.post("bob", "manual-charge", "2")
    before = snapshot(journal)
    with pytest.raises(error, match=match):
        journal.post(client, type_, amount, **kw)
    assert snapshot(journal) == before
    assert live_fixed(journal, "alice") == (NANO, NANO)
    assert live_fixed(journal, "bob") == (-2 * NANO, -2 * NANO)
    assert journal.check() == []


@pytest.mark.parametrize(("amount", "match"), [
    ("1e10000000", "too large"),            # once an internal decimal.Overflow
    ("1e19", "too large"),
    ("1e-10000000", "more than 9 decimal places"),   # once "must be more than 0"
])
def test_extreme_exponents_are_invalid_amounts(journal: Journal, amount: str,
                                               match: str) -> None:
    before = snapshot(journal)
    with pytest.raises(InvalidArgument, match=match):
        journal.post("alice", "manual-payment", amount)
    assert snapshot(journal) == before


@pytest.mark.parametrize(("argv", "code", "exit_code"), [
    (["alice", "manual-payment", "-5"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment", "-0.5"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment", "0"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment", "0.00"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment", "five"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment", "1.0000000001"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment"], "INVALID_ARGUMENT", 64),
    (["alice", "manual-payment", "1e10000000"], "INVALID_ARGUMENT", 64),
    (["nobody", "manual-payment", "5"], "UNKNOWN_CLIENT", 4),
    (["alice", "manual-payment", "5", "--currency", "USD"], "INVALID_ARGUMENT", 64),
])
def test_cli_bad_input_changes_nothing(data: Path, journal: Journal, argv: list[str],
                                       code: str, exit_code: int) -> None:
    journal.post("alice", "manual-payment", "1", key="seed")
    before = snapshot(journal)
    failed(run_cli("transaction", "add", *argv, data=data), code, exit_code)
    assert snapshot(journal) == before
    assert live_fixed(journal, "alice") == (NANO, NANO)


@pytest.mark.parametrize("type_", ["gift", "rated-call", "rerate"])
def test_cli_unknown_type_is_a_usage_error(data: Path, journal: Journal, type_: str) -> None:
    journal.post("alice", "manual-payment", "1")
    before = snapshot(journal)
    proc = run_cli("transaction", "add", "alice", type_, "5", data=data)
    assert proc.returncode == 2, proc.stderr
    assert "invalid choice" in proc.stderr and proc.stdout == ""
    assert snapshot(journal) == before


# -- rater check

def test_check_passes_then_names_the_corrupted_client(data: Path, journal: Journal,
                                                      tmp_path: Path) -> None:
    store = journal.store
    journal.post("alice", "manual-payment", "100")
    journal.post("alice", "manual-charge", "0.0017")
    import_cdrs(store, write(tmp_path / "c.csv", CDR_HEADER +
                             "1,2026-01-05T10:00:00,4930123456,61,,alice1,,\n"
                             "2,2026-01-05T10:00:00,4930123456,61,,bob1,,\n"))
    assert journal.check() == []
    out = ok(run_cli("check", data=data))
    assert out == ("Every balance equals the sum of its journal entries; no call is billed "
                   "twice\n")

    cid = client_id(store, "alice")
    store.write(lambda txn: store.balances.put(txn, cid.to_bytes(4, "big"),
                                               msgpack.packb([1, 2])))
    expected = ["client alice: live balance 0.000000001, journal 99.9881",
                "client alice: fixed balance 0.000000002, journal 99.9983"]
    assert journal.check() == expected
    proc = run_cli("check", data=data)
    assert proc.returncode == EXIT_CODES["CHECK_FAILED"] == 7, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.splitlines() == expected
    assert proc.stderr == ("rater: error: 2 difference(s) between balances and the "
                           "journal\n")
    assert "bob" not in proc.stdout
    with pytest.raises(Exception, match="2 difference"):
        journal.require_consistent()


def test_check_finds_a_balance_without_entries(data: Path, journal: Journal) -> None:
    store = journal.store
    cid = client_id(store, "carol")
    store.write(lambda txn: store.balances.put(txn, cid.to_bytes(4, "big"),
                                               msgpack.packb([0, -5 * NANO])))
    assert journal.check() == ["client carol: fixed balance -5.00, journal 0.00"]
    proc = run_cli("check", data=data)
    assert proc.returncode == 7
    assert "client carol: fixed balance -5.00, journal 0.00" in proc.stdout


# -- transaction list

@pytest.fixture
def dated(journal: Journal, tmp_path: Path) -> Journal:
    """alice: a payment on Jan 1, a call on Jan 5 10:00, a charge on Jan 15, a credit on
    Feb 1; bob: a payment on Jan 10."""
    journal.post("alice", "manual-payment", "50", now=JAN1, key="p1")
    import_cdrs(journal.store, write(tmp_path / "c.csv", CDR_HEADER +
                                     "c1,2026-01-05T10:00:00,4930123456,61,,alice1,,\n"))
    journal.post("alice", "manual-charge", "2.5", now=JAN1 + 14 * DAY, note="fee")
    journal.post("alice", "manual-credit", "1", now=JAN1 + 31 * DAY)
    journal.post("bob", "manual-payment", "9", now=JAN1 + 9 * DAY)
    return journal


def listed(data: Path, *args: str) -> list[dict[str, Any]]:
    return json.loads(ok(run_cli("transaction", "list", *args, "--json", data=data)))


def test_transaction_list_all_and_json_fields(data: Path, dated: Journal) -> None:
    rows = listed(data, "alice")
    assert [(r["number"], r["type"], r["amount"]) for r in rows] == [
        (1, "manual-payment", "50.00"), (2, "rated-call", "-0.0102"),
        (3, "manual-charge", "-2.50"), (4, "manual-credit", "1.00")]
    assert {r["client"] for r in rows} == {"alice"}
    pay, call, charge, _ = rows
    assert (pay["key"], pay["date"], pay["at"]) == ("p1", JAN1, JAN1)
    assert "ref" not in pay and "note" not in pay and "call" not in pay
    assert charge["note"] == "fee"
    assert call["key"] == "cdr:canonical:c1"
    assert call["date"] == JAN1 + 4 * DAY + 10 * 3600
    assert call["call"]["number"] == "4930123456"
    assert call["call"]["destination"] == "Berlin" and call["call"]["prefix"] == "4930"
    assert (call["call"]["duration"], call["call"]["billed"]) == (61, 61)
    assert call["call"]["cost"] is None
    assert [r["amount"] for r in listed(data, "bob")] == ["9.00"]
    failed(run_cli("transaction", "list", "nobody", data=data), "UNKNOWN_CLIENT", 4)


@pytest.mark.parametrize(("args", "numbers"), [
    (["--from", "2026-01-01"], [1, 2, 3, 4]),                      # --from is inclusive
    (["--from", "2026-01-01T00:00:01"], [2, 3, 4]),
    (["--to", "2026-02-01"], [1, 2, 3]),                           # --to is exclusive
    (["--from", "2026-01-05T10:00:00", "--to", "2026-01-15T00:00:01"], [2, 3]),
    (["--from", "2026-01-05T10:00:01", "--to", "2026-01-16"], [3]),
    (["--from", "2026-01-05T10:00:00", "--to", "2026-01-15"], [2]),      # the charge is at 00:00
    (["--from", "2026-01-05", "--to", "2026-01-15"], [2]),
    (["--from", "2026-01-05T11:00:00+01:00", "--to", "2026-01-05T11:00:01+01:00"], [2]),
    (["--from", "2026-01-05T11:00", "--to", "2026-01-06", "--timezone", "Europe/Berlin"],
     [2]),
    (["--from", "2026-03-01"], []),
    (["--type", "manual-charge"], [3]),
    (["--type", "manual-charge", "--type", "manual-credit"], [3, 4]),
    (["--type", "rated-call"], [2]),
    (["--type", "refund"], []),
    (["--type", "manual-payment", "--type", "rated-call", "--to", "2026-01-05T10:00"], [1]),
    (["--type", "manual-credit", "--from", "2026-01-02", "--to", "2026-02-01"], []),
])
def test_transaction_list_filters(data: Path, dated: Journal, args: list[str],
                                  numbers: list[int]) -> None:
    assert [r["number"] for r in listed(data, "alice", *args)] == numbers


def test_entries_filters_in_process(dated: Journal) -> None:
    def numbers(client: str | None = "alice", **kw: Any) -> list[int]:
        return [e.number for e in dated.entries(client, **kw)]

    call = JAN1 + 4 * DAY + 10 * 3600
    assert numbers() == [1, 2, 3, 4]
    assert numbers(None) == [1, 2, 3, 4, 5]
    assert numbers("bob") == [5]
    assert numbers(since=call) == [2, 3, 4]
    assert numbers(since=call + 1) == [3, 4]
    assert numbers(until=call) == [1]
    assert numbers(until=call + 1) == [1, 2]
    assert numbers(since=JAN1, until=JAN1 + 31 * DAY) == [1, 2, 3]
    assert numbers(types=["rated-call", "manual-credit"]) == [2, 4]
    assert numbers(None, types=["manual-payment"], since=JAN1 + 1) == [5]
    assert numbers(types=[]) == []


def test_transaction_list_rejects_bad_periods(data: Path, dated: Journal) -> None:
    failed(run_cli("transaction", "list", "alice", "--from", "2026-02-01", "--to",
                   "2026-01-01", data=data), "INVALID_ARGUMENT", 64)
    failed(run_cli("transaction", "list", "alice", "--from", "yesterday", data=data),
           "INVALID_ARGUMENT", 64)
    proc = run_cli("transaction", "list", "alice", "--type", "gift", data=data)
    assert proc.returncode == 2


# -- the stateful model

#: CDRs the machine imports: id -> (username, number, seconds, start, price or None).
#: Prices: Berlin 1/1 at 0.01/min and Germany 60/60 at 0.02/min, 4 decimals half-up.
CATALOGUE: dict[str, tuple[str, str, int, str, int | None]] = {
    "c1": ("alice1", "4930123456", 61, "2026-01-05T10:00:00", nanos("0.0102")),  # .010166..
    "c2": ("alice1", "4989123456", 61, "2026-01-05T11:00:00", nanos("0.04")),    # 120 s
    "c3": ("bob1", "493055501", 30, "2026-01-06T09:00:00", nanos("0.005")),
    "c4": ("bob1", "4989777", 120, "2026-01-07T09:00:00", nanos("0.04")),
    "c5": ("carol1", "4930777", 7, "2026-01-08T09:00:00", nanos("0.0012")),      # .001166..
    "c6": ("carol1", "4940111", 1, "2026-01-09T09:00:00", nanos("0.02")),        # 60 s
    "c7": ("carol1", "4930999", 0, "2026-01-10T09:00:00", 0),                    # free
    "c8": ("ghost", "4930111", 10, "2026-01-11T09:00:00", None),                 # no account
    "c9": ("alice1", "3312345678", 60, "2026-01-12T09:00:00", None),             # no rate
}
NAMES = ("alice", "bob", "carol")
LIMITS = {"alice": 5 * NANO, "bob": None, "carol": 0}      # None: postpaid
#: The types the machine posts without an authorization.
PLAIN = tuple(t for t, s in MOVES.items() if s and t != "capture")
#: Mostly False: most captures and voids should be allowed to go through.
RARELY = st.sampled_from([False, False, False, True])
AMOUNTS = st.one_of(st.integers(1, 1000), st.integers(1, 20 * NANO),
                    st.sampled_from([NANO, 10 * NANO, nanos("0.0102")]))


class JournalMachine(RuleBasedStateMachine):
    """Postings, authorizations, CDR imports, an account added, rerating; and a model."""

    keyed = Bundle("keyed")
    auths = Bundle("auths")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rater-journal-"))
        self.store = Store(self.tmp / "data")
        self.journal = setup_world(self.store, self.tmp)
        self.ids = {n: client_id(self.store, n) for n in NAMES}
        self.live = dict.fromkeys(NAMES, 0)
        self.fixed = dict.fromkeys(NAMES, 0)
        self.count = 0                                  # journal entries expected
        self.accounts = {"alice1": "alice", "bob1": "bob"}
        self.recorded: dict[str, str | None] = {}      # cdr id -> client billed, or None
        self.holds: dict[int, list[Any]] = {}          # entry -> [client, amount, state]
        self.serial = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def _move(self, client: str, amount: int, *, fixed: bool = True) -> None:
        self.live[client] += amount
        if fixed:
            self.fixed[client] += amount

    @staticmethod
    def _other(client: str) -> str:
        return NAMES[(NAMES.index(client) + 1) % len(NAMES)]

    # -- postings

    @rule(target=keyed, client=st.sampled_from(NAMES), type_=st.sampled_from(PLAIN),
          amount=AMOUNTS, with_key=st.booleans())
    def post(self, client: str, type_: str, amount: int, with_key: bool) -> Any:
        key = f"key-{self._next()}" if with_key else None
        if type_ == "refund" and amount > max(self.live[client], 0):
            with pytest.raises(Refused):
                self.journal.post(client, type_, text(amount), key=key)
            return multiple()
        r = self.journal.post(client, type_, text(amount), key=key)
        signed = MOVES[type_] * amount
        assert not r.duplicate
        assert (r.entry.type, r.entry.amount, r.entry.client) == (
            type_, signed, self.ids[client])
        self._move(client, signed)
        self.count += 1
        assert r.balance == (self.live[client], self.fixed[client])
        if key is None:
            return multiple()
        return multiple((key, client, type_, amount, r.entry.number))

    @rule(posted=keyed, change=st.sampled_from(["same", "amount", "type", "client"]))
    def repost(self, posted: tuple[str, str, str, int, int], change: str) -> None:
        key, client, type_, amount, number = posted
        if change == "same":
            r = self.journal.post(client, type_, text(amount), key=key)
            assert r.duplicate and r.entry.number == number
            return
        if change == "amount":
            amount += 1
        elif change == "type":
            type_ = PLAIN[(PLAIN.index(type_) + 1) % len(PLAIN)]
        else:
            client = self._other(client)
        with pytest.raises(Conflict):
            self.journal.post(client, type_, text(amount), key=key)

    # -- authorizations

    @rule(target=auths, client=st.sampled_from(NAMES), amount=AMOUNTS)
    def authorize(self, client: str, amount: int) -> int:
        e = self.journal.post(client, "authorization", text(amount)).entry
        assert (e.amount, e.held) == (0, amount)
        self.holds[e.number] = [client, amount, "open"]
        self.count += 1
        return e.number

    @rule(target=auths, client=st.sampled_from(NAMES), amount=AMOUNTS,
          settle=st.sampled_from(["capture", "part", "void"]))
    def authorize_and_settle(self, client: str, amount: int, settle: str) -> int:
        ref = self.authorize(client, amount)
        if settle == "void":
            self.void(ref, False, "none", False)
        else:
            self.capture(ref, False, "full" if settle == "capture" else "part", False)
        assert self.holds[ref][2] == ("voided" if settle == "void" else "captured")
        return ref

    def _refusal(self, ref: int, other: bool, late: bool) -> bool:
        _, _, state = self.holds[ref]
        return other or state != "open" or late

    @rule(ref=auths, other=RARELY, mode=st.sampled_from(["full", "full", "part", "over"]),
          late=RARELY)
    def capture(self, ref: int, other: bool, mode: str, late: bool) -> None:
        owner, held, _ = self.holds[ref]
        client = self._other(owner) if other else owner
        amount = {"full": held, "part": max(held - 1, 1), "over": held + 1}[mode]
        now = int(time.time()) + 8 * DAY if late else None
        if self._refusal(ref, other, late) or mode == "over":
            with pytest.raises(Refused):
                self.journal.post(client, "capture", text(amount), ref=ref, now=now)
            return
        e = self.journal.post(client, "capture", text(amount), ref=ref, now=now).entry
        assert (e.amount, e.ref) == (amount, ref)
        self._move(client, amount)
        self.count += 1
        self.holds[ref][2] = "captured"

    @rule(ref=auths, other=RARELY, mode=st.sampled_from(["none", "exact", "other"]),
          late=RARELY)
    def void(self, ref: int, other: bool, mode: str, late: bool) -> None:
        owner, held, _ = self.holds[ref]
        client = self._other(owner) if other else owner
        amount = {"none": None, "exact": text(held), "other": text(held + 1)}[mode]
        now = int(time.time()) + 8 * DAY if late else None
        if self._refusal(ref, other, late):
            with pytest.raises(Refused):
                self.journal.post(client, "void", amount, ref=ref, now=now)
            return
        if mode == "other":
            with pytest.raises(InvalidArgument):
                self.journal.post(client, "void", amount, ref=ref, now=now)
            return
        e = self.journal.post(client, "void", amount, ref=ref, now=now).entry
        assert (e.amount, e.held, e.ref) == (0, held, ref)
        self.count += 1
        self.holds[ref][2] = "voided"

    # -- calls

    @rule(ids=st.lists(st.sampled_from(sorted(CATALOGUE)), min_size=1, max_size=5,
                       unique=True), tamper=st.booleans())
    def import_file(self, ids: list[str], tamper: bool) -> None:
        rows, billed, mismatched, already, refused = [], 0, 0, 0, 0
        for cid in ids:
            user, number, seconds, start, price = CATALOGUE[cid]
            if cid in self.recorded:
                if tamper:
                    seconds += 1
                    refused += 1
                else:
                    already += 1
            else:
                client = self.accounts.get(user)
                if client is not None and price is not None:
                    billed += 1
                    self.recorded[cid] = client
                    if price:
                        self._move(client, -price, fixed=False)
                        self.count += 1
                else:
                    mismatched += 1
                    self.recorded[cid] = None
            rows.append(f"{cid},{start},{number},{seconds},,{user},,\n")
        path = write(self.tmp / f"cdrs-{self._next()}.csv", CDR_HEADER + "".join(rows))
        s = import_cdrs(self.store, path)
        assert (s.rows, s.billed, s.mismatched, s.already, len(s.refused)) == (
            len(ids), billed, mismatched, already, refused)

    @precondition(lambda self: "carol1" not in self.accounts)
    @rule(client=st.sampled_from(NAMES))
    def add_account(self, client: str) -> None:
        Registry(self.store).add_account(client, username="carol1")
        self.accounts["carol1"] = client

    @rule(adopt=st.sampled_from([None, *NAMES]))
    def rerate_period(self, adopt: str | None) -> None:
        """Rerate January (after giving carol1's calls a client, with ``adopt``)."""
        if adopt is not None and "carol1" not in self.accounts:
            self.add_account(adopt)
        now_billed = 0
        delta = 0
        for cid, billed_to in self.recorded.items():
            user, _, _, _, price = CATALOGUE[cid]
            client = self.accounts.get(user)
            if billed_to is None and client is not None and price is not None:
                self.recorded[cid] = client
                now_billed += 1
                delta += price
                if price:
                    self._move(client, -price, fixed=False)
                    self.count += 1
        s = rerate(self.store, JAN1, JAN1 + 31 * DAY)
        assert (s.calls, s.changed, s.unchanged, s.now_billed, s.now_mismatched) == (
            len(self.recorded), now_billed, len(self.recorded) - now_billed, now_billed, 0)
        assert s.delta == ({"EUR": delta} if delta else {})

    # -- invariants

    @invariant()
    def balances_are_their_journal_and_the_model(self) -> None:
        assert self.journal.check() == []
        entries = self.journal.entries()
        assert len(entries) == self.count
        assert [e.number for e in entries] == list(range(1, self.count + 1))
        for name in NAMES:
            mine = [e for e in entries if e.client == self.ids[name]]
            b = self.journal.balance(name)
            assert b.live == sum(e.amount for e in mine) == self.live[name]
            assert b.fixed == sum(e.amount for e in mine
                                  if e.type not in CALL_TYPES) == self.fixed[name]
            limit = LIMITS[name]
            assert b.available == (None if limit is None else self.live[name] + limit)


JournalMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestJournalMachine = JournalMachine.TestCase
