"""Invoices, their issuers and number series: records of the ledger database.

An invoice belongs to a client and a period: midnight to midnight in the
client's time zone, placed by the instant its calls are billed by (the
``date`` of their journal entries). Its items are ledger movements:

- *usage*: rated calls and their rerating corrections, one line per destination
  (what included minutes covered: a line per package, at the bundle price);
- *late*: calls of earlier periods that arrived after those were invoiced, a
  line per destination, on the first invoice made after they arrived and only
  there;
- *adjustment*: a line per manual charge, manual credit or promotional credit;
- *recurring*, *one-off* and *prorated* subscription fees (rater.subscriptions);
- *tax*: each tax of the client's profile on the sum of the lines above.

Payments, captures and refunds are not lines: they are the statement's
``payments``. Then ``amount due = previous amount due + total - payments``.

Which movements an invoice takes. An issued invoice remembers ``through`` (the
last journal entry the ledger had when it was made) and its period's end. Its
items are the client's movements numbered up to ``through`` and dated before
the end that no earlier issued invoice took; as ``through`` and the end only
grow from one invoice to the next, "no earlier invoice" is "not the previous
one". So every movement is on exactly one issued invoice, whatever arrives
late, and no movement is marked: a bill run reads the movements and writes
only invoices. (A re-issue that takes corrections of its own calls which
arrived after it lists them in ``claimed``.)

Amounts are integers of nanos, like the journal's, and every amount an invoice
shows is a whole number of the currency's minor unit (2 decimals for most
currencies, 0 for JPY, 3 for KWD: :func:`rater.money.minor_unit`). The rule:

- a line is the exact sum of its items (each call's cost as the journal holds
  it), rounded half-up (ties away from zero) to the minor unit, once;
- each tax is the sum of the lines times its rate, rounded half-up once;
- the total is the sum of the lines and taxes; payments are rounded half-up once.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .clients import DEFAULT_PATTERN, Client, tax_percent
from .errors import Conflict, InvalidArgument, InvoiceError
from .journal import BILLED_TYPES, CALL_TYPES, FEE_TYPES
from .money import UNITS, format_nanos, minor_unit, round_signed
from .timeutil import zone

if TYPE_CHECKING:
    from .ledger import Ledger

#: Movements that are invoice lines, one each, and the kind of line each makes.
ADJUSTMENT_TYPES = ("manual-charge", "manual-credit", "promotional-credit", *FEE_TYPES)
LINE_KIND = {"recurring-fee": "recurring", "prorated-fee": "prorated", "one-off-fee": "one-off",
             "fee-credit": "prorated"}
#: Movements that are the statement's payments.
PAYMENT_TYPES = ("manual-payment", "ecommerce-payment", "capture", "refund", "ecommerce-refund")

SCHEMA = (
    # The companies invoices are issued by, each with its own gapless number series.
    """CREATE TABLE IF NOT EXISTS issuers (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        vat_id TEXT,
        pattern TEXT NOT NULL,
        is_default INTEGER NOT NULL,
        creditor_id TEXT,
        iban TEXT,
        bic TEXT,
        created BIGINT NOT NULL)""",
    # The last number given in each series: an issuer's pattern with its dates filled.
    """CREATE TABLE IF NOT EXISTS invoice_series (
        issuer TEXT NOT NULL,
        series TEXT NOT NULL,
        last BIGINT NOT NULL,
        PRIMARY KEY (issuer, series))""",
    """CREATE TABLE IF NOT EXISTS bill_runs (
        id {id},
        mode TEXT NOT NULL,
        period TEXT NOT NULL,
        selection TEXT NOT NULL,
        state TEXT NOT NULL,
        created BIGINT NOT NULL,
        finished BIGINT,
        output_dir TEXT,
        results TEXT,
        error TEXT)""",
    """CREATE TABLE IF NOT EXISTS run_exceptions (
        run BIGINT NOT NULL,
        client INTEGER NOT NULL,
        client_name TEXT NOT NULL,
        code TEXT NOT NULL,
        message TEXT NOT NULL)""",
    # Amounts in nanos, each a whole number of the currency's minor unit.
    """CREATE TABLE IF NOT EXISTS invoices (
        id {id},
        client INTEGER NOT NULL,
        client_name TEXT NOT NULL,
        run BIGINT,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        issuer TEXT NOT NULL,
        number TEXT,
        period TEXT NOT NULL,
        start_date TEXT NOT NULL,
        end_date TEXT NOT NULL,
        start_at BIGINT NOT NULL,
        end_at BIGINT NOT NULL,
        through BIGINT NOT NULL,
        open_from BIGINT,
        previous_invoice BIGINT,
        currency TEXT NOT NULL,
        decimals INTEGER NOT NULL,
        subtotal BIGINT NOT NULL,
        tax BIGINT NOT NULL,
        total BIGINT NOT NULL,
        previous BIGINT NOT NULL,
        payments BIGINT NOT NULL,
        due BIGINT NOT NULL,
        fixed_move BIGINT NOT NULL,
        template TEXT NOT NULL,
        created BIGINT NOT NULL,
        issued_at BIGINT,
        issue_date TEXT,
        due_date TEXT,
        paid_at BIGINT,
        voided_at BIGINT,
        posted_move BIGINT NOT NULL,
        posts INTEGER NOT NULL,
        pdf TEXT,
        client_details TEXT NOT NULL,
        revision INTEGER NOT NULL,
        replaces BIGINT,
        replaced_by BIGINT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS invoices_number ON invoices (number, issuer)",
    # Pre-production replaces a client's draft of a period: never two.
    "CREATE UNIQUE INDEX IF NOT EXISTS invoices_one_draft ON invoices (client, start_at) "
    "WHERE state = 'draft'",
    "CREATE INDEX IF NOT EXISTS invoices_by_client ON invoices (client, end_at)",
    """CREATE TABLE IF NOT EXISTS invoice_lines (
        invoice BIGINT NOT NULL,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        description TEXT NOT NULL,
        destination TEXT,
        calls BIGINT NOT NULL,
        seconds BIGINT NOT NULL,
        exact BIGINT,
        amount BIGINT NOT NULL,
        PRIMARY KEY (invoice, position))""",
    # What a re-issue changed in the amount due of an invoice that is not the client's
    # last: the client's next invoice takes it into its previous balance.
    """CREATE TABLE IF NOT EXISTS carried (
        id {id},
        client INTEGER NOT NULL,
        amount BIGINT NOT NULL,
        source BIGINT NOT NULL,
        taken_by BIGINT)""",
    """CREATE TABLE IF NOT EXISTS claimed (
        entry BIGINT PRIMARY KEY,
        invoice BIGINT NOT NULL,
        at BIGINT NOT NULL)""",
    # Recurring bill runs (rater.billrun.Schedule).
    """CREATE TABLE IF NOT EXISTS schedules (
        name TEXT PRIMARY KEY,
        every TEXT NOT NULL,
        day INTEGER,
        at_time TEXT NOT NULL,
        timezone TEXT NOT NULL,
        mode TEXT NOT NULL,
        selection TEXT NOT NULL,
        email INTEGER NOT NULL,
        pdf INTEGER NOT NULL,
        last_period TEXT,
        created BIGINT NOT NULL)""",
    # Each time an invoice was sent (e-mail), and what came of it.
    """CREATE TABLE IF NOT EXISTS deliveries (
        invoice BIGINT NOT NULL,
        channel TEXT NOT NULL,
        address TEXT,
        at BIGINT NOT NULL,
        error TEXT)""",
)


# -- issuers and numbers

_TOKEN = re.compile(r"\{(yyyy|yy|mm|seq(?::0[1-9]|:0[1-9][0-9])?)\}")


def check_pattern(pattern: str) -> None:
    """A number pattern: literal text and the tokens {yyyy} {yy} {mm} {seq} or {seq:0N}."""
    if not (0 < len(pattern) <= 40):
        raise InvalidArgument("number pattern: 1 to 40 characters")
    rest = _TOKEN.sub("", pattern)
    # What a SEPA end-to-end id may hold, so a number goes to the bank as it is.
    if "{" in rest or "}" in rest or not re.fullmatch(r"[A-Za-z0-9/.-]*", rest):
        raise InvalidArgument(f"number pattern {pattern!r}: letters, digits, - . / and the "
                              f"tokens {{yyyy}} {{yy}} {{mm}} {{seq}} {{seq:06}}")
    if sum(1 for m in _TOKEN.finditer(pattern) if m.group(1).startswith("seq")) != 1:
        raise InvalidArgument(f"number pattern {pattern!r}: exactly one {{seq}} token")


def series(pattern: str, day: date) -> str:
    """The series a number of ``day`` belongs to: the pattern with its dates filled."""
    return _TOKEN.sub(lambda m: "{seq}" if m.group(1).startswith("seq") else
                      _date_token(m.group(1), day), pattern)


def format_number(pattern: str, day: date, seq: int) -> str:
    def fill(m: re.Match[str]) -> str:
        token = m.group(1)
        if token.startswith("seq"):
            width = int(token[5:]) if ":" in token else 0
            return f"{seq:0{width}d}" if width else str(seq)
        return _date_token(token, day)
    return _TOKEN.sub(fill, pattern)


def _date_token(token: str, day: date) -> str:
    return {"yyyy": f"{day.year:04d}", "yy": f"{day.year % 100:02d}",
            "mm": f"{day.month:02d}"}[token]


@dataclass
class Issuer:
    name: str
    address: str
    vat_id: str | None = None
    pattern: str = DEFAULT_PATTERN
    default: bool = False
    #: SEPA creditor identifier, and the account direct debits are paid into.
    creditor_id: str | None = None
    iban: str | None = None
    bic: str | None = None

    def check(self) -> None:
        from .clients import _NAME, VAT_ID, check_account

        if not _NAME.fullmatch(self.name):
            raise InvalidArgument(f"issuer name {self.name!r}: 1 to 80 characters, no comma")
        if not self.address.strip() or len(self.address) > 500:
            raise InvalidArgument("issuer address: 1 to 500 characters")
        if self.vat_id is not None and not VAT_ID.fullmatch(self.vat_id):
            raise InvalidArgument(f"issuer VAT id {self.vat_id!r}: a country code and 2 to "
                                  f"12 letters or digits")
        check_pattern(self.pattern)
        check_account(self.iban, self.bic)
        if self.creditor_id is not None and not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,31}",
                                                               self.creditor_id):
            raise InvalidArgument(f"SEPA creditor id {self.creditor_id!r}: country, check "
                                  f"digits, business code, national id")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "vat_id": self.vat_id,
                "pattern": self.pattern, "default": self.default,
                "creditor_id": self.creditor_id, "iban": self.iban, "bic": self.bic}


_ISSUER_COLUMNS = "name, address, vat_id, pattern, is_default, creditor_id, iban, bic"


def _issuer(row: Sequence[Any]) -> Issuer:
    return Issuer(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])


# -- periods and rounding


@dataclass(frozen=True)
class Period:
    """A client's invoice period: [start, end) at midnight in its time zone."""

    start: date
    end: date
    start_at: int
    end_at: int

    @property
    def label(self) -> str:
        """``YYYY-MM`` for a month from the 1st, else ``FIRST/LAST`` (both days in)."""
        if self.start.day == 1 and self.end == add_month(self.start):
            return f"{self.start:%Y-%m}"
        return f"{self.start}/{self.end - timedelta(days=1)}"


def add_month(d: date) -> date:
    """The same day of the next month (days 1..28 only)."""
    return date(d.year + d.month // 12, d.month % 12 + 1, d.day)


def midnight(d: date, tz: str) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(tz)).timestamp())


def parse_day(text: str, what: str) -> date:
    """A date ``YYYY-MM-DD`` given as option ``what``."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{what} {text!r}: a date YYYY-MM-DD") from None


def parse_month(text: str) -> tuple[int, int]:
    """(year, month) of ``YYYY-MM``."""
    m = re.fullmatch(r"(\d{4})-(0[1-9]|1[0-2])", text)
    if m is None:
        raise InvalidArgument(f"--period {text!r}: a month YYYY-MM")
    return int(m[1]), int(m[2])


def month_period(client: Client, month: str) -> Period:
    """The client's period that starts in ``month`` (YYYY-MM) on its billing day."""
    start = date(*parse_month(month), client.billing_day)
    return dates_period(client, start, add_month(start))


def dates_period(client: Client, start: date, end: date) -> Period:
    """From midnight of ``start`` to midnight of ``end`` (not included), client's zone."""
    if end <= start:
        raise InvalidArgument(f"a period ends after it starts ({start} to {end})")
    return Period(start, end, midnight(start, client.timezone),
                  midnight(end, client.timezone))


def half_up(nanos: int, decimals: int) -> int:
    """``nanos`` rounded to ``decimals`` places, ties away from zero (still in nanos)."""
    unit = UNITS[decimals]
    return round_signed(nanos, unit, "half-up") * unit


def tax_amount(base: int, percent: Decimal, decimals: int) -> int:
    """``percent`` of ``base`` (nanos), rounded half-up to ``decimals`` places, once."""
    scaled = int(percent.scaleb(4))            # at most 4 decimal places
    unit = UNITS[decimals]
    return round_signed(base * scaled, 100 * 10**4 * unit, "half-up") * unit


# -- invoices


@dataclass
class Line:
    kind: str
    description: str
    #: Nanos, a whole number of the minor unit: what the client owes for the line.
    amount: int
    destination: str | None = None
    calls: int = 0
    seconds: int = 0
    #: The exact sum of its items, before the one rounding (None for a tax).
    exact: int | None = None


@dataclass
class Invoice:
    id: int
    client: int
    client_name: str
    run: int | None
    kind: str
    state: str
    issuer: str
    number: str | None
    period: str
    start_date: str
    end_date: str
    start_at: int
    end_at: int
    through: int
    open_from: int | None
    previous_invoice: int | None
    currency: str
    decimals: int
    subtotal: int
    tax: int
    total: int
    previous: int
    payments: int
    due: int
    fixed_move: int
    template: str
    created: int
    issued_at: int | None
    issue_date: str | None
    due_date: str | None
    paid_at: int | None
    voided_at: int | None
    #: What its journal entries have moved the fixed balance by so far, and how many.
    posted_move: int
    posts: int
    pdf: str | None
    client_details: str
    #: How often it was re-issued under its own number.
    revision: int = 0
    #: The invoice this one replaces (a re-issue, a credit note), and the one replacing it.
    replaces: int | None = None
    replaced_by: int | None = None
    lines: list[Line] = field(default_factory=list)

    @property
    def shown_state(self) -> str:
        if (self.state == "issued" and self.due_date is not None
                and self.due_date < datetime.now(UTC).date().isoformat()):
            return "overdue"
        return self.state

    @property
    def last_day(self) -> str:
        """The last day of its period (YYYY-MM-DD)."""
        return (date.fromisoformat(self.end_date) - timedelta(days=1)).isoformat()

    @property
    def name(self) -> str:
        """Its number, or ``draft #ID`` before it has one."""
        return self.number or f"draft #{self.id}"

    def money(self, nanos: int) -> str:
        return format_nanos(nanos, self.decimals)

    @functools.cached_property
    def details(self) -> dict[str, Any]:
        """What the client's record said when the invoice was made (address, VAT id...)."""
        parsed: dict[str, Any] = json.loads(self.client_details)
        return parsed

    def to_json(self, *, lines: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "number": self.number, "client": self.client_name,
            "period": self.period, "start": self.start_date,
            "end": self.last_day,
            "currency": self.currency, "subtotal": self.money(self.subtotal),
            "tax": self.money(self.tax), "total": self.money(self.total),
            "previous_balance": self.money(self.previous),
            "payments": self.money(self.payments), "amount_due": self.money(self.due),
            "state": self.shown_state, "kind": self.kind, "issuer": self.issuer,
            "issue_date": self.issue_date, "due_date": self.due_date, "run": self.run,
            "revision": self.revision, "replaces": self.replaces,
            "replaced_by": self.replaced_by, "pdf": self.pdf}
        if lines:
            d["lines"] = [{"kind": ln.kind, "description": ln.description,
                           "destination": ln.destination, "calls": ln.calls,
                           "minutes": str(Decimal(ln.seconds) / 60),
                           "amount": self.money(ln.amount)} for ln in self.lines]
        return d


_INVOICE_COLUMNS = ("id, client, client_name, run, kind, state, issuer, number, period, "
                    "start_date, end_date, start_at, end_at, through, open_from, "
                    "previous_invoice, currency, decimals, subtotal, tax, total, previous, "
                    "payments, due, fixed_move, template, created, issued_at, issue_date, "
                    "due_date, paid_at, voided_at, posted_move, posts, pdf, client_details, "
                    "revision, replaces, replaced_by")
_LINE_COLUMNS = "kind, description, amount, destination, calls, seconds, exact"


@dataclass
class Scanned:
    """One client's items, as a bill run's scan of the movements found them."""

    #: (destination, late) -> [calls, seconds, exact nanos]
    calls: dict[tuple[str, bool], list[int]] = field(default_factory=dict)
    #: (type, note, amount, date) of each adjustment
    adjustments: list[tuple[str, str | None, int, int]] = field(default_factory=list)
    payments: int = 0

    def add(self, type_: str, dest: str | None, late: bool, calls: int, seconds: int,
            amount: int, note: str | None, when: int) -> None:
        """Take a movement, or a sum of a destination's calls and corrections."""
        if type_ in CALL_TYPES:
            got = self.calls.setdefault((dest or "", late), [0, 0, 0])
            got[0] += calls
            got[1] += seconds
            got[2] += amount
        elif type_ in ADJUSTMENT_TYPES:
            self.adjustments.append((type_, note, amount, when))
        else:
            self.payments += amount


@dataclass
class Basis:
    """What a client's next invoice follows: its last issued one (or nothing)."""

    invoice: int | None = None
    through: int = 0
    end_at: int = 0
    open_from: int = 0
    due: int = 0


#: The columns of an invoice that make its Basis, in the fields' order.
_BASIS = "id, through, end_at, open_from, due"
#: The movement types that are an invoice's items, as an SQL list.
_ITEM_TYPES = ", ".join(f"'{t}'" for t in (*CALL_TYPES, *ADJUSTMENT_TYPES, *PAYMENT_TYPES))


def _client_details(client: Client) -> str:
    return json.dumps({"name": client.name, "address": client.address,
                       "vat_id": client.vat_id,
                       "email": client.billing_email, "reverse_charge": client.reverse_charge,
                       "taxes": client.taxes, "sepa_mandate": client.sepa_mandate,
                       "payment_terms_days": client.payment_terms_days,
                       "timezone": client.timezone}, sort_keys=True)


def build_lines(client: Client, period: Period, scanned: Scanned) -> tuple[list[Line], int]:
    """The lines of a client's invoice from its items, and the exact sum of its
    adjustments (already in the fixed balance)."""
    d = minor_unit(client.currency)
    lines: list[Line] = []
    for (dest, late), (calls, seconds, exact) in sorted(scanned.calls.items(),
                                                         key=lambda kv: (kv[0][1], kv[0][0])):
        text = f"{dest} (calls before {period.start})" if late else dest
        lines.append(Line("late" if late else "usage", text, half_up(-exact, d), dest, calls,
                          seconds, -exact))
    adjusted = 0
    for type_, note, amount, _ in sorted(scanned.adjustments, key=lambda a: a[3]):
        words = type_.replace("-", " ").capitalize()
        lines.append(Line(LINE_KIND.get(type_, "adjustment"),
                          f"{words}: {note}" if note else words,
                          half_up(-amount, d), exact=-amount))
        adjusted += amount
    base = sum(ln.amount for ln in lines)
    if not client.reverse_charge:
        for name, percent in client.taxes:
            rate = tax_percent(name, percent)
            lines.append(Line("tax", f"{name} {percent}%", tax_amount(base, rate, d)))
    return lines, adjusted


def _fill(inv: Invoice, lines: list[Line], adjusted: int, payments: int) -> None:
    """Set an invoice's lines and the amounts that follow from them and its previous
    balance (``adjusted``: the exact adjustments, in fixed already; ``payments`` exact)."""
    inv.lines = lines
    inv.total = sum(ln.amount for ln in lines)
    inv.tax = sum(ln.amount for ln in lines if ln.kind == "tax")
    inv.subtotal = inv.total - inv.tax
    inv.payments = half_up(payments, inv.decimals)
    inv.due = inv.previous + inv.total - inv.payments
    # Minus what it adds to what the client owes: its total, less the adjustments the
    # fixed balance holds already, and with the payments as the statement shows them.
    inv.fixed_move = -inv.total - adjusted + (inv.payments - payments)


class Invoicing:
    """Issuers, invoices and their numbers in a ledger database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.db = ledger.db

    # -- issuers

    def add_issuer(self, issuer: Issuer, *, now: int | None = None) -> Issuer:
        issuer.check()
        with self.ledger.transaction() as db:
            if db.execute("SELECT 1 FROM issuers WHERE name = ?", (issuer.name,)).fetchone():
                raise Conflict(f"issuer {issuer.name} exists")
            first = db.execute("SELECT COUNT(*) FROM issuers").fetchone()[0] == 0
            if issuer.default or first:
                db.execute("UPDATE issuers SET is_default = 0")
                issuer.default = True
            db.execute(f"INSERT INTO issuers ({_ISSUER_COLUMNS}, created) VALUES "
                       f"(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (issuer.name, issuer.address, issuer.vat_id, issuer.pattern,
                        int(issuer.default), issuer.creditor_id, issuer.iban, issuer.bic,
                        int(time.time()) if now is None else now))
        return issuer

    def edit_issuer(self, name: str, **changes: Any) -> Issuer:
        with self.ledger.transaction() as db:
            old = self._issuer(db, name)
            new = Issuer(**{**old.__dict__, **changes})
            new.check()
            if new.default:
                db.execute("UPDATE issuers SET is_default = 0")
            db.execute("UPDATE issuers SET address = ?, vat_id = ?, pattern = ?, "
                       "is_default = ?, creditor_id = ?, iban = ?, bic = ? WHERE name = ?",
                       (new.address, new.vat_id, new.pattern, int(new.default),
                        new.creditor_id, new.iban, new.bic, name))
        return new

    def issuer(self, name: str) -> Issuer:
        return self._issuer(self.db, name)

    def _issuer(self, db: Any, name: str) -> Issuer:
        row = db.execute(f"SELECT {_ISSUER_COLUMNS} FROM issuers WHERE name = ?",
                         (name,)).fetchone()
        if row is None:
            raise InvoiceError(f"no issuer {name!r}", hint="rater issuer list")
        return _issuer(row)

    def issuers(self) -> list[Issuer]:
        return [_issuer(r) for r in self.db.execute(
            f"SELECT {_ISSUER_COLUMNS} FROM issuers ORDER BY name")]

    @staticmethod
    def issuer_of(client: Client, issuers: dict[str, Issuer]) -> Issuer:
        """The client's issuer, else the default one (``issuers``: all of them, read
        once by the caller)."""
        if client.issuer is not None:
            if client.issuer not in issuers:
                raise InvoiceError(f"no issuer {client.issuer!r}", hint="rater issuer list")
            return issuers[client.issuer]
        default = [i for i in issuers.values() if i.default]
        if not default:
            raise InvoiceError("no issuer: the client names none and there is no default",
                               hint="rater issuer add NAME --address ...")
        return default[0]

    # -- reading invoices

    def _invoices(self, where: str, params: tuple[Any, ...], *, lines: bool) -> list[Invoice]:
        found = [Invoice(*r) for r in self.db.execute(
            f"SELECT {_INVOICE_COLUMNS} FROM invoices {where}", params)]
        if lines:
            for inv in found:
                inv.lines = [Line(*r) for r in self.db.execute(
                    f"SELECT {_LINE_COLUMNS} FROM invoice_lines WHERE invoice = ? "
                    f"ORDER BY position", (inv.id,))]
        return found

    def invoices(self, *, period: str | None = None, client: int | None = None,
                 state: str | None = None, run: int | None = None,
                 lines: bool = False) -> list[Invoice]:
        """Invoices in the order they were made; ``period`` YYYY-MM: those starting in it."""
        conds: list[str] = []
        params: list[Any] = []
        if period is not None:
            parse_month(period)
            conds.append("start_date LIKE ?")
            params.append(period + "-%")
        if client is not None:
            conds.append("client = ?")
            params.append(client)
        if state is not None and state != "overdue":
            conds.append("state = ?")
            params.append(state)
        if run is not None:
            conds.append("run = ?")
            params.append(run)
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        found = self._invoices(where + " ORDER BY id", tuple(params), lines=lines)
        if state is not None:
            found = [inv for inv in found if inv.shown_state == state]
        return found

    def by_id(self, iid: int) -> Invoice:
        """An invoice, with its lines, by its id."""
        found = self._invoices("WHERE id = ?", (iid,), lines=True)
        if not found:
            raise InvoiceError(f"no invoice #{iid}", hint="rater invoice list")
        return found[0]

    def invoice(self, which: str) -> Invoice:
        """An invoice by its number, or by its id (a draft has no number)."""
        found = self._invoices("WHERE number = ?", (which,), lines=True)
        if not found and which.isdigit() and int(which) < 2**63:
            found = self._invoices("WHERE id = ?", (int(which),), lines=True)
        if not found:
            raise InvoiceError(f"no invoice {which!r}", hint="rater invoice list")
        if len(found) > 1:
            raise InvoiceError(f"{len(found)} issuers have an invoice {which!r}; give its id",
                               hint=", ".join(str(i.id) for i in found))
        return found[0]

    def basis(self, client_id: int) -> Basis:
        """The client's last issued invoice (not void), which the next one follows."""
        row = self.db.execute(
            f"SELECT {_BASIS} FROM invoices WHERE client = ? "
            "AND kind = 'invoice' AND state IN ('issued', 'paid') AND replaced_by IS NULL "
            "ORDER BY end_at DESC, id DESC LIMIT 1", (client_id,)).fetchone()
        return Basis() if row is None else Basis(*(int(v) for v in row))

    # -- making drafts

    def scan(self, wanted: dict[int, tuple[Period, Basis]], through: int) -> dict[int, Scanned]:
        """Every client's items in one read of the movements (see the module's notes)."""
        db = self.db
        found: dict[int, Scanned] = {cid: Scanned() for cid in wanted}
        if not wanted:
            return found
        db.execute("CREATE TEMP TABLE IF NOT EXISTS run_clients (client INTEGER PRIMARY KEY, "
                   "start_at BIGINT, end_at BIGINT, low BIGINT, prev_through BIGINT, "
                   "prev_end BIGINT)")
        db.execute("DELETE FROM run_clients")
        db.executemany("INSERT INTO run_clients VALUES (?, ?, ?, ?, ?, ?)",
                       [(cid, p.start_at, p.end_at, b.open_from, b.through, b.end_at)
                        for cid, (p, b) in wanted.items()])
        low = min(b.open_from for _, b in wanted.values())
        claimed = db.execute("SELECT 1 FROM claimed LIMIT 1").fetchone() is not None
        calls = ", ".join(f"'{t}'" for t in CALL_TYPES)
        billed = ", ".join(f"'{t}'" for t in BILLED_TYPES)
        sql = (
            f"SELECT m.client, MAX(m.type), m.destination, "
            f"CASE WHEN m.date < r.start_at THEN 1 ELSE 0 END AS late, "
            f"SUM(CASE WHEN m.type IN ({billed}) THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN m.type IN ({billed}) THEN m.billed ELSE 0 END), "
            f"SUM(m.amount), MAX(m.note), MIN(m.date) "
            f"FROM movements m {db.words['join']} run_clients r ON r.client = m.client "
            f"WHERE m.entry >= ? AND m.entry <= ? AND m.entry >= r.low "
            f"AND m.date < r.end_at AND m.type IN ({_ITEM_TYPES}) "
            f"AND NOT (m.entry <= r.prev_through AND m.date < r.prev_end) "
            + ("AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.entry = m.entry) "
               if claimed else "")
            + f"GROUP BY m.client, m.destination, late, "
              f"CASE WHEN m.type IN ({calls}) THEN 0 ELSE m.entry END")
        for cid, type_, dest, late, n, seconds, amount, note, when in db.execute(
                sql, (low, through)):
            got = found[int(cid)]
            if type_ in CALL_TYPES:
                # One row per client, destination and lateness: millions in a big run.
                got.calls[(dest or "", late == 1)] = [int(n), int(seconds), int(amount)]
            else:
                got.add(type_, dest, bool(late), 0, 0, int(amount), note, int(when))
        return found

    def replace_draft(self, db: Any, client: Client, period: Period, basis: Basis,
                      scanned: Scanned, *, issuer: str, run: int | None, through: int,
                      now: int) -> Invoice | None:
        """Write the client's draft of ``period`` (replacing the one there); None, and
        no draft, when it has no line and no payment."""
        db.execute("DELETE FROM invoice_lines WHERE invoice IN (SELECT id FROM invoices "
                   "WHERE client = ? AND start_at = ? AND state = 'draft')",
                   (client.id, period.start_at))
        db.execute("DELETE FROM invoices WHERE client = ? AND start_at = ? AND state = 'draft'",
                   (client.id, period.start_at))
        lines, adjusted = build_lines(client, period, scanned)
        if not lines and not scanned.payments:
            return None
        previous = basis.due + self.carried(client.id, basis)
        inv = Invoice(0, client.id, client.name, run, "invoice", "draft", issuer, None,
                      period.label, period.start.isoformat(), period.end.isoformat(),
                      period.start_at, period.end_at, through, None, basis.invoice,
                      client.currency, minor_unit(client.currency), 0, 0, 0, previous, 0, 0,
                      0, client.invoice_template, now, None, None, None, None, None, 0, 0,
                      None, _client_details(client))
        _fill(inv, lines, adjusted, scanned.payments)
        self._insert(db, inv)
        return inv

    def carried(self, client_id: int, basis: Basis) -> int:
        """What re-issues carried to the client's next invoice, not yet on one: changes
        to invoices before ``basis`` (the invoice the next one follows), whose amount due
        does not hold them (a change to the basis itself is in its amount due)."""
        row = self.db.execute(
            "SELECT SUM(c.amount) FROM carried c JOIN invoices s ON s.id = c.source WHERE "
            "c.client = ? AND c.taken_by IS NULL AND s.end_at < ?",
            (client_id, basis.end_at)).fetchone()
        return int(row[0] or 0)

    def _insert(self, db: Any, inv: Invoice) -> None:
        """Write a new invoice and its lines; sets its id."""
        columns = _INVOICE_COLUMNS.split(", ")[1:]
        values = [getattr(inv, c) for c in columns]
        inv.id = int(db.execute(
            f"INSERT INTO invoices ({', '.join(columns)}) VALUES "
            f"({', '.join('?' * len(columns))}) RETURNING id", tuple(values)).fetchone()[0])
        self._write_lines(db, inv)

    def _write_lines(self, db: Any, inv: Invoice) -> None:
        db.execute("DELETE FROM invoice_lines WHERE invoice = ?", (inv.id,))
        db.executemany(
            f"INSERT INTO invoice_lines (invoice, position, {_LINE_COLUMNS}) VALUES "
            f"(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(inv.id, i, ln.kind, ln.description, ln.amount, ln.destination, ln.calls,
              ln.seconds, ln.exact) for i, ln in enumerate(inv.lines)])

    # -- issuing

    def _number(self, db: Any, inv: Invoice, client: Client, issuer: Issuer,
                now: int) -> None:
        """Give ``inv`` the next number of its issuer's series and its dates (in ``db``'s
        open transaction: a rollback gives the number back, so the series has no gap)."""
        day = datetime.fromtimestamp(now, zone(client.timezone)).date()
        key = series(issuer.pattern, day)
        row = db.execute("SELECT last FROM invoice_series WHERE issuer = ? AND series = ?",
                         (issuer.name, key)).fetchone()
        seq = 1 if row is None else int(row[0]) + 1
        if row is None:
            db.execute("INSERT INTO invoice_series (issuer, series, last) VALUES (?, ?, ?)",
                       (issuer.name, key, seq))
        else:
            db.execute("UPDATE invoice_series SET last = ? WHERE issuer = ? AND series = ?",
                       (seq, issuer.name, key))
        inv.number, inv.issuer = format_number(issuer.pattern, day, seq), issuer.name
        inv.issued_at, inv.issue_date = now, day.isoformat()
        inv.due_date = (day + timedelta(days=client.payment_terms_days)).isoformat()

    def issue(self, db: Any, inv: Invoice, client: Client, issuer: Issuer, basis: Basis,
              now: int) -> str:
        """Number a draft that follows ``basis`` (the client's last invoice: see
        :meth:`still_follows`) and mark it issued, in ``db``'s open transaction."""
        self._number(db, inv, client, issuer, now)
        # The first movement this invoice leaves for the next: the next scan starts there.
        left = db.execute("SELECT MIN(entry) FROM movements WHERE client = ? AND date >= ? "
                          "AND entry <= ? AND entry >= ?",
                          (client.id, inv.end_at, inv.through, basis.open_from)).fetchone()
        inv.open_from = inv.through + 1 if left[0] is None else int(left[0])
        inv.state = "issued"
        db.execute("UPDATE invoices SET state = 'issued', issuer = ?, number = ?, "
                   "issued_at = ?, issue_date = ?, due_date = ?, open_from = ? WHERE id = ?",
                   (inv.issuer, inv.number, now, inv.issue_date, inv.due_date,
                    inv.open_from, inv.id))
        # Every pending change is settled now: those to invoices before the basis are
        # in this one's previous balance, a change to the basis is in the basis's due.
        db.execute("UPDATE carried SET taken_by = ? WHERE client = ? AND taken_by IS NULL",
                   (inv.id, client.id))
        assert inv.number is not None
        return inv.number

    def still_follows(self, draft: Invoice, basis: Basis) -> bool:
        """Whether a draft still follows the client's last invoice, with the previous
        balance the client has now."""
        return (basis.invoice == draft.previous_invoice and basis.end_at <= draft.start_at
                and basis.due + self.carried(draft.client, basis) == draft.previous)

    def claimed_since(self, draft: Invoice) -> bool:
        """Whether a re-issue took, since the draft was made, a correction it may hold."""
        return self.db.execute(
            "SELECT 1 FROM claimed c JOIN movements m ON m.entry = c.entry WHERE "
            "m.client = ? AND c.at >= ? AND m.entry <= ? LIMIT 1",
            (draft.client, draft.created, draft.through)).fetchone() is not None

    # -- re-issuing

    def recalculated(self, inv: Invoice, client: Client, last: Basis | None = None
                     ) -> tuple[list[Line], int, int, list[int]]:
        """An issued invoice's lines from its own items as they stand now: the movements
        it took (and those it claimed) and the rerating corrections of its calls that no
        invoice has taken. Returns lines, exact adjustments, exact payments and the
        corrections to claim. ``last``: the client's :meth:`basis`, when the caller has it."""
        db = self.db
        prev = Basis()
        if inv.previous_invoice is not None:
            row = db.execute(f"SELECT {_BASIS} FROM invoices WHERE id = ?",
                             (inv.previous_invoice,)).fetchone()
            prev = Basis(*(int(v) for v in row))
        columns = "entry, type, destination, date, billed, amount, note, call_source, call_id"
        own = db.execute(
            f"SELECT {columns} FROM movements WHERE client = ? AND entry >= ? AND entry <= ? "
            f"AND date < ? AND type IN ({_ITEM_TYPES}) AND NOT (entry <= ? AND date < ?) AND entry "
            f"NOT IN (SELECT entry FROM claimed WHERE invoice <> ?) UNION SELECT {columns} "
            f"FROM movements WHERE entry IN (SELECT entry FROM claimed WHERE invoice = ?)",
            (inv.client, prev.open_from, inv.through, inv.end_at, prev.through, prev.end_at,
             inv.id, inv.id)).fetchall()
        calls = {(r[7], r[8]) for r in own if r[1] in BILLED_TYPES}
        last = last or self.basis(inv.client)
        taken = {int(r[0]) for r in own}
        fresh: list[Any] = []
        if calls:
            first = min(int(r[3]) for r in own if r[1] in BILLED_TYPES)
            for r in db.execute(
                    f"SELECT {columns} FROM movements WHERE client = ? AND type = 'rerate' "
                    f"AND date >= ? AND date < ? AND entry > ? AND entry NOT IN (SELECT "
                    f"entry FROM claimed)", (inv.client, first, inv.end_at, inv.through)):
                covered = int(r[0]) <= last.through and int(r[3]) < last.end_at
                if (r[7], r[8]) in calls and not covered and int(r[0]) not in taken:
                    fresh.append(r)
        scanned = Scanned()
        for _, type_, dest, when, billed, amount, note, *_ in [*own, *fresh]:
            called = type_ in BILLED_TYPES
            scanned.add(type_, dest, int(when) < inv.start_at, int(called),
                        int(billed or 0) if called else 0, int(amount), note, int(when))
        period = Period(date.fromisoformat(inv.start_date), date.fromisoformat(inv.end_date),
                        inv.start_at, inv.end_at)
        lines, adjusted = build_lines(client, period, scanned)
        return lines, adjusted, scanned.payments, [int(r[0]) for r in fresh]

    def reissue(self, inv: Invoice, client: Client, issuer: Issuer, how: str,
                now: int) -> list[Invoice]:
        """Recalculate an issued invoice (:meth:`recalculated`) and re-issue it ``how``:

        ``keep-numbers``  the same invoice, same number, its lines and amounts replaced;
        ``renumber``      the old one void, a new one with the next number replacing it;
        ``credit-note``   the old one left as it is, a credit note for all of it and a new
                          invoice, each numbered.

        What the fixed balance must move is posted to the journal. When the invoice is
        not the client's last, the change in its amount due is carried to the client's
        next invoice. Returns the invoices made or changed."""
        self.post_pending()                  # settled before it changes
        self.ledger.tail()                   # the corrections rerating just wrote
        inv = self.by_id(inv.id)             # as it stands, with its lines
        if inv.kind != "invoice" or inv.state not in ("issued", "paid") or inv.replaced_by:
            raise InvoiceError(f"invoice {inv.name} is {inv.state}"
                               + (" and replaced" if inv.replaced_by else "")
                               + "; only an issued invoice is re-issued")
        if how not in ("keep-numbers", "renumber", "credit-note"):
            raise InvalidArgument(f"re-issue {how!r}: keep-numbers, renumber or credit-note")
        last = self.basis(inv.client)
        lines, adjusted, payments, fresh = self.recalculated(inv, client, last)
        old_due = inv.due
        is_last = last.invoice == inv.id
        made: list[Invoice] = []
        with self.ledger.transaction() as db:
            if how == "keep-numbers":
                new = inv
                _fill(new, lines, adjusted, payments)
                new.revision += 1
                db.execute("UPDATE invoices SET subtotal = ?, tax = ?, total = ?, payments = "
                           "?, due = ?, fixed_move = ?, revision = ? WHERE id = ?",
                           (new.subtotal, new.tax, new.total, new.payments, new.due,
                            new.fixed_move, new.revision, new.id))
                self._write_lines(db, new)
            else:
                new = self._successor(inv, now)
                _fill(new, lines, adjusted, payments)
                if how == "credit-note":
                    credit = self._successor(inv, now)
                    credit.kind = "credit-note"
                    credit.state = "issued"
                    credit.lines = [Line(ln.kind, f"Credit: {ln.description}", -ln.amount,
                                         ln.destination, ln.calls, ln.seconds,
                                         None if ln.exact is None else -ln.exact)
                                    for ln in inv.lines]
                    credit.subtotal, credit.tax, credit.total = (
                        -inv.subtotal, -inv.tax, -inv.total)
                    credit.previous, credit.payments, credit.due = 0, 0, -inv.total
                    credit.fixed_move = -inv.fixed_move
                    self._number(db, credit, client, issuer, now)
                    self._insert(db, credit)
                    made.append(credit)
                self._number(db, new, client, issuer, now)
                self._insert(db, new)
                db.execute("UPDATE invoices SET replaced_by = ? WHERE id = ?", (new.id, inv.id))
                if how == "renumber":
                    db.execute("UPDATE invoices SET state = 'void', voided_at = ? WHERE id = ?",
                               (now, inv.id))
                # What the old one took, the new one holds.
                db.execute("UPDATE claimed SET invoice = ? WHERE invoice = ?", (new.id, inv.id))
                db.execute("UPDATE carried SET taken_by = ? WHERE taken_by = ?",
                           (new.id, inv.id))
            db.executemany("INSERT INTO claimed (entry, invoice, at) VALUES (?, ?, ?)",
                           [(e, new.id, now) for e in fresh])
            if not is_last and new.due != old_due:
                db.execute("INSERT INTO carried (client, amount, source) VALUES (?, ?, ?)",
                           (inv.client, new.due - old_due, new.id))
        made.append(new)
        self.post_pending()
        return made

    @staticmethod
    def _successor(inv: Invoice, now: int) -> Invoice:
        """A new issued invoice of the same client and period, replacing ``inv``."""
        new = Invoice(**{**inv.__dict__, "lines": []})
        new.state, new.revision, new.replaces, new.replaced_by = "issued", 0, inv.id, None
        new.posted_move, new.posts, new.pdf, new.created, new.run = 0, 0, None, now, None
        new.paid_at = None
        return new

    def post_pending(self) -> int:
        """Bring the fixed balance in line with every invoice: each moves it by its
        ``fixed_move`` while issued or paid, by nothing once void or a draft. The
        difference from what was posted so far goes to the journal under the invoice's
        next key (``invoice:ID:N``: a second attempt after a crash moves nothing)."""
        from .journal import Entry, post_many

        rows = self.db.execute(
            "SELECT id, client, number, state, target, posted_move, posts FROM (SELECT id, "
            "client, number, state, posted_move, posts, CASE WHEN state IN ('issued', "
            "'paid') THEN fixed_move ELSE 0 END AS target FROM invoices) t WHERE target <> "
            "posted_move ORDER BY id").fetchall()
        if not rows:
            return 0
        now = int(time.time())
        entries = [Entry(0, "invoice", int(cid), int(target) - int(done), now, now,
                         f"invoice:{iid}:{int(posts) + 1}", None,
                         f"{number} " + ("void" if state == "void" else
                                         "issued" if int(posts) == 0 else "re-issued"))
                   for iid, cid, number, state, target, done, posts in rows]
        post_many(self.ledger.store, entries)
        with self.ledger.transaction() as db:
            db.executemany("UPDATE invoices SET posted_move = ?, posts = posts + 1 WHERE id = ?",
                           [(int(target), iid) for iid, _, _, _, target, _, _ in rows])
        return len(entries)

    # -- changing issued invoices

    def mark_paid(self, which: str, now: int | None = None) -> Invoice:
        inv = self.invoice(which)
        if inv.state != "issued":
            raise InvoiceError(f"invoice {inv.name} is {inv.state}; only an issued one is paid")
        with self.ledger.transaction() as db:
            db.execute("UPDATE invoices SET state = 'paid', paid_at = ? WHERE id = ?",
                       (int(time.time()) if now is None else now, inv.id))
        return self.by_id(inv.id)

    def void(self, which: str, now: int | None = None) -> Invoice:
        """Void an issued invoice (its items go on the client's next invoice) or delete a
        draft. Only the client's last invoice: a later one covers the same movements."""
        self.post_pending()                  # settled before it changes
        inv = self.invoice(which)
        now = int(time.time()) if now is None else now
        with self.ledger.transaction() as db:
            if inv.state == "draft":
                db.execute("DELETE FROM invoice_lines WHERE invoice = ?", (inv.id,))
                db.execute("DELETE FROM invoices WHERE id = ?", (inv.id,))
                inv.state = "void"
                return inv
            if inv.state != "issued":
                raise InvoiceError(f"invoice {inv.name} is {inv.state}; only an issued "
                                   f"invoice is voided")
            if self.basis(inv.client).invoice != inv.id:
                raise InvoiceError(f"invoice {inv.name} is not the client's last; void the "
                                   f"later ones first")
            db.execute("UPDATE invoices SET state = 'void', voided_at = ? WHERE id = ?",
                       (now, inv.id))
            # Its corrections and the carried changes it took go to the next invoice.
            db.execute("DELETE FROM claimed WHERE invoice = ?", (inv.id,))
            db.execute("UPDATE carried SET taken_by = NULL WHERE taken_by = ?", (inv.id,))
        self.post_pending()
        return self.by_id(inv.id)

    def record_deliveries(self, sent: Sequence[tuple[Invoice, str | None]],
                          now: int | None = None) -> None:
        """Keep what came of e-mailing each invoice."""
        now = int(time.time()) if now is None else now
        with self.ledger.transaction() as db:
            db.executemany("INSERT INTO deliveries (invoice, channel, address, at, error) "
                           "VALUES (?, 'email', ?, ?, ?)",
                           [(inv.id, inv.details.get("email"), now, error)
                            for inv, error in sent])

    def deliveries(self, invoice: int) -> list[dict[str, Any]]:
        return [{"channel": c, "address": a, "at": int(t), "error": e} for c, a, t, e in
                self.db.execute("SELECT channel, address, at, error FROM deliveries WHERE "
                                "invoice = ? ORDER BY at", (invoice,))]
