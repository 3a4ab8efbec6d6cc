"""Bill runs: a period's invoices for a set of clients, as one recorded piece of work.

A run has a mode (``prepaid`` runs are described in :mod:`rater.subscriptions`:
they debit wallets and make no invoices):

``pre-production``  makes each client's draft invoice ("to verify") and the
                    billing control report. Run it as often as needed: a
                    client's draft of the period is replaced, never doubled.
``production``      issues the drafts (made again first when the client's last
                    issued invoice changed since), or makes and issues them:
                    numbers from the issuer's series, the fixed balance moved.

Its life cycle: ``draft`` (recorded) → ``rating`` (the postpaid clients'
subscription fees of the period are posted, once each, and the ledger takes
what the journal has: calls are rated when they are imported) → ``invoicing`` (one read
of the movements for every client; drafts, then numbers, in one SQL
transaction) → ``posting`` (the issued invoices' entries in the journal) →
``formatting`` (PDFs, CSV, the control report into its output directory) →
``completed``, or ``completed-with-errors`` when some clients have exceptions,
or ``failed`` when the run itself stopped (its error is kept; what it issued,
it issued whole). A client's failure is an exception of the run with a reason
code; the others go on.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .clients import Client, Registry
from .errors import InvalidArgument, InvoiceError, RaterError
from .files import replacing
from .invoices import (
    Basis,
    Invoice,
    Invoicing,
    Period,
    dates_period,
    month_period,
    parse_day,
    parse_month,
)
from .ledger import Ledger
from .progress import Progress
from .settings import MailSettings
from .store import Store

MODES = ("pre-production", "production", "prepaid")
STATES = ("draft", "rating", "invoicing", "posting", "formatting", "completed",
          "completed-with-errors", "failed")
#: Reason codes of a client's exception.
REASONS = {
    "no-issuer": "the client names no issuer and there is no default one",
    "already-invoiced": "an issued invoice covers the period",
    "period-overlaps": "the client's last invoice ends inside the period",
    "period-not-ended": "production: the client's period has not ended yet",
    "render-failed": "its PDF could not be rendered",
    "sepa-not-ready": "its issuer has no SEPA creditor id, IBAN or BIC for the direct debit",
    "no-email": "it has no billing e-mail address (or its invoice no PDF) to send to",
    "email-failed": "the SMTP server refused its invoice or could not be reached",
    "insufficient-funds": "prepaid: its wallet cannot pay the fees due (nothing debited)",
    "error": "something else went wrong for this client (the message says what)",
}
RUNS_DIR = "bill-runs"
#: Where documents are written in the data directory (backed up with it): each run's
#: output, and the PDFs made outside a run for invoices that had none.
DOCUMENT_DIRS = (RUNS_DIR, "invoices")


def pdf_dir(store: Store, inv: Invoice) -> Path:
    """Where an invoice's PDF goes when no run made one: beside its period's others."""
    return store.data_dir / DOCUMENT_DIRS[1] / inv.period.replace("/", "_")


@dataclass
class Selection:
    """Which clients a run bills: all that are not deleted, or those named, tagged or
    billed on a day of the month."""

    clients: list[str] | None = None
    tag: str | None = None
    billing_day: int | None = None

    def pick(self, registry: Registry) -> list[Client]:
        if self.clients:
            with registry.store.read() as txn:
                return [registry.get_client(txn, name) for name in self.clients]
        return [c for c in registry.clients()
                if c.status != "deleted"
                and (self.tag is None or self.tag in c.tags)
                and (self.billing_day is None or c.billing_day == self.billing_day)]

    def to_json(self) -> dict[str, Any]:
        return {"clients": self.clients, "tag": self.tag, "billing_day": self.billing_day}


@dataclass
class RunException:
    client: int
    client_name: str
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"client": self.client_name, "code": self.code, "message": self.message}


@dataclass
class BillRun:
    id: int
    mode: str
    #: ``YYYY-MM`` (each client's month from its billing day) or ``FROM/TO`` (dates, TO
    #: not included); a prepaid run's day (YYYY-MM-DD).
    period: str
    selection: Selection
    state: str
    created: int
    finished: int | None = None
    output_dir: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exceptions: list[RunException] = field(default_factory=list)

    @property
    def control_report(self) -> str | None:
        return None if self.output_dir is None else str(Path(self.output_dir) /
                                                        "control-report.xlsx")

    def to_json(self, invoices: list[Invoice] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "mode": self.mode, "period": self.period, "state": self.state,
            "clients": self.selection.to_json(), "created": self.created,
            "finished": self.finished, "output_dir": self.output_dir,
            "control_report": self.control_report, "results": self.results,
            "error": self.error, "exceptions": [x.to_json() for x in self.exceptions]}
        if invoices is not None:
            d["invoices"] = [i.to_json() for i in invoices]
        return d

    def period_of(self, client: Client) -> Period:
        if "/" in self.period:
            first, to = self.period.split("/")
            return dates_period(client, date.fromisoformat(first), date.fromisoformat(to))
        return month_period(client, self.period)


def period_text(month: str | None, since: str | None, until: str | None) -> str:
    """A run's period from ``--period`` or ``--from``/``--to`` (dates; --to not in it)."""
    if month is not None:
        if since is not None or until is not None:
            raise InvalidArgument("--period or --from/--to, not both")
        parse_month(month)
        return month
    if since is None or until is None:
        raise InvalidArgument("--period YYYY-MM, or --from DATE --to DATE")
    days = [parse_day(since, "--from"), parse_day(until, "--to")]
    if days[1] <= days[0]:
        raise InvalidArgument("--to must be after --from (--to is the first day not billed)")
    return f"{days[0]}/{days[1]}"


class BillRuns:
    """Creating, running and reading bill runs of a data directory."""

    def __init__(self, store: Store, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        self.invoicing = Invoicing(ledger)
        self.registry = Registry(store)

    # -- records

    def create(self, mode: str, period: str, selection: Selection,
               output_dir: Path | None = None, *, now: int | None = None) -> BillRun:
        if mode not in MODES:
            raise InvalidArgument(f"--mode {mode!r}: {', '.join(MODES)}")
        if selection.clients:
            selection.pick(self.registry)    # an unknown name: an error, and no run
        now = int(time.time()) if now is None else now
        with self.ledger.transaction() as db:
            rid = int(db.execute(
                "INSERT INTO bill_runs (mode, period, selection, state, created) VALUES "
                "(?, ?, ?, 'draft', ?) RETURNING id",
                (mode, period, json.dumps(selection.to_json()), now)).fetchone()[0])
            if mode != "prepaid":           # a prepaid run writes no documents
                out = output_dir or self.store.data_dir / RUNS_DIR / str(rid)
                db.execute("UPDATE bill_runs SET output_dir = ? WHERE id = ?",
                           (str(out), rid))
        return self.get(rid)

    def get(self, rid: int) -> BillRun:
        if not 0 < rid < 2**63:
            raise InvoiceError(f"no bill run {rid}", hint="rater billing runs")
        row = self.ledger.db.execute(
            "SELECT id, mode, period, selection, state, created, finished, output_dir, "
            "results, error FROM bill_runs WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise InvoiceError(f"no bill run {rid}", hint="rater billing runs")
        run = BillRun(int(row[0]), row[1], row[2], Selection(**json.loads(row[3])), row[4],
                      int(row[5]), row[6], row[7], json.loads(row[8] or "{}"), row[9])
        run.exceptions = [RunException(int(c), n, code, m) for c, n, code, m in
                          self.ledger.db.execute(
                              "SELECT client, client_name, code, message FROM run_exceptions "
                              "WHERE run = ? ORDER BY client", (rid,))]
        return run

    def runs(self) -> list[BillRun]:
        return [self.get(int(r[0])) for r in self.ledger.db.execute(
            "SELECT id FROM bill_runs ORDER BY id")]

    def _state(self, run: BillRun, state: str, **more: Any) -> None:
        assert state in STATES, state
        run.state = state
        sets = ["state = ?"]
        values: list[Any] = [state]
        for name, value in more.items():
            setattr(run, name, value)
            sets.append(f"{name} = ?")
            values.append(json.dumps(value) if name == "results" else value)
        with self.ledger.transaction() as db:
            db.execute(f"UPDATE bill_runs SET {', '.join(sets)} WHERE id = ?",
                       (*values, run.id))

    @staticmethod
    def _exception(run: BillRun, client: int, name: str, code: str, message: str) -> None:
        assert code in REASONS, code
        run.exceptions.append(RunException(client, name, code, message))

    # -- running

    def execute(self, run: BillRun, *, pdf: bool = True, processes: int | None = None,
                progress: Progress | None = None, now: int | None = None,
                mail: MailSettings | None = None, suspend: bool = True,
                estimate: bool = True) -> BillRun:
        """Take a recorded run through its life cycle; with ``mail``, e-mail the issued
        invoices (production, with PDFs). A prepaid run's optional steps: ``suspend``
        (and restart), ``estimate`` (when wallets run out)."""
        if mail is not None and (run.mode != "production" or not pdf):
            raise InvalidArgument("e-mail goes with a production run that makes PDFs")
        if run.state != "draft":
            raise InvoiceError(f"bill run {run.id} is {run.state}; a run goes once",
                               hint="start a new run")
        now = int(time.time()) if now is None else now
        started = time.time()
        try:
            if run.mode == "prepaid":
                results = self._prepaid(run, now, suspend=suspend, estimate=estimate)
            else:
                results = self._invoices(run, now, pdf=pdf, processes=processes,
                                         progress=progress, mail=mail)
        except BaseException as exc:    # an interrupted run is failed too, not left going
            why = exc.message if isinstance(exc, RaterError) else (
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            self._state(run, "failed", error=why, finished=int(time.time()))
            raise
        finally:
            self._save_exceptions(run)
        results.update(exceptions=len(run.exceptions), seconds=round(time.time() - started, 3))
        self._state(run, "completed-with-errors" if run.exceptions else "completed",
                    results=results, finished=int(time.time()))
        return run

    def _invoices(self, run: BillRun, now: int, *, pdf: bool, processes: int | None,
                  progress: Progress | None, mail: MailSettings | None) -> dict[str, Any]:
        """A normal run's steps; its results."""
        if pdf:
            from .documents import check_renderer

            check_renderer()       # before anything is issued, not after
        self._state(run, "rating")
        clients = run.selection.pick(self.registry)
        failed = self._post_fees(run, clients, now)
        self.ledger.tail(progress)
        self._state(run, "invoicing")
        empty, invoices = self._invoice(run, [c for c in clients if c.id not in failed], now)
        self._state(run, "posting")
        if run.mode == "production":
            self.invoicing.post_pending()
        self._state(run, "formatting")
        self._format(run, invoices, pdf=pdf, processes=processes)
        if mail is not None:
            self._email(run, invoices, mail)
        totals: dict[str, int] = {}
        for inv in invoices:
            totals[inv.currency] = totals.get(inv.currency, 0) + inv.total
        return {"clients": len(clients), "invoices": len(invoices),
                "issued": sum(1 for i in invoices if i.number is not None), "empty": empty,
                "totals": {c: _money(v, c) for c, v in sorted(totals.items())}}

    def _prepaid(self, run: BillRun, now: int, *, suspend: bool, estimate: bool
                 ) -> dict[str, Any]:
        """A prepaid run's step (posting: the wallets debited), with the clients whose
        wallets could not pay as exceptions; its results."""
        from .subscriptions import prepaid_run

        self._state(run, "posting")
        ids = None
        if run.selection != Selection():
            ids = {c.id for c in run.selection.pick(self.registry)}
        done = prepaid_run(self.store, date.fromisoformat(run.period), suspend=suspend,
                           estimate=estimate, clients=ids, now=now)
        for cid, name, code, message in done.exceptions:
            self._exception(run, cid, name, code, message)
        return done.results()

    def _post_fees(self, run: BillRun, clients: list[Client], now: int) -> set[int]:
        """Post the postpaid clients' subscription fees of the period (each once), so
        that the ledger has them for the invoices (prepaid clients' wallets pay theirs in
        prepaid runs). Returns the clients whose fees failed: they are not invoiced."""
        from .subscriptions import post_fees

        due = []
        failed: dict[int, str] = {}
        for client in clients:
            if client.mode == "postpaid":
                try:
                    period = run.period_of(client)
                    due.append((client, period.start, period.end))
                except RaterError as exc:
                    failed[client.id] = exc.message
        failed |= post_fees(self.store, due, now)
        names = {c.id: c.name for c in clients}
        for cid, message in failed.items():
            self._exception(run, cid, names[cid], "error", message)
        return set(failed)

    def _save_exceptions(self, run: BillRun) -> None:
        with self.ledger.transaction() as db:
            db.execute("DELETE FROM run_exceptions WHERE run = ?", (run.id,))
            db.executemany("INSERT INTO run_exceptions (run, client, client_name, code, "
                           "message) VALUES (?, ?, ?, ?, ?)",
                           [(run.id, x.client, x.client_name, x.code, x.message)
                            for x in run.exceptions])

    def _invoice(self, run: BillRun, clients: list[Client], now: int
                 ) -> tuple[int, list[Invoice]]:
        """Make (and in production issue) the invoices of ``clients``; how many had nothing
        to bill, and the invoices with their lines in the order they were made."""
        inv = self.invoicing
        chosen: dict[int, tuple[Client, Period, Basis, Any]] = {}
        issuers = {i.name: i for i in inv.issuers()}
        for client in clients:
            try:
                period = run.period_of(client)
                issuer = inv.issuer_of(client, issuers)
            except InvoiceError as exc:
                self._exception(run, client.id, client.name, "no-issuer", exc.message)
                continue
            except RaterError as exc:
                self._exception(run, client.id, client.name, "error", exc.message)
                continue
            basis = inv.basis(client.id)
            if basis.end_at >= period.end_at:
                self._exception(run, client.id, client.name, "already-invoiced",
                                f"invoice #{basis.invoice} covers {period.label}")
                continue
            if basis.end_at > period.start_at:
                self._exception(run, client.id, client.name, "period-overlaps",
                                f"invoice #{basis.invoice} ends after {period.start}")
                continue
            if run.mode == "production" and period.end_at > now:
                self._exception(run, client.id, client.name, "period-not-ended",
                                f"{period.label} ends {period.end} ({client.timezone}); "
                                f"pre-production may rehearse it")
                continue
            chosen[client.id] = (client, period, basis, issuer)
        through = self.ledger.position
        # Production issues a draft as it was verified, unless the client's last invoice
        # is no longer the one it follows: that one is made again.
        keep: dict[int, Invoice] = {}
        if run.mode == "production":
            for d in inv.invoices(state="draft"):
                c = chosen.get(d.client)
                if c and d.start_at == c[1].start_at and d.end_at == c[1].end_at \
                        and inv.still_follows(d, c[2]) and not inv.claimed_since(d):
                    keep[d.client] = inv.by_id(d.id)                   # with its lines
        scanned = inv.scan({cid: (p, b) for cid, (_, p, b, _) in chosen.items()
                            if cid not in keep}, through)
        empty = 0
        made: list[Invoice] = []
        with self.ledger.transaction() as db:
            for cid, (client, period, basis, issuer) in chosen.items():
                db.execute("SAVEPOINT client")
                try:
                    draft = keep.get(cid)
                    if draft is None:
                        draft = inv.replace_draft(db, client, period, basis, scanned[cid],
                                                  issuer=issuer.name, run=run.id,
                                                  through=through, now=now)
                    else:
                        db.execute("UPDATE invoices SET run = ?, issuer = ? WHERE id = ?",
                                   (run.id, issuer.name, draft.id))
                    if draft is None:
                        empty += 1
                        continue
                    if run.mode == "production":
                        inv.issue(db, draft, client, issuer, basis, now)
                    draft.run = run.id
                    made.append(draft)
                except Exception as exc:
                    db.execute("ROLLBACK TO SAVEPOINT client")
                    message = exc.message if isinstance(exc, RaterError) else \
                        f"{type(exc).__name__}: {exc}"
                    self._exception(run, client.id, client.name, "error", message)
                finally:
                    db.execute("RELEASE SAVEPOINT client")
        made.sort(key=lambda i: i.id)
        return empty, made

    def _format(self, run: BillRun, invoices: list[Invoice], *, pdf: bool,
                processes: int | None) -> None:
        from . import documents

        assert run.output_dir is not None
        out = Path(run.output_dir)
        try:
            (out / "pdf").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RaterError(f"cannot write the run's output into {out}: {exc}") from None
        if pdf:
            for inv, error in render_pdfs(self.invoicing, invoices, out / "pdf", processes):
                self._exception(run, inv.client, inv.client_name, "render-failed", error)
        documents.write_csv(out / "invoices.csv", invoices)
        documents.write_lines_csv(out / "invoice-lines.csv", invoices)
        previous = {int(r[0]): int(r[1]) for r in self.ledger.db.execute(
            "SELECT id, total FROM invoices WHERE id IN (SELECT previous_invoice FROM "
            "invoices WHERE run = ?)", (run.id,))}
        documents.write_control_report(
            out / "control-report.xlsx",
            f"Billing control report: bill run {run.id}, {run.mode}, period {run.period}",
            documents.control_rows(invoices, previous))
        if run.mode == "production":
            self._direct_debits(run, invoices, out)

    def _direct_debits(self, run: BillRun, invoices: list[Invoice], out: Path) -> None:
        """``sepa-ISSUER.xml``: a pain.008 per issuer, of the invoices SEPA collects."""
        from datetime import UTC, datetime

        from . import documents, sepa

        by_issuer: dict[str, list[Invoice]] = {}
        for inv in invoices:
            if sepa.collected(inv) > 0:
                by_issuer.setdefault(inv.issuer, []).append(inv)
        for k, (name, batch) in enumerate(sorted(by_issuer.items()), 1):
            try:
                xml = sepa.direct_debit(self.invoicing.issuer(name), batch,
                                        f"RATER-RUN-{run.id}-{k}", datetime.now(UTC))
            except InvoiceError as exc:
                for inv in batch:
                    self._exception(run, inv.client, inv.client_name, "sepa-not-ready",
                                    exc.message)
                continue
            with replacing(out / f"sepa-{documents.safe_name(name)}.xml") as f:
                f.write(xml)

    def _email(self, run: BillRun, invoices: list[Invoice], mail: MailSettings) -> None:
        from .mail import send_invoices, unsendable

        issuers = {i.name: i for i in self.invoicing.issuers()}
        sent = send_invoices(mail, [(inv, issuers[inv.issuer]) for inv in invoices
                                    if inv.number is not None])
        self.invoicing.record_deliveries(sent)
        for inv, error in sent:
            if error is not None:
                code = "no-email" if unsendable(inv) else "email-failed"
                self._exception(run, inv.client, inv.client_name, code, error)


def render_pdfs(invoicing: Invoicing, invoices: list[Invoice], target: Path,
                processes: int | None) -> list[tuple[Invoice, str]]:
    """Render each invoice's PDF into the directory ``target`` and record its path;
    returns the invoices that failed, with why."""
    from . import documents

    if not invoices:
        return []
    target.mkdir(parents=True, exist_ok=True)
    issuers = {i.name: i for i in invoicing.issuers()}
    by_id = {i.id: i for i in invoices}
    jobs = [(i.id, documents.invoice_html(i, issuers[i.issuer]),
             str(target / f"{documents.safe_name(i.number or f'draft-{i.id}')}.pdf"))
            for i in invoices]
    failed: list[tuple[Invoice, str]] = []
    rendered: list[tuple[str, int]] = []
    for iid, path, error in documents.render_many(jobs, processes):
        if path is None:
            failed.append((by_id[iid], str(error)))
        else:
            by_id[iid].pdf = path
            rendered.append((path, iid))
    with invoicing.ledger.transaction() as db:
        db.executemany("UPDATE invoices SET pdf = ? WHERE id = ?", rendered)
    return failed


def _money(nanos: int, currency: str) -> str:
    from .money import format_nanos, minor_unit

    return format_nanos(nanos, minor_unit(currency))


# -- recurring runs

@dataclass
class Schedule:
    """A recurring bill run: ``monthly`` on a day of the month (the month before is
    billed, each client from its billing day), or ``daily`` (the day before; a prepaid
    run, the fees due that day)."""

    name: str
    every: str
    day: int | None
    at_time: str
    timezone: str
    mode: str
    selection: Selection
    email: bool = False
    pdf: bool = True
    last_period: str | None = None
    #: When it was added: it first runs at its first time after that.
    created: int = 0

    def check(self) -> None:
        from .clients import _NAME
        from .timeutil import zone

        if not _NAME.fullmatch(self.name):
            raise InvalidArgument(f"schedule name {self.name!r}: 1 to 80 characters")
        if self.every not in ("monthly", "daily"):
            raise InvalidArgument("a schedule runs monthly or daily")
        if (self.every == "monthly") != (self.day is not None) or (
                self.day is not None and not 1 <= self.day <= 28):
            raise InvalidArgument("a monthly schedule runs on a day 1..28; a daily one on "
                                  "every day")
        if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", self.at_time):
            raise InvalidArgument(f"--at {self.at_time!r}: HH:MM")
        zone(self.timezone)
        if self.mode not in MODES:
            raise InvalidArgument(f"--mode {self.mode!r}: {', '.join(MODES)}")
        if self.mode == "prepaid" and self.every != "daily":
            raise InvalidArgument("a prepaid run is daily")
        if self.email and (self.mode != "production" or not self.pdf):
            raise InvalidArgument("--email goes with --mode production and PDFs")

    def due(self, now: int) -> tuple[int, str]:
        """The latest time it was due at or before ``now``, and the period that run bills."""
        from datetime import datetime, timedelta
        from datetime import time as clock

        from .timeutil import zone

        tz = zone(self.timezone)
        local = datetime.fromtimestamp(now, tz)
        hour, minute = (int(x) for x in self.at_time.split(":"))
        if self.every == "daily":
            day = local.date()
        else:
            assert self.day is not None
            day = local.date().replace(day=self.day)
            if day > local.date():
                day = (day.replace(day=1) - timedelta(days=1)).replace(day=self.day)
        at = datetime.combine(day, clock(hour, minute), tz)
        if at > local:
            if self.every == "daily":
                day -= timedelta(days=1)
            else:
                day = (day.replace(day=1) - timedelta(days=1)).replace(day=self.day or 1)
            at = datetime.combine(day, clock(hour, minute), tz)
        if self.mode == "prepaid":
            period = day.isoformat()
        elif self.every == "daily":
            period = f"{day - timedelta(days=1)}/{day}"
        else:
            before = day.replace(day=1) - timedelta(days=1)
            period = f"{before:%Y-%m}"
        return int(at.timestamp()), period

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "every": self.every, "day": self.day, "at": self.at_time,
                "timezone": self.timezone, "mode": self.mode,
                "clients": self.selection.to_json(), "email": self.email, "pdf": self.pdf,
                "last_period": self.last_period}


def _auto_key(cid: int) -> bytes:
    """The mark of the last month auto-invoicing tried for a client."""
    return f"auto-invoice:{cid}".encode()


_SCHEDULE_COLUMNS = ("name, every, day, at_time, timezone, mode, selection, email, pdf, "
                     "last_period, created")


class Schedules:
    """The recurring runs of a ledger, and running those that are due."""

    def __init__(self, runs: BillRuns) -> None:
        self.runs = runs
        self.ledger = runs.ledger

    def add(self, s: Schedule, now: int | None = None) -> Schedule:
        s.check()
        s.created = int(time.time()) if now is None else now
        with self.ledger.transaction() as db:
            if db.execute("SELECT 1 FROM schedules WHERE name = ?", (s.name,)).fetchone():
                raise InvoiceError(f"schedule {s.name} exists")
            db.execute(f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) VALUES "
                       f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (s.name, s.every, s.day, s.at_time, s.timezone, s.mode,
                        json.dumps(s.selection.to_json()), int(s.email), int(s.pdf), None,
                        s.created))
        return s

    def delete(self, name: str) -> None:
        with self.ledger.transaction() as db:
            if db.execute("DELETE FROM schedules WHERE name = ? RETURNING name",
                          (name,)).fetchone() is None:
                raise InvoiceError(f"no schedule {name!r}", hint="rater billing schedule list")

    def schedules(self) -> list[Schedule]:
        return [Schedule(r[0], r[1], r[2], r[3], r[4], r[5], Selection(**json.loads(r[6])),
                         bool(r[7]), bool(r[8]), r[9], int(r[10])) for r in self.ledger.db.execute(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules ORDER BY name")]

    def run_auto_invoicing(self, now: int, mail: MailSettings | None = None,
                           progress: Progress | None = None
                           ) -> list[tuple[str, BillRun | str]]:
        """Invoice the clients flagged ``auto_invoice`` whose last billing month has ended
        (on their billing day, in their time zone) and is not invoiced: one production
        run per month, with PDFs in each client's template, e-mailed when ``mail`` is
        given. A client is tried once per month (a failure is the run's exception, not
        tried again every minute). Returns each month and its run, or the error that
        stopped it."""
        from datetime import datetime, timedelta

        from .subscriptions import period_of
        from .timeutil import zone

        store = self.runs.store
        flagged = [c for c in self.runs.registry.clients()
                   if c.auto_invoice and c.status != "deleted"]
        with store.read() as txn:
            tried = {c.id: store.meta.get(txn, _auto_key(c.id)) for c in flagged}
        due: dict[str, list[Client]] = {}
        for c in flagged:
            today = datetime.fromtimestamp(now, zone(c.timezone)).date()
            # The billing month that ended last: the one before the month holding today.
            latest, _ = period_of(today, "monthly", c.billing_day)
            month = f"{period_of(latest - timedelta(days=1), 'monthly', c.billing_day)[0]:%Y-%m}"
            if tried[c.id] == month.encode():
                continue
            if self.runs.invoicing.basis(c.id).end_at >= month_period(c, month).end_at:
                continue
            due.setdefault(month, []).append(c)
        done: list[tuple[str, BillRun | str]] = []
        for month, clients in sorted(due.items()):
            def mark(txn: Any, month: str = month, clients: list[Client] = clients) -> None:
                for c in clients:
                    store.meta.put(txn, _auto_key(c.id), month.encode())

            store.write(mark)
            try:
                run = self.runs.create("production", month,
                                       Selection([c.name for c in clients]))
                done.append((month, self.runs.execute(run, progress=progress, mail=mail)))
            except Exception as exc:         # reported; the scheduler goes on
                done.append((month, exc.message if isinstance(exc, RaterError) else
                             f"{type(exc).__name__}: {exc}"))
        return done

    def run_due(self, now: int, mail: MailSettings | None = None,
                progress: Progress | None = None) -> list[tuple[Schedule, BillRun | str]]:
        """Run each schedule whose latest time has come and whose period it has not run
        (missed times are not run one by one: the latest period is). Returns what ran:
        the run, or the error that stopped it."""
        done: list[tuple[Schedule, BillRun | str]] = []
        for s in self.schedules():
            at, period = s.due(now)
            if at < s.created or period == s.last_period:
                continue
            # Taken before the run: a run that fails is reported, not retried every minute
            # (runs are safe to repeat: `rater billing run` takes up what it missed).
            with self.ledger.transaction() as db:
                db.execute("UPDATE schedules SET last_period = ? WHERE name = ?",
                           (period, s.name))
            try:
                run = self.runs.create(s.mode, period, s.selection)
                done.append((s, self.runs.execute(run, pdf=s.pdf, progress=progress,
                                                  mail=mail if s.email else None)))
            except Exception as exc:         # reported; the scheduler goes on
                done.append((s, exc.message if isinstance(exc, RaterError) else
                             f"{type(exc).__name__}: {exc}"))
        return done
