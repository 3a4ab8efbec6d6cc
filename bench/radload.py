"""A RADIUS Access-Request load at a fixed rate (open loop), or as fast as it is answered
(closed loop), and each request's latency.

    python bench/radload.py PORT --secret S --rate 5000 --seconds 3 --users 1000
    python bench/radload.py PORT --secret S --rate 5000 --seconds 3 --closed 4

Every packet is built beforehand with pyrad (the rater dictionary, a
Message-Authenticator, its own Acct-Session-Id), so sending costs one ``send``.
The packets go out at the offered rate whether or not replies come back (open
loop: a slow server meets the same load, not a politer one), from ``--sockets``
source ports, packet ``i`` from socket ``i % sockets`` with identifier
``(i // sockets) % 256``. A reply is matched to its request by source port and
identifier, and its latency is its arrival less the moment its request was sent.

The loop wakes at most every :data:`TICK` seconds and then sends every packet due,
so packets go out in bursts of ``rate * TICK``; how far sending fell behind its
schedule is reported as ``lag`` (a generator starved of CPU shows there, not in the
server's latency). A request is lost when no reply came within ``--timeout``
seconds, or before its source port and identifier were used again
(``sockets * 256 / rate`` seconds later).

Closed loop (:func:`run_closed`, ``--closed WINDOW``): each source port keeps WINDOW
requests outstanding and sends its next one when one is answered (or lost); the
rate achieved is what the server sustains.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import selectors
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyrad.packet import AccessRequest, AuthPacket  # type: ignore[import-untyped]

from rater.radius import packet as wire

#: The longest the send loop sleeps, in seconds.
TICK = 0.0005


def build(n: int, secret: str, users: Sequence[str], tag: str, sockets: int,
) -> list[bytes]:
    """``n`` Access-Requests: user ``users[i % len(users)]``, session ``{tag}-{i}``, the
    identifier packet ``i`` will be sent with."""
    d = wire.dictionary()
    key = secret.encode()
    out = []
    for i in range(n):
        # A given authenticator: pyrad's own draws each byte through random.SystemRandom.
        p = AuthPacket(code=AccessRequest, id=(i // sockets) % 256, secret=key, dict=d,
                       authenticator=os.urandom(16))
        p["User-Name"] = users[i % len(users)]
        p["Called-Station-Id"] = "442079460000"
        p["Calling-Station-Id"] = "15550001"
        p["Acct-Session-Id"] = f"{tag}-{i}"
        p.add_message_authenticator()
        out.append(p.RequestPacket())
    return out


@dataclass
class Result:
    """What one run offered, achieved and measured (times in seconds)."""

    offered: float
    sent: int
    elapsed: float
    answered: int = 0
    accepted: int = 0
    strays: int = 0
    send_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    @property
    def achieved(self) -> float:
        """Requests sent per second, first send to last."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def latency(self, p: float) -> float:
        """The ``p`` percentile (nearest rank) of the answered requests' latencies."""
        if not self.latencies:
            return math.nan
        at = max(0, math.ceil(p / 100 * len(self.latencies)) - 1)
        return self.latencies[at]

    def summary(self) -> dict[str, float | int]:
        lag = sorted(self.lags)
        out: dict[str, float | int] = {}
        if math.isfinite(self.offered):
            out["offered_per_s"] = round(self.offered)
        return out | {
            "achieved_per_s": round(self.achieved),
            "sent": self.sent,
            "answered": self.answered,
            "accepted": self.accepted,
            "lost": self.lost,
            "p50_ms": round(self.latency(50) * 1000, 3),
            "p90_ms": round(self.latency(90) * 1000, 3),
            "p99_ms": round(self.latency(99) * 1000, 3),
            "max_ms": round(self.latency(100) * 1000, 3),
            "lag_p99_ms": round(lag[max(0, math.ceil(0.99 * len(lag)) - 1)] * 1000, 3)
            if lag else 0.0,
            "strays": self.strays,
            "send_errors": self.send_errors,
        }

    def line(self) -> str:
        s = self.summary()
        offered = f"offered {s['offered_per_s']:,}/s" if "offered_per_s" in s else "closed loop"
        return (f"{offered}, sent {s['sent']:,} at "
                f"{s['achieved_per_s']:,}/s, answered {s['answered']:,} (lost {s['lost']:,}); "
                f"latency p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms, "
                f"p99 {s['p99_ms']:.2f} ms, max {s['max_ms']:.2f} ms; "
                f"send lag p99 {s['lag_p99_ms']:.2f} ms")


def run(host: str, port: int, packets: Sequence[bytes], rate: float, sockets: int,
        timeout: float = 1.0) -> Result:
    """Send ``packets`` to host:port at ``rate`` a second from ``sockets`` source ports
    (as :func:`build` numbered them); the replies' latencies."""
    socks = _sockets(host, port, sockets)
    sel = selectors.DefaultSelector()
    for s, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ, s)
    n = len(packets)
    sent_at = [0.0] * n
    pending: dict[tuple[int, int], int] = {}
    result = Result(offered=rate, sent=0, elapsed=0.0)
    clock = time.perf_counter
    interval = 1.0 / rate
    try:
        t0 = clock()
        nxt = 0
        last = t0
        while True:
            now = clock()
            if nxt < n:
                due = min(n, int((now - t0) * rate) + 1)
                while nxt < due:
                    s = nxt % sockets
                    pending[(s, (nxt // sockets) % 256)] = nxt
                    t = clock()
                    sent_at[nxt] = t
                    result.lags.append(max(0.0, t - (t0 + nxt * interval)))
                    try:
                        socks[s].send(packets[nxt])
                    except OSError:
                        result.send_errors += 1
                    nxt += 1
                last = clock()
                wait = min(TICK, max(0.0, t0 + nxt * interval - clock()))
            else:
                if not pending or now - last > timeout:
                    break
                wait = min(0.05, max(0.0, last + timeout - now))
            for key, _ in sel.select(wait):
                s = key.data
                for t, data in _replies(key.fileobj, result):  # type: ignore[arg-type]
                    i = pending.pop((s, data[1]), None)
                    if i is None:
                        result.strays += 1
                        continue
                    result.answered += 1
                    result.accepted += data[0] == wire.ACCESS_ACCEPT
                    result.latencies.append(t - sent_at[i])
        result.sent = nxt
        result.elapsed = last - t0
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    result.latencies.sort()
    return result


def run_closed(host: str, port: int, packets: Sequence[bytes], sockets: int, window: int,
               timeout: float = 1.0) -> Result:
    """Send ``packets`` as fast as they are answered: each of ``sockets`` source ports keeps
    ``window`` (at most 256) requests outstanding and sends its next packet when one is
    answered or lost (closed loop: the throughput the server sustains)."""
    assert 0 < window <= 256
    socks = _sockets(host, port, sockets)
    sel = selectors.DefaultSelector()
    for s, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ, s)
    n = len(packets)
    sent_at = [0.0] * n
    # Per socket: outstanding requests by identifier, oldest first (dicts keep order).
    pending: list[dict[int, int]] = [{} for _ in range(sockets)]
    nxt = list(range(sockets))  # the next packet each socket sends
    result = Result(offered=math.inf, sent=0, elapsed=0.0)
    clock = time.perf_counter

    def send(s: int) -> None:
        i = nxt[s]
        if i >= n:
            return
        nxt[s] = i + sockets
        pending[s][(i // sockets) % 256] = i
        sent_at[i] = clock()
        result.sent += 1
        try:
            socks[s].send(packets[i])
        except OSError:
            result.send_errors += 1

    try:
        t0 = clock()
        for s in range(sockets):
            for _ in range(window):
                send(s)
        while any(pending):
            for key, _ in sel.select(0.05):
                s = key.data
                for t, data in _replies(key.fileobj, result):  # type: ignore[arg-type]
                    i = pending[s].pop(data[1], None)
                    if i is None:
                        result.strays += 1
                        continue
                    result.answered += 1
                    result.accepted += data[0] == wire.ACCESS_ACCEPT
                    result.latencies.append(t - sent_at[i])
                    send(s)
            now = clock()
            for s in range(sockets):
                while pending[s]:
                    ident, i = next(iter(pending[s].items()))
                    if now - sent_at[i] < timeout:
                        break
                    del pending[s][ident]
                    send(s)
        result.elapsed = clock() - t0
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    result.latencies.sort()
    return result


def _replies(sock: socket.socket, result: Result) -> Iterator[tuple[float, bytes]]:
    """Each reply waiting on ``sock`` (at least a RADIUS header), with when it was read;
    shorter datagrams count as strays, receive errors as send errors."""
    while True:
        try:
            data = sock.recv(wire.MAX_PACKET)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            result.send_errors += 1
            return
        t = time.perf_counter()
        if len(data) < 20:
            result.strays += 1
            continue
        yield t, data


def _sockets(host: str, port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, 0))
        sock.connect((host, port))
        sock.setblocking(False)
        socks.append(sock)
    return socks


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--rate", type=float, default=5000, help="requests a second")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--users", type=int, default=1000,
                    help="User-Names pp00000 .. (as bench/test_radius.py creates them)")
    ap.add_argument("--sockets", type=int, default=16, help="source ports")
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--tag", default=f"load{int(time.time())}",
                    help="Acct-Session-Id prefix (a new one gets new reservations)")
    ap.add_argument("--closed", type=int, metavar="WINDOW",
                    help="closed loop instead: WINDOW requests outstanding a socket, "
                         "rate * seconds requests in all")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    users = [f"pp{k:05d}" for k in range(args.users)]
    packets = build(int(args.rate * args.seconds), args.secret, users, args.tag, args.sockets)
    if args.closed:
        result = run_closed(args.host, args.port, packets, args.sockets, args.closed,
                            args.timeout)
    else:
        result = run(args.host, args.port, packets, args.rate, args.sockets, args.timeout)
    print(json.dumps(result.summary()) if args.json else result.line())


if __name__ == "__main__":
    main()
