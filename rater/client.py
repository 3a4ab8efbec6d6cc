"""A small Python client of ``rater serve``'s gRPC agent, over the generated stubs.

    from rater.client import RaterClient

    with RaterClient("127.0.0.1:50051") as rater:
        call = rater.rate("retail", "447911123456", 61)
        print(call.cost, call.currency, call.destination)      # Decimal('0.0203') ...
        grant = rater.authorize("10.0.0.1", "alice", "447911123456", session_id="c-1")
        rater.start_call("10.0.0.1", "alice", "447911123456", session_id="c-1")
        rater.stop_call("10.0.0.1", "alice", "447911123456", session_id="c-1", seconds=61)

Errors come as :class:`grpc.RpcError` with the status of ``rater.rpc.STATUS``
(an unknown table: NOT_FOUND; an empty number: INVALID_ARGUMENT naming it).
With ``root_certificates`` (PEM bytes) the channel uses TLS; ``token`` is sent as
``authorization: Bearer TOKEN`` when the service asks for one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from .v1 import rating_pb2, rating_pb2_grpc


@dataclass(frozen=True)
class RatedCall:
    cost: Decimal
    currency: str
    prefix: str
    destination: str
    billed_seconds: int
    table: str


@dataclass(frozen=True)
class Grant:
    seconds: int
    #: What the client may spend; None for postpaid.
    credit: Decimal | None
    currency: str
    prepaid: bool


class RaterClient:
    def __init__(self, address: str = "127.0.0.1:50051", *, timeout: float = 5.0,
                 root_certificates: bytes | None = None, token: str | None = None) -> None:
        self.timeout = timeout
        #: Sent with every call when the service asks for a bearer token.
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if root_certificates is None:
            self.channel = grpc.insecure_channel(address)
        else:
            self.channel = grpc.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=root_certificates))
        self.stub = rating_pb2_grpc.RatingServiceStub(  # type: ignore[no-untyped-call]
            self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RaterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rate(self, table: str, number: str, seconds: int, start: int | None = None,
             tech_prefix: str = "") -> RatedCall:
        """The price of one call (``start``: UNIX seconds; None: now)."""
        request = rating_pb2.RateRequest(table=table, number=number, duration_seconds=seconds,
                                         tech_prefix=tech_prefix)
        if start is not None:
            request.start.CopyFrom(Timestamp(seconds=start))
        r = self.stub.Rate(request, timeout=self.timeout, metadata=self.metadata)
        return RatedCall(Decimal(r.cost), r.currency, r.prefix, r.destination,
                         r.billed_seconds, r.table)

    def rate_batches(self, table: str,
                     batches: Iterable[tuple[list[str], list[int], list[int]]]
                     ) -> Iterator[Any]:
        """Each batch of (numbers, starts, durations) rated in one stream; the replies
        (``cost_nanos``, ``billed_seconds``, ``prefix_lengths``, ``destinations`` into
        ``destination_names``), in order."""
        requests = (rating_pb2.RateBatch(table=table, numbers=n, starts=s, durations=d,
                                         batch_id=k)
                    for k, (n, s, d) in enumerate(batches))
        yield from self.stub.RateStream(requests, metadata=self.metadata)

    def authorize(self, nas: str, username: str, called: str, *, calling: str = "",
                  session_id: str = "", password: str = "") -> Grant:
        """Whether a call may go through and for how long (a reject: RpcError)."""
        r = self.stub.Authorize(rating_pb2.AuthorizeRequest(
            nas=nas, username=username, password=password, calling=calling, called=called,
            session_id=session_id), timeout=self.timeout, metadata=self.metadata)
        return Grant(r.seconds, Decimal(r.credit) if r.credit else None, r.currency,
                     r.prepaid)

    def start_call(self, nas: str, username: str, called: str, *, session_id: str,
                   calling: str = "") -> str:
        return str(self.stub.StartCall(rating_pb2.CallEvent(
            nas=nas, username=username, calling=calling, called=called,
            session_id=session_id), timeout=self.timeout, metadata=self.metadata).outcome)

    def stop_call(self, nas: str, username: str, called: str, *, session_id: str,
                  seconds: int, end: int | None = None, calling: str = "") -> str:
        """Bill the call (once per nas and session_id); what was done."""
        event = rating_pb2.CallEvent(nas=nas, username=username, calling=calling,
                                     called=called, session_id=session_id,
                                     duration_seconds=seconds)
        if end is not None:
            event.end.CopyFrom(Timestamp(seconds=end))
        return str(self.stub.StopCall(event, timeout=self.timeout, metadata=self.metadata).outcome)
