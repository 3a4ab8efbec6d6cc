"""The LMDB environment of a data directory.

Layout: ``DATA/lmdb/`` holds one LMDB environment. Records of each kind live
in its main database under their own key prefix (a :class:`Space`):

``m/`` meta      the store's format version
``t/`` tables    rate table name -> settings and facts (JSON)
``r/`` rows      table, prefix, profile, effective_from -> one rate row (JSON)
``v/`` versions  table, version number -> what one change did (compressed JSON)
``c/`` compiled  table name -> the compiled deck the engine reads in place
``k/`` clients   client id -> settings (JSON); ``n/`` name -> client id
``a/`` accounts  account id -> settings (JSON); ``i/`` identifier -> account id
``b/`` balances  client id -> live and fixed balance (nanos)
``j/`` journal   entry number -> one money movement (msgpack)
``e/`` keys      idempotency key of a transaction -> entry number
``h/`` holds     authorization entry number -> its state
``q/`` calls     source, CDR id -> the CDR as received and how it stands now
``w/`` when      day, batch number -> source, and the date and id of each call of
                 one import chunk (or rerate) dated that day (calls by period)
``y/`` unmatched instant, source, CDR id -> nothing (mismatches by period)
``l/`` audit     entry number -> one change to clients, accounts, decks, NAS entries
``s/`` NAS       network (CIDR) -> shared secret, name, return codes (JSON)
``g/`` calls up  call key -> a call in progress: its client, its reservation (msgpack)
``x/`` lapse     instant (8 bytes), call key -> nothing: when each ``g/`` record lapses
``u/`` load      client id -> its calls in progress in sum: count, reserved (msgpack)

(Named LMDB databases would need a write transaction in every process that
opens them, which would make any command wait for a running import.)

Concurrency contract
--------------------
* Any number of processes and threads read at once; LMDB gives each read
  transaction a consistent snapshot and never blocks it.
* One write transaction at a time across all processes (LMDB's writer lock).
  Every change to a table (rows, settings, compiled deck, version record) is
  one write transaction: readers see all of it or none of it.
* A :class:`rater.engine.Deck` keeps one read transaction open for as long as
  it reads a compiled deck in place; its pages stay valid, whatever writers
  do, until the deck moves on (``refresh()``) or closes. Keep such readers
  short-lived or refreshed: LMDB cannot reuse the pages an old snapshot holds.
* A full map grows by doubling up to ``storage.max_map_size``; beyond, the
  write fails with STORE_FULL and changes nothing. When another process has
  grown the map, :meth:`Store.begin` adopts the new size. A resize moves the
  memory decks read in place, so it waits until no rating call is running
  (each holds :attr:`Store.gate` shared), lets every open deck go, remaps, and
  reopens them on the newest compiled decks; a deck whose table has gone
  stays closed.
* After ``fork()``, the child must open its own :class:`Store`: LMDB
  environments are not shared across a fork.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import lmdb
import msgpack

from .config import StorageConfig
from .errors import StoreError, StoreFull

#: The layout of the records. 2: calls in progress keyed by call (format 1 keyed them
#: by client, with an ``o/`` owner index); a store of format 1 is moved to 2 on opening.
FORMAT = 2
#: Set once the low-balance watch records of every client are written.
WATCHED = b"watched"

T = TypeVar("T")


class Reader(Protocol):
    """A long-lived reader that must let go of the map while it is resized."""

    def _detach(self) -> None: ...
    def _reattach(self) -> None: ...


class Space:
    """One kind of record: keys under a tag in the environment's main database."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag

    def get(self, txn: Any, key: bytes) -> Any:
        return txn.get(self.tag + key)

    def put(self, txn: Any, key: bytes, value: bytes) -> None:
        txn.put(self.tag + key, value)

    def putmulti(self, txn: Any, items: Iterable[tuple[bytes, bytes]]) -> None:
        txn.cursor().putmulti([(self.tag + k, v) for k, v in items])

    def delete(self, txn: Any, key: bytes) -> bool:
        return bool(txn.delete(self.tag + key))

    def last(self, txn: Any) -> bytes | None:
        """The greatest key of this space (without the tag), or None when it is empty."""
        cur = txn.cursor()
        # The tag ends with '/', whose successor '0' bounds the space.
        end = self.tag[:-1] + b"0"
        if cur.set_range(end):
            if not cur.prev():
                return None
        elif not cur.last():
            return None
        key = bytes(cur.key())
        return key[len(self.tag):] if key.startswith(self.tag) else None

    def items(self, txn: Any, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every record whose key starts with ``prefix``, in key order."""
        start = self.tag + prefix
        cur = txn.cursor()
        if not cur.set_range(start):
            return
        n = len(self.tag)
        for key, value in cur:
            if not key.startswith(start):
                break
            yield key[n:], value


class Gate:
    """Any number of users at once, or one resizer alone (a readers-writer lock).

    ``with gate.shared:`` around each use; ``with gate.exclusive():`` to resize.
    A waiting resizer stops new users from entering, so it is never starved.
    """

    def __init__(self) -> None:
        # A plain lock: nothing takes it twice, and it is cheaper than the default RLock.
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._resizing = False
        self.shared = _Shared(self)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._users:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class _Shared:
    """The shared side of a Gate, as a plain context manager (it is on every rating call)."""

    __slots__ = ("_gate",)

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        gate = self._gate
        with gate._cond:
            while gate._resizing:
                gate._cond.wait()
            gate._users += 1

    def __exit__(self, *exc: object) -> None:
        gate = self._gate
        with gate._cond:
            gate._users -= 1
            # Only a resizer waits for the users to be gone (and it set _resizing first).
            if not gate._users and gate._resizing:
                gate._cond.notify_all()


class Store:
    """One data directory's LMDB environment (see the module's concurrency contract)."""

    def __init__(self, data_dir: Path, config: StorageConfig | None = None, *,
                 create: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.config = config or StorageConfig()
        path = self.data_dir / "lmdb"
        if not path.is_dir():
            if not create:
                raise StoreError(f"no rater data in {self.data_dir}",
                                 hint="import a deck first (rater deck import), "
                                      "or point --data / RATER_DATA at the data directory")
            path.mkdir(parents=True, exist_ok=True)
        try:
            self.env = lmdb.open(str(path), map_size=self.config.map_size, max_dbs=0,
                                 max_readers=1024, readahead=False, meminit=False,
                                 sync=self.config.sync)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the LMDB environment in {path}: {exc}") from None
        self.meta = Space(b"m/")
        self.tables = Space(b"t/")
        self.rows = Space(b"r/")
        self.versions = Space(b"v/")
        self.compiled = Space(b"c/")
        self.clients = Space(b"k/")
        self.client_names = Space(b"n/")
        self.accounts = Space(b"a/")
        self.identifiers = Space(b"i/")
        self.balances = Space(b"b/")
        self.journal = Space(b"j/")
        self.keys = Space(b"e/")
        self.holds = Space(b"h/")
        self.calls = Space(b"q/")
        self.when = Space(b"w/")
        self.unmatched = Space(b"y/")
        self.audit = Space(b"l/")
        self.nas = Space(b"s/")
        self.calls_up = Space(b"g/")
        self.calls_lapse = Space(b"x/")
        self.calls_load = Space(b"u/")
        self.rating = Space(b"p/")          # CGRateS rating profiles and plans
        self.packages = Space(b"f/")
        self.subscriptions = Space(b"z/")   # subscriptions; clients a prepaid run suspended
        self.bundles = Space(b"d/")         # included minutes used, held, and per call
        self.watch = Space(b"W/")           # low-balance thresholds and who is below one
        self.notices = Space(b"N/")         # low-balance notices not yet delivered
        self._readers: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Called after each commit of :meth:`write` (a group sync asks to sync it).
        self.after_commit: Callable[[], None] | None = None
        #: Held shared by every call that reads a deck in place, exclusively by a resize.
        self.gate = Gate()
        try:
            self._check_format()
        except BaseException:
            self.env.close()
            raise

    def _check_format(self) -> None:
        """Upgrade a store an older rater wrote (refuse one a newer rater wrote)."""
        with self.env.begin() as txn:
            raw = self.meta.get(txn, b"format")
        if raw is None:
            with self.env.begin(write=True) as txn:
                raw = self.meta.get(txn, b"format")
                if raw is None:
                    raw = json.dumps({"format": FORMAT}).encode()
                    self.meta.put(txn, b"format", raw)
        found = json.loads(raw)["format"]
        if found > FORMAT:
            raise StoreError(f"{self.data_dir} was written by a newer rater (store format "
                             f"{found}, this one reads {FORMAT})")
        if found == 1:
            with self.env.begin(write=True) as txn:
                if json.loads(self.meta.get(txn, b"format"))["format"] == 1:
                    self._calls_by_call(txn)
                    self.meta.put(txn, b"format", json.dumps({"format": FORMAT}).encode())
        with self.env.begin() as txn:
            watched = self.meta.get(txn, WATCHED)
        if watched is None:
            # The low-balance watch records, kept since they exist; a store from before
            # gets them once.
            from .notifications import watch_all

            with self.env.begin(write=True) as txn:
                if self.meta.get(txn, WATCHED) is None:
                    watch_all(self, txn)
                    self.meta.put(txn, WATCHED, b"1")

    def _calls_by_call(self, txn: Any) -> None:
        """Format 1 to 2: each call in progress (``g/`` client id + call key -> amount,
        granted, expires, started, NAS, number) under its call key with its client
        first, its ``x/`` lapse key, the ``u/`` sums without their next-lapse field;
        the ``o/`` owner index dropped."""
        old = list(self.calls_up.items(txn))
        owners = Space(b"o/")
        for space in (self.calls_up, owners, self.calls_load):
            for key in [bytes(k) for k, _ in space.items(txn)]:
                space.delete(txn, key)
        sums: dict[bytes, tuple[int, int]] = {}
        for key, raw in old:
            tag, call = bytes(key[:4]), bytes(key[4:])
            record = [int.from_bytes(tag, "big"), *msgpack.unpackb(raw)]
            self.calls_up.put(txn, call, msgpack.packb(record))
            self.calls_lapse.put(txn, record[3].to_bytes(8, "big") + call, b"")
            count, reserved = sums.get(tag, (0, 0))
            sums[tag] = (count + 1, reserved + record[1])
        for tag, (count, reserved) in sums.items():
            self.calls_load.put(txn, tag, msgpack.packb((count, reserved)))

    def close(self) -> None:
        self.env.close()

    def check_backup_target(self, target: Path, beside: tuple[str, ...] = ()) -> None:
        """A backup goes into a new or empty directory (``beside``: files copied there
        first, for the same backup)."""
        target = Path(target)
        if target.exists() and any(p.name not in beside for p in target.iterdir()):
            raise StoreError(f"{target} is not empty", hint="back up into a new directory")

    def backup(self, target: Path, beside: tuple[str, ...] = ()) -> Path:
        """A consistent copy of the environment, taken while others read and write.

        LMDB copies one read snapshot (compacted); writers are not stopped.
        """
        target = Path(target)
        self.check_backup_target(target, beside)
        dest = target / "lmdb"
        try:
            dest.mkdir(parents=True, exist_ok=True)
            self.env.copy(str(dest), compact=True)
        except (OSError, lmdb.Error) as exc:
            raise StoreError(f"cannot back up into {target}: {exc}") from None
        return dest

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions

    def begin(self, *, write: bool = False, buffers: bool = False) -> Any:
        """A new transaction; adopts a map grown by another process."""
        try:
            return self._begin(write, buffers)
        except lmdb.MapResizedError:
            self._resize(0)
            return self._begin(write, buffers)

    def _begin(self, write: bool, buffers: bool) -> Any:
        if buffers:
            return self.env.begin(write=write, buffers=True)
        return self.env.begin(write=write)

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A short read transaction (values are copied out as bytes)."""
        txn = self.begin()
        try:
            yield txn
        finally:
            txn.abort()

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(txn)`` in one write transaction and commit it.

        On a full map the transaction is abandoned, the map grows and ``fn``
        runs again from the start, so ``fn`` must only depend on its inputs
        and on what it reads through ``txn``.
        """
        while True:
            txn = self.begin(write=True)
            try:
                result = fn(txn)
                txn.commit()
                if self.after_commit is not None:
                    self.after_commit()
                return result
            except lmdb.MapFullError:
                txn.abort()
                self._grow()
            except BaseException:
                txn.abort()
                raise

    # -- map size

    @property
    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    def register(self, reader: Reader) -> None:
        """Track a long-lived reader so that a resize can let it go and reattach it."""
        self._readers.add(reader)

    def unregister(self, reader: Reader) -> None:
        self._readers.discard(reader)

    def _grow(self) -> None:
        size = self.map_size
        if size >= self.config.max_map_size:
            raise StoreFull(f"the LMDB map is full at {size} bytes "
                            f"(storage.max_map_size); nothing was written")
        self._resize(min(size * 2, self.config.max_map_size))

    def _resize(self, size: int) -> None:
        """Set the map size (0: adopt another process's), once no deck is being read."""
        with self.gate.exclusive():
            readers = list(self._readers)
            for r in readers:
                r._detach()
            try:
                self.env.set_mapsize(size)
            finally:
                for r in readers:
                    r._reattach()


class GroupSync:
    """fsync of an LMDB environment opened without sync, in a thread, at most every
    ``interval`` seconds and only after commits: commits return at once, and whoever
    must wait for the disk asks whether a commit made at a given moment is synced yet
    (:attr:`synced`) or waits for it (:meth:`wait`). Idle, the thread sleeps (it would
    otherwise take the GIL from the gRPC threads)."""

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        #: Commits made before this monotonic instant are on disk.
        self.synced = time.monotonic()
        #: Why the disk refused a sync (the worker then stops, to be started again).
        self.failed: str | None = None
        self._cond = threading.Condition()
        self._due: float | None = None
        self._stop = False
        #: Set once close() made its last sync: nothing syncs after it.
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="group-sync", daemon=True)
        self._thread.start()
        # Every commit of the store asks for its sync, whoever made it (RADIUS, gRPC).
        store.after_commit = self.request

    def request(self) -> None:
        """Commits were made: sync them within the interval."""
        with self._cond:
            if self._due is None:
                self._due = time.monotonic() + self.interval
                self._cond.notify_all()

    def wait(self, made: float) -> None:
        """Return once a commit made at monotonic instant ``made`` is on disk."""
        self.request()
        with self._cond:
            while self.synced <= made:
                if self.failed is not None:
                    raise StoreError(f"the disk refused a sync: {self.failed}")
                if self._closed:
                    raise StoreError("stopping: a commit made after the last sync is not "
                                     "known to be on disk")
                self._cond.wait(self.interval * 4)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (self._due is None or self._due > time.monotonic()):
                    self._cond.wait(None if self._due is None
                                    else self._due - time.monotonic())
                if self._stop:
                    return
                self._due = None
            try:
                self.sync()
            except Exception as exc:
                self.failed = str(exc)
                with self._cond:
                    self._cond.notify_all()
                return

    def sync(self) -> None:
        began = time.monotonic()
        self.store.env.sync(True)
        with self._cond:
            self.synced = began
            self._cond.notify_all()

    def close(self) -> None:
        self.store.after_commit = None
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        try:
            if self.failed is None:
                self.sync()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
