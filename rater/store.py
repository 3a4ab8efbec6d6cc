"""The LMDB environment of a data directory.

Layout: ``DATA/lmdb/`` holds one LMDB environment with named databases:

``meta``      the store's format version
``tables``    rate table name -> settings and facts (JSON)
``rows``      table, prefix, profile, effective_from -> one rate row (JSON)
``versions``  table, version number -> what one change did (compressed JSON)
``compiled``  table name -> the compiled deck the engine reads in place

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
* A full map grows by doubling up to ``storage.max_map_size``, and only while
  this process has no deck open (a remap moves the memory the engine reads);
  otherwise the write fails with STORE_FULL and changes nothing. When another
  process has grown the map, :meth:`Store.begin` adopts the new size.
* After ``fork()``, the child must open its own :class:`Store`: LMDB
  environments are not shared across a fork.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import lmdb

from .config import StorageConfig
from .errors import StoreError, StoreFull

FORMAT = 1
DATABASES = ("meta", "tables", "rows", "versions", "compiled")

T = TypeVar("T")


class Reader(Protocol):
    """A long-lived reader that must let go of the map while it is resized."""

    def _detach(self) -> None: ...
    def _attach(self) -> None: ...


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
            self.env = lmdb.open(str(path), map_size=self.config.map_size,
                                 max_dbs=len(DATABASES) + 4, max_readers=1024,
                                 readahead=False, meminit=False, sync=self.config.sync)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the LMDB environment in {path}: {exc}") from None
        self._dbs: dict[str, Any] = {}
        self._readers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        with self.env.begin(write=True) as txn:
            for name in DATABASES:
                self._dbs[name] = self.env.open_db(name.encode(), txn=txn)
            raw = txn.get(b"format", db=self._dbs["meta"])
            if raw is None:
                txn.put(b"format", json.dumps({"format": FORMAT}).encode(), db=self._dbs["meta"])
            elif json.loads(raw)["format"] > FORMAT:
                raise StoreError(f"{path} was written by a newer rater (store format "
                                 f"{json.loads(raw)['format']}, this one reads {FORMAT})")

    def db(self, name: str) -> Any:
        return self._dbs[name]

    def close(self) -> None:
        self.env.close()

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
        new = min(size * 2, self.config.max_map_size)
        if len(self._readers):
            raise StoreFull(f"the LMDB map is full at {size} bytes and cannot grow while "
                            f"this process reads decks; nothing was written",
                            hint="raise storage.map_size, or import from a process "
                                 "that has no deck open (rater deck import)")
        self._resize(new)

    def _resize(self, size: int) -> None:
        with self._lock:
            readers = list(self._readers)
            for r in readers:
                r._detach()
            try:
                self.env.set_mapsize(size)
            finally:
                for r in readers:
                    r._attach()
