"""``rater serve`` over real RADIUS on 127.0.0.1: radclient (freeradius-utils) and
pyrad-built packets against the real agent, its worker processes and LMDB store.

Clients here: alice (prepaid, 1.00 USD), bob (postpaid), carol (stopped), dave
(prepaid, capacity 1), erin (prepaid, PIN 1234); each has one account known by
its User-Name. Table T: the UK (44) at 0.02 a minute, 1/1; the US (1) 0.01, 60/6.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import apt_install, failed, ok, run_cli, write
from pyrad.packet import AccessRequest, AuthPacket

from rater.clients import Client, Registry
from rater.decks import Decks
from rater.engine import Deck
from rater.journal import Journal
from rater.radius import packet
from rater.radius.server import free_ports
from rater.store import Store

SECRET = "testing123"
RATER = [sys.executable, "-m", "rater.cli"]
DECK = ("prefix,destination,rate,connect_fee,increment,effective_from\n"
        "1,US,0.0100,,60/6,\n44,UK,0.0200,,1/1,\n")
UK = "442079460000"


def ensure_radclient() -> str:
    """radclient, installed from Debian's freeradius-utils when missing and we are root."""
    path = shutil.which("radclient")
    if path is None:
        apt_install("freeradius-utils")
        path = shutil.which("radclient")
    if path is None:
        pytest.fail("radclient is missing: install Debian's freeradius-utils "
                    "(apt-get install freeradius-utils) and run the tests again")
    return path


@dataclass
class Server:
    data: Path
    auth: int
    acct: int
    proc: subprocess.Popen[str]
    config: Path
    #: Its /metrics URL ("" when metrics are off).
    metrics: str
    #: The line it printed once listening.
    ready: str = ""
    log: str = ""

    def stop(self) -> str:
        """SIGTERM, wait; the stderr log (worker summaries)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                _, err = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            self.log = err
        return self.log

    def grpc_address(self) -> str:
        """HOST:PORT of its gRPC agent, from the line it printed once listening."""
        found = re.search(r"gRPC (\S+?);", self.ready)
        assert found, self.ready
        return found.group(1)

    def workers(self) -> list[int]:
        return children(self.proc.pid)


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def populate(data: Path) -> None:
    store = Store(data)
    try:
        deck = data.parent / "deck.csv"
        write(deck, DECK)
        Decks(store).import_file(deck, "T", currency="USD")
        reg = Registry(store)
        for name, mode, extra in (("alice", "prepaid", {}), ("bob", "postpaid", {}),
                                  ("carol", "prepaid", {}), ("dave", "prepaid", {"capacity": 1}),
                                  ("erin", "prepaid", {})):
            reg.add_client(Client(id=0, name=name, currency="USD", mode=mode,
                                  rate_tables=[[None, "T"]], **extra))
            reg.add_account(name, username=name, password="1234" if name == "erin" else None)
        reg.edit_client("carol", status="stop")
        journal = Journal(store)
        for name in ("alice", "carol", "dave", "erin"):
            journal.post(name, "manual-payment", "1.00", key=f"pay-{name}")
    finally:
        store.close()
    ok(run_cli("nas", "add", "127.0.0.1", "--secret", SECRET, "--name", "loopback", data=data))


def start(data: Path, config: Path, *extra: str) -> Server:
    auth, acct = free_ports("127.0.0.1", [socket.SOCK_DGRAM] * 2)
    proc = subprocess.Popen([*RATER, "--data", str(data), "serve", "--config", str(config),
                             "--listen", "127.0.0.1", "--radius-auth-port", str(auth),
                             "--radius-acct-port", str(acct), "--metrics-port", "0",
                             "--grpc-port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    # Bounded: a server that never says it listens fails the test, not hangs it.
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("rater serve: RADIUS"):
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} {proc.stderr.read()}")
    found = re.search(r"metrics (http://\S+/metrics)", line)
    return Server(data, auth, acct, proc, config, found.group(1) if found else "", ready=line)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_radclient()
    data = tmp_path_factory.mktemp("radius") / "data"
    populate(data)
    return data


@pytest.fixture
def server(world: Path, tmp_path: Path) -> Iterator[Server]:
    config = write(tmp_path / "serve.toml", "[serve]\nworkers = 2\n")
    s = start(world, config)
    yield s
    s.stop()


# -- talking RADIUS

def radclient(port: int, kind: str, requests: list[dict[str, str]], *,
              secret: str = SECRET, parallel: int = 1, ma: bool = True,
              timeout: float = 2) -> list[dict[str, str] | None]:
    """Send requests with radclient; each reply's code and attributes (None: no reply),
    in the order of the requests (radclient -x names each request's id)."""
    lines = []
    for r in requests:
        attrs = dict(r)
        if ma and kind == "auth":
            attrs["Message-Authenticator"] = "0x00"
        lines.append("\n".join(f"{k} = {v}" for k, v in attrs.items()))
    proc = subprocess.run(["radclient", "-x", "-t", str(timeout), "-r", "1", "-p", str(parallel),
                           f"127.0.0.1:{port}", kind, secret], input="\n\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=120)
    sent: dict[str, int] = {}
    replies: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    count = 0
    for line in proc.stdout.splitlines():
        m = re.match(r"Sent \S+ Id (\d+) from \S+ to \S+ length", line)
        if m:
            sent[m.group(1)] = count
            count += 1
            current = None
            continue
        m = re.match(r"Received (\S+) Id (\d+) ", line)
        if m:
            current = {"code": m.group(1)}
            replies[sent[m.group(2)]] = current
            continue
        m = re.match(r"\s+([\w-]+) = (.*)$", line)
        if m and current is not None:
            current[m.group(1)] = m.group(2).strip('"')
    return [replies.get(i) for i in range(len(requests))]


def counted(log: str, name: str) -> int:
    """A counter summed over the workers' summaries in the log."""
    return sum(int(n) for n in re.findall(rf"\b{re.escape(name)} (\d+)", log))


def vsa(reply: dict[str, str], name: str) -> str:
    """An h323 VSA's value without its ``name=`` prefix (as a Cisco gateway reads it)."""
    value = reply[name]
    assert value.startswith(name + "="), value
    return value[len(name) + 1:]


def call(user: str, session: str, number: str = UK, **extra: str) -> dict[str, str]:
    return {"User-Name": f'"{user}"', "Calling-Station-Id": '"15550001"',
            "Called-Station-Id": f'"{number}"', "Acct-Session-Id": f'"{session}"', **extra}


def send(port: int, raw: bytes, source: str = "127.0.0.1", timeout: float = 1.0
         ) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(raw, ("127.0.0.1", port))
        try:
            return s.recv(4096)
        except TimeoutError:
            return None


def access_request(user: str, session: str, number: str = UK, password: str | None = None,
                   ma: bool = True, secret: str = SECRET) -> bytes:
    p = AuthPacket(code=AccessRequest, secret=secret.encode(), dict=packet.dictionary())
    p["User-Name"] = user
    p["Called-Station-Id"] = number
    p["Calling-Station-Id"] = "15550001"
    p["Acct-Session-Id"] = session
    if password is not None:
        p["User-Password"] = p.PwCrypt(password)
    if ma:
        p.add_message_authenticator()
    raw: bytes = p.RequestPacket()
    return raw


def balance(data: Path, name: str) -> Decimal:
    d = ok(run_cli("balance", "show", name, "--json", data=data))
    import json
    return Decimal(json.loads(d)["live"])


def price_of(data: Path, number: str, seconds: int) -> Decimal:
    store = Store(data)
    try:
        with Deck(store, "T") as deck:
            return deck.rate(number, int(time.time()), seconds).cost
    finally:
        store.close()


def longest(data: Path, number: str, amount: Decimal) -> int:
    store = Store(data)
    try:
        with Deck(store, "T") as deck:
            return deck.max_duration(number, int(time.time()), amount, 7200)
    finally:
        store.close()


# -- authorization

def test_prepaid_call_is_granted_what_its_balance_pays_for(server: Server) -> None:
    (r,) = radclient(server.auth, "auth", [call("alice", "a-1")])
    assert r is not None and r["code"] == "Access-Accept"
    avail = balance(server.data, "alice")
    # The exact inverse of pricing: the longest call the available balance pays for.
    assert int(r["Session-Timeout"]) == longest(server.data, UK, avail) == 3000
    assert vsa(r, "h323-credit-time") == "3000"
    assert vsa(r, "h323-credit-amount") == "1.00"
    assert vsa(r, "h323-currency") == "USD"
    assert vsa(r, "h323-billing-model") == "1"
    assert vsa(r, "h323-return-code") == "0"
    assert r["Message-Authenticator"].startswith("0x")
    # The same request again (a retransmission) gets the same grant, not a second one.
    (again,) = radclient(server.auth, "auth", [call("alice", "a-1")])
    assert again is not None and again["Session-Timeout"] == "3000"


def test_postpaid_call_gets_the_max_call_length(server: Server) -> None:
    (r,) = radclient(server.auth, "auth", [call("bob", "b-1")])
    assert r is not None and r["code"] == "Access-Accept"
    assert r["Session-Timeout"] == "7200"
    assert vsa(r, "h323-billing-model") == "0"
    assert "h323-credit-amount" not in r


@pytest.mark.parametrize(("user", "number", "message", "code"), [
    ("nobody", UK, "unknown account", "1"),
    ("carol", UK, "client stop", "7"),
    ("alice", "999", "no rate for the number", "9"),
    ("alice", "abc", "not a dialled number", "9"),
])
def test_rejects_name_their_reason(server: Server, user: str, number: str, message: str,
                                   code: str) -> None:
    (r,) = radclient(server.auth, "auth", [call(user, f"r-{user}-{number}", number)])
    assert r is not None and r["code"] == "Access-Reject"
    assert r["Reply-Message"] == message
    assert vsa(r, "h323-return-code") == code


def test_pin_is_checked_when_the_account_has_one(server: Server) -> None:
    good = send(server.auth, access_request("erin", "e-1", password="1234"))
    bad = send(server.auth, access_request("erin", "e-2", password="9999"))
    none = send(server.auth, access_request("erin", "e-3"))
    assert good is not None and good[0] == packet.ACCESS_ACCEPT
    for reply in (bad, none):
        assert reply is not None and reply[0] == packet.ACCESS_REJECT
        assert b"wrong password" in reply


def test_capacity_counts_calls_in_progress(server: Server) -> None:
    (first, second) = radclient(server.auth, "auth", [call("dave", "d-1"), call("dave", "d-2")])
    assert first is not None and second is not None
    assert first["code"] == "Access-Accept"
    assert second["code"] == "Access-Reject" and second["Reply-Message"] == (
        "too many calls in progress")
    assert vsa(second, "h323-return-code") == "3"
    # Its Stop frees the place.
    radclient(server.acct, "acct", [call("dave", "d-1", **{"Acct-Status-Type": "Stop",
                                                          "Acct-Session-Time": "0"})])
    (third,) = radclient(server.auth, "auth", [call("dave", "d-3")])
    assert third is not None and third["code"] == "Access-Accept"


def test_concurrent_grants_of_one_client_never_exceed_its_balance(world: Path,
                                                                   tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(world, data)
    store = Store(data)
    Registry(store).add_client(Client(id=0, name="gina", currency="USD",
                                      rate_tables=[[None, "T"]]))
    Registry(store).add_account("gina", username="gina")
    Journal(store).post("gina", "manual-payment", "0.10", key="ten-cents")
    store.close()
    s = start(data, write(tmp_path / "serve.toml", ""), "--workers", "2")
    try:
        grants: list[int] = []
        unanswered: list[str] = []
        lock = threading.Lock()

        def caller(k: int) -> None:
            # Each thread its own source port: the kernel spreads them over the workers.
            for j in range(6):
                reply = send(s.auth, access_request("gina", f"c-{k}-{j}"), timeout=3)
                if reply is None:
                    # Said to the test below: an assert in a thread fails nothing.
                    with lock:
                        unanswered.append(f"c-{k}-{j}")
                    continue
                if reply[0] == packet.ACCESS_ACCEPT:
                    timeout = _session_timeout(reply)
                    with lock:
                        grants.append(timeout)

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        log = s.stop()
    assert unanswered == []
    spent = sum(price_of(data, UK, g) for g in grants)
    assert grants and spent <= Decimal("0.10"), (grants, spent)
    # Most of the money is granted: requests were not simply refused.
    assert spent >= Decimal("0.09")
    # Both workers answered.
    answered = re.findall(r"worker (\d): access-", log)
    assert sorted(set(answered)) == ["1", "2"], log


def _session_timeout(reply: bytes) -> int:
    at = 20
    while at < len(reply):
        kind, length = reply[at], reply[at + 1]
        if kind == 27:
            return int.from_bytes(reply[at + 2:at + length], "big")
        at += length
    raise AssertionError("no Session-Timeout")


# -- accounting

def test_stop_bills_once_however_often_it_is_sent(world: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(world, data)
    s = start(data, write(tmp_path / "serve.toml", ""))
    try:
        before = balance(data, "bob")
        start_ = call("bob", "s-1", **{"Acct-Status-Type": "Start"})
        stop = call("bob", "s-1", **{"Acct-Status-Type": "Stop", "Acct-Session-Time": "95",
                                     "Event-Timestamp": str(int(time.time()))})
        replies = radclient(s.acct, "acct", [start_])
        assert replies[0] is not None and replies[0]["code"] == "Accounting-Response"
        for _ in range(3):
            (r,) = radclient(s.acct, "acct", [stop])
            assert r is not None and r["code"] == "Accounting-Response"
    finally:
        log = s.stop()
    charged = before - balance(data, "bob")
    assert charged == price_of(data, UK, 95) == Decimal("0.0317")
    store = Store(data)
    try:
        calls = [e for e in Journal(store).entries("bob") if e.type == "rated-call"]
        assert len(calls) == 1 and calls[0].call[1] == "127.0.0.1/s-1"
        assert Journal(store).check() == []
    finally:
        store.close()
    assert (counted(log, "accounting-billed"), counted(log, "accounting-repeated")) == (1, 2)


def test_unknown_caller_stop_is_kept_as_a_mismatch(world: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(world, data)
    s = start(data, write(tmp_path / "serve.toml", ""))
    try:
        (r,) = radclient(s.acct, "acct", [call("zed", "z-1", **{
            "Acct-Status-Type": "Stop", "Acct-Session-Time": "10"})])
        assert r is not None and r["code"] == "Accounting-Response"
    finally:
        s.stop()
    import json
    found = json.loads(ok(run_cli("mismatches", "--json", data=data)))
    assert [(m["id"], m["reason"], m["username"]) for m in found] == [
        ("127.0.0.1/z-1", "no-account", "zed")]


# -- security and robustness

def test_access_request_without_message_authenticator_is_dropped(server: Server) -> None:
    (r,) = radclient(server.auth, "auth", [call("alice", "m-1")], ma=False, timeout=1)
    assert r is None
    # A wrong secret: dropped as well (its Message-Authenticator does not verify).
    assert send(server.auth, access_request("alice", "m-2", secret="wrong")) is None
    log = server.stop()
    assert counted(log, "no-message-authenticator") == 1
    assert counted(log, "bad-message-authenticator") == 1


def test_packets_from_unknown_addresses_are_dropped_and_counted(server: Server) -> None:
    assert send(server.auth, access_request("alice", "u-1"), source="127.0.0.2") is None
    log = server.stop()
    assert counted(log, "unknown-nas") == 1


def test_bad_packets_never_take_a_worker_down(server: Server) -> None:
    pids = server.workers()
    good = access_request("bob", "g-1")
    for bad in (b"", b"\x01", os.urandom(19), os.urandom(300), good[:30], b"\x01\x02\xff\xff" +
                os.urandom(40), good[:2] + (5000).to_bytes(2, "big") + good[4:],
                b"\x05" + good[1:], b"\x01" * 5000):
        send(server.auth, bad, timeout=0.05)
        send(server.acct, bad, timeout=0.05)
    reply = send(server.auth, good)
    assert reply is not None and reply[0] == packet.ACCESS_ACCEPT
    assert server.workers() == pids
    log = server.stop()
    assert "errors" not in log
    assert "malformed" in log


def test_changes_are_seen_without_a_restart_and_sighup_reloads_codes(server: Server) -> None:
    ok(run_cli("client", "add", "frank", "--postpaid", "--rate-table", "T", data=server.data))
    ok(run_cli("account", "add", "--client", "frank", "--username", "frank", data=server.data))
    deadline = time.monotonic() + 5
    reply = None
    while time.monotonic() < deadline:
        reply = send(server.auth, access_request("frank", "f-1"))
        if reply is not None and reply[0] == packet.ACCESS_ACCEPT:
            break
        time.sleep(0.2)
    assert reply is not None and reply[0] == packet.ACCESS_ACCEPT
    write(server.config, "[radius.return_codes]\nunknown_account = 42\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (r,) = radclient(server.auth, "auth", [call("nobody", "h-1")])
        if r is not None and vsa(r, "h323-return-code") == "42":
            break
        time.sleep(0.2)
    assert r is not None and vsa(r, "h323-return-code") == "42"
    assert "config reloaded" in server.stop()


def test_sigterm_stops_the_service_cleanly(world: Path, tmp_path: Path) -> None:
    s = start(world, write(tmp_path / "serve.toml", ""), "--workers", "3")
    try:
        pids = s.workers()
        assert len(pids) == 3
    finally:
        s.stop()
    assert s.proc.returncode == 0
    # The workers are gone too (not orphaned: they would outlive their parent's reaping).
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


# -- configuration and NAS entries

def test_config_check_names_a_bad_key(tmp_path: Path) -> None:
    good = write(tmp_path / "good.toml", "[serve]\nworkers = 4\n[[nas]]\naddress = "
                                         "\"10.0.0.0/8\"\nsecret = \"s\"\n")
    assert "good" in ok(run_cli("config", "check", str(good)))
    for text, said in (("[serve]\nworkerz = 4\n", "unknown key serve.workerz"),
                       ("[radius]\nauth_port = \"x\"\n", "radius.auth_port = 'x': int"),
                       ("[radius.return_codes]\nno_money = 3\n", "unknown key "
                                                                  "radius.return_codes.no_money"),
                       ("[[nas]]\naddress = \"10.0.0.300\"\nsecret = \"s\"\n", "not an IP"),
                       ("[serve\n", "Expected"),
                       ("[[nas]]\naddress = \"10.0.0.1\"\n", "nas.secret is needed")):
        bad = write(tmp_path / "bad.toml", text)
        proc = run_cli("config", "check", str(bad))
        assert said in failed(proc, "BAD_CONFIG", 78)
    proc = run_cli("config", "check", str(good), "--set", "serve.workerz=2")
    assert "unknown key serve.workerz" in failed(proc, "BAD_CONFIG", 78)


def test_every_default_is_written_in_the_defaults_file() -> None:
    text = ok(run_cli("config", "show", "--defaults"))
    import tomllib
    tree: dict[str, Any] = tomllib.loads(text)
    from rater.settings import load
    assert load().tree == tree
    # Each key says what it does: a comment above it, or above the keys just before it.
    lines = text.splitlines()
    key = re.compile(r"[a-z_]+\s*=")
    for at, line in enumerate(lines):
        if key.match(line):
            above = at - 1
            while key.match(lines[above]):
                above -= 1
            assert lines[above].startswith("#"), f"{line!r} has no comment"


def test_nas_entries_are_added_listed_deleted_and_audited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(run_cli("nas", "add", "192.0.2.0/24", "--secret", "s3cret", "--return-code",
           "no_rate=13", data=data))
    failed(run_cli("nas", "add", "192.0.2.7/24", "--secret", "x", data=data),
           "INVALID_ARGUMENT", 64)
    import json
    listed = json.loads(ok(run_cli("nas", "list", "--json", data=data)))
    assert listed == [{"network": "192.0.2.0/24", "secret": "********", "name": "",
                       "return_codes": {"no_rate": 13}}]
    failed(run_cli("nas", "add", "10.0.0.1", "--secret", "s", "--return-code", "nope=1", data=data),
           "INVALID_ARGUMENT", 64)
    failed(run_cli("nas", "add", "nonsense", "--secret", "s", data=data), "INVALID_ARGUMENT", 64)
    ok(run_cli("nas", "delete", "192.0.2.0/24", data=data))
    failed(run_cli("nas", "delete", "192.0.2.0/24", data=data), "UNKNOWN_NAS", 4)
    audit = json.loads(ok(run_cli("audit", "--json", data=data)))
    nas_changes = [(a["action"], a["name"]) for a in audit if a["kind"] == "nas"]
    assert nas_changes == [("add", "192.0.2.0/24"), ("delete", "192.0.2.0/24")]
    assert "s3cret" not in json.dumps(audit)


def test_free_minutes_at_zero_balance_and_a_low_balance_notice(world: Path,
                                                               tmp_path: Path) -> None:
    """radclient against the real server: zed has nothing in its wallet but 10 free
    minutes to the UK; the call that runs past them takes it below its threshold, and
    the first worker delivers one notice (counted in /metrics)."""
    from rater.bundles import parse_include
    from rater.subscriptions import Subscriptions

    data = tmp_path / "data"
    shutil.copytree(world, data)
    store = Store(data)
    try:
        Registry(store).add_client(Client(id=0, name="zed", currency="USD",
                                          rate_tables=[[None, "T"]],
                                          low_balance_threshold=0))
        Registry(store).add_account("zed", username="zed")
        subs = Subscriptions(store)
        subs.add_package("uk10", currency="USD", fee="0", included=[parse_include("10:44")])
        subs.subscribe("zed", "uk10", date(2000, 1, 1))
    finally:
        store.close()
    s = start(data, write(tmp_path / "serve.toml", ""))
    try:
        (r,) = radclient(s.auth, "auth", [call("zed", "z-1")])
        assert r is not None and (r["code"], r["Session-Timeout"]) == ("Access-Accept", "600")
        (other,) = radclient(s.auth, "auth", [call("zed", "z-2")])     # the 600 s are held
        assert other is not None and other["code"] == "Access-Reject"
        stop = call("zed", "z-1", **{"Acct-Status-Type": "Stop", "Acct-Session-Time": "630",
                                     "Event-Timestamp": str(int(time.time()))})
        (done,) = radclient(s.acct, "acct", [stop])
        assert done is not None and done["code"] == "Accounting-Response"
        for _ in range(60):                     # the notice: within a few seconds
            with urllib.request.urlopen(s.metrics, timeout=5) as page:
                text = page.read().decode()
            if 'rater_low_balance_notices_total{outcome="no-email"} 1.0' in text:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no low-balance notice counted")
    finally:
        s.stop()
    # 600 s free, 30 s at 0.02 a minute.
    assert balance(data, "zed") == Decimal("-0.01")
