"""Clients, accounts, dial plans, account matching, the audit log, backups and their CLI.

The library is tested on the ``store`` fixture. The commands go through
``rater.cli.main`` in this process (fast; it is what ``python -m rater`` runs) on
data directories built here and closed before the command opens them; a few run
in a real subprocess (``run_cli``) to show a user sees the same: one error line,
the exit code of EXIT_CODES, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import failed as expect_failure
from conftest import ok, run_cli, write
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rater import audit
from rater.cli import EXIT_CODES, main
from rater.clients import (
    AccountIndex,
    Client,
    Registry,
    iban_valid,
    parse_amount,
    show_amount,
)
from rater.config import StorageConfig
from rater.decks import Decks
from rater.dialplan import DialPlan
from rater.errors import (
    Conflict,
    InvalidArgument,
    InvalidNumber,
    UnknownAccount,
    UnknownClient,
    UnknownTable,
)
from rater.journal import Journal
from rater.store import Store

NANO = 10**9
DECK = "prefix,destination,rate,increment\n49,Germany,0.02,60/60\n44,United Kingdom,0.03,60/60\n"
#: Rate tables every test gets: name -> currency.
TABLES = {"eur1": "EUR", "eur2": "EUR", "eur3": "EUR", "usd1": "USD"}

CLIENT_KEYS = {"id", "name", "currency", "status", "timezone", "mode", "credit_limit",
               "rate_tables", "term_table", "payment_terms_days", "bill_by",
               "max_call_length", "capacity", "tags", "billing_email",
               "low_balance_threshold", "low_balance_capacity", "auto_invoice", "billing_day",
               "invoice_template", "taxes", "reverse_charge", "vat_id", "sepa_mandate",
               "issuer", "address", "created", "updated"}
CLIENT_SHOW_KEYS = CLIENT_KEYS | {"balance", "accounts"}
BALANCE_KEYS = {"live", "fixed", "available", "low"}
CLIENT_LIST_KEYS = {"id", "name", "status", "currency", "mode", "live", "fixed", "available",
                    "payment_terms_days", "tags"}
ACCOUNT_KEYS = {"id", "client", "ip", "username", "ani", "tech_prefix", "rate_table",
                "dial_plan", "created", "password"}
AUDIT_KEYS = {"number", "at", "kind", "name", "action", "by", "before", "after"}
EXPORT_HEADER = ["id", "name", "status", "currency", "mode", "credit_limit", "live_balance",
                 "fixed_balance", "rate_table", "term_table", "payment_terms_days", "bill_by",
                 "max_call_length", "capacity", "timezone", "tags", "billing_email",
                 "low_balance_threshold"]

US = DialPlan("1", "1", "011")
UK = DialPlan("44", "0", "00")


# -- helpers

def import_tables(store: Store, tmp_path: Path) -> Decks:
    decks = Decks(store)
    deck = write(tmp_path / "deck.csv", DECK)
    for name, currency in TABLES.items():
        decks.import_file(deck, name, currency=currency)
    return decks


@pytest.fixture
def reg(store: Store, tmp_path: Path) -> Registry:
    """A registry over a store that holds the rate tables of TABLES."""
    import_tables(store, tmp_path)
    return Registry(store)


def make_data(path: Path, tmp_path: Path, fill: Any = None) -> Path:
    """A data directory with the rate tables (and what ``fill(registry)`` adds), closed."""
    with Store(path, StorageConfig(sync=False)) as store:
        import_tables(store, tmp_path)
        if fill is not None:
            fill(Registry(store))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "cli-data", tmp_path)


def _shared_fill(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR", rate_tables=[[None, "eur1"]]))
    reg.add_client(Client(0, "beta", "USD"))
    reg.add_account("acme", ip="10.0.0.1")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clients acme (EUR, eur1; account 1 on 10.0.0.1) and beta (USD); never changed."""
    tmp = tmp_path_factory.mktemp("shared")
    return make_data(tmp / "data", tmp, _shared_fill)


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands commit without fsync (RATER_SYNC=0): the tests kill no machine."""
    monkeypatch.setenv("RATER_SYNC", "0")


def run(*args: str, data: Path) -> CompletedProcess[str]:
    """``rater --data DATA ARGS...`` in this process (``run_cli`` starts a real one)."""
    argv = ["--data", str(data), *args]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return CompletedProcess(argv, code, out.getvalue(), err.getvalue())


#: The exit codes of the errors these commands raise (as EXIT_CODES has them).
EXIT = {"UNKNOWN_TABLE": 4, "UNKNOWN_CLIENT": 4, "UNKNOWN_ACCOUNT": 4, "CONFLICT": 5,
        "INVALID_ARGUMENT": 64, "INVALID_NUMBER": 64, "INVALID_INSTANT": 64,
        "FILE_ERROR": 74, "STORE_ERROR": 74}


def failed(proc: CompletedProcess[str], code: str) -> str:
    """Assert the one-line failure of error ``code``; return its message."""
    return expect_failure(proc, code, EXIT[code])


def cli_json(data: Path, *args: str) -> Any:
    return json.loads(ok(run(*args, "--json", data=data)))


def names(clients: list[Client]) -> list[str]:
    return [c.name for c in clients]


def audit_count(store: Store) -> int:
    return len(list(audit.records(store)))


def generation(reg: Registry) -> int:
    with reg.store.read() as txn:
        return reg.generation(txn)


def berlin(year: int, month: int, day: int) -> int:
    """Midnight starting that day in Europe/Berlin."""
    return int(datetime(year, month, day, tzinfo=ZoneInfo("Europe/Berlin")).timestamp())


# -- amounts

@pytest.mark.parametrize("text, nanos", [
    ("1.5", 1_500_000_000), (" 2 ", 2 * NANO), ("0.000000001", 1), ("0", 0), ("-0", 0),
    ("0.1e1", NANO), ("123456.789", 123_456_789_000_000),
])
def test_parse_amount(text: str, nanos: int) -> None:
    assert parse_amount(text, "x") == nanos


def test_parse_amount_negative_only_when_allowed() -> None:
    assert parse_amount("-2.25", "x", negative=True) == -2_250_000_000
    with pytest.raises(InvalidArgument, match=r"--credit-limit: '-1' is negative"):
        parse_amount("-1", "--credit-limit")


@pytest.mark.parametrize("text", ["", "abc", "1,5", "NaN", "Infinity", "1.0000000001",
                                  "1e20", "4611686018.427387904"])
def test_parse_amount_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_amount(text, "x")


def test_parse_amount_refuses_huge_exponent() -> None:
    with pytest.raises(InvalidArgument):
        parse_amount("1e999999999", "x")


def test_parse_amount_refuses_tiny_exponent() -> None:
    with pytest.raises(InvalidArgument):
        parse_amount("1e-999999999", "x")


@pytest.mark.parametrize("nanos, text", [
    (0, "0.00"), (1_500_000_000, "1.50"), (-1_500_000_000, "-1.50"), (10**15, "1000000.00"),
    (1_234_567, "0.001234567"), (NANO // 1000, "0.001"), (123_456_789_000_000, "123456.789"),
])
def test_show_amount(nanos: int, text: str) -> None:
    assert show_amount(nanos) == text
    assert parse_amount(text, "x", negative=True) == nanos


@pytest.mark.parametrize("nanos, text", [(1, "0.000000001"), (120, "0.00000012")])
def test_show_amount_tiny(nanos: int, text: str) -> None:
    assert show_amount(nanos) == text


# -- dial plans

@pytest.mark.parametrize("plan, raw, e164", [
    (US, "715-413-9112", "17154139112"),
    (US, "1 715 413 9112", "17154139112"),
    (US, "(715) 413.9112", "17154139112"),
    (US, "011 44 20 7946 0000", "442079460000"),
    (US, "+44 20 7946 0000", "442079460000"),
    (US, "+1 715 413 9112", "17154139112"),
    (UK, "020 7946 0000", "442079460000"),
    (UK, "20 7946 0000", "442079460000"),
    (UK, "00 1 715 413 9112", "17154139112"),
    (UK, "+44 (0)20", "44020"),
    (UK, "+44\t20 7946 0000", "442079460000"),
    (DialPlan("49"), "0049 30 123456", "4930123456"),      # defaults: no trunk prefix, 00
    (DialPlan("49"), "030 123456", "49030123456"),
])
def test_dial_plan_to_e164(plan: DialPlan, raw: str, e164: str) -> None:
    assert plan.to_e164(raw) == e164


@pytest.mark.parametrize("plan, raw", [
    (US, ""), (US, "+"), (US, "011"), (US, "1"), (US, "abc"), (US, "715-413-911x"),
    (US, "+44 20 7946 000a"), (US, "+" + "9" * 33), (US, "9" * 32), (US, "٣٣٣"),
    (UK, "0"), (UK, "00"), (UK, "+"), (UK, "020 7946 0000 ext 1"),
])
def test_dial_plan_refuses_bad_numbers(plan: DialPlan, raw: str) -> None:
    with pytest.raises(InvalidNumber):
        plan.to_e164(raw)


def test_dial_plan_longest_number() -> None:
    assert US.to_e164("+" + "9" * 32) == "9" * 32
    assert US.to_e164("9" * 31) == "1" + "9" * 31


@pytest.mark.parametrize("fields", [
    ("",), ("1a",), ("1234567",), ("４４",), ("+44",),
    ("44", "x", "00"), ("44", "0000000", "00"),
    ("44", "0", ""), ("44", "0", "0"), ("44", "0", "00+"), ("1", "011", "011"),
])
def test_dial_plan_refuses_bad_fields(fields: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument, match="dial plan"):
        DialPlan(*fields)


def test_dial_plan_json_round_trip() -> None:
    assert US.to_json() == {"country_code": "1", "national_prefix": "1",
                            "international_prefix": "011"}
    assert DialPlan.from_json(US.to_json()) == US
    assert DialPlan.from_json(None) is None
    assert str(DialPlan("49")) == ("country code 49, national prefix (none), "
                                   "international prefix 00")


@st.composite
def dial_plans(draw: st.DrawFn) -> DialPlan:
    country = draw(st.text("0123456789", min_size=1, max_size=3))
    national = draw(st.text("0123456789", max_size=2))
    international = draw(st.text("0123456789", min_size=2, max_size=4))
    assume(national != international)
    return DialPlan(country, national, international)


PLANS = st.one_of(st.sampled_from([US, UK, DialPlan("49"), DialPlan("7", "8", "810")]),
                  dial_plans())
DIGITS = st.text("0123456789", min_size=1, max_size=15)


@settings(max_examples=300, deadline=None)
@given(plan=PLANS, d=DIGITS)
def test_e164_and_international_numbers_keep_their_digits(plan: DialPlan, d: str) -> None:
    assume(not d.startswith(plan.international_prefix))
    assume(not (plan.national_prefix and d.startswith(plan.national_prefix)))
    assert plan.to_e164("+" + d) == d
    assert plan.to_e164(plan.international_prefix + d) == d
    assert plan.to_e164(f"{plan.international_prefix} {d[:2]}-{d[2:]}".rstrip("-")) == d


@settings(max_examples=300, deadline=None)
@given(plan=PLANS, n=DIGITS)
def test_national_numbers_get_the_country_code(plan: DialPlan, n: str) -> None:
    assume(not n.startswith(plan.international_prefix))
    assume(not (plan.national_prefix and n.startswith(plan.national_prefix)))
    assume(not (plan.national_prefix + n).startswith(plan.international_prefix))
    assert plan.to_e164(n) == plan.country_code + n
    assert plan.to_e164(plan.national_prefix + n) == plan.country_code + n


# -- clients in the registry

def test_add_edit_rename_delete_client(reg: Registry) -> None:
    acme = reg.add_client(Client(0, "acme", "EUR", rate_tables=[[None, "eur1"]]))
    beta = reg.add_client(Client(0, "beta", "USD", mode="postpaid", tags=["vip"]))
    assert (acme.id, beta.id) == (1, 2)
    assert acme.created > 0 and acme.updated == acme.created
    assert reg.client("acme") == acme
    assert (beta.prepaid, beta.vendor, acme.prepaid) == (False, False, True)
    assert names(reg.clients()) == ["acme", "beta"]
    assert names(reg.clients(tag="vip")) == ["beta"]

    edited = reg.edit_client("acme", credit_limit=parse_amount("50", "x"),
                             billing_email="billing@acme.example", capacity=30)
    assert (edited.credit_limit, edited.capacity) == (50 * NANO, 30)
    assert reg.client("acme").billing_email == "billing@acme.example"

    reg.add_account("acme", username="alice")
    gone = reg.delete_client("acme")
    assert gone.status == "deleted"
    assert reg.client("acme").status == "deleted"                  # the record stays
    assert reg.client("acme").credit_limit == 50 * NANO
    assert [a.username for a in reg.accounts("acme")] == ["alice"]
    assert names(reg.clients()) == ["acme", "beta"]
    assert names(reg.clients(status="active")) == ["beta"]
    assert names(reg.clients(status="deleted")) == ["acme"]
    with pytest.raises(InvalidArgument, match="already deleted"):
        reg.delete_client("acme")
    # A deleted client can be brought back.
    assert reg.edit_client("acme", status="active").status == "active"


def test_rename_client(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR", credit_limit=50 * NANO))
    reg.add_account("acme", username="alice")
    renamed = reg.edit_client("acme", name="Acme Telecom")
    assert renamed.id == 1
    with pytest.raises(UnknownClient, match="no client named 'acme'"):
        reg.client("acme")
    assert reg.client("Acme Telecom").credit_limit == 50 * NANO
    assert [a.username for a in reg.accounts("Acme Telecom")] == ["alice"]
    # The old name is free again: a new client, a new id.
    assert reg.add_client(Client(0, "acme", "EUR")).id == 2


def test_rename_onto_another_client_conflicts(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_client(Client(0, "beta", "EUR"))
    with pytest.raises(Conflict, match="a client named 'acme' already exists"):
        reg.edit_client("beta", name="acme")
    assert names(reg.clients()) == ["acme", "beta"]


@pytest.mark.parametrize("bad", ["", " lead", "a,b", "x" * 81])
def test_rename_refuses_bad_names(reg: Registry, bad: str) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    with pytest.raises(InvalidArgument, match="client name"):
        reg.edit_client("acme", name=bad)


def test_duplicate_names_conflict(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_client(Client(0, "beta", "EUR"))
    before = audit_count(reg.store)
    with pytest.raises(Conflict, match="a client named 'acme' already exists"):
        reg.add_client(Client(0, "acme", "USD"))
    assert names(reg.clients()) == ["acme", "beta"]
    assert reg.client("acme").currency == "EUR"
    assert audit_count(reg.store) == before


def test_rate_tables_must_exist_and_share_the_currency(reg: Registry) -> None:
    with pytest.raises(Conflict, match="rate table eur1 is in EUR, client x in USD"):
        reg.add_client(Client(0, "x", "USD", rate_tables=[[None, "eur1"]]))
    with pytest.raises(Conflict, match="usd1 is in USD"):
        reg.add_client(Client(0, "x", "EUR", term_table="usd1"))
    with pytest.raises(UnknownTable, match="no rate table named 'nosuch'"):
        reg.add_client(Client(0, "x", "EUR", rate_tables=[[None, "nosuch"]]))
    assert reg.clients() == []
    assert generation(reg) == 0

    acme = reg.add_client(Client(0, "acme", "EUR", rate_tables=[[None, "eur1"]],
                                 term_table="eur2"))
    assert acme.vendor
    with pytest.raises(Conflict):
        reg.edit_client("acme", rate_tables=[[None, "usd1"]])
    with pytest.raises(Conflict):
        reg.edit_client("acme", currency="USD")          # its tables are in EUR
    with pytest.raises(UnknownTable):
        reg.edit_client("acme", term_table="nosuch")
    assert reg.client("acme") == acme
    assert reg.edit_client("acme", currency="USD", rate_tables=[[None, "usd1"]],
                           term_table=None).currency == "USD"


def test_currency_is_fixed_once_the_journal_has_entries(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    Journal(reg.store).post("acme", "manual-payment", "10")
    with pytest.raises(Conflict, match="journal entries in EUR"):
        reg.edit_client("acme", currency="USD")
    assert reg.client("acme").currency == "EUR"


def test_rate_table_at() -> None:
    t = berlin(2027, 1, 1)
    c = Client(1, "acme", "EUR", rate_tables=[[None, "eur1"], [t, "eur2"], [t + 100, "eur3"]])
    assert c.rate_table_at(0) == "eur1"
    assert c.rate_table_at(t - 1) == "eur1"
    assert c.rate_table_at(t) == "eur2"
    assert c.rate_table_at(t + 99) == "eur2"
    assert c.rate_table_at(t + 100) == "eur3"
    later = Client(1, "acme", "EUR", rate_tables=[[t, "eur2"]])
    assert later.rate_table_at(t - 1) is None
    assert later.rate_table_at(t) == "eur2"
    assert Client(1, "acme", "EUR").rate_table_at(t) is None


def test_dated_rate_tables_are_stored_and_checked(reg: Registry) -> None:
    t = berlin(2027, 1, 1)
    reg.add_client(Client(0, "acme", "EUR", rate_tables=[[None, "eur1"], [t, "eur2"]]))
    assert reg.client("acme").rate_table_at(t - 1) == "eur1"
    assert reg.client("acme").rate_table_at(t) == "eur2"
    with pytest.raises(InvalidArgument, match="same date"):
        reg.edit_client("acme", rate_tables=[[None, "eur1"], [t, "eur2"], [t, "eur3"]])
    with pytest.raises(InvalidArgument, match="only the first"):
        reg.edit_client("acme", rate_tables=[[t, "eur2"], [None, "eur1"]])
    with pytest.raises(InvalidArgument, match="same date"):      # not in date order
        reg.edit_client("acme", rate_tables=[[t + 5, "eur2"], [t, "eur3"]])
    with pytest.raises(Conflict):
        reg.edit_client("acme", rate_tables=[[None, "eur1"], [t, "usd1"]])
    assert reg.client("acme").rate_tables == [[None, "eur1"], [t, "eur2"]]


BAD_SETTINGS = [
    ("capacity", -1), ("billing_email", "not-an-address"), ("billing_email", "a@b"),
    ("billing_email", "a b@c.de"), ("currency", "EURO"), ("currency", "eur"),
    ("currency", "E1R"), ("timezone", "Mars/Olympus_Mons"), ("status", "paused"),
    ("mode", "credit"), ("bill_by", "answer"), ("payment_terms_days", -1),
    ("payment_terms_days", 3651), ("max_call_length", 0), ("max_call_length", 86401),
    ("tags", ["a,b"]), ("tags", [" a"]), ("tags", [""]), ("name", ""), ("name", " lead"),
    ("name", "a,b"), ("name", "x" * 81), ("name", "tab\there"),
    ("billing_day", 0), ("billing_day", 29), ("invoice_template", "fancy"),
    ("taxes", [["VAT", "101"]]), ("taxes", [["VAT", "-1"]]), ("taxes", [["VAT", "21.00001"]]),
    ("taxes", [["VAT", "x"]]), ("taxes", [["VAT", "NaN"]]), ("taxes", [["", "5"]]),
    ("taxes", [["VAT", "1e1"]]), ("taxes", [["VAT", " 5"]]), ("taxes", [["VAT", "+5"]]),
    ("taxes", [["VAT", "-0"]]), ("taxes", [["VAT", "1_0"]]), ("taxes", [["VAT", "\u0661"]]),
    ("taxes", [["VAT", "5."]]), ("taxes", [["VAT", "100.0001"]]),
    ("taxes", [["VAT", "21"], ["VAT", "5"]]), ("vat_id", "123"), ("vat_id", "de123456789"),
    ("reverse_charge", True),
    ("sepa_mandate", {"iban": "DE89370400440532013001", "bic": "COBADEFFXXX", "id": "M1",
                      "date": "2026-01-15"}),
    ("sepa_mandate", {"iban": "DE89370400440532013000", "bic": "COBADE", "id": "M1",
                      "date": "2026-01-15"}),
    ("sepa_mandate", {"iban": "DE89370400440532013000", "bic": "COBADEFF", "id": "M_1",
                      "date": "2026-01-15"}),
    ("sepa_mandate", {"iban": "DE89370400440532013000", "bic": "COBADEFF", "id": "M1",
                      "date": "20260115"}),
    ("sepa_mandate", {"iban": "DE89370400440532013000", "bic": "COBADEFF", "id": "M1",
                      "date": "2026-02-30"}),
    ("sepa_mandate", {"iban": "DE89370400440532013000", "bic": "COBADEFF", "id": "M1"}),
    ("issuer", ""), ("issuer", "A,B"), ("address", "  "), ("address", "x" * 501),
]

VALID_IBANS = ["DE89370400440532013000", "GB82WEST12345698765432",
               "FR1420041010050500013M02606", "NL91ABNA0417164300", "BE68539007547034"]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_an_iban_with_any_one_digit_changed_is_refused(iban: str) -> None:
    # What MOD 97-10 guarantees: every single substitution of a digit by a digit is seen
    # (a letter is two digits to it; which places hold letters is the country's rule).
    assert iban_valid(iban)
    for at in range(2, len(iban)):
        if not iban[at].isdigit():
            continue
        for ch in "0123456789":
            if ch != iban[at]:
                assert not iban_valid(iban[:at] + ch + iban[at + 1:]), (at, ch)
    assert not iban_valid(iban.lower())
    assert not iban_valid(iban[:2] + "00" + iban[4:])
    assert not iban_valid(iban[:4] + " " + iban[4:])


def test_invoice_settings_are_kept_and_shown(reg: Registry) -> None:
    mandate = {"iban": "FR1420041010050500013M02606", "bic": "BNPAFRPPXXX",
               "id": "RUM-2026/001", "date": "2026-01-15"}
    reg.add_client(Client(0, "acme", "EUR", billing_day=15, invoice_template="extended",
                          taxes=[["VAT", "20"], ["Levy", "0.25"]], vat_id="FR12345678901",
                          reverse_charge=True, sepa_mandate=mandate))
    got = reg.client("acme")
    assert (got.billing_day, got.invoice_template, got.taxes, got.vat_id, got.reverse_charge,
            got.sepa_mandate) == (15, "extended", [["VAT", "20"], ["Levy", "0.25"]],
                                  "FR12345678901", True, mandate)
    assert got.to_display()["sepa_mandate"] == mandate
    # A client stored before these settings existed reads with their defaults.
    old = {k: v for k, v in got.to_json().items()
           if k not in ("billing_day", "invoice_template", "taxes", "reverse_charge", "vat_id",
                        "sepa_mandate")}
    assert Client.from_json(old).billing_day == 1 and Client.from_json(old).taxes == []


@pytest.mark.parametrize("field, value", BAD_SETTINGS)
def test_bad_settings_store_nothing(reg: Registry, field: str, value: Any) -> None:
    start = audit_count(reg.store)
    settings_ = {"name": "acme", "currency": "EUR", field: value}
    with pytest.raises(InvalidArgument):
        reg.add_client(Client(id=0, **settings_))
    assert reg.clients() == []
    assert generation(reg) == 0
    assert audit_count(reg.store) == start

    acme = reg.add_client(Client(0, "acme", "EUR"))
    if field == "name":
        return                                   # renames: test_rename_refuses_bad_names
    gen = generation(reg)
    with pytest.raises(InvalidArgument):
        reg.edit_client("acme", **{field: value})
    assert reg.client("acme") == acme
    assert generation(reg) == gen
    assert audit_count(reg.store) == start + 1


def test_edit_refuses_unknown_settings_and_no_change(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    with pytest.raises(InvalidArgument, match="no client setting colour"):
        reg.edit_client("acme", colour="red")
    with pytest.raises(InvalidArgument, match="no client setting id"):
        reg.edit_client("acme", id=7)
    with pytest.raises(InvalidArgument, match="nothing to change"):
        reg.edit_client("acme", currency="EUR")
    with pytest.raises(UnknownClient):
        reg.edit_client("nobody", currency="USD")


def test_client_name_limits(reg: Registry) -> None:
    assert reg.add_client(Client(0, "x" * 80, "EUR")).name == "x" * 80
    assert reg.add_client(Client(0, "Ünïcode Telecom GmbH", "EUR")).id == 2


# -- accounts

def test_account_identifiers(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    a = reg.add_account("acme", ip=" 10.0.0.1 ")
    assert (a.id, a.client, a.ip) == (1, 1, "10.0.0.1")
    assert a.identifier() == "ip 10.0.0.1"
    assert reg.add_account("acme", ip="10.0.0.2/32").ip == "10.0.0.2"
    assert reg.add_account("acme", ip="192.168.0.0/24").ip == "192.168.0.0/24"
    b = reg.add_account("acme", ip="192.168.0.0/24", tech_prefix="99")
    assert b.identifier() == "ip 192.168.0.0/24, tech prefix 99"
    assert reg.add_account("acme", ip="2001:DB8::/32").ip == "2001:db8::/32"
    assert reg.add_account("acme", ip="2001:db8::1/128").ip == "2001:db8::1"
    assert reg.add_account("acme", username="alice").identifier() == "username alice"
    assert reg.add_account("acme", ani="+44 20 7946 0000").ani == "442079460000"
    assert reg.add_account("acme", ani="0049 30 123456").ani == "4930123456"
    c = reg.add_account("acme", ani="715-413-9112", dial_plan=US)
    assert c.ani == "17154139112"
    assert c.dial_plan == US.to_json() and c.plan == US
    t = reg.add_account("acme", tech_prefix="#12*", rate_table="eur2")
    assert (t.tech_prefix, t.rate_table) == ("#12*", "eur2")
    assert t.identifier() == "tech prefix #12*"
    assert [x.id for x in reg.accounts("acme")] == list(range(1, 12))
    assert reg.account(11) == t


@pytest.mark.parametrize("kw, message", [
    ({}, "needs an identifier"),
    ({"ip": "10.0.0.1", "username": "u"}, "not ip and username"),
    ({"username": "u", "ani": "123"}, "not username and ani"),
    ({"ani": "123", "tech_prefix": "9"}, "not ani and tech prefix"),
    ({"username": "u", "tech_prefix": "9"}, "not username and tech prefix"),
    ({"ip": "10.0.0.1", "username": "u", "tech_prefix": "9"}, "one identifier per account"),
    ({"username": "a b"}, "no spaces"),
    ({"username": ""}, "not empty"),
    ({"tech_prefix": "12a"}, "tech prefix"),
    ({"tech_prefix": ""}, "tech prefix"),
    ({"tech_prefix": "1" * 17}, "tech prefix"),
    ({"ip": "10.0.0.5/24"}, "host bits"),
    ({"ip": "300.0.0.1"}, "ip '300.0.0.1'"),
    ({"ip": ""}, "ip"),
    ({"ani": "abc"}, "not a dialled number"),
    ({"ani": "1", "dial_plan": US}, "not a dialled number"),
])
def test_bad_accounts_store_nothing(reg: Registry, kw: dict[str, Any], message: str) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    gen = generation(reg)
    with pytest.raises(InvalidArgument, match=message):
        reg.add_account("acme", **kw)
    assert reg.accounts() == []
    assert generation(reg) == gen


def test_one_identifier_one_account(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_client(Client(0, "beta", "EUR"))
    reg.add_account("acme", ip="10.0.0.1")                            # 1
    reg.add_account("acme", username="alice")                         # 2
    reg.add_account("acme", ani="442079460000")                       # 3
    reg.add_account("acme", tech_prefix="99")                         # 4
    reg.add_account("acme", ip="10.0.0.0/24", tech_prefix="99")       # 5
    reg.add_account("acme", ip="2001:db8::1")                         # 6
    gen = generation(reg)
    taken: list[tuple[dict[str, Any], int]] = [
        ({"ip": "10.0.0.1"}, 1), ({"ip": "10.0.0.1/32"}, 1), ({"username": "alice"}, 2),
        ({"ani": "+44 20 7946 0000"}, 3), ({"ani": "020 7946 0000", "dial_plan": UK}, 3),
        ({"tech_prefix": "99"}, 4), ({"ip": "10.0.0.0/24", "tech_prefix": "99"}, 5),
        ({"ip": "2001:DB8:0::1"}, 6)]
    for kw, aid in taken:
        with pytest.raises(Conflict, match=f"already recognises account {aid} of client acme")\
                as exc:
            reg.add_account("beta", **kw)
        assert exc.value.hint == f"`rater account delete {aid}` first"
    assert generation(reg) == gen
    assert reg.accounts("beta") == []

    # Other identifiers that look alike are other accounts.
    assert reg.add_account("beta", ip="10.0.0.0/24").id == 7           # no tech prefix
    assert reg.add_account("beta", ip="10.0.0.0/24", tech_prefix="991").id == 8
    assert reg.add_account("beta", ip="10.0.0.0/25").id == 9
    assert reg.add_account("beta", tech_prefix="991").id == 10
    assert reg.add_account("beta", username="Alice").id == 11


def test_account_delete_frees_its_identifier(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_client(Client(0, "beta", "EUR"))
    a = reg.add_account("acme", ip="10.0.0.0/24", tech_prefix="5")
    reg.add_account("acme", username="keep")
    gen = generation(reg)
    assert reg.delete_account(a.id) == a
    assert generation(reg) == gen + 1
    with pytest.raises(UnknownAccount, match="no account with id 1"):
        reg.account(a.id)
    with pytest.raises(UnknownAccount):
        reg.delete_account(a.id)
    b = reg.add_account("beta", ip="10.0.0.0/24", tech_prefix="5")
    assert reg.accounts("beta") == [b]
    assert [x.username for x in reg.accounts("acme")] == ["keep"]


def test_account_ids_are_never_reused(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_account("acme", username="one")
    two = reg.add_account("acme", username="two")
    reg.delete_account(two.id)
    assert reg.add_account("acme", username="three").id == 3


def test_account_needs_a_live_client_and_a_table_in_its_currency(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_client(Client(0, "gone", "EUR"))
    reg.add_account("gone", username="old")
    reg.delete_client("gone")
    gen = generation(reg)
    with pytest.raises(Conflict, match="client gone is deleted"):
        reg.add_account("gone", username="new")
    with pytest.raises(UnknownClient):
        reg.add_account("nobody", username="new")
    with pytest.raises(Conflict, match="rate table usd1 is in USD"):
        reg.add_account("acme", username="new", rate_table="usd1")
    with pytest.raises(UnknownTable):
        reg.add_account("acme", username="new", rate_table="nosuch")
    assert generation(reg) == gen
    assert [a.username for a in reg.accounts()] == ["old"]
    with pytest.raises(UnknownClient):
        reg.accounts("nobody")


# -- matching calls to accounts

@pytest.fixture
def index_reg(reg: Registry) -> Registry:
    for name in ("a", "b", "d"):
        reg.add_client(Client(0, name, "EUR"))
    reg.add_account("a", username="alice")                              # 1
    reg.add_account("a", ani="+44 20 7946 0000")                        # 2
    reg.add_account("b", ip="10.0.0.0/8")                               # 3
    reg.add_account("a", ip="10.1.0.0/16", tech_prefix="99")            # 4
    reg.add_account("b", ip="10.1.0.0/16", tech_prefix="991")           # 5
    reg.add_account("b", ip="10.1.0.0/16")                              # 6
    reg.add_account("a", ip="10.1.2.3", tech_prefix="7")                # 7
    reg.add_account("a", tech_prefix="5555")                            # 8
    reg.add_account("b", tech_prefix="55")                              # 9
    reg.add_account("a", ip="2001:db8::/32")                            # 10
    reg.add_account("b", ip="2001:db8:1::/48", tech_prefix="12")        # 11
    reg.add_account("d", username="dave")                               # 12
    reg.add_account("d", ip="192.0.2.0/24")                             # 13
    reg.delete_client("d")
    return reg


@pytest.mark.parametrize("call, aid, rest", [
    # 1. the username comes first, the number keeps its digits
    ({"username": "alice", "ani": "442079460000", "ip": "10.1.0.5", "number": "991234"},
     1, "991234"),
    # 2. then the ANI (as written, or normalised)
    ({"username": "nobody", "ani": "442079460000", "ip": "10.1.0.5", "number": "991234"},
     2, "991234"),
    ({"ani": "+44 20 7946 0000", "ip": "10.1.0.5", "number": "991234"}, 2, "991234"),
    ({"ani": "0044 20 7946 0000", "number": "5"}, 2, "5"),
    # 3. the longest block holding the address, the longest tech prefix first
    ({"ip": "10.1.0.5", "ani": "4930", "number": "9912345"}, 5, "2345"),
    ({"ip": "10.1.0.5", "number": "99345"}, 4, "345"),
    ({"ip": "10.1.255.255", "number": "4912345"}, 6, "4912345"),
    ({"ip": "10.1.0.5", "number": "9"}, 6, "9"),
    ({"ip": "10.2.0.1", "number": "9912345"}, 3, "9912345"),
    ({"ip": "10.1.2.3", "number": "7123"}, 7, "123"),
    ({"ip": "10.1.2.4", "number": "7123"}, 6, "7123"),
    # a block with accounts, none of which takes the number: the tech prefix alone
    ({"ip": "10.1.2.3", "number": "5555123"}, 8, "123"),
    ({"ip": "10.1.2.3", "number": "99123"}, None, "99123"),
    # 4. the longest tech prefix alone
    ({"ip": "203.0.113.9", "number": "5555123"}, 8, "123"),
    ({"number": "55123"}, 9, "123"),
    ({"ip": "not-an-address", "number": "555"}, 9, "5"),
    ({"number": "5123"}, None, "5123"),
    ({"number": ""}, None, ""),
    # IPv6
    ({"ip": "2001:db8:1::5", "number": "12345"}, 11, "345"),
    ({"ip": "2001:DB8:1:0::5", "number": "12345"}, 11, "345"),
    ({"ip": "2001:db8:2::1", "number": "12345"}, 10, "12345"),
    ({"ip": "2001:db8:1::5", "number": "345"}, None, "345"),
    ({"ip": "2001:db9::1", "number": "12345"}, None, "12345"),
])
def test_account_index_find(index_reg: Registry, call: dict[str, str], aid: int | None,
                            rest: str) -> None:
    idx = AccountIndex(index_reg.store)
    account, number = idx.find(**call)
    assert (None if account is None else account.id, number) == (aid, rest)


def test_account_index_match(index_reg: Registry) -> None:
    idx = AccountIndex(index_reg.store)
    m = idx.match(ip="10.1.0.5", number="9912345")
    assert m.account is not None and m.client is not None
    assert (m.account.id, m.client.name, m.reason, m.number) == (5, "b", None, "2345")

    m = idx.match(username="dave", ip="10.1.0.5", number="9912345")
    assert m.account is not None and m.client is not None
    assert (m.account.id, m.client.name, m.reason, m.number) == (12, "d", "client-deleted",
                                                                 "9912345")
    m = idx.match(ip="192.0.2.77", number="4930")
    assert (m.account.id if m.account else None, m.reason) == (13, "client-deleted")

    m = idx.match(ip="203.0.113.9", username="nobody", ani="123", number="4930")
    assert (m.account, m.client, m.reason, m.number) == (None, None, "no-account", "4930")


def test_account_index_reads_an_ani_with_the_accounts_dial_plan(reg: Registry) -> None:
    reg.add_client(Client(0, "a", "EUR"))
    a = reg.add_account("a", ani="715-413-9112", dial_plan=US)
    assert a.ani == "17154139112"
    idx = AccountIndex(reg.store)
    assert idx.find(ani="+1 715 413 9112", number="4930")[0] == a      # E.164: matches today
    assert idx.find(ani="715-413-9112", number="4930")[0] == a         # as the switch sends it


def test_account_index_plan(reg: Registry) -> None:
    reg.add_client(Client(0, "a", "EUR"))
    with_plan = reg.add_account("a", username="us", dial_plan=US)
    without = reg.add_account("a", username="e164")
    idx = AccountIndex(reg.store)
    assert idx.plan(with_plan) == US
    assert idx.plan(without) is None


def test_account_index_knows_when_it_is_stale(reg: Registry) -> None:
    reg.add_client(Client(0, "a", "EUR"))
    idx = AccountIndex(reg.store)
    assert not idx.stale()
    assert idx.find(username="alice") == (None, "")
    a = reg.add_account("a", username="alice")
    assert idx.stale()
    assert idx.find(username="alice") == (None, "")            # a snapshot
    idx = AccountIndex(reg.store)
    assert not idx.stale()
    assert idx.find(username="alice")[0] == a

    for change in (lambda: reg.edit_client("a", capacity=5),
                   lambda: reg.add_client(Client(0, "b", "EUR")),
                   lambda: reg.delete_account(a.id),
                   lambda: reg.delete_client("a")):
        idx = AccountIndex(reg.store)
        assert not idx.stale()
        change()
        assert idx.stale()

    # A refused change leaves the index current.
    idx = AccountIndex(reg.store)
    with pytest.raises(Conflict):
        reg.add_client(Client(0, "b", "EUR"))
    assert not idx.stale()


# -- the audit log

def test_audit_log_records_every_change(store: Store, tmp_path: Path) -> None:
    decks = import_tables(store, tmp_path)
    reg = Registry(store)
    start = audit_count(store)
    assert start == len(TABLES)                          # one import per table

    reg.add_client(Client(0, "acme", "EUR", rate_tables=[[None, "eur1"]]))
    reg.edit_client("acme", credit_limit=5 * NANO)
    a = reg.add_account("acme", ip="10.0.0.1")
    reg.delete_account(a.id)
    reg.delete_client("acme")
    decks.import_file(write(tmp_path / "more.csv", DECK + "33,France,0.01,60/60\n"), "eur2")
    decks.rollback("eur2")

    found = list(audit.records(store))[start:]
    # The deletion's action is checked by test_audit_log_names_a_client_deletion.
    assert found[4].action == "delete"
    assert [(r.kind, r.name, r.action) for r in found[:4] + found[5:]] == [
        ("client", "acme", "add"),
        ("client", "acme", "edit"),
        ("account", "1", "add"),
        ("account", "1", "delete"),
        ("deck", "eur2", "import"),
        ("deck", "eur2", "rollback of version 2"),
    ]
    assert [r.number for r in found] == list(range(start + 1, start + 8))
    add, edit, acc_add, acc_del, delete, imp, back = found
    assert add.before is None and add.after["name"] == "acme"
    assert add.after["rate_tables"] == [[None, "eur1"]]
    assert (edit.before["credit_limit"], edit.after["credit_limit"]) == (0, 5 * NANO)
    assert acc_add.before is None and acc_add.after["ip"] == "10.0.0.1"
    assert acc_del.before["ip"] == "10.0.0.1" and acc_del.after is None
    assert (delete.before["status"], delete.after["status"]) == ("active", "deleted")
    assert imp.before["version"] == 1 and imp.after["version"] == 2
    assert imp.after["changes"]["added"] == 1
    assert (back.before["version"], back.after["version"]) == (2, 1)
    assert all(r.at > 0 and r.by for r in found)

    assert [r.action for r in audit.records(store, kind="account")] == ["add", "delete"]
    assert [r.action for r in audit.records(store, name="acme")][:2] == ["add", "edit"]
    assert len(list(audit.records(store, name="acme"))) == 3
    assert len(list(audit.records(store, kind="deck"))) == len(TABLES) + 2


def test_audit_log_names_a_client_deletion(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.delete_client("acme")
    assert [r.action for r in audit.records(reg.store, kind="client")] == ["add", "delete"]


def test_refused_changes_leave_no_audit_record(reg: Registry) -> None:
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_account("acme", username="alice")
    n = audit_count(reg.store)
    for bad in (lambda: reg.add_client(Client(0, "acme", "EUR")),
                lambda: reg.edit_client("acme", currency="USD", rate_tables=[[None, "eur1"]]),
                lambda: reg.add_account("acme", username="alice"),
                lambda: reg.delete_account(99)):
        with pytest.raises((Conflict, UnknownAccount)):
            bad()
    assert audit_count(reg.store) == n


def test_audit_cli(tmp_path: Path) -> None:
    def fill(reg: Registry) -> None:
        reg.add_client(Client(0, "acme", "EUR"))
        reg.edit_client("acme", capacity=3)
        a = reg.add_account("acme", username="alice")
        reg.delete_account(a.id)
        reg.delete_client("acme")

    data = make_data(tmp_path / "data", tmp_path, fill)
    rows = cli_json(data, "audit")
    assert all(set(r) == AUDIT_KEYS for r in rows)
    assert [(r["kind"], r["name"], r["action"]) for r in rows[:8]] == [
        ("deck", t, "import") for t in TABLES] + [
        ("client", "acme", "add"), ("client", "acme", "edit"), ("account", "1", "add"),
        ("account", "1", "delete")]
    assert (rows[8]["kind"], rows[8]["name"], rows[8]["action"]) == (
        "client", "acme", "delete")                                    # the deletion
    assert len(rows) == 9
    assert [r["number"] for r in rows] == list(range(1, 10))
    assert rows[5]["before"]["capacity"] is None and rows[5]["after"]["capacity"] == 3
    assert rows[8]["after"]["status"] == "deleted"

    clients = cli_json(data, "audit", "--kind", "client")
    assert [(r["name"], r["action"]) for r in clients[:2]] == [("acme", "add"), ("acme", "edit")]
    assert len(clients) == 3 and clients[2]["after"]["status"] == "deleted"
    accounts = cli_json(data, "audit", "--kind", "account", "--name", "1")
    assert [r["action"] for r in accounts] == ["add", "delete"]
    assert cli_json(data, "audit", "--kind", "nas") == []

    text = ok(run("audit", "--kind", "client", data=data))
    lines = text.splitlines()
    assert lines[0].split() == ["#", "WHEN", "(UTC)", "BY", "KIND", "NAME", "ACTION", "CHANGED"]
    assert len(lines) == 4
    assert lines[2].split()[-1] == "capacity"       # what the edit changed


# -- backups

def test_backup_while_open(store: Store, tmp_path: Path) -> None:
    import_tables(store, tmp_path)
    reg = Registry(store)
    reg.add_client(Client(0, "acme", "EUR", rate_tables=[[None, "eur1"]]))
    reg.add_account("acme", ip="10.0.0.0/24")
    dest = store.backup(tmp_path / "copy")
    assert dest == tmp_path / "copy" / "lmdb"
    reg.add_client(Client(0, "later", "EUR"))              # after the copy: not in it
    with Store(tmp_path / "copy", create=False) as copy:
        creg = Registry(copy)
        assert names(creg.clients()) == ["acme"]
        assert creg.client("acme") == reg.client("acme")
        assert [a.ip for a in creg.accounts("acme")] == ["10.0.0.0/24"]
        assert Decks(copy).table("eur1").currency == "EUR"
        assert len(list(audit.records(copy))) == len(TABLES) + 2


def test_backup_cli(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", tmp_path, _shared_fill)
    copy = tmp_path / "copy"
    out = ok(run_cli("backup", str(copy), data=data))              # as a user runs it
    assert f"use it with --data {copy}" in out
    assert (copy / "lmdb").is_dir()
    listed = json.loads(ok(run_cli("client", "list", "--json", data=copy)))
    assert listed == cli_json(data, "client", "list")
    assert [c["name"] for c in listed] == ["acme", "beta"]
    assert cli_json(copy, "account", "list") == cli_json(data, "account", "list")
    assert cli_json(copy, "client", "show", "acme")["rate_tables"] == [
        {"from": None, "table": "eur1"}]

    # Into a directory that is not empty: refused, nothing written there.
    proc = run_cli("backup", str(copy), data=data)
    assert failed(proc, "STORE_ERROR") == f"{copy} is not empty"
    assert proc.stderr.splitlines()[1:] == ["rater: hint: back up into a new directory"]
    other = tmp_path / "other"
    other.mkdir()
    write(other / "notes.txt", "keep me")
    failed(run("backup", str(other), data=data), "STORE_ERROR")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]

    # An empty directory is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    ok(run("backup", str(empty), data=data))
    assert [c["name"] for c in cli_json(empty, "client", "list")] == ["acme", "beta"]

    # No data to back up.
    failed(run("backup", str(tmp_path / "x"), data=tmp_path / "none"), "STORE_ERROR")


def test_backup_onto_a_file_fails_cleanly(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", tmp_path)
    target = write(tmp_path / "file", "x")
    proc = run_cli("backup", str(target), data=data)
    assert proc.returncode == EXIT["FILE_ERROR"] == EXIT_CODES["FILE_ERROR"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rater: error: ")
    assert target.read_text() == "x"


# -- the client commands

def test_client_add_takes_the_currency_from_the_rate_table(data: Path) -> None:
    out = ok(run("client", "add", "acme", "--rate-table", "eur1", data=data))
    assert out == "Added client acme (id 1, prepaid, EUR)\n"
    out = ok(run("client", "add", "carrier", "--term-table", "usd1", "--postpaid",
                     data=data))
    assert out == "Added client carrier (id 2, postpaid, USD)\n"
    out = ok(run("client", "add", "gamma", "--currency", "gbp", data=data))
    assert out == "Added client gamma (id 3, prepaid, GBP)\n"

    acme = cli_json(data, "client", "show", "acme")
    assert set(acme) == CLIENT_SHOW_KEYS
    assert (acme["currency"], acme["rate_tables"], acme["term_table"]) == (
        "EUR", [{"from": None, "table": "eur1"}], None)
    carrier = cli_json(data, "client", "show", "carrier")
    assert (carrier["currency"], carrier["mode"], carrier["term_table"], carrier["rate_tables"]
            ) == ("USD", "postpaid", "usd1", [])
    assert carrier["balance"] == {"live": "0.00", "fixed": "0.00", "available": None,
                                  "low": False}

    assert "--currency is needed" in failed(run("client", "add", "x", data=data),
                                            "INVALID_ARGUMENT")
    assert "no rate table named 'nosuch'" in failed(
        run("client", "add", "x", "--rate-table", "nosuch", data=data), "UNKNOWN_TABLE")
    assert failed(run("client", "add", "x", "--currency", "USD", "--rate-table", "eur1",
                          data=data), "CONFLICT") == "rate table eur1 is in EUR, client x in USD"
    assert "already exists" in failed(
        run("client", "add", "acme", "--currency", "EUR", data=data), "CONFLICT")
    assert [c["name"] for c in cli_json(data, "client", "list")] == ["acme", "carrier", "gamma"]


def test_client_edit_and_show(data: Path) -> None:
    ok(run("client", "add", "acme", "--rate-table", "eur1", "--timezone", "Europe/Berlin",
               "--credit-limit", "50", "--tag", "vip", data=data))
    out = ok(run("client", "edit", "acme", "--capacity", "30", "--billing-email",
                     "bill@acme.example", "--low-balance", "100", "--tag", "gold", "--untag",
                     "vip", "--payment-terms", "15", "--bill-by", "disconnect",
                     "--max-call-length", "3600", data=data))
    assert out.startswith("Changed client acme: ")
    assert set(out.removeprefix("Changed client acme: ").strip().split(", ")) == {
        "capacity", "billing_email", "low_balance_threshold", "tags", "payment_terms_days",
        "bill_by", "max_call_length"}

    with Store(data) as store:
        Journal(store).post("acme", "manual-payment", "10")
    d = cli_json(data, "client", "show", "acme")
    assert set(d) == CLIENT_SHOW_KEYS
    assert (d["id"], d["name"], d["status"], d["currency"], d["mode"], d["timezone"]) == (
        1, "acme", "active", "EUR", "prepaid", "Europe/Berlin")
    assert (d["credit_limit"], d["low_balance_threshold"]) == ("50.00", "100.00")
    assert (d["capacity"], d["billing_email"], d["tags"]) == (30, "bill@acme.example", ["gold"])
    assert (d["payment_terms_days"], d["bill_by"], d["max_call_length"]) == (15, "disconnect",
                                                                           3600)
    assert set(d["balance"]) == BALANCE_KEYS
    assert d["balance"] == {"live": "10.00", "fixed": "10.00", "available": "60.00",
                            "low": True}
    assert d["accounts"] == []

    text = ok(run("client", "show", "acme", data=data))
    assert "balance:          live 10.00, fixed 10.00, available 60.00 (low)\n" in text
    assert "capacity:         30\n" in text

    ok(run("client", "edit", "acme", "--capacity", "unlimited", "--low-balance", "",
               "--billing-email", "", data=data))
    d = cli_json(data, "client", "show", "acme")
    assert (d["capacity"], d["low_balance_threshold"], d["billing_email"]) == (None, None, None)

    # The currency cannot change once the journal has entries.
    assert "journal entries" in failed(run("client", "edit", "acme", "--currency",
                                               "USD", "--rate-table", "usd1", data=data),
                                       "CONFLICT")
    assert "nothing to change" in failed(run("client", "edit", "acme", "--capacity",
                                                 "unlimited", data=data), "INVALID_ARGUMENT")


def test_client_rename_cli(shared: Path, tmp_path: Path) -> None:
    failed(run("client", "edit", "acme", "--name", "beta", data=shared), "CONFLICT")
    data = make_data(tmp_path / "data", tmp_path, _shared_fill)
    out = ok(run("client", "edit", "acme", "--name", "Acme Telecom", data=data))
    assert out == "Changed client Acme Telecom: name\n"
    assert cli_json(data, "client", "show", "Acme Telecom")["accounts"] == [1]
    failed(run("client", "show", "acme", data=data), "UNKNOWN_CLIENT")


def test_client_rate_tables_from_a_date(data: Path) -> None:
    ok(run("client", "add", "acme", "--rate-table", "eur1", "--timezone", "Europe/Berlin",
               data=data))
    ok(run("client", "edit", "acme", "--rate-table", "eur2", "--from", "2027-01-01",
               data=data))
    t = berlin(2027, 1, 1)                              # midnight in the client's zone
    assert t == 1798758000
    d = cli_json(data, "client", "show", "acme")
    assert d["rate_tables"] == [{"from": None, "table": "eur1"}, {"from": t, "table": "eur2"}]
    text = ok(run("client", "show", "acme", data=data))
    assert "rate tables:      eur1, eur2 from 2026-12-31T23:00:00+00:00\n" in text
    with Store(data) as store:
        acme = Registry(store).client("acme")
    assert (acme.rate_table_at(t - 1), acme.rate_table_at(t)) == ("eur1", "eur2")

    # The same date again replaces that table; an offset overrides the zone.
    ok(run("client", "edit", "acme", "--rate-table", "eur3", "--from", "2027-01-01",
               data=data))
    ok(run("client", "edit", "acme", "--rate-table", "eur2", "--from",
               "2027-06-01T00:00Z", data=data))
    assert cli_json(data, "client", "show", "acme")["rate_tables"] == [
        {"from": None, "table": "eur1"}, {"from": t, "table": "eur3"},
        {"from": 1811808000, "table": "eur2"}]

    rates = [run("client", "edit", "acme", "--from", "2027-01-01", data=data),
             run("client", "edit", "acme", "--rate-table", "eur2", "--from", "soon",
                     data=data)]
    assert "--from goes with --rate-table" in failed(rates[0], "INVALID_ARGUMENT")
    assert "--from: 'soon'" in failed(rates[1], "INVALID_ARGUMENT")
    failed(run("client", "edit", "acme", "--rate-table", "usd1", "--from", "2028-01-01",
                   data=data), "CONFLICT")
    failed(run("client", "edit", "acme", "--rate-table", "nosuch", data=data),
           "UNKNOWN_TABLE")

    # Without --from the table applies from the beginning, alone.
    ok(run("client", "edit", "acme", "--rate-table", "eur2", data=data))
    assert cli_json(data, "client", "show", "acme")["rate_tables"] == [
        {"from": None, "table": "eur2"}]


@pytest.mark.parametrize("option, code", [
    ("--capacity=-1", "INVALID_ARGUMENT"),
    ("--capacity=lots", "INVALID_ARGUMENT"),
    ("--billing-email=not-an-address", "INVALID_ARGUMENT"),
    ("--currency=EURO", "INVALID_ARGUMENT"),
    ("--timezone=Mars/Olympus_Mons", "INVALID_INSTANT"),
    ("--credit-limit=ten", "INVALID_ARGUMENT"),
    ("--max-call-length=0", "INVALID_ARGUMENT"),
    ("--tag=a,b", "INVALID_ARGUMENT"),
])
def test_client_add_bad_values_store_nothing(shared: Path, option: str, code: str) -> None:
    def snapshot() -> tuple[Any, Any]:
        return cli_json(shared, "client", "list"), cli_json(shared, "audit")

    before = snapshot()
    failed(run("client", "add", "newco", "--rate-table", "eur1", option, data=shared), code)
    failed(run("client", "edit", "acme", option, data=shared), code)
    assert snapshot() == before


def test_shared_data_unchanged_by_refused_commands(shared: Path) -> None:
    """Runs after the refused commands above: they left no client, no change, no record."""
    assert [c["name"] for c in cli_json(shared, "client", "list")] == ["acme", "beta"]
    assert cli_json(shared, "client", "show", "acme")["capacity"] is None
    assert [r["kind"] for r in cli_json(shared, "audit")] == ["deck"] * len(TABLES) + [
        "client", "client", "account"]


def test_client_add_huge_credit_limit_is_a_clean_error(shared: Path) -> None:
    failed(run("client", "add", "newco", "--rate-table", "eur1", "--credit-limit",
                   "1e999999999", data=shared), "INVALID_ARGUMENT")


@pytest.mark.parametrize("args, code, message", [
    (("client", "show", "nosuch"), "UNKNOWN_CLIENT", "no client named 'nosuch'"),
    (("client", "edit", "nosuch", "--capacity", "1"), "UNKNOWN_CLIENT", "nosuch"),
    (("client", "delete", "nosuch"), "UNKNOWN_CLIENT", "nosuch"),
    (("client", "edit", "acme", "--rate-table", "usd1"), "CONFLICT", "usd1 is in USD"),
    (("client", "edit", "acme", "--currency", "USD"), "CONFLICT", "eur1 is in EUR"),
    (("client", "edit", "acme"), "INVALID_ARGUMENT", "nothing to change"),
    (("account", "show", "99"), "UNKNOWN_ACCOUNT", "no account with id 99"),
    (("account", "delete", "99"), "UNKNOWN_ACCOUNT", "no account with id 99"),
    (("account", "list", "--client", "nosuch"), "UNKNOWN_CLIENT", "nosuch"),
    (("account", "add", "--client", "nosuch", "--username", "u"), "UNKNOWN_CLIENT", "nosuch"),
    (("account", "add", "--client", "acme"), "INVALID_ARGUMENT", "needs an identifier"),
    (("account", "add", "--client", "acme", "--ip", "10.0.0.2", "--username", "u"),
     "INVALID_ARGUMENT", "not ip and username"),
    (("account", "add", "--client", "acme", "--ani", "123", "--tech-prefix", "9"),
     "INVALID_ARGUMENT", "not ani and tech prefix"),
    (("account", "add", "--client", "acme", "--ip", "10.0.0.300"), "INVALID_ARGUMENT",
     "10.0.0.300"),
    (("account", "add", "--client", "acme", "--ani", "abc"), "INVALID_NUMBER", "abc"),
    (("account", "add", "--client", "acme", "--username", "u", "--national-prefix", "0"),
     "INVALID_ARGUMENT", "--country-code"),
    (("account", "add", "--client", "acme", "--username", "u", "--country-code", "x"),
     "INVALID_ARGUMENT", "dial plan country code"),
    (("account", "add", "--client", "acme", "--ip", "10.0.0.1/32"), "CONFLICT",
     "ip 10.0.0.1 already recognises account 1 of client acme"),
    (("account", "add", "--client", "beta", "--username", "u", "--rate-table", "eur1"),
     "CONFLICT", "eur1 is in EUR"),
    (("account", "add", "--client", "acme", "--username", "u", "--rate-table", "nosuch"),
     "UNKNOWN_TABLE", "nosuch"),
])
def test_cli_errors(shared: Path, args: tuple[str, ...], code: str, message: str) -> None:
    assert message in failed(run(*args, data=shared), code)


def test_cli_errors_in_a_real_process(shared: Path) -> None:
    """The same one-line errors from ``python -m rater``: no traceback, the exit codes."""
    assert failed(run_cli("client", "show", "nosuch", data=shared), "UNKNOWN_CLIENT") == \
        "no client named 'nosuch'"
    assert "already recognises account 1" in failed(
        run_cli("account", "add", "--client", "beta", "--ip", "10.0.0.1", data=shared),
        "CONFLICT")
    failed(run_cli("client", "add", "x", "--currency", "EUR", "--capacity=-1", data=shared),
           "INVALID_ARGUMENT")
    assert set(json.loads(ok(run_cli("client", "show", "acme", "--json", data=shared)))) == \
        CLIENT_SHOW_KEYS


def test_cli_without_data(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args in (("client", "show", "x"), ("account", "show", "1"),
                 ("client", "delete", "x"), ("account", "add", "--client", "x", "--ip", "::1")):
        assert "no rater data in" in failed(run(*args, data=missing), "STORE_ERROR")
    assert not missing.exists()


def test_client_list_and_delete(data: Path) -> None:
    ok(run("client", "add", "beta", "--currency", "USD", "--postpaid", "--tag", "vip",
               data=data))
    ok(run("client", "add", "acme", "--rate-table", "eur1", "--credit-limit", "5",
               data=data))
    ok(run("client", "add", "gone", "--currency", "EUR", data=data))
    ok(run("account", "add", "--client", "gone", "--username", "g", data=data))
    out = ok(run("client", "delete", "gone", data=data))
    assert out.startswith("Client gone is deleted")
    assert "already deleted" in failed(run("client", "delete", "gone", data=data),
                                       "INVALID_ARGUMENT")

    rows = cli_json(data, "client", "list")
    assert all(set(r) == CLIENT_LIST_KEYS for r in rows)
    assert rows == [
        {"id": 2, "name": "acme", "status": "active", "currency": "EUR", "mode": "prepaid",
         "live": "0.00", "fixed": "0.00", "available": "5.00", "payment_terms_days": 30,
         "tags": []},
        {"id": 1, "name": "beta", "status": "active", "currency": "USD", "mode": "postpaid",
         "live": "0.00", "fixed": "0.00", "available": None, "payment_terms_days": 30,
         "tags": ["vip"]}]
    assert [r["name"] for r in cli_json(data, "client", "list", "--all")] == [
        "acme", "beta", "gone"]
    assert [r["name"] for r in cli_json(data, "client", "list", "--status", "deleted")] == [
        "gone"]
    assert [r["name"] for r in cli_json(data, "client", "list", "--tag", "vip")] == ["beta"]

    d = cli_json(data, "client", "show", "gone")
    assert (d["status"], d["accounts"]) == ("deleted", [1])
    assert "client gone is deleted" in failed(
        run("account", "add", "--client", "gone", "--username", "h", data=data), "CONFLICT")

    table = ok(run("client", "list", data=data)).splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "CURRENCY", "MODE", "LIVE", "FIXED",
                                "AVAILABLE", "TERMS", "TAGS"]
    assert table[1].split() == ["2", "acme", "active", "EUR", "prepaid", "0.00", "0.00",
                                "5.00", "30"]
    assert table[2].split() == ["1", "beta", "active", "USD", "postpaid", "0.00", "0.00",
                                "unlimited", "30", "vip"]


def test_client_export(data: Path, tmp_path: Path) -> None:
    ok(run("client", "add", "acme", "--rate-table", "eur1", "--credit-limit", "5",
               "--tag", "vip", "--tag", "gold", "--billing-email", "b@acme.example",
               "--timezone", "Europe/Berlin", data=data))
    ok(run("client", "edit", "acme", "--rate-table", "eur2", "--from", "2027-01-01",
               data=data))
    ok(run("client", "add", "beta", "--currency", "USD", "--postpaid", "--term-table",
               "usd1", "--capacity", "10", "--low-balance", "2.5", data=data))
    ok(run("client", "add", "gone", "--currency", "EUR", data=data))
    ok(run("client", "delete", "gone", data=data))
    with Store(data) as store:
        j = Journal(store)
        j.post("acme", "manual-payment", "12.5")
        j.post("beta", "manual-charge", "0.25")

    text = ok(run("client", "export", data=data))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == EXPORT_HEADER
    assert len(rows) == 4                                  # deleted clients too
    by_name = {r[1]: dict(zip(EXPORT_HEADER, r, strict=True)) for r in rows[1:]}
    assert [r[1] for r in rows[1:]] == ["acme", "beta", "gone"]    # in id order
    assert by_name["acme"] == {
        "id": "1", "name": "acme", "status": "active", "currency": "EUR", "mode": "prepaid",
        "credit_limit": "5.00", "live_balance": "12.50", "fixed_balance": "12.50",
        "rate_table": f"eur1;eur2@{berlin(2027, 1, 1)}", "term_table": "",
        "payment_terms_days": "30", "bill_by": "connect", "max_call_length": "7200",
        "capacity": "", "timezone": "Europe/Berlin", "tags": "vip;gold",
        "billing_email": "b@acme.example", "low_balance_threshold": ""}
    assert by_name["beta"] == {
        "id": "2", "name": "beta", "status": "active", "currency": "USD", "mode": "postpaid",
        "credit_limit": "0.00", "live_balance": "-0.25", "fixed_balance": "-0.25",
        "rate_table": "", "term_table": "usd1", "payment_terms_days": "30",
        "bill_by": "connect", "max_call_length": "7200", "capacity": "10", "timezone": "UTC",
        "tags": "", "billing_email": "", "low_balance_threshold": "2.50"}
    assert (by_name["gone"]["status"], by_name["gone"]["live_balance"]) == ("deleted", "0.00")

    out = tmp_path / "clients.csv"
    assert ok(run("client", "export", "-o", str(out), data=data)) == ""
    assert out.read_text() == text


def test_export_csv_balances(reg: Registry) -> None:
    """Live and fixed balances go to their own columns (calls move only the live one)."""
    reg.add_client(Client(0, "acme", "EUR"))
    reg.add_client(Client(0, "beta", "EUR"))
    rows = list(csv.DictReader(io.StringIO(reg.export_csv({1: (5 * NANO, 3 * NANO)}))))
    assert [(r["name"], r["live_balance"], r["fixed_balance"]) for r in rows] == [
        ("acme", "5.00", "3.00"), ("beta", "0.00", "0.00")]


def test_client_export_empty(tmp_path: Path) -> None:
    text = ok(run("client", "export", data=tmp_path / "fresh"))
    assert list(csv.reader(io.StringIO(text))) == [EXPORT_HEADER]


# -- the account commands

def test_account_commands(data: Path) -> None:
    ok(run("client", "add", "acme", "--rate-table", "eur1", data=data))
    ok(run("client", "add", "beta", "--currency", "EUR", data=data))
    out = ok(run("account", "add", "--client", "acme", "--ip", "10.0.0.0/24",
                     "--tech-prefix", "99", data=data))
    assert out == "Added account 1 of client acme: ip 10.0.0.0/24, tech prefix 99\n"
    ok(run("account", "add", "--client", "acme", "--ani", "715-413-9112",
               "--country-code", "1", "--national-prefix", "1", "--international-prefix",
               "011", data=data))
    ok(run("account", "add", "--client", "beta", "--username", "bob", "--rate-table",
               "eur2", data=data))
    ok(run("account", "add", "--client", "beta", "--ip", "2001:DB8::/32", data=data))

    one = cli_json(data, "account", "show", "1")
    assert set(one) == ACCOUNT_KEYS
    assert {k: one[k] for k in ACCOUNT_KEYS - {"created"}} == {
        "id": 1, "client": "acme", "ip": "10.0.0.0/24", "username": None, "ani": None,
        "tech_prefix": "99", "rate_table": None, "dial_plan": None, "password": False}
    two = cli_json(data, "account", "show", "2")
    assert (two["ani"], two["dial_plan"]) == ("17154139112", {
        "country_code": "1", "national_prefix": "1", "international_prefix": "011"})
    assert cli_json(data, "account", "show", "4")["ip"] == "2001:db8::/32"

    rows = cli_json(data, "account", "list")
    assert all(set(r) == ACCOUNT_KEYS for r in rows)
    assert [(r["id"], r["client"]) for r in rows] == [(1, "acme"), (2, "acme"), (3, "beta"),
                                                     (4, "beta")]
    assert [r["id"] for r in cli_json(data, "account", "list", "--client", "beta")] == [3, 4]
    assert cli_json(data, "client", "show", "acme")["accounts"] == [1, 2]

    text = ok(run("account", "show", "2", data=data))
    assert "recognised by: ani 17154139112\n" in text
    assert "dial plan:     country code 1, national prefix 1, international prefix 011\n" in text
    assert "rate table:    (the client's)\n" in text
    table = ok(run("account", "list", data=data)).splitlines()
    assert table[0].split() == ["ID", "CLIENT", "RECOGNISED", "BY", "RATE", "TABLE", "DIAL",
                                "PLAN"]
    assert len(table) == 5

    # The same identifier again: refused, naming the account that has it.
    proc = run("account", "add", "--client", "beta", "--ani", "+1 715 413 9112",
                   data=data)
    assert failed(proc, "CONFLICT") == "ani 17154139112 already recognises account 2 of " \
                                       "client acme"
    assert "rater: hint: `rater account delete 2` first" in proc.stderr

    assert ok(run("account", "delete", "2", data=data)) == "Deleted account 2 " \
                                                               "(ani 17154139112)\n"
    failed(run("account", "show", "2", data=data), "UNKNOWN_ACCOUNT")
    ok(run("account", "add", "--client", "beta", "--ani", "+1 715 413 9112", data=data))
    assert [(r["client"], r["ani"]) for r in cli_json(data, "account", "list")
            if r["ani"]] == [("beta", "17154139112")]



def test_account_password_is_stored_hashed_and_never_shown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(run("client", "add", "acme", "--currency", "USD", data=data))
    ok(run("account", "add", "--client", "acme", "--username", "pin-user", "--password",
           "4321", data=data))
    shown = cli_json(data, "account", "show", "1")
    assert shown["password"] is True
    audit = ok(run("audit", "--json", data=data))
    assert "4321" not in audit and "pbkdf2" not in audit
    store = Store(data)
    try:
        account = Registry(store).account(1)
    finally:
        store.close()
    assert account.password is not None and "4321" not in account.password
    assert account.password_matches("4321")
    assert not account.password_matches("4322") and not account.password_matches(None)
    failed(run("account", "add", "--client", "acme", "--username", "x", "--password", "",
               data=data), "INVALID_ARGUMENT")


def test_invoice_settings_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(run_cli("client", "add", "acme", "--currency", "EUR", "--postpaid", "--billing-day",
               "15", "--invoice-template", "extended", "--tax", "VAT=21", "--tax",
               "Levy=0.5", "--vat-id", "de 123456789", "--reverse-charge", "--sepa",
               "de89 3704 0044 0532 0130 00", "cobadeffxxx", "MANDATE-1", "2026-01-15",
               data=data))
    shown = json.loads(ok(run_cli("client", "show", "acme", "--json", data=data)))
    assert {k: shown[k] for k in ("billing_day", "invoice_template", "taxes", "vat_id",
                                  "reverse_charge", "sepa_mandate")} == {
        "billing_day": 15, "invoice_template": "extended",
        "taxes": [["VAT", "21"], ["Levy", "0.5"]], "vat_id": "DE123456789",
        "reverse_charge": True,
        "sepa_mandate": {"iban": "DE89370400440532013000", "bic": "COBADEFFXXX",
                         "id": "MANDATE-1", "date": "2026-01-15"}}
    assert "NAME=PERCENT" in failed(run_cli("client", "edit", "acme", "--tax", "VAT",
                                            data=data), "INVALID_ARGUMENT")
    assert "IBAN BIC MANDATE_ID DATE" in failed(run_cli("client", "edit", "acme", "--sepa",
                                                        "DE89", data=data),
                                                "INVALID_ARGUMENT")
    ok(run_cli("client", "edit", "acme", "--tax", "", "--sepa", "", "--no-reverse-charge",
               data=data))
    shown = json.loads(ok(run_cli("client", "show", "acme", "--json", data=data)))
    assert (shown["taxes"], shown["sepa_mandate"], shown["reverse_charge"]) == ([], None, False)
