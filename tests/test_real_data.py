"""Real decks and CDRs from ../shared/data (read in place, never copied here).

Expected prices are worked out from the files themselves, with Decimal, so a
wrong rate, increment or prefix choice shows as a wrong number.
"""

from __future__ import annotations

import csv
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from rater.cdr import rate_file
from rater.decks import Decks
from rater.engine import Deck
from rater.errors import CdrFileError, DeckFileError, InvalidNumber, NoRate

AZ = "ratedecks/astpp_outbound_routes_az_36k.csv"
TERMINATION = "ratedecks/astpp_terminationrates_sample.csv"
ASTERISK = "cdr/asterisk_master_csv_pseudonymized_217rows.csv"
AT = "2026-01-15 12:00:00"


def az_rows(shared_data: Path) -> dict[str, list[str]]:
    """prefix -> its row (the last one, for the repeated 1808)."""
    with open(shared_data / AZ, newline="") as f:
        reader = csv.reader(f)
        assert next(reader)[:6] == ["prefix", "destination", "rate_per_min", "connect_fee",
                                    "included_seconds", "increment_seconds"]
        return {r[0]: r for r in reader}


def cost_of(row: list[str], billed: int) -> Decimal:
    """The row's price for ``billed`` seconds at 4 decimals, half up (the table default)."""
    exact = Decimal(row[2]) * billed / 60 + Decimal(row[3])
    return exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def billed_for(row: list[str], duration: int) -> int:
    inc = int(row[5])
    return -(-duration // inc) * inc


@pytest.fixture
def az(shared_data: Path, decks: Decks, store) -> Deck:
    decks.import_file(shared_data / AZ, "astpp", currency="USD", on_duplicate="last")
    d = Deck(store, "astpp")
    yield d
    d.close()


def test_az_deck_duplicate_prefix_is_refused_by_default(shared_data: Path,
                                                        decks: Decks) -> None:
    with pytest.raises(DeckFileError) as err:
        decks.import_file(shared_data / AZ, "astpp", currency="USD")
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (36132, "prefix")
    assert "1808" in problem.message and "35211" in problem.message
    assert "36132" in str(err.value) and "35211" in str(err.value)
    assert decks.tables() == []                          # nothing was imported


def test_az_deck_imports_with_last_duplicate(shared_data: Path, decks: Decks) -> None:
    report = decks.import_file(shared_data / AZ, "astpp", currency="USD", on_duplicate="last")
    assert report.file_rows == 36_205
    assert report.prefixes == 36_205
    assert report.summary["added"] == 36_205
    assert any("1808" in w and "35211" in w for w in report.warnings)
    [table] = decks.tables()
    assert table["prefixes"] == 36_205


def test_az_deck_prices_known_numbers(shared_data: Path, az: Deck) -> None:
    rows = az_rows(shared_data)
    assert rows["9375"][1:3] == ["Afghanistan Cellular-AT", "0.22040"]

    call = az.rate("+93 75 123 4567", AT, 61)
    assert (call.prefix, call.destination) == ("9375", "Afghanistan Cellular-AT")
    assert call.billed_seconds == 66                         # 6-second increments
    assert call.cost == Decimal("0.2424")                    # 0.22040 * 66/60 = 0.24244
    assert call.currency == "USD"

    # The repeated 1808: the last row (line 36132) is in force.
    call = az.rate("+1 808 234 0100", AT, 61)
    assert (call.prefix, call.destination) == ("1808", "USA - Hawaii")
    assert call.cost == cost_of(rows["1808"], 66)

    for number, prefix, seconds in [("4915112345678", "49151", 125), ("33612345678", "3361", 1),
                                    ("447911123456", "447", 600), ("4930123456", "49", 59)]:
        call = az.rate(number, AT, seconds)
        row = rows[prefix]
        assert (call.prefix, call.destination) == (prefix, row[1])
        assert call.billed_seconds == billed_for(row, seconds)
        assert call.cost == cost_of(row, billed_for(row, seconds))


@pytest.mark.parametrize("number,prefix", [
    ("5527930912345", "55279309"),
    ("5527930112345", "552793"),
    ("5527912345", "55279"),
    ("5527112345", "5527"),
    ("5530012345", "55"),
    ("18085550100", "1808555"),
])
def test_az_deck_deepest_prefix_wins(shared_data: Path, az: Deck, number: str,
                                     prefix: str) -> None:
    rows = az_rows(shared_data)
    assert all(number[:n] not in rows for n in range(len(prefix) + 1, len(number) + 1))
    call = az.rate(number, AT, 61)
    assert (call.prefix, call.destination) == (prefix, rows[prefix][1])
    assert call.cost == cost_of(rows[prefix], 66)


def test_az_deck_did_row_costs_nothing(shared_data: Path, az: Deck) -> None:
    row = az_rows(shared_data)["16784601475"]
    assert row[1:6] == ["IPComms", "0.00000", "0.00000", "0", "1"]
    call = az.rate("16784601475", AT, 61)
    assert (call.prefix, call.destination) == ("16784601475", "IPComms")
    assert call.cost == Decimal(0)
    assert call.billed_seconds == 61                         # its increment is 1 s
    # A neighbour of the DID falls back to its NANP area code.
    assert az.rate("16784601476", AT, 61).prefix != "16784601475"


def test_termination_template_header(shared_data: Path, decks: Decks, store) -> None:
    report = decks.import_file(shared_data / TERMINATION, "astpp_term")      # no currency
    assert report.prefixes == 2
    with Deck(store, "astpp_term") as d:
        assert d.currency == "USD"                           # from "Cost / Min (USD)"
        short = d.rate("447911123456", AT, 10)
        assert (short.prefix, short.destination) == ("44", "UK")
        assert (short.billed_seconds, short.cost) == (30, Decimal("0.0300"))
        longer = d.rate("447911123456", AT, 31)
        assert (longer.billed_seconds, longer.cost) == (90, Decimal("0.0900"))
        us = d.rate("12125550123", AT, 61)
        assert (us.prefix, us.billed_seconds, us.cost) == ("1", 90, Decimal("0.0750"))


def test_asterisk_cdrs_against_the_az_deck(shared_data: Path, az: Deck, tmp_path: Path) -> None:
    src = shared_data / ASTERISK
    with open(src, newline="") as f:
        records = [r for r in csv.reader(f) if r]
    assert len(records) == 218 and all(len(r) == 18 for r in records)
    out = tmp_path / "rated.csv"

    summary = rate_file(az, src, out, progress=False)        # format auto

    assert summary.format == "asterisk"
    assert summary.rows == 218
    assert summary.rated + summary.unmatched == summary.rows
    assert 0 < summary.unmatched < summary.rated
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "start", "number", "duration", "prefix", "destination",
                       "billed_seconds", "cost"]
    rows = rows[1:]
    assert len(rows) == 218
    total = Decimal(0)
    rated = 0
    for rec, row in zip(records, rows, strict=True):         # every record, in order
        dst, start, answer, billsec, uniqueid = rec[2], rec[9], rec[10], rec[13], rec[16]
        at = answer or start
        assert row[:4] == [uniqueid, at, dst, billsec]
        try:
            call = az.rate(dst, at, int(billsec))
        except (NoRate, InvalidNumber):
            assert row[4:] == ["", "", "", ""]
            continue
        assert row[4:] == [call.prefix, call.destination, str(call.billed_seconds),
                           str(call.cost)]
        total += call.cost
        rated += 1
    assert rated == summary.rated
    assert summary.total_cost == total
    assert summary.currency == "USD"


def test_asterisk_cdrs_are_not_canonical(shared_data: Path, az: Deck, tmp_path: Path) -> None:
    with pytest.raises(CdrFileError, match="the header lacks"):
        rate_file(az, shared_data / ASTERISK, tmp_path / "o.csv", fmt="canonical",
                  progress=False)
    assert not (tmp_path / "o.csv").exists()
