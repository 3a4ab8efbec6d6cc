"""CDR ingestion: CDRs matched to accounts, priced, journaled and debited.

``import_cdrs`` reads a CDR file in two steps:

1. *Read.* The whole file is parsed and checked. A malformed record stops the
   import with its file, line, column and field; nothing is written.
2. *Bill.* A chunk of CDRs at a time, each CDR is matched to an account (so to
   a client), its number translated by the account's dial plan, priced with the
   rate table in force at its bill event (the client's setup, connect or
   disconnect time), and, in one LMDB write transaction per chunk, recorded
   (``q/``), indexed by period (``w/``), appended to the journal as a
   ``rated-call`` entry and debited from the client's balance.

A CDR's identity is (source, id). A CDR already recorded with the same content
is skipped, so importing a file again, or again after an interrupted import,
bills nothing twice; one recorded with other content is refused and reported.
CDRs no account or rate matches are recorded too, as *mismatches* with their
reason; ``rerate`` prices them once the data is fixed.

Formats: ``canonical`` (a header naming ``id,start,number,duration`` and any of
``ip,username,ani,vendor,setup``; ``start`` is the connect time and
``duration`` the answered seconds), ``asterisk`` (Master.csv: ``answer`` is the
connect time, ``billsec`` the duration, ``accountcode`` the username, ``src``
the ANI, the peer of ``dstchannel`` the vendor; the id is ``uniqueid`` with
what tells the legs of one call apart: ``dstchannel``, ``answer`` and
``disposition``), ``freeswitch`` (mod_cdr_csv: ``answer_stamp``, ``billsec``,
``uuid``, ``caller_id_number`` as ANI, ``accountcode`` as username).
Times without an offset are wall-clock times in ``timezone`` (default UTC).
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import msgpack

from .bundles import Allowances, covered, coverings, give_back
from .cdr import LAYOUTS, detect_format
from .clients import AccountIndex, Client, Registry, show_amount
from .config import CDR_CHUNK
from .engine import Deck, rate_arrays
from .errors import (
    CdrFileError,
    FileError,
    InvalidArgument,
    InvalidInstant,
    InvalidNumber,
    Problems,
    StoreError,
    UnknownTable,
)
from .journal import Entry, append, append_packed
from .numbers import normalise_number
from .progress import Progress
from .store import Store
from .tariff import MAX_SECONDS
from .timeutil import END_INSTANT, MIN_INSTANT, format_instant, parse_instant, zone

IMPORT_FORMATS = ("auto", "canonical", "asterisk", "freeswitch")
CANONICAL_OPTIONAL = ("ip", "username", "ani", "vendor", "setup")
#: Why a CDR is a mismatch.
REASONS = {
    "no-account": "no account matches",
    "client-deleted": "the account's client is deleted",
    "no-rate-table": "the client has no rate table at the call's time",
    "unknown-table": "the client's rate table does not exist",
    "currency": "the rate table is not in the client's currency",
    "bad-number": "the number is not a dialled number",
    "no-rate": "no rate for the number at the call's time",
}
_BLOCK = 65_536
_EPOCH = datetime(1970, 1, 1)
MAX_PROBLEMS = 20

# The record of a CDR (q/), a msgpack array: first what was received ...
R_START, R_DURATION, R_NUMBER, R_IP, R_USER, R_ANI, R_VENDOR, R_SETUP = range(8)
RECEIVED = 8
# ... then how it stands now.
(R_REV, R_REASON, R_CLIENT, R_ACCOUNT, R_AMOUNT, R_COST, R_DEST, R_PREFIX, R_BILLED,
 R_TABLE, R_DATE, R_E164, R_VENDOR_CLIENT, R_CURRENCY, R_VENDOR_CURRENCY) = range(8, 23)

_pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack
_unpack = msgpack.unpackb


# -- reading files

@dataclass
class Received:
    """Parsed CDRs, as parallel columns."""

    ids: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    anis: list[str] = field(default_factory=list)
    vendors: list[str] = field(default_factory=list)
    setups: list[int | None] = field(default_factory=list)
    #: From the compiled reader: each CDR's index into ``identities``, the file's
    #: distinct (ip, username, ani); None otherwise.
    codes: Any = None
    identities: list[tuple[str, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def _received(self) -> list[list[Any]]:
        """The columns of the received part of a record, in record order (R_START...)."""
        return [self.starts, self.durations, self.numbers, self.ips, self.users, self.anis,
                self.vendors, self.setups]

    def columns(self, lo: int, hi: int, offsets: list[int] | None = None) -> list[list[Any]]:
        """The received columns of CDRs lo..hi (only ``offsets`` within them, when given)."""
        if offsets is None:
            return [c[lo:hi] for c in self._received()]
        return [[c[lo + j] for j in offsets] for c in self._received()]

    def record(self, i: int) -> list[Any]:
        """The received part of CDR ``i``'s record."""
        return [c[i] for c in self._received()]


class InstantReader:
    """ISO date-times in one zone, fast: the offset is looked up once per minute."""

    def __init__(self, tz: str) -> None:
        self.tz_name = tz
        self.tz = zone(tz)
        self._minutes: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        s = text.strip()
        if len(s) == 19 and s[16] == ":" and s[10] in " T" and s[17:].isdigit():
            base = self._minutes.get(s[:16])
            if base is None:
                base = parse_instant(s[:16], self.tz)
                if len(self._minutes) < 200_000:
                    self._minutes[s[:16]] = base
            sec = int(s[17:])
            if sec < 60:
                return base + sec
        return parse_instant(s, self.tz)


def _seconds(text: str) -> int | None:
    s = text.strip()
    if s.isascii() and s.isdigit() and int(s) <= MAX_SECONDS:
        return int(s)
    return None


def read_cdrs(path: Path, fmt: str, timezone: str, progress: Progress | None = None
              ) -> Received:
    """Parse and check a whole CDR file (CdrFileError naming each problem)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "canonical":
        compiled = _canonical_compiled(path, timezone)
        if compiled is not None:
            if progress is not None:
                progress.set(len(compiled), items=len(compiled))
            return compiled
    instant = InstantReader(timezone)
    out = Received()
    problems = Problems(str(path), CdrFileError, MAX_PROBLEMS,
                        hint="fix the file and import it again: nothing was billed")
    try:
        f = open(path, newline="", encoding="utf-8-sig", errors="surrogateescape")  # noqa: SIM115
    except OSError as exc:
        raise FileError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        reader = _Reader(f)
        if fmt == "canonical":
            _read_canonical(reader, out, problems, instant, progress)
        elif fmt in ("asterisk", "freeswitch"):
            _read_layout(reader, fmt, out, problems, instant, progress)
        else:
            raise InvalidArgument(f"unknown CDR format {fmt!r}",
                                  hint="one of " + ", ".join(IMPORT_FORMATS))
    problems.raise_if_any()
    return out


class _Reader:
    """csv.reader that remembers its file (the canonical reader reads the rest in bulk)."""

    def __init__(self, f: Any) -> None:
        self.source = f
        self._rows = csv.reader(f)

    def __iter__(self) -> Iterator[list[str]]:
        return self._rows

    def __next__(self) -> list[str]:
        return next(self._rows)

    @property
    def line_num(self) -> int:
        return int(self._rows.line_num)


def _instant(instant: InstantReader, text: str, problems: Problems, line: int, col: int,
             name: str) -> int | None:
    try:
        return instant(text)
    except InvalidInstant:
        problems.add(line, col + 1, name, f"{text!r} is not an ISO 8601 date-time or "
                                          f"UNIX time in 1970..2099")
        return None


def _read_canonical(reader: Any, out: Received, problems: Problems, instant: InstantReader,
                    progress: Progress | None) -> None:
    header = next(reader, None)
    if header is None:
        problems.add(1, None, None, "the file is empty")
        return
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("id", "start", "number", "duration") if c not in names]
    if missing:
        problems.add(1, None, None, f"the header lacks {', '.join(missing)} "
                                    f"(id,start,number,duration are needed)")
        return
    col = {n: names.index(n) for n in ("id", "start", "number", "duration",
                                       *CANONICAL_OPTIONAL) if n in names}
    line = reader.line_num
    for block, single in _blocks(reader):
        first = line + 1
        line += len(block) if single else sum(1 + sum(f.count("\n") for f in r) for r in block)
        lines = range(first, first + len(block)) if single else _record_lines(block, first)
        _canonical_slow(block, lines, col, out, problems, instant)
        if progress is not None:
            progress.set(len(out), items=len(out))


def _blocks(reader: Any) -> Iterator[tuple[list[list[str]], bool]]:
    """The rest of a CSV file as blocks of records, and whether each record is one line.

    A file without quotes or carriage returns is split on commas and line ends
    directly (several times faster than the csv module, and the same result).
    """
    f = reader.source
    text = f.read()
    if '"' not in text and "\r" not in text:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for lo in range(0, len(lines), _BLOCK):
            yield [ln.split(",") if ln else [] for ln in lines[lo:lo + _BLOCK]], True
        return
    rows = csv.reader(io.StringIO(text))
    while True:
        before = rows.line_num
        block = list(itertools.islice(rows, _BLOCK))
        if not block:
            return
        yield block, rows.line_num - before == len(block)


def _record_lines(block: list[list[str]], first: int) -> list[int]:
    """The line each record starts on, when quoted fields hold line breaks."""
    lines = []
    at = first
    for record in block:
        lines.append(at)
        at += 1 + sum(f.count("\n") for f in record)
    return lines


def _canonical_compiled(path: Path, tz: str) -> Received | None:
    """The whole file read by the compiled splitter, or None when it needs the
    record-by-record reader (quotes, carriage returns, anything unusual or wrong)."""
    import numpy as np

    from . import _ingest

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    if b'"' in data or b"\r" in data:
        return None
    end = data.find(b"\n")
    header = (data if end < 0 else data[:end]).decode("utf-8", "surrogateescape")
    names = [h.strip().lower() for h in header.split(",")]
    if not all(n in names for n in ("id", "start", "number", "duration")):
        return None
    got = _ingest.split_canonical(data, len(data) if end < 0 else end + 1,
                                  *(names.index(n) if n in names else -1
                                    for n in ("id", "start", "number", "duration", "ip",
                                              "username", "ani", "vendor", "setup")))
    if got is None:
        return None
    ids, walls, durations, numbers, ips, users, anis, vendors, setup_walls, codes, who = got
    starts = utc_of_walls(walls, tz)
    if starts is None:
        return None
    n = len(ids)
    setups: list[int | None] = [None] * n
    given = np.flatnonzero(setup_walls >= 0)
    if len(given):
        at = utc_of_walls(setup_walls[given], tz)
        if at is None:
            return None
        for i, t in zip(given.tolist(), at.tolist(), strict=True):
            setups[i] = t
    return Received(ids, list(range(2, n + 2)), starts.tolist(), durations.tolist(), numbers,
                    ips, users, anis, vendors, setups, codes, who)


def utc_of_walls(local: Any, tz: str) -> Any:
    """Wall-clock seconds in ``tz`` as UTC seconds (numpy int64), the offset looked up
    once per distinct minute as parse_instant would; None if any lies outside 1970..2099.
    """
    import numpy as np

    if not len(local):
        return local
    if tz == "UTC":
        utc = local
    else:
        minutes, inverse = np.unique(local // 60, return_inverse=True)
        zone_ = zone(tz)
        base = np.array([int((_EPOCH + timedelta(minutes=m)).replace(tzinfo=zone_).timestamp())
                         for m in minutes.tolist()], dtype=np.int64)
        utc = base[inverse] + local % 60
    if int(utc.min()) < MIN_INSTANT or int(utc.max()) >= END_INSTANT:
        return None
    return utc


def _canonical_slow(block: list[list[str]], lines: Sequence[int], col: dict[str, int],
                    out: Received, problems: Problems, instant: InstantReader) -> None:
    ci, cs, cn, cd = col["id"], col["start"], col["number"], col["duration"]
    opt = [col.get(n) for n in CANONICAL_OPTIONAL]
    width = max(col.values()) + 1
    for record, here in zip(block, lines, strict=True):
        if not record:
            continue
        if len(record) < width:
            problems.add(here, None, None, f"{len(record)} fields; the header names {width}")
            continue
        rid = record[ci].strip()
        if not rid:
            problems.add(here, ci + 1, "id", "empty")
            continue
        start = _instant(instant, record[cs], problems, here, cs, "start")
        duration = _seconds(record[cd])
        if duration is None:
            problems.add(here, cd + 1, "duration",
                         f"{record[cd]!r} is not a whole number of seconds")
        setup = None
        if opt[4] is not None and record[opt[4]].strip():
            setup = _instant(instant, record[opt[4]], problems, here, opt[4], "setup")
        if start is None or duration is None:
            continue
        out.ids.append(rid)
        out.lines.append(here)
        out.starts.append(start)
        out.durations.append(duration)
        out.numbers.append(record[cn].strip())
        out.ips.append(record[opt[0]].strip() if opt[0] is not None else "")
        out.users.append(record[opt[1]].strip() if opt[1] is not None else "")
        out.anis.append(record[opt[2]].strip() if opt[2] is not None else "")
        out.vendors.append(record[opt[3]].strip() if opt[3] is not None else "")
        out.setups.append(setup)


def _peer(channel: str) -> str:
    """The peer of an Asterisk channel name: ``SIP/carrier1-0000002a`` -> ``carrier1``."""
    if "/" not in channel:
        return ""
    peer = channel.split("/", 1)[1]
    return peer.rsplit("-", 1)[0] if "-" in peer else peer


def _read_layout(reader: Any, fmt: str, out: Received, problems: Problems,
                 instant: InstantReader, progress: Progress | None) -> None:
    layout = LAYOUTS[fmt]
    c_user, c_ani, c_num, c_setup = layout.username, layout.ani, layout.number, layout.start
    c_answer, c_bill, c_id, width = layout.answer, layout.billsec, layout.id, layout.width
    setup_name, answer_name, id_name = layout.names
    line = 0
    for record in reader:
        here = line + 1
        line = reader.line_num
        if not record:
            continue
        if len(record) < width:
            problems.add(here, None, None, f"{len(record)} fields; {fmt} cdr-csv has at "
                                           f"least {width}")
            continue
        rid = record[c_id].strip()
        if not rid:
            problems.add(here, c_id + 1, id_name, "empty")
            continue
        setup = _instant(instant, record[c_setup], problems, here, c_setup, setup_name)
        answered = record[c_answer].strip()
        connect = setup
        if answered:
            connect = _instant(instant, answered, problems, here, c_answer, answer_name)
        billsec = _seconds(record[c_bill])
        if billsec is None:
            problems.add(here, c_bill + 1, "billsec",
                         f"{record[c_bill]!r} is not a whole number of seconds")
        if setup is None or connect is None or billsec is None:
            continue
        if not answered or (fmt == "asterisk" and record[14].strip() not in ("ANSWERED", "")):
            # Asterisk may record billsec for a leg it says was not answered (NO ANSWER,
            # BUSY...): such a leg is not a call to bill.
            billsec = 0
        if fmt == "asterisk":
            # One uniqueid for every leg of a call: the legs differ by these.
            rid = "|".join((rid, record[6].strip(), answered, record[14].strip()))
            vendor = _peer(record[6].strip())
        else:
            vendor = ""
        out.ids.append(rid)
        out.lines.append(here)
        out.starts.append(connect)
        out.durations.append(billsec)
        out.numbers.append(record[c_num].strip())
        out.ips.append("")
        out.users.append(record[c_user].strip())
        out.anis.append(record[c_ani].strip())
        out.vendors.append(vendor)
        out.setups.append(setup)
        if progress is not None and not len(out) & 0xFFFF:
            progress.set(len(out), items=len(out))


# -- pricing

class Pricer:
    """Matches received CDRs to accounts and prices them; holds the decks it opened."""

    def __init__(self, store: Store, index: AccountIndex | None = None) -> None:
        self.store = store
        self.index = index or AccountIndex(store)
        self._decks: dict[str, Deck | None] = {}
        # Remembered for the pricer's life: the index does not change under it.
        self._found: dict[tuple[str, str, str], Any] = {}
        self._account_facts: dict[int, tuple[Any, ...]] = {}
        # For the reader's list of distinct (ip, username, ani): that list, the slots of
        # price_columns and what is in them, and each entry's slot.
        self._who: tuple[list[tuple[str, str, str]], dict[int, int], list[tuple[Any, ...]],
                         Any] | None = None
        vendors = [c for c in self.index.clients.values() if c.vendor]
        self._vendor_by_name = {c.name: c for c in vendors}
        self._allowances: Allowances | None = None

    def allowances(self) -> Allowances:
        """The clients' included minutes (read once: a change makes the index stale)."""
        if self._allowances is None:
            self._allowances = Allowances(self.store)
        return self._allowances

    def rest_price(self, table: str, e164: str, date: int, seconds: int) -> tuple[int, int]:
        """(price, billed seconds) of what included minutes left of a call: a call of
        ``seconds`` at its own time (nothing when none are left)."""
        deck = self.deck(table)
        if seconds <= 0 or deck is None:
            return 0, 0
        with deck.using() as engine:
            cost, billed, _, _ = engine.rate("+" + e164, date, seconds)
        return max(cost, 0), max(billed, 0)

    def close(self) -> None:
        for d in self._decks.values():
            if d is not None:
                d.close()
        self._decks.clear()

    def renew(self) -> None:
        """Each open deck on its newest version, in a new read snapshot (a long-lived
        pricer does this now and then, so LMDB can reuse the pages freed since)."""
        for d in self._decks.values():
            if d is not None:
                d.refresh(renew=True)

    def __enter__(self) -> Pricer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deck(self, table: str) -> Deck | None:
        try:
            return self._decks[table]
        except KeyError:
            pass
        try:
            d: Deck | None = Deck(self.store, table)
        except UnknownTable:
            d = None
        self._decks[table] = d
        return d

    def vendor(self, text: str) -> Client | None:
        if not text:
            return None
        c = self._vendor_by_name.get(text)
        if c is not None:
            return c
        a = self.index.by_username.get(text) or self.index.at_address(text)
        if a is not None:
            c = self.index.clients[a.client]
            return c if c.vendor else None
        return None

    def price(self, rec: list[list[Any]]) -> None:
        """Fill in how each received record stands now (extends each to its full length)."""
        if not rec:
            return
        received = list(zip(*(r[:RECEIVED] for r in rec), strict=True))
        standing = [c.tolist() if not isinstance(c, list) else c
                    for c in self.price_columns(*received)]
        for r, s in zip(rec, zip(*standing, strict=True), strict=True):
            del r[RECEIVED:]
            r.extend(s)

    def price_columns(self, starts: Sequence[int], durations: Sequence[int],
                      numbers: Sequence[str], ips: Sequence[str], users: Sequence[str],
                      anis: Sequence[str], vendors: Sequence[str],
                      setups: Sequence[int | None], *,
                      who: tuple[Any, list[tuple[str, str, str]]] | None = None
                      ) -> list[Any]:
        """How each call stands now, as columns in record order (R_REV .. R_VENDOR_CURRENCY):
        lists, but int64 arrays for the amount, the billed seconds and the date.

        Work that depends only on the account (its client, dial plan, table,
        bill event) is done once per distinct account; the numbers are priced in
        one batch per rate table. ``who``: each call's index into a list of
        distinct (ip, username, ani), when the reader has it (then the accounts
        are found once for the whole list).
        """
        import numpy as np

        from . import _ingest

        n = len(starts)
        index = self.index
        # Each distinct (ip, username, ani) is matched once, unless tech prefixes are in use
        # (then the number takes part).
        accounts: list[Any] = []
        if index.by_tech or index.has_tech_on_ip:
            found = [index.find(ip, u, a, num) for ip, u, a, num
                     in zip(ips, users, anis, numbers, strict=True)]
            accounts = [f[0] for f in found]
            rest = [f[1] for f in found]
        else:
            rest = list(numbers)

        # What depends only on the account, once per distinct account (slot 0: no account).
        slot: dict[int, int] = {}
        per: list[tuple[Any, ...]] = [(None, "no-account", None, None, None, None, "connect")]
        if who is not None and self._who is not None and self._who[0] is who[1]:
            slot, per = self._who[1], self._who[2]

        def slot_of(a: Any) -> int:
            if a is None:
                return 0
            got = slot.get(a.id)
            if got is None:
                got = slot[a.id] = len(per)
                per.append(self._facts(a))
            return got

        if accounts:
            which = np.fromiter(map(slot_of, accounts), np.int64, n)
        else:
            if who is None:
                distinct: dict[tuple[str, str, str], int] = {}
                codes = np.fromiter((distinct.setdefault(k, len(distinct)) for k
                                     in zip(ips, users, anis, strict=True)), np.int64, n)
                identities = list(distinct)
                slots = np.array([slot_of(self._account(k)) for k in identities], np.int64)
            else:
                codes, identities = who
                if self._who is None or self._who[0] is not identities:
                    self._who = (identities, slot, per, np.array(
                        [slot_of(self._account(k)) for k in identities], np.int64))
                slots = self._who[3]
            which = slots[codes]
        table_of = [p[4] for p in per]
        account_col = _pick([p[0] for p in per], which)
        reason = _pick([p[1] for p in per], which)
        client_col = _pick([p[2] for p in per], which)
        currency_col = _pick([p[3] for p in per], which)
        table_col = _pick(table_of, which)
        date = np.asarray(starts, dtype=np.int64).copy()
        dur = np.asarray(durations, dtype=np.int64)
        late = np.array([p[6] == "disconnect" for p in per], bool)[which]
        date[late] += dur[late]
        # The numbers: E.164 as sent, unless the account has a dial plan or it needs cleaning.
        plans = [p[5] for p in per]
        special = [j for j, p in enumerate(per) if p[5] is not None or (
            p[2] is not None and p[4] is None) or p[6] == "setup"]
        plain, digits = _ingest.plain_numbers(rest)
        e164 = list(rest)
        rows = np.flatnonzero(~plain | np.isin(which, special)).tolist()
        for i in rows:
            if not plain[i]:
                e164[i] = ""
        for i in rows:
            kind = int(which[i])
            if reason[i] is not None:
                continue
            if kind in special:
                if per[kind][6] == "setup":
                    at = setups[i]
                    if at is not None:
                        date[i] = at
                if table_col[i] is None:
                    a = per[kind][7]
                    c = index.clients[a.client]
                    table_col[i] = a.rate_table or c.rate_table_at(int(date[i]))
                    if table_col[i] is None:
                        reason[i] = "no-rate-table"
                        continue
            plan = plans[kind]
            if plan is None and e164[i]:
                continue
            try:
                e164[i] = plan.to_e164(rest[i]) if plan is not None else normalise_number(rest[i])
            except InvalidNumber:
                reason[i] = "bad-number"
                continue
            # "+" first: the engine then cuts just that, and reads the digits as they are
            # (it would cut a leading "00" again, which "+00..." has kept).
            raw = ("+" + e164[i]).encode()
            if len(raw) > digits.itemsize:
                digits = digits.astype(f"S{len(raw)}")
            digits[i] = raw

        amount_arr = np.zeros(n, np.int64)
        billed_arr = np.zeros(n, np.int64)
        dest_arr = np.full(n, "", dtype=object)
        currency_arr = np.array(currency_col, dtype=object)
        prefix_len = np.full(n, -1, np.int64)
        cost: list[int | None] = [None] * n
        vendor_col: list[int | None] = [None] * n
        vendor_currency: list[str | None] = [None] * n
        # Only calls that are still priceable go to a table (not those a reason already stops).
        stopped = np.array([p[1] is not None for p in per], bool)[which]
        for i in rows:
            stopped[i] = reason[i] is not None
        tables = np.array(table_col, dtype=object)
        tables[stopped] = None
        for table in set(tables.tolist()) - {None}:
            idx = np.flatnonzero(tables == table)
            deck = self.deck(table)
            if deck is None:
                for i in idx.tolist():
                    reason[i] = "unknown-table"
                stopped[idx] = True
                continue
            # One hold of the deck for the prices and the rows they index (a refresh in
            # between would change the rows).
            with deck.using() as engine:
                result = rate_arrays(engine, digits[idx], date[idx], dur[idx])
                names, dest_of, _ = deck.row_facts(engine)
            ok = result.cost_nanos >= 0
            ok &= currency_arr[idx] == deck.currency
            for i, c_ in zip(idx[~ok].tolist(), result.cost_nanos[~ok].tolist(), strict=True):
                reason[i] = "no-rate" if c_ < 0 else "currency"
            stopped[idx[~ok]] = True
            good = idx[ok]
            amount_arr[good] = result.cost_nanos[ok]
            billed_arr[good] = result.billed_seconds[ok]
            dest_arr[good] = names[dest_of[result.row[ok]]]
            prefix_len[good] = result.prefix_len[ok]
        if any(vendors):
            groups: dict[str, list[int]] = {}
            for i, v in enumerate(vendors):
                if v and reason[i] is None:
                    vc = self.vendor(v)
                    if vc is not None and vc.term_table is not None:
                        vendor_col[i] = vc.id
                        groups.setdefault(vc.term_table, []).append(i)
            for table, ids in groups.items():
                deck = self.deck(table)
                if deck is None:
                    continue
                sel = np.array(ids, dtype=np.int64)
                result = deck.rate_batch(digits[sel], date[sel], dur[sel])
                for i, c_ in zip(ids, result.cost_nanos.tolist(), strict=True):
                    if c_ >= 0:
                        cost[i] = c_
                        vendor_currency[i] = deck.currency
        # A mismatch keeps what was found, but is dated by its start and costs nothing.
        failed = np.flatnonzero(stopped)
        amount_arr[failed] = 0
        billed_arr[failed] = 0
        dest_arr[failed] = ""
        prefix_len[failed] = -1
        date[failed] = np.asarray(starts, dtype=np.int64)[failed]
        for i in failed.tolist():
            cost[i] = vendor_currency[i] = None
        prefix = _ingest.heads(e164, prefix_len)
        return [[0] * n, reason, client_col, account_col, amount_arr, cost, dest_arr.tolist(),
                prefix, billed_arr, table_col, date, e164, vendor_col, currency_col,
                vendor_currency]

    def _facts(self, a: Any) -> tuple[Any, ...]:
        """What pricing needs of an account: (id, reason it cannot be billed, client id,
        currency, its only rate table, dial plan, bill event, the account)."""
        try:
            return self._account_facts[a.id]
        except KeyError:
            pass
        index = self.index
        c, why = index.client_of(a)
        got = self._account_facts[a.id] = (
            a.id, why, None if why else c.id, None if why else c.currency,
            a.rate_table or c.only_table(), index.plan(a), c.bill_by, a)
        return got

    def _account(self, who: tuple[str, str, str]) -> Any:
        """The account an (ip, username, ani) names (remembered for this pricer's life)."""
        try:
            return self._found[who]
        except KeyError:
            a = self._found[who] = self.index.find(who[0], who[1], who[2], "")[0]
            return a


def _pick(values: list[Any], which: Any) -> list[Any]:
    """``values[k]`` for each ``k`` of the int array ``which``, as a list."""
    import numpy as np

    table = np.empty(len(values), dtype=object)
    table[:] = values
    return list(table[which].tolist())


def _when_key(date: int, key: bytes) -> bytes:
    return date.to_bytes(8, "big") + key


def _call_facts(source: str, rid: str, r: list[Any]) -> list[Any]:
    return [source, rid, r[R_REV], r[R_E164], r[R_DATE], r[R_DURATION], r[R_BILLED],
            r[R_PREFIX], r[R_DEST], r[R_TABLE], r[R_ACCOUNT], r[R_COST], r[R_VENDOR_CLIENT]]


def _rerate_key(source: str, rid: str, rev: int, side: str) -> str:
    """The idempotency key of a rerate's entry (a rated call's is implied by its call)."""
    return f"rerate:{source}:{rid}:{rev}{side}"


# -- import

@dataclass
class ImportSummary:
    file: str
    source: str
    format: str
    rows: int = 0
    billed: int = 0
    mismatched: int = 0
    already: int = 0
    refused: list[str] = field(default_factory=list)
    #: Amount debited per currency, in nanos.
    amounts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "source": self.source, "format": self.format,
                "rows": self.rows, "billed": self.billed, "mismatched": self.mismatched,
                "already_imported": self.already, "refused": self.refused,
                "amounts": {c: show_amount(a) for c, a in sorted(self.amounts.items())},
                "mismatch_reasons": dict(sorted(self.reasons.items())),
                "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_per_second)}


def import_cdrs(store: Store, path: str | Path, *, fmt: str = "auto",
                source: str | None = None, timezone: str = "UTC",
                progress: Progress | None = None, chunk: int = CDR_CHUNK,
                after_chunk: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a CDR file (see the module's description)."""
    began = time.perf_counter()
    path = Path(path)
    if chunk < 1:
        raise InvalidArgument(f"chunk {chunk}: at least 1 CDR")
    if fmt not in IMPORT_FORMATS:
        raise InvalidArgument(f"unknown CDR format {fmt!r}",
                              hint="one of " + ", ".join(IMPORT_FORMATS))
    if not path.is_file():
        raise FileError(f"cannot read {path}: no such file")
    real_fmt = detect_format(path) if fmt == "auto" else fmt
    source = source or real_fmt
    if not source or "\0" in source or ":" in source:
        raise InvalidArgument(f"source {source!r}: not empty, no ':' or NUL")
    with _bulk():
        if progress is not None:
            progress.phase = "reading"
        received = read_cdrs(path, real_fmt, timezone, progress)
        summary = ImportSummary(str(path), source, real_fmt, rows=len(received))
        if progress is not None:
            progress.phase = None
            progress.total = len(received)
            progress.done = 0
            progress.items = None
        # Ids repeated within the file are told apart chunk by chunk; most files have none.
        seen_in_file: dict[bytes, int] | None = None
        if len(set(received.ids)) != len(received):
            seen_in_file = {}
        with Pricer(store) as pricer:
            for lo in range(0, len(received), chunk):
                hi = min(lo + chunk, len(received))
                _import_chunk(store, pricer, received, lo, hi, source, summary, seen_in_file)
                if progress is not None:
                    progress.advance(hi - lo)
                if after_chunk is not None:
                    after_chunk(hi)
    summary.seconds = time.perf_counter() - began
    return summary


def bill_call(store: Store, pricer: Pricer, source: str, cdr_id: str, start: int,
              duration: int, number: str, *, ip: str = "", username: str = "", ani: str = "",
              vendor: str = "", setup: int | None = None,
              also: Callable[[Any], None] | None = None) -> ImportSummary:
    """One CDR billed as ``cdr import`` bills each (RADIUS accounting's Stop), with the
    caller's ``also`` written in the same transaction."""
    received = Received([cdr_id], [0], [start], [duration], [number], [ip], [username], [ani],
                        [vendor], [setup])
    summary = ImportSummary("", source, "radius", rows=1)
    _import_chunk(store, pricer, received, 0, 1, source, summary, None, also)
    return summary


@contextmanager
def _bulk() -> Iterator[None]:
    """No cyclic garbage collection while millions of CDR objects (none in a cycle) live:
    each full collection would walk them all."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Raced(Exception):
    """Another import recorded some of a chunk's CDRs between reading and writing."""


def _import_chunk(store: Store, pricer: Pricer, received: Received, lo: int, hi: int,
                  source: str, summary: ImportSummary,
                  seen_in_file: dict[bytes, int] | None,
                  also: Callable[[Any], None] | None = None) -> None:
    from . import _ingest

    keys = _ingest.prefixed(store.calls.tag + source.encode() + b"\0", received.ids[lo:hi])
    todo: list[int] | None = None
    if seen_in_file is not None:
        todo = _new_in_file(received, lo, keys, summary, seen_in_file)
    for _ in range(3):
        try:
            _bill(store, pricer, received, lo, hi, keys, todo, source, summary, also)
            return
        except _Raced:
            continue
    raise StoreError("another import keeps recording the same CDRs; run this one again")


def _new_in_file(received: Received, lo: int, keys: list[bytes], summary: ImportSummary,
                 seen_in_file: dict[bytes, int]) -> list[int]:
    """Offsets of the chunk's CDRs not seen earlier in the file; repeats are counted."""
    todo = []
    for j, key in enumerate(keys):
        i = lo + j
        first = seen_in_file.get(key)
        if first is None:
            seen_in_file[key] = i
            todo.append(j)
        elif received.record(first) == received.record(i):
            summary.already += 1
        else:
            summary.refused.append(f"line {received.lines[i]}: id {received.ids[i]} repeats "
                                   f"line {received.lines[first]} with other content")
    return todo


def _bill(store: Store, pricer: Pricer, received: Received, lo: int, hi: int,
          keys: list[bytes], todo: list[int] | None, source: str,
          summary: ImportSummary, also: Callable[[Any], None] | None = None) -> None:
    """Price the chunk's new CDRs and record them, journal and debit, in one transaction
    (with ``also``, the caller's own writes, even when nothing is new).

    ``keys``: the chunk's call keys (``q/`` SOURCE \\0 ID).
    """
    import numpy as np

    from . import _ingest

    with store.read() as txn:
        known = dict(txn.cursor().getmulti(keys))
    if known:
        # Recorded before (a re-run, a replay): the same content is skipped, other refused.
        keep = []
        for j in (range(hi - lo) if todo is None else todo):
            old = known.get(keys[j])
            if old is None:
                keep.append(j)
            elif _unpack(old)[:RECEIVED] == received.record(lo + j):
                summary.already += 1
            else:
                summary.refused.append(f"line {received.lines[lo + j]}: id "
                                       f"{received.ids[lo + j]} was imported before with "
                                       f"other content")
        todo = keep
    cols = received.columns(lo, hi, todo)
    codes = None if received.codes is None else received.codes[lo:hi]
    if todo is not None:
        keys = [keys[j] for j in todo]
        ids = [received.ids[lo + j] for j in todo]
        if codes is not None:
            codes = codes[np.asarray(todo, dtype=np.int64)]
    else:
        ids = received.ids[lo:hi]
    if not keys:
        if also is not None:
            store.write(also)
        return
    n = len(keys)
    standing = pricer.price_columns(
        *cols, who=None if codes is None else (codes, received.identities))
    reason, client, amount, date = standing[1], standing[2], standing[4], standing[10]
    dates = np.asarray(date, dtype=np.int64)
    failed = [j for j, r in enumerate(reason) if r is not None]
    unmatched = [(store.unmatched.tag + int(date[j]).to_bytes(8, "big")
                  + keys[j][len(store.calls.tag):], b"") for j in failed]
    allowances = pricer.allowances()
    bundled: list[int] = []
    if allowances.by_client:
        mine = np.isin(np.asarray([-1 if c is None else c for c in client], np.int64),
                       list(allowances.by_client))
        mine &= np.asarray(cols[R_DURATION], np.int64) > 0
        bundled = [j for j in np.flatnonzero(mine).tolist() if reason[j] is None]
    if bundled:
        # What included minutes cover is read and taken in the writing transaction.
        priced = (np.array(amount, dtype=np.int64), np.array(standing[8], dtype=np.int64))
    written = int(time.time())

    def prepare(txn: Any) -> tuple[list[bytes], list[bytes], dict[int, int], list[Entry]]:
        covering: list[Entry] = []
        if bundled:
            standing[4][:], standing[8][:] = priced
            covering = _cover(pricer, allowances, txn, source, ids, keys, cols, standing,
                              bundled, written)
        amounts = np.asarray(standing[4], dtype=np.int64)
        debit = np.flatnonzero(amounts)
        records = _ingest.pack_rows((*cols, *standing), n)
        # Packed as Entry.pack does; a rated call's key ("cdr:SOURCE:ID") is implied by its
        # call.
        entries = _ingest.pack_rows((
            "rated-call", client, -amounts, written, date, None, None, None,
            (source, ids, 0, standing[11], date, cols[R_DURATION], standing[8], standing[7],
             standing[6], standing[9], standing[3], standing[5], standing[12]),
            None), n, debit)
        deltas: dict[int, int] = {}
        if len(debit):
            ids_of, where = np.unique(np.asarray(client, dtype=object)[debit].astype(np.int64),
                                      return_inverse=True)
            sums = np.zeros(len(ids_of), np.int64)
            np.add.at(sums, where, amounts[debit])
            deltas = {int(c): -int(t) for c, t in zip(ids_of.tolist(), sums.tolist(),
                                                       strict=True)}
        return records, entries, deltas, covering

    ready = None if bundled else prepare(None)
    moved: dict[int, int] = {}

    def apply(txn: Any) -> None:
        records, entries, deltas, covering = ready or prepare(txn)
        cur = txn.cursor()
        _, added = cur.putmulti(list(zip(keys, records, strict=True)), overwrite=False)
        if added != n:
            raise _Raced
        if entries:
            append_packed(store, txn, entries, {c: (d, 0) for c, d in deltas.items()})
        if covering:
            append(store, txn, covering)
        _index_dates(store, txn, source, dates, ids)
        if unmatched:
            cur.putmulti(unmatched)
        if also is not None:
            also(txn)
        moved.clear()
        moved.update(deltas)
        for e in covering:
            moved[e.client] = moved.get(e.client, 0) + e.amount

    store.write(apply)
    reasons = summary.reasons
    for j in failed:
        reasons[reason[j]] = reasons.get(reason[j], 0) + 1
    summary.mismatched += len(unmatched)
    summary.billed += n - len(unmatched)
    for c, d in moved.items():
        cur = pricer.index.clients[c].currency
        summary.amounts[cur] = summary.amounts.get(cur, 0) - d


def _cover(pricer: Pricer, allowances: Any, txn: Any, source: str, ids: list[str],
           keys: list[bytes], cols: Sequence[Any], standing: list[Any], bundled: list[int],
           now: int) -> list[Entry]:
    """Take the ``bundled`` calls' seconds from their clients' included minutes (in bill
    order), price what is left of each by its table, and return the bundle-call entries."""
    from .bundles import BUNDLE_TYPE

    tag = len(pricer.store.calls.tag)
    date, amount, billed = standing[10], standing[4], standing[8]
    covering = []
    for j in sorted(bundled, key=lambda j: (int(date[j]), j)):
        who = pricer.index.clients[standing[2][j]]
        found = allowances.for_call(who, int(date[j]), standing[11][j], standing[6][j])
        if not found:
            continue
        seconds = int(cols[R_DURATION][j])
        covered, price, took = allowances.take(txn, keys[j][tag:], seconds, found)
        if not covered:
            continue
        package = (took or [found[0][1]])[0].package
        amount[j], billed[j] = pricer.rest_price(standing[9][j], standing[11][j],
                                                 int(date[j]), seconds - covered)
        covering.append(Entry(
            0, BUNDLE_TYPE, who.id, -price, now, int(date[j]), f"cdr:{source}:{ids[j]}:bundle",
            None, None, [source, ids[j], 0, standing[11][j], int(date[j]), seconds, covered,
                         standing[7][j], f"{package}: included minutes",
                         standing[9][j], standing[3][j], None, None], None))
    return covering


def _index_dates(store: Store, txn: Any, source: str, dates: Any, ids: list[str]) -> None:
    """File calls under their dates (``w/``): one record per day of the batch, holding
    the source, and each call's date and id."""
    import numpy as np

    if not len(ids):
        return
    raw = store.meta.get(txn, b"last-date-batch")
    batch = int(raw) + 1 if raw else 1
    store.meta.put(txn, b"last-date-batch", str(batch).encode())
    days = dates // 86400
    order = np.argsort(days, kind="stable")
    bounds = np.flatnonzero(np.diff(days[order])) + 1
    names = np.empty(len(ids), dtype=object)
    names[:] = ids
    tag = store.when.tag
    puts = []
    for group in np.split(order, bounds):
        day = int(days[group[0]])
        puts.append((tag + day.to_bytes(4, "big") + batch.to_bytes(8, "big"),
                     _pack([source, dates[group].tolist(), names[group].tolist()])))
    txn.cursor().putmulti(puts)


def _dated_calls(store: Store, txn: Any, since: int, until: int) -> list[bytes]:
    """Keys (SOURCE \\0 ID) of the calls filed under a date in [since, until), each once.

    A call rerated to another date is filed under both; the caller keeps a call
    only if its record's date is in the period.
    """
    cur = txn.cursor()
    tag = store.when.tag
    out: dict[bytes, None] = {}
    if not cur.set_range(tag + (max(since, 0) // 86400).to_bytes(4, "big")):
        return []
    end = tag + ((until - 1) // 86400 + 1).to_bytes(4, "big")
    for k, raw in cur:
        if not k.startswith(tag) or k >= end:
            break
        source, dates, ids = _unpack(raw)
        head = source.encode() + b"\0"
        for d, rid in zip(dates, ids, strict=True):
            if since <= d < until:
                out[head + rid.encode("utf-8", "surrogateescape")] = None
    return list(out)


def usage(store: Store, since: int, until: int) -> dict[int, int]:
    """What each client's calls dated in [since, until) cost, as they stand now (their
    included minutes' price too), in nanos."""
    out: dict[int, int] = {}
    with store.read() as txn:
        keys = _dated_calls(store, txn, since, until)
        for key, raw in txn.cursor().getmulti([store.calls.tag + k for k in keys]):
            r = _unpack(raw)
            if r[R_REASON] is None and since <= r[R_DATE] < until:
                price = r[R_AMOUNT] + covered(store, txn, key[len(store.calls.tag):])[1]
                out[r[R_CLIENT]] = out.get(r[R_CLIENT], 0) + price
    return out


# -- reading back

def _period_keys(txn: Any, space: Any, since: int | None,
                 until: int | None) -> Iterator[bytes]:
    """Call keys (source \\0 id) of a period index, in date order."""
    cur = txn.cursor()
    tag = space.tag
    if not cur.set_range(tag + (since or 0).to_bytes(8, "big")):
        return
    end = None if until is None else tag + until.to_bytes(8, "big")
    for k in cur.iternext(keys=True, values=False):
        if not k.startswith(tag) or (end is not None and k >= end):
            break
        yield bytes(k[len(tag) + 8:])


@dataclass
class Mismatch:
    source: str
    id: str
    start: int
    number: str
    duration: int
    reason: str
    ip: str
    username: str
    ani: str
    vendor: str

    def to_json(self, tz: Any = None) -> dict[str, Any]:
        return {"source": self.source, "id": self.id,
                "start": format_instant(self.start, tz or zone("UTC")),
                "number": self.number, "duration": self.duration, "reason": self.reason,
                "explanation": REASONS.get(self.reason, self.reason), "ip": self.ip,
                "username": self.username, "ani": self.ani, "vendor": self.vendor}


def mismatches(store: Store, since: int | None = None, until: int | None = None
               ) -> list[Mismatch]:
    """CDRs kept as mismatches whose call started in [since, until), each once."""
    out = []
    with store.read() as txn:
        for key in _period_keys(txn, store.unmatched, since, until):
            r = _unpack(store.calls.get(txn, key))
            source, rid = key.decode("utf-8", "surrogateescape").split("\0", 1)
            out.append(Mismatch(source, rid, r[R_START], r[R_NUMBER], r[R_DURATION],
                                r[R_REASON], r[R_IP], r[R_USER], r[R_ANI], r[R_VENDOR]))
    return out


def call_amounts(store: Store, txn: Any) -> dict[tuple[str, str], int]:
    """What each billed call stands at, its included minutes' price too (for ``rater
    check``)."""
    out: dict[tuple[str, str], int] = {}
    for key, raw in store.calls.items(txn):
        r = _unpack(raw)
        if r[R_AMOUNT]:
            out[_call_id(key)] = r[R_AMOUNT]
    for key, price in coverings(store, txn):
        if price:
            k = _call_id(key)
            out[k] = out.get(k, 0) + price
    return out


def _call_id(key: bytes) -> tuple[str, str]:
    source, rid = key.decode("utf-8", "surrogateescape").split("\0", 1)
    return source, rid


# -- rerating

@dataclass
class RerateSummary:
    calls: int = 0
    changed: int = 0
    unchanged: int = 0
    now_billed: int = 0
    now_mismatched: int = 0
    skipped_deleted: int = 0
    #: Net change of what clients were charged, per currency (nanos; positive: more).
    delta: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "changed": self.changed, "unchanged": self.unchanged,
                "now_billed": self.now_billed, "now_mismatched": self.now_mismatched,
                "skipped_deleted_client": self.skipped_deleted,
                "charged_delta": {c: show_amount(a) for c, a in sorted(self.delta.items())},
                "seconds": round(self.seconds, 3)}


_STANDING = slice(R_REASON, R_VENDOR_CURRENCY + 1)


def rerate(store: Store, since: int, until: int, client: str | None = None, *,
           progress: Progress | None = None, chunk: int = CDR_CHUNK) -> RerateSummary:
    """Price again every call (mismatches included) whose date is in [since, until).

    A call whose price, client or match changed posts its old price reversed and
    its new price charged (``rerate`` entries); the call's record moves to its
    new standing. Calls of deleted clients keep their history and are skipped.
    With ``client``, only calls that were or now are that client's change.
    """
    began = time.perf_counter()
    if until <= since:
        raise InvalidArgument("--to must be after --from")
    summary = RerateSummary()
    with store.read() as txn:
        keys = _dated_calls(store, txn, since, until)
    if progress is not None:
        progress.total = len(keys)
    with Pricer(store) as pricer:
        cid = None if client is None else pricer.index.client_named(client).id
        for lo in range(0, len(keys), chunk):
            part = keys[lo:lo + chunk]
            _rerate_chunk(store, pricer, part, cid, since, until, summary)
            if progress is not None:
                progress.advance(len(part))
    summary.seconds = time.perf_counter() - began
    return summary


def _rerate_chunk(store: Store, pricer: Pricer, keys: list[bytes], cid: int | None,
                  since: int, until: int, summary: RerateSummary) -> None:
    import numpy as np

    tag = store.calls.tag
    with store.read() as txn:
        found = [(k[len(tag):], _unpack(v)) for k, v
                 in txn.cursor().getmulti([tag + k for k in keys])]
        # Only calls still dated in the period (one rerated out of it is filed there too).
        found = [(k, r) for k, r in found if since <= r[R_DATE] < until]
        taken = [covered(store, txn, k)[0] for k, _ in found]
    keys = [k for k, _ in found]
    olds = [r for _, r in found]
    deleted = {c.id for c in pricer.index.clients.values() if c.status == "deleted"}
    fresh = [list(o[:RECEIVED]) for o in olds]
    pricer.price(fresh)
    # A call's included minutes stay as they were taken: only the rest is priced again.
    # (A call now another client's, or a mismatch, gives its seconds back and is priced
    # whole.)
    released = []
    for k, (old, new, seconds) in enumerate(zip(olds, fresh, taken, strict=True)):
        if not seconds:
            continue
        if new[R_REASON] is None and new[R_CLIENT] == old[R_CLIENT]:
            new[R_AMOUNT], new[R_BILLED] = pricer.rest_price(
                new[R_TABLE], new[R_E164], new[R_DATE], new[R_DURATION] - seconds)
        else:
            released.append(k)
    now = int(time.time())

    def apply(txn: Any) -> RerateSummary:
        entries: list[Entry] = []
        puts: list[tuple[bytes, bytes]] = []
        moves: list[tuple[bytes, bytes | None, bytes | None]] = []
        redated: dict[str, tuple[list[int], list[str]]] = {}
        counts = RerateSummary()
        returned = set(released)
        for k, (key, expected, new) in enumerate(zip(keys, olds, fresh, strict=True)):
            raw = store.calls.get(txn, key)
            old = _unpack(raw)
            if old != expected:
                # Changed since it was read (a concurrent rerate): leave it to that one.
                continue
            if old[R_CLIENT] in deleted:
                counts.skipped_deleted += 1
                continue
            if cid is not None and cid not in (old[R_CLIENT], new[R_CLIENT]):
                continue
            counts.calls += 1
            if old[_STANDING] == new[_STANDING]:
                counts.unchanged += 1
                continue
            counts.changed += 1
            rev = old[R_REV] + 1
            new[R_REV] = rev
            source, rid = key.decode("utf-8", "surrogateescape").split("\0", 1)
            if k in returned:
                price = give_back(store, txn, key)
                if price:
                    entries.append(Entry(0, "rerate", old[R_CLIENT], price, now, old[R_DATE],
                                         _rerate_key(source, rid, rev, "b"), None,
                                         "included minutes given back",
                                         _call_facts(source, rid, old)))
            if old[R_AMOUNT]:
                entries.append(Entry(0, "rerate", old[R_CLIENT], old[R_AMOUNT], now,
                                     old[R_DATE], _rerate_key(source, rid, rev, "-"), None,
                                     "reversal", _call_facts(source, rid, old)))
                counts.delta[old[R_CURRENCY]] = (counts.delta.get(old[R_CURRENCY], 0)
                                                 - old[R_AMOUNT])
            if new[R_REASON] is None and new[R_AMOUNT]:
                entries.append(Entry(0, "rerate", new[R_CLIENT], -new[R_AMOUNT], now,
                                     new[R_DATE], _rerate_key(source, rid, rev, "+"), None,
                                     "new price", _call_facts(source, rid, new)))
                counts.delta[new[R_CURRENCY]] = (counts.delta.get(new[R_CURRENCY], 0)
                                                 + new[R_AMOUNT])
            if old[R_REASON] is not None and new[R_REASON] is None:
                counts.now_billed += 1
            elif old[R_REASON] is None and new[R_REASON] is not None:
                counts.now_mismatched += 1
            puts.append((key, _pack(new)))
            old_w, new_w = _when_key(old[R_DATE], key), _when_key(new[R_DATE], key)
            moves.append((key, old_w if old[R_REASON] is not None else None,
                          new_w if new[R_REASON] is not None else None))
            if new[R_DATE] != old[R_DATE]:
                redated.setdefault(source, ([], []))
                redated[source][0].append(new[R_DATE])
                redated[source][1].append(rid)
        for source, (dates, rids) in redated.items():
            _index_dates(store, txn, source, np.array(dates, dtype=np.int64), rids)
        if entries:
            append(store, txn, entries)
        for key, value in puts:
            store.calls.put(txn, key, value)
        for _, old_y, new_y in moves:
            if old_y is not None:
                store.unmatched.delete(txn, old_y)
            if new_y is not None:
                store.unmatched.put(txn, new_y, b"")
        return counts

    counts = store.write(apply)
    for name in ("calls", "changed", "unchanged", "now_billed", "now_mismatched",
                 "skipped_deleted"):
        setattr(summary, name, getattr(summary, name) + getattr(counts, name))
    for c, a in counts.delta.items():
        summary.delta[c] = summary.delta.get(c, 0) + a


# -- the summary report

@dataclass
class SummaryLine:
    client: str
    destination: str
    currency: str
    calls: int = 0
    seconds: int = 0
    billed_seconds: int = 0
    revenue: int = 0
    cost: int = 0
    #: Calls whose vendor cost is unknown (no vendor leg, or another currency).
    uncosted: int = 0

    @property
    def minutes(self) -> Decimal:
        return (Decimal(self.seconds) / 60).quantize(Decimal("0.01"), ROUND_HALF_UP)

    def to_json(self) -> dict[str, Any]:
        return {"client": self.client, "destination": self.destination,
                "currency": self.currency, "calls": self.calls, "minutes": str(self.minutes),
                "billed_minutes": str((Decimal(self.billed_seconds) / 60).quantize(
                    Decimal("0.01"), ROUND_HALF_UP)),
                "revenue": show_amount(self.revenue), "vendor_cost": show_amount(self.cost),
                "margin": show_amount(self.revenue - self.cost),
                "calls_without_cost": self.uncosted}


def summary_report(store: Store, since: int, until: int, client: str | None = None
                   ) -> tuple[list[SummaryLine], int]:
    """Answered calls per client and destination in [since, until); and the mismatches."""
    if until <= since:
        raise InvalidArgument("--to must be after --from")
    registry = Registry(store)
    names = {c.id: c.name for c in registry.clients()}
    cid = None if client is None else registry.client(client).id
    lines: dict[tuple[int, str], SummaryLine] = {}
    unmatched = 0
    with store.read() as txn:
        keys = _dated_calls(store, txn, since, until)
        tag = store.calls.tag
        for lo in range(0, len(keys), CDR_CHUNK):
            for _, raw in txn.cursor().getmulti([tag + k for k in keys[lo:lo + CDR_CHUNK]]):
                r = _unpack(raw)
                if not since <= r[R_DATE] < until:
                    continue                # rerated out of the period
                if r[R_REASON] is not None:
                    unmatched += cid is None
                    continue
                if (cid is not None and r[R_CLIENT] != cid) or not r[R_DURATION]:
                    continue
                k = (r[R_CLIENT], r[R_DEST])
                line = lines.get(k)
                if line is None:
                    line = lines[k] = SummaryLine(names.get(r[R_CLIENT], str(r[R_CLIENT])),
                                                  r[R_DEST], r[R_CURRENCY])
                line.calls += 1
                line.seconds += r[R_DURATION]
                line.billed_seconds += r[R_BILLED]
                line.revenue += r[R_AMOUNT]
                if r[R_COST] is not None and r[R_VENDOR_CURRENCY] == r[R_CURRENCY]:
                    line.cost += r[R_COST]
                else:
                    line.uncosted += 1
    return sorted(lines.values(), key=lambda s: (s.client, s.destination)), unmatched
