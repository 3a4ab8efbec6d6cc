"""Speed of bill runs: a production run, and PDF rendering apart, each against a baseline.

    python -m pytest bench/test_invoicing.py --benchmark-json=b.json
    python bench/report.py b.json

bill_run     A production run (no PDFs) of October 2026 for 10,000 postpaid clients
             and 10,000,000 rated calls over 200 destinations, every client with a
             19% tax (half in UTC, half in Europe/Berlin): read the movements once,
             make 10,000 drafts with their lines, number and issue them, post
             10,000 invoice entries to the journal, write the CSV files and the
             XLSX control report. Each round runs on a fresh copy of the data
             directory (the copy is not timed). Baseline: one SQL read of the same
             movements summing each client's amounts, the least any bill run does.
pdf          Rendering 100 of those invoices to PDF in 2 processes; baseline: the
             same in 1 process.

The fixture (not timed) writes the calls straight into the journal, as an import
would after pricing them, and tails them into the ledger; it is kept in
$RATER_BENCH_CACHE (default ~/.cache/rater-bench) for the next run. The data
has no call records beside the journal, so `rater check` is not run on it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from measure import items

from rater.billrun import BillRuns, Selection
from rater.clients import Client, Registry
from rater.config import StorageConfig
from rater.documents import invoice_html, render_many
from rater.invoices import Invoicing, Issuer
from rater.journal import Entry, append
from rater.ledger import Ledger
from rater.store import Store

CLIENTS = 10_000
CALLS = 10_000_000
DESTINATIONS = 200
OCTOBER = 1_790_812_800          # 2026-10-01T00:00:00Z
CHUNK = 200_000
PDFS = 100


def _generate(data: Path) -> None:
    store = Store(data, StorageConfig(sync=False))
    reg = Registry(store)

    def clients(txn: object) -> None:
        for c in range(CLIENTS):
            reg.add_client(Client(id=0, name=f"client{c:05d}", currency="EUR",
                                  mode="postpaid", taxes=[["VAT", "19"]],
                                  timezone="UTC" if c % 2 else "Europe/Berlin"), txn)

    store.write(clients)
    rng = np.random.default_rng(7)
    at = OCTOBER + 31 * 86400 + 3600
    for start in range(0, CALLS, CHUNK):
        n = min(CHUNK, CALLS - start)
        who = (rng.integers(0, CLIENTS, n) + 1).tolist()
        dest = rng.integers(0, DESTINATIONS, n).tolist()
        # Inside October in every zone: from the 1st 02:00 UTC to the 31st 20:00 UTC.
        when = (OCTOBER + 7200 + rng.integers(0, 30 * 86400 - 7200 - 14400, n)).tolist()
        secs = rng.integers(1, 600, n).tolist()
        entries = [Entry(0, "rated-call", who[i], -(secs[i] * 211_111), at, when[i], None,
                         None, None, ["bench", f"c{start + i}", 0, "4930123456", when[i],
                                      secs[i], secs[i], "4930", f"Destination {dest[i]:03d}",
                                      "T", 0, secs[i] * 211_111, None])
                   for i in range(n)]
        store.write(lambda txn, entries=entries: append(store, txn, entries))
    with Ledger(store) as ledger:
        ledger.tail()
    store.close()


@pytest.fixture(scope="module")
def source() -> Path:
    cache = Path(os.environ.get("RATER_BENCH_CACHE", Path.home() / ".cache" / "rater-bench"))
    data = cache / f"invoicing-{CLIENTS}-{CALLS}"
    if not (data / "ready").exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        _generate(data)
        (data / "ready").write_text("")
    with Store(data) as store, Ledger(store) as ledger:
        invoicing = Invoicing(ledger)
        if not invoicing.issuers():
            invoicing.add_issuer(Issuer("Rater Telecom", "Keizersgracht 1\nAmsterdam",
                                        "NL123456789B01"))
    return data


@pytest.fixture
def fresh(source: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of the data directory, for runs that issue."""
    def copy() -> tuple[tuple[Path], dict[str, object]]:
        target = tmp_path / "data"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        return (target,), {}
    return copy


@pytest.mark.benchmark(group="bill_run")
def test_production_run(benchmark, fresh) -> None:  # type: ignore[no-untyped-def]
    lines: list[int] = []

    def run(data: Path) -> None:
        with Store(data) as store, Ledger(store) as ledger:
            runs = BillRuns(store, ledger)
            done = runs.execute(runs.create("production", "2026-10", Selection()), pdf=False)
            assert done.state == "completed", done.exceptions[:3]
            assert done.results["issued"] == CLIENTS
            lines.append(ledger.db.execute("SELECT COUNT(*) FROM invoice_lines").fetchone()[0])

    benchmark.pedantic(run, setup=fresh, rounds=3, iterations=1)
    items(benchmark, CLIENTS, calls=CALLS, unit="invoices", lines=lines[-1])


@pytest.mark.benchmark(group="bill_run")
def test_production_run_baseline_one_read(benchmark, source) -> None:  # type: ignore[no-untyped-def]
    def run() -> None:
        with Store(source) as store, Ledger(store) as ledger:
            # NOT INDEXED: straight through the rows, as the run reads them.
            sums = ledger.db.execute("SELECT client, COUNT(*), SUM(amount) FROM movements "
                                     "NOT INDEXED GROUP BY client").fetchall()
            assert len(sums) == CLIENTS

    benchmark.pedantic(run, rounds=3, iterations=1)
    items(benchmark, CLIENTS, calls=CALLS, unit="invoices", baseline=True)


@pytest.fixture(scope="module")
def pages(source: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """HTML of PDFS drafts, made by a pre-production run of a copy."""
    data = tmp_path_factory.mktemp("pdf") / "data"
    shutil.copytree(source, data)
    with Store(data) as store, Ledger(store) as ledger:
        runs = BillRuns(store, ledger)
        names = [f"client{c:05d}" for c in range(PDFS)]
        runs.execute(runs.create("pre-production", "2026-10", Selection(names)), pdf=False)
        issuer = runs.invoicing.issuers()[0]
        drafts = runs.invoicing.invoices(state="draft", lines=True)
        assert len(drafts) == PDFS
        return data, [invoice_html(d, issuer) for d in drafts]


def _render(pages, processes: int) -> None:  # type: ignore[no-untyped-def]
    data, html = pages
    out = data / "pdf"
    out.mkdir(exist_ok=True)
    jobs = [(i, page, str(out / f"{i}.pdf")) for i, page in enumerate(html)]
    done = list(render_many(jobs, processes))
    assert len(done) == PDFS and all(path and not error for _, path, error in done)


@pytest.mark.benchmark(group="pdf")
def test_pdf_two_processes(benchmark, pages) -> None:  # type: ignore[no-untyped-def]
    benchmark.pedantic(_render, args=(pages, 2), rounds=3, iterations=1)
    items(benchmark, PDFS, unit="invoices")


@pytest.mark.benchmark(group="pdf")
def test_pdf_one_process(benchmark, pages) -> None:  # type: ignore[no-untyped-def]
    benchmark.pedantic(_render, args=(pages, 1), rounds=3, iterations=1)
    items(benchmark, PDFS, unit="invoices", baseline=True)
