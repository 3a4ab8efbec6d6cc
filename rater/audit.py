"""The audit log: every change to clients, accounts, rate tables and NAS entries.

Each change is recorded in the same write transaction that makes it, so the log
never misses a change nor names one that did not happen. A record says when,
what (kind and name), the action, and the object before and after (JSON; None
where it did not exist).
"""

from __future__ import annotations

import json
import os
import pwd
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .store import Store

KINDS = ("client", "account", "deck", "nas")


@dataclass
class AuditRecord:
    number: int
    at: int
    kind: str
    name: str
    action: str
    by: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def record(store: Store, txn: Any, kind: str, name: str, action: str, before: Any,
           after: Any) -> int:
    """Append one change to the log inside the caller's write transaction."""
    last = store.audit.last(txn)
    number = (int.from_bytes(last, "big") + 1) if last else 1
    body = {"at": int(time.time()), "kind": kind, "name": name, "action": action,
            "by": _user(), "before": before, "after": after}
    store.audit.put(txn, number.to_bytes(8, "big"), json.dumps(body).encode())
    return number


def records(store: Store, *, kind: str | None = None, name: str | None = None,
            since: int | None = None, until: int | None = None) -> Iterator[AuditRecord]:
    """The log, oldest first, optionally of one kind or object and within [since, until)."""
    with store.read() as txn:
        items = list(store.audit.items(txn))
    for key, raw in items:
        body = json.loads(raw)
        if kind is not None and body["kind"] != kind:
            continue
        if name is not None and body["name"] != name:
            continue
        if since is not None and body["at"] < since:
            continue
        if until is not None and body["at"] >= until:
            continue
        yield AuditRecord(number=int.from_bytes(key, "big"), **body)
