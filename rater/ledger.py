"""The ledger database: the journal's money movements where SQL can sum them.

The billing companion (``rater billing``) tails the journal into it: every entry
once, in journal order, with the number of the last entry taken written in the
same SQL transaction as the rows, so that a crash between two batches repeats
or loses nothing. The movements and the ledger's balances are a copy of the
journal and can be rebuilt from it at any time (:meth:`Ledger.rebuild`);
:meth:`Ledger.check` proves they agree with it.

One SQLite file in the data directory (``ledger.sqlite3``) by default, opened
in WAL mode so that readers (reports, ``rater check``) do not wait for the
tailer; or a PostgreSQL database, given a ``postgresql://`` URL (the
environment variable RATER_LEDGER), with the same SQL: only how a transaction
begins differs.

Amounts are integers of nanos, as in the journal (SQLite's INTEGER and SQL's
BIGINT hold them); a row keeps what an invoice needs of its entry: the client,
the type, the amount, the instant that places it in a period and, for a rated
call or a rerating correction, the call's facts.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .clients import show_amount
from .errors import CheckFailed, StoreError
from .journal import INVOICE_TYPES, Entry, add_move, iter_entries, last_number
from .progress import Progress
from .store import Store

FILE = "ledger.sqlite3"
#: The environment variable that names a PostgreSQL ledger.
URL_VARIABLE = "RATER_LEDGER"
#: Entries a tail takes per SQL transaction.
BATCH = 50_000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tailed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        entry BIGINT NOT NULL)""",
    # One row per journal entry (its number); call_* columns for rated calls and reratings.
    # SQLite keeps the rows in entry order (the rowid), so a bill run reads a range of
    # entries straight through.
    """CREATE TABLE IF NOT EXISTS movements (
        entry {entry},
        type TEXT NOT NULL,
        client INTEGER NOT NULL,
        amount BIGINT NOT NULL,
        moves_fixed INTEGER NOT NULL,
        at BIGINT NOT NULL,
        date BIGINT NOT NULL,
        key TEXT,
        ref BIGINT,
        note TEXT,
        call_source TEXT,
        call_id TEXT,
        number TEXT,
        duration INTEGER,
        billed INTEGER,
        prefix TEXT,
        destination TEXT,
        rate_table TEXT,
        account INTEGER,
        cost BIGINT)""",
    "CREATE INDEX IF NOT EXISTS movements_by_client_date ON movements (client, date)",
    """CREATE TABLE IF NOT EXISTS ledger_balances (
        client INTEGER PRIMARY KEY,
        live BIGINT NOT NULL,
        fixed BIGINT NOT NULL)""",
)
#: The SQL that sums what moves a live balance (every type but invoices).
LIVE_AMOUNT = ("CASE WHEN type IN (" + ", ".join(f"'{t}'" for t in INVOICE_TYPES)
               + ") THEN 0 ELSE amount END")

_INSERT = ("INSERT INTO movements (entry, type, client, amount, moves_fixed, at, date, key, "
           "ref, note, call_source, call_id, number, duration, billed, prefix, destination, "
           "rate_table, account, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
           "?, ?, ?, ?, ?)")
_MOVE = ("INSERT INTO ledger_balances (client, live, fixed) VALUES (?, ?, ?) "
         "ON CONFLICT (client) DO UPDATE SET live = ledger_balances.live + excluded.live, "
         "fixed = ledger_balances.fixed + excluded.fixed")


def _row(e: Entry) -> tuple[Any, ...]:
    c = e.call
    if c is None:
        facts: tuple[Any, ...] = (None,) * 10
    else:
        # CALL_FIELDS: source, id, rev, number, date, duration, billed, prefix,
        # destination, table, account, cost, vendor.
        facts = (c[0], c[1], c[3], c[5], c[6], c[7], c[8], c[9], c[10], c[11])
    return (e.number, e.type, e.client, e.amount, int(e.moves_fixed), e.at, e.date, e.key,
            e.ref, e.note, *facts)


class _SQLite:
    """A SQLite ledger file."""

    where: str
    #: What the schema's placeholders are in this dialect.
    words: ClassVar[dict[str, str]] = {
             "entry": "INTEGER PRIMARY KEY",
             "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
             # CROSS JOIN keeps the left table outermost: the movements read in order.
             "join": "CROSS JOIN"}

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            self._wal()
            self.conn.execute("PRAGMA synchronous = FULL")
            # Helper threads for big sorts: a bill run's GROUP BY over millions of calls.
            self.conn.execute(f"PRAGMA threads = {min(os.cpu_count() or 1, 8)}")
        except BaseException:
            self.conn.close()
            raise

    def _wal(self) -> None:
        """WAL mode. Switching a new file to it needs the file alone, and SQLite does not
        wait for that: another process opening the same new ledger gets "locked"."""
        for _ in range(300):
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                time.sleep(0.1)
        self.conn.execute("PRAGMA journal_mode = WAL")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    def begin(self, kind: str) -> None:
        # IMMEDIATE takes the write lock at once: two tailers cannot read one position.
        self.conn.execute("BEGIN" if kind == "read" else "BEGIN IMMEDIATE")

    def has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                 "AND name = ?", (name,)).fetchone() is not None

    def close(self) -> None:
        self.conn.close()


class _Postgres:
    """A PostgreSQL ledger database (psycopg 3)."""

    words: ClassVar[dict[str, str]] = {
             "entry": "BIGINT PRIMARY KEY",
             "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
             "join": "JOIN"}

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError("a PostgreSQL ledger needs psycopg",
                             hint="pip install 'rater[postgres]'") from None
        # Where it is, for messages: never the password, wherever the URL puts it.
        info = psycopg.conninfo.conninfo_to_dict(url)
        self.where = f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), list(rows))

    def begin(self, kind: str) -> None:
        if kind == "read":
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return
        self.conn.execute("BEGIN")
        if kind == "schema":
            # Two processes creating the tables at once would collide in the catalog.
            self.conn.execute("SELECT pg_advisory_xact_lock(7274001)")
        else:
            # One writer at a time, as SQLite's IMMEDIATE: two tailers cannot both read
            # one position.
            self.conn.execute("LOCK TABLE tailed IN EXCLUSIVE MODE")

    def has_table(self, name: str) -> bool:
        # The catalog table itself, read with the statement's snapshot: to_regclass()
        # goes through a cache that may still miss a table another session just made.
        row = self.conn.execute("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = "
                                "current_schema() AND tablename = %s", (name,)).fetchone()
        return row is not None

    def close(self) -> None:
        self.conn.close()


def ledger_url() -> str | None:
    """The PostgreSQL ledger's URL (RATER_LEDGER), or None for the SQLite file."""
    url = os.environ.get(URL_VARIABLE) or None
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"{URL_VARIABLE}: {url!r} is not a postgresql:// URL")
    return url


def has_ledger(store: Store) -> bool:
    """Whether the data directory has a ledger: a PostgreSQL one named, or the file."""
    return ledger_url() is not None or (store.data_dir / FILE).exists()


@dataclass
class Tailed:
    """What one :meth:`Ledger.tail` did."""

    entries: int
    #: The number of the last journal entry in the ledger.
    position: int


class Ledger:
    """The ledger database of a data directory."""

    def __init__(self, store: Store, url: str | None = None) -> None:
        """The ledger at ``url`` (postgresql://...), else RATER_LEDGER's, else the SQLite
        file of the data directory."""
        self.store = store
        url = url or ledger_url()
        self.db: _SQLite | _Postgres
        try:
            self.db = _Postgres(url) if url else _SQLite(store.data_dir / FILE)
        except StoreError:
            raise
        except Exception as exc:
            what = "the PostgreSQL ledger" if url else f"the ledger {store.data_dir / FILE}"
            raise StoreError(f"cannot open {what}: {exc}") from None
        try:
            # Only when missing: the schema lock would make a reader wait for the
            # tailer, and DDL on tables in use takes locks a tailer's could deadlock with.
            # The last table of the newest schema tells whether all are there.
            from .invoices import SCHEMA as INVOICING

            statements = SCHEMA + INVOICING
            last = [m[1] for s in statements
                    if (m := re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", s))][-1]
            if not self.db.has_table(last):
                with self.transaction("schema"):
                    if not self.db.has_table(last):
                        for statement in statements:
                            self.db.execute(statement.format(**self.db.words))
                        self.db.execute("INSERT INTO tailed (id, entry) VALUES (1, 0) "
                                        "ON CONFLICT (id) DO NOTHING")
        except Exception as exc:
            self.db.close()
            raise StoreError(f"cannot open the ledger {self.db.where}: {exc}") from None

    @property
    def where(self) -> str:
        """The ledger's file, or its PostgreSQL host and database."""
        return self.db.where

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, kind: str = "write") -> Iterator[_SQLite | _Postgres]:
        """One SQL transaction: ``read`` (one snapshot), ``write`` (holding the ledger's
        write lock from its start, so two tailers cannot both read the same position)
        or ``schema``."""
        self.db.begin(kind)
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @property
    def position(self) -> int:
        """The number of the last journal entry in the ledger."""
        row = self.db.execute("SELECT entry FROM tailed WHERE id = 1").fetchone()
        return int(row[0])

    # -- tailing

    def tail(self, progress: Progress | None = None,
             stop: Callable[[], bool] | None = None) -> Tailed:
        """Take every journal entry written since the last tail, in batches of BATCH,
        each batch and the new position in one SQL transaction; ``stop``: asked between
        batches whether to stop there."""
        taken = 0
        while True:
            with self.store.read() as txn:
                end = last_number(self.store, txn)
                start = self.position
                if start > end:
                    # A ledger of another history: a restored data directory beside a
                    # newer ledger, or two data directories given one database.
                    raise StoreError(f"the ledger {self.where} is at entry {start}, the "
                                     f"journal of {self.store.data_dir} ends at {end}",
                                     hint="rater billing --rebuild takes this journal again")
                if progress is not None:
                    progress.total = end - start
                entries = iter_entries(self.store, txn, start)
                while True:
                    batch = [e for _, e in zip(range(BATCH), entries, strict=False)]
                    if not batch or (stop is not None and stop()):
                        return Tailed(taken, self.position)
                    if not self._take(batch):
                        break               # another tailer moved on: read from there
                    taken += len(batch)
                    if progress is not None:
                        progress.advance(len(batch))

    def _take(self, batch: list[Entry]) -> bool:
        """Write a batch that follows the ledger's position; False (nothing written) if
        the position is no longer where the batch starts."""
        deltas: dict[int, list[int]] = {}
        for e in batch:
            add_move(deltas, e)
        with self.transaction() as db:
            if batch[0].number != self.position + 1:
                return False
            db.executemany(_INSERT, [_row(e) for e in batch])
            db.executemany(_MOVE, [(cid, live, fixed) for cid, (live, fixed) in deltas.items()])
            db.execute("UPDATE tailed SET entry = ? WHERE id = 1", (batch[-1].number,))
        return True

    def rebuild(self, progress: Progress | None = None,
                stop: Callable[[], bool] | None = None) -> Tailed:
        """Empty the movements and the ledger's balances and take the journal again
        (``stop``: as for :meth:`tail`)."""
        with self.transaction() as db:
            db.execute("DELETE FROM movements")
            db.execute("DELETE FROM ledger_balances")
            db.execute("UPDATE tailed SET entry = 0 WHERE id = 1")
        return self.tail(progress, stop)

    # -- reading

    def balances(self) -> dict[int, tuple[int, int]]:
        """client id -> (live, fixed) as the ledger has them."""
        rows = self.db.execute("SELECT client, live, fixed FROM ledger_balances")
        return {int(c): (int(live), int(fixed)) for c, live, fixed in rows}

    def check(self) -> list[str]:
        """Differences between the ledger and the journal up to the ledger's position
        (each client's sums, and the number of entries); [] when they agree."""
        problems: list[str] = []
        sums: dict[int, list[int]] = {}
        count = 0
        # One read transaction: the position, balances and rows of one moment.
        with self.transaction("read") as db:
            position = self.position
            balances = self.balances()
            rows = int(db.execute("SELECT COUNT(*) FROM movements").fetchone()[0])
            moved = {int(c): (int(live), int(fixed)) for c, live, fixed in db.execute(
                f"SELECT client, SUM({LIVE_AMOUNT}), SUM(CASE WHEN moves_fixed = 1 THEN "
                f"amount ELSE 0 END) FROM movements GROUP BY client")}
        with self.store.read() as txn:
            for e in iter_entries(self.store, txn):
                if e.number > position:
                    break
                count += 1
                add_move(sums, e)
        if rows != count:
            problems.append(f"ledger: {rows} movements, the journal {count} entries up to "
                            f"entry {position}")
        for cid in sorted(set(sums) | set(balances) | set(moved)):
            want = tuple(sums.get(cid, [0, 0]))
            for what, have in (("balance", balances.get(cid, (0, 0))),
                               ("movements", moved.get(cid, (0, 0)))):
                if have != want:
                    problems.append(
                        f"ledger: client #{cid} {what} live {show_amount(have[0])} fixed "
                        f"{show_amount(have[1])}; journal live {show_amount(want[0])} fixed "
                        f"{show_amount(want[1])}")
        return problems

    def require_consistent(self) -> None:
        CheckFailed.unless_none(self.check())

    def backup(self, target: Path) -> Path | None:
        """A consistent copy of a SQLite ledger into the directory ``target`` (None for a
        PostgreSQL one: its own tools back it up)."""
        if not isinstance(self.db, _SQLite):
            return None
        dest = Path(target) / FILE
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy = sqlite3.connect(dest)
            try:
                self.db.conn.backup(copy)
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot back up the ledger into {target}: {exc}") from None
        return dest
