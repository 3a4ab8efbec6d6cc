"""``/metrics`` of ``rater serve``, scraped over HTTP and parsed with prometheus_client's
parser: the counts of two workers add up to what was sent."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from conftest import write
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families
from test_radius_serve import (
    Server,
    access_request,
    call,
    ensure_radclient,
    populate,
    radclient,
    send,
    start,
)

from rater.metrics import BUCKETS, Tally
from rater.radius import packet
from rater.v1 import rating_pb2, rating_pb2_grpc


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, labels) -> value."""
    with urllib.request.urlopen(server.metrics, timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_radclient()
    d = tmp_path_factory.mktemp("metrics") / "data"
    populate(d)
    return d


def test_counts_of_every_worker_add_up(data: Path, tmp_path: Path) -> None:
    server = start(data, write(tmp_path / "serve.toml", ""), "--workers", "2")
    try:
        def caller(k: int) -> None:
            for j in range(10):
                reply = send(server.auth, access_request("bob", f"m-{k}-{j}"), timeout=3)
                assert reply is not None and reply[0] == packet.ACCESS_ACCEPT

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rejects = radclient(server.auth, "auth", [call("nobody", "x-1"), call("carol", "x-2")])
        assert [r["code"] for r in rejects if r] == ["Access-Reject"] * 2
        assert send(server.auth, b"\x01\x00\x00\x05junk", timeout=0.3) is None
        assert send(server.auth, access_request("bob", "u-1"), source="127.0.0.2",
                    timeout=0.3) is None
        stop = call("bob", "m-0-0", **{"Acct-Status-Type": "Stop", "Acct-Session-Time": "30"})
        assert radclient(server.acct, "acct", [stop])[0] is not None
        with grpc.insecure_channel(server.grpc_address()) as channel:
            rating = rating_pb2_grpc.RatingServiceStub(channel)
            for _ in range(3):
                rating.Rate(rating_pb2.RateRequest(table="T", number="44", duration_seconds=1),
                            timeout=5)
            with pytest.raises(grpc.RpcError):
                rating.Rate(rating_pb2.RateRequest(table="T", number="", duration_seconds=1),
                            timeout=5)
        m = scrape(server)
        # The store's gauges are read by worker 1 every few seconds: wait for the Stop's
        # journal entry (four payments before it).
        deadline = time.monotonic() + 15
        while m.get(("rater_journal_entries", ()), 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
            m = scrape(server)
    finally:
        log = server.stop()

    def value(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("rater_authorizations_total", outcome="accepted") == 80
    assert value("rater_authorizations_total", outcome="unknown_account") == 1
    assert value("rater_authorizations_total", outcome="client_blocked") == 1
    assert value("rater_requests_total", agent="radius", method="access") == 82
    assert value("rater_request_seconds_count", agent="radius", method="access") == 82
    assert value("rater_request_seconds_bucket", agent="radius", method="access",
                 le="+Inf") == 82
    assert 0 < value("rater_request_seconds_sum", agent="radius", method="access") < 82
    assert value("rater_accounting_total", outcome="billed") == 1
    assert value("rater_dropped_packets_total", reason="malformed") == 1
    assert value("rater_dropped_packets_total", reason="unknown-nas") == 1
    assert value("rater_requests_total", agent="grpc", method="Rate") == 4
    assert value("rater_request_seconds_count", agent="grpc", method="Rate") == 4
    assert value("rater_errors_total", code="INVALID_ARGUMENT") == 1
    # Two workers answered: the sums above are over both.
    assert "worker 1: access-" in log and "worker 2: access-" in log, log
    # Gauges of the store.
    assert value("rater_deck_version", table="T") >= 1
    assert value("rater_deck_bytes", table="T") > 0
    assert value("rater_lmdb_map_bytes") >= value("rater_lmdb_used_bytes") > 0
    assert value("rater_journal_entries") == 5
    # 79 of bob's calls are still in progress (one stopped); bob is postpaid without a
    # capacity, so none of his calls is registered.
    assert ("rater_calls_in_progress", ()) in m
    assert value("rater_calls_in_progress") == 0


def test_metrics_can_be_turned_off(data: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "serve.toml", "[metrics]\nenabled = false\n")
    s = start(data, config)
    try:
        assert s.ready.startswith("rater serve: RADIUS") and "metrics" not in s.ready
        assert s.metrics == ""
    finally:
        s.stop()
    assert s.proc.returncode == 0


def test_the_dashboard_and_alerts_name_only_exported_metrics() -> None:
    from conftest import ROOT
    from prometheus_client import CollectorRegistry

    from rater import metrics

    registry = CollectorRegistry()
    m = metrics.Metrics(registry)
    exported = set()
    for collector in vars(m).values():
        if hasattr(collector, "describe"):
            for family in collector.describe():
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                            "gauge": [""]}[family.type]
                exported |= {family.name + x for x in suffixes}
    monitoring = ROOT / "docs" / "monitoring"
    used = set()
    for f in ("grafana-dashboard.json", "rater-alerts.yml"):
        used |= set(re.findall(r"\brater_[a-z_]+", (monitoring / f).read_text()))
    assert len(exported) == 15          # 6 counters, a histogram (3 series), 6 gauges
    assert used and used <= exported, used - exported


@given(st.lists(st.tuples(st.sampled_from([*BUCKETS, 0.0, 0.00005, 0.0007, 0.3, 2.0]),
                          st.integers(min_value=1, max_value=5)), max_size=20))
@settings(max_examples=50, deadline=None)
def test_a_tally_writes_what_observing_each_request_would(
        answers: list[tuple[float, int]]) -> None:
    """Tally writes into a Histogram's own counters: the samples must be those of
    observe() called once per request (bucket bounds included)."""
    registry = CollectorRegistry()
    tallied = Histogram("tallied", "", ["k"], buckets=BUCKETS, registry=registry)
    observed = Histogram("observed", "", ["k"], buckets=BUCKETS, registry=registry)
    count = Counter("count", "", ["k"], registry=registry)
    tally = Tally(count.labels("x"), tallied.labels("x"), count.labels("y"))
    each = observed.labels("x")
    for seconds, n in answers:
        tally.observe(seconds, n)
        for _ in range(n):
            each.observe(seconds)
    tally.flush()

    def samples(name: str) -> list[tuple[str, str, float]]:
        return [(s.name.removeprefix(name), s.labels.get("le", ""), round(s.value, 9))
                for m in registry.collect() if m.name == name for s in m.samples
                if not s.name.endswith("_created")]

    assert samples("tallied") == samples("observed")
    total = sum(n for _, n in answers)
    assert registry.get_sample_value("count_total", {"k": "x"}) == total
    assert registry.get_sample_value("count_total", {"k": "y"}) == total
