"""The gRPC agent of ``rater serve`` over real gRPC on 127.0.0.1: RatingService,
health, reflection, and the table of error statuses."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from conftest import ROOT, run_cli, write
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_radius_serve import Server, populate, start

from rater import errors
from rater.cli import EXIT_CODES
from rater.config import StorageConfig
from rater.engine import Deck
from rater.journal import Journal
from rater.radius.control import CallControl
from rater.radius.server import free_ports
from rater.rpc import REJECTS, STATUS, GrpcAgent
from rater.settings import OUTCOMES
from rater.store import GroupSync, Store
from rater.tariff import RateRow, Tier, describe_tiers
from rater.v1 import manage_pb2, manage_pb2_grpc, rating_pb2, rating_pb2_grpc

T0 = 1_795_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("grpc")
    populate(root / "data")
    server = start(root / "data", write(root / "serve.toml", ""), "--workers", "2")
    yield server
    server.stop()


@pytest.fixture
def rating(served: Server) -> rating_pb2_grpc.RatingServiceStub:
    channel = grpc.insecure_channel(served.grpc_address())
    yield rating_pb2_grpc.RatingServiceStub(channel)
    channel.close()


def expected(data: Path, number: str, at: int, seconds: int) -> tuple[Decimal, str, str, int]:
    store = Store(data)
    try:
        with Deck(store, "T") as deck:
            r = deck.rate(number, at, seconds)
            return r.cost, r.prefix, r.destination, r.billed_seconds
    finally:
        store.close()


def test_rate_prices_as_the_engine_does(rating: rating_pb2_grpc.RatingServiceStub,
                                        served: Server) -> None:
    reply = rating.Rate(rating_pb2.RateRequest(table="T", number="442079460000",
                                               start=Timestamp(seconds=T0),
                                               duration_seconds=61), timeout=5)
    cost, prefix, destination, billed = expected(served.data, "442079460000", T0, 61)
    assert (Decimal(reply.cost), reply.currency, reply.prefix, reply.destination,
            reply.billed_seconds, reply.table) == (cost, "USD", prefix, destination, billed,
                                                   "T")
    assert Decimal(reply.cost) == Decimal("0.0203")   # 61 s at 0.02 a minute, 1/1


@pytest.mark.parametrize(("request_", "status", "said"), [
    (rating_pb2.RateRequest(table="T", number="", duration_seconds=60),
     grpc.StatusCode.INVALID_ARGUMENT, "number: empty"),
    (rating_pb2.RateRequest(table="T", number="44x", duration_seconds=60),
     grpc.StatusCode.INVALID_ARGUMENT, "number:"),
    (rating_pb2.RateRequest(table="T", number="44", duration_seconds=-1),
     grpc.StatusCode.INVALID_ARGUMENT, "duration_seconds: negative"),
    (rating_pb2.RateRequest(table="", number="44", duration_seconds=1),
     grpc.StatusCode.INVALID_ARGUMENT, "table: empty"),
    (rating_pb2.RateRequest(table="nope", number="44", duration_seconds=1),
     grpc.StatusCode.NOT_FOUND, "no rate table named 'nope'"),
    (rating_pb2.RateRequest(table="T", number="999", duration_seconds=1),
     grpc.StatusCode.NOT_FOUND, "no rate for 999"),
])
def test_rate_errors_have_their_status_and_name_the_field(
        rating: rating_pb2_grpc.RatingServiceStub, request_: rating_pb2.RateRequest,
        status: grpc.StatusCode, said: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        rating.Rate(request_, timeout=5)
    assert caught.value.code() == status
    assert said in caught.value.details()


def test_rate_stream_answers_each_batch_in_order(rating: rating_pb2_grpc.RatingServiceStub,
                                                 served: Server) -> None:
    numbers = ["442079460000", "15551234567", "999", "4420794"]
    batches = [rating_pb2.RateBatch(table="T", numbers=numbers, starts=[T0] * 4,
                                    durations=[61, 61, 61, 0], batch_id=k) for k in (7, 8)]
    replies = list(rating.RateStream(iter(batches), timeout=10))
    assert [r.batch_id for r in replies] == [7, 8]
    r = replies[0]
    assert r.currency == "USD" and len(r.cost_nanos) == 4
    for i, (number, seconds) in enumerate(zip(numbers, [61, 61, 61, 0], strict=True)):
        if number == "999":
            assert (r.cost_nanos[i], r.destinations[i]) == (-1, -1)
            continue
        cost, prefix, destination, billed = expected(served.data, number, T0, seconds)
        assert Decimal(r.cost_nanos[i]) / 10**9 == cost
        assert r.billed_seconds[i] == billed
        assert number[:r.prefix_lengths[i]] == prefix
        assert r.destination_names[r.destinations[i]] == destination


def test_rate_stream_refuses_a_ragged_batch(rating: rating_pb2_grpc.RatingServiceStub) -> None:
    bad = rating_pb2.RateBatch(table="T", numbers=["44", "1"], starts=[T0], durations=[1, 1],
                               batch_id=3)
    with pytest.raises(grpc.RpcError) as caught:
        list(rating.RateStream(iter([bad]), timeout=5))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch 3: 2 numbers, 1 starts" in caught.value.details()


def test_health_says_serving_and_reflection_lists_the_services(served: Server) -> None:
    with grpc.insecure_channel(served.grpc_address()) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "rater.v1.RatingService"):
            got = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert got.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"rater.v1.RatingService", "rater.v1.DeckService", "rater.v1.ClientService",
            "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_every_error_code_has_a_status() -> None:
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.RaterError)}
    assert codes == set(STATUS) == set(EXIT_CODES)
    assert grpc.StatusCode.UNKNOWN not in STATUS.values()
    assert grpc.StatusCode.OK not in STATUS.values()


def test_the_generated_code_is_that_of_the_protos(tmp_path: Path) -> None:
    protos = sorted(p.name for p in (ROOT / "proto" / "rater" / "v1").glob("*.proto"))
    assert protos == ["manage.proto", "rating.proto"]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                    f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", *(f"rater/v1/{p}" for p in protos)],
                   check=True, cwd=ROOT)
    for proto in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            name = proto.removesuffix(".proto") + suffix
            assert (tmp_path / "rater" / "v1" / name).read_text() == (
                ROOT / "rater" / "v1" / name).read_text(), name


def test_authorize_and_accounting_over_grpc_follow_radius(served: Server) -> None:
    assert set(REJECTS) == set(OUTCOMES) - {"accepted"}
    with grpc.insecure_channel(served.grpc_address()) as channel:
        stub = rating_pb2_grpc.RatingServiceStub(channel)
        ok = stub.Authorize(rating_pb2.AuthorizeRequest(
            nas="127.0.0.1", username="alice", called="442079460000", session_id="g-1"),
            timeout=5)
        assert (ok.prepaid, ok.currency) == (True, "USD") and ok.seconds > 0
        again = stub.Authorize(rating_pb2.AuthorizeRequest(
            nas="127.0.0.1", username="alice", called="442079460000", session_id="g-1"),
            timeout=5)
        assert again.seconds == ok.seconds
        for user, status, said in (("nobody", grpc.StatusCode.NOT_FOUND, "unknown_account"),
                                   ("carol", grpc.StatusCode.FAILED_PRECONDITION,
                                    "client_blocked"),
                                   ("erin", grpc.StatusCode.UNAUTHENTICATED,
                                    "bad_password")):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Authorize(rating_pb2.AuthorizeRequest(
                    nas="127.0.0.1", username=user, called="442079460000",
                    session_id=f"g-{user}"), timeout=5)
            assert caught.value.code() == status and said in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            stub.StopCall(rating_pb2.CallEvent(nas="127.0.0.1", username="bob"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session_id: empty" in caught.value.details()
        event = rating_pb2.CallEvent(nas="127.0.0.1", username="bob", called="442079460000",
                                     session_id="g-2", duration_seconds=61,
                                     end=Timestamp(seconds=T0 + 61))
        assert stub.StartCall(event, timeout=5).outcome == "started"
        assert stub.StopCall(event, timeout=5).outcome == "billed"
        assert stub.StopCall(event, timeout=5).outcome == "repeated"
    store = Store(served.data)
    try:
        billed = [e for e in Journal(store).entries("bob") if e.type == "rated-call"
                  and e.call[1] == "127.0.0.1/g-2"]
        assert len(billed) == 1 and billed[0].amount == -20_300_000   # 0.0203
    finally:
        store.close()



def test_tls_token_and_the_python_client(tmp_path: Path, served: Server) -> None:
    from rater.client import RaterClient

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    token = write(tmp_path / "token", "s3cret-token-of-the-test\n")
    config = write(tmp_path / "serve.toml", f'[grpc]\ntls_cert_file = "{cert}"\n'
                                            f'tls_key_file = "{key}"\ntoken_file = "{token}"\n')
    secure = start(served.data, config, "--workers", "1")
    try:
        addr = secure.grpc_address()
        pem = cert.read_bytes()
        # Without the token: UNAUTHENTICATED, for one call and for a stream; health is open.
        with RaterClient(addr, root_certificates=pem) as anonymous:
            with pytest.raises(grpc.RpcError) as caught:
                anonymous.rate("T", "442079460000", 61)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as caught:
                list(anonymous.rate_batches("T", [(["44"], [T0], [1])]))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as caught:
                manage_pb2_grpc.DeckServiceStub(anonymous.channel).Import(
                    iter([manage_pb2.DeckChunk(table="X", data=b"")]), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(anonymous.channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
                health_pb2.HealthCheckResponse.SERVING)
        with RaterClient(addr, root_certificates=pem, token="wrong-token-of-the-test") as bad:
            with pytest.raises(grpc.RpcError) as caught:
                bad.rate("T", "442079460000", 61)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with RaterClient(addr, root_certificates=pem,
                         token="s3cret-token-of-the-test") as rater:
            call = rater.rate("T", "442079460000", 61, start=T0)
            assert (call.cost, call.currency) == (Decimal("0.0203"), "USD")
            grant = rater.authorize("127.0.0.1", "bob", "442079460000", session_id="t-1")
            assert grant.prepaid is False and grant.credit is None and grant.seconds == 7200
            replies = list(rater.rate_batches("T", [(["442079460000"], [T0], [61])]))
            assert list(replies[0].cost_nanos) == [20_300_000]
        # Plaintext is refused by a TLS server.
        with RaterClient(addr, timeout=2) as plain, pytest.raises(grpc.RpcError):
            plain.rate("T", "442079460000", 61)
    finally:
        secure.stop()
    bad = write(tmp_path / "bad.toml", '[grpc]\ntls_cert_file = "/nonexistent.pem"\n'
                                       f'tls_key_file = "{key}"\n')
    proc = run_cli("config", "check", str(bad))
    assert proc.returncode == 78 and "grpc.tls_cert_file: cannot read" in proc.stderr


def test_deck_service_imports_in_chunks_shows_diffs_and_rolls_back(served: Server) -> None:
    deck = (b"prefix,destination,rate,connect_fee,increment,effective_from\n"
            b"49,Germany,0.0100,,60/60,\n4930,Berlin,0.0080,,60/60,\n")
    with grpc.insecure_channel(served.grpc_address()) as channel:
        decks = manage_pb2_grpc.DeckServiceStub(channel)
        chunks = [manage_pb2.DeckChunk(table="G", filename="g.csv", currency="EUR",
                                       data=deck[:20]),
                  manage_pb2.DeckChunk(data=deck[20:50]), manage_pb2.DeckChunk(data=deck[50:])]
        got = decks.Import(iter(chunks), timeout=10)
        assert (got.table, got.version, got.created, got.summary["added"]) == ("G", 1, True, 2)
        listed = {t.name: t for t in decks.List(manage_pb2.ListTablesRequest(), timeout=5).tables}
        assert listed["G"].currency == "EUR" and listed["G"].version == 1
        shown = decks.Show(manage_pb2.ShowTableRequest(table="G", prefix="4930"), timeout=5)
        assert [(r.prefix, r.destination) for r in shown.rows] == [("4930", "Berlin")]
        changed = deck.replace(b"0.0080", b"0.0090")
        again = decks.Import(iter([manage_pb2.DeckChunk(table="G", filename="g.csv",
                                                        data=changed)]), timeout=10)
        assert again.version == 2 and again.summary["changed"] == 1
        diff = decks.Diff(manage_pb2.DiffRequest(table="G"), timeout=5)
        assert [(c.kind, c.before.prefix, c.after.price) for c in diff.changes] == [
            ("changed", "4930", describe("0.009"))]
        with pytest.raises(grpc.RpcError) as caught:
            decks.Import(iter([manage_pb2.DeckChunk(table="G", filename="g.csv",
                                                    data=b"prefix,rate\n49,x\n")]), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ":2:" in caught.value.details()
        back = decks.Rollback(manage_pb2.RollbackRequest(table="G"), timeout=5)
        assert (back.undone, back.version) == (2, 1)
        with pytest.raises(grpc.RpcError) as caught:
            decks.Show(manage_pb2.ShowTableRequest(table="nope"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def describe(rate: str) -> str:
    """How a 60/60 row of ``rate`` a minute is shown."""
    return describe_tiers(RateRow(prefix="1", tiers=(Tier(0, Decimal(rate), 60, 60),)))


def test_client_service_adds_clients_accounts_and_posts_money_once(served: Server) -> None:
    with grpc.insecure_channel(served.grpc_address()) as channel:
        clients = manage_pb2_grpc.ClientServiceStub(channel)
        made = clients.AddClient(manage_pb2.ClientInfo(name="henry", currency="USD",
                                                       rate_table="T", capacity=2), timeout=5)
        assert (made.mode, made.rate_table, made.capacity, made.status) == (
            "prepaid", "T", 2, "active")
        assert clients.GetClient(manage_pb2.ClientRequest(name="henry"), timeout=5) == made
        account = clients.AddAccount(manage_pb2.AccountInfo(client="henry", username="henry"),
                                     timeout=5)
        assert account.id > 0 and account.username == "henry"
        listed = clients.ListAccounts(manage_pb2.ClientRequest(name="henry"), timeout=5)
        assert [a.username for a in listed.accounts] == ["henry"]
        pay = manage_pb2.TransactionRequest(client="henry", type="manual-payment",
                                            amount="12.50", key="pay-henry-1")
        first = clients.PostTransaction(pay, timeout=5)
        again = clients.PostTransaction(pay, timeout=5)
        assert (first.duplicate, again.duplicate, again.entry) == (False, True, first.entry)
        assert Decimal(again.live) == Decimal("12.50")
        pay.amount = "13"
        with pytest.raises(grpc.RpcError) as caught:
            clients.PostTransaction(pay, timeout=5)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        edited = clients.EditClient(manage_pb2.EditClientRequest(
            name="henry", credit_limit="5", capacity=0, new_name="henri"), timeout=5)
        assert (edited.name, Decimal(edited.credit_limit), edited.capacity) == (
            "henri", Decimal("5"), 0)
        with pytest.raises(grpc.RpcError) as caught:
            clients.EditClient(manage_pb2.EditClientRequest(name="henri"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT    # nothing to change
        edited = clients.EditClient(manage_pb2.EditClientRequest(name="henri",
                                                                 new_name="henry"), timeout=5)
        balance = clients.GetBalance(manage_pb2.ClientRequest(name="henry"), timeout=5)
        assert Decimal(balance.available) == Decimal("17.50")            # 12.50 + 5 credit
        gone = clients.DeleteAccount(manage_pb2.AccountRequest(id=account.id), timeout=5)
        assert (gone.id, gone.client) == (account.id, "henry")
        assert clients.ListAccounts(manage_pb2.ClientRequest(name="henry"),
                                    timeout=5).accounts == []
        deleted = clients.DeleteClient(manage_pb2.ClientRequest(name="henry"), timeout=5)
        assert deleted.status == "deleted"
        assert "henry" not in [c.name for c in clients.ListClients(
            manage_pb2.ListClientsRequest(), timeout=5).clients]
        clients.EditClient(manage_pb2.EditClientRequest(name="henry", status="active"),
                           timeout=5)
        balance = clients.GetBalance(manage_pb2.ClientRequest(name="henry"), timeout=5)
        assert (Decimal(balance.live), Decimal(balance.available)) == (Decimal("12.50"),
                                                                       Decimal("17.50"))
        for call, status in ((lambda: clients.GetClient(manage_pb2.ClientRequest(name="zz"),
                                                        timeout=5), grpc.StatusCode.NOT_FOUND),
                             (lambda: clients.AddClient(manage_pb2.ClientInfo(currency="USD"),
                                                        timeout=5),
                              grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == status


def test_errors_carry_details_naming_the_code_and_the_field(
        rating: rating_pb2_grpc.RatingServiceStub) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with pytest.raises(grpc.RpcError) as caught:
        rating.Rate(rating_pb2.RateRequest(table="T", number="", duration_seconds=60),
                    timeout=5)
    status = rpc_status.from_call(caught.value)
    assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "rater")
    assert [(v.field, v.description) for v in bad.field_violations] == [("number", "empty")]
    with pytest.raises(grpc.RpcError) as caught:
        rating.Rate(rating_pb2.RateRequest(table="nope", number="44", duration_seconds=1),
                    timeout=5)
    status = rpc_status.from_call(caught.value)
    assert status is not None and len(status.details) == 1
    assert status.details[0].Unpack(info) and info.reason == "UNKNOWN_TABLE"
    assert info.metadata["hint"]


def test_rate_by_client_uses_its_table_in_force(rating: rating_pb2_grpc.RatingServiceStub
                                                ) -> None:
    reply = rating.Rate(rating_pb2.RateRequest(client="alice", number="442079460000",
                                               start=Timestamp(seconds=T0),
                                               duration_seconds=61), timeout=5)
    assert (reply.table, Decimal(reply.cost)) == ("T", Decimal("0.0203"))
    for request, status in ((rating_pb2.RateRequest(client="nobody", number="44"),
                             grpc.StatusCode.NOT_FOUND),
                            (rating_pb2.RateRequest(client="alice", table="T", number="44"),
                             grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as caught:
            rating.Rate(request, timeout=5)
        assert caught.value.code() == status


def test_a_stopping_agent_says_not_serving_before_it_drains(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    agent = GrpcAgent(store, "127.0.0.1", 0, threads=2, grace=0.5)
    try:
        agent.start()

        def status() -> int:
            class Context:
                def set_code(self, code: object) -> None:
                    raise AssertionError(code)

            reply = agent.health.Check(health_pb2.HealthCheckRequest(
                service="rater.v1.RatingService"), Context())
            return int(reply.status)

        assert status() == health_pb2.HealthCheckResponse.SERVING
        # What health says when the server starts draining its calls.
        seen: list[int] = []
        drain = agent.server.stop

        def watched(grace: float) -> object:
            seen.append(status())
            return drain(grace)

        agent.server.stop = watched  # type: ignore[method-assign]
        agent.stop()
        assert seen == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        agent.server.stop(0)                  # stopped already, unless an assert failed
        store.close()


def test_accounting_is_answered_once_its_commit_is_on_disk(tmp_path: Path) -> None:
    """In a worker the store commits without fsync; a StopCall's reply waits for the
    group sync that covers its commit (a sync every 0.3 s here: a reply that did not
    wait would come back before any sync began)."""
    populate(tmp_path / "data")
    store = Store(tmp_path / "data", StorageConfig(sync=False))
    group = GroupSync(store, 0.3)
    control = CallControl(store)
    (port,) = free_ports("127.0.0.1", [socket.SOCK_STREAM])
    agent = GrpcAgent(store, "127.0.0.1", port, threads=2, grace=0.5, control=control,
                      lock=threading.Lock(), group=group)
    agent.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rating_pb2_grpc.RatingServiceStub(channel)
            event = rating_pb2.CallEvent(nas="127.0.0.1", username="bob",
                                         called="442079460000", session_id="d-1",
                                         duration_seconds=30, end=Timestamp(seconds=T0 + 30))
            before = time.monotonic()
            assert stub.StopCall(event, timeout=10).outcome == "billed"
            assert group.synced > before
    finally:
        agent.stop()
        group.close()
        control.close()
        store.close()
