"""The gRPC agent of ``rater serve``: ``rater.v1.RatingService``, health and reflection.

Each worker process serves gRPC on the same port (SO_REUSEPORT, as RADIUS),
from its own threads, with its own LMDB environment. The standard health
service says SERVING once the store is open and the server listens, and
NOT_SERVING first when the worker stops (then calls in flight get
``grpc.grace_seconds`` to finish).

Errors map to status codes through :data:`STATUS`, one entry per error code
rater has; a test checks it is complete. A known failure is never UNKNOWN.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from .clients import Registry
from .engine import Deck
from .errors import InvalidArgument, NoRate, RaterError, UnknownTable
from .radius.control import START, STOP, Call, CallControl, Decision
from .store import GroupSync, Store
from .v1 import manage_pb2, manage_pb2_grpc, rating_pb2, rating_pb2_grpc

Code = grpc.StatusCode
T = TypeVar("T")

#: The gRPC status of each rater error code.
STATUS: dict[str, grpc.StatusCode] = {
    "RATER_ERROR": Code.INTERNAL,
    "INVALID_ARGUMENT": Code.INVALID_ARGUMENT,
    "INVALID_NUMBER": Code.INVALID_ARGUMENT,
    "INVALID_INSTANT": Code.INVALID_ARGUMENT,
    "BAD_INPUT_FILE": Code.INVALID_ARGUMENT,
    "BAD_DECK_FILE": Code.INVALID_ARGUMENT,
    "BAD_CDR_FILE": Code.INVALID_ARGUMENT,
    "BAD_TARIFF_PLAN": Code.INVALID_ARGUMENT,
    "UNKNOWN_TABLE": Code.NOT_FOUND,
    "UNKNOWN_PROFILE": Code.NOT_FOUND,
    "UNKNOWN_CLIENT": Code.NOT_FOUND,
    "UNKNOWN_ACCOUNT": Code.NOT_FOUND,
    "UNKNOWN_NAS": Code.NOT_FOUND,
    "NO_RATE": Code.NOT_FOUND,
    "UNAUTHORIZED_DESTINATION": Code.NOT_FOUND,
    "RATING_PLAN_NOT_FOUND": Code.NOT_FOUND,
    "CONFLICT": Code.ALREADY_EXISTS,
    "REFUSED": Code.FAILED_PRECONDITION,
    "CHECK_FAILED": Code.FAILED_PRECONDITION,
    "INVOICE": Code.FAILED_PRECONDITION,
    "RENDER": Code.UNAVAILABLE,
    "BAD_CONFIG": Code.FAILED_PRECONDITION,
    "FILE_ERROR": Code.FAILED_PRECONDITION,
    "STORE_ERROR": Code.UNAVAILABLE,
    "STORE_FULL": Code.RESOURCE_EXHAUSTED,
    "BAD_DECK_FORMAT": Code.DATA_LOSS,
}
#: The gRPC status of each reject of Authorize (an accepted call is a reply).
REJECTS: dict[str, grpc.StatusCode] = {
    "unknown_account": Code.NOT_FOUND,
    "no_rate": Code.NOT_FOUND,
    "bad_password": Code.UNAUTHENTICATED,
    "client_blocked": Code.FAILED_PRECONDITION,
    "no_balance": Code.FAILED_PRECONDITION,
    "call_ended": Code.FAILED_PRECONDITION,
    "capacity": Code.RESOURCE_EXHAUSTED,
}
SERVICES = (rating_pb2.DESCRIPTOR.services_by_name["RatingService"].full_name,
            manage_pb2.DESCRIPTOR.services_by_name["DeckService"].full_name,
            manage_pb2.DESCRIPTOR.services_by_name["ClientService"].full_name)
#: Seconds between renewals of the open decks' snapshots (new versions are seen then).
RENEW_EVERY = 0.5


def answer(context: grpc.ServicerContext, work: Callable[[], T]) -> T:
    """What ``work`` returns; a RaterError it raises ends the call (:func:`abort`)."""
    try:
        return work()
    except RaterError as exc:
        abort(context, exc)
        raise                   # abort raises; this keeps the type checker sure of it


def abort(context: grpc.ServicerContext, exc: RaterError) -> None:
    """End the call with the error's status, its message, and as details (google.rpc)
    an ErrorInfo (reason: the rater error code; domain: rater) and, for a field at
    fault ("field: what is wrong"), a BadRequest naming it."""
    code = STATUS.get(exc.code, Code.INTERNAL)
    info = error_details_pb2.ErrorInfo(reason=exc.code, domain="rater")
    if exc.hint:
        info.metadata["hint"] = exc.hint
    details = [info]
    field, sep, what = exc.message.partition(": ")
    if code == Code.INVALID_ARGUMENT and sep and field.replace("_", "").isalnum():
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=what)]))
    packed = []
    for d in details:
        holder = any_pb2.Any()
        holder.Pack(d)
        packed.append(holder)
    context.abort_with_status(rpc_status.to_status(status_pb2.Status(
        code=code.value[0], message=exc.message, details=packed)))


class _Decks:
    """The decks a worker has opened, shared by its gRPC threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._decks: dict[str, Deck] = {}
        self._lock = threading.Lock()
        self._renewed = time.monotonic()

    def get(self, table: str) -> Deck:
        with self._lock:
            if time.monotonic() - self._renewed >= RENEW_EVERY:
                self._renewed = time.monotonic()
                for name, deck in list(self._decks.items()):
                    try:
                        deck.refresh(renew=True)
                    except UnknownTable:
                        deck.close()
                        del self._decks[name]
            found = self._decks.get(table)
            if found is None:
                found = self._decks[table] = Deck(self.store, table)
            return found

    def close(self) -> None:
        with self._lock:
            for deck in self._decks.values():
                deck.close()
            self._decks.clear()


class RatingService(rating_pb2_grpc.RatingServiceServicer):
    """``control``: the worker's call control, shared with its RADIUS agent under
    ``lock`` (None: Authorize and the accounting calls are not served); ``group``: the
    worker's group sync, when its store commits without one (an accounting call is
    answered once its commit is on disk)."""

    def __init__(self, store: Store, control: CallControl | None = None,
                 lock: threading.Lock | None = None, metrics: Any = None,
                 group: GroupSync | None = None) -> None:
        self.decks = _Decks(store)
        self.control = control
        self.lock = lock or threading.Lock()
        self.metrics = metrics
        self.group = group

    def _deck(self, table: str) -> Deck:
        if not table:
            raise InvalidArgument("table: empty")
        return self.decks.get(table)

    def Rate(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, lambda: self._rate(request))

    def _rate(self, request: Any) -> Any:
        if not request.number.strip():
            raise InvalidArgument("number: empty")
        if request.duration_seconds < 0:
            raise InvalidArgument("duration_seconds: negative")
        start = request.start.seconds if request.HasField("start") else None
        table = request.table
        if request.client:
            if table:
                raise InvalidArgument("client: give a table or a client, not both")
            client = Registry(self.decks.store).client(request.client)
            found = client.rate_table_at(int(time.time()) if start is None else start)
            if found is None:
                raise NoRate(f"client {client.name} has no rate table at that time")
            table = found
        deck = self._deck(table)
        try:
            rated = deck.rate(request.number, start, request.duration_seconds,
                              request.tech_prefix)
        except InvalidArgument as exc:
            if exc.code == "INVALID_NUMBER":
                raise InvalidArgument(f"number: {exc.message}") from None
            raise
        return rating_pb2.RateReply(cost=str(rated.cost), currency=rated.currency,
                                    prefix=rated.prefix, destination=rated.destination,
                                    billed_seconds=rated.billed_seconds,
                                    table=rated.table)

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        def decide() -> Decision:
            call = self._call(request, password=request.password or None)
            with self.lock:
                return self._control().authorize(call)

        d = answer(context, decide)
        if self.metrics is not None:
            self.metrics.authorizations.labels(d.outcome).inc()
        if not d.accepted:
            context.abort(REJECTS[d.outcome], f"{d.outcome}: {d.message}")
        return rating_pb2.AuthorizeReply(seconds=d.seconds, credit=d.credit_text(),
                                         currency=d.currency, prepaid=d.prepaid)

    def StartCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._account(request, context, START)

    def StopCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._account(request, context, STOP)

    def _control(self) -> CallControl:
        if self.control is None:
            raise RaterError("call control is not served here")
        return self.control

    def _call(self, request: Any, password: str | None = None) -> Call:
        if not request.nas:
            raise InvalidArgument("nas: empty")
        return Call(nas=request.nas, user_name=request.username, password=password,
                    calling=request.calling, called=request.called,
                    session_id=request.session_id)

    def _account(self, request: Any, context: grpc.ServicerContext, status: int) -> Any:
        def record() -> str:
            call = self._call(request)
            if not request.session_id:
                raise InvalidArgument("session_id: empty")
            if request.duration_seconds < 0:
                raise InvalidArgument("duration_seconds: negative")
            end = request.end.seconds if request.HasField("end") else int(time.time())
            answered = request.answered.seconds if request.HasField("answered") else None
            with self.lock:
                return self._control().account(call, status, request.duration_seconds,
                                               end, answered)

        outcome = answer(context, record)
        group = self.group
        if group is not None:
            made = time.monotonic()
            answer(context, lambda: group.wait(made))
        if self.metrics is not None:
            self.metrics.accounting.labels(outcome).inc()
        return rating_pb2.CallEventReply(outcome=outcome)

    def RateStream(self, request_iterator: Iterator[Any],
                   context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            for batch in request_iterator:
                yield self._rate_batch(batch)
        except RaterError as exc:
            abort(context, exc)

    def _rate_batch(self, batch: Any) -> Any:
        n = len(batch.numbers)
        if len(batch.starts) != n or len(batch.durations) != n:
            raise InvalidArgument(f"batch {batch.batch_id}: {n} numbers, {len(batch.starts)} "
                                  f"starts and {len(batch.durations)} durations")
        deck = self._deck(batch.table)
        numbers = np.array([s.encode() for s in batch.numbers], dtype="S")
        starts = np.fromiter(batch.starts, np.int64, n)
        durations = np.fromiter(batch.durations, np.int64, n)
        if n and int(durations.min()) < 0:
            raise InvalidArgument(f"batch {batch.batch_id}: durations: a negative duration")
        result = deck.rate_batch(numbers, starts, durations)
        names, dest_of, _ = deck.row_facts()
        rows = result.row
        found = rows >= 0
        used = np.unique(dest_of[rows[found]])
        index = np.full(len(names), -1, np.int32)
        index[used] = np.arange(len(used), dtype=np.int32)
        destinations = np.full(n, -1, np.int32)
        destinations[found] = index[dest_of[rows[found]]]
        return rating_pb2.RateBatchReply(
            batch_id=batch.batch_id, currency=deck.currency,
            cost_nanos=result.cost_nanos.tolist(),
            billed_seconds=result.billed_seconds.tolist(),
            prefix_lengths=result.prefix_len.tolist(), destinations=destinations.tolist(),
            destination_names=[names[i] for i in used.tolist()])


class _BearerToken(grpc.ServerInterceptor):  # type: ignore[misc]
    """Calls other than health and reflection must carry ``authorization: Bearer TOKEN``."""

    OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}"

    @staticmethod
    def _refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(Code.UNAUTHENTICATED, "a bearer token is needed (authorization metadata)")

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        if details.method.startswith(self.OPEN):
            return continuation(details)
        given = dict(details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(given.encode(), self._expected.encode()):
            return continuation(details)
        handler = continuation(details)
        # The refusal takes the method's shape, so the caller reads the status it expects.
        if handler is not None and handler.request_streaming:
            if handler.response_streaming:
                return grpc.stream_stream_rpc_method_handler(self._refuse)
            return grpc.stream_unary_rpc_method_handler(self._refuse)
        return grpc.unary_unary_rpc_method_handler(self._refuse)


class _Measured(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts each call, by method, in the worker's metrics: requests, latency, and
    errors by status."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics

    def _done(self, method: str, began: float, context: Any) -> None:
        m = self.metrics
        m.requests.labels("grpc", method).inc()
        m.latency.labels("grpc", method).observe(time.perf_counter() - began)
        code = context.code()
        if code is not None and code != Code.OK:
            m.errors.labels(code.name).inc()

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(_BearerToken.OPEN):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        kwargs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}

        def timed(behaviour: Any) -> Any:
            def call(request: Any, context: Any) -> Any:
                began = time.perf_counter()
                try:
                    return behaviour(request, context)
                finally:
                    self._done(method, began, context)
            return call

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(timed(handler.unary_unary), **kwargs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(timed(handler.stream_unary), **kwargs)
        if handler.stream_stream is not None:
            many = handler.stream_stream

            def stream(requests: Any, context: Any) -> Any:
                # A generator: the call ends when its last reply is sent.
                began = time.perf_counter()
                try:
                    yield from many(requests, context)
                finally:
                    self._done(method, began, context)

            return grpc.stream_stream_rpc_method_handler(stream, **kwargs)
        return handler


class GrpcAgent:
    """A worker's gRPC server: rating, health, reflection."""

    def __init__(self, store: Store, listen: str, port: int, threads: int = 8,
                 grace: float = 5.0, control: CallControl | None = None,
                 lock: threading.Lock | None = None,
                 tls: tuple[bytes, bytes] | None = None, token: str | None = None,
                 metrics: Any = None, group: GroupSync | None = None) -> None:
        self.grace = grace
        interceptors: list[Any] = [] if metrics is None else [_Measured(metrics)]
        if token:
            interceptors.append(_BearerToken(token))
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads),
                                  options=[("grpc.so_reuseport", 1)],
                                  interceptors=interceptors)
        self.rating = RatingService(store, control, lock, metrics, group)
        rating_pb2_grpc.add_RatingServiceServicer_to_server(  # type: ignore[no-untyped-call]
            self.rating, self.server)
        from .rpc_manage import ClientService, DeckService

        manage_pb2_grpc.add_DeckServiceServicer_to_server(  # type: ignore[no-untyped-call]
            DeckService(store), self.server)
        manage_pb2_grpc.add_ClientServiceServicer_to_server(  # type: ignore[no-untyped-call]
            ClientService(store), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        host = f"[{listen}]" if ":" in listen else listen
        if tls is None:
            bound = self.server.add_insecure_port(f"{host}:{port}")
        else:
            cert, key = tls
            bound = self.server.add_secure_port(f"{host}:{port}",
                                                grpc.ssl_server_credentials([(key, cert)]))
        if not bound:
            raise RaterError(f"gRPC port {port} on {listen} cannot be bound")

    def start(self) -> None:
        self.server.start()
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self) -> None:
        """NOT_SERVING first, then the calls in flight get the grace period."""
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(self.grace).wait()
        self.rating.decks.close()
