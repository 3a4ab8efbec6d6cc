"""``rater serve``: the RADIUS agent, in worker processes sharing its ports.

The supervisor forks ``serve.workers`` workers. Each binds the auth and acct
ports itself with SO_REUSEPORT (the kernel spreads packets over them by source
address and port), opens its own LMDB environment (never across a fork) and
answers what its sockets hold, a batch at a time: decode, decide
(:class:`CallControl`; a batch's Access-Requests in one transaction), commit,
reply. A packet it cannot use is dropped and counted by reason; an unexpected
error in one packet is logged and counted, and the worker goes on.

Signals: SIGTERM (or SIGINT) stops the workers after the packet in hand and
then the supervisor; SIGHUP reads the config again (a bad one is reported and
the old one kept) and passes it on. A worker that dies is started again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import metrics
from .._radius import Datagrams
from ..errors import ConfigError, RaterError
from ..metrics import Metrics, Tally
from ..nas import Nas, NasTable, nas_generation
from ..notifications import deliver
from ..settings import Settings, load
from ..store import GroupSync, Store
from . import packet
from .control import Call, CallControl, Decision

log = logging.getLogger("rater.serve")

#: Seconds a worker gets to finish the packet in hand after SIGTERM.
STOP_TIMEOUT = 10.0
#: Seconds the supervisor waits for its workers to bind.
READY_TIMEOUT = 30.0
#: Packets a worker takes from a socket at a time (Access-Requests among them are
#: decided in one write transaction).
BATCH = 64
#: Seconds between deliveries of the low-balance notices (by worker 1).
NOTICES_EVERY = 5.0


@dataclass
class Counters:
    """A worker's packets: answered by kind, dropped by reason, errors."""

    answered: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    #: The Prometheus side, when metrics are on.
    metrics: Metrics | None = None
    _tallies: dict[str, Tally] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.dropped.labels(reason).inc()

    def answer(self, method: str, outcome: str, seconds: float, n: int = 1) -> None:
        """Count ``n`` answers given ``seconds`` after their requests arrived (kept until
        :meth:`flush`, for the metrics)."""
        key = f"{method}-{outcome}"
        self.answered[key] = self.answered.get(key, 0) + n
        m = self.metrics
        if m is not None:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = Tally(
                    m.requests.labels("radius", method), m.latency.labels("radius", method),
                    (m.authorizations if method == "access" else m.accounting).labels(outcome))
            tally.observe(seconds, n)

    def flush(self) -> None:
        """Write the answers counted so far to the metrics."""
        for tally in self._tallies.values():
            tally.flush()

    def fail(self, code: str) -> None:
        self.errors += 1
        if self.metrics is not None:
            self.metrics.errors.labels(code).inc()

    def line(self) -> str:
        parts = [f"{k} {v}" for k, v in sorted(self.answered.items())]
        dropped = sum(self.dropped.values())
        text = ", ".join(parts) or "nothing answered"
        if dropped:
            text += f"; dropped {dropped} (" + ", ".join(
                f"{k} {v}" for k, v in sorted(self.dropped.items())) + ")"
        if self.errors:
            text += f"; {self.errors} errors"
        return text


def cisco_time(text: str | None) -> int | None:
    """A Cisco h323 time (``14:45:59.131 UTC Mon Jan 10 2011``, maybe after ``*`` or ``.``,
    the gateway's mark of an unsynchronised clock) as UNIX seconds; None if unreadable."""
    if not text:
        return None
    s = text.strip().lstrip("*.")
    parts = s.split()
    if len(parts) != 6 or parts[1] not in ("UTC", "GMT"):
        return None
    clock = parts[0].split(".")[0]
    try:
        t = datetime.strptime(f"{clock} {parts[3]} {parts[4]} {parts[5]}", "%H:%M:%S %b %d %Y")
    except ValueError:
        return None
    return int((t - datetime(1970, 1, 1)).total_seconds())


class Worker:
    """One process's RADIUS agent."""

    def __init__(self, settings: Settings, data_dir: Path, config_path: str | None,
                 overrides: dict[str, str], number: int) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.config_path = config_path
        self.overrides = overrides
        self.number = number
        self.counters = Counters(metrics=Metrics() if settings.metrics_enabled else None)
        grouped = settings.storage.sync and settings.sync_interval_ms > 0
        storage = replace(settings.storage, sync=False) if grouped else settings.storage
        self.store = Store(data_dir, storage)
        self.group = GroupSync(self.store, settings.sync_interval_ms / 1000) if grouped else None
        #: Accounting-Responses waiting for the group sync of their commit: when it was
        #: made, the socket, the reply, the address to send it to.
        self._waiting: list[tuple[float, socket.socket, bytes, bytes]] = []
        #: Datagrams in and out, a batch per system call.
        self._datagrams = Datagrams()
        self.control = CallControl(self.store, settings.reservation_grace)
        #: Held while the call control decides: the gRPC threads share it.
        self.lock = threading.Lock()
        self._nas_generation = nas_generation(self.store)
        self._notices_at = 0.0
        self._notifier: threading.Thread | None = None
        self.nas = NasTable.of(self.store, settings)
        self._stop = False
        self._reload = False
        self.auth = self._bind(settings.auth_port)
        self.acct = self._bind(settings.acct_port)
        self.grpc: Any = None
        if settings.grpc_enabled:
            # Imported here: gRPC must not be set up in the supervisor before it forks.
            from ..rpc import GrpcAgent

            self.grpc = GrpcAgent(self.store, settings.listen, settings.grpc_port,
                                  settings.grpc_threads, settings.grpc_grace, self.control,
                                  self.lock, settings.grpc_tls, settings.grpc_token,
                                  self.counters.metrics, self.group)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(family(self.settings.listen), socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((self.settings.listen, port))
        sock.setblocking(False)
        return sock

    # -- the loop

    def run(self, ready: int | None = None) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        sel = selectors.DefaultSelector()
        sel.register(self.auth, selectors.EVENT_READ, True)
        sel.register(self.acct, selectors.EVENT_READ, False)
        sel.register(wake_r, selectors.EVENT_READ, None)
        if self.grpc is not None:
            self.grpc.start()
        if ready is not None:
            os.write(ready, b"r")
            os.close(ready)
        last_check = time.monotonic()
        parent = os.getppid()
        try:
            while not self._stop:
                wait = 0.5 if not self._waiting or self.group is None else self.group.interval
                for key, _ in sel.select(timeout=wait):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 512)
                        continue
                    self._drain(key.fileobj, key.data)  # type: ignore[arg-type]
                self._answer_synced()
                if self._reload:
                    self._reload = False
                    self._reread()
                if time.monotonic() - last_check >= 0.5:
                    last_check = time.monotonic()
                    self._keep_up()
                    if os.getppid() != parent:
                        # The supervisor is gone: no worker serves unsupervised.
                        log.error("worker %d: the supervisor is gone; stopping", self.number)
                        self._stop = True
                    if self.group is not None and self.group.failed is not None:
                        raise RaterError(f"the disk refused a sync: {self.group.failed}")
        finally:
            if self.grpc is not None:
                self.grpc.stop()
            if self.group is not None:
                self.group.close()
            self._answer_synced()
            self.counters.flush()
            log.info("worker %d: %s", self.number, self.counters.line())
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            sel.close()
            self.auth.close()
            self.acct.close()
            self.control.close()
            self.store.close()

    def _on_stop(self, *_: Any) -> None:
        self._stop = True

    def _on_reload(self, *_: Any) -> None:
        self._reload = True

    def _drain(self, sock: socket.socket, auth: bool) -> None:
        """Answer the packets waiting on a socket (up to a batch, then back to the loop).

        Access-Requests of one batch are decided together: those that reserve share
        one write transaction (one commit, one turn of the writer lock).
        """
        began = time.perf_counter()
        batch = self._datagrams.receive(sock.fileno(), BATCH)
        if not batch:
            return
        if auth:
            replies = self.handle_access([(data, source) for data, source, _ in batch], began)
        else:
            replies = [self.handle_accounting(data, source) for data, source, _ in batch]
        now = time.monotonic()
        out = []
        for (_, _, addr), reply in zip(batch, replies, strict=True):
            if reply is None:
                continue
            if not auth and self.group is not None:
                # Billed money: answered once the disk has it.
                self._waiting.append((now, sock, reply, addr))
            else:
                out.append((reply, addr))
        self._datagrams.send(sock.fileno(), out)
        self.counters.flush()

    def _answer_synced(self) -> None:
        if not self._waiting or self.group is None:
            return
        synced = self.group.synced
        due: dict[socket.socket, list[tuple[bytes, bytes]]] = {}
        keep = []
        for item in self._waiting:
            if item[0] < synced:
                due.setdefault(item[1], []).append((item[2], item[3]))
            else:
                keep.append(item)
        self._waiting = keep
        for sock, replies in due.items():
            self._datagrams.send(sock.fileno(), replies)

    def _keep_up(self) -> None:
        if self.counters.metrics is not None and self.number == 1:
            try:
                self.counters.metrics.read_store(self.store)
            except Exception:
                log.exception("worker %d: metrics of the store not read", self.number)
        generation = nas_generation(self.store)
        if generation != self._nas_generation:
            self._nas_generation = generation
            try:
                self.nas = NasTable.of(self.store, self.settings)
            except ConfigError as exc:
                log.error("worker %d: NAS entries not reloaded: %s", self.number, exc)
        with self.lock:
            self.control.refresh()
        if (self.number == 1 and time.monotonic() >= self._notices_at
                and not (self._notifier and self._notifier.is_alive())):
            # In a thread of its own: a slow SMTP server holds up no answer.
            self._notices_at = time.monotonic() + NOTICES_EVERY
            self._notifier = threading.Thread(target=self._deliver, name="notices",
                                              daemon=True)
            self._notifier.start()

    def _deliver(self) -> None:
        try:
            deliver(self.store, self.settings.mail, None if self.counters.metrics is None
                    else self.counters.metrics.low_balance)
        except Exception:
            log.exception("worker %d: low-balance notices not delivered", self.number)

    def _reread(self) -> None:
        try:
            settings = load(self.config_path, self.overrides)
            nas = NasTable.of(self.store, settings)
        except ConfigError as exc:
            log.error("worker %d: config not reloaded: %s", self.number, exc)
            return
        self.settings = as_started(settings, self.settings)
        self.nas = nas
        with self.lock:
            self.control.grace = settings.reservation_grace
            self.control.refresh(force=True)
        log.info("worker %d: config reloaded", self.number)

    # -- one packet

    def _read(self, data: bytes, source: str, auth: bool
              ) -> tuple[packet.Request, Call, Nas] | None:
        """A packet from ``source`` decoded and checked (None: dropped, and counted)."""
        if source.startswith("::ffff:"):
            source = source[7:]
        nas = self.nas.find(source)
        if nas is None:
            self.counters.drop("unknown-nas")
            return None
        try:
            req = packet.decode(data, nas.secret, self.settings.require_message_authenticator)
        except packet.Dropped as exc:
            self.counters.drop(exc.reason)
            log.debug("dropped a packet from %s: %s", source, exc)
            return None
        want = packet.ACCESS_REQUEST if auth else packet.ACCOUNTING_REQUEST
        if req.code != want:
            self.counters.drop("wrong-port")
            return None
        call = Call(nas=source, user_name=req.user_name or "", password=req.password,
                    calling=req.calling or "", called=req.called or "",
                    session_id=req.session_id or "")
        return req, call, nas

    def handle_access(self, packets: list[tuple[bytes, str]], began: float | None = None
                      ) -> list[bytes | None]:
        """The replies to Access-Requests (None: dropped), decided together; ``began``:
        when they arrived (perf_counter)."""
        began = time.perf_counter() if began is None else began
        read = [self._read(data, source, True) for data, source in packets]
        good = [r for r in read if r is not None]
        decisions = self._decide([call for _, call, _ in good])
        replies: list[bytes | None] = []
        answers = iter(zip(good, decisions, strict=True))
        outcomes: dict[str, int] = {}
        for r in read:
            if r is None:
                replies.append(None)
                continue
            (req, _, nas), decision = next(answers)
            if decision is None:
                replies.append(None)
                continue
            code, attrs = self.access_reply(decision, nas)
            try:
                replies.append(packet.encode_reply(req, code, nas.secret, attrs))
            except ValueError as exc:
                # Too long once its Proxy-States are copied back: dropped, like the request.
                self.counters.drop("oversized")
                log.debug("reply to %s not sent: %s", r[1].nas, exc)
                replies.append(None)
                continue
            outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
        # A batch is answered at once: one latency for all its requests.
        seconds = time.perf_counter() - began
        for outcome, n in outcomes.items():
            self.counters.answer("access", outcome, seconds, n)
        return replies

    def _decide(self, calls: list[Call]) -> list[Decision | None]:
        """Decisions for calls, together; if that fails, one by one, so one call that
        cannot be decided (None) does not cost the others their answer."""
        try:
            with self.lock:
                return list(self.control.authorize_many(calls))
        except Exception:
            if len(calls) == 1:
                self._failed("Access-Request")
                return [None]
        out: list[Decision | None] = []
        for call in calls:
            try:
                with self.lock:
                    out.append(self.control.authorize(call))
            except Exception:
                self._failed("Access-Request")
                out.append(None)
        return out

    def _failed(self, what: str) -> None:
        """Count and log the exception being handled (a worker never stops for one)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, RaterError):
            self.counters.fail(exc.code)
            log.error("worker %d: %s: %s", self.number, what, exc)
        else:
            self.counters.fail("INTERNAL")
            log.exception("worker %d: %s failed", self.number, what)

    def handle_accounting(self, data: bytes, source: str) -> bytes | None:
        """The reply to an Accounting-Request from ``source`` (None: dropped)."""
        began = time.perf_counter()
        read = self._read(data, source, False)
        if read is None:
            return None
        req, call, nas = read
        try:
            if not req.session_id or req.status_type is None:
                self.counters.drop("malformed")
                return None
            with self.lock:
                outcome = self.control.account(
                    call, req.status_type, req.session_time or 0,
                    # Without an Event-Timestamp, the Stop happened when it was sent,
                    # which is Acct-Delay-Time before it arrived (RFC 2866 5.2).
                    req.event_time if req.event_time is not None
                    else int(time.time()) - (req.delay_time or 0),
                    cisco_time(req.cisco.get("h323-connect-time")),
                    cisco_time(req.cisco.get("h323-setup-time")))
        except Exception:
            self._failed(f"Accounting-Request from {source}")
            return None
        try:
            reply = packet.encode_reply(req, packet.ACCOUNTING_RESPONSE, nas.secret, [])
        except ValueError as exc:
            self.counters.drop("oversized")
            log.debug("reply to %s not sent: %s", source, exc)
            return None
        self.counters.answer("accounting", outcome, time.perf_counter() - began)
        return reply

    def access_reply(self, d: Decision, nas: Nas) -> tuple[int, list[tuple[str, str | int]]]:
        code = nas.codes[d.outcome]
        if not d.accepted:
            return packet.ACCESS_REJECT, [("Reply-Message", d.message),
                                          ("h323-return-code", code)]
        attrs: list[tuple[str, str | int]] = [("Session-Timeout", d.seconds),
                                              ("h323-credit-time", str(d.seconds))]
        if d.credit is not None:
            attrs.append(("h323-credit-amount", d.credit_text()))
        attrs += [("h323-currency", d.currency),
                  ("h323-billing-model", "1" if d.prepaid else "0"),
                  ("h323-return-code", code)]
        return packet.ACCESS_ACCEPT, attrs


# -- the supervisor

def as_started(loaded: Settings, started: Settings) -> Settings:
    """Settings read again (SIGHUP) with what only a restart changes kept as started: the
    address, ports and workers, storage, the gRPC agent and the metrics endpoint."""
    return replace(loaded, **{name: getattr(started, name) for name in (
        "listen", "workers", "auth_port", "acct_port", "storage", "sync_interval_ms",
        "metrics_enabled", "metrics_port", "grpc_enabled", "grpc_port", "grpc_threads",
        "grpc_grace", "grpc_tls", "grpc_token")})


def family(listen: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in listen else socket.AF_INET


def free_ports(listen: str, kinds: list[socket.SocketKind]) -> list[int]:
    """A free port for each socket kind (SOCK_DGRAM, SOCK_STREAM): all bound at once, so
    no two of the same kind are the same port."""
    socks: list[socket.socket] = []
    try:
        for kind in kinds:
            socks.append(socket.socket(family(listen), kind))
            socks[-1].bind((listen, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def serve(settings: Settings, data_dir: Path, config_path: str | None = None,
          overrides: dict[str, str] | None = None) -> int:
    """Run the agent until SIGTERM or SIGINT; the exit status."""
    overrides = dict(overrides or {})
    # Ports of 0: one free port each, the same for every worker (and kept on SIGHUP).
    unset = [(name, kind) for name, kind, on in (
        ("auth_port", socket.SOCK_DGRAM, True), ("acct_port", socket.SOCK_DGRAM, True),
        ("metrics_port", socket.SOCK_STREAM, settings.metrics_enabled),
        ("grpc_port", socket.SOCK_STREAM, settings.grpc_enabled))
        if on and getattr(settings, name) == 0]
    ports = free_ports(settings.listen, [kind for _, kind in unset])
    chosen: dict[str, Any] = {name: port for (name, _), port in zip(unset, ports, strict=True)}
    settings = replace(settings, **chosen)
    # Errors in the NAS entries are found before any worker starts.
    with Store(data_dir, settings.storage) as store:
        nas = NasTable.of(store, settings)
    metrics_dir = None
    if settings.metrics_enabled:
        metrics_dir = Path(tempfile.mkdtemp(prefix="rater-metrics-"))
        metrics.prepare(metrics_dir)
    if not len(nas):
        log.warning("no NAS entries: every packet will be dropped (rater nas add ADDRESS "
                    "--secret S)")
    stopping = False
    reload = False

    def on_stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    def on_reload(*_: Any) -> None:
        nonlocal reload
        reload = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    workers: dict[int, int] = {}
    # What a worker started now runs with: the settings last loaded (SIGHUP), with the
    # address, ports and storage it started with.
    current = settings
    http: Any = None

    def start(number: int) -> int:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            if http is not None:
                http.socket.close()            # the supervisor's, not the worker's
            status = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                Worker(current, data_dir, config_path, overrides, number).run(ready_w)
            except BaseException as exc:
                log.error("worker %d: %s", number, exc)
                status = 1
            finally:
                logging.shutdown()
                os._exit(status)
        os.close(ready_w)
        os.set_blocking(ready_r, True)
        ok = _wait_ready(ready_r)
        os.close(ready_r)
        if not ok:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise RaterError(f"worker {number} did not start (port in use?)")
        return pid

    try:
        for n in range(1, settings.workers + 1):
            workers[start(n)] = n
        if settings.metrics_enabled:
            try:
                http = metrics.serve_http(settings.listen, settings.metrics_port)
            except OSError as exc:
                raise RaterError(f"metrics port {settings.metrics_port}: {exc.strerror}",
                                 hint="--metrics-port P, or metrics.enabled = false") from None
    except RaterError:
        _stop_all(workers)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    shown = (f"; gRPC {settings.listen}:{settings.grpc_port}" if settings.grpc_enabled else "")
    shown += (f"; metrics http://{settings.listen}:{settings.metrics_port}/metrics"
              if settings.metrics_enabled else "")
    print(f"rater serve: RADIUS auth {settings.listen}:{settings.auth_port}, acct "
          f"{settings.listen}:{settings.acct_port}; {settings.workers} workers; "
          f"{len(nas)} NAS entries{shown}", flush=True)
    # Workers that stopped and could not be started again: when to try next, and the wait.
    missing: dict[int, tuple[float, float]] = {}
    while not stopping:
        if reload:
            reload = False
            try:
                loaded = load(config_path, overrides)
            except ConfigError as exc:
                log.error("config not reloaded: %s", exc)
            else:
                current = as_started(loaded, current)
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGHUP)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if pid and pid in workers and not stopping:
            number = workers.pop(pid)
            if metrics_dir is not None:
                metrics.process_gone(pid)
            log.error("worker %d stopped (status %d); starting it again", number, status)
            missing[number] = (time.monotonic(), 1.0)
        for number, (due, wait) in list(missing.items()):
            if time.monotonic() >= due and not stopping:
                try:
                    workers[start(number)] = number
                    del missing[number]
                except RaterError as exc:
                    log.error("%s; trying again in %.0f s", exc, wait)
                    missing[number] = (time.monotonic() + wait, min(wait * 2, 30.0))
        time.sleep(0.05)
    _stop_all(workers)
    if http is not None:
        http.shutdown()
    if metrics_dir is not None:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    print("rater serve: stopped", flush=True)
    return 0


def _wait_ready(fd: int) -> bool:
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                return os.read(fd, 1) == b"r"
        return False
    finally:
        sel.close()


def _stop_all(workers: dict[int, int]) -> None:
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while workers and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            workers.pop(pid, None)
        else:
            time.sleep(0.02)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    workers.clear()


def setup_logging(debug: bool) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
