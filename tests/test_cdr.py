"""Rating CDR files: rater.cdr.rate_file against a small deck in a real LMDB store.

Every expectation is what ``Deck.rate`` gives for the same call (the Python
parsing path in front of the engine), so the compiled CSV reader, the
Asterisk/FreeSWITCH readers and the per-call API are held to one answer.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from conftest import write
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from rater.cdr import OUTPUT_HEADER, rate_file
from rater.engine import Deck
from rater.errors import CdrFileError, InvalidNumber, NoRate
from rater.tariff import TimeProfile

TABLE = "tariff"
HEADER = ["id", "start", "number", "duration", "prefix", "destination", "billed_seconds", "cost"]

# Europe/Berlin, so that naive times, offsets and DST all matter; profile "q" is
# active in the first quarter of every half hour and "weekend" on Saturdays and
# Sundays, so a start read a few minutes (or a day) wrong prices differently.
DECK = '''prefix,destination,rate,connect_fee,increment,effective_from,profile,decimals,rounding
1,"US, Canada",0.012345,,6/6,,,,
1212,"New York ""NYC""",0.0090,,6/6,,,,
44,United Kingdom,0.0200,,60/1,,,,
44,"United Kingdom, first quarter",0.0300,,60/1,,q,,
447,"United Kingdom, Mobile",0.0800,0.0100,60/6,,,,
4420,United Kingdom - London,0.0150,,60/1,,,,
49,Germany,0.0180,,60/60,,,,
49,"Germany, weekend",0.0100,,60/60,,weekend,,
4915,Germany - Mobile,0.0900,,60/60,,,,
4915,Germany - Mobile,0.0700,,60/60,2027-01-01,,,
33,France,0.019,,1/1,,,6,up
'''


@pytest.fixture
def deck(store, decks, tmp_path: Path):
    decks.create(TABLE, currency="EUR", timezone="Europe/Berlin")
    decks.configure(TABLE, profile=TimeProfile(
        "q", windows=tuple((k * 1800, k * 1800 + 900) for k in range(48))))
    decks.configure(TABLE, profile=TimeProfile("weekend", days=frozenset({5, 6})))
    decks.import_file(write(tmp_path / "deck.csv", DECK), TABLE)
    d = Deck(store, TABLE)
    yield d
    d.close()


def expected_fields(deck: Deck, number: str, start: str, duration: int) -> list[str]:
    """prefix, destination, billed_seconds, cost as the rated CSV should carry them."""
    try:
        call = deck.rate(number, start, duration)
    except (NoRate, InvalidNumber):
        return ["", "", "", ""]
    return [call.prefix, call.destination, str(call.billed_seconds), str(call.cost)]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HEADER
    return rows[1:]


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(rows)
    return buf.getvalue()


# -- canonical CSV, the compiled fast path

CANONICAL = (
    'duration,Number,note,ID,start\r\n'           # any order, any case, an extra column
    '61,"+44 7911 123456",x,"a,""b""",2026-11-23 10:15:00\r\n'
    '\r\n'
    '125,0049-151-2345-6789,"y, z",c2,2026-12-31T22:58:30Z\r\n'
    '125,+49 151 2345 6789,,c3,2027-01-02T12:00:00+01:00\r\n'
    '7,+1 212 555 0123,,c4,1795527900\r\n'
    '10,s,,c5,2026-11-24 15:00\r\n'
    '42,+882 1234 5678,,c6,2026-11-24 15:05:00\r\n'
    '900,"+33 6 12 34 56 78",,c7,2026-11-24 14:30:00.250\r\n'
    '61,44 20 7946 0000,,c8,2026-11-28T10:05:00\r\n'
    '61,4930 123456,,c9,2026-11-28T10:05:00\r\n'
    '\r\n'
)
# (id, start, number, duration) of each record, as read.
CANONICAL_CALLS = [
    ('a,"b"', "2026-11-23 10:15:00", "+44 7911 123456", "61"),
    ("c2", "2026-12-31T22:58:30Z", "0049-151-2345-6789", "125"),   # 23:58:30 in Berlin
    ("c3", "2027-01-02T12:00:00+01:00", "+49 151 2345 6789", "125"),
    ("c4", "1795527900", "+1 212 555 0123", "7"),
    ("c5", "2026-11-24 15:00", "s", "10"),
    ("c6", "2026-11-24 15:05:00", "+882 1234 5678", "42"),
    ("c7", "2026-11-24 14:30:00.250", "+33 6 12 34 56 78", "900"),
    ("c8", "2026-11-28T10:05:00", "44 20 7946 0000", "61"),
    ("c9", "2026-11-28T10:05:00", "4930 123456", "61"),
]


def test_canonical_file_is_rated_like_deck_rate(deck: Deck, tmp_path: Path) -> None:
    src = tmp_path / "cdrs.csv"
    src.write_bytes(CANONICAL.encode())
    out = tmp_path / "rated.csv"

    summary = rate_file(deck, src, out, fmt="canonical", progress=False)

    expected = [[*call, *expected_fields(deck, call[2], call[1], int(call[3]))]
                for call in CANONICAL_CALLS]
    # Byte for byte what Python's csv module writes: quoting of the id with a comma
    # and a doubled quote, of destinations with commas or quotes; LF line ends.
    assert out.read_bytes().decode() == csv_text(expected)
    assert out.read_bytes().startswith(OUTPUT_HEADER)
    # Values known independently of Deck.rate, so both cannot be wrong together.
    by_id = {r[0]: r for r in expected}
    assert by_id['a,"b"'][4:] == ["447", "United Kingdom, Mobile", "66", "0.0980"]
    assert by_id["c2"][4:] == ["4915", "Germany - Mobile", "180", "0.2700"]
    assert by_id["c3"][4:] == ["4915", "Germany - Mobile", "180", "0.2100"]
    assert by_id["c4"][4:] == ["1212", 'New York "NYC"', "12", "0.0018"]
    assert by_id["c7"][4:] == ["33", "France", "900", "0.285000"]
    assert by_id["c8"][4:] == ["4420", "United Kingdom - London", "61", "0.0153"]
    assert by_id["c9"][4:] == ["49", "Germany, weekend", "120", "0.0200"]
    for unmatched in ("c5", "c6"):                     # not a number; no rate for +882
        assert by_id[unmatched][4:] == ["", "", "", ""]

    costs = [Decimal(r[7]) for r in expected if r[7]]
    assert summary.format == "canonical"
    assert (summary.rows, summary.rated, summary.unmatched) == (9, 7, 2)
    assert summary.total_cost == sum(costs) == Decimal("0.9001")
    assert summary.currency == "EUR"
    assert summary.to_json()["total_cost"] == str(summary.total_cost)


def test_profile_rows_follow_the_wall_clock(deck: Deck, tmp_path: Path) -> None:
    """The same instant written three ways lands in the same profile window."""
    unix = int(datetime(2026, 11, 23, 9, 5, tzinfo=UTC).timestamp())
    src = write(tmp_path / "cdrs.csv",
                "id,start,number,duration\n"
                "naive,2026-11-23 10:05:00,44 1234 567,60\n"     # 10:05 in Berlin: in "q"
                "utc,2026-11-23T09:05:00Z,44 1234 567,60\n"
                f"unix,{unix},44 1234 567,60\n"
                "off,2026-11-23T09:20:00+00:00,441234567,60\n")  # 10:20 in Berlin: not in "q"
    rows = {r[0]: r for r in read_rows_after(deck, src, tmp_path)}
    assert rows["naive"][4:] == ["44", "United Kingdom, first quarter", "60", "0.0300"]
    assert rows["utc"][4:] == rows["naive"][4:]
    assert rows["unix"][4:] == rows["naive"][4:]
    assert rows["off"][4:] == ["44", "United Kingdom", "60", "0.0200"]


def read_rows_after(deck: Deck, src: Path, tmp_path: Path, **kw) -> list[list[str]]:
    out = tmp_path / "rated.csv"
    rate_file(deck, src, out, progress=False, **kw)
    return read_rows(out)


def test_tech_prefix_is_cut_before_lookup(deck: Deck, tmp_path: Path) -> None:
    src = write(tmp_path / "cdrs.csv",
                "id,start,number,duration\n"
                "t1,2026-11-23 10:15:00,9999+447911123456,61\n"
                "t2,2026-11-23 10:15:00,447911123456,61\n")
    rows = read_rows_after(deck, src, tmp_path, tech_prefix="9999")
    assert rows[0][2] == "9999+447911123456"           # the number is written as read
    assert rows[0][4:] == ["447", "United Kingdom, Mobile", "66", "0.0980"]
    assert rows[1][4:] == rows[0][4:]


def test_plus_then_00_is_cut_once(deck: Deck, tmp_path: Path) -> None:
    """A leading plus is cut, or else 00 (rater.numbers), never both: +0044... is 0044..."""
    with pytest.raises(NoRate):
        deck.rate("+00447911123456", "2026-11-23 10:15:00", 61)
    assert deck.rate("00447911123456", "2026-11-23 10:15:00", 61).prefix == "447"
    src = write(tmp_path / "cdrs.csv", PLUS_DOUBLE_ZERO)
    rows = read_rows_after(deck, src, tmp_path)
    assert [r[4:] for r in rows] == [["", "", "", ""], ["", "", "", ""]]


# -- the same calls in three formats

# id, start, answer ('' if unanswered), number, duration, billsec
CALLS = [
    ("c1", "2026-11-23 10:14:50", "2026-11-23 10:15:00", "+44 7911 123456", 71, 61),
    ("c2", "2026-11-23 21:39:00", "2026-11-23 21:40:00", "0044 20 7946 0000", 1830, 1800),
    ("c3", "2026-12-31 23:58:00", "2026-12-31 23:58:30", "+49 151 2345 6789", 130, 125),
    ("c4", "2027-01-02 12:00:00", "2027-01-02 12:00:05", "+49 151 2345 6789", 130, 125),
    ("c5", "2026-11-24 14:30:00", "", "+33 6 12 34 56 78", 20, 0),
    ("c6", "2026-11-24 14:44:58", "2026-11-24 14:45:00", "+1 212 555 0123", 9, 7),
    ("c7", "2026-11-24 15:05:00", "2026-11-24 15:05:02", "+882 1234 5678", 44, 42),
    ("c8", "2026-11-28 09:59:50", "2026-11-28 10:00:00", "4930123456", 300, 290),
    ("c9", "2026-11-23 10:14:55", "2026-11-23 10:15:05", "44 1234 5678", 70, 60),
]


def canonical_file(path: Path) -> Path:
    lines = ["id,start,number,duration"]
    for cid, start, answer, number, _, billsec in CALLS:
        lines.append(f"{cid},{answer or start},{number},{billsec}")
    return write(path, "\n".join(lines) + "\n")


def asterisk_file(path: Path) -> Path:
    rows = []
    for cid, start, answer, number, duration, billsec in CALLS:
        rows.append(["", "1000", number, "from-internal", '"Alice" <1000>', "SIP/100-0001",
                     "SIP/trunk-0002" if answer else "", "Dial", "SIP/trunk/" + number,
                     start, answer, "2026-11-30 00:00:00", str(duration), str(billsec),
                     "ANSWERED" if answer else "NO ANSWER", "DOCUMENTATION", cid, ""])
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return write(path, buf.getvalue())


def freeswitch_file(path: Path) -> Path:
    rows = []
    for cid, start, answer, number, duration, billsec in CALLS:
        rows.append(["Alice", "1000", number, "default", start, answer, "2026-11-30 00:00:00",
                     str(duration), str(billsec),
                     "NORMAL_CLEARING" if answer else "NO_ANSWER", cid, "", "acct1"])
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return write(path, buf.getvalue())


@pytest.mark.parametrize("fmt,make", [("canonical", canonical_file),
                                      ("asterisk", asterisk_file),
                                      ("freeswitch", freeswitch_file)])
def test_three_formats_give_the_same_costs(deck: Deck, tmp_path: Path, fmt: str, make) -> None:
    src = make(tmp_path / f"{fmt}.csv")
    auto_out, named_out = tmp_path / "auto.csv", tmp_path / "named.csv"

    summary = rate_file(deck, src, auto_out, progress=False)          # fmt="auto"
    assert summary.format == fmt
    rate_file(deck, src, named_out, fmt=fmt, progress=False)
    assert named_out.read_bytes() == auto_out.read_bytes()

    rows = read_rows(auto_out)
    assert len(rows) == len(CALLS)
    for row, (cid, start, answer, number, _, billsec) in zip(rows, CALLS, strict=True):
        at = answer or start                            # rated at answer, else start
        assert row[:4] == [cid, at, number, str(billsec)]
        assert row[4:] == expected_fields(deck, number, at, billsec)
    by_id = {r[0]: r[4:] for r in rows}
    assert by_id["c1"] == ["447", "United Kingdom, Mobile", "66", "0.0980"]
    assert by_id["c5"] == ["33", "France", "0", "0.000000"]     # unanswered: 0 s
    assert by_id["c7"] == ["", "", "", ""]
    assert by_id["c9"] == ["44", "United Kingdom", "60", "0.0200"]   # "q" at start, not at answer
    assert (summary.rows, summary.rated, summary.unmatched) == (9, 8, 1)
    assert summary.total_cost == sum(Decimal(r[7]) for r in rows if r[7])


def test_three_formats_agree_with_each_other(deck: Deck, tmp_path: Path) -> None:
    outs = []
    for make in (canonical_file, asterisk_file, freeswitch_file):
        out = tmp_path / f"{make.__name__}.out"
        summary = rate_file(deck, make(tmp_path / f"{make.__name__}.csv"), out, progress=False)
        outs.append((summary.total_cost, summary.rated, read_rows(out)))
    assert outs[0] == outs[1] == outs[2]


# -- property: random canonical files, fast path == Deck.rate per record

BERLIN_SPECIAL_DAYS = [date(2026, 3, 29), date(2026, 10, 25), date(2026, 12, 31),
                       date(2027, 1, 1), date(2027, 3, 28), date(2027, 10, 31)]


@st.composite
def numbers(draw) -> str:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(["s", "", "+", "00", "abc", "44x1", "+44 (0) 20"]))
    head = draw(st.sampled_from(["44", "447", "4420", "49", "4915", "1", "1212", "33", "882",
                                 "7", "0"]))
    digits = head + draw(st.text("0123456789", max_size=10))
    marker = draw(st.sampled_from(["", "+", "00"]))
    out = marker
    for ch in digits:
        out += draw(st.sampled_from(["", "", "", " ", "-"])) + ch
    return out


@st.composite
def starts(draw) -> str:
    kind = draw(st.sampled_from(["unix", "naive", "Z", "offset"]))
    day = draw(st.one_of(st.dates(date(2026, 1, 1), date(2027, 12, 30)),
                         st.sampled_from(BERLIN_SPECIAL_DAYS)))
    hh, mm, ss = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    if kind == "unix":
        t = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)
        return str(int(t.timestamp()))
    text = f"{day.isoformat()}{draw(st.sampled_from(['T', ' ']))}{hh:02d}:{mm:02d}"
    if draw(st.booleans()):
        text += f":{ss:02d}"
        if draw(st.booleans()):
            text += draw(st.sampled_from([".", ","])) + draw(st.text("0123456789", min_size=1,
                                                                     max_size=6))
    if kind == "Z":
        text += "Z"
    elif kind == "offset":
        oh, om = draw(st.integers(0, 14)), draw(st.sampled_from([0, 30, 45]))
        sign = draw(st.sampled_from(["+", "-"]))
        text += draw(st.sampled_from([f"{sign}{oh:02d}:{om:02d}", f"{sign}{oh:02d}{om:02d}"]))
    return text


IDS = st.text(st.sampled_from(list("abcXYZ09 ,\"'\né-;")), max_size=12)


def csv_field(text: str, quote: bool) -> str:
    if quote or any(c in text for c in ',"\r\n') or text.startswith('"'):
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def canonical_files(draw):
    columns = draw(st.permutations(["id", "start", "number", "duration", "extra"]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    records = draw(st.lists(st.tuples(IDS, starts(), numbers(), st.integers(0, 4000),
                                      st.sampled_from(["", " ", "  "]), st.booleans()),
                            min_size=1, max_size=25))
    lines = [",".join(draw(st.sampled_from([c, c.upper(), f'"{c}"'])) for c in columns)]
    calls = []
    for cid, start, number, duration, pad, blank_before in records:
        dur_text = f"{pad}{duration}{pad}"
        values = {"id": cid, "start": start, "number": number, "duration": dur_text,
                  "extra": "x,y"}
        if blank_before:
            lines.append("")
        lines.append(",".join(csv_field(values[c], draw(st.booleans())) for c in columns))
        calls.append((cid, start, number, dur_text, duration))
    return eol.join(lines) + draw(st.sampled_from(["", eol])), calls


# A number whose digits after "+" begin with "00" is those digits, as they stand
# (rater.numbers): "+00447911123456" is 00447911123456, which no prefix here prices.
PLUS_DOUBLE_ZERO = ("id,start,number,duration\n"
                    "x,2026-11-23 10:15:00,+00447911123456,61\n"
                    "y,2026-11-23 10:15:00,+001 212 555 0123,7\n")


# No shrinking phase: a file of records is slow to shrink, and the failing
# record is named by the assertion anyway.
@settings(max_examples=100, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(canonical_files())
@example(case=(PLUS_DOUBLE_ZERO, [("x", "2026-11-23 10:15:00", "+00447911123456", "61", 61),
                                  ("y", "2026-11-23 10:15:00", "+001 212 555 0123", "7", 7)]))
def test_property_fast_path_equals_deck_rate(deck: Deck, tmp_path: Path, case) -> None:
    text, calls = case
    src, out = tmp_path / "prop.csv", tmp_path / "prop-rated.csv"
    src.write_bytes(text.encode())

    summary = rate_file(deck, src, out, fmt="canonical", progress=False)

    rows = read_rows(out)
    expected = [[cid, start, number, dur_text, *expected_fields(deck, number, start, duration)]
                for cid, start, number, dur_text, duration in calls]
    assert rows == expected
    rated = [Decimal(r[7]) for r in expected if r[7]]
    assert (summary.rows, summary.rated, summary.unmatched) == (
        len(calls), len(rated), len(calls) - len(rated))
    assert summary.total_cost == sum(rated, Decimal(0))


# -- bad records

BAD_RECORDS = [
    pytest.param("id,start,number,duration\n"
                 "a,2026-01-01 00:00,44,1\n"
                 "\n"
                 "b,2026-02-30 10:00,44,1\n", 4, 2, "start", "'2026-02-30 10:00'",
                 id="bad-start-after-blank-line"),
    pytest.param("id,start,number,duration\n"
                 "b,soon,44,1\n", 2, 2, "start", "'soon'", id="bad-start-first-record"),
    pytest.param("id,start,number,duration\r\n"
                 "a,2026-01-01 00:00,44,1\r\n"
                 "\r\n"
                 "b,2026-01-01 00:00,44,-5\r\n", 4, 4, "duration", "'-5'",
                 id="negative-duration-crlf"),
    pytest.param("number,duration,id,start\n"
                 "44,1,a,2026-01-01\n"
                 "44,1.5,b,2026-01-01\n", 3, 2, "duration", "'1.5'",
                 id="non-numeric-duration-reordered-columns"),
    pytest.param("id,start,number,duration\n"
                 '"x\ny",2026-01-01 00:00,44,1\n'
                 "b,2026-01-01 00:00,44,ten\n", 4, 4, "duration", "'ten'",
                 id="after-a-quoted-newline"),
    pytest.param("id,start,number,duration\n"
                 "a,2026-01-01 00:00,44,1\n"
                 "b,2026-01-01 00:00,44\n", 3, None, None, "3 fields",
                 id="too-few-columns"),
    pytest.param("id,start,number,duration\n"
                 "a,2026-01-01 00:00,44,1\n"
                 '"b,2026-01-01 00:00,44,1\n', 3, None, None, "quote",
                 id="unterminated-quote"),
]


@pytest.mark.parametrize("text,line,column,field,mention", BAD_RECORDS)
def test_bad_record_names_line_column_field(deck: Deck, tmp_path: Path, text: str, line: int,
                                            column: int | None, field: str | None,
                                            mention: str) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(text.encode())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "rated.csv"

    with pytest.raises(CdrFileError) as err:
        rate_file(deck, src, out, progress=False)

    (problem,) = err.value.problems
    assert (problem.file, problem.line, problem.column, problem.field) == (
        str(src), line, column, field)
    assert mention in problem.message
    assert str(err.value).startswith(f"{src}:{line}")
    assert err.value.code == "BAD_CDR_FILE"
    assert os.listdir(out_dir) == []                   # no output, no temporary file


@pytest.mark.parametrize("fmt,record,line,column,field", [
    ("asterisk", ["", "1", "44", "c", "", "", "", "", "", "2026-01-01 00:00:00", "later",
                  "", "5", "5", "ANSWERED", "D", "u2", ""], 3, 11, "answer"),
    ("asterisk", ["", "1", "44", "c", "", "", "", "", "", "2026-01-01 00:00:00", "",
                  "", "5", "-5", "NO ANSWER", "D", "u2", ""], 3, 14, "billsec"),
    ("freeswitch", ["A", "1", "44", "d", "2026-01-01 00:00:00", "2026-01-01 00:00:01",
                    "", "5", "x", "NORMAL_CLEARING", "u2", "", ""], 3, 9, "billsec"),
    ("freeswitch", ["A", "1", "44", "d", "2026-01-01 00:00:00"], 3, None, None),
])
def test_bad_switch_record_names_line(deck: Deck, tmp_path: Path, fmt: str, record: list[str],
                                      line: int, column: int | None, field: str | None) -> None:
    good = (["", "1", "44", "c", "", "", "", "", "", "2026-01-01 00:00:00", "", "", "5", "5",
             "NO ANSWER", "D", "u1", ""] if fmt == "asterisk" else
            ["A", "1", "44", "d", "2026-01-01 00:00:00", "", "", "5", "5", "NO_ANSWER", "u1",
             "", ""])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(good)
    buf.write("\n")                                   # a blank line counts
    w.writerow(record)
    src = write(tmp_path / "bad.csv", buf.getvalue())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CdrFileError) as err:
        rate_file(deck, src, out_dir / "rated.csv", fmt=fmt, progress=False)
    (problem,) = err.value.problems
    assert (problem.line, problem.column, problem.field) == (line, column, field)
    assert os.listdir(out_dir) == []


def big_file(path: Path, records: int, bad_line: int | None = None, id_pad: int = 0) -> Path:
    """A canonical file of ``records`` records; the record on ``bad_line`` has a bad start."""
    pad = "x" * id_pad
    with open(path, "w", newline="") as f:
        f.write("id,start,number,duration\n")
        for line in range(2, records + 2):
            start = "2026-13-01 00:00" if line == bad_line else "2026-11-02 10:00:00"
            f.write(f"r{line}{pad},{start},+44 7911 {line:06d},{line % 600}\n")
    return path


@pytest.mark.parametrize("id_pad", [0, 150], ids=["short-rows", "rows-filling-the-out-buffer"])
def test_bad_record_far_into_a_chunked_file(deck: Deck, tmp_path: Path, id_pad: int) -> None:
    # 70,000 records: the compiled reader works 65,536 records at a time, so the
    # bad record is in the second chunk (with long rows, the 8 MB output buffer
    # also fills up before the first chunk ends).
    src = big_file(tmp_path / "big.csv", 70_000, bad_line=69_000, id_pad=id_pad)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CdrFileError) as err:
        rate_file(deck, src, out_dir / "rated.csv", progress=False)
    (problem,) = err.value.problems
    assert (problem.line, problem.column, problem.field) == (69_000, 2, "start")
    assert "'2026-13-01 00:00'" in problem.message
    assert os.listdir(out_dir) == []


def test_failed_run_keeps_an_existing_output_file(deck: Deck, tmp_path: Path) -> None:
    src = write(tmp_path / "bad.csv", "id,start,number,duration\n"
                                      "a,2026-01-01 00:00,44,1\n"
                                      "b,2026-01-01 00:00,44,x\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = write(out_dir / "rated.csv", "previous run\n")
    with pytest.raises(CdrFileError):
        rate_file(deck, src, out, progress=False)
    assert out.read_text() == "previous run\n"
    assert os.listdir(out_dir) == ["rated.csv"]

    # A good run does replace it.
    good = write(tmp_path / "good.csv", "id,start,number,duration\na,2026-01-01 00:00,44,1\n")
    rate_file(deck, good, out, progress=False)
    assert read_rows(out) == [["a", "2026-01-01 00:00", "44", "1",
                               *expected_fields(deck, "44", "2026-01-01 00:00", 1)]]
    assert os.listdir(out_dir) == ["rated.csv"]


def test_missing_file_and_unknown_header(deck: Deck, tmp_path: Path) -> None:
    with pytest.raises(CdrFileError, match="no such file"):
        rate_file(deck, tmp_path / "absent.csv", tmp_path / "o.csv", progress=False)
    src = write(tmp_path / "odd.csv", "when,who,what\n1,2,3\n")
    with pytest.raises(CdrFileError, match="cannot tell the CDR format"):
        rate_file(deck, src, tmp_path / "o.csv", progress=False)
    with pytest.raises(CdrFileError, match="the header lacks id, start, number, duration"):
        rate_file(deck, src, tmp_path / "o.csv", fmt="canonical", progress=False)
    assert not (tmp_path / "o.csv").exists()


# -- a big file in chunks == the batch API

PREFIXES = ["44", "447", "4420", "49", "4915", "1", "1212", "33", "882", "7"]


def test_chunked_big_file_equals_rate_batch(deck: Deck, tmp_path: Path) -> None:
    n = 150_000
    rng = np.random.default_rng(20261123)
    heads = rng.integers(0, len(PREFIXES), n)
    tails = rng.integers(0, 10**8, n)
    lo = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    hi = int(datetime(2027, 12, 31, tzinfo=UTC).timestamp())
    starts = rng.integers(lo, hi, n)
    durations = rng.integers(0, 3600, n)
    styles = rng.integers(0, 3, n)
    numbers = []
    src = tmp_path / "big.csv"
    with open(src, "w", newline="") as f:
        f.write("id,start,number,duration\n")
        for i in range(n):
            digits = f"{PREFIXES[heads[i]]}{tails[i]:08d}"
            number = ("+" + digits, "00" + digits[:3] + " " + digits[3:], digits)[styles[i]]
            numbers.append(number)
            t = int(starts[i])
            start = str(t) if i % 2 else datetime.fromtimestamp(t, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            # long ids on part of the file, so that the output buffer fills mid-chunk
            cid = f"call-{i}" + ("-" + "y" * 120 if i % 3 == 0 else "")
            f.write(f"{cid},{start},{number},{durations[i]}\n")
    out = tmp_path / "big-rated.csv"

    summary = rate_file(deck, src, out, progress=False)

    batch = deck.rate_batch(np.array([s.encode() for s in numbers], dtype="S"), starts,
                            durations)
    matched = batch.matched
    assert summary.rows == n
    assert summary.rated == batch.priced == int(matched.sum())
    assert summary.unmatched == n - batch.priced > 0
    assert summary.total_cost == Decimal(int(batch.cost_nanos[matched].sum())).scaleb(-9)

    rows = read_rows(out)
    assert len(rows) == n
    costs = deck.costs(batch)
    names = deck.destinations(batch.row)
    billed = batch.billed_seconds.tolist()
    for i, row in enumerate(rows):
        assert row[2] == numbers[i]
        if costs[i] is None:
            assert row[4:] == ["", "", "", ""]
        else:
            assert row[5:] == [names[i], str(billed[i]), str(costs[i])]


# -- what a reader could misread


def test_text_after_a_closing_quote_belongs_to_the_field(deck: Deck, tmp_path: Path) -> None:
    # Python's csv module reads "44"71234 as 4471234; so must the compiled reader.
    src = write(tmp_path / "q.csv", 'id,start,number,duration\n'
                                    '1,2026-11-23 10:00,"44"7911123,60\n'
                                    '"2"x,2026-11-23 10:00,"44"20 7946,60\n')
    rate_file(deck, src, tmp_path / "out.csv", progress=False)
    rows = read_rows(tmp_path / "out.csv")
    assert rows[0][:4] == ["1", "2026-11-23 10:00", "447911123", "60"]
    assert rows[0][4:] == expected_fields(deck, "447911123", "2026-11-23 10:00", 60)
    assert rows[0][4] == "447"
    assert rows[1][0] == "2x" and rows[1][4] == "4420"


@pytest.mark.parametrize("fmt", ["canonical", "asterisk"])
def test_a_number_with_a_nul_byte_is_unmatched(deck: Deck, tmp_path: Path, fmt: str) -> None:
    if fmt == "canonical":
        text = "id,start,number,duration\n1,2026-11-23 10:00,447\x00123,60\n"
    else:
        fields = ["", "100", "447\x00123", "ctx", "", "SIP/a", "SIP/b", "Dial", "",
                  "2026-11-23 10:00:00", "2026-11-23 10:00:00", "2026-11-23 10:01:00",
                  "60", "60", "ANSWERED", "DOCUMENTATION", "id1", ""]
        text = ",".join(f'"{f}"' for f in fields) + "\n"
    src = tmp_path / "nul.csv"
    src.write_text(text)
    summary = rate_file(deck, src, tmp_path / "out.csv", fmt=fmt, progress=False)
    assert (summary.rows, summary.rated, summary.unmatched) == (1, 0, 1)


def test_separators_do_not_count_toward_a_numbers_length(deck: Deck, tmp_path: Path) -> None:
    number = "44" + " " * 300 + "7911123"
    fields = ["", "100", number, "ctx", "", "SIP/a", "SIP/b", "Dial", "",
              "2026-11-23 10:00:00", "2026-11-23 10:00:00", "2026-11-23 10:01:00",
              "60", "60", "ANSWERED", "DOCUMENTATION", "id1", ""]
    src = write(tmp_path / "long.csv", ",".join(f'"{f}"' for f in fields) + "\n")
    rate_file(deck, src, tmp_path / "out.csv", progress=False)
    (row,) = read_rows(tmp_path / "out.csv")
    assert row[4:] == expected_fields(deck, number, "2026-11-23 10:00:00", 60)
    assert row[4] == "447"


def test_a_canonical_file_with_a_byte_order_mark_is_recognised(deck: Deck,
                                                                tmp_path: Path) -> None:
    src = tmp_path / "bom.csv"
    src.write_bytes(b"\xef\xbb\xbfid,start,number,duration\nc1,2026-11-23 10:00,4420123,60\n")
    summary = rate_file(deck, src, tmp_path / "out.csv", progress=False)
    assert summary.format == "canonical" and summary.rated == 1


def test_the_output_file_is_created_like_any_other(deck: Deck, tmp_path: Path) -> None:
    src = write(tmp_path / "c.csv", "id,start,number,duration\nc1,2026-11-23 10:00,44,60\n")
    out = tmp_path / "out.csv"
    rate_file(deck, src, out, progress=False)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_output_directory_that_does_not_exist_is_a_clear_error(deck: Deck,
                                                                  tmp_path: Path) -> None:
    from rater.errors import FileError

    src = write(tmp_path / "c.csv", "id,start,number,duration\nc1,2026-11-23 10:00,44,60\n")
    with pytest.raises(FileError, match="cannot write"):
        rate_file(deck, src, tmp_path / "missing" / "out.csv", progress=False)
