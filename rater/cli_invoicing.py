"""The ``rater`` commands about invoices: ``issuer``, ``invoice`` and ``billing run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli import _open, _print_json, _table
from .clients import DEFAULT_PATTERN, SHOWN_STATES
from .errors import InvalidArgument

if TYPE_CHECKING:
    from .invoices import Invoice, Invoicing

# Invoicing and the ledger (and sqlite3) are imported by the commands that use them, not
# by every `rater`.


@contextmanager
def _ledger(args: argparse.Namespace) -> Iterator[Any]:
    """The data directory's store and ledger."""
    from .ledger import Ledger

    with _open(args) as store, Ledger(store) as ledger:
        yield store, ledger


@contextmanager
def _invoicing(args: argparse.Namespace) -> Iterator[Invoicing]:
    with _ledger(args) as (_, ledger):
        from .invoices import Invoicing

        yield Invoicing(ledger)


# -- issuers

def _issuer_changes(args: argparse.Namespace) -> dict[str, Any]:
    ch: dict[str, Any] = {}
    for name in ("address", "vat_id", "pattern", "creditor_id", "iban", "bic"):
        value = getattr(args, name)
        if value is not None:
            if name == "address":
                value = value.replace("\\n", "\n")
            elif name != "pattern":
                value = value.replace(" ", "").upper()
            if not value and name in ("address", "pattern"):
                raise InvalidArgument(f"--{name}: an issuer always has one")
            ch[name] = value or None
    if args.default:
        ch["default"] = True
    return ch


def cmd_issuer_add(args: argparse.Namespace) -> int:
    ch = _issuer_changes(args)
    if not ch.get("address"):
        raise InvalidArgument("--address is needed")
    with _invoicing(args) as inv:
        from .invoices import Issuer

        issuer = inv.add_issuer(Issuer(args.name, **ch))
    print(f"issuer {issuer.name} added, numbers {issuer.pattern}"
          + (" (the default issuer)" if issuer.default else ""))
    return 0


def cmd_issuer_edit(args: argparse.Namespace) -> int:
    with _invoicing(args) as inv:
        issuer = inv.edit_issuer(args.name, **_issuer_changes(args))
    print(f"issuer {issuer.name} changed")
    return 0


def cmd_issuer_list(args: argparse.Namespace) -> int:
    with _invoicing(args) as inv:
        issuers = inv.issuers()
    if args.json:
        _print_json([i.to_json() for i in issuers])
    else:
        _table([(i.name, "yes" if i.default else "", i.pattern, i.vat_id or "",
                 i.address.replace("\n", ", ")) for i in issuers],
               ("name", "default", "numbers", "VAT id", "address"))
    return 0


# -- invoices

def _client_id(inv: Invoicing, name: str | None) -> int | None:
    if name is None:
        return None
    from .clients import Registry

    store = inv.ledger.store
    with store.read() as txn:
        return Registry(store).client_id(txn, name)


def _rows(invoices: list[Invoice]) -> list[tuple[object, ...]]:
    return [(i.id, i.number or "", i.client_name, i.period, i.money(i.total), i.currency,
             i.shown_state, i.due_date or "", i.pdf or "") for i in invoices]


def cmd_invoice_list(args: argparse.Namespace) -> int:
    with _invoicing(args) as inv:
        found = inv.invoices(period=args.period, client=_client_id(inv, args.client),
                             state=args.state)
    if args.json:
        _print_json([i.to_json() for i in found])
    else:
        _table(_rows(found), ("id", "number", "client", "period", "total", "currency",
                              "state", "due", "pdf"))
    return 0


def cmd_invoice_show(args: argparse.Namespace) -> int:
    from .documents import minutes

    with _invoicing(args) as inv:
        found = inv.invoice(args.invoice)
        sent = inv.deliveries(found.id)
    if args.json:
        _print_json({**found.to_json(lines=True), "deliveries": sent})
        return 0
    j = found.to_json()
    print(f"{found.kind} {found.name}: {found.client_name}, period {found.period} "
          f"({j['start']} to {j['end']}), {j['state']}")
    _table([(ln.kind, ln.description, ln.calls or "", minutes(ln.seconds) if ln.calls
             else "", found.money(ln.amount)) for ln in found.lines],
           ("kind", "description", "calls", "minutes", "amount"))
    print(f"total {j['total']} {found.currency}; previous balance {j['previous_balance']}, "
          f"payments {j['payments']}, amount due {j['amount_due']}"
          + (f", due {found.due_date}" if found.due_date else ""))
    if found.pdf:
        print(f"pdf {found.pdf}")
    return 0


def _mail(args: argparse.Namespace) -> Any:
    from .settings import load

    return load(args.config).mail


def cmd_invoice_send(args: argparse.Namespace) -> int:
    from .errors import InvoiceError
    from .mail import send_invoices

    mail = _mail(args)
    with _invoicing(args) as inv:
        found = inv.invoice(args.invoice)
        if found.number is None:
            raise InvoiceError(f"{found.name} is a draft; only an issued invoice is sent")
        if found.pdf is None:                # made by a run without PDFs: render it now
            from .billrun import pdf_dir, render_pdfs

            failed = render_pdfs(inv, [found], pdf_dir(inv.ledger.store, found), 1)
            if failed:
                raise InvoiceError(f"invoice {found.name} has no PDF: {failed[0][1]}")
        [(_, error)] = send_invoices(mail, [(found, inv.issuer(found.issuer))])
        inv.record_deliveries([(found, error)])
    if error is not None:
        raise InvoiceError(f"invoice {found.name} not sent: {error}")
    print(f"invoice {found.name} sent to {found.details.get('email')}")
    return 0


def cmd_invoice_pay(args: argparse.Namespace) -> int:
    with _invoicing(args) as inv:
        found = inv.mark_paid(args.invoice)
    print(f"invoice {found.name} paid")
    return 0


def cmd_invoice_void(args: argparse.Namespace) -> int:
    with _invoicing(args) as inv:
        found = inv.void(args.invoice)
    print(f"invoice {found.name} void" + ("" if found.number is None else
                                         "; its items go on the client's next invoice"))
    return 0


def cmd_invoice_reissue(args: argparse.Namespace) -> int:
    import time

    from .billrun import pdf_dir, render_pdfs
    from .clients import Registry
    from .errors import InvoiceError

    how = args.how
    with _invoicing(args) as inv:
        store = inv.ledger.store
        registry = Registry(store)
        wanted = None
        if args.clients:
            with store.read() as txn:
                wanted = {registry.client_id(txn, name) for name in args.clients}
        chosen = [i for i in inv.invoices(period=args.period)
                  if i.kind == "invoice" and i.state in ("issued", "paid")
                  and i.replaced_by is None and (wanted is None or i.client in wanted)]
        if not chosen:
            raise InvoiceError(f"no issued invoice of {args.period} to re-issue"
                               + (" for those clients" if args.clients else ""))
        made = []
        now = int(time.time())
        for old in chosen:
            with store.read() as txn:
                client = registry.client_by_id(txn, old.client)
            for new in inv.reissue(old, client, inv.issuer(old.issuer), how, now):
                new.pdf = new.pdf if how == "keep-numbers" else None
                made.append((old, new))
        failed = []
        if not args.no_pdf:
            # One rendering per folder, so that --processes renders them side by side.
            by_dir: dict[Path, list[Invoice]] = {}
            for old, new in made:
                where = Path(old.pdf).parent if old.pdf else pdf_dir(store, new)
                by_dir.setdefault(where, []).append(new)
            for where, news in by_dir.items():
                failed += render_pdfs(inv, news, where, args.processes)
        shown = [{"old": old.number, **new.to_json()} for old, new in made]
    if args.json:
        _print_json(shown)
    else:
        for j in shown:
            print(f"{j['old']} -> {j['kind']} {j['number']}: total {j['total']} "
                  f"{j['currency']}, amount due {j['amount_due']}")
    for bad, error in failed:
        print(f"rater: {bad.name}: no PDF: {error}", file=sys.stderr)
    return 1 if failed else 0


# -- bill runs

def cmd_billing_run(args: argparse.Namespace) -> int:
    from .billrun import BillRuns, Selection, period_text
    from .progress import Progress

    if args.mode == "prepaid":
        return _prepaid_run(args)
    if args.as_of is not None:
        raise InvalidArgument("--as-of goes with --mode prepaid")
    period = period_text(args.period, args.since, args.until)
    selection = Selection(args.clients or None, args.tag, args.billing_day)
    if args.processes is not None and args.processes < 1:
        raise InvalidArgument(f"--processes {args.processes}: at least 1")
    mail = _mail(args) if args.email else None
    if mail is not None and (args.mode != "production" or args.no_pdf):
        raise InvalidArgument("--email goes with --mode production and PDFs")
    with _ledger(args) as (store, ledger):
        runs = BillRuns(store, ledger)
        run = runs.create(args.mode, period, selection,
                          Path(args.output_dir).resolve() if args.output_dir else None)
        with Progress("ledger", None, unit="entries") as bar:
            runs.execute(run, pdf=not args.no_pdf, processes=args.processes, progress=bar,
                         mail=mail)
        if args.json:
            _print_json(run.to_json(runs.invoicing.invoices(run=run.id)))
            return 0
    r = run.results
    totals = ", ".join(f"{v} {c}" for c, v in r["totals"].items()) or "nothing"
    print(f"bill run {run.id} ({run.mode}, {run.period}): {run.state}; {r['invoices']} "
          f"invoice(s) of {r['clients']} client(s), {r['issued']} issued, {r['empty']} "
          f"with nothing to bill; total {totals}")
    for x in run.exceptions:
        print(f"  exception: {x.client_name}: {x.code}: {x.message}")
    print(f"output: {run.output_dir}")
    return 0


def _prepaid_run(args: argparse.Namespace) -> int:
    from datetime import date

    from .billrun import BillRuns, Selection
    from .invoices import parse_day

    if args.period or args.since or args.until or args.email or args.no_pdf:
        raise InvalidArgument("a prepaid run takes --as-of (the day whose fees are due) "
                              "and makes no invoices")
    as_of = parse_day(args.as_of, "--as-of") if args.as_of else date.today()
    with _ledger(args) as (store, ledger):
        runs = BillRuns(store, ledger)
        run = runs.create("prepaid", as_of.isoformat(),
                          Selection(args.clients or None, args.tag, args.billing_day))
        runs.execute(run, suspend=not args.no_suspend, estimate=not args.no_estimate)
    if args.json:
        _print_json(run.to_json())
        return 0
    r = run.results
    _table([(c["client"], c["type"], c["amount"], c["note"]) for c in r["charged"]],
           ("client", "type", "amount", "for"))
    totals = ", ".join(f"{v} {c}" for c, v in r["totals"].items()) or "nothing"
    print(f"prepaid run {run.id} ({run.period}): {run.state}; {r['wallet_transactions']} "
          f"wallet transaction(s), {totals}; suspended: {', '.join(r['suspended']) or 'none'}"
          f"; restarted: {', '.join(r['restarted']) or 'none'}")
    for name, day in r["estimates"].items():
        print(f"  {name}: wallet used up {'on ' + day if day else 'not within a year'}")
    for x in run.exceptions:
        print(f"  exception: {x.client_name}: {x.code}: {x.message}")
    return 0


def cmd_package_add(args: argparse.Namespace) -> int:
    from .bundles import parse_include
    from .subscriptions import Subscriptions

    one_off = []
    for item in args.one_off or []:
        name, sep, amount = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--one-off {item!r}: NAME=AMOUNT")
        one_off.append((name.strip(), amount.strip()))
    included = [parse_include(item) for item in args.include or []]
    with _open(args, create=True) as store:
        pkg = Subscriptions(store).add_package(args.name, currency=args.currency, fee=args.fee,
                                               period=args.period, one_off=one_off,
                                               included=included)
    _print_json(pkg.to_json()) if args.json else print(f"package {pkg.name} added")
    return 0


def cmd_package_show(args: argparse.Namespace) -> int:
    from .subscriptions import Subscriptions

    with _open(args) as store:
        _print_json(Subscriptions(store).package(args.name).to_json())
    return 0


def cmd_package_list(args: argparse.Namespace) -> int:
    from .subscriptions import Subscriptions

    with _open(args) as store:
        found = [p.to_json() for p in Subscriptions(store).packages()]
    if args.json:
        _print_json(found)
    else:
        _table([(p["name"], p["currency"], p["fee"], p["period"],
                 ", ".join(f"{n} {a}" for n, a in p["one_off"])) for p in found],
               ("name", "currency", "fee", "period", "one-off"))
    return 0


def cmd_subscription_add(args: argparse.Namespace) -> int:
    from .invoices import parse_day
    from .subscriptions import Subscriptions

    with _open(args) as store:
        subs = Subscriptions(store)
        sub = subs.subscribe(args.client, args.package, parse_day(args.since, "--from"),
                             parse_day(args.until, "--to") if args.until else None)
        shown = sub.to_json({sub.client: args.client})
    _print_json(shown) if args.json else print(f"subscription {sub.id}: {args.client} on "
                                               f"{args.package} from {shown['from']}")
    return 0


def cmd_subscription_list(args: argparse.Namespace) -> int:
    from .subscriptions import Subscriptions

    with _open(args) as store:
        subs = Subscriptions(store)
        names = {c.id: c.name for c in subs.registry.clients()}
        found = [s.to_json(names) for s in subs.subscriptions(args.client)]
    if args.json:
        _print_json(found)
    else:
        _table([(s["id"], s["client"], s["package"], s["from"], s["to"] or "")
                for s in found], ("id", "client", "package", "from", "to"))
    return 0


def cmd_subscription_end(args: argparse.Namespace) -> int:
    from .clients import show_amount
    from .invoices import parse_day
    from .subscriptions import Subscriptions

    with _open(args) as store:
        sub, credits = Subscriptions(store).end(args.id, parse_day(args.on, "--on"))
    out = {"id": sub.id, "to": sub.end.isoformat() if sub.end else None,
           "credited": show_amount(sum(e.amount for e in credits))}
    _print_json(out) if args.json else print(f"subscription {sub.id} ends on {out['to']}; "
                                             f"credited {out['credited']}")
    return 0


def cmd_billing_runs(args: argparse.Namespace) -> int:
    from .billrun import BillRuns

    with _ledger(args) as (store, ledger):
        runs = BillRuns(store, ledger)
        found = [runs.get(args.id)] if args.id is not None else runs.runs()
        shown = [r.to_json(runs.invoicing.invoices(run=r.id) if args.id is not None
                           else None) for r in found]
    if args.json:
        _print_json(shown[0] if args.id is not None else shown)
    else:
        _table([(r["id"], r["mode"], r["period"], r["state"],
                 r["results"].get("invoices", r["results"].get("wallet_transactions", "")),
                 len(r["exceptions"]), r["output_dir"] if r["mode"] != "prepaid" else "")
                for r in shown], ("id", "mode", "period", "state", "invoices/debits",
                                  "exceptions", "output"))
    return 0


# -- recurring runs

def cmd_schedule_add(args: argparse.Namespace) -> int:
    from .billrun import BillRuns, Schedule, Schedules, Selection

    schedule = Schedule(args.name, "daily" if args.daily else "monthly", args.monthly,
                        args.at, args.timezone, args.mode,
                        Selection(args.clients or None, args.tag, args.billing_day),
                        email=args.email, pdf=not args.no_pdf)
    with _ledger(args) as (store, ledger):
        Schedules(BillRuns(store, ledger)).add(schedule)
    when = "every day" if args.daily else f"on day {args.monthly} of every month"
    print(f"schedule {args.name}: a {args.mode} run {when} at {args.at} ({args.timezone})")
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    from .billrun import BillRuns, Schedules

    with _ledger(args) as (store, ledger):
        found = Schedules(BillRuns(store, ledger)).schedules()
    if args.json:
        _print_json([s.to_json() for s in found])
    else:
        _table([(s.name, s.every, s.day or "", s.at_time, s.timezone, s.mode,
                 s.last_period or "") for s in found],
               ("name", "every", "day", "at", "zone", "mode", "last period"))
    return 0


def cmd_schedule_delete(args: argparse.Namespace) -> int:
    from .billrun import BillRuns, Schedules

    with _ledger(args) as (store, ledger):
        Schedules(BillRuns(store, ledger)).delete(args.name)
    print(f"schedule {args.name} deleted")
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """Run the schedules that are due: once (from cron), or every --every seconds until
    SIGTERM (between two looks: a run under way is finished first)."""
    import signal
    import time

    from . import notifications as notices
    from .billrun import BillRun, BillRuns, Schedules

    if not args.every > 0:
        raise InvalidArgument(f"--every {args.every}: a number of seconds above 0")
    mail = _mail(args)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: stopping.append(signum))
    if not args.once:
        with _ledger(args) as (store, ledger):
            count = len(Schedules(BillRuns(store, ledger)).schedules())
        print(f"scheduler: {count} schedule(s), looking every {args.every:g} s", flush=True)
    while True:
        with _ledger(args) as (store, ledger):
            for schedule, outcome in Schedules(BillRuns(store, ledger)).run_due(
                    int(time.time()), mail):
                if isinstance(outcome, BillRun):
                    made = (f"{outcome.results.get('wallet_transactions', 0)} wallet "
                            f"transaction(s)" if outcome.mode == "prepaid" else
                            f"{outcome.results.get('invoices', 0)} invoice(s)")
                    print(f"schedule {schedule.name}: bill run {outcome.id} "
                          f"({outcome.period}) {outcome.state}, {made}", flush=True)
                else:
                    print(f"schedule {schedule.name}: {outcome}", file=sys.stderr, flush=True)
            for month, done in Schedules(BillRuns(store, ledger)).run_auto_invoicing(
                    int(time.time()), mail):
                if isinstance(done, BillRun):
                    print(f"auto-invoicing {month}: bill run {done.id} {done.state}, "
                          f"{done.results.get('issued', 0)} invoice(s) issued", flush=True)
                else:
                    print(f"auto-invoicing {month}: {done}", file=sys.stderr, flush=True)
            notices.deliver(store, mail)
        if args.once:
            return 0
        deadline = time.monotonic() + args.every
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(1.0, args.every))
        if stopping:
            print("scheduler: stopped", flush=True)
            return 0


# -- the parser

def add_commands(sub: Any, command: Any, billing: Any) -> None:
    """``issuer`` and ``invoice`` under ``sub``; ``run`` and ``runs`` under ``billing``."""
    issuer = sub.add_parser("issuer", help="the companies invoices are issued by"
                            ).add_subparsers(dest="issuer_command", required=True,
                                             metavar="COMMAND")

    def issuer_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--address", help="postal address (\\n between lines)")
        sp.add_argument("--vat-id")
        sp.add_argument("--pattern", help=f"invoice numbers: text and {{yyyy}} {{yy}} {{mm}} "
                                          f"{{seq}} or {{seq:06}} (default {DEFAULT_PATTERN})")
        sp.add_argument("--default", action="store_true",
                        help="the issuer of clients that name none")
        sp.add_argument("--creditor-id", help="SEPA creditor identifier")
        sp.add_argument("--iban", help="the account direct debits are paid into")
        sp.add_argument("--bic")

    sp = command(issuer, "add", cmd_issuer_add, "add an issuer (the first is the default)")
    sp.add_argument("name")
    issuer_options(sp)
    sp = command(issuer, "edit", cmd_issuer_edit, "change an issuer")
    sp.add_argument("name")
    issuer_options(sp)
    sp = command(issuer, "list", cmd_issuer_list, "the issuers")
    sp.add_argument("--json", action="store_true")

    invoice = sub.add_parser("invoice", help="invoices").add_subparsers(
        dest="invoice_command", required=True, metavar="COMMAND")
    sp = command(invoice, "list", cmd_invoice_list, "invoices, drafts included")
    sp.add_argument("--period", metavar="YYYY-MM", help="those whose period starts in it")
    sp.add_argument("--client")
    sp.add_argument("--state", choices=SHOWN_STATES)
    sp.add_argument("--json", action="store_true")
    sp = command(invoice, "show", cmd_invoice_show, "an invoice and its lines")
    sp.add_argument("invoice", metavar="NUMBER|ID")
    sp.add_argument("--json", action="store_true")
    sp = command(invoice, "send", cmd_invoice_send,
                 "e-mail an issued invoice's PDF to its client's billing address")
    sp.add_argument("invoice", metavar="NUMBER|ID")
    sp.add_argument("--config", metavar="FILE", help="the config whose [mail] section names "
                                                     "the SMTP server (default: built in)")
    sp = command(invoice, "pay", cmd_invoice_pay, "mark an issued invoice paid")
    sp.add_argument("invoice", metavar="NUMBER|ID")
    sp = command(invoice, "reissue", cmd_invoice_reissue,
                 "recalculate a period's issued invoices from their own calls as rerated")
    sp.add_argument("--period", required=True, metavar="YYYY-MM",
                    help="the invoices whose period starts in this month")
    sp.add_argument("--clients", nargs="+", metavar="CLIENT")
    how = sp.add_mutually_exclusive_group(required=True)
    how.add_argument("--keep-numbers", dest="how", action="store_const",
                     const="keep-numbers", help="regenerate each under its own number")
    how.add_argument("--renumber", dest="how", action="store_const", const="renumber",
                     help="void each and issue a new one, with a new number, replacing it")
    how.add_argument("--credit-note", dest="how", action="store_const", const="credit-note",
                     help="leave each as it is; issue a credit note for it and a new one")
    sp.add_argument("--no-pdf", action="store_true")
    sp.add_argument("--processes", type=int, metavar="N")
    sp.add_argument("--json", action="store_true")
    sp = command(invoice, "void", cmd_invoice_void,
                 "void the client's last issued invoice (or delete a draft)")
    sp.add_argument("invoice", metavar="NUMBER|ID")

    sp = command(billing, "run", cmd_billing_run,
                 "a bill run: drafts (pre-production) or issued invoices (production)")
    sp.add_argument("--period", metavar="YYYY-MM",
                    help="each client's month, from its billing day")
    sp.add_argument("--from", dest="since", metavar="DATE", help="first day billed")
    sp.add_argument("--to", dest="until", metavar="DATE", help="first day not billed")
    sp.add_argument("--mode", required=True, choices=("pre-production", "production", "prepaid"))
    sp.add_argument("--as-of", metavar="DATE", help="prepaid: the day whose fees are due "
                                                    "(default today)")
    sp.add_argument("--no-suspend", action="store_true",
                    help="prepaid: debit regardless; suspend no client, restart none")
    sp.add_argument("--no-estimate", action="store_true",
                    help="prepaid: skip estimating when each wallet runs out")
    which = sp.add_mutually_exclusive_group()
    which.add_argument("--clients", nargs="+", metavar="CLIENT",
                       help="only these clients (deleted ones too, when named)")
    which.add_argument("--tag", help="only clients with this tag")
    which.add_argument("--billing-day", type=int, metavar="DAY",
                       help="only clients billed on this day of the month")
    sp.add_argument("--output-dir", help="where the PDFs, CSV files and control report go "
                                         "(default DATA/bill-runs/ID)")
    sp.add_argument("--no-pdf", action="store_true", help="no PDF invoices")
    sp.add_argument("--processes", type=int, metavar="N",
                    help="PDF rendering processes (default: one per core)")
    sp.add_argument("--email", action="store_true",
                    help="e-mail each issued invoice to its client (production)")
    sp.add_argument("--config", metavar="FILE", help="the config whose [mail] section names "
                                                     "the SMTP server (default: built in)")
    sp.add_argument("--json", action="store_true")
    pkg = sub.add_parser("package", help="packages (products) and their fees").add_subparsers(
        dest="package_command", required=True, metavar="COMMAND")
    sp = command(pkg, "add", cmd_package_add, "a package: a recurring fee, one-off fees, "
                                              "included minutes")
    sp.add_argument("name")
    sp.add_argument("--currency", required=True)
    sp.add_argument("--fee", required=True, help="the recurring fee")
    sp.add_argument("--period", choices=("monthly", "weekly", "daily"), default="monthly")
    sp.add_argument("--one-off", action="append", metavar="NAME=AMOUNT",
                    help="a fee charged once when a subscription starts (repeatable)")
    sp.add_argument("--include", action="append", metavar="MINUTES:MATCH[,MATCH...][@PRICE]",
                    help="minutes included each period for numbers beginning with these "
                         "prefixes (digits) or in these destinations (names), at PRICE a "
                         "minute (default 0); repeatable")
    sp.add_argument("--json", action="store_true")
    sp = command(pkg, "show", cmd_package_show, "a package (JSON)")
    sp.add_argument("name")
    sp = command(pkg, "list", cmd_package_list, "the packages")
    sp.add_argument("--json", action="store_true")

    subs = sub.add_parser("subscription", help="clients' subscriptions to packages"
                          ).add_subparsers(dest="subscription_command", required=True,
                                           metavar="COMMAND")
    sp = command(subs, "add", cmd_subscription_add, "subscribe a client to a package")
    sp.add_argument("client")
    sp.add_argument("package")
    sp.add_argument("--from", dest="since", required=True, metavar="DATE")
    sp.add_argument("--to", dest="until", metavar="DATE", help="the first day it no longer "
                                                               "holds")
    sp.add_argument("--json", action="store_true")
    sp = command(subs, "list", cmd_subscription_list, "subscriptions")
    sp.add_argument("--client")
    sp.add_argument("--json", action="store_true")
    sp = command(subs, "end", cmd_subscription_end, "end a subscription; charged days after "
                                                    "it are credited")
    sp.add_argument("id", type=int)
    sp.add_argument("--on", required=True, metavar="DATE", help="the first day it no longer "
                                                                "holds")
    sp.add_argument("--json", action="store_true")

    sp = command(billing, "runs", cmd_billing_runs, "bill runs, or one with its invoices")
    sp.add_argument("id", type=int, nargs="?")
    sp.add_argument("--json", action="store_true")

    schedule = billing.add_parser("schedule", help="recurring bill runs").add_subparsers(
        dest="schedule_command", required=True, metavar="COMMAND")
    sp = command(schedule, "add", cmd_schedule_add,
                 "a recurring run: monthly on a day (the month before), or daily (the day "
                 "before)")
    sp.add_argument("name")
    every = sp.add_mutually_exclusive_group(required=True)
    every.add_argument("--monthly", type=int, metavar="DAY",
                       help="on this day of the month (1..28)")
    every.add_argument("--daily", action="store_true",
                       help="every day (the day before; prepaid: the fees due that day)")
    sp.add_argument("--at", default="02:00", metavar="HH:MM", help="time of day (default "
                                                                    "02:00)")
    sp.add_argument("--timezone", default="UTC", help="zone of --at (default UTC)")
    sp.add_argument("--mode", required=True, choices=("pre-production", "production",
                                                      "prepaid"))
    which = sp.add_mutually_exclusive_group()
    which.add_argument("--clients", nargs="+", metavar="CLIENT")
    which.add_argument("--tag")
    which.add_argument("--billing-day", type=int, metavar="DAY")
    sp.add_argument("--email", action="store_true")
    sp.add_argument("--no-pdf", action="store_true")
    sp = command(schedule, "list", cmd_schedule_list, "the recurring runs")
    sp.add_argument("--json", action="store_true")
    sp = command(schedule, "delete", cmd_schedule_delete, "stop a recurring run")
    sp.add_argument("name")

    sp = command(billing, "scheduler", cmd_scheduler,
                 "run the recurring runs when they are due, invoice the auto-invoiced "
                 "clients on their billing day, deliver low-balance notices (or once, from "
                 "cron)")
    sp.add_argument("--once", action="store_true", help="run what is due and stop")
    sp.add_argument("--every", type=float, default=60.0, metavar="SECONDS",
                    help="how often to look (default 60)")
    sp.add_argument("--config", metavar="FILE", help="the config whose [mail] section names "
                                                     "the SMTP server (default: built in)")
