"""Seeded billing data: clients with accounts, and CDRs that name those accounts.

    populate(store, table, clients=1000, per_client=10)   # 10,000 accounts
    write_billing_cdrs(path, prefixes, n, accounts=10_000)

Account ``k`` is recognised by the address ``10.(k>>16).(k>>8 & 255).(k & 255)``
when ``k`` is even and by the username ``user{k}`` when it is odd, so both
matching paths are exercised.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from deckgen import calls

from rater.clients import Client, Registry
from rater.store import Store


def account_ip(k: int) -> str:
    return f"10.{k >> 16}.{(k >> 8) & 255}.{k & 255}"


def populate(store: Store, table: str, currency: str = "USD", clients: int = 1000,
             per_client: int = 10) -> None:
    """``clients`` postpaid clients on ``table``, each with ``per_client`` accounts."""
    reg = Registry(store)

    def apply(txn: object) -> None:
        k = 0
        for c in range(clients):
            client = reg.add_client(Client(id=0, name=f"client{c:05d}", currency=currency,
                                           mode="postpaid", rate_tables=[[None, table]]), txn)
            for _ in range(per_client):
                if k % 2 == 0:
                    reg.add_account(client.name, ip=account_ip(k), txn=txn)
                else:
                    reg.add_account(client.name, username=f"user{k}", txn=txn)
                k += 1

    store.write(apply)


def write_billing_cdrs(path: Path, prefixes: list[str], n: int, accounts: int = 10_000,
                       seed: int = 11) -> None:
    """n canonical CDRs with an ip or username column naming one of ``accounts``."""
    import numpy as np

    numbers, starts, durations = calls(prefixes, n, seed)
    who = np.random.default_rng(seed).integers(0, accounts, n).tolist()
    with open(path, "w") as f:
        f.write("id,start,number,duration,ip,username\n")
        for i, (num, st, du, k) in enumerate(zip(numbers.tolist(), starts.tolist(),
                                                 durations.tolist(), who, strict=True)):
            when = dt.datetime.fromtimestamp(st, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            ident = f"{account_ip(k)}," if k % 2 == 0 else f",user{k}"
            f.write(f"c{i},{when},{num},{du},{ident}\n")
