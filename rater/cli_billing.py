"""The ``rater`` commands about clients, accounts, money and CDRs.

``client``, ``account``, ``transaction``, ``balance``, ``check``, ``cdr import``,
``mismatches``, ``rerate``, ``report summary``, ``audit`` and ``backup``; the
deck and rating commands are in :mod:`rater.cli`, which adds these to its parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli import _open, _print_json, _table
from .cli import _when as _when_in
from .clients import (
    BILL_EVENTS,
    DEFAULT_MAX_CALL_LENGTH,
    INVOICE_TEMPLATES,
    STATUSES,
    Account,
    Client,
    Registry,
    parse_amount,
    show_amount,
)
from .config import CDR_CHUNK
from .dialplan import DialPlan
from .errors import CheckFailed, InvalidArgument
from .store import Store
from .timeutil import format_instant, parse_instant, zone

Command = Callable[[Any, str, Callable[[argparse.Namespace], int], str],
                   argparse.ArgumentParser]


def _instant(text: str | None, tz: str, what: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_instant(text, zone(tz))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc.message}") from None


def _period(args: argparse.Namespace, *, required: bool) -> tuple[int | None, int | None]:
    since = _instant(args.since, args.timezone, "--from")
    until = _instant(args.until, args.timezone, "--to")
    if required and (since is None or until is None):
        raise InvalidArgument("--from and --to are needed")
    if since is not None and until is not None and until <= since:
        raise InvalidArgument("--to must be after --from")
    return since, until


def _when(t: int | None) -> str:
    """An instant for people, in UTC."""
    return _when_in(t, zone("UTC"))


# -- clients


def _invoicing_changes(args: argparse.Namespace) -> dict[str, Any]:
    """What the client's invoices need, as named on the command line."""
    ch: dict[str, Any] = {}
    if args.billing_day is not None:
        ch["billing_day"] = args.billing_day
    if args.invoice_template is not None:
        ch["invoice_template"] = args.invoice_template
    if args.tax is not None:
        taxes = []
        for given in args.tax:
            if given == "":
                continue                        # --tax '': no taxes
            name, eq, percent = given.partition("=")
            if not eq:
                raise InvalidArgument(f"--tax {given!r}: NAME=PERCENT, such as VAT=21")
            taxes.append([name, percent])
        ch["taxes"] = taxes
    if args.reverse_charge is not None:
        ch["reverse_charge"] = args.reverse_charge
    if args.vat_id is not None:
        ch["vat_id"] = args.vat_id.replace(" ", "").upper() or None
    if args.issuer is not None:
        ch["issuer"] = args.issuer or None
    if args.address is not None:
        ch["address"] = args.address.replace("\\n", "\n") or None
    if args.sepa is not None:
        if args.sepa == [""]:
            ch["sepa_mandate"] = None
        elif len(args.sepa) != 4:
            raise InvalidArgument("--sepa IBAN BIC MANDATE_ID DATE, or --sepa '' for none")
        else:
            iban, bic, ref, signed = args.sepa
            ch["sepa_mandate"] = {"iban": iban.replace(" ", "").upper(), "bic": bic.upper(),
                                  "id": ref, "date": signed}
    return ch


def _client_changes(args: argparse.Namespace, old: Client | None) -> dict[str, Any]:
    """Client settings named on the command line."""
    ch: dict[str, Any] = {}
    if args.currency is not None:
        ch["currency"] = args.currency.upper()
    if args.timezone is not None:
        ch["timezone"] = args.timezone
    if args.mode is not None:
        ch["mode"] = args.mode
    if args.credit_limit is not None:
        ch["credit_limit"] = parse_amount(args.credit_limit, "--credit-limit", negative=True)
    if args.term_table is not None:
        ch["term_table"] = args.term_table or None
    if args.payment_terms is not None:
        ch["payment_terms_days"] = args.payment_terms
    if args.bill_by is not None:
        ch["bill_by"] = args.bill_by
    if args.max_call_length is not None:
        ch["max_call_length"] = args.max_call_length
    if args.capacity is not None:
        ch["capacity"] = None if args.capacity.lower() == "unlimited" else _int(
            args.capacity, "--capacity")
    if args.billing_email is not None:
        ch["billing_email"] = args.billing_email or None
    if args.low_balance is not None:
        ch["low_balance_threshold"] = (None if args.low_balance == "" else parse_amount(
            args.low_balance, "--low-balance", negative=True))
    if args.low_balance_capacity is not None:
        ch["low_balance_capacity"] = (None if args.low_balance_capacity.lower() == "unlimited"
                                      else _int(args.low_balance_capacity,
                                                "--low-balance-capacity"))
    if args.auto_invoice is not None:
        ch["auto_invoice"] = args.auto_invoice
    if args.status is not None:
        ch["status"] = args.status
    ch.update(_invoicing_changes(args))
    tags = list(old.tags) if old else []
    for t in args.tag or []:
        if t not in tags:
            tags.append(t)
    for t in getattr(args, "untag", None) or []:
        if t in tags:
            tags.remove(t)
    if tags != (old.tags if old else []):
        ch["tags"] = tags
    if args.rate_table is not None:
        since = _instant(getattr(args, "rate_table_from", None), ch.get(
            "timezone", old.timezone if old else "UTC"), "--from")
        if since is None:
            ch["rate_tables"] = [[None, args.rate_table]] if args.rate_table else []
        else:
            kept = [[s, t] for s, t in (old.rate_tables if old else []) if s is None or s < since]
            ch["rate_tables"] = [*kept, [since, args.rate_table]]
    elif getattr(args, "rate_table_from", None):
        raise InvalidArgument("--from goes with --rate-table")
    return ch


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"{what}: {text!r} is not a whole number") from None


def cmd_client_add(args: argparse.Namespace) -> int:
    ch = _client_changes(args, None)
    with _open(args, create=True) as store:
        if "currency" not in ch:
            tables = [t for _, t in ch.get("rate_tables", [])] or (
                [ch["term_table"]] if ch.get("term_table") else [])
            if not tables:
                raise InvalidArgument("--currency is needed (or a --rate-table to take it from)")
            from .decks import Decks

            ch["currency"] = Decks(store).table(tables[0]).currency
        client = Registry(store).add_client(Client(id=0, name=args.name, **ch))
    print(f"Added client {client.name} (id {client.id}, {client.mode}, {client.currency})")
    return 0


def cmd_client_edit(args: argparse.Namespace) -> int:
    with _open(args) as store:
        reg = Registry(store)
        old = reg.client(args.name)
        ch = _client_changes(args, old)
        if args.new_name is not None:
            ch["name"] = args.new_name
        client = reg.edit_client(args.name, **ch)
    changed = [k for k in ch if getattr(old, k) != getattr(client, k)]
    print(f"Changed client {client.name}: {', '.join(changed) or 'nothing'}")
    return 0


def _client_view(store: Store, client: Client) -> dict[str, Any]:
    from .journal import Journal

    d = client.to_display()
    bal = Journal(store).balance(client.name).to_json()
    d["balance"] = {k: bal[k] for k in ("live", "fixed", "available", "low")}
    d["accounts"] = [a.id for a in Registry(store).accounts(client.name)]
    return d


def cmd_client_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        client = Registry(store).client(args.name)
        d = _client_view(store, client)
    if args.json:
        _print_json(d)
        return 0
    tables = ", ".join(f"{t} from {_when(s)}" if s is not None else t
                       for s, t in client.rate_tables) or "(none)"
    b = d["balance"]
    lines = [("name", client.name), ("id", client.id), ("status", client.status),
             ("currency", client.currency), ("mode", client.mode),
             ("credit limit", d["credit_limit"]), ("balance", f"live {b['live']}, fixed "
              f"{b['fixed']}, available {b['available'] or 'unlimited'}"
              + (" (low)" if b["low"] else "")),
             ("rate tables", tables), ("term table", client.term_table or "(not a vendor)"),
             ("time zone", client.timezone), ("bill events by", client.bill_by),
             ("payment terms", f"{client.payment_terms_days} days"),
             ("max call length", f"{client.max_call_length} s"),
             ("capacity", "unlimited" if client.capacity is None else client.capacity),
             ("tags", ", ".join(client.tags)), ("billing email", client.billing_email or ""),
             ("low balance below", d["low_balance_threshold"] or ""),
             ("calls when low", "" if client.low_balance_capacity is None
              else client.low_balance_capacity),
             ("auto-invoice", "yes" if client.auto_invoice else "no"),
             ("accounts", ", ".join(map(str, d["accounts"])) or "(none)")]
    for k, v in lines:
        print(f"{k + ':':<18}{v}")
    return 0


def cmd_client_list(args: argparse.Namespace) -> int:
    from .journal import Journal, available

    with _open(args, create=True) as store:
        clients = Registry(store).clients(status=args.status, tag=args.tag)
        balances = Journal(store).balances()
    if not args.all and args.status is None:
        clients = [c for c in clients if c.status != "deleted"]
    rows: list[dict[str, Any]] = []
    for c in clients:
        live, fixed = balances.get(c.id, (0, 0))
        avail = available(c, live)
        rows.append({"id": c.id, "name": c.name, "status": c.status, "currency": c.currency,
                     "mode": c.mode, "live": show_amount(live), "fixed": show_amount(fixed),
                     "available": None if avail is None else show_amount(avail),
                     "payment_terms_days": c.payment_terms_days, "tags": c.tags})
    if args.json:
        _print_json(rows)
        return 0
    _table([[r["id"], r["name"], r["status"], r["currency"], r["mode"], r["live"], r["fixed"],
             r["available"] or "unlimited", r["payment_terms_days"], ",".join(r["tags"])]
            for r in rows],
           ["ID", "NAME", "STATUS", "CURRENCY", "MODE", "LIVE", "FIXED", "AVAILABLE",
            "TERMS", "TAGS"])
    return 0


def cmd_client_delete(args: argparse.Namespace) -> int:
    with _open(args) as store:
        client = Registry(store).delete_client(args.name)
    print(f"Client {client.name} is deleted: its accounts no longer match; its history stays")
    return 0


def cmd_client_export(args: argparse.Namespace) -> int:
    from .journal import Journal

    with _open(args, create=True) as store:
        text = Registry(store).export_csv(Journal(store).balances())
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# -- accounts

def _account_json(store: Store, a: Account) -> dict[str, Any]:
    d = a.shown()
    with store.read() as txn:
        d["client"] = Registry(store).client_by_id(txn, a.client).name
    return d


def cmd_account_add(args: argparse.Namespace) -> int:
    plan = None
    if args.country_code is not None:
        plan = DialPlan(args.country_code, args.national_prefix or "",
                        args.international_prefix or "00")
    elif args.national_prefix is not None or args.international_prefix is not None:
        raise InvalidArgument("a dial plan needs --country-code")
    with _open(args) as store:
        a = Registry(store).add_account(args.client, ip=args.ip, username=args.username,
                                        ani=args.ani, tech_prefix=args.tech_prefix,
                                        rate_table=args.rate_table, dial_plan=plan,
                                        password=args.password)
    print(f"Added account {a.id} of client {args.client}: {a.identifier()}")
    return 0


def cmd_account_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        d = _account_json(store, Registry(store).account(args.id))
    if args.json:
        _print_json(d)
        return 0
    plan = DialPlan.from_json(d["dial_plan"])
    for k, v in (("id", d["id"]), ("client", d["client"]),
                 ("recognised by", Account.from_json({**d, "client": 0}).identifier()),
                 ("rate table", d["rate_table"] or "(the client's)"),
                 ("dial plan", plan or "(none: numbers are E.164)"),
                 ("password", "set (RADIUS PAP)" if d["password"] else "none"),
                 ("created", _when(d["created"]))):
        print(f"{k + ':':<15}{v}")
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    with _open(args, create=True) as store:
        rows = [_account_json(store, a) for a in Registry(store).accounts(args.client)]
    if args.json:
        _print_json(rows)
        return 0
    _table([[r["id"], r["client"], Account.from_json({**r, "client": 0}).identifier(),
             r["rate_table"] or "", "yes" if r["dial_plan"] else ""] for r in rows],
           ["ID", "CLIENT", "RECOGNISED BY", "RATE TABLE", "DIAL PLAN"])
    return 0


def cmd_account_delete(args: argparse.Namespace) -> int:
    with _open(args) as store:
        a = Registry(store).delete_account(args.id)
    print(f"Deleted account {a.id} ({a.identifier()})")
    return 0


# -- money

def cmd_transaction_add(args: argparse.Namespace) -> int:
    from .journal import Journal

    with _open(args) as store:
        expires = _instant(args.expires, "UTC", "--expires")
        result = Journal(store).post(args.client, args.type, args.amount, key=args.key,
                                     ref=args.ref, note=args.note,
                                     currency=args.currency.upper() if args.currency else None,
                                     expires=expires)
        bal = Journal(store).balance(args.client).to_json()
    e = result.entry
    if args.json:
        _print_json({"entry": e.to_json({e.client: bal["client"]}),
                     "duplicate": result.duplicate, "restarted": result.restarted,
                     "balance": bal})
        return 0
    if result.duplicate:
        print(f"Already posted as entry {e.number} (key {e.key}): nothing changed")
    else:
        print(f"Entry {e.number}: {e.type} {show_amount(abs(e.amount) or e.held or 0)} "
              f"{bal['currency']} "
              f"for {args.client}; live balance {bal['live']}, fixed {bal['fixed']}")
    if result.restarted:
        print(f"{args.client} is restarted: the fees due today were debited")
    return 0


def cmd_transaction_list(args: argparse.Namespace) -> int:
    from .journal import Journal

    since, until = _period(args, required=False)
    with _open(args) as store:
        entries = Journal(store).entries(args.client, since=since, until=until,
                                         types=args.type)
        names = {c.id: c.name for c in Registry(store).clients()}
    if args.json:
        _print_json([e.to_json(names) for e in entries])
        return 0
    _table([[e.number, _when(e.date), e.type, show_amount(e.amount),
             "" if e.held is None else show_amount(e.held), e.key, e.ref or "", e.note or ""]
            for e in entries],
           ["ENTRY", "DATE (UTC)", "TYPE", "AMOUNT", "HELD", "KEY", "REF", "NOTE"])
    return 0


def cmd_balance_show(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .journal import Journal
    from .subscriptions import runs_out
    from .timeutil import zone

    with _open(args) as store:
        journal = Journal(store)
        bal = journal.balance(args.client).to_json()
        if bal["mode"] == "prepaid":
            tz = zone(journal.registry.client(args.client).timezone)
            day = runs_out(store, args.client, datetime.now(tz).date())
            # The day the wallet is estimated to be used up (last 30 days' calls and the
            # fees to come); None: not within a year.
            bal["runs_out"] = None if day is None else day.isoformat()
    if args.json:
        _print_json(bal)
        return 0
    print(f"{bal['client']} ({bal['currency']}, {bal['mode']}): live {bal['live']}, fixed "
          f"{bal['fixed']}, available {bal['available'] or 'unlimited'}"
          + (" (below the low-balance threshold)" if bal["low"] else ""))
    if "runs_out" in bal:
        when = f"on {bal['runs_out']}" if bal["runs_out"] else "not within a year"
        print(f"wallet used up {when} (estimated from the last 30 days' calls and the fees "
              f"to come)")
    return 0


def cmd_balance_notices(args: argparse.Namespace) -> int:
    from . import notifications
    from .clients import Registry
    from .settings import load

    mail = load(args.config).mail if args.send else None
    with _open(args) as store:
        names = {c.id: c.name for c in Registry(store).clients()}
        if args.send:
            done = notifications.deliver(store, mail)
            shown = [{**n.to_json(names.get(n.client, "?")), "outcome": o} for n, o in done]
        else:
            shown = [n.to_json(names.get(n.client, "?")) for n in notifications.pending(store)]
    if args.json:
        _print_json(shown)
    else:
        _table([(n["number"], n["client"], n["available"], n["threshold"],
                 n.get("outcome", f"{n['attempts']} attempt(s)")) for n in shown],
               ("notice", "client", "available", "threshold",
                "outcome" if args.send else "tried"))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .journal import Journal, last_number
    from .ledger import Ledger, has_ledger

    with _open(args) as store:
        problems = Journal(store).check()
        ledger = None
        if has_ledger(store):
            with Ledger(store) as led:
                problems += led.check()
                with store.read() as txn:
                    ledger = (led.position, last_number(store, txn))
    for p in problems:
        print(p)
    if problems:
        among = "balances and the journal" if ledger is None else (
            "balances, the journal and the ledger")
        raise CheckFailed(f"{len(problems)} difference(s) between {among}")
    print("Every balance equals the sum of its journal entries; no call is billed twice")
    if ledger is not None:
        print(f"The ledger equals the journal up to entry {ledger[0]:,} "
              f"(the journal has {ledger[1]:,}; `rater billing` takes the rest)")
    return 0


# -- the billing companion

def _entries(n: int) -> str:
    return f"{n:,} journal entr{'y' if n == 1 else 'ies'}"


def cmd_billing(args: argparse.Namespace) -> int:
    """Tail the journal into the ledger: once, or until SIGTERM / SIGINT (between two
    batches: what is taken is committed)."""
    import signal
    import time

    from .ledger import Ledger
    from .progress import Progress

    if not args.every > 0:
        raise InvalidArgument(f"--every {args.every}: a number of seconds above 0")
    stopping: list[int] = []

    def stop() -> bool:
        return bool(stopping)

    for sig in (signal.SIGTERM, signal.SIGINT):
        # A plain flag: a handler must not take a lock the interrupted code may hold.
        signal.signal(sig, lambda signum, _: stopping.append(signum))
    with _open(args) as store:
        with Ledger(store) as first, Progress("ledger", None, unit="entries") as bar:
            done = first.rebuild(bar, stop) if args.rebuild else first.tail(bar, stop)
            print(f"ledger {first.where}: {_entries(done.entries)} taken, at entry "
                  f"{done.position:,}", flush=True)
        ledger: Ledger | None = None
        while not args.once and not stop():
            time.sleep(args.every)
            try:
                ledger = ledger or Ledger(store)
                done = ledger.tail(None, stop)
            except Exception as exc:
                # The database may be back soon (a restart, a lock held too long): say
                # so and try again with a new connection.
                print(f"rater billing: {exc}; trying again in {args.every} s",
                      file=sys.stderr, flush=True)
                if ledger is not None:
                    ledger.close()
                ledger = None
                continue
            if done.entries:
                print(f"ledger: {_entries(done.entries)} taken, at entry {done.position:,}",
                      flush=True)
        if ledger is not None:
            ledger.close()
    return 0


# -- CDRs

def cmd_cdr_import(args: argparse.Namespace) -> int:
    from .ingest import import_cdrs
    from .progress import Progress

    with _open(args) as store, Progress(f"importing {args.file}", None,
                                        enabled=False if args.json else None,
                                        unit="CDRs") as bar:
        s = import_cdrs(store, args.file, fmt=args.format, source=args.source,
                        timezone=args.timezone, progress=bar, chunk=args.chunk)
    if args.json:
        _print_json(s.to_json())
        return 0
    amounts = ", ".join(f"{show_amount(a)} {c}" for c, a in sorted(s.amounts.items()))
    print(f"{s.rows:,} CDRs ({s.format}, source {s.source}): {s.billed:,} billed"
          f"{' (' + amounts + ')' if amounts else ''}, {s.mismatched:,} mismatched, "
          f"{s.already:,} already imported, {len(s.refused):,} refused; "
          f"{s.seconds:.2f} s, {s.rows_per_second:,.0f} CDRs/s")
    for reason, n in sorted(s.reasons.items()):
        print(f"  mismatch {reason}: {n:,}")
    for r in s.refused[:20]:
        print(f"  refused {r}")
    if len(s.refused) > 20:
        print(f"  ... and {len(s.refused) - 20} more refused")
    return 0


def cmd_mismatches(args: argparse.Namespace) -> int:
    from .ingest import mismatches

    since, until = _period(args, required=False)
    with _open(args, create=True) as store:
        found = mismatches(store, since, until)
    tz = zone(args.timezone)
    if args.json:
        _print_json([m.to_json(tz) for m in found])
        return 0
    _table([[m.source, m.id, format_instant(m.start, tz), m.number, m.duration, m.reason,
             m.ip or m.username or m.ani] for m in found],
           ["SOURCE", "ID", "START", "NUMBER", "SECONDS", "REASON", "FROM"])
    return 0


def cmd_rerate(args: argparse.Namespace) -> int:
    from .ingest import rerate
    from .progress import Progress

    since, until = _period(args, required=True)
    assert since is not None and until is not None
    with _open(args) as store, Progress("rerating", None,
                                        enabled=False if args.json else None,
                                        unit="calls") as bar:
        s = rerate(store, since, until, args.client, progress=bar)
    if args.json:
        _print_json(s.to_json())
        return 0
    delta = ", ".join(f"{show_amount(a)} {c}" for c, a in sorted(s.delta.items())) or "none"
    print(f"{s.calls:,} calls rerated: {s.changed:,} changed ({s.now_billed:,} mismatches "
          f"now billed, {s.now_mismatched:,} now mismatched), {s.unchanged:,} unchanged; "
          f"charged difference {delta}"
          + (f"; {s.skipped_deleted:,} calls of deleted clients kept as they were"
             if s.skipped_deleted else ""))
    return 0


def cmd_report_summary(args: argparse.Namespace) -> int:
    from .ingest import summary_report

    since, until = _period(args, required=True)
    assert since is not None and until is not None
    with _open(args) as store:
        lines, unmatched = summary_report(store, since, until, args.client)
    if args.json:
        _print_json({"from": _when(since), "to": _when(until),
                     "lines": [line.to_json() for line in lines], "mismatches": unmatched})
        return 0
    rows = [line.to_json() for line in lines]
    _table([[r["client"], r["destination"], r["calls"], r["minutes"], r["revenue"],
             r["vendor_cost"], r["margin"], r["currency"]] for r in rows],
           ["CLIENT", "DESTINATION", "CALLS", "MINUTES", "REVENUE", "VENDOR COST", "MARGIN",
            "CURRENCY"])
    if unmatched:
        print(f"{unmatched:,} mismatched CDRs in the period (rater mismatches)")
    return 0


# -- audit, backup

def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import records

    since, until = _period(args, required=False)
    with _open(args, create=True) as store:
        found = list(records(store, kind=args.kind, name=args.name, since=since, until=until))
    if args.json:
        _print_json([r.to_json() for r in found])
        return 0
    _table([[r.number, _when(r.at), r.by, r.kind, r.name, r.action,
             _changed(r.before, r.after)] for r in found],
           ["#", "WHEN (UTC)", "BY", "KIND", "NAME", "ACTION", "CHANGED"])
    return 0


def _changed(before: Any, after: Any) -> str:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    keys = [k for k in after if before.get(k) != after.get(k) and k not in ("updated",)]
    return ", ".join(keys)


def cmd_backup(args: argparse.Namespace) -> int:
    import shutil

    from .billrun import DOCUMENT_DIRS
    from .ledger import FILE, Ledger, has_ledger

    with _open(args) as store:
        also = ""
        if has_ledger(store):
            # The ledger first: copied after the journal it could hold entries the
            # journal's copy lacks.
            with Ledger(store) as ledger:
                store.check_backup_target(Path(args.dir))
                copied = ledger.backup(Path(args.dir))
                also = (f", the ledger in {copied}" if copied is not None else
                        f"; the ledger is in PostgreSQL ({ledger.where}): back it up with "
                        f"pg_dump")
        dest = store.backup(Path(args.dir), beside=(FILE,))
        # The documents bill runs and re-issues wrote (PDFs, exports, direct debits).
        for name in DOCUMENT_DIRS:
            if (store.data_dir / name).is_dir():
                shutil.copytree(store.data_dir / name, Path(args.dir) / name)
                also += f", {name}/"
    print(f"Backed up {store.data_dir} into {Path(args.dir)} (LMDB copy in {dest}{also}); "
          f"use it with --data {args.dir}")
    return 0


# -- the parser

def add_commands(sub: Any, command: Command) -> None:
    def client_options(sp: argparse.ArgumentParser, *, editing: bool) -> None:
        sp.add_argument("--currency", help="ISO 4217 code (default: the rate table's)")
        mode = sp.add_mutually_exclusive_group()
        mode.add_argument("--prepaid", dest="mode", action="store_const", const="prepaid",
                          help="calls are limited by the balance (the default for a new "
                               "client)")
        mode.add_argument("--postpaid", dest="mode", action="store_const", const="postpaid",
                          help="unlimited credit; calls are limited by the max call length")
        sp.add_argument("--credit-limit", help="how far below zero a prepaid balance may go")
        sp.add_argument("--rate-table", help="the orig rate table ('' for none)")
        if editing:
            sp.add_argument("--from", dest="rate_table_from", metavar="DATE",
                            help="with --rate-table: the new table applies from DATE (in "
                                 "the client's zone); without, from the beginning")
        sp.add_argument("--term-table", help="the vendor's term rate table (a client that "
                                             "terminates calls); '' for none")
        sp.add_argument("--timezone", help="IANA zone for invoices (default UTC)")
        sp.add_argument("--payment-terms", type=int, metavar="DAYS",
                        help="days to pay an invoice (default 30)")
        sp.add_argument("--bill-by", choices=BILL_EVENTS,
                        help="the instant that prices a call and places it in a period "
                             "(default connect)")
        sp.add_argument("--max-call-length", type=int, metavar="SECONDS",
                        help=f"the longest call allowed (default {DEFAULT_MAX_CALL_LENGTH})")
        sp.add_argument("--capacity", help="concurrent calls, or 'unlimited' (the default)")
        sp.add_argument("--tag", action="append", help="add a tag (may repeat)")
        if editing:
            sp.add_argument("--untag", action="append", help="remove a tag (may repeat)")
        sp.add_argument("--billing-email")
        sp.add_argument("--low-balance", metavar="AMOUNT",
                        help="notify the client (once per crossing) when its available "
                             "balance falls below this ('' for never)")
        sp.add_argument("--low-balance-capacity", metavar="N",
                        help="concurrent calls allowed while below the low-balance "
                             "threshold, or 'unlimited' (the default)")
        sp.add_argument("--auto-invoice", action=argparse.BooleanOptionalAction,
                        help="invoiced by the scheduler on its billing day, and e-mailed")
        sp.add_argument("--status", choices=STATUSES)
        sp.add_argument("--billing-day", type=int, metavar="DAY",
                        help="the day of the month its invoice periods start (1..28; "
                             "default 1)")
        sp.add_argument("--invoice-template", choices=INVOICE_TEMPLATES,
                        help="the template of its invoices (default: default)")
        sp.add_argument("--tax", action="append", metavar="NAME=PERCENT",
                        help="a tax on its invoices, such as VAT=21 (may repeat; the list "
                             "replaces the old one; --tax '' for none)")
        sp.add_argument("--reverse-charge", action=argparse.BooleanOptionalAction,
                        help="EU reverse charge: no tax, the client accounts for it "
                             "(needs --vat-id)")
        sp.add_argument("--vat-id", help="the client's VAT id ('' for none)")
        sp.add_argument("--issuer", help="the issuer of its invoices ('' for the default "
                                         "issuer)")
        sp.add_argument("--address", help="its postal address on invoices (\\n between "
                                          "lines; '' for none)")
        sp.add_argument("--sepa", nargs="+", metavar="IBAN BIC MANDATE_ID DATE",
                        help="its SEPA Direct Debit mandate (the date it was signed, "
                             "YYYY-MM-DD); --sepa '' for none")

    client = sub.add_parser("client", help="clients: the paying entities").add_subparsers(
        dest="client_command", required=True, metavar="COMMAND")
    sp = command(client, "add", cmd_client_add, "add a client")
    sp.add_argument("name")
    client_options(sp, editing=False)
    sp = command(client, "edit", cmd_client_edit, "change a client's settings")
    sp.add_argument("name")
    sp.add_argument("--name", dest="new_name", help="rename the client")
    client_options(sp, editing=True)
    sp = command(client, "show", cmd_client_show, "a client's settings and balance")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true")
    sp = command(client, "list", cmd_client_list, "the clients, with their balances")
    sp.add_argument("--status", choices=STATUSES)
    sp.add_argument("--tag")
    sp.add_argument("--all", action="store_true", help="deleted clients too")
    sp.add_argument("--json", action="store_true")
    sp = command(client, "delete", cmd_client_delete,
                 "mark a client deleted (its accounts stop matching; history stays)")
    sp.add_argument("name")
    sp = command(client, "export", cmd_client_export, "every client as CSV")
    sp.add_argument("-o", "--output", help="file (default: standard output)")

    account = sub.add_parser("account", help="accounts: how a client's traffic is "
                                             "recognised").add_subparsers(
        dest="account_command", required=True, metavar="COMMAND")
    sp = command(account, "add", cmd_account_add, "add an account to a client")
    sp.add_argument("--client", required=True)
    sp.add_argument("--ip", help="an address or CIDR block (may go with --tech-prefix)")
    sp.add_argument("--username")
    sp.add_argument("--ani", help="the calling number (ANI/CLI)")
    sp.add_argument("--tech-prefix", help="digits (and # *) the switch puts before the number")
    sp.add_argument("--rate-table", help="use this rate table instead of the client's")
    sp.add_argument("--country-code", help="dial plan: the country of national numbers")
    sp.add_argument("--national-prefix", help="dial plan: the trunk prefix (e.g. 0 or 1)")
    sp.add_argument("--international-prefix", help="dial plan: e.g. 00 or 011 (default 00)")
    sp.add_argument("--password", help="a password or PIN a RADIUS Access-Request must give "
                                       "(PAP); stored hashed")
    sp = command(account, "show", cmd_account_show, "one account")
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")
    sp = command(account, "list", cmd_account_list, "the accounts")
    sp.add_argument("--client")
    sp.add_argument("--json", action="store_true")
    sp = command(account, "delete", cmd_account_delete, "delete an account")
    sp.add_argument("id", type=int)

    def period(sp: argparse.ArgumentParser, *, required: bool = False) -> None:
        sp.add_argument("--from", dest="since", required=required, metavar="DATE",
                        help="from this instant (inclusive)")
        sp.add_argument("--to", dest="until", required=required, metavar="DATE",
                        help="to this instant (exclusive)")
        sp.add_argument("--timezone", default="UTC",
                        help="zone of dates without an offset (default UTC)")

    from .journal import SIGNS, TRANSACTION_TYPES

    tx = sub.add_parser("transaction", help="money movements").add_subparsers(
        dest="transaction_command", required=True, metavar="COMMAND")
    sp = command(tx, "add", cmd_transaction_add, "post a payment, adjustment or refund")
    sp.add_argument("client")
    sp.add_argument("type", choices=TRANSACTION_TYPES, metavar="TYPE",
                    help="one of " + ", ".join(TRANSACTION_TYPES))
    sp.add_argument("amount", nargs="?", help="a positive amount (a void may omit it)")
    sp.add_argument("--key", help="idempotency key: the same key posts once")
    sp.add_argument("--ref", type=int, metavar="ENTRY",
                    help="the authorization a capture or void settles")
    sp.add_argument("--note")
    sp.add_argument("--currency", help="refuse unless the client is billed in this currency")
    sp.add_argument("--expires", metavar="DATE",
                    help="when an authorization lapses (default in 7 days)")
    sp.add_argument("--json", action="store_true")
    sp = command(tx, "list", cmd_transaction_list, "a client's journal entries")
    sp.add_argument("client")
    period(sp)
    sp.add_argument("--type", action="append", choices=list(SIGNS),
                    metavar="TYPE")
    sp.add_argument("--json", action="store_true")

    bal = sub.add_parser("balance", help="balances").add_subparsers(
        dest="balance_command", required=True, metavar="COMMAND")
    sp = command(bal, "show", cmd_balance_show, "a client's live, fixed and available balance")
    sp.add_argument("client")
    sp.add_argument("--json", action="store_true")

    sp = command(bal, "notices", cmd_balance_notices,
                 "low-balance notices waiting to be delivered (or deliver them: --send)")
    sp.add_argument("--send", action="store_true",
                    help="deliver them now: log each, e-mail it through [mail]")
    sp.add_argument("--config", metavar="FILE", help="the config whose [mail] section names "
                                                     "the SMTP server (default: built in)")
    sp.add_argument("--json", action="store_true")

    command(sub, "check", cmd_check, "prove every balance equals the sum of its journal")

    cdr = sub.add_parser("cdr", help="CDR ingestion").add_subparsers(
        dest="cdr_command", required=True, metavar="COMMAND")
    sp = command(cdr, "import", cmd_cdr_import,
                 "match, price, journal and bill a CDR file (once per CDR)")
    sp.add_argument("file")
    sp.add_argument("--format", choices=("auto", "canonical", "asterisk", "freeswitch"),
                    default="auto")
    sp.add_argument("--source", help="the switch the CDRs come from; a CDR is known by "
                                     "(source, id) (default: the format's name)")
    sp.add_argument("--timezone", default="UTC",
                    help="zone of times without an offset (default UTC)")
    sp.add_argument("--chunk", type=int, default=CDR_CHUNK, metavar="N",
                    help=f"CDRs billed per write transaction (default {CDR_CHUNK:,}); a killed "
                         f"import loses nothing, and running it again finishes the rest")
    sp.add_argument("--json", action="store_true")

    sp = command(sub, "mismatches", cmd_mismatches,
                 "CDRs no account or rate matched (the Mismatches report)")
    period(sp)
    sp.add_argument("--json", action="store_true")

    sp = command(sub, "rerate", cmd_rerate, "price a period's calls again, mismatches included")
    period(sp, required=True)
    sp.add_argument("--client")
    sp.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_command", required=True, metavar="COMMAND")
    sp = command(report, "summary", cmd_report_summary,
                 "calls, minutes, revenue, vendor cost and margin per client and destination")
    period(sp, required=True)
    sp.add_argument("--client")
    sp.add_argument("--json", action="store_true")

    sp = command(sub, "audit", cmd_audit, "every change to clients, accounts, decks and NAS")
    sp.add_argument("--kind", choices=("client", "account", "deck", "nas"))
    sp.add_argument("--name", help="only changes to this client, account id or table")
    period(sp)
    sp.add_argument("--json", action="store_true")

    sp = command(sub, "backup", cmd_backup, "a consistent hot copy of the data directory")
    sp.add_argument("dir")

    sp = command(sub, "billing", cmd_billing,
                 "the billing companion: tails the journal into the ledger database")
    sp.add_argument("--once", action="store_true",
                    help="take what the journal has and stop (default: go on until "
                         "SIGTERM)")
    sp.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                    help="how often to look for new journal entries (default 1)")
    sp.add_argument("--rebuild", action="store_true",
                    help="empty the ledger's movements and take the whole journal again")
    from .cli_invoicing import add_commands as add_invoicing_commands

    add_invoicing_commands(sub, command, sp.add_subparsers(
        dest="billing_command", metavar="COMMAND",
        title="with a command (none: tail the journal)"))
