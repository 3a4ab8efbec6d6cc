"""The management services of the gRPC agent: ``rater.v1.DeckService`` and
``rater.v1.ClientService``, over the same Python APIs as the ``rater`` commands
(:class:`rater.decks.Decks`, :class:`rater.clients.Registry`,
:class:`rater.journal.Journal`). Errors map to statuses through
:data:`rater.rpc.STATUS` (:func:`rater.rpc.answer`).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from .clients import Account, Client, Registry, parse_amount, show_amount
from .decks import Decks
from .errors import InvalidArgument
from .journal import Journal
from .rpc import answer
from .store import Store
from .tariff import RateRow, describe_tiers
from .timeutil import format_instant, zone
from .v1 import manage_pb2, manage_pb2_grpc

#: The largest deck file DeckService.Import takes.
MAX_DECK_BYTES = 1 << 30


def _when(t: int | None, tz: Any) -> str:
    return "" if t is None else format_instant(t, tz)


def _row(row: RateRow, tz: Any) -> Any:
    return manage_pb2.RateRowInfo(
        prefix=row.prefix, destination=row.destination, profile=row.profile or "",
        price="closed" if row.closed else describe_tiers(row),
        connect_fee="" if row.closed or not row.connect_fee else str(row.connect_fee),
        effective_from=_when(row.effective_from, tz), effective_to=_when(row.effective_to, tz))


class DeckService(manage_pb2_grpc.DeckServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    def Import(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            first = None
            size = 0
            fd, name = tempfile.mkstemp(prefix="rater-deck-")
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in request_iterator:
                        if first is None:
                            first = chunk
                        size += len(chunk.data)
                        if size > MAX_DECK_BYTES:
                            raise InvalidArgument(f"data: more than {MAX_DECK_BYTES} bytes")
                        out.write(chunk.data)
                if first is None or not first.table:
                    raise InvalidArgument("table: empty (the first chunk names it)")
                suffix = Path(first.filename).suffix.lower() or ".csv"
                path = Path(name).with_suffix(suffix)
                os.replace(name, path)
                name = str(path)
                report = Decks(self.store).import_file(
                    path, first.table, currency=first.currency or None,
                    timezone=first.timezone or None, replace=first.replace)
            finally:
                Path(name).unlink(missing_ok=True)
            return manage_pb2.DeckImportReply(
                table=report.table, version=report.version, file_rows=report.file_rows,
                unchanged=report.unchanged, summary=report.summary, rows=report.rows,
                warnings=report.warnings, created=report.created)

        return answer(context, work)

    def _info(self, decks: Decks, name: str) -> Any:
        info = decks.info(name)
        table = decks.table(name)
        return manage_pb2.TableInfo(name=table.name, currency=table.currency,
                                    timezone=table.timezone, version=info["version"],
                                    prefixes=info["prefixes"])

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            decks = Decks(self.store)
            return manage_pb2.ListTablesReply(tables=[
                self._info(decks, t["settings"]["name"]) for t in decks.tables()])

        return answer(context, work)

    def Show(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.table:
                raise InvalidArgument("table: empty")
            if request.limit < 0:
                raise InvalidArgument("limit: negative")
            decks = Decks(self.store)
            tz = zone(decks.table(request.table).timezone)
            at = request.at.seconds if request.HasField("at") else None
            rows = decks.rows(request.table, prefix=request.prefix, at=at)
            shown = rows[:request.limit] if request.limit else rows
            return manage_pb2.ShowTableReply(table=self._info(decks, request.table),
                                             rows=[_row(r, tz) for r in shown],
                                             total=len(rows))

        return answer(context, work)

    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.table:
                raise InvalidArgument("table: empty")
            decks = Decks(self.store)
            version = decks.last_version(request.table)
            tz = zone(decks.table(request.table).timezone)
            changes = []
            for c in version.changes[:request.limit or None]:
                before, after = c.rows()
                changes.append(manage_pb2.RowChange(
                    kind=c.kind, before=None if before is None else _row(before, tz),
                    after=None if after is None else _row(after, tz)))
            return manage_pb2.DiffReply(table=version.table, version=version.version,
                                        action=version.action, summary=version.summary,
                                        changes=changes)

        return answer(context, work)

    def Rollback(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.table:
                raise InvalidArgument("table: empty")
            decks = Decks(self.store)
            undone = decks.rollback(request.table)
            now = {t["settings"]["name"]: t["version"] for t in decks.tables()}
            return manage_pb2.RollbackReply(table=request.table, undone=undone.version,
                                            version=now.get(request.table, 0))

        return answer(context, work)


def _client(c: Client) -> Any:
    return manage_pb2.ClientInfo(
        name=c.name, currency=c.currency, mode=c.mode, credit_limit=show_amount(c.credit_limit),
        rate_table=c.only_table() or "", timezone=c.timezone, status=c.status,
        max_call_length=c.max_call_length, capacity=c.capacity or 0)


def _account(a: Account, client: str) -> Any:
    return manage_pb2.AccountInfo(id=a.id, client=client, ip=a.ip or "",
                                  username=a.username or "", ani=a.ani or "",
                                  tech_prefix=a.tech_prefix or "",
                                  rate_table=a.rate_table or "")


class ClientService(manage_pb2_grpc.ClientServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    def AddClient(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.name:
                raise InvalidArgument("name: empty")
            if not request.currency:
                raise InvalidArgument("currency: empty")
            client = Client(
                id=0, name=request.name, currency=request.currency,
                mode=request.mode or "prepaid", timezone=request.timezone or "UTC",
                credit_limit=parse_amount(request.credit_limit or "0", "credit_limit"),
                rate_tables=[[None, request.rate_table]] if request.rate_table else [],
                capacity=request.capacity or None,
                **({"max_call_length": request.max_call_length}
                   if request.max_call_length else {}))
            return _client(Registry(self.store).add_client(client))

        return answer(context, work)

    def GetClient(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, lambda: _client(Registry(self.store).client(request.name)))

    def ListClients(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            found = Registry(self.store).clients(status=request.status or None)
            if not request.status:
                found = [c for c in found if c.status != "deleted"]
            return manage_pb2.ListClientsReply(clients=[_client(c) for c in found])

        return answer(context, work)

    def EditClient(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.name:
                raise InvalidArgument("name: empty")
            reg = Registry(self.store)
            old = reg.client(request.name)
            changes: dict[str, Any] = {}
            for field in ("mode", "status", "timezone", "max_call_length"):
                if request.HasField(field):
                    changes[field] = getattr(request, field)
            if request.HasField("new_name"):
                changes["name"] = request.new_name
            if request.HasField("credit_limit"):
                changes["credit_limit"] = parse_amount(request.credit_limit, "credit_limit")
            if request.HasField("capacity"):
                changes["capacity"] = request.capacity or None
            if request.HasField("rate_table"):
                # From now on: the calls before keep the tables they had.
                now = int(time.time())
                kept = [[at, t] for at, t in old.rate_tables if at is None or at < now]
                changes["rate_tables"] = ([*kept, [now, request.rate_table]]
                                          if request.rate_table else [])
            return _client(reg.edit_client(request.name, **changes))

        return answer(context, work)

    def DeleteClient(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, lambda: _client(Registry(self.store).delete_client(
            request.name)))

    def DeleteAccount(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            reg = Registry(self.store)
            a = reg.delete_account(request.id)
            with self.store.read() as txn:
                owner = reg.client_by_id(txn, a.client).name
            return _account(a, owner)

        return answer(context, work)

    def AddAccount(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.client:
                raise InvalidArgument("client: empty")
            a = Registry(self.store).add_account(
                request.client, ip=request.ip or None, username=request.username or None,
                ani=request.ani or None, tech_prefix=request.tech_prefix or None,
                rate_table=request.rate_table or None)
            return _account(a, request.client)

        return answer(context, work)

    def ListAccounts(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            reg = Registry(self.store)
            names = {c.id: c.name for c in reg.clients()}
            return manage_pb2.ListAccountsReply(accounts=[
                _account(a, names.get(a.client, str(a.client)))
                for a in reg.accounts(request.name or None)])

        return answer(context, work)

    def GetBalance(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            b = Journal(self.store).balance(request.name)
            return manage_pb2.BalanceReply(
                client=b.client, currency=b.currency, live=show_amount(b.live),
                fixed=show_amount(b.fixed),
                available="" if b.available is None else show_amount(b.available))

        return answer(context, work)

    def PostTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work() -> Any:
            if not request.client:
                raise InvalidArgument("client: empty")
            result = Journal(self.store).post(
                request.client, request.type, request.amount or None,
                key=request.key or None, ref=request.ref or None, note=request.note or None,
                currency=request.currency or None)
            live, fixed = result.balance
            return manage_pb2.TransactionReply(entry=result.entry.number,
                                               duplicate=result.duplicate,
                                               live=show_amount(live), fixed=show_amount(fixed))

        return answer(context, work)
