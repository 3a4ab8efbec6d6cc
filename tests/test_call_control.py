"""Call control without the wire: grants, reservations, their expiry, accounting.

Times are given explicitly (``now``), so expiry is tested without waiting.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from pathlib import Path

import msgpack
import pytest
from conftest import GRACE

from rater.clients import Client, Registry
from rater.config import StorageConfig
from rater.engine import Deck
from rater.errors import StoreError
from rater.journal import Journal
from rater.radius import control as control_module
from rater.radius.control import (
    ACCOUNTING_ON,
    INTERIM,
    START,
    STOP,
    Call,
    CallControl,
)
from rater.store import GroupSync, Space, Store

T0 = 1_795_000_000
UK = "442079460000"
def summed(control: CallControl, store: Store, now: int) -> None:
    """Each client's stored sum of calls in progress equals its records, and each record
    has its lapse key."""
    assert control.out_of_step() == []


def alice(session: str, number: str = UK, nas: str = "10.0.0.1") -> Call:
    return Call(nas=nas, user_name="alice", calling="1555", called=number, session_id=session)


def cost(store: Store, seconds: int, number: str = UK) -> int:
    with Deck(store, "T") as deck:
        return int(deck.rate(number, T0, seconds).cost * 10**9)


def test_grant_is_the_exact_inverse_of_pricing_with_the_credit_limit(control: CallControl,
                                                                      store: Store) -> None:
    d = control.authorize(alice("a"), now=T0)
    assert d.accepted and d.prepaid and d.credit == 1_100_000_000
    with Deck(store, "T") as deck:
        assert d.seconds == deck.max_duration(UK, T0, Decimal("1.10"), 3600)
    # 60/6: the grant costs at most the credit, six seconds more would cost more.
    assert cost(store, d.seconds) <= d.credit < cost(store, d.seconds + 6)
    assert d.reserved == cost(store, d.seconds)
    assert control.reserved(1, now=T0) == (1, d.reserved)
    summed(control, store, T0)


def short_calls(control: CallControl, store: Store) -> None:
    """Alice's calls capped at 20 minutes: one call no longer takes all her credit."""
    Registry(store).edit_client("alice", max_call_length=1200)
    control.refresh(force=True)


def test_each_call_gets_what_the_others_left(control: CallControl, store: Store) -> None:
    short_calls(control, store)
    first = control.authorize(alice("a"), now=T0)
    second = control.authorize(alice("b"), now=T0)
    third = control.authorize(alice("c"), now=T0)
    assert first.seconds == second.seconds == 1200
    assert second.credit == first.credit - first.reserved
    assert third.accepted and 0 < third.seconds < 1200
    assert third.credit == second.credit - second.reserved
    assert first.reserved + second.reserved + third.reserved <= 1_100_000_000
    fourth = control.authorize(alice("d"), now=T0)
    assert fourth.outcome == "no_balance"
    summed(control, store, T0)


def test_a_reservation_without_stop_expires_after_its_grant_and_grace(control: CallControl,
                                                                      store: Store) -> None:
    first = control.authorize(alice("a"), now=T0)
    end = T0 + first.seconds + GRACE
    before = control.authorize(alice("b"), now=end - 1)
    assert before.outcome == "no_balance"
    assert before.credit == 1_100_000_000 - first.reserved
    after = control.authorize(alice("c"), now=end)
    assert after.accepted and after.credit == 1_100_000_000
    assert control.reserved(1, now=end) == (1, after.reserved)      # a is gone
    summed(control, store, end)


def test_lapsed_calls_are_let_go_a_bounded_number_at_a_time(
        control: CallControl, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control_module, "SWEEP", 2)
    for k in range(5):
        assert control.account(alice(f"s{k}"), START, now=T0 + k) == "started"
    late = T0 + 3600 + GRACE + 10
    # Each write transaction lets two go, oldest first; until then they count.
    assert control.authorize(alice("new1"), now=late).accepted       # takes the money
    assert stored_count(store) == 5 - 2 + 1
    assert control.authorize(alice("new2"), now=late).outcome == "no_balance"
    assert stored_count(store) == 5 - 4 + 1
    control.authorize(alice("new3"), now=late)
    assert stored_count(store) == 1
    summed(control, store, late)


def test_a_start_taking_another_calls_key_keeps_both_records_in_step(
        control: CallControl, store: Store) -> None:
    """A call authorized without a session id is known by it from its Start; when that
    key holds another call lapsing at the same instant, letting that one go must not
    take the moved call's lapse key with it."""
    granted = control.authorize(alice(""), now=T0).seconds
    assert granted > 0
    reg = Registry(store)
    # Bob's call, started when Alice's is, lapses when hers does.
    reg.add_client(Client(id=0, name="bob", currency="USD", rate_tables=[[None, "T"]],
                          max_call_length=granted))
    reg.add_account("bob", username="bob")
    control.refresh(force=True)
    bob = Call(nas="10.0.0.1", user_name="bob", calling="1666", called=UK, session_id="X")
    assert control.account(bob, START, now=T0 + 5) == "started"
    assert control.account(alice("X"), START, now=T0 + 5) == "started"
    summed(control, store, T0 + 5)
    assert control.reserved(1, now=T0 + 5)[0] == 1


def stored_count(store: Store) -> int:
    with store.read() as txn:
        return sum(1 for _ in store.calls_up.items(txn))


def test_interim_update_keeps_a_call_past_its_grace(control: CallControl, store: Store
                                                    ) -> None:
    first = control.authorize(alice("a"), now=T0)
    end = T0 + first.seconds + GRACE
    assert control.account(alice("a"), START, now=T0 + 1) == "started"
    assert control.account(alice("a"), INTERIM, now=end - 10) == "updated"
    assert control.reserved(1, now=end + 5)[0] == 1
    assert control.reserved(1, now=end + GRACE)[0] == 0
    # A new call after the old one lapsed: the lapsed one is let go first.
    assert control.authorize(alice("b"), now=end + GRACE).credit == 1_100_000_000
    summed(control, store, end + GRACE)


def test_stop_bills_the_real_cost_and_releases_the_rest(control: CallControl,
                                                         store: Store) -> None:
    control.authorize(alice("a"), now=T0)
    outcome = control.account(alice("a"), STOP, session_time=61, event_time=T0 + 61,
                              now=T0 + 61)
    assert outcome == "billed"
    assert control.reserved(1, now=T0 + 61) == (0, 0)
    live = Journal(store).balance("alice").live
    assert live == 1_000_000_000 - cost(store, 61)
    assert control.account(alice("a"), STOP, session_time=61, event_time=T0 + 61,
                           now=T0 + 99) == "repeated"
    assert Journal(store).balance("alice").live == live
    assert Journal(store).check() == []
    summed(control, store, T0 + 99)


def test_a_call_authorized_without_session_id_is_found_by_who_calls_whom(
        control: CallControl, store: Store) -> None:
    control.authorize(Call(nas="10.0.0.1", user_name="alice", calling="1555", called=UK),
                      now=T0)
    assert control.reserved(1, now=T0)[0] == 1
    assert control.account(alice("s-9"), START, now=T0 + 1) == "started"
    assert control.account(alice("s-9"), STOP, session_time=5, now=T0 + 6) == "billed"
    assert control.reserved(1, now=T0 + 6) == (0, 0)
    summed(control, store, T0 + 6)


def test_accounting_on_lets_the_nas_calls_go(control: CallControl, store: Store) -> None:
    short_calls(control, store)
    control.authorize(alice("a", nas="10.0.0.1"), now=T0)
    control.authorize(alice("b", nas="10.0.0.2"), now=T0)
    assert control.account(Call(nas="10.0.0.1"), ACCOUNTING_ON, now=T0) == "nas-restarted"
    assert control.reserved(1, now=T0)[0] == 1
    third = control.authorize(alice("c", nas="10.0.0.1"), now=T0)
    assert third.credit == 1_100_000_000 - control.reserved(1, now=T0)[1] + third.reserved
    summed(control, store, T0)


def test_postpaid_without_capacity_writes_nothing(control: CallControl, store: Store) -> None:
    Registry(store).add_client(Client(id=0, name="bob", currency="USD", mode="postpaid",
                                      rate_tables=[[None, "T"]], max_call_length=900))
    Registry(store).add_account("bob", username="bob")
    control.refresh(force=True)
    d = control.authorize(Call(nas="10.0.0.1", user_name="bob", called=UK, session_id="x"),
                          now=T0)
    assert d.accepted and d.seconds == 900 and d.credit is None and not d.prepaid
    assert control.reserved(2, now=T0) == (0, 0)


def test_a_stopped_client_is_seen_after_refresh(control: CallControl, store: Store) -> None:
    assert control.authorize(alice("a"), now=T0).accepted
    Registry(store).edit_client("alice", status="stop")
    control.refresh(force=True)
    d = control.authorize(alice("b"), now=T0)
    assert d.outcome == "client_blocked"


def test_a_batch_decides_as_one_call_after_another(control: CallControl, store: Store) -> None:
    short_calls(control, store)
    batch = [alice("a"), alice("b"), alice("a"), alice("c"), alice("d"),
             Call(nas="10.0.0.1", user_name="nobody", called=UK, session_id="n")]
    got = control.authorize_many(batch, now=T0)
    assert [d.outcome for d in got] == ["accepted", "accepted", "accepted", "accepted",
                                        "no_balance", "unknown_account"]
    # The repeated call got its own grant again, not a second reservation.
    assert got[2].seconds == got[0].seconds and got[2].reserved == got[0].reserved
    assert sum(d.reserved for d in (got[0], got[1], got[3])) <= 1_100_000_000
    assert control.reserved(1, now=T0) == (3, got[0].reserved + got[1].reserved
                                           + got[3].reserved)
    assert got[3].credit == got[1].credit - got[1].reserved
    summed(control, store, T0)


# -- group sync: commits made without fsync reach the disk in groups


def test_group_sync_wait_returns_once_a_sync_covers_the_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", StorageConfig(sync=False))
    group = GroupSync(store, 0.001)
    began: list[float] = []
    real = group.sync

    def sync() -> None:                      # the thread's: note when each one began
        began.append(time.monotonic())
        real()

    group.sync = sync  # type: ignore[method-assign]
    try:
        store.write(lambda txn: store.meta.put(txn, b"probe", b"1"))
        made = time.monotonic()
        waiter = threading.Thread(target=group.wait, args=(made,))
        waiter.start()
        waiter.join(30)
        assert not waiter.is_alive(), "wait() never returned"
        # It returned because a sync that began after the commit ended.
        assert began and max(began) > made and group.synced > made
    finally:
        group.close()
        store.close()


def test_group_sync_says_when_the_disk_refuses(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", StorageConfig(sync=False))
    group = GroupSync(store, 0.001)
    env = store.env
    made = time.monotonic()
    store.env = None  # type: ignore[assignment]   # the sync then fails, as a dead disk would
    try:
        with pytest.raises(StoreError, match="the disk refused a sync"):
            group.wait(made)
    finally:
        store.env = env
        group.close()
        store.close()


def test_a_store_of_the_first_format_has_its_calls_in_progress_moved(tmp_path: Path) -> None:
    """Format 1 kept calls in progress by client (g/ client id + call key, o/ owners,
    u/ with a next-lapse field); opening moves them to the call-keyed layout."""
    store = Store(tmp_path / "data")
    alice_id, bob_id = (1).to_bytes(4, "big"), (2).to_bytes(4, "big")

    def old_layout(txn: object) -> None:
        store.meta.put(txn, b"format", b'{"format": 1}')
        for tag, key, amount, expires in ((alice_id, b"sA", 500, T0 + 100),
                                          (alice_id, b"sB", 700, T0 + 50),
                                          (bob_id, b"sC", 0, T0 + 70)):
            store.calls_up.put(txn, tag + key, msgpack.packb(
                [amount, 60, expires, False, "10.0.0.1", "+44"]))
            Space(b"o/").put(txn, key, tag)
        store.calls_load.put(txn, alice_id, msgpack.packb([2, 1200, T0 + 50]))
        store.calls_load.put(txn, bob_id, msgpack.packb([1, 0, T0 + 70]))

    store.write(old_layout)
    store.close()
    store = Store(tmp_path / "data")
    try:
        control = CallControl(store)
        assert control.out_of_step() == []
        assert control.reserved(1, now=T0) == (2, 1200)
        assert control.reserved(2, now=T0) == (1, 0)
        with store.read() as txn:
            assert [bytes(k) for k, _ in store.calls_lapse.items(txn)] == [
                (T0 + 50).to_bytes(8, "big") + b"sB", (T0 + 70).to_bytes(8, "big") + b"sC",
                (T0 + 100).to_bytes(8, "big") + b"sA"]
            assert list(Space(b"o/").items(txn)) == []
            assert json.loads(store.meta.get(txn, b"format"))["format"] == 2
        control.close()
    finally:
        store.close()


def test_group_sync_after_close_says_so_rather_than_wait(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", StorageConfig(sync=False))
    group = GroupSync(store, 0.001)
    try:
        before = time.monotonic()
        group.close()
        group.wait(before)                   # covered by the last sync
        with pytest.raises(StoreError, match="not known to be on disk"):
            group.wait(time.monotonic())
    finally:
        store.close()
