"""The compiled half of CDR import (rater._ingest) gives what the Python it replaces gives.

The canonical CDR reader is checked against the record-by-record reader on
generated files (odd spacing, non-ASCII text, bad dates, short lines...): the
compiled reader either hands the file back (None) or reads exactly the same
CDRs. The msgpack packer is checked byte for byte against msgpack itself.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rater import _ingest, ingest
from rater.errors import CdrFileError, Problems
from rater.timeutil import parse_instant, zone

ZONES = ["UTC", "Europe/Berlin", "America/New_York"]
OPTIONAL = ["ip", "username", "ani", "vendor", "setup", "note"]
FIELDS = ("ids", "lines", "starts", "durations", "numbers", "ips", "users", "anis", "vendors",
          "setups")

# Text without the characters that end a field or a record, or open a quote.
odd_text = st.text(alphabet="ab1 9\t-+.()é\xa0\x0b\u3000", max_size=6)
pad = st.sampled_from(["", "", " ", "\t", " \t "])
plain_text = st.builds(lambda a, t, b: a + t + b, pad,
                       st.text(alphabet="abcxyz0123456789.-_", max_size=8), pad)
instants = st.datetimes(min_value=dt.datetime(1969, 12, 31), max_value=dt.datetime(2100, 1, 2))
dst_edges = st.sampled_from([dt.datetime(2026, 3, 29, 1, 59, 59), dt.datetime(2026, 3, 29, 2, 30),
                             dt.datetime(2026, 10, 25, 2, 30), dt.datetime(2026, 3, 8, 2, 15),
                             dt.datetime(2026, 11, 1, 1, 30)])


def stamp(t: dt.datetime, sep: str = " ") -> str:
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S")


odd_start = st.one_of(
    st.builds(stamp, instants | dst_edges, st.sampled_from([" ", "T"])),
    st.sampled_from(["2026-02-30 10:00:00", " 2026-01-01 00:00:00", "1767225600",
                     "2026-01-01T00:00:00Z", "2026-01-01 24:00:00", "2026-1-01 00:00:00", "",
                     "2026-01-01 00:00", "２026-01-01 00:00:00"]))
odd_duration = st.one_of(st.integers(0, 10**6).map(str),
                         st.sampled_from(["", " 5", "5 ", "x", "99999999999", "2147483648",
                                          "2147483647", "٣", "-1"]))


def write(rows: list[list[str]], header: list[str], trailing: bool) -> Path:
    text = ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows)
    if trailing and rows:
        text += "\n"
    f = tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False)  # noqa: SIM115
    with f:
        f.write(text.encode("utf-8", "surrogateescape"))
    return Path(f.name)


plain_start = st.builds(stamp, instants.filter(lambda t: 1970 <= t.year < 2100) | dst_edges)
plain_duration = st.integers(0, 10**6).map(str)


@st.composite
def cdr_files(draw: Any, odd: bool = True) -> tuple[Path, str]:
    """A canonical CDR file and a zone. ``odd``: now and then a field, or a whole line,
    that is unusual or wrong (how often varies from file to file)."""
    extra = draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    header = draw(st.permutations(["id", "start", "number", "duration", *extra]))
    one_in = draw(st.sampled_from([4, 30, 1000])) if odd else 0

    def pick(plain: Any, unusual: Any) -> Any:
        return draw(unusual if one_in and draw(st.integers(1, one_in)) == 1 else plain)

    rows = []
    for _ in range(draw(st.integers(0, 12))):
        row = []
        for name in header:
            if name == "start":
                row.append(pick(plain_start, odd_start))
            elif name == "setup":
                row.append(pick(st.just("") | plain_start, odd_start))
            elif name == "duration":
                row.append(pick(plain_duration, odd_duration))
            elif name == "id":
                row.append(pick(plain_text.filter(str.strip), odd_text))
            else:
                row.append(pick(plain_text, odd_text))
        if one_in and draw(st.integers(1, one_in * 4)) == 1:
            row = row[:draw(st.integers(0, len(row)))]
        rows.append(row)
    path = write(rows, header, draw(st.booleans()))
    return path, draw(st.sampled_from(ZONES))


def by_record(path: Path, tz: str) -> tuple[ingest.Received, int]:
    """What the record-by-record reader reads, and how many problems it finds."""
    out = ingest.Received()
    problems = Problems(str(path), CdrFileError)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        ingest._read_canonical(ingest._Reader(f), out, problems, ingest.InstantReader(tz), None)
    return out, problems.total


def same(compiled: ingest.Received, slow: ingest.Received) -> None:
    for name in FIELDS:
        assert getattr(compiled, name) == getattr(slow, name), name
    assert [compiled.identities[c] for c in compiled.codes.tolist()] == list(
        zip(slow.ips, slow.users, slow.anis, strict=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cdr_files())
def test_compiled_reader_reads_what_the_record_reader_reads_or_hands_back(
        case: tuple[Path, str]) -> None:
    path, tz = case
    try:
        compiled = ingest._canonical_compiled(path, tz)
        slow, problems = by_record(path, tz)
        if compiled is not None:
            assert problems == 0, path.read_bytes()
            same(compiled, slow)
    finally:
        path.unlink()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cdr_files(odd=False))
def test_compiled_reader_takes_every_plain_file(case: tuple[Path, str]) -> None:
    path, tz = case
    try:
        slow, problems = by_record(path, tz)
        compiled = ingest._canonical_compiled(path, tz)
        if problems == 0:
            # Wall-clock times that fall before 1970 or after 2099 in UTC are problems.
            assert compiled is not None
            same(compiled, slow)
        else:
            assert compiled is None
    finally:
        path.unlink()


def test_compiled_reader_handles_the_import_of_a_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("\ufeffid,start,number,duration,ip\n"
                    "a1,2026-03-29 02:30:00,4420,60,10.0.0.1\n"
                    " a2 ,2026-03-29T03:00:00, 4421 ,0,\n")
    got = ingest._canonical_compiled(path, "Europe/Berlin")
    assert got is not None
    assert got.ids == ["a1", "a2"] and got.lines == [2, 3]
    assert got.numbers == ["4420", "4421"] and got.ips == ["10.0.0.1", ""]
    # 02:30 does not exist in Berlin that night: read as parse_instant reads it.
    assert got.starts == [parse_instant("2026-03-29 02:30:00", zone("Europe/Berlin")),
                          parse_instant("2026-03-29 03:00:00", zone("Europe/Berlin"))]
    assert got.setups == [None, None] and got.durations == [60, 0]


@pytest.mark.parametrize("text", ['id,start,number,duration\n"a",2026-01-01 00:00:00,1,1\n',
                                  "id,start,number,duration\r\na,2026-01-01 00:00:00,1,1\r\n",
                                  "id,start,number,duration\na,2026-01-01 00:00:00,1,1\n\n",
                                  "start,number,duration\n2026-01-01 00:00:00,1,1\n", "",
                                  # a wall before 1970 is not taken for a missing setup
                                  "id,start,number,duration,setup\n"
                                  "a,2026-01-01 00:00:00,1,1,1969-12-31 00:00:00\n"])
def test_compiled_reader_hands_back_what_it_does_not_read(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text, newline="")
    assert ingest._canonical_compiled(path, "UTC") is None


# -- msgpack rows

values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(),
                   st.binary(max_size=300), st.text(min_size=30, max_size=300))


@st.composite
def tables(draw: Any) -> tuple[tuple[Any, ...], list[list[Any]], int]:
    """Columns for pack_rows and the rows they stand for."""
    n = draw(st.integers(0, 8))

    def columns(depth: int) -> tuple[tuple[Any, ...], list[list[Any]]]:
        cols: list[Any] = []
        rows: list[list[Any]] = [[] for _ in range(n)]
        for _ in range(draw(st.integers(0, 18))):
            kind = draw(st.sampled_from(["list", "ints", "same", "nested"] if depth < 2
                                        else ["list", "ints", "same"]))
            if kind == "list":
                col = draw(st.lists(values, min_size=n, max_size=n))
                cols.append(col)
                for r, v in zip(rows, col, strict=True):
                    r.append(v)
            elif kind == "ints":
                col = draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n))
                cols.append(np.array(col, dtype=np.int64))
                for r, v in zip(rows, col, strict=True):
                    r.append(v)
            elif kind == "same":
                v = draw(values)
                cols.append(v)
                for r in rows:
                    r.append(v)
            else:
                inner, inner_rows = columns(depth + 1)
                cols.append(inner)
                for r, v in zip(rows, inner_rows, strict=True):
                    r.append(v)
        return tuple(cols), rows

    cols, rows = columns(0)
    return cols, rows, n


@settings(max_examples=300, deadline=None)
@given(tables(), st.data())
def test_pack_rows_packs_as_msgpack_does(table: Any, data: Any) -> None:
    cols, rows, n = table
    pack = msgpack.Packer(use_bin_type=True).pack
    assert _ingest.pack_rows(cols, n) == [pack(r) for r in rows]
    chosen = data.draw(st.lists(st.integers(0, n - 1), max_size=6)) if n else []
    assert _ingest.pack_rows(cols, n, np.array(chosen, dtype=np.int64)) == [
        pack(rows[i]) for i in chosen]


def test_pack_rows_refuses_what_it_cannot_pack() -> None:
    with pytest.raises(TypeError, match="float"):
        _ingest.pack_rows(([1.5],), 1)
    with pytest.raises(OverflowError):
        _ingest.pack_rows(([2**64],), 1)
    with pytest.raises(ValueError, match="2 values for 3 rows"):
        _ingest.pack_rows(([1, 2],), 3)
    with pytest.raises(IndexError):
        _ingest.pack_rows(([1],), 1, np.array([1]))


# -- keys and numbers

@given(st.binary(max_size=5), st.lists(st.text(max_size=6)))
def test_prefixed_is_head_and_utf8(head: bytes, texts: list[str]) -> None:
    assert _ingest.prefixed(head, texts) == [
        head + t.encode("utf-8", "surrogateescape") for t in texts]


def test_prefixed_keeps_escaped_bytes() -> None:
    raw = b"\xff\xfeid"
    text = raw.decode("utf-8", "surrogateescape")
    assert _ingest.prefixed(b"q/", [text]) == [b"q/" + raw]


@given(st.binary(max_size=4), st.integers(0, 2**64 - 100), st.integers(0, 50))
def test_numbered_keys(head: bytes, first: int, n: int) -> None:
    assert _ingest.numbered(head, first, n) == [
        head + (first + i).to_bytes(8, "big") for i in range(n)]


@given(st.lists(st.text(alphabet="0123456789+ ٣a", max_size=34)))
def test_plain_numbers(numbers: list[str]) -> None:
    plain, digits = _ingest.plain_numbers(numbers)
    expect = [n.isascii() and n.isdigit() and len(n) <= 32 and not n.startswith("00")
              for n in numbers]
    assert plain.tolist() == expect
    assert digits.tolist() == [("+" + n).encode() if p else b""
                               for n, p in zip(numbers, expect, strict=True)]


@given(st.lists(st.tuples(st.text(max_size=8), st.integers(-3, 10))))
def test_heads(pairs: list[tuple[str, int]]) -> None:
    texts = [t for t, _ in pairs]
    lengths = np.array([n for _, n in pairs], dtype=np.int64)
    assert _ingest.heads(texts, lengths) == [t[:n] if n >= 0 else "" for t, n in pairs]
