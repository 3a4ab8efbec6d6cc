"""Prometheus metrics of ``rater serve``, right across its worker processes.

prometheus_client's multiprocess mode: each worker writes its metrics to files
of its own in a new, empty directory the supervisor makes at start; the supervisor's
``/metrics`` endpoint (its own port, ``metrics.port``) reads and sums them at
every scrape. The environment variable that selects the mode must be set
before prometheus_client is first imported, so this module imports it only in
:func:`prepare` and after.

Every name starts ``rater_``. Counters: requests by agent and method, with a
latency histogram; authorizations by outcome; accounting requests by outcome;
dropped packets by reason; errors by code; low-balance notices by outcome (the
first worker delivers them). Gauges, read from the store by the first worker every
few seconds: deck versions and compiled sizes, LMDB map size and use, calls in
progress (reservations in flight), journal entries.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from .store import Store

#: Latency buckets, in seconds: RADIUS answers are expected within a few ms.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Seconds between reads of the store for the gauges.
STORE_EVERY = 5.0
ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(directory: Path) -> None:
    """Point prometheus_client's multiprocess mode at ``directory``, a new empty one
    (before it is imported: call this in the supervisor, before any worker starts)."""
    if "prometheus_client" in sys.modules and os.environ.get(ENV) != str(directory):
        raise RuntimeError("prometheus_client was imported before its directory was set")
    if any(directory.iterdir()):
        raise RuntimeError(f"{directory} is not empty: old metrics would be summed")
    os.environ[ENV] = str(directory)


def serve_http(listen: str, port: int) -> Any:
    """Serve /metrics (the sum over every worker) from a thread; the server."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _ = start_http_server(port, addr=listen, registry=registry)
    return server


def process_gone(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Tally:
    """Requests of one (method, outcome) counted and timed in the worker's own memory,
    then written to the metric files at once by :meth:`flush`: in multiprocess mode
    every increment is a locked write to a shared file, which cost a RADIUS worker
    more than the codec when done per packet."""

    def __init__(self, requests: Any, latency: Any, outcomes: Any) -> None:
        self._children = (requests, latency, outcomes)
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float, n: int = 1) -> None:
        """``n`` requests answered in ``seconds`` each."""
        self._count += n
        self._sum += seconds * n
        self._buckets[bisect.bisect_left(BUCKETS, seconds)] += n

    def flush(self) -> None:
        if not self._count:
            return
        requests, latency, outcomes = self._children
        requests.inc(self._count)
        outcomes.inc(self._count)
        # A Histogram child keeps one (non-cumulative) counter per bucket, the last one
        # +Inf, and its sum; observe() adds 1 to one of them and the value to the sum.
        latency._sum.inc(self._sum)
        for i, n in enumerate(self._buckets):
            if n:
                latency._buckets[i].inc(n)
        self._reset()


class Metrics:
    """A worker's metrics (create it in the worker, after the fork)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        to = REGISTRY if registry is None else registry
        self.requests = Counter("rater_requests", "Requests answered, by agent and method.",
                                ["agent", "method"], registry=to)
        self.latency = Histogram("rater_request_seconds",
                                 "Time from a request's arrival to its answer.",
                                 ["agent", "method"], buckets=BUCKETS, registry=to)
        self.authorizations = Counter("rater_authorizations",
                                      "Authorizations, by outcome (accepted or the reason "
                                      "of the reject).", ["outcome"], registry=to)
        self.accounting = Counter("rater_accounting",
                                  "Accounting requests, by what was done.", ["outcome"],
                                  registry=to)
        self.dropped = Counter("rater_dropped_packets", "Packets dropped, by reason.",
                               ["reason"], registry=to)
        self.errors = Counter("rater_errors", "Requests that failed, by error code.",
                              ["code"], registry=to)
        self.low_balance = Counter("rater_low_balance_notices",
                                   "Low-balance notices delivered, by outcome (sent, no-email, "
                                   "failed, dropped).", ["outcome"], registry=to)

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return Gauge(name, text, list(labels), multiprocess_mode="mostrecent",
                         registry=to)

        self.deck_version = gauge("rater_deck_version", "Version of each rate table.",
                                  ("table",))
        self.deck_bytes = gauge("rater_deck_bytes", "Size of each compiled deck.", ("table",))
        self.map_bytes = gauge("rater_lmdb_map_bytes", "Size of the LMDB map.")
        self.used_bytes = gauge("rater_lmdb_used_bytes", "LMDB pages in use, in bytes.")
        self.calls_up = gauge("rater_calls_in_progress",
                              "Calls authorized or started and not yet stopped "
                              "(reservations in flight), as last summed per client.")
        self.journal = gauge("rater_journal_entries", "Entries in the journal.")
        self._read_at = 0.0

    def read_store(self, store: Store, force: bool = False) -> None:
        """Set the store's gauges (at most every STORE_EVERY seconds)."""
        from .journal import last_number

        now = time.monotonic()
        if not force and now - self._read_at < STORE_EVERY:
            return
        self._read_at = now
        info = store.env.info()
        stat = store.env.stat()
        self.map_bytes.set(info["map_size"])
        self.used_bytes.set((info["last_pgno"] + 1) * stat["psize"])
        with store.read() as txn:
            for key, raw in store.tables.items(txn):
                record = json.loads(raw)
                blob = store.compiled.get(txn, key)
                name = key.decode()
                self.deck_version.labels(name).set(record.get("version", 0))
                self.deck_bytes.labels(name).set(0 if blob is None else len(blob))
            calls = sum(msgpack.unpackb(raw)[0] for _, raw in store.calls_load.items(txn))
            last = last_number(store, txn)
        self.calls_up.set(calls)
        self.journal.set(last)

