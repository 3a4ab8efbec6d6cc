"""The ``rater`` command.

Every command reads and writes the data directory: ``--data DIR``, else the
environment variable ``RATER_DATA``, else ``./rater-data``. A failure prints
one line (and a hint) on stderr and exits with the code of its kind
(:data:`EXIT_CODES`); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .config import data_dir, storage_from_env
from .errors import InvalidArgument, RaterError
from .money import METHODS
from .store import Store
from .tariff import (
    PROFILE_BOUNDARY_MODES,
    RateRow,
    Rounding,
    TimeProfile,
    describe_tiers,
    parse_days,
    parse_window,
)
from .timeutil import format_instant, parse_instant, zone

#: Exit code per error code; tests/test_cli.py proves every error code has one.
EXIT_CODES = {
    "RATER_ERROR": 1,
    "NO_RATE": 3,
    "UNAUTHORIZED_DESTINATION": 3,
    "RATING_PLAN_NOT_FOUND": 4,
    "UNKNOWN_TABLE": 4,
    "UNKNOWN_PROFILE": 4,
    "UNKNOWN_CLIENT": 4,
    "UNKNOWN_ACCOUNT": 4,
    "UNKNOWN_NAS": 4,
    "CONFLICT": 5,
    "REFUSED": 6,
    "INVOICE": 6,
    "CHECK_FAILED": 7,
    "INVALID_ARGUMENT": 64,
    "INVALID_NUMBER": 64,
    "INVALID_INSTANT": 64,
    "BAD_INPUT_FILE": 65,
    "BAD_DECK_FILE": 65,
    "BAD_CDR_FILE": 65,
    "BAD_TARIFF_PLAN": 65,
    "FILE_ERROR": 74,
    "STORE_ERROR": 74,
    "STORE_FULL": 74,
    "BAD_DECK_FORMAT": 74,
    "RENDER": 69,
    "BAD_CONFIG": 78,
}
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(2, f"rater: error: {message}\n")


def _open(args: argparse.Namespace, *, create: bool = False) -> Store:
    return Store(data_dir(args.data), storage_from_env(), create=create)


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """Rows as aligned columns."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _when(t: int | None, tz: Any) -> str:
    return "" if t is None else format_instant(t, tz)


# -- deck

def cmd_deck_import(args: argparse.Namespace) -> int:
    from .decks import Decks
    from .progress import Progress

    columns = None
    if args.columns:
        columns = {}
        for part in args.columns.split(","):
            field, sep, header = part.partition("=")
            if not sep:
                raise InvalidArgument(f"--columns: {part!r} is not FIELD=HEADER")
            columns[field.strip()] = header.strip()
    with _open(args, create=True) as store:
        decks = Decks(store)
        with Progress(f"importing {args.file}", None, enabled=False if args.json else None,
                      unit="lines") as bar:
            report = decks.import_file(
                args.file, args.table, currency=args.currency, timezone=args.timezone,
                decimals=args.decimals, method=args.rounding,
                profile_boundary=args.profile_boundary, columns=columns,
                delimiter=args.delimiter, sheet=args.sheet, replace=args.replace,
                effective=args.effective, on_duplicate=args.on_duplicate,
                progress=bar)
    for w in report.warnings:
        print(f"rater: warning: {w}", file=sys.stderr)
    if args.json:
        _print_json(report.__dict__)
        return 0
    s = report.summary
    if not any(s.values()) and not report.created:
        print(f"No change to table {report.table} (version {report.version}): "
              f"{report.file_rows} rows read, all as stored")
        return 0
    print(f"{'Created' if report.created else 'Updated'} table {report.table}, version "
          f"{report.version}: {report.file_rows} rows read, {s['added']} added, "
          f"{s['changed']} changed, {s['closed']} closed, {s['removed']} removed, "
          f"{report.unchanged} unchanged")
    print(f"Compiled deck: {report.prefixes} prefixes, {report.rows} rows (current and "
          f"dated), {report.size:,} bytes")
    return 0


def cmd_deck_create(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args, create=True) as store:
        v = Decks(store).create(args.name, currency=args.currency, timezone=args.timezone,
                                rounding=_rounding(args, Rounding()),
                                profile_boundary=args.profile_boundary or "start")
    print(f"Created table {args.name} ({v.after['currency']}, {v.after['timezone']})")
    return 0


def _rounding(args: argparse.Namespace, base: Rounding) -> Rounding | None:
    if args.decimals is None and args.rounding is None:
        return None
    try:
        return Rounding(base.decimals if args.decimals is None else args.decimals,
                        args.rounding or base.method)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def cmd_deck_set(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        decks = Decks(store)
        v = decks.configure(args.name, timezone=args.timezone,
                            rounding=_rounding(args, decks.table(args.name).rounding),
                            profile_boundary=args.profile_boundary)
    print(f"Table {args.name}, version {v.version}: {v.action}")
    return 0


def cmd_deck_list(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        tables = Decks(store).tables()
    if args.json:
        _print_json([{**t["settings"], **{k: v for k, v in t.items() if k != "settings"}}
                     for t in tables])
        return 0
    if not tables:
        print("No rate tables yet: rater deck import FILE --table NAME")
        return 0
    _table([(t["settings"]["name"], t["settings"]["currency"], t["settings"]["timezone"],
             t["version"], t["prefixes"], f"{t['compiled_bytes']:,}",
             format_instant(t["updated"], zone("UTC"))) for t in tables],
           ["TABLE", "CURRENCY", "TIMEZONE", "VERSION", "PREFIXES", "BYTES", "UPDATED (UTC)"])
    return 0


def _row_json(row: RateRow, tz: Any) -> dict[str, Any]:
    return {"prefix": row.prefix, "destination": row.destination, "profile": row.profile,
            "effective_from": _when(row.effective_from, tz) or None,
            "effective_to": _when(row.effective_to, tz) or None, "closed": row.closed,
            "connect_fee": str(row.connect_fee),
            "tiers": [{"from_second": t.from_s, "price": str(t.price), "unit": t.unit_s,
                       "increment": t.increment_s} for t in row.tiers],
            "min_duration": row.min_duration_s, "grace": row.grace_s,
            "cap": None if row.cap is None else str(row.cap),
            "rounding": None if row.rounding is None else {
                "decimals": row.rounding.decimals, "method": row.rounding.method}}


def _row_cells(row: RateRow, tz: Any) -> list[str]:
    price = "closed" if row.closed else describe_tiers(row)
    extras = []
    if row.min_duration_s:
        extras.append(f"min {row.min_duration_s} s")
    if row.grace_s:
        extras.append(f"grace {row.grace_s} s")
    if row.cap is not None:
        extras.append(f"cap {row.cap}")
    if row.rounding is not None:
        extras.append(f"round {row.rounding}")
    return [row.prefix, row.destination, row.profile or "", price,
            "" if row.closed or not row.connect_fee else str(row.connect_fee),
            _when(row.effective_from, tz), _when(row.effective_to, tz), "; ".join(extras)]


ROW_HEADER = ["PREFIX", "DESTINATION", "PROFILE", "PRICE", "CONNECT", "FROM", "TO", "OTHER"]


def cmd_deck_show(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        decks = Decks(store)
        info = decks.info(args.name)
        table = decks.table(args.name)
        tz = zone(table.timezone)
        at = parse_instant(args.at, tz) if args.at else None
        rows = decks.rows(args.name, prefix=args.prefix or "", at=at)
    if args.json:
        _print_json({"table": table.to_json(), "version": info["version"],
                     "prefixes": info["prefixes"], "rows": [_row_json(r, tz) for r in rows]})
        return 0
    print(f"Table {table.name}: {table.currency}, {table.timezone}, rounding {table.rounding}, "
          f"profile boundary: {table.profile_boundary}; version {info['version']}, "
          f"{info['prefixes']} prefixes")
    for p in table.profiles.values():
        print(f"  profile {p.name}: {p.describe()}")
    shown = rows[:args.limit] if args.limit else rows
    _table([_row_cells(r, tz) for r in shown], ROW_HEADER)
    if len(shown) < len(rows):
        print(f"... {len(rows) - len(shown)} more rows (--limit 0 shows all)")
    return 0


def cmd_deck_diff(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        decks = Decks(store)
        version = decks.last_version(args.name)
        tz = zone(decks.table(args.name).timezone)
    _show_version(version, tz, args)
    return 0


def _show_version(version: Any, tz: Any, args: argparse.Namespace) -> None:
    if args.json:
        _print_json({"table": version.table, "version": version.version,
                     "action": version.action, "at": version.at, "source": version.source,
                     "summary": version.summary, "settings_before": version.before,
                     "settings_after": version.after,
                     "changes": [{"kind": c.kind,
                                  "before": None if b is None else _row_json(b, tz),
                                  "after": None if a is None else _row_json(a, tz)}
                                 for c in version.changes for b, a in [c.rows()]]})
        return
    s = version.summary
    src = f", file {version.source['file']}" if version.source else ""
    print(f"Table {version.table}, version {version.version}: {version.action}, "
          f"{format_instant(version.at, zone('UTC'))}{src}")
    print(f"{s['added']} added, {s['changed']} changed, {s['closed']} closed, "
          f"{s['removed']} removed")
    if version.before and version.before != version.after:
        for key in version.after:
            if version.before.get(key) != version.after.get(key):
                print(f"  {key}: {version.before.get(key)} -> {version.after.get(key)}")
    marks = {"added": "+", "changed": "~", "closed": "x", "removed": "-"}
    lines = []
    for c in version.changes[:args.limit or None]:
        before, after = c.rows()
        row = after if after is not None else before
        assert row is not None
        cells = _row_cells(row, tz)
        if c.kind == "changed" and before is not None:
            cells[3] = f"{describe_tiers(before)} -> {cells[3]}"
        lines.append([marks[c.kind], *cells])
    if lines:
        _table(lines, [" ", *ROW_HEADER])
    if args.limit and len(version.changes) > args.limit:
        print(f"... {len(version.changes) - args.limit} more changes (--limit 0 shows all)")


def cmd_deck_rollback(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        decks = Decks(store)
        undone = decks.rollback(args.name)
        tables = {t["settings"]["name"]: t for t in decks.tables()}
    s = undone.summary
    after = tables.get(args.name)
    now = (f"now at version {after['version']}" if after else "the table no longer exists")
    if args.json:
        _print_json({"table": args.name, "undone": undone.version, "summary": s,
                     "version": after["version"] if after else None})
        return 0
    print(f"Rolled back version {undone.version} of {args.name} ({undone.action}: "
          f"{s['added']} added, {s['changed']} changed, {s['closed']} closed, "
          f"{s['removed']} removed undone); {now}")
    return 0


def cmd_deck_history(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        versions = Decks(store).versions(args.name)
    if args.json:
        _print_json([{"version": v.version, "action": v.action, "at": v.at,
                      "source": v.source, "summary": v.summary,
                      "rolled_back": v.rolled_back} for v in versions])
        return 0
    utc = zone("UTC")
    _table([(v.version, format_instant(v.at, utc), v.action,
             (v.source or {}).get("file", ""),
             " ".join(f"{k} {n}" for k, n in v.summary.items() if n),
             "rolled back" if v.rolled_back else "") for v in versions],
           ["VERSION", "AT (UTC)", "ACTION", "FILE", "CHANGES", ""])
    return 0


def cmd_profile_add(args: argparse.Namespace) -> int:
    from datetime import date

    from .decks import Decks

    try:
        windows = [w for spec in args.time or [] for w in parse_window(spec)]
        dates = tuple(date.fromisoformat(d.strip()) for d in (args.dates or "").split(",")
                      if d.strip())
        profile = TimeProfile(name=args.profile, weight=args.weight,
                              days=parse_days(args.days) if args.days else frozenset(range(7)),
                              windows=tuple(windows), dates=dates)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    with _open(args) as store:
        v = Decks(store).configure(args.table, profile=profile)
    print(f"Table {args.table}, version {v.version}: {v.action}: {profile.describe()}")
    return 0


def cmd_profile_list(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        table = Decks(store).table(args.table)
    if args.json:
        _print_json([p.to_json() for p in table.profiles.values()])
        return 0
    for p in table.profiles.values():
        print(f"{p.name}: {p.describe()}")
    if not table.profiles:
        print(f"Table {table.name} has no time profiles")
    return 0


def cmd_profile_delete(args: argparse.Namespace) -> int:
    from .decks import Decks

    with _open(args) as store:
        v = Decks(store).configure(args.table, drop_profile=args.profile)
    print(f"Table {args.table}, version {v.version}: {v.action}")
    return 0


# -- rating

def cmd_deck_import_cgrates(args: argparse.Namespace) -> int:
    from .rating_profiles import import_plan

    with _open(args, create=True) as store:
        report = import_plan(store, args.folder, args.timezone, args.currency)
    for w in report.warnings:
        print(f"rater: warning: {args.folder}/{w}", file=sys.stderr)
    if args.json:
        _print_json(report.to_json())
        return 0
    for p in report.plans:
        state = f"version {p.version}" if p.changed else f"unchanged (version {p.version})"
        print(f"table {p.table}: {state}, {p.rows} rows, {p.profiles} time profiles")
    print(f"{report.rating_profiles} rating profiles")
    return 0


def cmd_rate(args: argparse.Namespace) -> int:
    try:
        return _rate(args)
    except RaterError as exc:
        if not args.json:
            raise
        _print_json({"error": exc.code, "message": exc.message})
        return EXIT_CODES.get(exc.code, 1)


def _rate(args: argparse.Namespace) -> int:
    from .engine import Deck

    extra: dict[str, Any] = {}
    with _open(args) as store:
        if args.subject is not None:
            from .cgrates import DEFAULT_CATEGORY, DEFAULT_TENANT
            from .rating_profiles import RatingProfiles

            if args.tech_prefix:
                raise InvalidArgument("--tech-prefix is for --table")
            tenant, category = args.tenant or DEFAULT_TENANT, args.category or DEFAULT_CATEGORY
            rated = RatingProfiles(store).rate(args.number, args.at, args.duration,
                                               subject=args.subject, tenant=tenant,
                                               category=category)
            explained, tz = rated.explained, rated.tz
            extra = {"tenant": tenant, "category": category,
                     "subject": args.subject, "rated_as": rated.subject,
                     "plan": explained.call.table}
            if rated.max_duration is not None:
                extra["max_duration"] = rated.max_duration
        else:
            with Deck(store, args.table) as deck:
                explained = deck.explain(args.number, args.at, args.duration,
                                         args.tech_prefix)
                tz = deck.tz
    call = explained.call
    tiers = [{"destination": c.destination, "from_second": c.from_s,
              "increments": c.increments, "increment": c.increment_s, "seconds": c.seconds,
              "price": str(c.price), "unit": c.unit_s} for c in explained.charges]
    out = call.to_json(tz)
    out["connect_fee"] = str(explained.connect_fee)
    out["tiers"] = tiers
    out.update(extra)
    if args.json:
        _print_json(out)
        return 0
    if extra:
        print(f"{extra['tenant']}:{extra['category']}:{extra['subject']} rated by plan "
              f"{extra['plan']}" + (f" (as {extra['rated_as']})"
                                    if extra["rated_as"] != extra["subject"] else ""))
    print(f"{call.number} -> {call.prefix} {call.destination} (table {call.table})")
    print(f"  start     {out['start']}")
    print(f"  duration  {call.duration_s} s, billed {call.billed_seconds} s")
    for t in tiers:
        per = "min" if t["unit"] == 60 else f"{t['unit']} s"
        other = "" if t["destination"] == call.destination else f" ({t['destination']})"
        print(f"  tier      from {t['from_second']} s: {t['increments']} x {t['increment']} s "
              f"at {t['price']}/{per}{other}")
    if explained.truncated:
        print("  ...       (more stretches than shown)")
    if explained.connect_fee:
        print(f"  connect   {explained.connect_fee}")
    print(f"  cost      {call.cost} {call.currency}")
    if "max_duration" in extra:
        print(f"  allowed   {extra['max_duration']} s (MaxCost, *disconnect)")
    return 0


def cmd_rate_file(args: argparse.Namespace) -> int:
    from .cdr import rate_file
    from .engine import Deck

    with _open(args) as store, Deck(store, args.table) as deck:
        summary = rate_file(deck, args.file, args.output, fmt=args.format,
                            tech_prefix=args.tech_prefix)
    if args.json:
        print(json.dumps(summary.to_json()), file=sys.stderr)
        return 0
    print(f"{summary.rows:,} rows ({summary.format}): {summary.rated:,} rated, "
          f"{summary.unmatched:,} unmatched; total {summary.total_cost} {summary.currency}; "
          f"{summary.seconds:.2f} s, {summary.rows_per_second:,.0f} rows/s", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(data_dir(args.data))


# -- the parser

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rater", description="Telecom rating: rate decks in LMDB, exact prices.")
    p.add_argument("--data", metavar="DIR",
                   help="data directory (default: $RATER_DATA, else ./rater-data)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"rater {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    def command(parent: Any, name: str, fn: Callable[[argparse.Namespace], int],
                help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    def rounding_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--decimals", type=int, help="decimal places of a call's cost "
                                                     "(default 4)")
        sp.add_argument("--rounding", choices=list(METHODS), help="rounding method "
                                                                   "(default half-up)")
        sp.add_argument("--profile-boundary", choices=PROFILE_BOUNDARY_MODES,
                        help="a call crossing a time-profile boundary is priced at its "
                             "start, split there, or cut there and at midnight "
                             "(default start)")

    sp = command(sub, "demo", cmd_demo, "import a sample deck, rate sample calls, show them")

    deck = sub.add_parser("deck", help="rate tables (decks)").add_subparsers(
        dest="deck_command", required=True, metavar="COMMAND", parser_class=_Parser)
    sp = command(deck, "import", cmd_deck_import, "import a rate deck file (CSV or XLSX)")
    sp.add_argument("file")
    sp.add_argument("--table", required=True)
    sp.add_argument("--currency", help="ISO 4217 code (needed for a new table unless a "
                                       "header names it)")
    sp.add_argument("--timezone", help="IANA zone of the table (default UTC)")
    rounding_options(sp)
    sp.add_argument("--columns", help="map headers: FIELD=HEADER[,FIELD=HEADER] "
                                      "(HEADER may be a 1-based column number)")
    sp.add_argument("--delimiter", help="field separator (default: detected)")
    sp.add_argument("--sheet", help="XLSX sheet (default: the first)")
    sp.add_argument("--replace", action="store_true",
                    help="a full A-Z: close the prefixes the file does not list")
    sp.add_argument("--effective", help="with --replace: when unlisted prefixes close "
                                        "(default: the file's earliest date, else now)")
    sp.add_argument("--on-duplicate", choices=("error", "first", "last"), default="error",
                    help="a prefix twice for the same date and profile (default error)")
    sp.add_argument("--json", action="store_true")

    sp = command(deck, "import-cgrates", cmd_deck_import_cgrates,
                 "import a CGRateS tariff plan folder: a table per RatingPlan, and the "
                 "rating profiles")
    sp.add_argument("folder")
    sp.add_argument("--timezone", default="UTC",
                    help="IANA zone of its timings and activation times (default UTC)")
    sp.add_argument("--currency", default="XXX",
                    help="ISO 4217 code of its amounts (default XXX: no currency named)")
    sp.add_argument("--json", action="store_true")

    sp = command(deck, "create", cmd_deck_create, "create an empty rate table")
    sp.add_argument("name")
    sp.add_argument("--currency", required=True)
    sp.add_argument("--timezone", default="UTC")
    rounding_options(sp)

    sp = command(deck, "set", cmd_deck_set, "change a table's zone, rounding or boundary mode")
    sp.add_argument("name")
    sp.add_argument("--timezone")
    rounding_options(sp)

    sp = command(deck, "list", cmd_deck_list, "list the rate tables")
    sp.add_argument("--json", action="store_true")

    sp = command(deck, "show", cmd_deck_show, "show a table's rows")
    sp.add_argument("name")
    sp.add_argument("--prefix", help="only prefixes starting with this")
    sp.add_argument("--at", help="only rows in force at this instant")
    sp.add_argument("--limit", type=int, default=200, help="rows to print (0: all)")
    sp.add_argument("--json", action="store_true")

    sp = command(deck, "diff", cmd_deck_diff, "what the last change to a table did")
    sp.add_argument("name")
    sp.add_argument("--limit", type=int, default=100, help="changes to print (0: all)")
    sp.add_argument("--json", action="store_true")

    sp = command(deck, "rollback", cmd_deck_rollback, "undo a table's last change")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true")

    sp = command(deck, "history", cmd_deck_history, "a table's versions")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true")

    prof = deck.add_parser("profile", help="time profiles of a table").add_subparsers(
        dest="profile_command", required=True, metavar="COMMAND", parser_class=_Parser)
    sp = command(prof, "add", cmd_profile_add, "add or change a time profile")
    sp.add_argument("table")
    sp.add_argument("profile")
    sp.add_argument("--days", help="weekdays, e.g. mon-fri or sat,sun (default every day)")
    sp.add_argument("--time", action="append", metavar="HH:MM-HH:MM",
                    help="a time-of-day window, may repeat; 22:00-06:00 wraps midnight "
                         "(default all day)")
    sp.add_argument("--dates", help="only on these dates: YYYY-MM-DD[,YYYY-MM-DD...]")
    sp.add_argument("--weight", type=int, default=10,
                    help="where profiles overlap the higher weight wins (default 10)")
    sp = command(prof, "list", cmd_profile_list, "list a table's time profiles")
    sp.add_argument("table")
    sp.add_argument("--json", action="store_true")
    sp = command(prof, "delete", cmd_profile_delete, "delete an unused time profile")
    sp.add_argument("table")
    sp.add_argument("profile")

    sp = command(sub, "rate", cmd_rate, "price one call, by a table or through the rating "
                                        "profiles")
    sp.add_argument("number")
    by = sp.add_mutually_exclusive_group(required=True)
    by.add_argument("--table")
    by.add_argument("--subject", help="price through the rating profiles of this subject "
                                      "(from `rater deck import-cgrates`)")
    sp.add_argument("--tenant", help="with --subject (default cgrates.org, as in CGRateS)")
    sp.add_argument("--category", help="with --subject (default call, as in CGRateS)")
    sp.add_argument("--at", help="start, ISO 8601 (default now); without an offset, in the "
                                 "table's time zone (with --subject: the import's)")
    sp.add_argument("--duration", type=int, default=60, help="seconds (default 60)")
    sp.add_argument("--tech-prefix", default="", help="cut this from the number first")
    sp.add_argument("--json", action="store_true")

    sp = command(sub, "rate-file", cmd_rate_file, "rate a CDR file")
    sp.add_argument("file")
    sp.add_argument("--table", required=True)
    sp.add_argument("--format", choices=("auto", "canonical", "asterisk", "freeswitch"),
                    default="auto")
    sp.add_argument("-o", "--output", help="rated CSV (default: standard output)")
    sp.add_argument("--tech-prefix", default="", help="cut this from every number first")
    sp.add_argument("--json", action="store_true", help="the summary as JSON (on stderr)")

    from .cli_billing import add_commands
    from .cli_serve import add_commands as add_service_commands

    add_commands(sub, command)
    add_service_commands(sub, command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()
        return int(code)
    except RaterError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"rater: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"rater: hint: {exc.hint}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        print("rater: interrupted; nothing half-done was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except OSError as exc:                       # a file the user named, not a bug
        if args.debug:
            traceback.print_exc()
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"rater: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CODES["FILE_ERROR"]
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"rater: internal error: {type(exc).__name__}: {exc} "
                  f"(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
