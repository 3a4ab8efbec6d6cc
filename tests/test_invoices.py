"""Invoices and bill runs: periods, rounding, numbering, late calls, documents."""

from __future__ import annotations

import csv
import itertools
import json
import os
import socket
import tempfile
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from conftest import Inbox, ensure_pango, failed, ok, run_cli, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rater.billrun import BillRun, BillRuns, Schedule, Schedules, Selection, period_text
from rater.clients import Client, Registry
from rater.decks import Decks
from rater.errors import InvalidArgument, InvoiceError
from rater.ingest import import_cdrs, rerate
from rater.invoices import (
    Invoicing,
    Issuer,
    check_pattern,
    format_number,
    half_up,
    month_period,
    series,
    tax_amount,
)
from rater.journal import Journal
from rater.ledger import URL_VARIABLE, Ledger
from rater.money import format_nanos
from rater.store import Store

DECK = ("prefix,destination,rate,connect_fee,increment,effective_from\n"
        "44,UK,0.0200,,1/1,\n49,Germany,0.0133,,60/60,\n")
CENTS = Decimal("0.01")
GOLDEN = Path(__file__).parent / "golden"


def setup(store: Store, tmp_path: Path, *names: str, **settings: object) -> Journal:
    Decks(store).import_file(write(tmp_path / "deck.csv", DECK), "T", currency="EUR")
    reg = Registry(store)
    for name in names:
        reg.add_client(Client(id=0, name=name, currency="EUR", mode="postpaid",
                              rate_tables=[[None, "T"]], **settings))  # type: ignore[arg-type]
        reg.add_account(name, username=name)
    with Ledger(store) as ledger:
        Invoicing(ledger).add_issuer(Issuer("Rater Telecom", "Keizersgracht 1\nAmsterdam",
                                            "NL123456789B01"))
    return Journal(store)


def cdrs(tmp_path: Path, name: str, rows: list[tuple[str, str, str, int]]) -> Path:
    """(id, user, start, seconds) per call; UK numbers unless the id says de."""
    lines = ["id,start,number,duration,ip,username"]
    lines += [f"{cid},{start},{'4930123456' if 'de' in cid else '442079460000'},{secs},,{user}"
              for cid, user, start, secs in rows]
    return write(tmp_path / f"{name}.csv", "\n".join(lines) + "\n")


def bill(store: Store, mode: str, period: str, clients: list[str] | None = None,
         now: int | None = None) -> BillRun:
    """A bill run without PDFs, as it stands when done; by default run on the 2nd of the
    month after a YYYY-MM period (when production may issue it)."""
    if now is None and len(period) == 7:
        y, m = int(period[:4]), int(period[5:])
        now = int(datetime(y + m // 12, m % 12 + 1, 2, tzinfo=UTC).timestamp())
    with Ledger(store) as ledger:
        runs = BillRuns(store, ledger)
        return runs.execute(runs.create(mode, period, Selection(clients)), pdf=False,
                            now=now)


def invoices(store: Store, **where: object) -> list:  # type: ignore[type-arg]
    with Ledger(store) as ledger:
        return Invoicing(ledger).invoices(lines=True, **where)  # type: ignore[arg-type]


# -- the rules


def test_half_up_rounds_ties_away_from_zero_to_the_minor_unit() -> None:
    assert half_up(5_005_000_000, 2) == 5_010_000_000
    assert half_up(5_004_999_999, 2) == 5_000_000_000
    assert half_up(-5_005_000_000, 2) == -5_010_000_000
    assert half_up(1_500_000_000, 0) == 2_000_000_000          # JPY
    assert half_up(1_000_500_000, 3) == 1_001_000_000          # KWD
    assert half_up(7, 9) == 7


def test_a_tax_is_rounded_once_from_the_exact_rate() -> None:
    assert tax_amount(5_220_000_000, Decimal("19"), 2) == 990_000_000      # 0.9918
    assert tax_amount(1_000_000_000, Decimal("5.5"), 2) == 60_000_000      # 0.055 -> 0.06
    assert tax_amount(-1_000_000_000, Decimal("5.5"), 2) == -60_000_000
    assert tax_amount(3_330_000_000, Decimal("0.0001"), 2) == 0


def test_number_patterns() -> None:
    day = date(2026, 11, 3)
    assert format_number("INV-{yyyy}-{seq:06}", day, 42) == "INV-2026-000042"
    assert format_number("{yy}{mm}/{seq}", day, 7) == "2611/7"
    assert series("INV-{yyyy}-{seq:06}", day) == "INV-2026-{seq}"
    for bad in ("INV-{yyyy}", "{seq}{seq}", "{seq.real}", "{yyyy}-{seq:6}", "A B{seq}", ""):
        with pytest.raises(InvalidArgument):
            check_pattern(bad)


def test_a_period_is_midnight_to_midnight_in_the_clients_zone() -> None:
    berlin = Client(id=1, name="b", currency="EUR", timezone="Europe/Berlin", billing_day=15)
    p = month_period(berlin, "2026-10")
    assert (p.start, p.end) == (date(2026, 10, 15), date(2026, 11, 15))
    assert p.start_at == 1_792_015_200          # 2026-10-14T22:00:00Z (CEST)
    assert p.end_at == 1_794_697_200            # 2026-11-14T23:00:00Z (CET)
    assert p.label == "2026-10-15/2026-11-14"
    assert month_period(Client(id=1, name="u", currency="EUR"), "2026-12").label == "2026-12"
    with pytest.raises(InvalidArgument):
        month_period(berlin, "2026-13")
    assert period_text(None, "2026-10-01", "2026-10-16") == "2026-10-01/2026-10-16"
    for args in ((None, "2026-10-05", "2026-10-01"), ("2026-10", "2026-10-01", None),
                 (None, "20261001", "2026-10-02"), (None, None, None)):
        with pytest.raises(InvalidArgument):
            period_text(*args)


# -- bill runs


@pytest.fixture
def ledger_db(ledger_url: str | None, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The ledger of the test's runs, each kind in turn (conftest's ledger_url)."""
    if ledger_url is not None:
        monkeypatch.setenv(URL_VARIABLE, ledger_url)
    return ledger_url


def test_pre_production_replaces_drafts_and_production_numbers_them_gaplessly(
        store: Store, tmp_path: Path, ledger_db: str | None) -> None:
    journal = setup(store, tmp_path, "acme", "beta", "carl", taxes=[["VAT", "19"]])
    import_cdrs(store, cdrs(tmp_path, "oct", [
        ("a1", "acme", "2026-10-02T10:00:00Z", 61), ("a2-de", "acme", "2026-10-03T10:00:00Z", 95),
        ("b1", "beta", "2026-10-10T10:00:00Z", 600), ("c1", "carl", "2026-10-11T10:00:00Z", 1)]))
    journal.post("acme", "manual-charge", "5.005", note="porting fee", now=1_791_000_000)
    for _ in range(3):
        bill(store, "pre-production", "2026-10")
    drafts = invoices(store)
    assert [(i.client_name, i.state, i.number) for i in drafts] == [
        ("acme", "draft", None), ("beta", "draft", None), ("carl", "draft", None)]
    acme = drafts[0]
    assert [(ln.kind, ln.description, ln.calls, ln.amount) for ln in acme.lines] == [
        ("usage", "Germany", 1, 30_000_000),            # 2 minutes at 0.0133: 0.0266
        ("usage", "UK", 1, 20_000_000),                 # 61 s at 0.02: 0.0203, 4 places
        ("adjustment", "Manual charge: porting fee", 0, 5_010_000_000),
        ("tax", "VAT 19%", 0, 960_000_000)]             # 19% of 5.06 = 0.9614
    assert acme.total == sum(ln.amount for ln in acme.lines) == 6_020_000_000
    before = journal.balance("acme").fixed
    bill(store, "production", "2026-10", now=1_793_600_000)
    issued = invoices(store)
    assert [i.id for i in issued] == [i.id for i in drafts]        # the drafts, issued
    assert [i.number for i in issued] == ["INV-2026-000001", "INV-2026-000002",
                                          "INV-2026-000003"]
    assert {i.state for i in issued} == {"issued"}
    # The fixed balance moves by the invoice less the adjustment it already moved.
    assert journal.balance("acme").fixed == before - (6_020_000_000 - 5_005_000_000)
    assert journal.balance("acme").fixed == -acme.due
    assert journal.check() == []
    with Ledger(store) as ledger:
        ledger.tail()
        assert ledger.check() == []
    # A second production run of the period issues nothing and says why.
    run = bill(store, "production", "2026-10")
    assert run.state == "completed-with-errors"
    assert {x.code for x in run.exceptions} == {"already-invoiced"}
    assert len(invoices(store)) == 3


def test_late_calls_go_on_the_next_invoice_only(store: Store, tmp_path: Path,
                                                ledger_db: str | None) -> None:
    setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 60)]))
    bill(store, "production", "2026-10")
    import_cdrs(store, cdrs(tmp_path, "late", [("late", "acme", "2026-10-20T10:00:00Z", 600),
                                               ("n1", "acme", "2026-11-05T10:00:00Z", 30)]))
    bill(store, "production", "2026-11")
    bill(store, "production", "2026-12")
    oct_, nov = invoices(store)
    assert [(ln.kind, ln.amount) for ln in oct_.lines] == [("usage", 20_000_000)]
    assert [(ln.kind, ln.description, ln.amount) for ln in nov.lines] == [
        ("usage", "UK", 10_000_000), ("late", "UK (calls before 2026-11-01)", 200_000_000)]
    assert nov.previous == oct_.due


def test_void_sends_the_items_to_the_next_invoice(store: Store, tmp_path: Path,
                                                  ledger_db: str | None) -> None:
    journal = setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 60)]))
    bill(store, "production", "2026-10")
    with Ledger(store) as ledger:
        inv = Invoicing(ledger)
        assert inv.void("INV-2026-000001").state == "void"
        with pytest.raises(InvoiceError, match="only an issued"):
            inv.void("INV-2026-000001")
    assert journal.balance("acme").fixed == 0                 # the invoice's move undone
    bill(store, "production", "2026-11")
    _, nov = invoices(store)
    assert nov.number == "INV-2026-000002"
    assert [(ln.kind, ln.amount) for ln in nov.lines] == [("late", 20_000_000)]
    with Ledger(store) as ledger:
        with pytest.raises(InvoiceError, match="only an issued"):
            Invoicing(ledger).mark_paid("INV-2026-000001")
        assert Invoicing(ledger).mark_paid("INV-2026-000002").state == "paid"


def test_one_failing_client_never_stops_the_run(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme", "beta")
    Registry(store).edit_client("beta", issuer="Nobody Ltd")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 60),
                                              ("b1", "beta", "2026-10-02T10:00:00Z", 60)]))
    run = bill(store, "production", "2026-10")
    assert run.state == "completed-with-errors"
    assert [(x.client_name, x.code) for x in run.exceptions] == [("beta", "no-issuer")]
    assert [i.client_name for i in invoices(store)] == ["acme"]


def test_numbers_run_on_per_issuer_and_series(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme", "beta")
    with Ledger(store) as ledger:
        Invoicing(ledger).add_issuer(Issuer("Other BV", "Damrak 2", pattern="O{yy}-{seq:04}"))
    Registry(store).edit_client("beta", issuer="Other BV")
    import_cdrs(store, cdrs(tmp_path, "c", [(f"{u}{m}", u, f"2026-{m:02d}-02T10:00:00Z", 60)
                                            for u in ("acme", "beta") for m in (10, 11)]))
    bill(store, "production", "2026-10", now=1_793_600_000)     # 2026-11-02
    bill(store, "production", "2026-11", now=1_798_800_000)     # 2027-01-01
    assert [(i.client_name, i.number) for i in invoices(store)] == [
        ("acme", "INV-2026-000001"), ("beta", "O26-0001"),
        ("acme", "INV-2027-000001"), ("beta", "O27-0001")]


# -- the invariants


CLIENTS = ("acme", "beta", "carl")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(calls=st.lists(st.tuples(st.sampled_from(CLIENTS), st.integers(0, 91),
                                st.integers(1, 900), st.booleans(), st.integers(0, 3)),
                      min_size=1, max_size=30),
       # To the tenth of a cent: a statement shows them rounded, the fixed balance too.
       moves=st.lists(st.tuples(st.sampled_from(CLIENTS),
                                st.sampled_from(["manual-charge", "manual-credit",
                                                 "manual-payment"]),
                                st.decimals("0.001", "50", places=3), st.integers(0, 3)),
                      max_size=6),
       rehearse=st.booleans())
def test_every_call_is_on_exactly_one_invoice(
        calls: list[tuple[str, int, int, bool, int]],
        moves: list[tuple[str, str, Decimal, int]], rehearse: bool) -> None:
    """Calls of September to November arrive in four waves, the last after November's
    run; each month is billed (after a rehearsal or not), then December. Every call is
    on one invoice, once; lines sum to totals; the ledger and the fixed balances agree."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with Store(tmp_path / "data") as store:
            journal = setup(store, tmp_path, *CLIENTS, taxes=[["VAT", "21"]])
            start = 1_788_220_800                               # 2026-09-01T00:00:00Z
            rows = [(f"k{i}{'-de' if de else ''}", who, start + day * 86400 + i, secs, wave)
                    for i, (who, day, secs, de, wave) in enumerate(calls)]
            months = ["2026-09", "2026-10", "2026-11", "2026-12"]
            for wave, month in enumerate(months):
                batch = [(cid, who, datetime.fromtimestamp(at, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"), secs) for cid, who, at, secs, w in rows if w == wave]
                if batch:
                    import_cdrs(store, cdrs(tmp_path, f"w{wave}", batch))
                for who, type_, amount, w in moves:
                    if w == wave:
                        journal.post(who, type_, amount, now=start + wave * 31 * 86400 + 3600)
                if rehearse:
                    bill(store, "pre-production", month)
                bill(store, "production", month)
            issued = invoices(store)
            assert not invoices(store, state="draft")
            for inv in issued:
                assert sum(ln.amount for ln in inv.lines) == inv.total
                assert inv.subtotal + inv.tax == inv.total
                assert inv.tax == sum(ln.amount for ln in inv.lines if ln.kind == "tax")
                # The rule, from each line's exact sum: rounded half-up once; the tax
                # 21% of the other lines, rounded once (worked out with Decimal here).
                for ln in inv.lines:
                    shown = Decimal(ln.amount).scaleb(-9)
                    if ln.kind == "tax":
                        assert shown == (Decimal(inv.subtotal).scaleb(-9) * 21 / 100).quantize(
                            CENTS, ROUND_HALF_UP)
                    else:
                        assert ln.exact is not None
                        assert shown == Decimal(ln.exact).scaleb(-9).quantize(
                            CENTS, ROUND_HALF_UP)
            for name in CLIENTS:
                # Each client's calls, counted and priced once, on its own invoices.
                mine = [i for i in issued if i.client_name == name]
                priced = [-e.amount for e in journal.entries(name, types=["rated-call"])]
                on_invoices = [ln for inv in mine for ln in inv.lines
                               if ln.kind in ("usage", "late")]
                assert sum(ln.calls for ln in on_invoices) == sum(
                    1 for who, *_ in calls if who == name)
                assert all(ln.exact is not None for ln in on_invoices)
                assert sum(ln.exact or 0 for ln in on_invoices) == sum(priced)
                if mine:
                    assert journal.balance(name).fixed == -mine[-1].due
                    for a, b in itertools.pairwise(mine):
                        assert b.previous == a.due
            assert journal.check() == []
            with Ledger(store) as ledger:
                ledger.tail()
                assert ledger.check() == []
                # Re-issued with nothing changed, each invoice has the same lines.
                reg = Registry(store)
                for inv in issued:
                    again, *_ = Invoicing(ledger).recalculated(inv, reg.client(inv.client_name))
                    assert [(ln.kind, ln.amount) for ln in again] == [
                        (ln.kind, ln.amount) for ln in inv.lines]


# -- the command line and documents


@pytest.fixture
def billed(tmp_path: Path) -> Path:
    """A data directory with acme's October calls, and an issuer."""
    ensure_pango()
    data = tmp_path / "data"
    deck = write(tmp_path / "deck.csv", DECK)
    ok(run_cli("deck", "import", str(deck), "--table", "T", "--currency", "EUR", data=data))
    ok(run_cli("client", "add", "acme", "--rate-table", "T", "--postpaid", "--tax", "VAT=19",
               "--address", "Acme GmbH\\nHauptstr. 1\\nBerlin", "--vat-id", "DE123456789",
               data=data))
    ok(run_cli("account", "add", "--client", "acme", "--username", "acme", data=data))
    ok(run_cli("cdr", "import", str(cdrs(tmp_path, "oct", [
        ("a1", "acme", "2026-10-02T10:00:00Z", 61),
        ("a2-de", "acme", "2026-10-03T10:00:00Z", 95)])), data=data))
    ok(run_cli("issuer", "add", "Rater Telecom", "--address", "Keizersgracht 1\\nAmsterdam",
               "--vat-id", "NL123456789B01", data=data))
    return data


def test_a_production_run_from_the_command_line(billed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = json.loads(ok(run_cli("billing", "run", "--period", "2026-10", "--mode",
                                "production", "--output-dir", str(out), "--json",
                                data=billed)))
    assert {"id", "state", "output_dir", "control_report", "invoices",
            "exceptions"} <= set(run)
    assert (run["state"], run["output_dir"], run["exceptions"]) == ("completed", str(out), [])
    [inv] = run["invoices"]
    assert (inv["number"], inv["client"], inv["period"], inv["total"], inv["state"]) == (
        "INV-2026-000001", "acme", "2026-10", "0.06", "issued")
    listed = json.loads(ok(run_cli("invoice", "list", "--period", "2026-10", "--json",
                                   data=billed)))
    assert [(i["number"], i["total"], i["pdf"]) for i in listed] == [
        ("INV-2026-000001", "0.06", str(out / "pdf" / "INV-2026-000001.pdf"))]
    assert json.loads(ok(run_cli("invoice", "list", "--state", "draft", "--json",
                                 data=billed))) == []
    shown = json.loads(ok(run_cli("invoice", "show", "INV-2026-000001", "--json",
                                  data=billed)))
    assert [(ln["kind"], ln["amount"]) for ln in shown["lines"]] == [
        ("usage", "0.03"), ("usage", "0.02"), ("tax", "0.01")]

    # The PDF, read back.
    import pdfplumber

    with pdfplumber.open(out / "pdf" / "INV-2026-000001.pdf") as pdf:
        text = "\n".join(page.extract_text() for page in pdf.pages)
    for words in ("Invoice INV-2026-000001", "Acme GmbH", "DE123456789", "2026-10-01 to "
                  "2026-10-31", "Germany 1 2.00 0.03", "UK 1 1.02 0.02", "VAT 19% 0.01",
                  "Total 0.06", "Amount due 0.06"):
        assert words in text, words

    # The exports and the control report.
    with open(out / "invoices.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert (row["number"], row["total"], row["amount_due"]) == ("INV-2026-000001", "0.06",
                                                                "0.06")
    with open(out / "invoice-lines.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [(ln["kind"], ln["exact"], ln["amount"]) for ln in lines] == [
        ("usage", "0.0266", "0.03"), ("usage", "0.0203", "0.02"), ("tax", "", "0.01")]
    from openpyxl import load_workbook

    sheet = load_workbook(out / "control-report.xlsx").active
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    assert rows[1][:6] == ["Invoice number", "Account", "Client", "Currency", "Total billed",
                           "Net payable"]
    assert rows[2][0] == "INV-2026-000001" and rows[2][2] == "acme"
    assert Decimal(str(rows[2][4])) == Decimal("0.06")
    assert rows[3][0] == "Total"

    # Re-issued under a new number: the old one void, the new PDF beside the old.
    [again] = json.loads(ok(run_cli("invoice", "reissue", "--period", "2026-10",
                                    "--renumber", "--json", data=billed)))
    assert (again["old"], again["number"], again["total"]) == (
        "INV-2026-000001", "INV-2026-000002", "0.06")
    assert again["pdf"] == str(out / "pdf" / "INV-2026-000002.pdf")
    assert Path(again["pdf"]).stat().st_size > 1000
    assert json.loads(ok(run_cli("invoice", "show", "INV-2026-000001", "--json",
                                 data=billed)))["state"] == "void"
    failed(run_cli("invoice", "reissue", "--period", "2026-09", "--keep-numbers",
                   data=billed), "INVOICE", 6)

    runs = json.loads(ok(run_cli("billing", "runs", "--json", data=billed)))
    assert [(r["id"], r["state"]) for r in runs] == [(run["id"], "completed")]
    assert "ledger equals the journal" in ok(run_cli("check", data=billed))
    # A backup takes the invoices (in the ledger) and the documents a run wrote there.
    ok(run_cli("billing", "run", "--period", "2026-11", "--mode", "pre-production",
               "--no-pdf", data=billed))
    ok(run_cli("backup", str(tmp_path / "copy"), data=billed))
    copied = json.loads(ok(run_cli("billing", "runs", "--json", data=tmp_path / "copy")))
    assert [r["state"] for r in copied] == ["completed", "completed"]
    assert (tmp_path / "copy" / "bill-runs" / str(copied[1]["id"]) / "invoices.csv").exists()


def test_the_invoice_html_matches_its_golden_page(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme", taxes=[["VAT", "19"]], vat_id="DE123456789",
          address="Acme GmbH\nBerlin", invoice_template="extended")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 61),
                                              ("a2-de", "acme", "2026-10-03T10:00:00Z", 95)]))
    bill(store, "production", "2026-10", now=1_793_600_000)
    from rater.documents import invoice_html

    [inv] = invoices(store)
    with Ledger(store) as ledger:
        issuer = Invoicing(ledger).issuers()[0]
    for template in ("extended", "default"):
        inv.template = template
        page = invoice_html(inv, issuer)
        golden = GOLDEN / f"invoice-{template}.html"
        if os.environ.get("RATER_WRITE_GOLDEN"):       # after a change made on purpose
            golden.write_text(page, encoding="utf-8")
            pytest.fail(f"{golden} written anew: read it, then run the test without "
                        f"RATER_WRITE_GOLDEN")
        assert page == golden.read_text(encoding="utf-8")


def test_bad_requests_name_what_is_wrong(billed: Path) -> None:
    failed(run_cli("billing", "run", "--period", "2026-13", "--mode", "production",
                   data=billed), "INVALID_ARGUMENT", 64)
    failed(run_cli("billing", "run", "--mode", "production", data=billed),
           "INVALID_ARGUMENT", 64)
    failed(run_cli("invoice", "show", "INV-1999-000001", data=billed), "INVOICE", 6)
    failed(run_cli("invoice", "show", "9" * 30, data=billed), "INVOICE", 6)
    failed(run_cli("billing", "runs", "9" * 30, data=billed), "INVOICE", 6)
    failed(run_cli("transaction", "add", "acme", "manual-payment", "1", "--key", "invoice:1",
                   data=billed), "INVALID_ARGUMENT", 64)
    failed(run_cli("issuer", "add", "X", "--address", "a", "--pattern", "{seq.real}",
                   data=billed), "INVALID_ARGUMENT", 64)
    failed(run_cli("issuer", "add", "Rater Telecom", "--address", "a", data=billed),
           "CONFLICT", 5)
    failed(run_cli("billing", "run", "--period", "2026-10", "--mode", "production",
                   "--clients", "nobody", data=billed), "UNKNOWN_CLIENT", 4)
    assert json.loads(ok(run_cli("invoice", "list", "--json", data=billed))) == []
    assert json.loads(ok(run_cli("billing", "runs", "--json", data=billed))) == []
    for option in ("--pattern", "--address"):
        failed(run_cli("issuer", "edit", "Rater Telecom", option, "", data=billed),
               "INVALID_ARGUMENT", 64)


# -- re-issue after rerating


def rerate_uk(store: Store, tmp_path: Path, rate: str, since: int = 1_790_812_800,
              until: int = 1_793_491_200) -> None:
    """UK's rate changed, and the calls of [since, until) priced again (October 2026)."""
    Decks(store).import_file(write(tmp_path / f"uk-{rate}.csv", DECK.replace("0.0200", rate)),
                             "T", currency="EUR")
    rerate(store, since, until)


def reissue(store: Store, number: str, how: str,
            now: int = 1_796_300_000) -> list:  # type: ignore[type-arg]
    with Ledger(store) as ledger:
        inv = Invoicing(ledger)
        old = inv.invoice(number)
        client = Registry(store).client(old.client_name)
        return inv.reissue(old, client, inv.issuer(old.issuer), how, now)


@pytest.mark.parametrize("how", ["keep-numbers", "renumber", "credit-note"])
def test_reissue_after_rerating(store: Store, tmp_path: Path, how: str) -> None:
    journal = setup(store, tmp_path, "acme", taxes=[["VAT", "19"]])
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 60),
                                              ("a2-de", "acme", "2026-10-03T10:00:00Z", 95)]))
    bill(store, "production", "2026-10", now=1_793_600_000)
    [old] = invoices(store)
    assert old.total == 60_000_000                  # 0.02 + 0.03 + 19% of 0.05 (0.0095)

    # Unchanged data: the same amounts.
    same = reissue(store, old.number, "keep-numbers")[-1]
    assert (same.number, same.total, same.due, same.revision) == (old.number, old.total,
                                                                  old.due, 1)
    assert [(ln.kind, ln.amount) for ln in same.lines] == [(ln.kind, ln.amount)
                                                           for ln in old.lines]
    assert journal.balance("acme").fixed == -old.due

    rerate_uk(store, tmp_path, "0.0400")
    import_cdrs(store, cdrs(tmp_path, "nov", [("n1", "acme", "2026-11-02T10:00:00Z", 60)]))
    made = reissue(store, old.number, how)
    new = made[-1]
    assert [(ln.kind, ln.description, ln.amount) for ln in new.lines] == [
        ("usage", "Germany", 30_000_000), ("usage", "UK", 40_000_000),
        ("tax", "VAT 19%", 10_000_000)]             # 19% of 0.07: 0.0133
    assert new.total == new.due == 80_000_000
    assert journal.balance("acme").fixed == -new.due
    shown = {i.id: (i.number, i.kind, i.state, i.total) for i in invoices(store)}
    if how == "keep-numbers":
        assert shown == {old.id: (old.number, "invoice", "issued", 80_000_000)}
    elif how == "renumber":
        assert shown == {old.id: (old.number, "invoice", "void", 60_000_000),
                         new.id: ("INV-2026-000002", "invoice", "issued", 80_000_000)}
        assert new.replaces == old.id
    else:
        credit = made[0]
        assert shown == {old.id: (old.number, "invoice", "issued", 60_000_000),
                         credit.id: ("INV-2026-000002", "credit-note", "issued", -60_000_000),
                         new.id: ("INV-2026-000003", "invoice", "issued", 80_000_000)}
        assert sum(ln.amount for ln in credit.lines) == credit.total

    # November takes its own call, not October's corrections: the re-issue took them.
    bill(store, "production", "2026-11", now=1_796_200_000)
    nov = invoices(store)[-1]
    assert [(ln.kind, ln.amount) for ln in nov.lines] == [("usage", 40_000_000),
                                                          ("tax", 10_000_000)]
    assert nov.previous == new.due
    assert journal.balance("acme").fixed == -nov.due
    assert journal.check() == []
    with Ledger(store) as ledger:
        ledger.tail()
        assert ledger.check() == []


def test_a_paid_or_earlier_invoice_passes_its_difference_to_the_next(
        store: Store, tmp_path: Path) -> None:
    journal = setup(store, tmp_path, "acme", "beta")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 60),
                                              ("b1", "beta", "2026-10-02T10:00:00Z", 60),
                                              ("b2", "beta", "2026-11-02T10:00:00Z", 60)]))
    bill(store, "production", "2026-10", now=1_793_600_000)
    acme_oct, beta_oct = invoices(store)
    # acme paid October; beta's November is issued before October is re-issued.
    journal.post("acme", "manual-payment", "0.02", now=1_793_700_000)
    with Ledger(store) as ledger:
        Invoicing(ledger).mark_paid(acme_oct.number)
    bill(store, "production", "2026-11", ["beta"], now=1_796_200_000)
    rerate_uk(store, tmp_path, "0.0500")
    assert reissue(store, acme_oct.number, "keep-numbers")[-1].state == "paid"
    assert reissue(store, beta_oct.number, "renumber")[-1].due == 50_000_000
    import_cdrs(store, cdrs(tmp_path, "dec", [("a3", "acme", "2026-12-02T10:00:00Z", 60),
                                              ("b3", "beta", "2026-12-02T10:00:00Z", 60)]))
    bill(store, "production", "2026-11", ["acme"], now=1_796_200_000)
    bill(store, "production", "2026-12", now=1_798_900_000)
    acme_nov = invoices(store, client=1, period="2026-11")[0]
    # Paid 0.02 of what is now 0.05: the 0.03 is on the next invoice.
    assert (acme_nov.previous, acme_nov.payments, acme_nov.due) == (
        50_000_000, 20_000_000, 30_000_000)
    beta_dec = invoices(store, client=2, period="2026-12")[0]
    beta_nov = invoices(store, client=2, period="2026-11")[0]
    # beta's November still says 0.02 + 0.05; December carries October's 0.03 more.
    assert beta_dec.previous == beta_nov.due + 30_000_000
    for name, last in (("acme", invoices(store, client=1)[-1]), ("beta", beta_dec)):
        assert journal.balance(name).fixed == -last.due
    assert journal.check() == []


# -- SEPA Direct Debit and e-mail

MANDATE = {"iban": "DE89370400440532013000", "bic": "COBADEFFXXX", "id": "MANDATE-0042",
           "date": "2026-01-15"}


def pain_008_schema() -> Path:
    import sepaxml

    return Path(sepaxml.__file__).parent / "schemas" / "pain.008.001.08.xsd"


def test_a_production_run_writes_a_valid_sepa_direct_debit(store: Store,
                                                           tmp_path: Path) -> None:
    import xmlschema

    setup(store, tmp_path, "acme", "beta", "carl")
    Registry(store).edit_client("acme", sepa_mandate=MANDATE)
    Registry(store).edit_client("carl", sepa_mandate={**MANDATE, "id": "M/7 (carl)"})
    with Ledger(store) as ledger:
        Invoicing(ledger).edit_issuer("Rater Telecom", creditor_id="DE98ZZZ09999999999",
                                      iban="NL91ABNA0417164300", bic="ABNANL2A")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 600),
                                              ("b1", "beta", "2026-10-02T10:00:00Z", 60),
                                              ("c1", "carl", "2026-10-02T10:00:00Z", 30)]))
    run = bill(store, "production", "2026-10", now=1_793_600_000)
    xml = Path(run.output_dir or "") / "sepa-Rater-Telecom.xml"
    schema = xmlschema.XMLSchema(str(pain_008_schema()))
    schema.validate(str(xml))                          # raises on any departure
    doc = schema.to_dict(str(xml))["CstmrDrctDbtInitn"]
    assert (doc["GrpHdr"]["NbOfTxs"], str(doc["GrpHdr"]["CtrlSum"])) == ("2", "0.21")
    [info] = doc["PmtInf"]
    assert (info["ReqdColltnDt"], info["CdtrAcct"]["Id"]["IBAN"]) == (
        "2026-12-02", "NL91ABNA0417164300")
    assert [(tx["PmtId"]["EndToEndId"], str(tx["InstdAmt"]["$"]),
             tx["DrctDbtTx"]["MndtRltdInf"]["MndtId"], tx["DbtrAcct"]["Id"]["IBAN"])
            for tx in info["DrctDbtTxInf"]] == [
        ("INV-2026-000001", "0.20", "MANDATE-0042", MANDATE["iban"]),
        ("INV-2026-000003", "0.01", "M/7 (carl)", MANDATE["iban"])]


def test_no_sepa_file_without_the_issuers_creditor_id(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme")
    Registry(store).edit_client("acme", sepa_mandate=MANDATE)
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 600)]))
    run = bill(store, "production", "2026-10")
    assert run.state == "completed-with-errors"
    assert [(x.client_name, x.code) for x in run.exceptions] == [("acme", "sepa-not-ready")]
    assert not list(Path(run.output_dir or "").glob("sepa-*.xml"))
    assert invoices(store)[0].state == "issued"            # the invoice itself stands


def test_invoices_are_emailed_with_their_pdf(billed: Path, smtp: tuple[Inbox, Path],
                                             tmp_path: Path) -> None:
    from email import message_from_bytes, policy

    inbox, config = smtp
    ok(run_cli("client", "edit", "acme", "--billing-email", "billing@acme.example",
               data=billed))
    ok(run_cli("client", "add", "beta", "--rate-table", "T", "--postpaid", data=billed))
    # The server refuses carl's address: carl's message alone fails.
    ok(run_cli("client", "add", "carl", "--rate-table", "T", "--postpaid", "--billing-email",
               "nobody@refused.example", data=billed))
    for name in ("beta", "carl"):
        ok(run_cli("account", "add", "--client", name, "--username", name, data=billed))
    ok(run_cli("cdr", "import", str(cdrs(tmp_path, "more", [
        ("b1", "beta", "2026-10-02T10:00:00Z", 60),
        ("c1", "carl", "2026-10-02T10:00:00Z", 60)])), data=billed))
    run = json.loads(ok(run_cli("billing", "run", "--period", "2026-10", "--mode",
                                "production", "--email", "--config", str(config), "--json",
                                data=billed)))
    assert run["state"] == "completed-with-errors"
    assert [(x["client"], x["code"]) for x in run["exceptions"]] == [
        ("beta", "no-email"), ("carl", "email-failed")]
    [(to, raw)] = inbox.messages
    assert to == ["billing@acme.example"]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Invoice INV-2026-000001 for 2026-10"
    assert msg["From"] == "Rater Telecom <billing@rater.example>"
    [pdf] = [part for part in msg.iter_attachments()]
    assert pdf.get_filename() == "INV-2026-000001.pdf"
    assert pdf.get_content().startswith(b"%PDF-")
    assert "amount due 0.06 EUR" in msg.get_body(("plain",)).get_content()
    # Sent again on request; each sending is kept with the invoice.
    ok(run_cli("invoice", "send", "INV-2026-000001", "--config", str(config), data=billed))
    assert len(inbox.messages) == 2
    shown = json.loads(ok(run_cli("invoice", "show", "INV-2026-000001", "--json",
                                  data=billed)))
    assert [(d["address"], d["error"]) for d in shown["deliveries"]] == [
        ("billing@acme.example", None)] * 2


def test_an_unreachable_smtp_server_is_named(billed: Path, tmp_path: Path) -> None:
    from rater.radius.server import free_ports

    [port] = free_ports("127.0.0.1", [socket.SOCK_STREAM])       # nobody listens there
    config = write(tmp_path / "down.toml", f"[mail]\nport = {port}\ntimeout = 5\n")
    ok(run_cli("client", "edit", "acme", "--billing-email", "billing@acme.example",
               data=billed))
    ok(run_cli("billing", "run", "--period", "2026-10", "--mode", "production",
               data=billed))
    message = failed(run_cli("invoice", "send", "INV-2026-000001", "--config", str(config),
                             data=billed), "INVOICE", 6)
    assert f"SMTP 127.0.0.1:{port}" in message
    failed(run_cli("billing", "run", "--period", "2026-11", "--mode", "pre-production",
                   "--email", data=billed), "INVALID_ARGUMENT", 64)


# -- recurring runs


def test_when_a_schedule_is_due_and_what_it_bills() -> None:
    monthly = Schedule("m", "monthly", 1, "02:00", "Europe/Berlin", "production", Selection())
    nov1 = 1_793_491_200                         # 2026-11-01T01:00:00+01:00: before 02:00
    assert monthly.due(nov1) == (1_790_812_800, "2026-09")      # 1 Oct 02:00 CEST
    assert monthly.due(nov1 + 3600) == (nov1 + 3600, "2026-10")
    mid = Schedule("m", "monthly", 15, "00:00", "UTC", "production", Selection())
    assert mid.due(1_794_700_800)[1] == "2026-10"                # 15 November 2026
    daily = Schedule("d", "daily", None, "00:30", "UTC", "production", Selection())
    assert daily.due(1_793_493_000 + 60) == (1_793_493_000, "2026-10-31/2026-11-01")
    for bad in (dict(every="weekly", day=None), dict(every="monthly", day=29),
                dict(every="daily", day=3), dict(at_time="24:00"), dict(email=True, pdf=False)):
        with pytest.raises(InvalidArgument):
            Schedule(**{"name": "x", "every": "monthly", "day": 1, "at_time": "02:00",
                        "timezone": "UTC", "mode": "production",
                        "selection": Selection(), **bad}).check()  # type: ignore[arg-type]


def test_the_scheduler_runs_each_due_period_once(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme", "beta")
    Registry(store).edit_client("beta", mode="prepaid")
    import_cdrs(store, cdrs(tmp_path, "oct", [("a1", "acme", "2026-10-02T10:00:00Z", 60),
                                              ("b1", "beta", "2026-10-31T10:00:00Z", 60)]))
    with Ledger(store) as ledger:
        schedules = Schedules(BillRuns(store, ledger))
        schedules.add(Schedule("month-end", "monthly", 1, "02:00", "UTC", "production",
                               Selection(["acme"]), pdf=False), now=1_790_000_000)
        schedules.add(Schedule("prepaid", "daily", None, "01:00", "UTC", "production",
                               Selection(["beta"]), pdf=False), now=1_790_000_000)
        nov1 = 1_793_498_400                                      # 2026-11-01T02:00Z
        ran = schedules.run_due(nov1)
        assert sorted((s.name, r.period, r.state) for s, r in ran  # type: ignore[union-attr]
                      ) == [("month-end", "2026-10", "completed"),
                            ("prepaid", "2026-10-31/2026-11-01", "completed")]
        assert schedules.run_due(nov1 + 60) == []                 # nothing twice
        assert [s.last_period for s in schedules.schedules()] == [
            "2026-10", "2026-10-31/2026-11-01"]
    assert [(i.client_name, i.period, i.number) for i in invoices(store)] == [
        ("acme", "2026-10", "INV-2026-000001"),
        ("beta", "2026-10-31/2026-10-31", "INV-2026-000002")]


def test_the_scheduler_from_cron_and_until_sigterm(billed: Path) -> None:
    import select
    import signal
    import subprocess
    import sys

    ok(run_cli("billing", "schedule", "add", "monthly", "--monthly", "1", "--mode",
               "production", data=billed))
    failed(run_cli("billing", "schedule", "add", "monthly", "--daily", "--mode", "production",
                   data=billed), "INVOICE", 6)
    [shown] = json.loads(ok(run_cli("billing", "schedule", "list", "--json", data=billed)))
    assert (shown["every"], shown["day"], shown["at"], shown["last_period"]) == (
        "monthly", 1, "02:00", None)
    # Added now: its first time is to come, so a look from cron runs nothing.
    assert ok(run_cli("billing", "scheduler", "--once", data=billed)) == ""
    proc = subprocess.Popen([sys.executable, "-m", "rater", "--data", str(billed), "billing",
                             "scheduler", "--every", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # Bounded: a scheduler that never says it looks fails the test, not hangs it.
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the scheduler printed nothing"
        assert "scheduler: 1 schedule(s)" in proc.stdout.readline()     # looking now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert "stopped" in out and err == ""
    ok(run_cli("billing", "schedule", "delete", "monthly", data=billed))
    failed(run_cli("billing", "schedule", "delete", "monthly", data=billed), "INVOICE", 6)


@given(st.integers(-(2**62), 2**62), st.sampled_from([0, 2, 3, 4, 9]))
def test_amounts_are_written_exactly(nanos: int, decimals: int) -> None:
    shown = format_nanos(nanos, decimals)
    assert Decimal(shown) == Decimal(nanos).scaleb(-9)
    places = shown.partition(".")[2]
    assert len(places) >= decimals and (len(places) == decimals or places[-1] != "0")
    unit = 10 ** (9 - decimals)
    assert half_up(nanos, decimals) % unit == 0
    assert abs(half_up(nanos, decimals) - nanos) * 2 <= unit
    # Half-up on the magnitude, as Decimal rounds: ties go away from zero.
    want = Decimal(nanos).scaleb(-9).quantize(Decimal(1).scaleb(-decimals),
                                              rounding=ROUND_HALF_UP)
    assert Decimal(half_up(nanos, decimals)).scaleb(-9) == want


def test_the_mail_settings_are_checked(tmp_path: Path) -> None:
    from rater.errors import ConfigError
    from rater.settings import load

    assert load(None, {"mail.tls": "starttls", "mail.port": "587"}).mail.tls == "starttls"
    for bad in ({"mail.tls": "tls"}, {"mail.port": "0"}, {"mail.from": "nobody"},
                {"mail.username": "u"},
                {"mail.password_file": str(tmp_path / "missing")}):
        with pytest.raises(ConfigError):
            load(None, bad)


# -- what the review of re-issue and void found


def test_voids_and_reissues_keep_the_fixed_balance_at_the_amount_due(
        store: Store, tmp_path: Path) -> None:
    journal = setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "calls", [
        ("o1", "acme", "2026-10-02T10:00:00Z", 60), ("n1", "acme", "2026-11-02T10:00:00Z", 60),
        ("d1", "acme", "2026-12-02T10:00:00Z", 60)]))
    bill(store, "production", "2026-10")
    bill(store, "production", "2026-11")

    def agrees() -> None:
        last = [i for i in invoices(store) if i.kind == "invoice"
                and i.state in ("issued", "paid") and i.replaced_by is None][-1]
        assert journal.balance("acme").fixed == -last.due
        assert journal.check() == []

    rerate_uk(store, tmp_path, "0.0500")        # October's call: 0.02 -> 0.05
    reissue(store, "INV-2026-000001", "keep-numbers")    # not the last: 0.03 carried
    with Ledger(store) as ledger:
        Invoicing(ledger).void("INV-2026-000002")
    bill(store, "production", "2026-11")               # follows October again
    nov = invoices(store)[-1]
    assert (nov.previous, nov.total) == (50_000_000, 20_000_000)    # not 0.03 twice
    agrees()
    reissue(store, "INV-2026-000001", "keep-numbers")    # nothing changed: nothing carried
    bill(store, "production", "2026-12")
    dec = invoices(store)[-1]
    assert dec.previous == nov.due
    with Ledger(store) as ledger:
        Invoicing(ledger).void(dec.number or "")
    bill(store, "production", "2026-12")
    agrees()


def test_a_credited_invoice_is_never_followed_again(store: Store, tmp_path: Path) -> None:
    journal = setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "oct", [("o1", "acme", "2026-10-02T10:00:00Z", 600)]))
    bill(store, "production", "2026-10")
    rerate_uk(store, tmp_path, "0.0500")
    _, new = reissue(store, "INV-2026-000001", "credit-note")
    with Ledger(store) as ledger:
        Invoicing(ledger).void(new.number or "")
    bill(store, "production", "2026-11")
    nov = invoices(store)[-1]
    # October was credited and its new invoice voided: its call comes back, late, at
    # its new price, and nothing is owed from before.
    assert (nov.previous, [(ln.kind, ln.amount) for ln in nov.lines]) == (
        0, [("late", 500_000_000)])
    assert journal.balance("acme").fixed == -nov.due


def test_sub_cent_payments_are_on_the_statement_as_in_the_fixed_balance(
        store: Store, tmp_path: Path) -> None:
    journal = setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "oct", [("o1", "acme", "2026-10-02T10:00:00Z", 60)]))
    journal.post("acme", "manual-payment", "0.105", now=1_791_000_000)
    bill(store, "production", "2026-10")
    [oct_] = invoices(store)
    assert (oct_.payments, oct_.due) == (110_000_000, -90_000_000)
    assert journal.balance("acme").fixed == -oct_.due


def test_rater_keeps_its_own_journal_keys(store: Store, tmp_path: Path) -> None:
    journal = setup(store, tmp_path, "acme")
    for key in ("invoice:1", "invoice:1:1", "cdr:switch:c1"):
        with pytest.raises(InvalidArgument, match="rater's own"):
            journal.post("acme", "manual-payment", "1", key=key)


def test_a_draft_a_reissue_overtook_is_made_again(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "oct", [("o1", "acme", "2026-10-02T10:00:00Z", 60),
                                              ("n1", "acme", "2026-11-02T10:00:00Z", 60)]))
    bill(store, "production", "2026-10")
    rerate_uk(store, tmp_path, "0.0500")
    bill(store, "pre-production", "2026-11", now=1_796_000_000)
    draft = invoices(store, state="draft")[0]
    assert [ln.kind for ln in draft.lines] == ["usage", "late"]      # October's correction
    reissue(store, "INV-2026-000001", "keep-numbers", now=1_796_100_000)   # takes it
    run = bill(store, "production", "2026-11", now=1_796_200_000)
    assert run.state == "completed"
    nov = invoices(store)[-1]
    assert [(ln.kind, ln.amount) for ln in nov.lines] == [("usage", 20_000_000)]


def test_production_waits_for_the_period_to_end(store: Store, tmp_path: Path) -> None:
    setup(store, tmp_path, "acme")
    import_cdrs(store, cdrs(tmp_path, "oct", [("o1", "acme", "2026-10-02T10:00:00Z", 60)]))
    run = bill(store, "production", "2026-10", now=1_793_400_000)    # 30 October
    assert [x.code for x in run.exceptions] == ["period-not-ended"]
    assert bill(store, "pre-production", "2026-10", now=1_793_400_000).state == "completed"


MONTHS = ("2026-09", "2026-10", "2026-11", "2026-12", "2027-01")


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("rerate"), st.sampled_from(["0.0100", "0.0350", "0.0123"])),
    st.tuples(st.just("reissue"), st.sampled_from(["keep-numbers", "renumber",
                                                   "credit-note"]), st.integers(0, 9)),
    st.tuples(st.just("void"), st.sampled_from(CLIENTS[:2])),
    st.tuples(st.just("pay"), st.sampled_from(CLIENTS[:2]),
              st.decimals("0.001", "5", places=3)),
    st.tuples(st.just("bill"))), max_size=8))
def test_reissues_voids_and_payments_keep_statements_and_balances_agreeing(
        ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Whatever is rerated, re-issued, voided or paid between monthly runs, once every
    month is billed each client's fixed balance is minus its last amount due, and every
    invoice's lines sum to its total."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with Store(tmp_path / "data") as store:
            journal = setup(store, tmp_path, *CLIENTS[:2], taxes=[["VAT", "21"]])
            import_cdrs(store, cdrs(tmp_path, "calls", [
                (f"{who}{m}", who, f"{month}-0{m + 2}T10:00:00Z", 60 + m)
                for who in CLIENTS[:2] for m, month in enumerate(MONTHS[:4])]))
            billed = 1
            bill(store, "production", MONTHS[0])
            for k, op in enumerate(ops):
                if op[0] == "rerate":
                    rerate_uk(store, tmp_path, op[1], 1_788_220_800,
                              1_798_761_600)                     # Sep to Dec 2026
                elif op[0] == "reissue":
                    live = [i for i in invoices(store) if i.kind == "invoice"
                            and i.state in ("issued", "paid") and i.replaced_by is None]
                    if live:
                        reissue(store, live[op[2] % len(live)].number or "", op[1],
                                now=1_800_000_000 + k)
                elif op[0] == "void":
                    with Ledger(store) as ledger:
                        inv = Invoicing(ledger)
                        basis = inv.basis(Registry(store).client(op[1]).id)
                        if basis.invoice is not None:
                            inv.void(str(basis.invoice))
                elif op[0] == "pay":
                    journal.post(op[1], "manual-payment", op[2], now=1_790_000_000 + k)
                elif billed < len(MONTHS) - 1:
                    bill(store, "production", MONTHS[billed])
                    billed += 1
            for month in MONTHS[billed:]:
                bill(store, "production", month)
            everything = invoices(store)
            for inv in everything:
                assert sum(ln.amount for ln in inv.lines) == inv.total
            for name in CLIENTS[:2]:
                last = [i for i in everything if i.client_name == name and i.kind == "invoice"
                        and i.state in ("issued", "paid") and i.replaced_by is None]
                assert journal.balance(name).fixed == (-last[-1].due if last else 0)
            assert journal.check() == []
            with Ledger(store) as ledger:
                ledger.tail()
                assert ledger.check() == []


def test_a_run_that_cannot_write_its_output_is_failed_with_why(billed: Path,
                                                               tmp_path: Path) -> None:
    blocker = write(tmp_path / "not-a-dir", "")
    proc = run_cli("billing", "run", "--period", "2026-10", "--mode", "pre-production",
                   "--output-dir", str(blocker / "out"), data=billed)
    assert proc.returncode == 1 and "cannot write the run's output" in proc.stderr
    [run] = json.loads(ok(run_cli("billing", "runs", "--json", data=billed)))
    assert run["state"] == "failed" and "cannot write the run's output" in run["error"]
    # What it made stays a draft, made again by the next run.
    assert [i["state"] for i in json.loads(ok(run_cli("invoice", "list", "--json",
                                                       data=billed)))] == ["draft"]


def test_an_invoice_without_a_pdf_gets_one_when_sent(billed: Path,
                                                     smtp: tuple[Inbox, Path]) -> None:
    inbox, config = smtp
    ok(run_cli("client", "edit", "acme", "--billing-email", "billing@acme.example",
               data=billed))
    ok(run_cli("billing", "run", "--period", "2026-10", "--mode", "production", "--no-pdf",
               data=billed))
    ok(run_cli("invoice", "send", "INV-2026-000001", "--config", str(config), data=billed))
    [(_, raw)] = inbox.messages
    assert b"INV-2026-000001.pdf" in raw
    shown = json.loads(ok(run_cli("invoice", "show", "INV-2026-000001", "--json",
                                  data=billed)))
    assert shown["pdf"] == str(billed / "invoices" / "2026-10" / "INV-2026-000001.pdf")
