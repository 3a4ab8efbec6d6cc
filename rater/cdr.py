"""Rating CDR files: canonical CSV, Asterisk Master.csv, FreeSWITCH cdr-csv.

Formats:

``canonical``  a header naming ``id,start,number,duration`` (any order, other
               columns ignored); ``start`` an ISO date-time (wall clock in the
               table's zone unless it carries an offset) or a UNIX time.
``asterisk``   cdr-csv ``Master.csv`` without a header: the dialled number is
               ``dst``, the call starts at ``answer`` (``start`` if
               unanswered), lasts ``billsec`` seconds, and ``uniqueid`` is its id.
``freeswitch`` mod_cdr_csv's default template: ``destination_number``,
               ``answer_stamp`` (else ``start_stamp``), ``billsec``, ``uuid``.

The output is CSV with the header
``id,start,number,duration,prefix,destination,billed_seconds,cost``; a call no
rate matches keeps its row with ``prefix``, ``destination``,
``billed_seconds`` and ``cost`` empty, and is counted as unmatched.

A malformed record stops the run with its file, line and column; no output
file is left behind (output goes to a temporary file renamed at the end).
Canonical files are read and rated in the compiled engine, a chunk at a
time, without the GIL; the other formats are parsed here and rated in batches.
"""

from __future__ import annotations

import csv
import io
import mmap
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

from ._engine import Engine
from .engine import Deck, rate_arrays
from .errors import CdrFileError, InvalidInstant, InvalidNumber, Problem
from .files import replacing
from .money import from_nano
from .numbers import normalise_number
from .progress import Progress
from .tariff import MAX_SECONDS
from .timeutil import parse_instant, zone

FORMATS = ("auto", "canonical", "asterisk", "freeswitch")
OUTPUT_HEADER = b"id,start,number,duration,prefix,destination,billed_seconds,cost\n"
CANONICAL_COLUMNS = ("id", "start", "number", "duration")

class Layout(NamedTuple):
    """Where a cdr-csv layout keeps each field (0-based columns), and what it calls them."""

    number: int
    answer: int
    start: int
    billsec: int
    id: int
    #: The fewest fields a record has.
    width: int
    username: int
    ani: int
    #: The layout's names of the start, answer and id fields (for error messages).
    names: tuple[str, str, str]


LAYOUTS = {
    # accountcode(0), src(1), dst(2), dcontext, clid, channel, dstchannel(6), lastapp,
    # lastdata, start(9), answer(10), end, duration, billsec(13), disposition(14),
    # amaflags, uniqueid(16)
    "asterisk": Layout(2, 10, 9, 13, 16, 17, 0, 1, ("start", "answer", "uniqueid")),
    # caller_id_name, caller_id_number(1), destination_number(2), context,
    # start_stamp(4), answer_stamp(5), end_stamp, duration, billsec(8), hangup_cause,
    # uuid(10), bleg_uuid, accountcode(12)
    "freeswitch": Layout(2, 5, 4, 8, 10, 13, 12, 1, ("start_stamp", "answer_stamp", "uuid")),
}

_CHUNK_ROWS = 65536
_OUT_BYTES = 8 << 20


@dataclass
class Summary:
    rows: int
    rated: int
    unmatched: int
    total_cost: Decimal
    currency: str
    seconds: float
    format: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {"rows": self.rows, "rated": self.rated, "unmatched": self.unmatched,
                "total_cost": str(self.total_cost), "currency": self.currency,
                "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_per_second), "format": self.format}


def detect_format(path: Path) -> str:
    """The format of a CDR file, from its first record."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        first = next(csv.reader(f), None)
    if first is None:
        raise CdrFileError([Problem(str(path), 1, None, None, "the file is empty")])
    names = {c.strip().lower() for c in first}
    if set(CANONICAL_COLUMNS) <= names:
        return "canonical"
    for fmt in ("asterisk", "freeswitch"):
        layout = LAYOUTS[fmt]
        if len(first) >= layout.width and _looks_like_time(first[layout.start]):
            return fmt
    raise CdrFileError([Problem(str(path), 1, None, None,
                                "cannot tell the CDR format (not a canonical header "
                                "id,start,number,duration, nor Asterisk or FreeSWITCH "
                                "cdr-csv)")], hint="name it with --format")


def _looks_like_time(text: str) -> bool:
    try:
        parse_instant(text, zone("UTC"))
        return True
    except InvalidInstant:
        return False


@contextmanager
def _output(out: str | Path | None) -> Iterator[BinaryIO]:
    """The output stream: stdout, or a temporary file renamed to ``out`` on success."""
    if out is None or str(out) == "-":
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    with replacing(Path(out)) as f:
        yield cast(BinaryIO, f)


def rate_file(deck: Deck, path: str | Path, out: str | Path | None = None, *,
              fmt: str = "auto", tech_prefix: str = "",
              progress: bool | None = None) -> Summary:
    """Rate every call of a CDR file against ``deck`` and write the rated CSV."""
    src = Path(path)
    if not src.is_file():
        raise CdrFileError([Problem(str(path), 0, None, None, "no such file")])
    if fmt not in FORMATS:
        raise CdrFileError([Problem(str(path), 0, None, None, f"unknown format {fmt!r}")])
    if fmt == "auto":
        fmt = detect_format(src)
    started = time.perf_counter()
    with _output(out) as sink, Progress("rating", src.stat().st_size, enabled=progress,
                                        unit="rows") as bar, deck.using() as engine:
        sink.write(OUTPUT_HEADER)
        if fmt == "canonical":
            rows, rated, unmatched, total = _rate_canonical(deck, engine, src, sink,
                                                            tech_prefix, bar)
        else:
            rows, rated, unmatched, total = _rate_layout(deck, engine, src, sink, fmt,
                                                         tech_prefix, bar)
    return Summary(rows=rows, rated=rated, unmatched=unmatched,
                   total_cost=from_nano(total, deck.table.rounding.decimals),
                   currency=deck.currency, seconds=time.perf_counter() - started, format=fmt)


def _rate_canonical(deck: Deck, engine: Engine, src: Path, sink: BinaryIO, tech_prefix: str,
                    bar: Progress) -> tuple[int, int, int, int]:
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    view = memoryview(data)
    try:
        end_header = bytes(view[:65536]).find(b"\n")
        header_bytes = bytes(view[:end_header if end_header >= 0 else len(view)])
        header = next(csv.reader([header_bytes.decode("utf-8-sig", errors="replace")]), [])
        names = [c.strip().lower() for c in header]
        missing = [c for c in CANONICAL_COLUMNS if c not in names]
        if missing:
            raise CdrFileError([Problem(str(src), 1, None, None,
                                        f"the header lacks {', '.join(missing)} "
                                        f"(canonical CDRs need id,start,number,duration)")])
        cols = [names.index(c) for c in CANONICAL_COLUMNS]
        ncols = max(cols) + 1
        if ncols > 64:
            raise CdrFileError([Problem(str(src), 1, None, None,
                                        "id, start, number and duration must be within "
                                        "the first 64 columns")])
        pos = len(view) if end_header < 0 else end_header + 1
        line = 2
        rows = rated = unmatched = total = 0
        out = bytearray(_OUT_BYTES)
        tp = tech_prefix.encode()
        while pos < len(view):
            (pos2, n, ok, miss, lines, hi, lo, written, error,
             err_pos) = engine.rate_csv(view, pos, _CHUNK_ROWS, cols[0], cols[1], cols[2],
                                        cols[3], ncols, tp, out)
            sink.write(memoryview(out)[:written])
            rows += n
            rated += ok
            unmatched += miss
            total += (hi << 64) | lo
            if error:
                raise _canonical_problem(deck, src, view, err_pos, line + lines, cols, ncols,
                                         error)
            line += lines
            if pos2 == pos:
                raise CdrFileError([Problem(str(src), line, None, None,
                                            "a record is too long to rate")])
            pos = pos2
            bar.set(pos, items=rows)
        return rows, rated, unmatched, total
    finally:
        view.release()
        if isinstance(data, mmap.mmap):
            data.close()


# What the compiled reader's error codes mean where the record alone cannot say it.
_READ_ERRORS = {4: "a quoted field is not closed before the end of the file",
                5: "a quoted field is longer than 1024 characters"}


def _canonical_problem(deck: Deck, src: Path, view: memoryview, at: int, line: int,
                       cols: list[int], ncols: int, error: int) -> CdrFileError:
    """The error for the bad record at byte ``at``, found again by the Python parser."""
    if error in _READ_ERRORS:
        return CdrFileError([Problem(str(src), line, None, None, _READ_ERRORS[error])])
    tail = bytes(view[at:at + (1 << 16)]).decode("utf-8", errors="replace")
    record = next(csv.reader(io.StringIO(tail, newline="")), [])
    problem = check_canonical(record, cols, ncols, deck, str(src), line)
    return CdrFileError([problem or Problem(str(src), line, None, None,
                                            "unreadable record")])


def check_canonical(record: Sequence[str], cols: list[int], ncols: int, deck: Deck,
                    path: str, line: int) -> Problem | None:
    """The problem with one canonical record, as the compiled reader sees it; None if fine."""
    if len(record) < ncols:
        return Problem(path, line, None, None,
                       f"{len(record)} fields, the header has at least {ncols}")
    start = record[cols[1]]
    if deck.engine.parse_instant(start) is None:
        return Problem(path, line, cols[1] + 1, "start",
                       f"{start!r} is not an ISO 8601 date-time or UNIX time in 1970..2099")
    duration = record[cols[3]].strip(" \t")
    if not (duration.isdigit() and duration.isascii()) or int(duration) > MAX_SECONDS:
        return Problem(path, line, cols[3] + 1, "duration",
                       f"{record[cols[3]]!r} is not a whole number of seconds")
    return None


def _rate_layout(deck: Deck, engine: Engine, src: Path, sink: BinaryIO, fmt: str,
                 tech_prefix: str, bar: Progress) -> tuple[int, int, int, int]:
    """Asterisk and FreeSWITCH files: parsed here, rated in batches."""
    import numpy as np

    layout = LAYOUTS[fmt]
    number_col, answer_col, start_col = layout.number, layout.answer, layout.start
    dur_col, id_col, width = layout.billsec, layout.id, layout.width
    parse = engine.parse_instant
    rows = rated = unmatched = total = 0
    names, dest_of, decimals_of = deck.row_facts(engine)
    consumed = 0

    def counted(f: Iterator[str]) -> Iterator[str]:
        nonlocal consumed
        for text in f:
            consumed += len(text)
            yield text

    with open(src, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(counted(f))
        batch: list[tuple[str, str, str, str, int, int, str]] = []
        line = 1

        def flush() -> None:
            nonlocal rated, unmatched, total
            if not batch:
                return
            # Raw numbers (the engine normalises them); one that is not a number is
            # sent empty, so that a NUL or an overlong string cannot be misread.
            raw = np.array([b[2].encode("utf-8", "surrogateescape") if b[6] else b""
                            for b in batch], dtype="S")
            result = rate_arrays(engine, raw, [b[4] for b in batch], [b[5] for b in batch],
                                 tech_prefix)
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            for (rid, start_text, number, dur_text, _, _, digits), c, b, r, p in zip(
                    batch, result.cost_nanos.tolist(), result.billed_seconds.tolist(),
                    result.row.tolist(), result.prefix_len.tolist(), strict=True):
                if c >= 0:
                    w.writerow([rid, start_text, number, dur_text, digits[:p],
                                names[dest_of[r]], b, from_nano(c, int(decimals_of[r]))])
                    rated += 1
                    total += c
                else:
                    w.writerow([rid, start_text, number, dur_text, "", "", "", ""])
                    unmatched += 1
            sink.write(buf.getvalue().encode())
            batch.clear()

        for record in reader:
            here = line
            line = reader.line_num + 1
            if not record:
                continue
            if len(record) < width:
                raise CdrFileError([Problem(str(src), here, None, None,
                                            f"{len(record)} fields; {fmt} cdr-csv has "
                                            f"at least {width}")])
            use_col = answer_col if record[answer_col].strip() else start_col
            start = parse(record[use_col])
            if start is None:
                raise CdrFileError([Problem(str(src), here, use_col + 1,
                                            "answer" if use_col == answer_col else "start",
                                            f"{record[use_col]!r} is not a date-time")])
            dur_text = record[dur_col].strip()
            if not (dur_text.isdigit() and dur_text.isascii()) or int(dur_text) > MAX_SECONDS:
                raise CdrFileError([Problem(str(src), here, dur_col + 1, "billsec",
                                            f"{record[dur_col]!r} is not a whole number "
                                            f"of seconds")])
            try:
                digits = normalise_number(record[number_col], tech_prefix)
            except InvalidNumber:
                digits = ""
            batch.append((record[id_col], record[use_col], record[number_col], dur_text,
                          start, int(dur_text), digits))
            rows += 1
            if len(batch) >= 8192:
                flush()
                bar.set(consumed, items=rows)
        flush()
    return rows, rated, unmatched, total

