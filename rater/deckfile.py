"""Reading rate deck files: canonical CSV, what carriers actually send, and XLSX.

The canonical header is::

    prefix,destination,rate,connect_fee,increment,effective_from,effective_to,profile,from_second

``rate`` is the price per minute; ``increment`` is ``A/B`` (first A seconds,
then B-second increments; ``6`` means ``6/6``; default ``1/1``);
``effective_from`` an ISO date or date-time in the table's zone (blank: always);
``from_second`` starts a further tier of the same prefix, date and profile.
Only ``prefix`` and ``rate`` are required. Also understood: ``grace``,
``min_duration``, ``cap``, ``decimals`` and ``rounding`` per row.

Carrier headers are recognised by name (``Code``, ``Dial Code``,
``Cost / Min (USD)``, ``Initial Increment`` + ``Increment``, ``Connection
Cost``, ``Effective Date``...); a currency in a header, as in ``(USD)``, is
taken as the deck's currency. ``--columns field=Header`` (or ``field=3``, a
1-based column number) maps any other header. Separators ``,`` ``;`` and tab
are detected; with ``;`` or tab a decimal comma is accepted.

Nothing is stored here: the result is a list of validated rows, or a
:class:`DeckFileError` listing every problem with its file, line and column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .errors import DeckFileError, InvalidInstant, Problem, Problems
from .numbers import normalise_prefix
from .progress import Progress
from .tariff import MAX_SECONDS, Item, RateTable, Rounding, Stored, stored_problems
from .timeutil import parse_instant, zone

FIELDS = ("prefix", "destination", "rate", "connect_fee", "increment", "initial_increment",
          "effective_from", "effective_to", "profile", "from_second", "grace",
          "min_duration", "cap", "decimals", "rounding")

# Header names as operators' files spell them, after _normalise_header().
ALIASES: dict[str, str] = {}
for _field, _names in {
    "prefix": ["prefix", "prefixes", "code", "codes", "dial code", "dial codes", "dialcode",
               "dialing code", "dialling code", "destination code", "area code",
               "number prefix", "route code"],
    "destination": ["destination", "destination name", "dest", "description", "name",
                    "zone", "country", "route", "area"],
    "rate": ["rate", "rates", "price", "cost", "rate per min", "rate per minute", "rate min",
             "price per min", "price per minute", "price min", "cost per min",
             "cost per minute", "cost min", "per minute", "ppm", "new rate", "rate per min usd"],
    "connect_fee": ["connect fee", "connection fee", "connection cost", "connect cost",
                    "connection charge", "connect charge", "setup fee", "setup cost",
                    "conn fee", "connectfee"],
    "increment": ["increment", "increments", "billing increment", "billing increments",
                  "increment seconds", "interval", "billing interval", "next increment",
                  "subsequent increment", "billing", "billing unit"],
    "initial_increment": ["initial increment", "first increment", "initial interval",
                          "first interval", "min increment", "minimum increment", "initial"],
    "effective_from": ["effective from", "effective date", "effective", "valid from",
                       "start date", "effective since", "activation date", "date"],
    "effective_to": ["effective to", "end date", "valid to", "valid until", "expiry date",
                     "expiration date", "expires", "end"],
    "profile": ["profile", "time profile", "period", "time band", "timeband"],
    "from_second": ["from second", "from seconds", "tier from", "from"],
    "grace": ["grace", "grace time", "grace period", "grace seconds"],
    "min_duration": ["min duration", "minimum duration", "min billed duration",
                     "minimum billed duration"],
    "cap": ["cap", "cost cap", "max cost", "maximum cost"],
    "decimals": ["decimals", "rounding decimals"],
    "rounding": ["rounding", "rounding method"],
}.items():
    for _name in _names:
        ALIASES[_name] = _field

_CURRENCY_IN_HEADER = re.compile(r"\(\s*([A-Za-z]{3})\s*\)")
_CURRENCY_SIGNS = "$€£¥"


def _normalise_header(text: str) -> str:
    s = _CURRENCY_IN_HEADER.sub(" ", text.lower())
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return s.strip()


@dataclass
class ParsedDeck:
    """The rows of a deck file, ready to merge, and what was noticed on the way."""

    path: str
    rows: list[Item]
    lines: int
    warnings: list[str] = field(default_factory=list)
    currency: str | None = None

    @property
    def earliest(self) -> int | None:
        """The earliest effective date of the file's rows (None if none has one)."""
        dates = [r[2] for r in self.rows if r[2] is not None]
        return min(dates) if dates else None


def _read_table(path: Path, delimiter: str | None, sheet: str | None, problems: Problems
                ) -> tuple[Iterator[tuple[int, Sequence[Any]]], str, int | None]:
    """(line number, cells) of every record, the separator ('' for XLSX), the line count."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        sheet_rows, count = _read_xlsx(path, sheet, problems)
        return sheet_rows, "", count
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    if delimiter is None:
        nl = text.find("\n")
        first = text if nl < 0 else text[:nl]
        counts = {d: first.count(d) for d in (",", ";", "\t")}
        delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","

    def records() -> Iterator[tuple[int, Sequence[Any]]]:
        # strict: a stray or unclosed quote is an error, not a field swallowing lines
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        start = 1
        try:
            for cells in reader:
                yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DeckFileError([Problem(problems.path, start, None, None,
                                         f"not readable as CSV: {exc}")],
                                hint="check the quoting of that line") from None

    return records(), delimiter, text.count("\n") + 1


def _read_xlsx(path: Path, sheet: str | None, problems: Problems
               ) -> tuple[Iterator[tuple[int, Sequence[Any]]], int | None]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a bad file
        raise DeckFileError([Problem(problems.path, 1, None, None,
                                     f"not a readable XLSX workbook ({exc})")]) from None
    if sheet is not None and sheet not in book.sheetnames:
        book.close()
        raise DeckFileError([Problem(problems.path, 1, None, None,
                                     f"no sheet named {sheet!r} (sheets: "
                                     f"{', '.join(book.sheetnames)})")])
    ws = book[sheet] if sheet else book.worksheets[0]

    def records() -> Iterator[tuple[int, Sequence[Any]]]:
        i = 0
        try:
            for i, row in enumerate(ws.iter_rows(values_only=True), start=1):
                yield i, ["" if v is None else v for v in row]
        except Exception as exc:  # a damaged sheet: openpyxl raises many kinds
            raise DeckFileError([Problem(problems.path, i + 1, None, None,
                                         f"the sheet cannot be read past here ({exc})")]
                                ) from None
        finally:
            book.close()

    return records(), ws.max_row


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        # XLSX stores doubles; the shortest repr is the number that was typed.
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value).strip()


def _map_columns(header: Sequence[Any], columns: dict[str, str] | None, path: str,
                 problems: Problems) -> tuple[dict[str, int], list[str], set[str]]:
    """field -> column index; the ignored headers; currencies named in headers."""
    names = [_cell_text(h) for h in header]
    mapping: dict[str, int] = {}
    currencies: set[str] = set()
    for fld, spec in (columns or {}).items():
        if fld not in FIELDS:
            problems.add(1, None, None, f"--columns: unknown field {fld!r} "
                                        f"(fields: {', '.join(FIELDS)})")
            continue
        if spec.isdigit():
            idx = int(spec) - 1
            if not 0 <= idx < len(names):
                problems.add(1, None, None, f"--columns: {fld}={spec}: the file has "
                                            f"{len(names)} columns")
                continue
        else:
            found = [i for i, n in enumerate(names) if n.lower() == spec.strip().lower()]
            if not found:
                problems.add(1, None, None, f"--columns: {fld}={spec!r}: no such header "
                                            f"(headers: {', '.join(names)})")
                continue
            idx = found[0]
        mapping[fld] = idx
    explicit = set(mapping)
    claimed = set(mapping.values())
    for i, name in enumerate(names):
        alias = ALIASES.get(_normalise_header(name))
        if i in claimed or alias is None or alias in explicit:
            continue
        if alias in mapping:
            problems.add(1, i + 1, alias, f"headers {names[mapping[alias]]!r} and {name!r} "
                                          f"both read as {alias}; choose one with --columns")
            continue
        mapping[alias] = i
        m = _CURRENCY_IN_HEADER.search(name)
        if m and alias in ("rate", "connect_fee", "cap"):
            currencies.add(m[1].upper())
    ignored = [n for i, n in enumerate(names) if i not in mapping.values() and n]
    for required, examples in (("prefix", "Prefix, Code, Dial Code"),
                               ("rate", "Rate, Price, Cost / Min")):
        if required not in mapping:
            problems.add(1, None, required, f"no {required} column (looked for headers such as "
                                            f"{examples}; map one with --columns "
                                            f"{required}=HEADER)")
    return mapping, ignored, currencies


_AMOUNT = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")


def parse_nanos(text: str, decimal_comma: bool = False) -> int:
    """An exact, non-negative amount of money in nanos; ValueError naming the problem.

    A leading currency sign is allowed; with ``decimal_comma`` so is ``0,05``.
    """
    whole, dot, frac = text.partition(".")
    if whole.isdigit() and whole.isascii() and (
            not dot or (frac.isdigit() and frac.isascii() and len(frac) <= 9)):
        return int(whole) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    t = text.strip().lstrip(_CURRENCY_SIGNS).strip()
    if decimal_comma and "," in t and "." not in t:
        t = t.replace(",", ".")
    m = _AMOUNT.fullmatch(t)
    if m is None or not (m[2] or m[3]):
        raise ValueError(f"{text!r} is not a number")
    frac = (m[3] or "").rstrip("0")
    if len(frac) > 9:
        raise ValueError(f"{text!r} has more than 9 decimal places")
    nanos = int(m[2] or 0) * 1_000_000_000 + int(frac.ljust(9, "0"))
    if m[1] == "-" and nanos:
        raise ValueError(f"{text!r} is negative")
    return nanos


def parse_deck(path: str | Path, table: RateTable, *, columns: dict[str, str] | None = None,
               delimiter: str | None = None, sheet: str | None = None,
               on_duplicate: str = "error", progress: Progress | None = None) -> ParsedDeck:
    """Read and validate a deck file against ``table`` (its zone, profiles, rounding)."""
    p = Path(path)
    shown = str(path)
    problems = Problems(shown, DeckFileError)
    if not p.is_file():
        raise DeckFileError([Problem(shown, 0, None, None, "no such file")])
    if on_duplicate not in ("error", "first", "last"):
        raise DeckFileError([Problem(shown, 0, None, None,
                                     "--on-duplicate must be error, first or last")])
    records, sep, total = _read_table(p, delimiter, sheet, problems)
    if progress is not None:
        progress.total = total
    try:
        _, header = next(records)
    except StopIteration:
        raise DeckFileError([Problem(shown, 1, None, None, "the file is empty")]) from None
    mapping, ignored, currencies = _map_columns(header, columns, shown, problems)
    problems.raise_if_any()
    warnings: list[str] = []
    if ignored:
        warnings.append(f"{shown}: ignored columns: {', '.join(ignored)}")
    if len(currencies) > 1:
        problems.add(1, None, None, f"headers name several currencies: "
                                    f"{', '.join(sorted(currencies))}")
    parse_line = _LineParser(mapping, table, sep in (";", "\t"), sep == "", problems)

    # Lines of one row (its tiers) share prefix, profile and effective date.
    groups: dict[tuple[str, str, int | None], dict[int, tuple[int, tuple[Any, ...]]]] = {}
    lines = 1
    repeated = False
    for line, cells in records:
        lines = line
        if progress is not None and not line & 0x1FFF:
            progress.set(line)
        parsed = parse_line(line, cells)
        if parsed is None:
            continue
        key = parsed[0]
        fs = parsed[1]
        tiers = groups.get(key)
        if tiers is None:
            groups[key] = {fs: (line, parsed)}
            continue
        if fs in tiers:
            first_line = tiers[fs][0]
            what = (f"prefix {key[0]}" + (f", profile {key[1]}" if key[1] else "")
                    + (f", effective {parse_line.text(cells, 'effective_from')}" if key[2] else "")
                    + (f", from second {fs}" if fs else ""))
            if on_duplicate == "error":
                problems.add(line, _col(mapping, "prefix"), "prefix",
                             f"{what} is already on line {first_line}")
                repeated = True
                continue
            warnings.append(f"{shown}:{line}: {what} repeats line {first_line}; "
                            f"kept the {on_duplicate} one")
            if on_duplicate == "first":
                continue
        tiers[fs] = (line, parsed)
    hint = "nothing was imported; the previous deck is still in force"
    problems.raise_if_any(hint=hint + ("; --on-duplicate first|last keeps one of repeated rows"
                                       if repeated else ""))

    rows: list[Item] = []
    for key, tiers in groups.items():
        item, line = _assemble(key, tiers, mapping, problems)
        if item is None:
            continue
        for fld, message in stored_problems(item[3], table.rounding, key[2]):
            problems.add(line, _col(mapping, fld), fld, message)
        rows.append(item)
    problems.raise_if_any(hint=hint)
    return ParsedDeck(path=shown, rows=rows, lines=lines, warnings=warnings,
                      currency=next(iter(currencies)) if len(currencies) == 1 else None)


def _col(mapping: dict[str, int], fld: str) -> int | None:
    idx = mapping.get("rate" if fld == "unit" else fld)
    return None if idx is None else idx + 1


class _LineParser:
    """Turns one record into (key, from_second, fields...), or None after noting its problems.

    Called once per line of decks of hundreds of thousands of lines, so the
    common case (a few plain columns) takes the short way.
    """

    def __init__(self, mapping: dict[str, int], table: RateTable, decimal_comma: bool,
                 cells_are_values: bool, problems: Problems) -> None:
        self.mapping = mapping
        self.table = table
        self.tz: ZoneInfo = zone(table.timezone)
        self.decimal_comma = decimal_comma
        self.convert = _cell_text if cells_are_values else str.strip
        self.problems = problems
        self.optional = [(f, i) for f, i in mapping.items()
                         if f not in ("prefix", "rate", "destination", "connect_fee",
                                      "increment")]
        self.width = max(mapping.values()) + 1
        self._amounts: dict[str, int] = {}

    def text(self, cells: Sequence[Any], fld: str) -> str:
        idx = self.mapping.get(fld)
        if idx is None or idx >= len(cells):
            return ""
        return str(self.convert(cells[idx]))

    def bad(self, line: int, fld: str, message: str) -> None:
        self.problems.add(line, _col(self.mapping, fld), fld, message)

    def nanos(self, line: int, fld: str, text: str) -> int:
        # Decks repeat the same few prices and fees on thousands of lines.
        value = self._amounts.get(text)
        if value is not None:
            return value
        try:
            value = self._amounts[text] = parse_nanos(text, self.decimal_comma)
            return value
        except ValueError as exc:
            self.bad(line, fld, str(exc))
            return 0

    def __call__(self, line: int, cells: Sequence[Any]) -> tuple[Any, ...] | None:
        if len(cells) < self.width:
            cells = [*cells, *([""] * (self.width - len(cells)))]
        convert = self.convert
        m = self.mapping
        problems = self.problems
        before = problems.total
        raw = convert(cells[m["prefix"]])
        rate_text = convert(cells[m["rate"]])
        i = m.get("destination")
        dest = convert(cells[i]) if i is not None else ""
        i = m.get("connect_fee")
        fee_text = convert(cells[i]) if i is not None else ""
        i = m.get("increment")
        inc = convert(cells[i]) if i is not None else ""
        opt = {f: convert(cells[i]) for f, i in self.optional}
        if not (raw or rate_text or dest or fee_text or inc or any(opt.values())):
            return None            # a blank line

        try:
            prefix = normalise_prefix(raw)
        except ValueError as exc:
            prefix = raw
            self.bad(line, "prefix", str(exc))
        if rate_text:
            rate = self.nanos(line, "rate", rate_text)
        else:
            rate = 0
            self.bad(line, "rate", "a rate is required")
        fee = self.nanos(line, "connect_fee", fee_text) if fee_text else 0

        first = opt.get("initial_increment", "")
        if first and not (first.isdigit() and first.isascii()):
            self.bad(line, "initial_increment", f"{first!r} is not a whole number of seconds")
            first = ""
        a, b = (int(first), 1) if first else (1, 1)
        if inc:
            mi = _INCREMENT.fullmatch(inc)
            if mi is None:
                self.bad(line, "increment", f"{inc!r} is not an increment such as 60/6 or 6")
            elif mi[2] is not None:
                a, b = int(mi[1]), int(mi[2])
            else:
                b = int(mi[1])
                a = int(first) if first else b
        if not (1 <= a <= 86400 and 1 <= b <= 86400):
            self.bad(line, "increment", f"increments must be 1..86400 seconds, not {a}/{b}")

        eff_from = eff_to = cap = decimals = None
        from_s = grace = min_s = 0
        profile = method = ""
        if opt:
            eff_from = self.instant(line, opt, "effective_from")
            eff_to = self.instant(line, opt, "effective_to")
            from_s = self.seconds(line, opt, "from_second")
            grace = self.seconds(line, opt, "grace")
            min_s = self.seconds(line, opt, "min_duration")
            t = opt.get("cap")
            cap = self.nanos(line, "cap", t) if t else None
            profile = opt.get("profile", "")
            if profile and profile not in self.table.profiles:
                known = ", ".join(self.table.profiles) or "none defined"
                self.bad(line, "profile", f"unknown profile {profile!r} (profiles of "
                                          f"{self.table.name}: {known})")
            dec = opt.get("decimals", "")
            method = opt.get("rounding", "").lower()
            if dec or method:
                if dec and not (dec.isdigit() and dec.isascii()):
                    self.bad(line, "decimals", f"{dec!r} is not a number of decimal places")
                else:
                    try:
                        r = Rounding(int(dec) if dec else self.table.rounding.decimals,
                                     method or self.table.rounding.method)
                        decimals, method = r.decimals, r.method
                    except ValueError as exc:
                        self.bad(line, "rounding" if method else "decimals", str(exc))
        if problems.total != before:
            return None
        return ((prefix, profile, eff_from), from_s, dest, rate, fee,
                a, b, min_s, grace, cap, decimals, method or None, eff_to)

    def seconds(self, line: int, opt: dict[str, str], fld: str) -> int:
        t = opt.get(fld)
        if not t:
            return 0
        if not (t.isdigit() and t.isascii()) or int(t) > MAX_SECONDS:
            self.bad(line, fld, f"{t!r} is not a whole number of seconds")
            return 0
        return int(t)

    def instant(self, line: int, opt: dict[str, str], fld: str) -> int | None:
        t = opt.get(fld)
        if not t:
            return None
        try:
            return parse_instant(t, self.tz)
        except InvalidInstant as exc:
            self.bad(line, fld, exc.message)
            return None


_INCREMENT = re.compile(r"\s*([0-9]+)\s*(?:/\s*([0-9]+)\s*)?")


def _assemble(key: tuple[str, str, int | None], tiers: dict[int, tuple[int, tuple[Any, ...]]],
              mapping: dict[str, int], problems: Problems) -> tuple[Item | None, int]:
    """One row from its lines (one per tier); the first tier's line carries the row's fields."""
    if len(tiers) == 1 and 0 in tiers:       # the common case: one line, no further tiers
        line, (_, _, dest, rate, fee, a, b, min_s, grace, cap, decimals, method,
               eff_to) = tiers[0]
        price = [[0, rate, 60, a]] if a == b else [[0, rate, 60, a], [a, rate, 60, b]]
        return (key[0], key[1], key[2],
                [0, dest, fee, price, min_s, grace, cap, decimals, method, eff_to]), line
    starts = sorted(tiers)
    line, head = tiers[starts[0]]
    if starts[0] != 0:
        problems.add(line, _col(mapping, "from_second"), "from_second",
                     f"prefix {key[0]} has tiers from second {starts[0]} but none from 0")
        return None, line
    out: list[list[int]] = []
    for i, s in enumerate(starts):
        tline, t = tiers[s]
        rate, a, b = t[3], t[5], t[6]
        nxt = starts[i + 1] if i + 1 < len(starts) else None
        if nxt is not None and s + a > nxt:
            problems.add(tline, _col(mapping, "increment"), "increment",
                         f"the first increment ({a} s) runs past the next tier at second {nxt}")
            return None, line
        out.append([s, rate, 60, a])
        if a != b and (nxt is None or s + a < nxt):
            out.append([s + a, rate, 60, b])
    _, _, dest, _, fee, _, _, min_s, grace, cap, decimals, method, eff_to = head
    stored: Stored = [0, dest, fee, out, min_s, grace, cap, decimals, method, eff_to]
    return (key[0], key[1], key[2], stored), line
