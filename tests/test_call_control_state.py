"""Random sequences of authorizations, accounting and the passing of time keep call
control's invariants (Hypothesis stateful test):

* after any grant, what a prepaid client's calls in progress reserve does not exceed
  its live balance plus its credit limit (no overspending, whatever the order of
  packets);
* each client's stored sum of calls in progress equals its records;
* a Stop bills its call once, and balances equal their journal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rater.clients import Client, Registry
from rater.decks import Decks
from rater.journal import Journal
from rater.radius.control import INTERIM, START, STOP, Call, CallControl
from rater.store import Store

T0 = 1_795_000_000
NUMBERS = ["442079460000", "4477001234", "15551234567"]
SESSIONS = [f"s{i}" for i in range(8)]
CLIENTS = ["alice", "bob"]


class CallControlMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        root = Path(self.dir.name)
        deck = root / "deck.csv"
        deck.write_text("prefix,destination,rate,connect_fee,increment,effective_from\n"
                        "44,UK,0.0200,0.0100,60/6,\n4477,UK mobile,0.1500,,1/1,\n"
                        "1,US,0.0100,,30/30,\n")
        self.store = Store(root / "data")
        Decks(self.store).import_file(deck, "T", currency="USD")
        reg = Registry(self.store)
        reg.add_client(Client(id=0, name="alice", currency="USD", rate_tables=[[None, "T"]],
                              credit_limit=200_000_000, max_call_length=1800, capacity=3))
        reg.add_client(Client(id=0, name="bob", currency="USD", rate_tables=[[None, "T"]],
                              max_call_length=600))
        for name in CLIENTS:
            reg.add_account(name, username=name)
        journal = Journal(self.store)
        journal.post("alice", "manual-payment", "1.00", key="p-alice")
        journal.post("bob", "manual-payment", "0.30", key="p-bob")
        self.control = CallControl(self.store, reservation_grace=30)
        self.now = T0
        self.stops: set[tuple[str, str]] = set()
        #: The Stop that billed each call: who, session -> number, seconds, instant.
        self.billed: dict[tuple[str, str], tuple[str, int, int]] = {}

    def teardown(self) -> None:
        if hasattr(self, "control"):
            self.control.close()
            self.store.close()
            self.dir.cleanup()

    def call(self, who: str, session: str, number: str) -> Call:
        return Call(nas="10.0.0.1", user_name=who, calling="1555", called=number,
                    session_id=f"{who}-{session}")

    @rule(who=st.sampled_from(CLIENTS), session=st.sampled_from(SESSIONS),
          number=st.sampled_from(NUMBERS))
    def authorize(self, who: str, session: str, number: str) -> None:
        cid = CLIENTS.index(who) + 1
        before, _ = self.control.reserved(cid, now=self.now)
        d = self.control.authorize(self.call(who, session, number), now=self.now)
        count, reserved = self.control.reserved(cid, now=self.now)
        if d.accepted and count > before:
            # A new grant leaves the client's calls in progress reserving no more than
            # its live balance and credit limit, whatever came before. (A repeated
            # request keeps its grant: calls billed without authorization since, or
            # longer than granted, may have spent what it reserved against.)
            live = Journal(self.store).balance(who).live
            limit = 200_000_000 if who == "alice" else 0
            assert d.seconds > 0
            assert reserved <= live + limit

    @rule(who=st.sampled_from(CLIENTS), session=st.sampled_from(SESSIONS),
          number=st.sampled_from(NUMBERS), status=st.sampled_from([START, INTERIM]))
    def keep(self, who: str, session: str, number: str, status: int) -> None:
        self.control.account(self.call(who, session, number), status, now=self.now)

    @rule(who=st.sampled_from(CLIENTS), session=st.sampled_from(SESSIONS),
          number=st.sampled_from(NUMBERS), seconds=st.integers(0, 900))
    def stop(self, who: str, session: str, number: str, seconds: int) -> None:
        outcome = self.control.account(self.call(who, session, number), STOP,
                                       session_time=seconds, event_time=self.now,
                                       now=self.now)
        key = (who, session)
        if key in self.stops:
            assert outcome in ("repeated", "refused")
        else:
            assert outcome in ("billed", "mismatched")
            self.stops.add(key)
            self.billed[key] = (number, seconds, self.now)

    @precondition(lambda self: bool(self.billed))
    @rule(data=st.data())
    def stop_again(self, data: st.DataObject) -> None:
        """The very same Stop sent again (a retransmission) bills nothing."""
        (who, session), (number, seconds, at) = data.draw(
            st.sampled_from(sorted(self.billed.items())))
        outcome = self.control.account(self.call(who, session, number), STOP,
                                       session_time=seconds, event_time=at, now=self.now)
        assert outcome == "repeated"

    @rule(seconds=st.sampled_from([1, 29, 30, 31, 600, 1900]))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def sums_equal_records(self) -> None:
        assert self.control.out_of_step() == []

    @invariant()
    def balances_equal_the_journal(self) -> None:
        assert Journal(self.store).check() == []


CallControlMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestCallControl = CallControlMachine.TestCase
