"""Call control and the RADIUS agent at their edges: late and reordered accounting,
reservations that must outlive ringing, batches holding one bad request, reloaded
settings, RFC 2866 timing, and the descriptors and processes of ``rater serve``.

Direct :class:`CallControl` tests give the time explicitly (``now``); worker tests
call a :class:`Worker` in this process; the last tests run ``rater serve`` on
127.0.0.1 (free ports, metrics off or on a free port) and stop it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from conftest import CONTROL_DECK, GRACE, PREMIUM, write
from pyrad.packet import AccessRequest, AccountingRequest, AcctPacket, AuthPacket
from test_call_control import T0, UK, alice, cost
from test_radius_serve import children, send, start

from rater.clients import Client, Registry
from rater.decks import Decks
from rater.radius import packet
from rater.radius.control import START, STOP, Call, CallControl
from rater.radius.server import Worker
from rater.settings import load
from rater.store import Store

SECRET = "testing123"


# -- call control without the wire

def limit_calls(control: CallControl, store: Store, capacity: int) -> None:
    Registry(store).edit_client("alice", capacity=capacity)
    control.refresh(force=True)


def test_a_start_retransmitted_after_the_stop_registers_no_call(control: CallControl,
                                                                store: Store) -> None:
    """A short call: its Start is answered late, so the NAS sends it again, and the
    copy arrives after the Stop. The call is over; it must not count again."""
    limit_calls(control, store, 1)
    assert control.authorize(alice("a"), now=T0).accepted
    assert control.account(alice("a"), START, now=T0 + 1) == "started"
    assert control.account(alice("a"), STOP, session_time=3, event_time=T0 + 4,
                           now=T0 + 4) == "billed"
    assert control.reserved(1, now=T0 + 4) == (0, 0)
    control.account(alice("a"), START, now=T0 + 6)          # the late copy
    assert control.reserved(1, now=T0 + 7) == (0, 0)
    assert control.authorize(alice("b"), now=T0 + 7).outcome == "accepted"


def test_an_access_request_handled_after_its_stop_reserves_nothing(control: CallControl,
                                                                   store: Store) -> None:
    """A copy of the Access-Request handled after the call was billed (another worker,
    or a queue behind the Stop) must not hold the client's money for another hour."""
    control.authorize(alice("a"), now=T0)
    assert control.account(alice("a"), STOP, session_time=5, event_time=T0 + 5,
                           now=T0 + 5) == "billed"
    control.authorize(alice("a"), now=T0 + 6)               # the late copy
    assert control.reserved(1, now=T0 + 6) == (0, 0)
    other = control.authorize(alice("b"), now=T0 + 7)
    assert other.credit == 1_100_000_000 - cost(store, 5)


def test_a_call_answered_after_ringing_keeps_its_reservation_to_its_end(
        control: CallControl, store: Store) -> None:
    """The gateway counts Session-Timeout from the answer. Rung for 90 s (more than the
    grace), the call may last until 90 s + the grant after the Accept: until its Stop
    can come, its money stays reserved and no other call may be granted it."""
    first = control.authorize(alice("a"), now=T0)
    assert first.accepted and first.seconds > 3000
    answered = T0 + 90
    assert control.account(alice("a"), START, now=answered) == "started"
    still_up = T0 + first.seconds + GRACE + 1                # before answered + seconds
    assert still_up < answered + first.seconds
    assert control.reserved(1, now=still_up) == (1, first.reserved)
    second = control.authorize(alice("b"), now=still_up)
    assert second.outcome == "no_balance"


def test_a_new_number_under_a_known_session_id_is_not_granted_the_old_time(
        control: CallControl, store: Store) -> None:
    """Under one Acct-Session-Id the gateway asks first for a cheap number, then for a
    premium one: the second grant must be paid for by what is reserved."""
    cheap = control.authorize(alice("a"), now=T0)
    assert cheap.accepted
    premium = control.authorize(alice("a", number=PREMIUM), now=T0 + 1)
    held = control.reserved(1, now=T0 + 1)[1]
    assert not premium.accepted or cost(store, premium.seconds, PREMIUM) <= held


def test_one_call_with_an_oversized_key_leaves_the_batch_decided(control: CallControl) -> None:
    """Without Acct-Session-Id a call is known by NAS, User-Name, Calling- and
    Called-Station-Id: long ones (a padded number still rates) make a key LMDB cannot
    store. The other calls of the batch are still decided."""
    padded = "44" + " " * 241 + "2079460000"
    odd = Call(nas="10.0.0.1", user_name="alice", calling="1" * 253, called=padded)
    who = (odd.nas, odd.user_name, odd.calling, odd.called)
    assert len("\0".join(who).encode()) > 511
    got = control.authorize_many([odd, alice("b")], now=T0)
    assert len(got) == 2
    # The odd call is decided (its key hashed) and takes the credit; the next sees it.
    assert [g.outcome for g in got] == ["accepted", "no_balance"]


# -- a worker in this process

def access_request(user: str, session: str = "", number: str = UK,
                   proxy_states: list[bytes] | None = None) -> bytes:
    p = AuthPacket(code=AccessRequest, secret=SECRET.encode(), dict=packet.dictionary())
    p["User-Name"] = user
    p["Called-Station-Id"] = number
    if session:
        p["Calling-Station-Id"] = "15550001"
        p["Acct-Session-Id"] = session
    for state in proxy_states or []:
        p.AddAttribute("Proxy-State", state)
    p.add_message_authenticator()
    raw: bytes = p.RequestPacket()
    return raw


def accounting_request(user: str, session: str, status: str, **attrs: int | str) -> bytes:
    p = AcctPacket(code=AccountingRequest, secret=SECRET.encode(), dict=packet.dictionary())
    p["User-Name"] = user
    p["Called-Station-Id"] = UK
    p["Calling-Station-Id"] = "15550001"
    p["Acct-Session-Id"] = session
    p["Acct-Status-Type"] = status
    for name, value in attrs.items():
        p[name.replace("_", "-")] = value
    raw: bytes = p.RequestPacket()
    return raw


def populate(data: Path) -> None:
    """bob (postpaid) on table T; rater serve's NAS entry comes from its config."""
    store = Store(data)
    try:
        Decks(store).import_file(write(data.parent / "deck.csv", CONTROL_DECK), "T", currency="USD")
        reg = Registry(store)
        reg.add_client(Client(id=0, name="bob", currency="USD", mode="postpaid",
                              rate_tables=[[None, "T"]]))
        reg.add_account("bob", username="bob")
    finally:
        store.close()


def config(path: Path, extra: str = "", metrics: str = "enabled = false") -> Path:
    return write(path, f"[metrics]\n{metrics}\n" + extra
                 + f'[[nas]]\naddress = "127.0.0.1"\nsecret = "{SECRET}"\n')


def make_worker(tmp_path: Path) -> Worker:
    data = tmp_path / "data"
    populate(data)
    settings = load(config(tmp_path / "serve.toml"), {
        "serve.listen": '"127.0.0.1"', "radius.auth_port": "0", "radius.acct_port": "0",
        "storage.sync": "false", "metrics.enabled": "false", "grpc.enabled": "false"})
    return Worker(settings, data, None, {}, 1)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = make_worker(tmp_path)
    yield w
    w.auth.close()
    w.acct.close()
    w.control.close()
    w.store.close()


def test_a_request_whose_reply_cannot_be_encoded_spoils_nothing(worker: Worker) -> None:
    """Proxy-State is copied to the reply: a request of 4096 bytes, nearly all of it
    Proxy-State, makes an Access-Accept that does not fit. That request goes
    unanswered; the other request of the batch gets its Accept, and nothing escapes
    the worker."""
    good = access_request("bob", "g-1")
    room = packet.MAX_PACKET - len(access_request("bob"))
    states = [bytes([65 + k]) * 253 for k in range(room // 255)]
    states.append(b"z" * (room - 255 * len(states) - 2))
    heavy = access_request("bob", proxy_states=states)
    assert len(heavy) == packet.MAX_PACKET
    replies = worker.handle_access([(good, "127.0.0.1"), (heavy, "127.0.0.1")])
    assert len(replies) == 2
    assert replies[0] is not None and replies[0][0] == packet.ACCESS_ACCEPT
    assert replies[1] is None


def test_a_delayed_stop_is_dated_back_by_its_acct_delay_time(worker: Worker) -> None:
    """RFC 2866 5.2: the event happened Acct-Delay-Time seconds before the request
    arrived. A Stop the NAS held for an hour is a call of an hour ago."""
    arrived = int(time.time())
    stop = accounting_request("bob", "d-1", "Stop", Acct_Session_Time=60,
                              Acct_Delay_Time=3600)
    reply = worker.handle_accounting(stop, "127.0.0.1")
    assert reply is not None and reply[0] == packet.ACCOUNTING_RESPONSE
    with worker.store.read() as txn:
        raw = worker.store.calls.get(txn, b"radius\x00" + b"127.0.0.1/d-1")
    assert raw is not None
    started = msgpack.unpackb(raw)[0]
    assert started <= arrived - 3600 - 60 + 1


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_a_worker_that_stops_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """Everything the worker opened is closed once run() returns."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    before = open_fds()
    w = make_worker(tmp_path)
    w._stop = True                       # as after SIGTERM: the loop ends at once
    try:
        w.run()
    finally:
        wakeup = signal.set_wakeup_fd(-1)
        for s, h in handlers.items():
            signal.signal(s, h)
        left = open_fds() - before
        for fd in left:
            os.close(fd)
    assert wakeup == -1
    assert left == set()


# -- rater serve

def return_code(port: int, deadline: float) -> bytes | None:
    """The h323-return-code of an unknown caller's Access-Reject (None: no answer)."""
    while time.monotonic() < deadline:
        reply = send(port, access_request("nobody", f"n-{time.monotonic_ns()}"))
        if reply is not None:
            at = reply.find(b"h323-return-code=")
            assert at > 0, reply
            return reply[at + 17:at + reply[at - 1] - 2]
        time.sleep(0.05)
    return None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_worker_started_again_keeps_the_reloaded_settings(tmp_path: Path) -> None:
    """After SIGHUP changed a return code, a worker that died and was started again
    answers with the new code, like the others."""
    data = tmp_path / "data"
    populate(data)
    cfg = config(tmp_path / "serve.toml")
    server = start(data, cfg, "--workers", "1")
    proc, auth = server.proc, server.auth
    try:
        assert return_code(auth, time.monotonic() + 5) == b"1"
        config(cfg, "[radius.return_codes]\nunknown_account = 42\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and return_code(auth, deadline) != b"42":
            time.sleep(0.1)
        assert return_code(auth, time.monotonic() + 2) == b"42"
        (old,) = children(proc.pid)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and children(proc.pid) in ([], [old]):
            time.sleep(0.05)
        assert children(proc.pid) not in ([], [old])
        assert return_code(auth, time.monotonic() + 5) == b"42"
    finally:
        server.stop()


def test_workers_end_when_their_supervisor_dies(tmp_path: Path) -> None:
    """The supervisor killed outright (SIGKILL, the OOM killer): its workers stop within
    a few seconds instead of serving on with nobody to restart, reload or stop them."""
    data = tmp_path / "data"
    populate(data)
    server = start(data, config(tmp_path / "serve.toml"), "--workers", "2")
    proc = server.proc
    pids = children(proc.pid)
    try:
        assert len(pids) == 2
        proc.kill()
        proc.wait(timeout=5)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        assert [p for p in pids if alive(p)] == []
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        server.stop()               # the workers held its pipes: read them to the end


def sockets(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


def test_a_worker_started_again_holds_no_socket_of_its_supervisor(tmp_path: Path) -> None:
    """The worker that replaces a dead one has its own two RADIUS sockets, not the
    supervisor's /metrics listener (which it would keep open, and the port with it)."""
    data = tmp_path / "data"
    populate(data)
    server = start(data, config(tmp_path / "serve.toml", metrics="enabled = true"),
                   "--workers", "1")
    proc = server.proc
    try:
        (old,) = children(proc.pid)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and children(proc.pid) in ([], [old]):
            time.sleep(0.05)
        (new,) = children(proc.pid)
        time.sleep(0.3)                     # listening by now
        assert sockets(proc.pid)
        assert sockets(new) & sockets(proc.pid) == set()
    finally:
        server.stop()
