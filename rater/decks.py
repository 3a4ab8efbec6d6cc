"""Rate tables in the store: imports, versions, diffs and rollbacks.

Importing into an existing table merges by prefix, profile and effective date,
as wholesale works: a row's price holds from its effective date until the next
row of the same prefix and profile takes over, so next week's announced price
and today's coexist. Re-importing a row with the same prefix, profile and
effective date corrects it. ``replace`` (a full A-Z) also closes, from the
file's effective date, every prefix the file no longer lists: a *closure*
row is stored, and the prefix's calls fall back to a shorter prefix.

Every change to a table (an import, a new time profile, new settings) is a
*version*, written in the same LMDB transaction as the rows it changed, the
table's settings and the newly compiled deck. A version records each row
before and after, so ``rollback`` undoes the last one exactly; again, the
one before.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import audit
from .compiler import Compiled, CompileError, compile_rows, effective_windows
from .deckfile import ParsedDeck, parse_deck
from .errors import Conflict, InvalidArgument, UnknownProfile, UnknownTable
from .progress import Progress
from .store import Store
from .tariff import (
    Item,
    RateRow,
    RateTable,
    Rounding,
    TimeProfile,
    decode_stored,
    encode_stored,
    is_closed,
)
from .timeutil import parse_instant, zone

NEVER = -(2**63)
T = TypeVar("T")


# -- keys of the rows database: table \0 prefix \0 profile \0 effective_from (8 bytes)

def _eff8(eff: int | None) -> bytes:
    return ((NEVER if eff is None else eff) - NEVER).to_bytes(8, "big")


def row_key(table: str, prefix: str, profile: str, eff: int | None) -> bytes:
    return b"\0".join((table.encode(), prefix.encode(), profile.encode(), _eff8(eff)))


def split_row_key(key: bytes) -> tuple[str, str, str, int | None]:
    head, eff = key[:-9], int.from_bytes(key[-8:], "big") + NEVER
    table, prefix, profile = head.decode().split("\0")
    return table, prefix, profile, None if eff == NEVER else eff


def _version_key(table: str, version: int) -> bytes:
    return table.encode() + b"\0" + version.to_bytes(4, "big")


@dataclass
class Change:
    """One row before and after a version (None: absent)."""

    prefix: str
    profile: str
    effective_from: int | None
    before: bytes | None
    after: bytes | None

    @property
    def kind(self) -> str:
        if self.after is None:
            return "removed"
        if is_closed(self.after):
            return "closed"
        if self.before is None:
            return "added"
        return "changed"

    def rows(self) -> tuple[RateRow | None, RateRow | None]:
        def load(raw: bytes | None) -> RateRow | None:
            if raw is None:
                return None
            return RateRow.from_stored(self.prefix, self.profile, self.effective_from,
                                       decode_stored(raw))
        return load(self.before), load(self.after)


@dataclass
class Version:
    """What one change to a table did."""

    table: str
    version: int
    action: str
    at: int
    before: dict[str, Any] | None        # the table's settings before (None: created)
    after: dict[str, Any]
    changes: list[Change]
    source: dict[str, Any] | None = None
    rolled_back: int | None = None

    @staticmethod
    def empty_summary() -> dict[str, int]:
        return {"added": 0, "changed": 0, "closed": 0, "removed": 0}

    @property
    def summary(self) -> dict[str, int]:
        out = self.empty_summary()
        for c in self.changes:
            out[c.kind] += 1
        return out

    def to_bytes(self) -> bytes:
        obj = {"table": self.table, "version": self.version, "action": self.action,
               "at": self.at, "before": self.before, "after": self.after,
               "source": self.source, "rolled_back": self.rolled_back,
               "changes": [[c.prefix, c.profile, c.effective_from,
                            None if c.before is None else c.before.decode(),
                            None if c.after is None else c.after.decode()]
                           for c in self.changes]}
        return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Version:
        obj = json.loads(zlib.decompress(raw))
        return cls(table=obj["table"], version=obj["version"], action=obj["action"],
                   at=obj["at"], before=obj["before"], after=obj["after"],
                   source=obj["source"], rolled_back=obj["rolled_back"],
                   changes=[Change(p, pr, e, None if b is None else b.encode(),
                                   None if a is None else a.encode())
                            for p, pr, e, b, a in obj["changes"]])


@dataclass
class ImportReport:
    table: str
    version: int
    file_rows: int
    unchanged: int
    summary: dict[str, int]
    prefixes: int
    rows: int
    size: int
    warnings: list[str] = field(default_factory=list)
    created: bool = False


class Decks:
    """The rate tables of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tables = store.tables
        self._rows = store.rows
        self._versions = store.versions
        self._compiled = store.compiled

    # -- reading

    def _record(self, txn: Any, name: str) -> dict[str, Any] | None:
        raw = self._tables.get(txn, name.encode())
        return None if raw is None else dict(json.loads(raw))

    def currency_in(self, txn: Any, name: str) -> str:
        """The currency of table ``name`` as ``txn`` sees it (UnknownTable if none)."""
        return str(self._require(txn, name)["settings"]["currency"])

    def _require(self, txn: Any, name: str) -> dict[str, Any]:
        rec = self._record(txn, name)
        if rec is None:
            raise UnknownTable(f"no rate table named {name!r}")
        return rec

    def table(self, name: str) -> RateTable:
        with self.store.read() as txn:
            settings = self._require(txn, name)["settings"]
        return RateTable.from_json(settings)

    def info(self, name: str) -> dict[str, Any]:
        with self.store.read() as txn:
            return self._require(txn, name)

    def tables(self) -> list[dict[str, Any]]:
        with self.store.read() as txn:
            return [json.loads(v) for _, v in self._tables.items(txn)]

    def _iter_rows(self, txn: Any, name: str, prefix: str = "") -> Iterator[RateRow]:
        for key, value in self._rows.items(txn, name.encode() + b"\0" + prefix.encode()):
            _, p, profile, eff = split_row_key(key)
            yield RateRow.from_stored(p, profile, eff, decode_stored(value))

    def rows(self, name: str, prefix: str = "", at: int | None = None) -> list[RateRow]:
        """Stored rows of a table (closures included), or with ``at`` the rows in force then."""
        with self.store.read() as txn:
            self._require(txn, name)
            rows = list(self._iter_rows(txn, name, prefix))
        if at is None:
            return rows
        by_key = {(r.prefix, r.profile or "", r.effective_from): r for r in rows}
        windows = effective_windows((r.prefix, r.profile or "", r.effective_from, r.to_stored())
                                    for r in rows)
        return [by_key[item[:3]] for items in windows.values()
                for item, lo, hi in items if lo <= at < hi]

    def versions(self, name: str) -> list[Version]:
        with self.store.read() as txn:
            self._require(txn, name)
            return [Version.from_bytes(value)
                    for _, value in self._versions.items(txn, name.encode() + b"\0")]

    def last_version(self, name: str) -> Version:
        """The version in force (the last one not rolled back)."""
        with self.store.read() as txn:
            rec = self._require(txn, name)
            raw = self._versions.get(txn, _version_key(name, rec["active"][-1]))
            return Version.from_bytes(raw)

    # -- changing

    def _commit_version(self, txn: Any, rec: dict[str, Any] | None, table: RateTable,
                        action: str, changes: list[Change], source: dict[str, Any] | None,
                        rows: Iterable[Item] | None = None) -> tuple[Version, Compiled]:
        """Compile the table as its rows now stand (``rows``, else read from ``txn``) and
        record the version; all in the caller's write transaction."""
        now = int(time.time())
        compiled = self._compile(table, self._items(txn, table.name) if rows is None else rows)
        number = (rec["next_version"] if rec else 1)
        version = Version(table=table.name, version=number, action=action, at=now,
                          before=rec["settings"] if rec else None, after=table.to_json(),
                          changes=changes, source=source)
        self._versions.put(txn, _version_key(table.name, number), version.to_bytes())
        audit.record(self.store, txn, "deck", table.name, action,
                     _audit_state(rec["version"], version.before) if rec else None,
                     {**_audit_state(number, version.after), "changes": version.summary})
        active = ([*rec["active"], number] if rec else [number])
        self._put_record(txn, table, rec, compiled, active=active, next_version=number + 1,
                         updated=now, last=action)
        return version, compiled

    def _put_record(self, txn: Any, table: RateTable, rec: dict[str, Any] | None,
                    compiled: Compiled, *, active: list[int], next_version: int,
                    updated: int, last: str) -> None:
        new = {"settings": table.to_json(), "active": active, "next_version": next_version,
               "version": active[-1] if active else 0,
               "stamp": (rec["stamp"] + 1) if rec else 1,
               "created": rec["created"] if rec else updated, "updated": updated,
               "last_action": last, "prefixes": compiled.prefixes, "rows": compiled.rows,
               "compiled_bytes": len(compiled.blob)}
        self._tables.put(txn, table.name.encode(), json.dumps(new).encode())
        self._compiled.put(txn, table.name.encode(), compiled.blob)

    def _load(self, txn: Any, name: str) -> dict[bytes, bytes]:
        """Every stored row of a table, key -> value, undecoded."""
        return dict(self._rows.items(txn, name.encode() + b"\0"))

    def _items(self, txn: Any, name: str) -> Iterator[Item]:
        for key, value in self._load(txn, name).items():
            _, prefix, profile, eff = split_row_key(key)
            yield prefix, profile, eff, decode_stored(value)

    def _compile(self, table: RateTable, rows: Iterable[Item]) -> Compiled:
        try:
            return compile_rows(table, rows)
        except CompileError as exc:
            raise InvalidArgument(f"table {table.name}: {exc}") from None

    def create(self, name: str, *, currency: str, timezone: str = "UTC",
               rounding: Rounding | None = None, profile_boundary: str = "start") -> Version:
        """A new, empty rate table."""
        table = _new_table(name, currency, timezone, rounding, profile_boundary)

        def apply(txn: Any) -> Version:
            if self._record(txn, name) is not None:
                raise Conflict(f"rate table {name!r} already exists")
            return self._commit_version(txn, None, table, "create", [], None)[0]

        return self.store.write(apply)

    def configure(self, name: str, *, timezone: str | None = None,
                  rounding: Rounding | None = None, profile_boundary: str | None = None,
                  profile: TimeProfile | None = None,
                  drop_profile: str | None = None) -> Version:
        """Change a table's settings or time profiles (a version of its own)."""

        def apply(txn: Any) -> Version:
            rec = self._require(txn, name)
            table = RateTable.from_json(rec["settings"])
            actions = []
            if timezone is not None and timezone != table.timezone:
                zone(timezone)
                table.timezone = timezone
                actions.append(f"timezone {timezone}")
            if rounding is not None and rounding != table.rounding:
                table.rounding = rounding
                actions.append(f"rounding {rounding}")
            if profile_boundary is not None and profile_boundary != table.profile_boundary:
                table = _checked(lambda: dataclasses.replace(
                    table, profile_boundary=profile_boundary))
                actions.append(f"profile boundary {profile_boundary}")
            if profile is not None:
                verb = "changed" if profile.name in table.profiles else "added"
                table.profiles[profile.name] = profile
                actions.append(f"profile {profile.name} {verb}")
            if drop_profile is not None:
                if drop_profile not in table.profiles:
                    raise UnknownProfile(f"table {name} has no profile {drop_profile!r}")
                used = [r.prefix for r in self._iter_rows(txn, name) if r.profile == drop_profile]
                if used:
                    raise Conflict(f"profile {drop_profile} is used by {len(used)} rows "
                                   f"(prefix {used[0]} first)",
                                   hint="import rows without it, or roll back the import "
                                        "that added them")
                del table.profiles[drop_profile]
                actions.append(f"profile {drop_profile} deleted")
            if not actions:
                raise InvalidArgument("nothing to change")
            return self._commit_version(txn, rec, table, "; ".join(actions), [], None)[0]

        return self.store.write(apply)

    def import_file(self, path: str | Path, name: str, *, currency: str | None = None,
                    timezone: str | None = None, rounding: Rounding | None = None,
                    decimals: int | None = None, method: str | None = None,
                    profile_boundary: str | None = None, columns: dict[str, str] | None = None,
                    delimiter: str | None = None, sheet: str | None = None,
                    replace: bool = False, effective: int | str | None = None,
                    on_duplicate: str = "error",
                    progress: Progress | None = None) -> ImportReport:
        """Import a deck file into a table (created if new): atomic, one version."""
        if effective is not None and not replace:
            raise InvalidArgument("an effective date for closing prefixes needs --replace")
        note = progress.note if progress is not None else (lambda _: None)
        with self.store.read() as txn:
            rec = self._record(txn, name)
        if rec is not None:
            table = RateTable.from_json(rec["settings"])
            if currency is not None and currency.upper() != table.currency:
                raise Conflict(f"table {name} is in {table.currency}, not {currency.upper()}",
                               hint="import into a new table for another currency")
            base_rounding = table.rounding
        else:
            table = _new_table(name, (currency or "XXX").upper(), timezone or "UTC", None,
                               profile_boundary or "start")
            base_rounding = table.rounding
        if timezone is not None:
            zone(timezone)
            table.timezone = timezone
        if decimals is not None or method is not None or rounding is not None:
            table.rounding = rounding or _checked(lambda: Rounding(
                base_rounding.decimals if decimals is None else decimals,
                method or base_rounding.method))
        if profile_boundary is not None:
            table = _checked(lambda: dataclasses.replace(table, profile_boundary=profile_boundary))

        with _collector_paused():
            parsed = parse_deck(path, table, columns=columns, delimiter=delimiter, sheet=sheet,
                                on_duplicate=on_duplicate, progress=progress)
        if rec is None:
            cur = (currency or parsed.currency or "").upper()
            if not cur:
                raise InvalidArgument(f"--currency is needed: {name} is a new table and "
                                      f"{path} names no currency")
            table = _checked(lambda: dataclasses.replace(table, currency=cur))
        elif parsed.currency and parsed.currency != table.currency:
            raise Conflict(f"{path} is priced in {parsed.currency}; table {name} is in "
                           f"{table.currency}")
        if isinstance(effective, str):
            effective = parse_instant(effective, zone(table.timezone))
        close_at = effective if effective is not None else (
            parsed.earliest if parsed.earliest is not None else int(time.time()))
        source = {"file": str(path), "rows": len(parsed.rows), "lines": parsed.lines,
                  "replace": replace, "effective": close_at if replace else None}

        def apply(txn: Any) -> ImportReport:
            now_rec = self._record(txn, name)
            if (now_rec or {}).get("stamp") != (rec or {}).get("stamp"):
                raise Conflict(f"table {name} changed while {path} was being read",
                               hint="run the import again")
            note("merging")
            changes, unchanged, rows = self._merge(txn, name, parsed, replace, close_at)
            if not changes and now_rec is not None and now_rec["settings"] == table.to_json():
                # Nothing to change: no version, and open decks have nothing to reload.
                return ImportReport(table=name, version=now_rec["version"],
                                    file_rows=len(parsed.rows), unchanged=unchanged,
                                    summary=Version.empty_summary(),
                                    prefixes=now_rec["prefixes"], rows=now_rec["rows"],
                                    size=now_rec["compiled_bytes"], warnings=parsed.warnings)
            note("compiling")
            version, compiled = self._commit_version(
                txn, now_rec, table, "import" + (" (replace)" if replace else ""), changes,
                source, rows)
            return ImportReport(table=name, version=version.version,
                                file_rows=len(parsed.rows), unchanged=unchanged,
                                summary=version.summary, prefixes=compiled.prefixes,
                                rows=compiled.rows, size=len(compiled.blob),
                                warnings=parsed.warnings, created=now_rec is None)

        with _collector_paused():
            return self.store.write(apply)

    def hold_exactly(self, txn: Any, table: RateTable, rows: Iterable[RateRow], action: str,
                     source: dict[str, Any]) -> tuple[int, bool]:
        """Make ``table`` (created if new) hold ``rows`` and nothing else, in the caller's
        write transaction: its version number, and whether that is a new one (nothing
        changed: none is made)."""
        rec = self._record(txn, table.name)
        if rec is not None and rec["settings"]["currency"] != table.currency:
            raise Conflict(f"table {table.name} is in {rec['settings']['currency']}, "
                           f"not {table.currency}")
        existing = self._load(txn, table.name)
        items = [(r.prefix, r.profile or "", r.effective_from, r.to_stored()) for r in rows]
        fresh = {row_key(table.name, *item[:3]): item for item in items}
        puts, changes, _ = _changed(existing, fresh)
        for key, value in existing.items():
            if key not in fresh:
                _, prefix, profile, eff = split_row_key(key)
                self._rows.delete(txn, key)
                changes.append(Change(prefix, profile, eff, value, None))
        self._rows.putmulti(txn, puts)
        if not changes and rec is not None and rec["settings"] == table.to_json():
            return int(rec["version"]), False
        version = self._commit_version(txn, rec, table, action, changes, source, items)[0]
        return version.version, True

    def _merge(self, txn: Any, name: str, parsed: ParsedDeck, replace: bool,
               close_at: int) -> tuple[list[Change], int, list[Item]]:
        """Write the file's rows over the table's; the changes, the unchanged count, the rows.

        A row listed again reopens its prefix: closures of its series dated at or
        after the row's effective date are removed.
        """
        existing = self._load(txn, name)
        fresh = {row_key(name, item[0], item[1], item[2]): item for item in parsed.rows}
        changes: list[Change] = []
        # Where each series (prefix and profile) of the file starts.
        start_of: dict[tuple[str, str], int] = {}
        for prefix, profile, eff, _ in parsed.rows:
            e = NEVER if eff is None else eff
            start_of[(prefix, profile)] = min(e, start_of.get((prefix, profile), e))
        deleted: set[bytes] = set()
        for key, value in existing.items():
            if key in fresh or not is_closed(value):
                continue
            _, prefix, profile, eff = split_row_key(key)
            start = start_of.get((prefix, profile))
            if start is not None and (NEVER if eff is None else eff) >= start:
                deleted.add(key)
                changes.append(Change(prefix, profile, eff, value, None))
        puts, written, unchanged = _changed(existing, fresh)
        changes += written
        if replace:
            deleted |= self._close_unlisted(name, parsed, close_at, existing, fresh, changes,
                                            puts)
        self._rows.putmulti(txn, puts)
        for key in deleted:
            self._rows.delete(txn, key)
        rows = list(fresh.values())
        for key, value in existing.items():
            if key not in fresh and key not in deleted:
                _, prefix, profile, eff = split_row_key(key)
                rows.append((prefix, profile, eff, decode_stored(value)))
        return changes, unchanged, rows

    def _close_unlisted(self, name: str, parsed: ParsedDeck, close_at: int,
                        existing: dict[bytes, bytes], fresh: dict[bytes, Item],
                        changes: list[Change], puts: list[tuple[bytes, bytes]]) -> set[bytes]:
        """For ``replace``: close, from ``close_at``, each prefix and profile the file does not
        list; their rows dated after that are removed (the keys returned)."""
        listed = {(item[0], item[1]) for item in parsed.rows}
        series: dict[tuple[str, str], list[tuple[int | None, bytes, bytes]]] = {}
        for key, value in existing.items():    # in key order: by effective date in a series
            _, prefix, profile, eff = split_row_key(key)
            if (prefix, profile) not in listed:
                series.setdefault((prefix, profile), []).append((eff, key, value))
        closure = RateRow(prefix="", closed=True).to_stored()
        raw = encode_stored(closure)
        removed: set[bytes] = set()
        for (prefix, profile), items in series.items():
            in_force: tuple[int | None, bytes] | None = None
            for eff, key, value in items:
                if eff is not None and eff > close_at:
                    removed.add(key)
                    changes.append(Change(prefix, profile, eff, value, None))
                else:
                    in_force = (eff, value)
            if in_force is None:
                continue
            eff, value = in_force
            st = decode_stored(value)
            if st[0] or (st[9] is not None and st[9] <= close_at):
                continue
            key = row_key(name, prefix, profile, close_at)
            puts.append((key, raw))
            fresh[key] = (prefix, profile, close_at, closure)
            changes.append(Change(prefix, profile, close_at,
                                  value if eff == close_at else None, raw))
        return removed

    def rollback(self, name: str) -> Version:
        """Undo the table's last version; returns what was undone."""

        def apply(txn: Any) -> Version:
            rec = self._require(txn, name)
            # A table always has a version: rolling back the first one removes the table.
            number = rec["active"][-1]
            version = Version.from_bytes(self._versions.get(txn, _version_key(name, number)))
            for c in reversed(version.changes):
                key = row_key(name, c.prefix, c.profile, c.effective_from)
                if c.before is None:
                    self._rows.delete(txn, key)
                else:
                    self._rows.put(txn, key, c.before)
            if version.before is None:
                # The version created the table: nothing of it remains.
                for key in [k for k, _ in self._versions.items(txn, name.encode() + b"\0")]:
                    self._versions.delete(txn, key)
                self._tables.delete(txn, name.encode())
                self._compiled.delete(txn, name.encode())
                audit.record(self.store, txn, "deck", name, f"rollback of version {number}",
                             _audit_state(number, version.after), None)
                return version
            version.rolled_back = int(time.time())
            self._versions.put(txn, _version_key(name, number), version.to_bytes())
            table = RateTable.from_json(version.before)
            compiled = self._compile(table, self._items(txn, name))
            audit.record(self.store, txn, "deck", name, f"rollback of version {number}",
                         _audit_state(number, version.after),
                         _audit_state(rec["active"][-2], version.before))
            self._put_record(txn, table, rec, compiled, active=rec["active"][:-1],
                             next_version=rec["next_version"], updated=version.rolled_back,
                             last=f"rollback of version {number}")
            return version

        return self.store.write(apply)


def _audit_state(version: int, settings: dict[str, Any] | None) -> dict[str, Any]:
    """What the audit log keeps of a table: its version and settings (rows are in versions)."""
    return {"version": version, "settings": settings}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building hundreds of thousands of rows.

    Each collection would rescan every container built so far, which makes a
    large import several times slower; nothing built here forms a cycle.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _checked(make: Callable[[], T]) -> T:
    """Build a settings object, turning a ValueError into an InvalidArgument."""
    try:
        return make()
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _new_table(name: str, currency: str, timezone: str, rounding: Rounding | None,
               profile_boundary: str) -> RateTable:
    zone(timezone)
    return _checked(lambda: RateTable(name=name, currency=currency.upper(), timezone=timezone,
                                      rounding=rounding or Rounding(),
                                      profile_boundary=profile_boundary))


def _changed(existing: dict[bytes, bytes], fresh: dict[bytes, Item]
             ) -> tuple[list[tuple[bytes, bytes]], list[Change], int]:
    """The rows of ``fresh`` (by key) that ``existing`` does not hold as they are: what to
    write, the changes that makes, and how many were unchanged."""
    puts: list[tuple[bytes, bytes]] = []
    changes: list[Change] = []
    for key, (prefix, profile, eff, st) in fresh.items():
        value = encode_stored(st)
        old = existing.get(key)
        if old != value:
            puts.append((key, value))
            changes.append(Change(prefix, profile, eff, old, value))
    return puts, changes, len(fresh) - len(puts)
