"""CDR ingestion (rater.ingest): matched to accounts, priced, journaled, debited, once.

Every amount expected here is worked out in the test from the rate, the
increment and the seconds (``price``), not read back from the engine, and
every scenario ends with ``Journal.check() == []``: each balance is the sum of
its journal, and each call's entries sum to what its record says it stands at.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import ok, run_cli, write

from rater.clients import Client, Registry
from rater.decks import Decks
from rater.dialplan import DialPlan
from rater.ingest import (
    REASONS,
    ImportSummary,
    RerateSummary,
    import_cdrs,
    mismatches,
    rerate,
    summary_report,
)
from rater.journal import Journal
from rater.store import Store
from rater.timeutil import parse_instant, zone

HEAD = "prefix,destination,rate,connect_fee,increment,effective_from\n"
# Table T: a US number 1/1, Wisconsin (1715) dearer, the UK 60/60.
T_ROWS = HEAD + ("1,US,0.0100,,1/1,\n"
                 "1715,US Wisconsin,0.0300,,1/1,\n"
                 "44,UK,0.0200,,60/60,\n")
US_PLAN = DialPlan("1", "1", "011")
CANONICAL_HEADER = "id,start,number,duration,ip,username,ani,vendor,setup\n"
ASTERISK = ("cdr", "asterisk_master_csv_pseudonymized_217rows.csv")


# -- helpers

def utc(text: str) -> int:
    return parse_instant(text, zone("UTC"))


def price(rate: str, seconds: int, first: int = 1, increment: int = 1) -> Decimal:
    """A call's price worked out by hand: A/B increments, per minute, 4 places half-up."""
    if seconds <= 0:
        return Decimal("0")
    billed = first if seconds <= first else first + math.ceil(
        (seconds - first) / increment) * increment
    return (Decimal(rate) * billed / 60).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def money(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)


def live(store: Store, client: str) -> Decimal:
    return money(Journal(store).balance(client).live)


def entries(store: Store, client: str | None = None, type_: str | None = None) -> list:
    return Journal(store).entries(client, types=[type_] if type_ else None)


def charged(store: Store, client: str | None = None) -> dict[str, Decimal]:
    """What each call (by CDR id) stands charged at, from its journal entries."""
    out: dict[str, Decimal] = {}
    for e in entries(store, client):
        if e.call is not None:
            out[e.call[1]] = out.get(e.call[1], Decimal(0)) - money(e.amount)
    return out


def journal_length(store: Store) -> int:
    return len(entries(store))


def table(decks: Decks, tmp_path: Path, name: str, rows: str, currency: str = "USD") -> None:
    """Import deck rows into table ``name`` (created if new)."""
    src = write(tmp_path / f"deck-{name}-{time.monotonic_ns()}.csv", rows)
    decks.import_file(src, name, currency=currency)


def client(store: Store, name: str, tables: list[list] | None = None, **kw) -> Client:
    return Registry(store).add_client(Client(id=0, name=name, currency=kw.pop("currency", "USD"),
                                             rate_tables=tables or [], **kw))


def cdrs(path: Path, rows: list[tuple]) -> Path:
    """A canonical CDR file: rows of (id, start, number, duration[, ip, username, ani,
    vendor, setup])."""
    buf = io.StringIO()
    buf.write(CANONICAL_HEADER)
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow([*r, *[""] * (9 - len(r))])
    return write(path, buf.getvalue())


def data_of(store: Store) -> Path:
    return store.data_dir


def cli_json(store: Store, *args: str) -> Any:
    return json.loads(ok(run_cli(*args, "--json", data=data_of(store))))


def consistent(store: Store) -> None:
    assert Journal(store).check() == []


# -- canonical import: matching, pricing, dial plans

@pytest.fixture
def world(store: Store, decks: Decks, tmp_path: Path) -> Store:
    """Table T; client acme (ip, username, ANI, a US-dial-plan ip); client beta on T2."""
    table(decks, tmp_path, "T", T_ROWS)
    table(decks, tmp_path, "T2", HEAD + "1,US,0.0500,,1/1,\n")
    reg = Registry(store)
    client(store, "acme", [[None, "T"]])
    client(store, "beta", [[None, "T2"]])
    reg.add_account("acme", ip="10.1.2.3")                          # 1
    reg.add_account("acme", username="acme-sip")                    # 2
    reg.add_account("acme", ani="+1 212 555 0100")                  # 3
    reg.add_account("acme", ip="10.9.9.9", dial_plan=US_PLAN)       # 4
    reg.add_account("beta", ip="10.2.0.0/16")                       # 5
    return store


DAY = "2026-03-02 10:00:00"
BASIC = [
    ("c1", DAY, "+15551234567", 61, "10.1.2.3"),                     # by ip
    ("c2", DAY, "442079460000", 61, "", "acme-sip"),                 # by username, 60/60
    ("c3", DAY, "15551234567", 0, "", "acme-sip"),                   # unanswered
    ("c4", DAY, "715-413-9112", 30, "10.9.9.9"),                     # national, US plan
    ("c5", DAY, "1 715 413 9112", 30, "10.9.9.9"),                   # trunk prefix 1
    ("c6", DAY, "011 44 20 7946 0000", 10, "10.9.9.9"),              # intl prefix 011
    ("c7", DAY, "15551234567", 60, "", "", "+1 (212) 555-0100"),     # by ANI
    ("c8", DAY, "15551234567", 60, "10.2.3.4"),                      # beta, its own table
]
BASIC_PRICES = {"c1": price("0.01", 61), "c2": price("0.02", 61, 60, 60),
                "c4": price("0.03", 30), "c5": price("0.03", 30),
                "c6": price("0.02", 10, 60, 60), "c7": price("0.01", 60)}


def test_hand_prices_are_what_the_brief_says() -> None:
    assert price("0.01", 61) == Decimal("0.0102")
    assert price("0.02", 61, 60, 60) == Decimal("0.04")
    assert price("0.03", 30) == Decimal("0.015")
    assert price("0.02", 0, 60, 60) == 0


def test_canonical_import_matches_prices_and_debits(world: Store, tmp_path: Path) -> None:
    store = world
    s = import_cdrs(store, cdrs(tmp_path / "basic.csv", BASIC))

    assert isinstance(s, ImportSummary)
    assert (s.format, s.source, s.rows, s.billed, s.mismatched, s.already, s.refused) == (
        "canonical", "canonical", 8, 8, 0, 0, [])
    acme_total = sum(BASIC_PRICES.values())
    assert acme_total == Decimal("0.1102")
    assert s.to_json()["amounts"] == {"USD": "0.1602"}
    assert live(store, "acme") == -acme_total
    assert live(store, "beta") == Decimal("-0.05")

    by_id = {e.call[1]: e for e in entries(store, type_="rated-call")}
    assert set(by_id) == set(BASIC_PRICES) | {"c8"}                  # c3 costs nothing
    for cid, amount in BASIC_PRICES.items():
        assert -money(by_id[cid].amount) == amount, cid
    assert -money(by_id["c8"].amount) == Decimal("0.05")
    call = {cid: dict(zip(("source", "id", "rev", "number", "date", "duration", "billed",
                           "prefix", "destination", "table", "account"), e.call, strict=False))
            for cid, e in by_id.items()}
    # Matched by ip, username, ANI; the dial-plan account's numbers in E.164.
    assert [call[c]["account"] for c in ("c1", "c2", "c7", "c4", "c8")] == [1, 2, 3, 4, 5]
    assert call["c4"]["number"] == call["c5"]["number"] == "17154139112"
    assert call["c4"]["prefix"] == "1715"
    assert call["c6"]["number"] == "442079460000"
    assert call["c8"]["table"] == "T2"
    assert call["c1"]["date"] == utc(DAY)
    assert (call["c2"]["duration"], call["c2"]["billed"]) == (61, 120)
    assert mismatches(store) == []
    consistent(store)


def test_numbers_are_read_as_rate_file_reads_them(world: Store, tmp_path: Path) -> None:
    """A leading 00 is cut once; "+00..." keeps its 00 (rater.numbers), so it prices nothing."""
    import_cdrs(world, cdrs(tmp_path / "zeros.csv", [
        ("z1", DAY, "00442079460000", 61, "10.1.2.3"),
        ("z2", DAY, "+00442079460000", 61, "10.1.2.3"),
    ]))
    call = {e.call[1]: e.call for e in entries(world, type_="rated-call")}
    assert (call["z1"][3], call["z1"][7]) == ("442079460000", "44")
    assert -money(Journal(world).entries("acme")[0].amount) == price("0.02", 61, 60, 60)
    assert "z2" not in call
    assert [(m.id, m.reason) for m in mismatches(world)] == [("z2", "no-rate")]
    consistent(world)


def test_ani_in_national_format_matches_a_dial_plan_account(store: Store, decks: Decks,
                                                             tmp_path: Path) -> None:
    """An ANI in E.164 (+1 ...) matches the ANI account added through a US dial plan."""
    table(decks, tmp_path, "T", T_ROWS)
    client(store, "acme", [[None, "T"]])
    Registry(store).add_account("acme", ani="791-445-9811", dial_plan=US_PLAN)
    s = import_cdrs(store, cdrs(tmp_path / "a.csv", [
        ("e164", DAY, "715-413-9112", 60, "", "", "+1 791 445 9811")]))
    assert (s.billed, s.mismatched) == (1, 0)
    assert live(store, "acme") == -price("0.03", 60)
    consistent(store)


def test_ani_as_the_switch_writes_it_matches_a_dial_plan_account(store: Store, decks: Decks,
                                                                 tmp_path: Path) -> None:
    table(decks, tmp_path, "T", T_ROWS)
    client(store, "acme", [[None, "T"]])
    Registry(store).add_account("acme", ani="791-445-9811", dial_plan=US_PLAN)
    s = import_cdrs(store, cdrs(tmp_path / "a.csv", [
        ("national", DAY, "715-413-9112", 60, "", "", "791-445-9811")]))
    assert [m.reason for m in mismatches(store)] == []
    assert (s.billed, s.mismatched) == (1, 0)
    assert live(store, "acme") == -price("0.03", 60)


# -- idempotency

def test_importing_a_file_twice_bills_once(world: Store, tmp_path: Path) -> None:
    store = world
    src = cdrs(tmp_path / "basic.csv", BASIC)
    first = cli_json(store, "cdr", "import", str(src))
    assert (first["billed"], first["already_imported"]) == (8, 0)
    assert first["amounts"] == {"USD": "0.1602"}
    before = (live(store, "acme"), live(store, "beta"), journal_length(store))

    again = cli_json(store, "cdr", "import", str(src))

    assert (again["rows"], again["already_imported"], again["billed"], again["mismatched"],
            again["refused"], again["amounts"]) == (8, 8, 0, 0, [], {})
    assert (live(store, "acme"), live(store, "beta"), journal_length(store)) == before
    consistent(store)


def test_same_id_other_content_is_refused(world: Store, tmp_path: Path) -> None:
    store = world
    import_cdrs(store, cdrs(tmp_path / "basic.csv", BASIC))
    before = charged(store)
    acme = live(store, "acme")

    changed = [("c1", DAY, "+15551234567", 62, "10.1.2.3"),        # was 61 s
               ("c7", DAY, "15551234567", 60, "", "", "+1 (212) 555-0100"),   # same
               ("c9", DAY, "15551234567", 120, "10.1.2.3")]        # new
    s = import_cdrs(store, cdrs(tmp_path / "changed.csv", changed))

    assert (s.billed, s.already, len(s.refused)) == (1, 1, 1)
    assert "c1" in s.refused[0] and "line 2" in s.refused[0]
    assert live(store, "acme") == acme - price("0.01", 120)
    after = charged(store)
    assert after.pop("c9") == Decimal("0.02")
    assert after == before                                           # c1 as it was
    consistent(store)


def test_same_id_twice_in_one_file_with_other_content_is_refused(world: Store,
                                                                 tmp_path: Path) -> None:
    store = world
    s = import_cdrs(store, cdrs(tmp_path / "dup.csv", [
        ("d1", DAY, "15551234567", 60, "10.1.2.3"),
        ("d1", DAY, "15551234567", 60, "10.1.2.3"),                  # the same: skipped
        ("d1", DAY, "15551234567", 90, "10.1.2.3")]))                # other: refused
    assert (s.rows, s.billed, s.already, len(s.refused)) == (3, 1, 1, 1)
    assert "line 4" in s.refused[0] and "d1" in s.refused[0]
    assert charged(store) == {"d1": Decimal("0.01")}
    consistent(store)


def test_same_ids_under_another_source_are_new_cdrs(world: Store, tmp_path: Path) -> None:
    store = world
    src = cdrs(tmp_path / "basic.csv", BASIC)
    ok(run_cli("cdr", "import", str(src), "--source", "sw1", data=data_of(store)))
    one = live(store, "acme")
    s = cli_json(store, "cdr", "import", str(src), "--source", "sw2")
    assert (s["source"], s["billed"], s["already_imported"]) == ("sw2", 8, 0)
    assert live(store, "acme") == 2 * one == -2 * Decimal("0.1102")
    keys = [e.key for e in entries(store, type_="rated-call")]
    assert len(keys) == len(set(keys)) == 2 * 7
    sources = Counter(e.call[0] for e in entries(store, type_="rated-call"))
    assert sources == {"sw1": 7, "sw2": 7}
    consistent(store)


# -- the real Asterisk Master.csv

def asterisk_rows(shared_data: Path) -> tuple[Path, list[list[str]]]:
    path = shared_data.joinpath(*ASTERISK)
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path, newline="", encoding="utf-8") as f:
        return path, list(csv.reader(f))


def asterisk_client(store: Store, decks: Decks, tmp_path: Path, rows: list[list[str]],
                    ani_style: str) -> None:
    """Client acme: prefix 1 at 0.0123 1/1; an ANI account per src, with a US dial plan."""
    table(decks, tmp_path, "T", HEAD + "1,North America,0.0123,,1/1,\n")
    client(store, "acme", [[None, "T"]])
    reg = Registry(store)
    for ani in sorted({r[1] for r in rows}):
        # 'e164': written as the E.164 digits the CDR's ANI reads as; 'national': as the
        # switch writes it, for the dial plan to read.
        reg.add_account("acme", ani=ani if ani_style == "national"
                        else "+" + ani.replace("-", ""), dial_plan=US_PLAN)


def us_e164(number: str) -> str:
    digits = number.replace("-", "")
    return "1" + (digits[1:] if digits.startswith("1") else digits)


def test_asterisk_legs_of_one_uniqueid_are_distinct_cdrs(store: Store, decks: Decks,
                                                         tmp_path: Path,
                                                         shared_data: Path) -> None:
    path, rows = asterisk_rows(shared_data)
    table(decks, tmp_path, "T", HEAD + "1,North America,0.0123,,1/1,\n")
    # No account yet: every distinct CDR is kept as a mismatch, which lists them.
    s = import_cdrs(store, path, fmt="asterisk")
    distinct = {(r[16], r[6], r[9], r[10], r[13] if r[10] else "0", r[14], r[1], r[2])
                for r in rows}
    assert (s.rows, s.billed, s.mismatched) == (len(rows), 0, len(distinct))
    assert s.already == len(rows) - len(distinct)
    found = mismatches(store)
    assert len(found) == len(distinct) == len({(m.source, m.id) for m in found})
    legs = [m for m in found if m.id.startswith("1497952162.0")]
    # Row 1: NO ANSWER at 09:49:22; row 2: ANSWERED at 09:49:32 for 514 s.
    assert sorted((m.start, m.duration) for m in legs) == [
        (utc("2017-06-20 09:49:22"), 0), (utc("2017-06-20 09:49:32"), 514)]
    uniqueids_with_two_dispositions = {
        u for u in {r[16] for r in rows} if len({r[14] for r in rows if r[16] == u}) > 1}
    assert len(uniqueids_with_two_dispositions) > 10
    for u in uniqueids_with_two_dispositions:
        assert len({m.id for m in found if m.id.startswith(u)}) >= 2, u
    consistent(store)


@pytest.mark.parametrize("ani_style", ["e164", "national"])
def test_asterisk_answered_legs_are_priced_exactly(store: Store, decks: Decks, tmp_path: Path,
                                                   shared_data: Path, ani_style: str) -> None:
    path, rows = asterisk_rows(shared_data)
    asterisk_client(store, decks, tmp_path, rows, ani_style)

    s = import_cdrs(store, path)                                     # auto-detected

    assert s.format == "asterisk" and s.mismatched == 0
    expected = Counter((utc(r[10]), us_e164(r[2]), int(r[13]), price("0.0123", int(r[13])))
                       for r in rows if r[14] == "ANSWERED" and int(r[13]) > 0)
    got = Counter((e.call[4], e.call[3], e.call[5], -money(e.amount))
                  for e in entries(store, "acme", "rated-call"))
    assert expected - got == Counter()                               # every answered leg
    assert "17154139112" in {k[1] for k in got}                      # 715-413-9112
    consistent(store)


def test_asterisk_total_is_the_answered_rows(store: Store, decks: Decks, tmp_path: Path,
                                            shared_data: Path) -> None:
    path, rows = asterisk_rows(shared_data)
    asterisk_client(store, decks, tmp_path, rows, "e164")
    import_cdrs(store, path, fmt="asterisk")
    answered = [r for r in rows if r[14] == "ANSWERED"]
    total = sum(price("0.0123", int(r[13])) for r in answered)
    assert live(store, "acme") == -total
    # Exactly one charge per answered leg, and none for the others.
    expected = Counter((utc(r[10]), int(r[13]), price("0.0123", int(r[13])))
                       for r in answered if int(r[13]) > 0)
    got = Counter((e.call[4], e.call[5], -money(e.amount)) for e in entries(store, "acme"))
    assert got == expected


def test_asterisk_file_imported_twice_bills_once(store: Store, decks: Decks, tmp_path: Path,
                                                shared_data: Path) -> None:
    path, rows = asterisk_rows(shared_data)
    asterisk_client(store, decks, tmp_path, rows, "e164")
    first = cli_json(store, "cdr", "import", str(path))
    balance, n = live(store, "acme"), journal_length(store)
    assert first["format"] == "asterisk" and first["billed"] > 100
    assert -balance == Decimal(first["amounts"]["USD"])

    again = cli_json(store, "cdr", "import", str(path), "--format", "asterisk")

    assert (again["rows"], again["already_imported"], again["billed"]) == (len(rows),
                                                                          len(rows), 0)
    assert (live(store, "acme"), journal_length(store)) == (balance, n)
    consistent(store)


# -- FreeSWITCH

def test_freeswitch_file(store: Store, decks: Decks, tmp_path: Path) -> None:
    table(decks, tmp_path, "T", T_ROWS)
    client(store, "acme", [[None, "T"]])
    reg = Registry(store)
    reg.add_account("acme", username="fs-acct")
    reg.add_account("acme", ani="+12125550100")
    rows = [
        # caller_id_name, caller_id_number, destination_number, context, start_stamp,
        # answer_stamp, end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid,
        # accountcode
        ["Alice", "1000", "+1 555 123 4567", "default", "2026-03-02 10:00:00",
         "2026-03-02 10:00:10", "2026-03-02 10:01:11", "71", "61", "NORMAL_CLEARING",
         "uuid-1", "", "fs-acct"],
        ["Alice", "1000", "+1 555 123 4567", "default", "2026-03-02 11:00:00", "",
         "2026-03-02 11:00:20", "20", "0", "NO_ANSWER", "uuid-2", "", "fs-acct"],
        ["Bob", "+12125550100", "+1 715 413 9112", "default", "2026-03-02 12:00:00",
         "2026-03-02 12:00:02", "2026-03-02 12:00:32", "32", "30", "NORMAL_CLEARING",
         "uuid-3", "", ""],
        ["Eve", "999", "+1 555 123 4567", "default", "2026-03-02 13:00:00",
         "2026-03-02 13:00:01", "2026-03-02 13:00:11", "11", "10", "NORMAL_CLEARING",
         "uuid-4", "", "nobody"],
    ]
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    src = write(tmp_path / "Master.csv", buf.getvalue())

    s = import_cdrs(store, src)

    assert (s.format, s.source, s.rows, s.billed, s.mismatched) == (
        "freeswitch", "freeswitch", 4, 3, 1)
    got = {e.call[1]: (e.call[4], -money(e.amount)) for e in entries(store, "acme")}
    assert got == {"uuid-1": (utc("2026-03-02 10:00:10"), price("0.01", 61)),   # at answer
                   "uuid-3": (utc("2026-03-02 12:00:02"), price("0.03", 30))}
    assert live(store, "acme") == -(Decimal("0.0102") + Decimal("0.015"))
    (m,) = mismatches(store)
    assert (m.id, m.reason, m.username, m.ani) == ("uuid-4", "no-account", "nobody", "999")
    assert import_cdrs(store, src, fmt="freeswitch").already == 4
    consistent(store)


# -- bill events and rate table dates

def test_bill_event_setup_connect_disconnect(store: Store, decks: Decks,
                                            tmp_path: Path) -> None:
    # 0.01 until 2026-03-01, 0.02 from then: the bill event picks the row.
    table(decks, tmp_path, "T", HEAD + "1,US,0.0100,,1/1,\n1,US,0.0200,,1/1,2026-03-01\n")
    reg = Registry(store)
    for by in ("setup", "connect", "disconnect"):
        client(store, by, [[None, "T"]], bill_by=by)
        reg.add_account(by, username=f"u-{by}")
    calls = []
    for by in ("setup", "connect", "disconnect"):
        calls += [
            # X: setup 23:59:30, connect 23:59:50, disconnect 00:00:50 (the 1st)
            (f"x-{by}", "2026-02-28 23:59:50", "15551234567", 60, "", f"u-{by}", "", "",
             "2026-02-28 23:59:30"),
            # Y: setup 23:59:50, connect 00:00:10, disconnect 00:01:10
            (f"y-{by}", "2026-03-01 00:00:10", "15551234567", 60, "", f"u-{by}", "", "",
             "2026-02-28 23:59:50"),
        ]
    import_cdrs(store, cdrs(tmp_path / "events.csv", calls))

    assert live(store, "setup") == Decimal("-0.02")          # 0.01 + 0.01
    assert live(store, "connect") == Decimal("-0.03")        # 0.01 + 0.02
    assert live(store, "disconnect") == Decimal("-0.04")     # 0.02 + 0.02
    dates = {e.call[1]: e.date for e in entries(store)}
    assert dates["x-setup"] == utc("2026-02-28 23:59:30")
    assert dates["x-connect"] == utc("2026-02-28 23:59:50")
    assert dates["x-disconnect"] == utc("2026-03-01 00:00:50")
    consistent(store)


def test_setup_event_without_setup_column_is_the_connect_time(store: Store, decks: Decks,
                                                               tmp_path: Path) -> None:
    table(decks, tmp_path, "T", HEAD + "1,US,0.0100,,1/1,\n1,US,0.0200,,1/1,2026-03-01\n")
    client(store, "setup", [[None, "T"]], bill_by="setup")
    Registry(store).add_account("setup", username="u")
    src = write(tmp_path / "c.csv", "id,start,number,duration,username\n"
                                    "a,2026-03-01 00:00:10,15551234567,60,u\n")
    import_cdrs(store, src)
    assert live(store, "setup") == Decimal("-0.02")
    consistent(store)


def test_client_moves_to_another_table_from_a_date(store: Store, decks: Decks,
                                                   tmp_path: Path) -> None:
    table(decks, tmp_path, "OLD", HEAD + "1,US,0.0100,,1/1,\n")
    table(decks, tmp_path, "NEW", HEAD + "1,US,0.0300,,1/1,\n")
    client(store, "acme", [[None, "OLD"]])
    Registry(store).add_account("acme", ip="10.1.2.3")
    ok(run_cli("client", "edit", "acme", "--rate-table", "NEW", "--from", "2026-03-01",
               data=data_of(store)))
    assert Registry(store).client("acme").rate_tables == [[None, "OLD"],
                                                          [utc("2026-03-01"), "NEW"]]
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("before", "2026-02-28 23:59:59", "15551234567", 60, "10.1.2.3"),
        ("at", "2026-03-01 00:00:00", "15551234567", 60, "10.1.2.3"),
        ("after", "2026-03-15 12:00:00", "15551234567", 60, "10.1.2.3")]))
    got = {e.call[1]: (e.call[9], -money(e.amount)) for e in entries(store)}
    assert got == {"before": ("OLD", Decimal("0.01")), "at": ("NEW", Decimal("0.03")),
                   "after": ("NEW", Decimal("0.03"))}
    assert live(store, "acme") == Decimal("-0.07")
    consistent(store)


# -- vendors and the summary report

def test_vendor_cost_and_margin(store: Store, decks: Decks, tmp_path: Path) -> None:
    table(decks, tmp_path, "T", T_ROWS)
    table(decks, tmp_path, "TERM", HEAD + "1,US,0.0040,,1/1,\n44,UK,0.0150,,60/60,\n")
    client(store, "acme", [[None, "T"]])
    client(store, "carrierx", [], term_table="TERM")
    reg = Registry(store)
    reg.add_account("acme", ip="10.1.2.3")
    reg.add_account("carrierx", username="trunk7")
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("v1", DAY, "15551234567", 120, "10.1.2.3", "", "", "carrierx"),   # vendor by name
        ("v2", DAY, "15551234567", 90, "10.1.2.3", "", "", "trunk7"),      # by its username
        ("v3", DAY, "15551234567", 30, "10.1.2.3"),                        # no vendor
        ("v4", DAY, "442079460000", 61, "10.1.2.3", "", "", "carrierx"),
        ("v5", DAY, "15551234567", 60, "10.1.2.3", "", "", "nobody")]))    # unknown vendor
    report = cli_json(store, "report", "summary", "--from", "2026-03-01", "--to", "2026-04-01")

    lines = {(li["client"], li["destination"]): li for li in report["lines"]}
    assert set(lines) == {("acme", "US"), ("acme", "UK")}
    us, uk = lines[("acme", "US")], lines[("acme", "UK")]
    us_revenue = price("0.01", 120) + price("0.01", 90) + price("0.01", 30) + price("0.01", 60)
    us_cost = price("0.004", 120) + price("0.004", 90)
    assert (us["calls"], us["minutes"], us["currency"]) == (4, "5.00", "USD")
    assert Decimal(us["revenue"]) == us_revenue == Decimal("0.05")
    assert Decimal(us["vendor_cost"]) == us_cost == Decimal("0.014")
    assert Decimal(us["margin"]) == us_revenue - us_cost == Decimal("0.036")
    assert us["calls_without_cost"] == 2
    assert Decimal(uk["revenue"]) == price("0.02", 61, 60, 60) == Decimal("0.04")
    assert Decimal(uk["vendor_cost"]) == price("0.015", 61, 60, 60) == Decimal("0.03")
    assert Decimal(uk["margin"]) == Decimal("0.01")
    assert uk["calls_without_cost"] == 0
    assert live(store, "acme") == -(us_revenue + Decimal("0.04"))
    assert live(store, "carrierx") == 0                      # a cost is not a charge
    consistent(store)


def test_summary_report_per_client_and_destination(world: Store, tmp_path: Path) -> None:
    store = world
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("r1", "2026-03-02 10:00:00", "15551234567", 90, "10.1.2.3"),
        ("r2", "2026-03-03 10:00:00", "15551234567", 45, "10.1.2.3"),
        ("r3", "2026-03-03 11:00:00", "15551234567", 0, "10.1.2.3"),       # unanswered
        ("r4", "2026-03-04 10:00:00", "442079460000", 125, "", "acme-sip"),
        ("r5", "2026-03-04 10:00:00", "15551234567", 61, "10.2.3.4"),      # beta
        ("r6", "2026-03-05 10:00:00", "15551234567", 61, "10.7.7.7"),      # no account
        ("r7", "2026-04-01 00:00:00", "15551234567", 600, "10.1.2.3")]))   # after --to

    lines, unmatched = summary_report(store, utc("2026-03-01"), utc("2026-04-01"))
    got = {(li.client, li.destination): (li.calls, str(li.minutes), money(li.revenue))
           for li in lines}
    assert got == {("acme", "US"): (2, "2.25", price("0.01", 90) + price("0.01", 45)),
                   ("acme", "UK"): (1, "2.08", price("0.02", 125, 60, 60)),
                   ("beta", "US"): (1, "1.02", price("0.05", 61))}
    assert got[("acme", "US")][2] == Decimal("0.0225")
    assert got[("acme", "UK")][2] == Decimal("0.06")
    assert unmatched == 1

    report = cli_json(store, "report", "summary", "--from", "2026-03-01", "--to", "2026-04-01",
                      "--client", "beta")
    assert [(li["client"], li["destination"], li["calls"], li["minutes"], li["revenue"])
            for li in report["lines"]] == [("beta", "US", 1, "1.02", "0.0508")]
    consistent(store)


# -- mismatches

MISMATCHED = [
    ("m1", "2026-03-01 10:00:00", "15551234567", 60, "10.7.7.7"),     # no account
    ("m2", "2026-03-02 10:00:00", "999123", 60, "10.1.2.3"),          # no rate
    ("m3", "2026-03-03 10:00:00", "15551234567", 60, "", "gone-sip"),  # client deleted
    ("m4", "2026-03-04 10:00:00", "15551234567", 60, "10.1.2.3"),     # billed
]


@pytest.fixture
def mismatched(world: Store, tmp_path: Path) -> tuple[Store, ImportSummary, ImportSummary]:
    """m1..m4 imported twice; the store and both summaries."""
    store = world
    client(store, "gone", [[None, "T"]])
    Registry(store).add_account("gone", username="gone-sip")
    ok(run_cli("client", "delete", "gone", data=data_of(store)))
    src = cdrs(tmp_path / "mm.csv", MISMATCHED)
    first = import_cdrs(store, src)
    again = import_cdrs(store, src)
    return store, first, again


def test_mismatches_listed_once_with_reasons(mismatched: tuple) -> None:
    store, first, again = mismatched
    assert (first.billed, first.mismatched) == (1, 3)
    assert (first.reasons["no-account"], first.reasons["no-rate"]) == (1, 1)
    assert (again.already, again.billed, again.mismatched) == (4, 0, 0)
    found = cli_json(store, "mismatches")
    assert [m["id"] for m in found] == ["m1", "m2", "m3"]
    assert [m["reason"] for m in found[:2]] == ["no-account", "no-rate"]
    for m in found:
        assert m["explanation"] == REASONS[m["reason"]]
        assert m["source"] == "canonical"
    assert found[0]["start"].startswith("2026-03-01") and found[0]["ip"] == "10.7.7.7"
    assert (found[1]["number"], found[1]["duration"]) == ("999123", 60)
    assert found[2]["username"] == "gone-sip"
    assert live(store, "acme") == Decimal("-0.01")
    assert live(store, "gone") == 0
    consistent(store)


def test_a_deleted_clients_cdr_is_a_client_deleted_mismatch(mismatched: tuple) -> None:
    store, first, _ = mismatched
    assert first.reasons == {"no-account": 1, "no-rate": 1, "client-deleted": 1}
    assert [(m.id, m.reason) for m in mismatches(store)][2] == ("m3", "client-deleted")


def test_bad_number_and_no_rate_table_mismatches(store: Store, decks: Decks,
                                                 tmp_path: Path) -> None:
    table(decks, tmp_path, "T", T_ROWS)
    client(store, "acme", [[None, "T"]])
    client(store, "later", [[utc("2026-04-01"), "T"]])           # no table before April
    reg = Registry(store)
    reg.add_account("acme", ip="10.1.2.3")
    reg.add_account("acme", ip="10.9.9.9", dial_plan=US_PLAN)
    reg.add_account("later", ip="10.3.3.3")
    s = import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("n1", DAY, "s", 60, "10.1.2.3"),                           # not a number
        ("n2", DAY, "abc", 60, "10.9.9.9"),                         # nor through a plan
        ("n3", DAY, "15551234567", 60, "10.3.3.3"),                 # no table yet
        ("n4", "2026-04-02 10:00:00", "15551234567", 60, "10.3.3.3")]))
    assert (s.billed, s.mismatched) == (1, 3)
    assert [(m.id, m.reason) for m in mismatches(store)] == [
        ("n1", "bad-number"), ("n2", "bad-number"), ("n3", "no-rate-table")]
    assert live(store, "later") == Decimal("-0.01")
    consistent(store)


def test_mismatches_from_to(mismatched: tuple) -> None:
    store = mismatched[0]
    found = cli_json(store, "mismatches", "--from", "2026-03-02", "--to", "2026-03-03")
    assert [m["id"] for m in found] == ["m2"]
    found = cli_json(store, "mismatches", "--from", "2026-03-02")
    assert [m["id"] for m in found] == ["m2", "m3"]
    found = cli_json(store, "mismatches", "--to", "2026-03-02 10:00:00")
    assert [m["id"] for m in found] == ["m1"]
    assert [m.id for m in mismatches(store, utc("2026-03-03"), utc("2026-03-04"))] == ["m3"]
    assert mismatches(store, utc("2026-03-05"), utc("2026-04-01")) == []
    consistent(store)


# -- rerating

def test_rerate_bills_mismatches_once_the_data_is_fixed(mismatched: tuple, decks: Decks,
                                                        tmp_path: Path) -> None:
    store = mismatched[0]
    Registry(store).add_account("acme", ip="10.7.7.7")               # m1's account
    table(decks, tmp_path, "T", HEAD + "999,Nowhere,0.0600,,1/1,\n")  # m2's rate
    acme, n = live(store, "acme"), journal_length(store)

    s = cli_json(store, "rerate", "--from", "2026-03-01", "--to", "2026-04-01")

    assert (s["now_billed"], s["changed"], s["now_mismatched"]) == (2, 2, 0)
    assert s["charged_delta"] == {"USD": "0.07"}
    assert live(store, "acme") == acme - Decimal("0.01") - Decimal("0.06")
    new = entries(store)[n:]
    assert sorted((e.type, e.call[1], -money(e.amount)) for e in new) == [
        ("rerate", "m1", Decimal("0.01")), ("rerate", "m2", Decimal("0.06"))]
    assert [m["id"] for m in cli_json(store, "mismatches")] == ["m3"]   # deleted stays
    consistent(store)

    # Nothing changed since: a rerate posts nothing.
    n = journal_length(store)
    s = rerate(store, utc("2026-03-01"), utc("2026-04-01"))
    assert isinstance(s, RerateSummary)
    assert (s.changed, s.now_billed, s.delta) == (0, 0, {})
    assert journal_length(store) == n
    consistent(store)


def test_rerate_a_changed_rate_reverses_and_charges(world: Store, decks: Decks,
                                                   tmp_path: Path) -> None:
    store = world
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("a1", DAY, "15551234567", 60, "10.1.2.3"),
        ("a2", DAY, "442079460000", 30, "10.1.2.3"),
        ("b1", DAY, "15551234567", 120, "10.2.3.4")]))
    acme, n = live(store, "acme"), journal_length(store)
    assert acme == -(Decimal("0.01") + Decimal("0.02"))

    table(decks, tmp_path, "T", HEAD + "1,US,0.0250,,1/1,\n")          # was 0.0100
    s = rerate(store, utc("2026-03-02"), utc("2026-03-03"))

    assert (s.calls, s.changed, s.unchanged, s.now_billed, s.now_mismatched) == (3, 1, 2, 0, 0)
    assert s.to_json()["charged_delta"] == {"USD": "0.015"}
    new = entries(store)[n:]
    assert [(e.type, e.call[1], money(e.amount), e.note) for e in new] == [
        ("rerate", "a1", Decimal("0.01"), "reversal"),
        ("rerate", "a1", Decimal("-0.025"), "new price")]
    assert live(store, "acme") == acme - Decimal("0.015")
    assert charged(store, "acme") == {"a1": Decimal("0.025"), "a2": Decimal("0.02")}
    assert live(store, "beta") == Decimal("-0.10")                   # T2 did not change
    consistent(store)

    # The second rerate of the same facts posts nothing.
    n = journal_length(store)
    assert rerate(store, utc("2026-03-02"), utc("2026-03-03")).changed == 0
    assert journal_length(store) == n


def test_rerate_outside_the_period_leaves_calls_alone(world: Store, decks: Decks,
                                                     tmp_path: Path) -> None:
    store = world
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("a1", "2026-03-02 10:00:00", "15551234567", 60, "10.1.2.3"),
        ("a2", "2026-03-05 10:00:00", "15551234567", 60, "10.1.2.3")]))
    table(decks, tmp_path, "T", HEAD + "1,US,0.0250,,1/1,\n")
    ok(run_cli("rerate", "--from", "2026-03-04", "--to", "2026-03-06", data=data_of(store)))
    assert charged(store, "acme") == {"a1": Decimal("0.01"), "a2": Decimal("0.025")}
    consistent(store)


def test_rerate_client_restricts(store: Store, decks: Decks, tmp_path: Path) -> None:
    table(decks, tmp_path, "T", HEAD + "1,US,0.0100,,1/1,\n")
    reg = Registry(store)
    for name, ip in (("acme", "10.1.2.3"), ("beta", "10.2.3.4")):
        client(store, name, [[None, "T"]])
        reg.add_account(name, ip=ip)
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("a1", DAY, "15551234567", 60, "10.1.2.3"),
        ("b1", DAY, "15551234567", 60, "10.2.3.4")]))
    table(decks, tmp_path, "T", HEAD + "1,US,0.0400,,1/1,\n")

    s = cli_json(store, "rerate", "--from", "2026-03-01", "--to", "2026-04-01",
                 "--client", "beta")
    assert (s["calls"], s["changed"], s["charged_delta"]) == (1, 1, {"USD": "0.03"})
    assert (live(store, "acme"), live(store, "beta")) == (Decimal("-0.01"), Decimal("-0.04"))
    assert {e.call[1] for e in entries(store, type_="rerate")} == {"b1"}

    s = cli_json(store, "rerate", "--from", "2026-03-01", "--to", "2026-04-01")
    assert (s["changed"], s["unchanged"]) == (1, 1)
    assert (live(store, "acme"), live(store, "beta")) == (Decimal("-0.04"), Decimal("-0.04"))
    consistent(store)


def test_rerate_keeps_calls_of_a_deleted_client(store: Store, decks: Decks,
                                                tmp_path: Path) -> None:
    table(decks, tmp_path, "T", HEAD + "1,US,0.0100,,1/1,\n")
    reg = Registry(store)
    for name, ip in (("acme", "10.1.2.3"), ("gone", "10.2.3.4")):
        client(store, name, [[None, "T"]])
        reg.add_account(name, ip=ip)
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("a1", DAY, "15551234567", 60, "10.1.2.3"),
        ("g1", DAY, "15551234567", 60, "10.2.3.4"),
        ("g2", DAY, "15551234567", 120, "10.2.3.4")]))
    reg.delete_client("gone")
    before = charged(store, "gone")
    table(decks, tmp_path, "T", HEAD + "1,US,0.0400,,1/1,\n")

    s = rerate(store, utc("2026-03-01"), utc("2026-04-01"))

    assert (s.skipped_deleted, s.changed) == (2, 1)
    assert live(store, "gone") == Decimal("-0.03")
    assert charged(store, "gone") == before == {"g1": Decimal("0.01"), "g2": Decimal("0.02")}
    assert live(store, "acme") == Decimal("-0.04")
    assert [m.id for m in mismatches(store)] == []                   # kept as billed
    consistent(store)


def test_rerate_after_an_account_is_deleted_makes_a_mismatch(world: Store,
                                                             tmp_path: Path) -> None:
    store = world
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("a1", DAY, "15551234567", 60, "10.1.2.3"),
        ("a2", DAY, "15551234567", 60, "", "acme-sip")]))
    assert live(store, "acme") == Decimal("-0.02")
    Registry(store).delete_account(1)                                # ip 10.1.2.3

    s = rerate(store, utc("2026-03-01"), utc("2026-04-01"))

    assert (s.changed, s.now_mismatched, s.unchanged) == (1, 1, 1)
    assert s.delta == {"USD": -10_000_000}
    assert live(store, "acme") == Decimal("-0.01")
    assert [(m.id, m.reason) for m in mismatches(store)] == [("a1", "no-account")]
    assert charged(store, "acme") == {"a1": Decimal("0"), "a2": Decimal("0.01")}
    assert rerate(store, utc("2026-03-01"), utc("2026-04-01")).changed == 0
    consistent(store)


def test_rerate_moves_a_call_to_its_new_bill_date(store: Store, decks: Decks,
                                                  tmp_path: Path) -> None:
    table(decks, tmp_path, "T", HEAD + "1,US,0.0100,,1/1,\n1,US,0.0200,,1/1,2026-03-01\n")
    client(store, "acme", [[None, "T"]])
    Registry(store).add_account("acme", ip="10.1.2.3")
    import_cdrs(store, cdrs(tmp_path / "c.csv", [
        ("late", "2026-02-28 23:59:30", "15551234567", 60, "10.1.2.3")]))
    feb, mar = (utc("2026-02-01"), utc("2026-03-01")), (utc("2026-03-01"), utc("2026-04-01"))
    assert [li.calls for li in summary_report(store, *feb)[0]] == [1]
    Registry(store).edit_client("acme", bill_by="disconnect")     # 00:00:30 on the 1st

    s = rerate(store, feb[0], mar[1])

    assert (s.calls, s.changed) == (1, 1)
    assert live(store, "acme") == Decimal("-0.02")
    assert summary_report(store, *feb)[0] == []
    assert [(li.calls, money(li.revenue)) for li in summary_report(store, *mar)[0]] == [
        (1, Decimal("0.02"))]
    # Filed under both dates now, counted once.
    assert [li.calls for li in summary_report(store, feb[0], mar[1])[0]] == [1]
    again = rerate(store, feb[0], mar[1])
    assert (again.calls, again.changed) == (1, 0)
    consistent(store)


def test_times_without_offset_are_read_in_the_given_zone(world: Store, tmp_path: Path) -> None:
    store = world
    src = cdrs(tmp_path / "c.csv", [("z1", "2026-03-02 10:00:00", "15551234567", 60,
                                     "10.1.2.3")])
    import_cdrs(store, src, timezone="America/New_York")
    (e,) = entries(store)
    assert e.date == utc("2026-03-02 15:00:00")
    consistent(store)


def test_rerate_needs_a_period(world: Store) -> None:
    proc = run_cli("rerate", "--from", "2026-03-01", data=data_of(world))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_cli("rerate", "--from", "2026-03-02", "--to", "2026-03-01", data=data_of(world))
    assert proc.returncode == 64 and "--to must be after --from" in proc.stderr


# -- bad input: nothing written

GOOD = ("a,2026-03-02 10:00:00,15551234567,60,10.1.2.3\n"
        "b,2026-03-02 10:00:00,15551234567,60,10.7.7.7\n")   # billed; no account


@pytest.mark.parametrize("text,where", [
    pytest.param("id,start,number,duration,ip\n" + GOOD + "c,2026-02-30 10:00,155,60,x\n",
                 ":4:2: start: '2026-02-30 10:00'", id="bad-start"),
    pytest.param("id,start,number,duration,ip\n" + GOOD + "c,2026-03-02 10:00,155,-5,x\n",
                 ":4:4: duration: '-5'", id="negative-duration"),
    pytest.param("id,start,number,duration,ip\n" + GOOD + "c,2026-03-02 10:00,155,ten,x\n",
                 ":4:4: duration: 'ten'", id="non-numeric-duration"),
    pytest.param("id,start,number,duration,ip\n" + GOOD + " ,2026-03-02 10:00,155,60,x\n",
                 ":4:1: id: empty", id="missing-id"),
    pytest.param("ip,start,number,duration,id\n10.1.2.3,2026-03-02 10:00,155,60,a\n"
                 "10.1.2.3,2026-03-02 10:00,155,60,\n",
                 ":3:5: id: empty", id="missing-id-last-column"),
    pytest.param("id,start,number,duration,ip\n" + GOOD + "c,2026-03-02 10:00:00\n",
                 ":4: 2 fields", id="short-row"),
    pytest.param("id,start,number,ip\n" + "a,2026-03-02 10:00:00,15551234567,10.1.2.3\n",
                 ":1: the header lacks duration", id="missing-header-column"),
])
def test_bad_canonical_file_writes_nothing(world: Store, tmp_path: Path, text: str,
                                           where: str) -> None:
    store = world
    src = write(tmp_path / "bad.csv", text)
    proc = run_cli("cdr", "import", str(src), "--format", "canonical", data=data_of(store))
    assert proc.returncode == 65, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"rater: error: {src}{where}" in proc.stderr
    assert journal_length(store) == 0
    assert (live(store, "acme"), live(store, "beta")) == (0, 0)
    assert mismatches(store) == []
    assert cli_json(store, "mismatches") == []
    consistent(store)


def test_bad_freeswitch_row_writes_nothing(world: Store, tmp_path: Path) -> None:
    good = ('"A","1","15551234567","d","2026-03-02 10:00:00","2026-03-02 10:00:01","",'
            '"61","60","NORMAL_CLEARING","u1","","acme-sip"\n')
    bad = good.replace('"60"', '"x"').replace('"u1"', '"u2"')
    src = write(tmp_path / "fs.csv", good + bad)
    proc = run_cli("cdr", "import", str(src), "--format", "freeswitch", data=data_of(world))
    assert proc.returncode == 65 and "Traceback" not in proc.stderr
    assert f"{src}:2:9: billsec: 'x'" in proc.stderr
    assert journal_length(world) == 0 and mismatches(world) == []


def test_every_problem_of_a_file_is_named(world: Store, tmp_path: Path) -> None:
    src = write(tmp_path / "bad.csv", "id,start,number,duration\n"
                                      "a,soon,155,60\n"
                                      "b,2026-03-02 10:00,155,1.5\n")
    proc = run_cli("cdr", "import", str(src), data=data_of(world))
    assert proc.returncode == 65
    assert f"{src}:2:2: start: 'soon'" in proc.stderr
    assert f"{src}:3:4: duration: '1.5'" in proc.stderr
    assert journal_length(world) == 0


def test_unknown_format_and_missing_file(world: Store, tmp_path: Path) -> None:
    src = cdrs(tmp_path / "basic.csv", BASIC)
    proc = run_cli("cdr", "import", str(src), "--format", "cisco", data=data_of(world))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cisco" in proc.stderr

    proc = run_cli("cdr", "import", str(tmp_path / "absent.csv"), data=data_of(world))
    assert proc.returncode == 74, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rater: error: ") and "absent.csv" in proc.stderr

    proc = run_cli("cdr", "import", str(src), "--chunk", "0", data=data_of(world))
    assert proc.returncode == 64 and "Traceback" not in proc.stderr
    assert journal_length(world) == 0


def test_an_undetectable_file_is_refused(world: Store, tmp_path: Path) -> None:
    src = write(tmp_path / "what.csv", "a,b,c\n1,2,3\n")
    proc = run_cli("cdr", "import", str(src), data=data_of(world))
    assert proc.returncode == 65 and "Traceback" not in proc.stderr
    assert f"{src}:1: cannot tell the CDR format" in proc.stderr
    assert journal_length(world) == 0


# -- crash safety

CRASH_ROWS = 30_000
CRASH_IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"]      # .9: no account


def crash_setup(data: Path, deck: Path) -> Store:
    store = Store(data)
    Decks(store).import_file(deck, "T", currency="USD")
    reg = Registry(store)
    client(store, "one", [[None, "T"]])
    client(store, "two", [[None, "T"]])
    client(store, "three", [[None, "T"]])
    reg.add_account("one", ip="10.0.0.1")
    reg.add_account("two", ip="10.0.0.2")
    reg.add_account("three", ip="10.0.0.3")
    return store


def crash_file(path: Path) -> Path:
    lines = ["id,start,number,duration,ip"]
    for i in range(CRASH_ROWS):
        day, sec = divmod(i * 83, 86400)
        number = ("1555" if i % 3 else "4420") + f"{i:07d}"
        lines.append(f"k{i},2026-03-{1 + day % 28:02d} {sec // 3600:02d}:{sec // 60 % 60:02d}:"
                     f"{sec % 60:02d},{number},{1 + i % 700},{CRASH_IPS[i % 4]}")
    return write(path, "\n".join(lines) + "\n")


def state(store: Store) -> tuple:
    j = Journal(store)
    return ({n: j.balance(n).live for n in ("one", "two", "three")},
            [m.to_json() for m in mismatches(store)])


def journal_count(store: Store) -> int:
    with store.read() as txn:
        last = store.journal.last(txn)
    return int.from_bytes(last, "big") if last else 0


def killed_import(store: Store, src: Path, chunk: int) -> int:
    """Start the import; SIGKILL it once a chunk is in. Its exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "rater", "--data", str(store.data_dir),
                             "cdr", "import", str(src), "--chunk", str(chunk), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    try:
        while proc.poll() is None:
            if journal_count(store) > 0:
                os.kill(proc.pid, signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                pytest.fail("the import wrote nothing in 30 s")
            time.sleep(0.0005)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_import_resumes_without_billing_twice(tmp_path: Path) -> None:
    deck = write(tmp_path / "deck.csv", HEAD + "1,US,0.0123,,1/1,\n44,UK,0.0200,,60/60,\n")
    src = crash_file(tmp_path / "big.csv")

    clean = crash_setup(tmp_path / "clean", deck)
    try:
        s = import_cdrs(clean, src, chunk=500)
        assert (s.rows, s.billed, s.mismatched) == (CRASH_ROWS, CRASH_ROWS * 3 // 4,
                                                   CRASH_ROWS // 4)
        expected = state(clean)
        rated = len(entries(clean, type_="rated-call"))
        assert rated == s.billed                                   # every call costs > 0
        consistent(clean)
    finally:
        clean.close()

    for attempt, chunk in enumerate((500, 100, 25)):
        crashed = crash_setup(tmp_path / f"crashed{attempt}", deck)
        try:
            status = killed_import(crashed, src, chunk)
            n = journal_count(crashed)
            if status == 0 or n == rated:
                continue                                           # finished first: again
            assert status == -signal.SIGKILL and 0 < n < rated
            assert state(crashed) != expected                      # really half done
            consistent(crashed)                                    # chunks are whole

            proc = run_cli("cdr", "import", str(src), "--chunk", str(chunk), "--json",
                           data=crashed.data_dir)
            again = json.loads(ok(proc))
            assert again["already_imported"] > 0
            assert again["billed"] + again["mismatched"] + again["already_imported"] == \
                CRASH_ROWS
            assert again["billed"] < s.billed

            assert state(crashed) == expected
            ok(run_cli("check", data=crashed.data_dir))
            calls = entries(crashed, type_="rated-call")
            assert len(calls) == rated == s.billed
            assert len({e.key for e in calls}) == rated
            assert len({(e.call[0], e.call[1]) for e in calls}) == rated
            consistent(crashed)
            return
        finally:
            crashed.close()
    pytest.fail("every import finished before it could be killed")
