"""The ledger database: the journal tailed into SQLite exactly once, and checked."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import ok, run_cli, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rater import ledger as ledger_module
from rater.clients import Client, Registry
from rater.decks import Decks
from rater.errors import CheckFailed, StoreError
from rater.ingest import import_cdrs
from rater.journal import Journal
from rater.ledger import FILE, Ledger, Tailed
from rater.store import Store

DECK = "prefix,destination,rate,connect_fee,increment,effective_from\n44,UK,0.0200,,1/1,\n"
CLIENTS = ("acme", "beta", "carl")


def populate(store: Store, tmp_path: Path) -> Journal:
    Decks(store).import_file(write(tmp_path / "deck.csv", DECK), "T", currency="USD")
    reg = Registry(store)
    for name in CLIENTS:
        reg.add_client(Client(id=0, name=name, currency="USD", mode="postpaid",
                              rate_tables=[[None, "T"]]))
        reg.add_account(name, username=name)
    return Journal(store)


def calls(tmp_path: Path, name: str, rows: list[tuple[str, int]]) -> Path:
    """A canonical CDR file: (user, seconds) per call, one minute apart."""
    lines = ["id,start,number,duration,ip,username"]
    lines += [f"{name}-{k},2026-11-02T10:{k % 60:02d}:00Z,442079460000,{secs},,{user}"
              for k, (user, secs) in enumerate(rows)]
    return write(tmp_path / f"{name}.csv", "\n".join(lines) + "\n")


@pytest.fixture
def url(ledger_url: str | None) -> str | None:
    """The ledger these tests open: conftest's ledger_url, by a shorter name."""
    return ledger_url


def agrees(store: Store, led: Ledger) -> None:
    assert led.check() == []
    assert led.balances() == {cid: tuple(v) for cid, v in Journal(store).balances().items()}


def test_a_tail_takes_each_entry_once(store: Store, tmp_path: Path, url: str | None) -> None:
    journal = populate(store, tmp_path)
    journal.post("acme", "manual-payment", "10.00", key="p1")
    import_cdrs(store, calls(tmp_path, "a", [("acme", 60), ("beta", 30), ("acme", 1)]))
    with Ledger(store, url) as led:
        first = led.tail()
        assert (first.entries, first.position) == (4, 4)
        assert led.tail().entries == 0                       # nothing new: nothing twice
        journal.post("beta", "manual-charge", "1.50", key="c1")
        assert (led.tail().entries, led.position) == (1, 5)
        agrees(store, led)
        rows = led.db.execute("SELECT entry, type, client, amount, destination, billed "
                              "FROM movements ORDER BY entry").fetchall()
    assert [r[1] for r in rows] == ["manual-payment", "rated-call", "rated-call",
                                    "rated-call", "manual-charge"]
    assert rows[1][3:] == (-20_000_000, "UK", 60)          # 60 s at 0.02 a minute
    assert rows[4][3] == -1_500_000_000


def test_a_failed_batch_leaves_nothing_and_the_next_tail_takes_it(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = populate(store, tmp_path)
    for k in range(7):
        journal.post(CLIENTS[k % 3], "manual-payment", f"{k + 1}.00", key=f"p{k}")
    monkeypatch.setattr(ledger_module, "BATCH", 3)
    with Ledger(store) as led:
        # The second batch (entries 4-6) fails at entry 5, after entry 4 went in.
        led.db.execute("CREATE TEMP TRIGGER fail BEFORE INSERT ON movements "
                       "WHEN NEW.entry = 5 BEGIN SELECT RAISE(ABORT, 'the disk is gone'); END")
        with pytest.raises(sqlite3.IntegrityError, match="the disk is gone"):
            led.tail()
        assert led.position == 3
        assert led.db.execute("SELECT MAX(entry), COUNT(*) FROM movements").fetchone() == (3, 3)
        led.db.execute("DROP TRIGGER fail")
        assert led.tail().entries == 4
        agrees(store, led)


def test_two_tailers_at_once_take_each_entry_once(store: Store, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   url: str | None) -> None:
    journal = populate(store, tmp_path)
    for k in range(40):
        journal.post(CLIENTS[k % 3], "manual-payment", "1.00", key=f"p{k}")
    monkeypatch.setattr(ledger_module, "BATCH", 4)
    errors: list[BaseException] = []
    # Both tailers read position 0 and meet before writing their first batch: one of
    # them must find the position moved and read again from there.
    met = threading.Barrier(2, timeout=30)
    first = threading.local()
    refused: list[int] = []
    real_take = Ledger._take

    def take(self: Ledger, batch: list) -> bool:  # type: ignore[type-arg]
        if not getattr(first, "met", False):
            first.met = True
            met.wait()
        taken = real_take(self, batch)
        if not taken:
            refused.append(batch[0].number)
        return taken

    monkeypatch.setattr(Ledger, "_take", take)

    def tail() -> None:
        try:
            with Ledger(store, url) as led:
                led.tail()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tail) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refused and refused[0] == 1         # the second tailer's first batch
    with Ledger(store, url) as led:
        led.tail()
        agrees(store, led)
        assert led.db.execute("SELECT COUNT(*) FROM movements").fetchone()[0] == 40
    # A tailer that finds its batch taken by the other reads on from where that one is.
    assert errors == []


def test_check_names_a_tampered_ledger_and_rebuild_mends_it(store: Store, tmp_path: Path,
                                                            url: str | None) -> None:
    journal = populate(store, tmp_path)
    journal.post("acme", "manual-payment", "10.00", key="p1")
    journal.post("beta", "manual-payment", "5.00", key="p2")
    with Ledger(store, url) as led:
        led.tail()
        led.db.execute("UPDATE movements SET amount = amount + 1 WHERE entry = 2")
        problems = led.check()
        assert len(problems) == 1 and "client #2 movements live 5.000000001" in problems[0]
        led.db.execute("DELETE FROM movements WHERE entry = 1")
        assert any("1 movements, the journal 2 entries" in p for p in led.check())
        with pytest.raises(CheckFailed):
            led.require_consistent()
        assert led.rebuild().entries == 2
        agrees(store, led)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.tuples(st.just("post"), st.sampled_from(CLIENTS),
              st.sampled_from(["manual-payment", "manual-charge", "manual-credit"]),
              st.integers(min_value=1, max_value=10**6)),
    st.tuples(st.just("calls"), st.lists(st.tuples(st.sampled_from(CLIENTS),
                                                   st.integers(min_value=0, max_value=7200)),
                                         min_size=1, max_size=5)),
    st.tuples(st.just("tail"),)), max_size=12),
    st.integers(min_value=1, max_value=5))
def test_the_ledger_equals_the_journal_whatever_the_order(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple], batch: int) -> None:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("ledger")
    store = Store(tmp / "data")
    old = ledger_module.BATCH
    ledger_module.BATCH = batch
    try:
        journal = populate(store, tmp)
        with Ledger(store) as led:
            for k, step in enumerate(steps):
                if step[0] == "post":
                    _, client, kind, cents = step
                    journal.post(client, kind, f"{cents / 100:.2f}", key=f"k{k}")
                elif step[0] == "calls":
                    import_cdrs(store, calls(tmp, f"f{k}", step[1]))
                else:
                    led.tail()
                    assert led.check() == []
            led.tail()
            agrees(store, led)
    finally:
        ledger_module.BATCH = old
        store.close()


def test_the_companion_check_and_backup_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Store(data) as store:
        journal = populate(store, tmp_path)
        journal.post("acme", "manual-payment", "10.00", key="p1")
    import_cdrs_file = calls(tmp_path, "c", [("acme", 60), ("beta", 120)])
    ok(run_cli("cdr", "import", str(import_cdrs_file), data=data))
    out = ok(run_cli("billing", "--once", data=data))
    assert "3 journal entries taken, at entry 3" in out
    out = ok(run_cli("check", data=data))
    assert "The ledger equals the journal up to entry 3 (the journal has 3" in out
    ok(run_cli("backup", str(tmp_path / "copy"), data=data))
    assert "The ledger equals the journal up to entry 3" in ok(run_cli("check",
                                                                       data=tmp_path / "copy"))
    assert "is not empty" in run_cli("backup", str(tmp_path / "copy"), data=data).stderr
    copy = sqlite3.connect(tmp_path / "copy" / FILE)
    try:
        assert copy.execute("SELECT COUNT(*), SUM(amount) FROM movements").fetchone() == (
            3, 10_000_000_000 - 20_000_000 - 40_000_000)
    finally:
        copy.close()
    # A tampered ledger fails the check, naming what differs.
    db = sqlite3.connect(data / FILE)
    db.execute("UPDATE ledger_balances SET live = live + 5 WHERE client = 1")
    db.commit()
    db.close()
    proc = run_cli("check", data=data)
    assert proc.returncode != 0 and "ledger: client #1 balance live" in proc.stdout


def test_a_postgresql_ledger_from_the_environment(tmp_path: Path, postgres_db: str) -> None:
    data = tmp_path / "data"
    with Store(data) as store:
        populate(store, tmp_path).post("acme", "manual-payment", "10.00", key="p1")
    ok(run_cli("cdr", "import", str(calls(tmp_path, "c", [("acme", 60)])), data=data))
    env = {"RATER_LEDGER": postgres_db}
    out = ok(run_cli("billing", "--once", data=data, env=env))
    assert "2 journal entries taken, at entry 2" in out and "127.0.0.1" in out
    assert not (data / FILE).exists()                     # nothing written beside it
    assert "The ledger equals the journal up to entry 2" in ok(run_cli("check", data=data,
                                                                       env=env))
    out = ok(run_cli("backup", str(tmp_path / "copy"), data=data, env=env))
    assert "the ledger is in PostgreSQL" in out and "pg_dump" in out
    bad = run_cli("check", data=data, env={"RATER_LEDGER": "mysql://x"})
    assert bad.returncode != 0 and "is not a postgresql:// URL" in bad.stderr


def test_a_ledger_ahead_of_its_journal_is_refused_and_rebuilt(store: Store,
                                                               tmp_path: Path) -> None:
    """A restored data directory beside a newer ledger (or two data directories given one
    database): taking on from there would skip entries and keep others' rows."""
    journal = populate(store, tmp_path)
    journal.post("acme", "manual-payment", "1.00", key="p1")
    with Ledger(store) as led:
        led.tail()
        led.db.execute("UPDATE tailed SET entry = 5 WHERE id = 1")
        with pytest.raises(StoreError, match=r"is at entry 5, the journal of .* ends at 1"):
            led.tail()
        assert led.rebuild().position == 1
        agrees(store, led)


def test_a_tail_stops_between_batches_when_asked(store: Store, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    journal = populate(store, tmp_path)
    for k in range(10):
        journal.post("acme", "manual-payment", "1.00", key=f"p{k}")
    monkeypatch.setattr(ledger_module, "BATCH", 3)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2                 # after two batches
    with Ledger(store) as led:
        assert led.tail(stop=stop) == Tailed(6, 6)
        assert led.check() == []              # what it took is whole
        assert led.tail().position == 10


def test_the_postgresql_password_is_never_shown(postgres: str) -> None:
    from rater.ledger import _Postgres

    url = postgres.replace("rater@", "rater:s3cret@") + "/postgres?password=s3cret"
    db = _Postgres(url)
    try:
        assert "s3cret" not in db.where and db.where.endswith("/postgres")
    finally:
        db.close()


def test_the_companion_refuses_a_busy_loop(tmp_path: Path) -> None:
    proc = run_cli("billing", "--every", "0", data=tmp_path / "data")
    assert proc.returncode != 0 and "--every 0.0: a number of seconds above 0" in proc.stderr
