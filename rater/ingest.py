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

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import msgpack

from .cdr import detect_format
from .clients import AccountIndex, Client, show_amount
from .engine import Deck
from .errors import (
    CdrFileError,
    FileError,
    InvalidArgument,
    InvalidInstant,
    InvalidNumber,
    Problem,
    UnknownTable,
)
from .journal import Entry, append
from .numbers import normalise_number
from .progress import Progress
from .store import Store
from .tariff import MAX_SECONDS
from .timeutil import format_instant, parse_instant, zone

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
CHUNK = 50_000
MAX_PROBLEMS = 20

# The record of a CDR (q/), a msgpack array: first what was received ...
R_START, R_DURATION, R_NUMBER, R_IP, R_USER, R_ANI, R_VENDOR, R_SETUP = range(8)
RECEIVED = 8
# ... then how it stands now.
(R_REV, R_REASON, R_CLIENT, R_ACCOUNT, R_AMOUNT, R_COST, R_DEST, R_PREFIX, R_BILLED,
 R_TABLE, R_DATE, R_E164, R_VENDOR_CLIENT, R_CURRENCY, R_VENDOR_CURRENCY) = range(8, 23)
#: The call facts kept in a rated-call journal entry.

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

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, i: int) -> list[Any]:
        """The received part of CDR ``i``'s record."""
        return [self.starts[i], self.durations[i], self.numbers[i], self.ips[i], self.users[i],
                self.anis[i], self.vendors[i], self.setups[i]]


class InstantReader:
    """ISO date-times in one zone, fast: the offset is looked up once per minute."""

    def __init__(self, tz: str) -> None:
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


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.found: list[Problem] = []
        self.total = 0

    def add(self, line: int, column: int | None, field_: str | None, message: str) -> None:
        self.total += 1
        if len(self.found) < MAX_PROBLEMS:
            self.found.append(Problem(self.path, line, column, field_, message))

    def raise_any(self) -> None:
        if self.total:
            raise CdrFileError(self.found, total=self.total,
                               hint="fix the file and import it again: nothing was billed")


def read_cdrs(path: Path, fmt: str, timezone: str, progress: Progress | None = None
              ) -> Received:
    """Parse and check a whole CDR file (CdrFileError naming each problem)."""
    if fmt == "auto":
        fmt = detect_format(path)
    instant = InstantReader(timezone)
    out = Received()
    problems = _Problems(path)
    try:
        f = open(path, newline="", encoding="utf-8-sig", errors="surrogateescape")  # noqa: SIM115
    except OSError as exc:
        raise FileError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        reader = csv.reader(f)
        if fmt == "canonical":
            _read_canonical(reader, out, problems, instant, progress)
        elif fmt in ("asterisk", "freeswitch"):
            _read_layout(reader, fmt, out, problems, instant, progress)
        else:
            raise InvalidArgument(f"unknown CDR format {fmt!r}",
                                  hint="one of " + ", ".join(IMPORT_FORMATS))
    problems.raise_any()
    return out


def _instant(instant: InstantReader, text: str, problems: _Problems, line: int, col: int,
             name: str) -> int | None:
    try:
        return instant(text)
    except InvalidInstant:
        problems.add(line, col + 1, name, f"{text!r} is not an ISO 8601 date-time or "
                                          f"UNIX time in 1970..2099")
        return None


def _read_canonical(reader: Any, out: Received, problems: _Problems, instant: InstantReader,
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
    ci, cs, cn, cd = col["id"], col["start"], col["number"], col["duration"]
    opt = [col.get(n) for n in CANONICAL_OPTIONAL]
    width = max(col.values()) + 1
    line = 1
    for record in reader:
        here = line + 1
        line = reader.line_num
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
        if progress is not None and not len(out) & 0xFFFF:
            progress.set(len(out), items=len(out))


def _peer(channel: str) -> str:
    """The peer of an Asterisk channel name: ``SIP/carrier1-0000002a`` -> ``carrier1``."""
    if "/" not in channel:
        return ""
    peer = channel.split("/", 1)[1]
    return peer.rsplit("-", 1)[0] if "-" in peer else peer


def _read_layout(reader: Any, fmt: str, out: Received, problems: _Problems,
                 instant: InstantReader, progress: Progress | None) -> None:
    if fmt == "asterisk":
        # accountcode, src, dst, ..., dstchannel(6), ..., start(9), answer(10), end(11),
        # duration(12), billsec(13), disposition(14), amaflags(15), uniqueid(16)
        c_user, c_ani, c_num, c_setup, c_answer, c_bill, c_id, width = 0, 1, 2, 9, 10, 13, 16, 17
    else:
        # caller_id_name, caller_id_number(1), destination_number(2), context,
        # start_stamp(4), answer_stamp(5), end_stamp, duration, billsec(8), hangup_cause,
        # uuid(10), bleg_uuid, accountcode(12)
        c_user, c_ani, c_num, c_setup, c_answer, c_bill, c_id, width = 12, 1, 2, 4, 5, 8, 10, 11
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
            problems.add(here, c_id + 1, "uniqueid" if fmt == "asterisk" else "uuid", "empty")
            continue
        setup = _instant(instant, record[c_setup], problems, here, c_setup,
                         "start" if fmt == "asterisk" else "start_stamp")
        answered = record[c_answer].strip()
        connect = setup
        if answered:
            connect = _instant(instant, answered, problems, here, c_answer,
                               "answer" if fmt == "asterisk" else "answer_stamp")
        billsec = _seconds(record[c_bill])
        if billsec is None:
            problems.add(here, c_bill + 1, "billsec",
                         f"{record[c_bill]!r} is not a whole number of seconds")
        if setup is None or connect is None or billsec is None:
            continue
        if not answered:
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
        out.users.append(record[c_user].strip() if len(record) > c_user else "")
        out.anis.append(record[c_ani].strip())
        out.vendors.append(vendor)
        out.setups.append(setup)
        if progress is not None and not len(out) & 0xFFFF:
            progress.set(len(out), items=len(out))


# -- pricing

def bill_instant(client: Client, start: int, duration: int, setup: int | None) -> int:
    """The instant that prices a call and places it in a period."""
    if client.bill_by == "connect":
        return start
    if client.bill_by == "disconnect":
        return start + duration
    return start if setup is None else setup


class Pricer:
    """Matches received CDRs to accounts and prices them; holds the decks it opened."""

    def __init__(self, store: Store, index: AccountIndex | None = None) -> None:
        self.store = store
        self.index = index or AccountIndex(store)
        self._decks: dict[str, Deck | None] = {}
        self._names: dict[str, tuple[list[str], Any]] = {}
        vendors = [c for c in self.index.clients.values() if c.vendor]
        self._vendor_by_name = {c.name: c for c in vendors}

    def close(self) -> None:
        for d in self._decks.values():
            if d is not None:
                d.close()
        self._decks.clear()

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
        a = self.index.by_username.get(text)
        if a is None:
            hits = self.index._ip_accounts(text) if self.index._nets else None
            a = hits[-1][1] if hits else None
        if a is not None:
            c = self.index.clients[a.client]
            return c if c.vendor else None
        return None

    def destinations(self, table: str, deck: Deck) -> tuple[list[str], Any]:
        """The deck's destination names and each row's index into them."""
        found = self._names.get(table)
        if found is None:
            with deck.using() as engine:
                found = self._names[table] = (engine.destination_names(),
                                              deck._row_field(engine, "dest").tolist())
        return found

    def price(self, rec: list[list[Any]]) -> None:
        """Fill in how each received record stands now (extends each to its full length)."""
        index = self.index
        groups: dict[str, list[int]] = {}
        digits: list[bytes] = [b""] * len(rec)
        vendor_groups: dict[str, list[int]] = {}
        for i, r in enumerate(rec):
            del r[RECEIVED:]
            r.extend((0, None, None, None, 0, None, "", "", 0, None, r[R_START], "", None,
                      None, None))
            m = index.match(r[R_IP], r[R_USER], r[R_ANI], r[R_NUMBER])
            account = m.account
            if account is not None:
                r[R_ACCOUNT] = account.id
            if m.reason is not None or account is None or m.client is None:
                r[R_REASON] = m.reason or "no-account"
                continue
            client = m.client
            r[R_CLIENT] = client.id
            r[R_CURRENCY] = client.currency
            date = bill_instant(client, r[R_START], r[R_DURATION], r[R_SETUP])
            r[R_DATE] = date
            plan = index.plan(account)
            try:
                e164 = plan.to_e164(m.number) if plan else normalise_number(m.number)
            except InvalidNumber:
                r[R_REASON] = "bad-number"
                continue
            r[R_E164] = e164
            table = account.rate_table or client.rate_table_at(date)
            if table is None:
                r[R_REASON] = "no-rate-table"
                continue
            r[R_TABLE] = table
            digits[i] = e164.encode()
            groups.setdefault(table, []).append(i)
            if r[R_VENDOR]:
                v = self.vendor(r[R_VENDOR])
                if v is not None and v.term_table is not None:
                    r[R_VENDOR_CLIENT] = v.id
                    vendor_groups.setdefault(v.term_table, []).append(i)
        for table, idx in groups.items():
            deck = self.deck(table)
            if deck is None:
                for i in idx:
                    rec[i][R_REASON] = "unknown-table"
                continue
            result = self._rate(deck, idx, rec, digits)
            names, dest_of = self.destinations(table, deck)
            currency = deck.currency
            for i, c, b, row, p in zip(idx, result.cost_nanos.tolist(),
                                       result.billed_seconds.tolist(), result.row.tolist(),
                                       result.prefix_len.tolist(), strict=True):
                r = rec[i]
                if c < 0:
                    r[R_REASON] = "no-rate"
                elif currency != r[R_CURRENCY]:
                    r[R_REASON] = "currency"
                else:
                    r[R_AMOUNT] = c
                    r[R_BILLED] = b
                    r[R_DEST] = names[dest_of[row]]
                    r[R_PREFIX] = r[R_E164][:p]
        for table, idx in vendor_groups.items():
            idx = [i for i in idx if rec[i][R_REASON] is None]
            deck = self.deck(table)
            if deck is None or not idx:
                continue
            result = self._rate(deck, idx, rec, digits)
            for i, c in zip(idx, result.cost_nanos.tolist(), strict=True):
                if c >= 0:
                    rec[i][R_COST] = c
                    rec[i][R_VENDOR_CURRENCY] = deck.currency

    @staticmethod
    def _rate(deck: Deck, idx: list[int], rec: list[list[Any]], digits: list[bytes]) -> Any:
        import numpy as np

        nums = np.array([digits[i] for i in idx], dtype="S")
        starts = np.fromiter((rec[i][R_DATE] for i in idx), np.int64, len(idx))
        durs = np.fromiter((rec[i][R_DURATION] for i in idx), np.int64, len(idx))
        return deck.rate_batch(nums, starts, durs)


def _call_key(source: str, rid: str) -> bytes:
    return source.encode() + b"\0" + rid.encode("utf-8", "surrogateescape")


def _when_key(date: int, key: bytes) -> bytes:
    return date.to_bytes(8, "big") + key


def _call_facts(source: str, rid: str, r: list[Any]) -> list[Any]:
    return [source, rid, r[R_REV], r[R_E164], r[R_DATE], r[R_DURATION], r[R_BILLED],
            r[R_PREFIX], r[R_DEST], r[R_TABLE], r[R_ACCOUNT], r[R_COST], r[R_VENDOR_CLIENT]]


def _entry_key(source: str, rid: str, rev: int, side: str = "") -> str:
    return f"cdr:{source}:{rid}" if rev == 0 else f"rerate:{source}:{rid}:{rev}{side}"


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
                progress: Progress | None = None, chunk: int = CHUNK,
                after_chunk: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a CDR file (see the module's description)."""
    began = time.perf_counter()
    path = Path(path)
    if fmt not in IMPORT_FORMATS:
        raise InvalidArgument(f"unknown CDR format {fmt!r}",
                              hint="one of " + ", ".join(IMPORT_FORMATS))
    if not path.is_file():
        raise FileError(f"cannot read {path}: no such file")
    real_fmt = detect_format(path) if fmt == "auto" else fmt
    source = source or real_fmt
    if not source or "\0" in source or ":" in source:
        raise InvalidArgument(f"source {source!r}: not empty, no ':' or NUL")
    if progress is not None:
        progress.phase = "reading"
    received = read_cdrs(path, real_fmt, timezone, progress)
    summary = ImportSummary(str(path), source, real_fmt, rows=len(received))
    if progress is not None:
        progress.phase = None
        progress.total = len(received)
        progress.done = 0
        progress.items = None
    seen_in_file: dict[bytes, int] = {}
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


def _import_chunk(store: Store, pricer: Pricer, received: Received, lo: int, hi: int,
                  source: str, summary: ImportSummary, seen_in_file: dict[bytes, int]) -> None:
    keys = [_call_key(source, received.ids[i]) for i in range(lo, hi)]
    # What is already recorded is skipped before pricing (a re-run after a crash, a replay).
    with store.read() as txn:
        tag = store.calls.tag
        known = dict(txn.cursor().getmulti([tag + k for k in keys]))
    todo: list[int] = []
    records: list[list[Any]] = []
    for j, key in enumerate(keys):
        i = lo + j
        rec = received.record(i)
        first = seen_in_file.get(key)
        if first is not None:
            if received.record(first) == rec:
                summary.already += 1
            else:
                summary.refused.append(f"line {received.lines[i]}: id {received.ids[i]} "
                                       f"repeats line {received.lines[first]} with other "
                                       f"content")
            continue
        seen_in_file[key] = i
        old = known.get(tag + key)
        if old is not None:
            if _unpack(old)[:RECEIVED] == rec:
                summary.already += 1
            else:
                summary.refused.append(f"line {received.lines[i]}: id {received.ids[i]} was "
                                       f"imported before with other content")
            continue
        todo.append(i)
        records.append(rec)
    if not todo:
        return
    pricer.price(records)
    items = [(keys[i - lo], r) for i, r in zip(todo, records, strict=True)]
    now = int(time.time())

    def apply(txn: Any) -> tuple[int, int, dict[str, int], dict[str, int]]:
        tag = store.calls.tag
        # A concurrent import of the same CDRs may have committed since they were read.
        present = {k for k, _ in txn.cursor().getmulti([tag + k for k, _ in items])}
        entries: list[Entry] = []
        calls, when, unmatched = [], [], []
        billed = mismatched = 0
        amounts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for key, r in items:
            if tag + key in present:
                continue
            rid = key.split(b"\0", 1)[1].decode("utf-8", "surrogateescape")
            wkey = _when_key(r[R_DATE], key)
            when.append((wkey, b""))
            if r[R_REASON] is not None:
                unmatched.append((wkey, b""))
                mismatched += 1
                reasons[r[R_REASON]] = reasons.get(r[R_REASON], 0) + 1
            else:
                billed += 1
                if r[R_AMOUNT]:
                    amounts[r[R_CURRENCY]] = amounts.get(r[R_CURRENCY], 0) + r[R_AMOUNT]
                    entries.append(Entry(0, "rated-call", r[R_CLIENT], -r[R_AMOUNT], now,
                                         r[R_DATE], _entry_key(source, rid, 0), None, None,
                                         _call_facts(source, rid, r)))
            calls.append((key, r))
        if entries:
            append(store, txn, entries)
        cur = txn.cursor()
        cur.putmulti(sorted((tag + k, _pack(r)) for k, r in calls))
        cur.putmulti(sorted((store.when.tag + k, v) for k, v in when))
        if unmatched:
            cur.putmulti(sorted((store.unmatched.tag + k, v) for k, v in unmatched))
        return billed, mismatched, amounts, reasons

    billed, mismatched, amounts, reasons = store.write(apply)
    summary.billed += billed
    summary.mismatched += mismatched
    summary.already += len(items) - billed - mismatched
    for c, a in amounts.items():
        summary.amounts[c] = summary.amounts.get(c, 0) + a
    for k, n in reasons.items():
        summary.reasons[k] = summary.reasons.get(k, 0) + n


# -- reading back

def _period_keys(store: Store, txn: Any, space: Any, since: int | None,
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
        for key in _period_keys(store, txn, store.unmatched, since, until):
            r = _unpack(store.calls.get(txn, key))
            source, rid = key.decode("utf-8", "surrogateescape").split("\0", 1)
            out.append(Mismatch(source, rid, r[R_START], r[R_NUMBER], r[R_DURATION],
                                r[R_REASON], r[R_IP], r[R_USER], r[R_ANI], r[R_VENDOR]))
    return out


def call_amounts(store: Store, txn: Any) -> dict[tuple[str, str], int]:
    """What each billed call stands at (for ``rater check``)."""
    out = {}
    for key, raw in store.calls.items(txn):
        r = _unpack(raw)
        if r[R_AMOUNT]:
            source, rid = key.decode("utf-8", "surrogateescape").split("\0", 1)
            out[(source, rid)] = r[R_AMOUNT]
    return out


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
           progress: Progress | None = None, chunk: int = CHUNK) -> RerateSummary:
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
        keys = list(_period_keys(store, txn, store.when, since, until))
    if progress is not None:
        progress.total = len(keys)
    with Pricer(store) as pricer:
        cid = None
        if client is not None:
            c = pricer.index.client_by_name.get(client)
            if c is None:
                from .errors import UnknownClient

                raise UnknownClient(f"no client named {client!r}")
            cid = c.id
        for lo in range(0, len(keys), chunk):
            part = keys[lo:lo + chunk]
            _rerate_chunk(store, pricer, part, cid, summary)
            if progress is not None:
                progress.advance(len(part))
    summary.seconds = time.perf_counter() - began
    return summary


def _rerate_chunk(store: Store, pricer: Pricer, keys: list[bytes], cid: int | None,
                  summary: RerateSummary) -> None:
    tag = store.calls.tag
    with store.read() as txn:
        olds = [_unpack(v) for _, v in txn.cursor().getmulti([tag + k for k in keys])]
    deleted = {c.id for c in pricer.index.clients.values() if c.status == "deleted"}
    fresh = [list(o[:RECEIVED]) for o in olds]
    pricer.price(fresh)
    now = int(time.time())

    def apply(txn: Any) -> RerateSummary:
        entries: list[Entry] = []
        puts: list[tuple[bytes, bytes]] = []
        moves: list[tuple[bytes, bytes | None, bytes | None]] = []
        counts = RerateSummary()
        for key, expected, new in zip(keys, olds, fresh, strict=True):
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
            if old[R_AMOUNT]:
                entries.append(Entry(0, "rerate", old[R_CLIENT], old[R_AMOUNT], now,
                                     old[R_DATE], _entry_key(source, rid, rev, "-"), None,
                                     "reversal", _call_facts(source, rid, old)))
                counts.delta[old[R_CURRENCY]] = (counts.delta.get(old[R_CURRENCY], 0)
                                                 - old[R_AMOUNT])
            if new[R_REASON] is None and new[R_AMOUNT]:
                entries.append(Entry(0, "rerate", new[R_CLIENT], -new[R_AMOUNT], now,
                                     new[R_DATE], _entry_key(source, rid, rev, "+"), None,
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
            if old_w != new_w:
                store.when.delete(txn, old_w)
                store.when.put(txn, new_w, b"")
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
    index = AccountIndex(store)
    names = {c.id: c.name for c in index.clients.values()}
    cid = None
    if client is not None:
        c = index.client_by_name.get(client)
        if c is None:
            from .errors import UnknownClient

            raise UnknownClient(f"no client named {client!r}")
        cid = c.id
    lines: dict[tuple[int, str], SummaryLine] = {}
    unmatched = 0
    with store.read() as txn:
        keys = list(_period_keys(store, txn, store.when, since, until))
        tag = store.calls.tag
        for lo in range(0, len(keys), CHUNK):
            for _, raw in txn.cursor().getmulti([tag + k for k in keys[lo:lo + CHUNK]]):
                r = _unpack(raw)
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
