"""NAS entries: the switches and gateways allowed to send RADIUS, and their secrets.

Entries live in the store (``rater nas add|list|delete``, audited) and in the
``[[nas]]`` tables of the serve config; an address in both is an error. A packet's
source address picks the entry of the longest block holding it.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict
from typing import Any, NamedTuple

from . import audit
from .errors import ConfigError, InvalidArgument, UnknownNas
from .settings import NasEntry, Settings, _check_codes, nas_network, nas_secret
from .store import Store


def add(store: Store, address: str, secret: str, name: str = "",
        return_codes: dict[str, int] | None = None) -> NasEntry:
    try:
        entry = NasEntry(nas_network(address), nas_secret(secret), name,
                         dict(return_codes or {}))
        _check_codes(entry.return_codes, "return codes")
    except ConfigError as exc:
        raise InvalidArgument(exc.message) from None

    def apply(txn: Any) -> None:
        key = entry.network.encode()
        if store.nas.get(txn, key) is not None:
            raise InvalidArgument(f"NAS {entry.network} exists",
                                  hint="delete it first to change its secret")
        store.nas.put(txn, key, json.dumps(asdict(entry)).encode())
        _bump(store, txn)
        audit.record(store, txn, "nas", entry.network, "add", None, shown(entry))

    store.write(apply)
    return entry


def delete(store: Store, address: str) -> NasEntry:
    try:
        network = nas_network(address)
    except ConfigError as exc:
        raise InvalidArgument(exc.message) from None

    def apply(txn: Any) -> NasEntry:
        raw = store.nas.get(txn, network.encode())
        if raw is None:
            raise UnknownNas(f"no NAS {network}", hint="rater nas list")
        entry = NasEntry(**json.loads(raw))
        store.nas.delete(txn, network.encode())
        _bump(store, txn)
        audit.record(store, txn, "nas", network, "delete", shown(entry), None)
        return entry

    result: NasEntry = store.write(apply)
    return result


def _bump(store: Store, txn: Any) -> None:
    raw = store.meta.get(txn, b"nas-generation")
    store.meta.put(txn, b"nas-generation", str(int(raw or 0) + 1).encode())


def nas_generation(store: Store) -> int:
    """A number that changes with every change to the stored NAS entries."""
    with store.read() as txn:
        return int(store.meta.get(txn, b"nas-generation") or 0)


def stored(store: Store) -> list[NasEntry]:
    with store.read() as txn:
        return [NasEntry(**json.loads(raw)) for _, raw in store.nas.items(txn)]


def shown(entry: NasEntry) -> dict[str, Any]:
    """An entry for people and the audit log: the secret is not shown."""
    d = asdict(entry)
    d["secret"] = "*" * 8
    return d


class Nas(NamedTuple):
    """A NAS entry as the agent uses it, worked out once per table: its secret as bytes,
    and the h323-return-code of each outcome (its own over the config's), as text."""

    secret: bytes
    codes: dict[str, str]


class NasTable:
    """The entries of the store and the config, found by a packet's source address."""

    def __init__(self, entries: list[NasEntry], return_codes: dict[str, int]) -> None:
        self._nets = sorted(
            ((ipaddress.ip_network(e.network),
              Nas(e.secret.encode(),
                  {k: str(v) for k, v in {**return_codes, **e.return_codes}.items()}))
             for e in entries),
            key=lambda x: -x[0].prefixlen)
        self._cache: dict[str, Nas | None] = {}

    @classmethod
    def of(cls, store: Store, settings: Settings) -> NasTable:
        """The stored entries and the config's, with the config's return codes."""
        configured, return_codes = settings.nas, settings.return_codes
        mine = stored(store)
        both = {e.network for e in mine} & {e.network for e in configured}
        if both:
            raise ConfigError(f"NAS {sorted(both)[0]} is both in the config and in the store",
                              hint="keep one of them")
        return cls([*mine, *configured], return_codes)

    def __len__(self) -> int:
        return len(self._nets)

    def find(self, address: str) -> Nas | None:
        try:
            return self._cache[address]
        except KeyError:
            pass
        found = None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is not None:
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            for net, entry in self._nets:
                if ip.version == net.version and ip in net:
                    found = entry
                    break
        if len(self._cache) < 65536:
            self._cache[address] = found
        return found
