"""Reading deck files: rater.deckfile.parse_deck and parse_nanos (nothing is stored here)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import write

from rater.deckfile import parse_deck, parse_nanos
from rater.errors import DeckFileError
from rater.tariff import RateTable, TimeProfile

CANONICAL = ("prefix,destination,rate,connect_fee,increment,effective_from,effective_to,"
             "profile,from_second\n")


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=UTC).timestamp())


@pytest.fixture
def table() -> RateTable:
    return RateTable(name="carrier1", currency="USD",
                     profiles={"offpeak": TimeProfile("offpeak")})


def rows_by_prefix(parsed) -> dict[str, tuple]:
    return {r[0]: r for r in parsed.rows}


def problems_of(exc: pytest.ExceptionInfo[DeckFileError]) -> list[tuple]:
    return [(p.line, p.column, p.field) for p in exc.value.problems]


# -- the canonical header


def test_canonical_full_row_stored_form(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", CANONICAL
              + "44,United Kingdom,0.05,0.01,60/6,2026-01-01,2026-12-31,,\n")
    parsed = parse_deck(p, table)
    assert parsed.lines == 2
    assert parsed.warnings == []
    assert parsed.currency is None
    assert parsed.rows == [
        ("44", "", at(2026, 1, 1),
         [0, "United Kingdom", 10_000_000,
          [[0, 50_000_000, 60, 60], [60, 50_000_000, 60, 6]],
          0, 0, None, None, None, at(2026, 12, 31)]),
    ]
    assert parsed.earliest == at(2026, 1, 1)


def test_only_prefix_and_rate_required_default_increment_1_1(tmp_path: Path,
                                                             table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate\n44,0.05\n+1,0.012345678000\n")
    rows = rows_by_prefix(parse_deck(p, table))
    assert rows["44"] == ("44", "", None,
                          [0, "", 0, [[0, 50_000_000, 60, 1]], 0, 0, None, None, None, None])
    # a leading + is dropped; trailing zeros beyond 9 places are fine
    assert rows["1"][3][3] == [[0, 12_345_678, 60, 1]]
    assert parse_deck(p, table).earliest is None


def test_single_increment_means_same_both_ways(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,increment\n44,0.05,6\n45,0.05,60/60\n"
                                     "46,0.05, 30 / 6 \n")
    rows = rows_by_prefix(parse_deck(p, table))
    assert rows["44"][3][3] == [[0, 50_000_000, 60, 6]]
    assert rows["45"][3][3] == [[0, 50_000_000, 60, 60]]
    assert rows["46"][3][3] == [[0, 50_000_000, 60, 30], [30, 50_000_000, 60, 6]]


def test_from_second_lines_build_further_tiers(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", CANONICAL
              + "44,UK,0.10,0.02,60/6,2026-01-01,,,0\n"
              + "44,,0.05,,6,2026-01-01,,,300\n"
              + "44,,0.01,,1,2026-01-01,,,3600\n"
              + "44,UK later,0.20,,1,2026-06-01,,,\n")
    parsed = parse_deck(p, table)
    rows = {(r[0], r[2]): r for r in parsed.rows}
    assert len(parsed.rows) == 2
    first = rows[("44", at(2026, 1, 1))][3]
    assert first == [0, "UK", 20_000_000,
                     [[0, 100_000_000, 60, 60], [60, 100_000_000, 60, 6],
                      [300, 50_000_000, 60, 6], [3600, 10_000_000, 60, 1]],
                     0, 0, None, None, None, None]
    assert rows[("44", at(2026, 6, 1))][3][3] == [[0, 200_000_000, 60, 1]]


def test_tier_lines_may_come_in_any_order(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,destination,rate,from_second\n"
                                     "44,,0.05,120\n44,UK,0.10,0\n")
    (row,) = parse_deck(p, table).rows
    assert row[3][1] == "UK"       # the second-0 line carries the row's fields
    assert row[3][3] == [[0, 100_000_000, 60, 1], [120, 50_000_000, 60, 1]]


def test_first_increment_ending_exactly_at_next_tier_is_accepted(tmp_path: Path,
                                                                 table: RateTable) -> None:
    # 60/6 at 0.10 from second 0, then 0.05 from second 60: the first increment ends
    # exactly where the next tier starts (_assemble only rejects s + a > next).
    p = write(tmp_path / "deck.csv", "prefix,rate,increment,from_second\n"
                                     "44,0.10,60/6,0\n44,0.05,6,60\n")
    (row,) = parse_deck(p, table).rows
    assert row[3][3][0] == [0, 100_000_000, 60, 60]
    assert row[3][3][-1] == [60, 50_000_000, 60, 6]
    assert [t[0] for t in row[3][3]] == sorted({t[0] for t in row[3][3]})


def test_first_increment_running_past_next_tier_is_rejected(tmp_path: Path,
                                                            table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,increment,from_second\n"
                                     "44,0.10,60/6,0\n44,0.05,6,30\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(2, 3, "increment")]
    assert "next tier at second 30" in exc.value.problems[0].message


def test_a_single_increment_running_past_the_next_tier_is_rejected_too(
        tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,increment,from_second\n"
                                     "49,0.10,60,0\n49,0.05,1,30\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(2, 3, "increment")]


def test_an_unclosed_quote_is_named_not_swallowed(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", 'prefix,destination,rate\n44,UK,0.05\n33,"France,0.03\n'
                                     "49,Germany,0.04\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    (problem,) = exc.value.problems
    assert problem.line == 3 and "not readable as CSV" in problem.message


def test_a_field_beyond_the_csv_limit_is_an_error_with_its_line(tmp_path: Path,
                                                                table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,destination,rate\n44,UK,0.05\n"
                                     f"33,{'x' * 200_000},0.03\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert exc.value.problems[0].line == 3


def test_too_many_tiers(tmp_path: Path, table: RateTable) -> None:
    lines = "".join(f"44,0.01,1,{s}\n" for s in range(1001))
    p = write(tmp_path / "deck.csv", "prefix,rate,increment,from_second\n" + lines)
    with pytest.raises(DeckFileError, match="1001 tiers; a row may have 1000"):
        parse_deck(p, table)


def test_profile_rows_are_separate_from_plain_rows(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,profile\n44,0.10,\n44,0.02,offpeak\n")
    parsed = parse_deck(p, table)
    by_profile = {r[1]: r[3][3][0][1] for r in parsed.rows}
    assert by_profile == {"": 100_000_000, "offpeak": 20_000_000}


def test_optional_row_fields(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,grace,min_duration,cap,decimals,rounding\n"
                                     "44,0.05,5,30,1.50,2,UP\n45,0.05,,,,,\n")
    rows = rows_by_prefix(parse_deck(p, table))
    assert rows["44"][3][4:9] == [30, 5, 1_500_000_000, 2, "up"]
    assert rows["45"][3][4:9] == [0, 0, None, None, None]


def test_blank_lines_are_skipped(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate\n44,0.05\n,\n\n45,0.06\n")
    parsed = parse_deck(p, table)
    assert sorted(rows_by_prefix(parsed)) == ["44", "45"]
    assert parsed.lines == 5


def test_header_only_gives_no_rows(tmp_path: Path, table: RateTable) -> None:
    parsed = parse_deck(write(tmp_path / "deck.csv", "prefix,rate\n"), table)
    assert parsed.rows == []
    assert parsed.earliest is None


def test_dates_read_in_the_table_zone(tmp_path: Path) -> None:
    berlin = RateTable(name="carrier1", currency="EUR", timezone="Europe/Berlin")
    p = write(tmp_path / "deck.csv", "prefix,rate,effective_from\n44,0.05,2026-01-01\n"
                                     "45,0.05,2026-07-01T12:00Z\n")
    rows = rows_by_prefix(parse_deck(p, berlin))
    assert rows["44"][2] == at(2025, 12, 31, 23)     # midnight in Berlin (UTC+1)
    assert rows["45"][2] == at(2026, 7, 1, 12)       # an explicit zone wins


# -- what carriers send


def test_carrier_headers_and_currency(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "carrier.csv",
              "Dial Code,Destination,Cost / Min (USD),Initial Increment,Increment,"
              "Connection Cost,Effective Date,Grace Time,Notes,Region\n"
              "44,United Kingdom,0.0123,30,60,0.01,2026-02-01,3,call us,EU\n")
    parsed = parse_deck(p, table)
    assert parsed.currency == "USD"
    assert parsed.rows == [
        ("44", "", at(2026, 2, 1),
         [0, "United Kingdom", 10_000_000,
          [[0, 12_300_000, 60, 30], [30, 12_300_000, 60, 60]],
          0, 3, None, None, None, None]),
    ]
    assert len(parsed.warnings) == 1
    assert "ignored columns" in parsed.warnings[0]
    assert "Notes" in parsed.warnings[0] and "Region" in parsed.warnings[0]


def test_code_and_rate_headers(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "carrier.csv", "Code,Destination,Rate,Increment\n"
                                        "49,Germany,0.02,6\n")
    parsed = parse_deck(p, table)
    assert parsed.currency is None
    assert parsed.warnings == []
    assert parsed.rows == [("49", "", None, [0, "Germany", 0, [[0, 20_000_000, 60, 6]],
                                             0, 0, None, None, None, None])]


def test_two_headers_for_one_field_is_a_problem(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "carrier.csv", "Code,Dial Code,Rate\n44,44,0.05\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(1, 2, "prefix")]


def test_several_currencies_in_headers_is_a_problem(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "carrier.csv", "Code,Rate (USD),Connection Cost (EUR)\n44,0.05,0\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert "EUR" in exc.value.message and "USD" in exc.value.message


def test_columns_mapping_by_header_name(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "odd.csv", "Numero,Pays,Tarif,Extra\n33,France,0.03,x\n")
    parsed = parse_deck(p, table, columns={"prefix": "numero", "rate": "Tarif",
                                           "destination": "Pays"})
    assert parsed.rows == [("33", "", None, [0, "France", 0, [[0, 30_000_000, 60, 1]],
                                             0, 0, None, None, None, None])]
    assert parsed.warnings and "Extra" in parsed.warnings[0]


def test_columns_mapping_by_column_number(tmp_path: Path, table: RateTable) -> None:
    # A mapped column wins over a header that would otherwise be read as the same field.
    p = write(tmp_path / "odd.csv", "A,B,Rate,D\nignored,33,0.99,0.03\n")
    parsed = parse_deck(p, table, columns={"prefix": "2", "rate": "4"})
    (row,) = parsed.rows
    assert row[0] == "33"
    assert row[3][3] == [[0, 30_000_000, 60, 1]]


def test_columns_mapping_errors(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "odd.csv", "Numero,Tarif\n33,0.03\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table, columns={"prefix": "Nope", "rate": "9", "bogus": "1"})
    messages = " | ".join(pr.message for pr in exc.value.problems)
    assert "'Nope'" in messages and "2 columns" in messages and "'bogus'" in messages


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_separators_are_detected(tmp_path: Path, table: RateTable, sep: str) -> None:
    text = sep.join(["prefix", "destination", "rate", "increment"]) + "\n" + \
        sep.join(["44", "UK", "0.05", "60/6"]) + "\n"
    (row,) = parse_deck(write(tmp_path / "deck.csv", text), table).rows
    assert row == ("44", "", None, [0, "UK", 0, [[0, 50_000_000, 60, 60],
                                                 [60, 50_000_000, 60, 6]],
                                    0, 0, None, None, None, None])


@pytest.mark.parametrize("sep", [";", "\t"])
def test_decimal_comma_with_semicolon_or_tab(tmp_path: Path, table: RateTable, sep: str) -> None:
    text = sep.join(["prefix", "rate", "connect_fee"]) + "\n" + \
        sep.join(["44", "0,05", "0,001"]) + "\n"
    (row,) = parse_deck(write(tmp_path / "deck.csv", text), table).rows
    assert row[3][2] == 1_000_000
    assert row[3][3] == [[0, 50_000_000, 60, 1]]


def test_explicit_delimiter(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.txt", "prefix|rate\n44|0.05\n")
    (row,) = parse_deck(p, table, delimiter="|").rows
    assert row[0] == "44" and row[3][3][0][1] == 50_000_000


def test_utf8_bom_and_cp1252(tmp_path: Path, table: RateTable) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffprefix,destination,rate\n33,Fran\u00e7e,0.03\n".encode())
    (row,) = parse_deck(p, table).rows
    assert row[0] == "33" and row[3][1] == "Fran\u00e7e"
    q = tmp_path / "cp1252.csv"
    q.write_bytes("prefix,destination,rate\n33,R\u00e9union,0.03\n".encode("cp1252"))
    (row,) = parse_deck(q, table).rows
    assert row[3][1] == "R\u00e9union"


# -- XLSX


def _xlsx(path: Path, rows: list[list], sheets: dict[str, list[list]] | None = None) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Rates"
    for r in rows:
        ws.append(r)
    for name, more in (sheets or {}).items():
        other = book.create_sheet(name)
        for r in more:
            other.append(r)
    book.save(path)
    return path


def test_xlsx_reads_like_the_csv_equivalent(tmp_path: Path, table: RateTable) -> None:
    header = ["Dial Code", "Destination", "Cost / Min (USD)", "Increment",
              "Effective Date", "Connection Cost"]
    x = _xlsx(tmp_path / "deck.xlsx", [
        header,
        [44, "United Kingdom", 0.05, "60/6", datetime(2026, 3, 1), 0.01],
        [447, "UK Mobile", 0.1234, 6, date(2026, 3, 1), None],
        [49.0, "Germany", 1, 1, "2026-03-01", 0],
        [None, None, None, None, None, None],
    ])
    c = write(tmp_path / "deck.csv", ",".join(header) + "\n"
              "44,United Kingdom,0.05,60/6,2026-03-01,0.01\n"
              "447,UK Mobile,0.1234,6,2026-03-01,\n"
              "49,Germany,1,1,2026-03-01,0\n")
    from_xlsx = parse_deck(x, table)
    from_csv = parse_deck(c, table)
    assert from_xlsx.rows == from_csv.rows
    assert from_xlsx.currency == from_csv.currency == "USD"
    assert len(from_xlsx.rows) == 3
    rows = rows_by_prefix(from_xlsx)
    assert rows["447"][2] == at(2026, 3, 1)
    assert rows["447"][3][3] == [[0, 123_400_000, 60, 6]]


def test_xlsx_small_numeric_rate_reads_like_csv(tmp_path: Path, table: RateTable) -> None:
    # A rate typed as a number below 0.0001 is a double whose repr is '5e-05'.
    x = _xlsx(tmp_path / "deck.xlsx", [["Code", "Rate"], [44, 0.00005]])
    (row,) = parse_deck(x, table).rows
    assert row[3][3] == [[0, 50_000, 60, 1]]


def test_xlsx_sheet_by_name(tmp_path: Path, table: RateTable) -> None:
    x = _xlsx(tmp_path / "deck.xlsx", [["Code", "Rate"], [44, 0.05]],
              sheets={"Other": [["Code", "Rate"], [33, 0.07]]})
    (first,) = parse_deck(x, table).rows
    (other,) = parse_deck(x, table, sheet="Other").rows
    assert first[0] == "44" and other[0] == "33"
    assert other[3][3][0][1] == 70_000_000
    with pytest.raises(DeckFileError) as exc:
        parse_deck(x, table, sheet="Missing")
    assert "Missing" in exc.value.message and "Other" in exc.value.message


def test_xlsx_problem_points_at_row_and_column(tmp_path: Path, table: RateTable) -> None:
    x = _xlsx(tmp_path / "deck.xlsx", [["Code", "Destination", "Rate"],
                                       [44, "UK", 0.05], [45, "DK", -0.05]])
    with pytest.raises(DeckFileError) as exc:
        parse_deck(x, table)
    assert problems_of(exc) == [(3, 3, "rate")]
    assert exc.value.problems[0].file == str(x)


def test_unreadable_xlsx(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.xlsx", "prefix,rate\n44,0.05\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert "XLSX" in exc.value.message


# -- problems


@pytest.mark.parametrize("line, field, column, needle", [
    ("44x,UK,0.05,,,,,,", "prefix", 1, "'44x'"),
    (",UK,0.05,,,,,,", "prefix", 1, "not a prefix"),
    ("44,UK,-0.1,,,,,,", "rate", 3, "negative"),
    ("44,UK,,,,,,,", "rate", 3, "required"),
    ("44,UK,0.0000000001,,,,,,", "rate", 3, "more than 9 decimal"),
    ("44,UK,abc,,,,,,", "rate", 3, "not a number"),
    ("44,UK,0.05,-1,,,,,", "connect_fee", 4, "negative"),
    ("44,UK,0.05,,6/x,,,,", "increment", 5, "'6/x'"),
    ("44,UK,0.05,,0,,,,", "increment", 5, "1..86400"),
    ("44,UK,0.05,,0/6,,,,", "increment", 5, "1..86400"),
    ("44,UK,0.05,,86401,,,,", "increment", 5, "1..86400"),
    ("44,UK,0.05,,,,,peak,", "profile", 8, "'peak'"),
    ("44,UK,0.05,,,2026-13-01,,,", "effective_from", 6, "2026-13-01"),
    ("44,UK,0.05,,,yesterday,,,", "effective_from", 6, "yesterday"),
    ("44,UK,0.05,,,2026-06-01,2026-05-01,,", "effective_to", 7, "after"),
    ("44,UK,0.05,,,2026-06-01,2026-06-01,,", "effective_to", 7, "after"),
    ("44,UK,0.05,,,,,,x", "from_second", 9, "whole number"),
])
def test_row_problems_name_line_column_and_field(tmp_path: Path, table: RateTable, line: str,
                                                 field: str, column: int, needle: str) -> None:
    p = write(tmp_path / "deck.csv", CANONICAL + "1,Ok,0.01,,,,,,\n" + line + "\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    (problem,) = exc.value.problems
    assert (problem.file, problem.line, problem.column, problem.field) == (
        str(p), 3, column, field)
    assert needle in problem.message
    assert str(problem).startswith(f"{p}:3:{column}: {field}: ")
    assert exc.value.code == "BAD_DECK_FILE"


def test_tiers_without_a_second_zero_line(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,from_second\n45,0.01,0\n"
                                     "44,0.05,60\n44,0.01,300\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(3, 3, "from_second")]
    assert "none from 0" in exc.value.problems[0].message


def test_duplicate_row_names_the_first_line(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate,effective_from,profile\n"
                                     "44,0.05,2026-01-01,\n"
                                     "44,0.06,2026-02-01,\n"     # another date: fine
                                     "44,0.07,2026-01-01,offpeak\n"  # another profile: fine
                                     "45,0.01,,\n"
                                     "44,0.08,2026-01-01,\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(6, 1, "prefix")]
    assert "line 2" in exc.value.problems[0].message
    assert "--on-duplicate" in (exc.value.hint or "")


def test_duplicate_without_date_or_profile(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate\n44,0.05\n+44,0.06\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(3, 1, "prefix")]
    assert "already on line 2" in exc.value.problems[0].message


@pytest.mark.parametrize("keep, price", [("first", 50_000_000), ("last", 80_000_000)])
def test_on_duplicate_keeps_one_row_and_warns(tmp_path: Path, table: RateTable, keep: str,
                                              price: int) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate\n44,0.05\n45,0.01\n44,0.08\n")
    parsed = parse_deck(p, table, on_duplicate=keep)
    rows = rows_by_prefix(parsed)
    assert len(parsed.rows) == 2
    assert rows["44"][3][3] == [[0, price, 60, 1]]
    assert len(parsed.warnings) == 1
    assert f"{p}:4" in parsed.warnings[0] and "line 2" in parsed.warnings[0]
    assert keep in parsed.warnings[0]


def test_bad_on_duplicate_value(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate\n44,0.05\n")
    with pytest.raises(DeckFileError):
        parse_deck(p, table, on_duplicate="newest")


def test_several_problems_reported_together(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,destination,rate,increment\n"
                                     "44,UK,0.05,60/6\n"
                                     "4x,Bad,0.05,1\n"
                                     "45,DK,-1,1\n"
                                     "46,NO,0.05,6/x\n"
                                     "47,SE,abc,0\n")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert problems_of(exc) == [(3, 1, "prefix"), (4, 3, "rate"), (5, 4, "increment"),
                                (6, 3, "rate"), (6, 4, "increment")]
    assert exc.value.total == 5
    assert exc.value.message.startswith("5 problems:")


def test_problem_list_is_capped_but_counted(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "prefix,rate\n" + "x,0.05\n" * 60)
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert len(exc.value.problems) == 50
    assert exc.value.total == 60
    assert "and 10 more" in exc.value.message


def test_empty_file(tmp_path: Path, table: RateTable) -> None:
    p = write(tmp_path / "deck.csv", "")
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    (problem,) = exc.value.problems
    assert problem.line == 1 and "empty" in problem.message


def test_missing_file(tmp_path: Path, table: RateTable) -> None:
    with pytest.raises(DeckFileError) as exc:
        parse_deck(tmp_path / "nope.csv", table)
    assert "no such file" in exc.value.message


@pytest.mark.parametrize("header, missing", [
    ("destination,rate\nUK,0.05\n", ["prefix"]),
    ("prefix,destination\n44,UK\n", ["rate"]),
    ("foo,bar\n44,0.05\n", ["prefix", "rate"]),
])
def test_missing_required_column(tmp_path: Path, table: RateTable, header: str,
                                 missing: list[str]) -> None:
    p = write(tmp_path / "deck.csv", header)
    with pytest.raises(DeckFileError) as exc:
        parse_deck(p, table)
    assert [(pr.line, pr.field) for pr in exc.value.problems] == [(1, f) for f in missing]
    assert all("--columns" in pr.message for pr in exc.value.problems)


# -- parse_nanos


@pytest.mark.parametrize("text, nanos", [
    ("0.05", 50_000_000),
    ("$0.05", 50_000_000),
    ("\u20ac 1.5", 1_500_000_000),
    ("1", 1_000_000_000),
    ("1.", 1_000_000_000),
    (".5", 500_000_000),
    ("0", 0),
    ("0.000000001", 1),
    ("0.123456789", 123_456_789),
    ("0.0500000000000", 50_000_000),
    ("12.3400000000", 12_340_000_000),
    (" 0.05 ", 50_000_000),
    ("+0.05", 50_000_000),
])
def test_parse_nanos(text: str, nanos: int) -> None:
    assert parse_nanos(text) == nanos


def test_parse_nanos_decimal_comma() -> None:
    assert parse_nanos("0,05", decimal_comma=True) == 50_000_000
    with pytest.raises(ValueError):
        parse_nanos("0,05")


@pytest.mark.parametrize("text, needle", [
    ("0.0000000001", "more than 9"),
    ("0.1234567891", "more than 9"),
    ("-0.05", "negative"),
    ("-1", "negative"),
    ("abc", "not a number"),
    ("", "not a number"),
    ("$", "not a number"),
    ("1e-5", "not a number"),
    ("1.2.3", "not a number"),
])
def test_parse_nanos_rejects(text: str, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_nanos(text)
    assert needle in str(exc.value)
