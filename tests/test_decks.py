"""Rate tables in a real LMDB store: imports, merges, replace, diffs, rollbacks, profiles."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import write

from rater.config import StorageConfig
from rater.decks import Decks
from rater.engine import Deck
from rater.errors import (
    Conflict,
    DeckFileError,
    InvalidArgument,
    NoRate,
    StoreFull,
    UnknownProfile,
    UnknownTable,
)
from rater.store import Store
from rater.tariff import Rounding, TimeProfile, parse_days, parse_window

NAME = "carrier1"


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=UTC).timestamp())


JAN = at(2026, 1, 15)
JUNE_1 = at(2026, 6, 1)
JULY = at(2026, 7, 15)
SEPT_1 = at(2026, 9, 1)
OCT = at(2026, 10, 15)


def cost(store: Store, number: str, when: int, duration: int = 60,
         name: str = NAME) -> Decimal:
    with Deck(store, name) as deck:
        return deck.rate(number, when, duration).cost


def matched_prefix(store: Store, number: str, when: int, name: str = NAME) -> str:
    with Deck(store, name) as deck:
        return deck.rate(number, when, 60).prefix


def table_version(decks: Decks, name: str = NAME) -> int:
    (rec,) = [t for t in decks.tables() if t["settings"]["name"] == name]
    return int(rec["version"])


def deck_file(tmp_path: Path, text: str, name: str = "deck.csv") -> Path:
    return write(tmp_path / name, text)


# -- creating and pricing


def test_import_creates_table_at_version_1(tmp_path: Path, store: Store, decks: Decks) -> None:
    p = deck_file(tmp_path, "prefix,destination,rate,increment\n44,UK,0.05,60/6\n"
                            "447,UK Mobile,0.10,1\n")
    report = decks.import_file(p, NAME, currency="usd")
    assert report.created is True
    assert report.version == 1
    assert report.summary == {"added": 2, "changed": 0, "closed": 0, "removed": 0}
    assert report.file_rows == 2 and report.unchanged == 0
    assert report.prefixes == 2 and report.rows == 2
    assert decks.table(NAME).currency == "USD"
    (rec,) = decks.tables()
    assert rec["version"] == 1 and rec["active"] == [1]
    assert [v.version for v in decks.versions(NAME)] == [1]

    with Deck(store, NAME) as deck:
        assert deck.version == 1
        uk = deck.rate("442071234567", JAN, 61)
        assert (uk.prefix, uk.destination, uk.billed_seconds) == ("44", "UK", 66)
        assert uk.cost == Decimal("0.0550")                 # 66 s at 0.05/min
        assert uk.currency == "USD"
        mob = deck.rate("447700900123", JAN, 61)
        assert (mob.prefix, mob.destination, mob.billed_seconds) == ("447", "UK Mobile", 61)
        assert mob.cost == Decimal("0.1017")                # 0.101666.. half-up, 4 places
        with pytest.raises(NoRate):
            deck.rate("33123456", JAN, 60)


def test_new_table_needs_a_currency(tmp_path: Path, store: Store, decks: Decks) -> None:
    p = deck_file(tmp_path, "prefix,rate\n44,0.05\n")
    with pytest.raises(InvalidArgument) as exc:
        decks.import_file(p, NAME)
    assert "currency" in exc.value.message
    assert decks.tables() == []
    with pytest.raises(UnknownTable):
        decks.table(NAME)
    with pytest.raises(UnknownTable):
        Deck(store, NAME)


def test_currency_from_a_header(tmp_path: Path, store: Store, decks: Decks) -> None:
    p = deck_file(tmp_path, "Code,Destination,Rate (eur)\n49,Germany,0.02\n")
    report = decks.import_file(p, NAME)
    assert report.created
    assert decks.table(NAME).currency == "EUR"
    with Deck(store, NAME) as deck:
        call = deck.rate("4930123", JAN, 60)
        assert call.currency == "EUR" and call.cost == Decimal("0.02")


def test_another_currency_into_an_existing_table_conflicts(tmp_path: Path, store: Store,
                                                           decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n"), NAME, currency="USD")
    with pytest.raises(Conflict):
        decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.06\n", "b.csv"), NAME,
                          currency="EUR")
    with pytest.raises(Conflict):
        decks.import_file(deck_file(tmp_path, "Code,Rate (EUR)\n44,0.06\n", "c.csv"), NAME)
    assert table_version(decks) == 1
    assert cost(store, "441", JAN) == Decimal("0.05")


def test_table_names_of_any_length_open_for_rating(tmp_path: Path, store: Store,
                                                   decks: Decks) -> None:
    # Several small decks in one store: each compiled deck must open in place.
    names = ["t", "uk", "abc", "rtl1", "whole", "retail", "carrier"]
    for i, name in enumerate(names):
        p = deck_file(tmp_path, f"prefix,rate\n44,0.0{i + 1}\n", f"{name}.csv")
        decks.import_file(p, name, currency="USD")
    for i, name in enumerate(names):
        assert cost(store, "441", JAN, name=name) == Decimal(f"0.0{i + 1}"), name


# -- merging


def test_later_effective_row_coexists_with_the_current_one(tmp_path: Path, store: Store,
                                                           decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n"), NAME, currency="USD")
    report = decks.import_file(deck_file(tmp_path, "prefix,rate,effective_from\n"
                                                   "44,0.08,2026-06-01\n", "b.csv"), NAME)
    assert report.version == 2
    assert report.summary == {"added": 1, "changed": 0, "closed": 0, "removed": 0}
    assert report.rows == 2 and report.prefixes == 1
    assert [(r.prefix, r.effective_from) for r in decks.rows(NAME)] == [
        ("44", None), ("44", JUNE_1)]
    assert cost(store, "4420", JAN) == Decimal("0.05")
    assert cost(store, "4420", JUNE_1 - 1) == Decimal("0.05")
    assert cost(store, "4420", JUNE_1) == Decimal("0.08")
    assert cost(store, "4420", JULY) == Decimal("0.08")


def test_reimporting_same_prefix_and_date_corrects_the_row(tmp_path: Path, store: Store,
                                                           decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,destination,rate,effective_from\n"
                                          "44,UK,0.05,2026-01-01\n33,FR,0.03,2026-01-01\n"),
                      NAME, currency="USD")
    report = decks.import_file(deck_file(tmp_path, "prefix,destination,rate,effective_from\n"
                                                   "44,UK fixed,0.06,2026-01-01\n", "b.csv"),
                               NAME)
    assert report.summary == {"added": 0, "changed": 1, "closed": 0, "removed": 0}
    last = decks.last_version(NAME)
    assert last.version == 2
    assert last.summary == {"added": 0, "changed": 1, "closed": 0, "removed": 0}
    (change,) = last.changes
    assert (change.prefix, change.kind) == ("44", "changed")
    before, after = change.rows()
    assert before is not None and after is not None
    assert (before.tiers[0].price, after.tiers[0].price) == (Decimal("0.05"), Decimal("0.06"))
    assert after.destination == "UK fixed"
    assert len(decks.rows(NAME)) == 2                 # corrected, not added
    with Deck(store, NAME) as deck:
        call = deck.rate("4420", JAN, 60)
        assert call.cost == Decimal("0.06") and call.destination == "UK fixed"
        assert deck.rate("331", JAN, 60).cost == Decimal("0.03")


def test_reimporting_an_identical_file_changes_no_row(tmp_path: Path, store: Store,
                                                      decks: Decks) -> None:
    text = "prefix,rate,increment,effective_from\n44,0.05,60/6,2026-01-01\n33,0.03,1,\n"
    decks.import_file(deck_file(tmp_path, text), NAME, currency="USD")
    rows_before = decks.rows(NAME)
    stamp = decks.info(NAME)["stamp"]
    with Deck(store, NAME) as deck:
        report = decks.import_file(deck_file(tmp_path, text, "again.csv"), NAME)
        # Nothing changed, so no version is made and open decks have nothing to reload.
        assert deck.refresh() is False
    assert report.summary == {"added": 0, "changed": 0, "closed": 0, "removed": 0}
    assert report.unchanged == report.file_rows == 2
    assert decks.rows(NAME) == rows_before
    assert table_version(decks) == report.version == 1
    assert decks.info(NAME)["stamp"] == stamp
    assert len(decks.versions(NAME)) == 1


# -- replace


def _replace_setup(tmp_path: Path, decks: Decks):
    decks.import_file(deck_file(tmp_path, "prefix,destination,rate,effective_from\n"
                                          "44,UK,0.05,\n"
                                          "447,UK Mobile,0.10,\n"
                                          "4479,UK Special,0.20,2026-09-01\n"),
                      NAME, currency="USD")
    rows_v1 = decks.rows(NAME)
    report = decks.import_file(deck_file(tmp_path, "prefix,destination,rate\n"
                                                   "44,UK,0.04\n33,France,0.03\n", "az.csv"),
                               NAME, replace=True, effective="2026-06-01")
    return rows_v1, report


def test_replace_closes_unlisted_prefixes_from_the_date(tmp_path: Path, store: Store,
                                                        decks: Decks) -> None:
    _, report = _replace_setup(tmp_path, decks)
    # before the close date the old row still prices; after it, 447 falls back to 44
    assert matched_prefix(store, "447700900", JAN) == "447"
    assert cost(store, "447700900", JAN) == Decimal("0.10")
    assert cost(store, "447700900", JUNE_1 - 1) == Decimal("0.10")
    assert matched_prefix(store, "447700900", JUNE_1) == "44"
    assert cost(store, "447700900", JULY) == Decimal("0.04")
    # 4479's row dated after the close date is gone: 447 before, 44 after, never 4479
    assert matched_prefix(store, "4479123", JAN) == "447"
    assert matched_prefix(store, "4479123", OCT) == "44"
    assert cost(store, "4479123", OCT) == Decimal("0.04")
    # the listed prefix: merged (no date in the file) so it changed for all time
    assert cost(store, "4420", JAN) == Decimal("0.04")
    assert cost(store, "331", JULY) == Decimal("0.03")

    stored = {(r.prefix, r.effective_from): r for r in decks.rows(NAME)}
    assert set(stored) == {("44", None), ("447", None), ("447", JUNE_1), ("33", None)}
    assert stored[("447", JUNE_1)].closed
    assert not stored[("447", None)].closed
    src = decks.last_version(NAME).source
    assert src is not None and src["replace"] is True and src["effective"] == JUNE_1
    assert report.unchanged == 0
    # 44 changed, 33 added, 447 closed, 4479 removed
    assert report.summary == {"added": 1, "changed": 1, "closed": 1, "removed": 1}


def test_replace_diff_lists_every_kind(tmp_path: Path, decks: Decks) -> None:
    _replace_setup(tmp_path, decks)
    last = decks.last_version(NAME)
    assert last.action == "import (replace)"
    by_prefix = {c.prefix: c.rows() for c in last.changes}
    removed_before, removed_after = by_prefix["4479"]
    assert removed_after is None
    assert removed_before is not None and removed_before.tiers[0].price == Decimal("0.20")
    closed_before, closed_after = by_prefix["447"]
    assert closed_before is None and closed_after is not None and closed_after.closed
    added_before, added_after = by_prefix["33"]
    assert added_before is None and added_after is not None
    assert added_after.destination == "France"
    kinds = {(c.prefix, c.effective_from): c.kind for c in last.changes}
    assert kinds == {("44", None): "changed", ("33", None): "added",
                     ("447", JUNE_1): "closed", ("4479", SEPT_1): "removed"}
    assert last.summary == {"added": 1, "changed": 1, "closed": 1, "removed": 1}


def test_replace_keeps_a_closure_already_in_force(tmp_path: Path, decks: Decks) -> None:
    _replace_setup(tmp_path, decks)
    again = decks.import_file(deck_file(tmp_path, "prefix,destination,rate\n"
                                                  "44,UK,0.04\n33,France,0.03\n", "az2.csv"),
                              NAME, replace=True, effective="2026-08-01")
    # 447 is closed already: no second closure; everything else is unchanged
    assert again.summary == {"added": 0, "changed": 0, "closed": 0, "removed": 0}
    assert again.unchanged == 2


def test_listing_a_closed_prefix_again_reopens_it(tmp_path: Path, store: Store,
                                                  decks: Decks) -> None:
    full = deck_file(tmp_path, "prefix,destination,rate\n44,UK,0.05\n447,UK Mobile,0.10\n",
                     "full.csv")
    decks.import_file(full, NAME, currency="USD")
    decks.import_file(deck_file(tmp_path, "prefix,destination,rate\n44,UK,0.05\n", "a.csv"),
                      NAME, replace=True, effective="2026-06-01")
    assert matched_prefix(store, "4471", JULY) == "44"
    again = decks.import_file(full, NAME, replace=True, effective="2026-08-01")
    # The closure is what changed: removed, and 447 prices again at all times.
    assert again.summary == {"added": 0, "changed": 0, "closed": 0, "removed": 1}
    assert matched_prefix(store, "4471", JULY) == "447"
    assert not any(r.closed for r in decks.rows(NAME))
    # A plain (merging) import listing a prefix reopens it from the row's date.
    decks.import_file(deck_file(tmp_path, "prefix,destination,rate\n44,UK,0.05\n", "b.csv"),
                      NAME, replace=True, effective="2026-06-01")
    decks.import_file(deck_file(tmp_path, "prefix,destination,rate,effective_from\n"
                                          "447,UK Mobile,0.12,2026-09-01\n", "c.csv"), NAME)
    assert matched_prefix(store, "4471", JULY) == "44"          # closed until then
    assert cost(store, "4471", OCT) == Decimal("0.12")          # open again from its date


def test_replace_closes_a_profile_row_the_file_no_longer_lists(tmp_path: Path, store: Store,
                                                               decks: Decks) -> None:
    decks.create(NAME, currency="USD")
    decks.configure(NAME, profile=TimeProfile("night", windows=tuple(parse_window("00:00-06:00"))))
    decks.import_file(deck_file(tmp_path, "prefix,rate,profile\n44,0.10,\n44,0.05,night\n"),
                      NAME)
    assert cost(store, "441", at(2026, 7, 15, 3)) == Decimal("0.05")
    report = decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.10\n", "az.csv"), NAME,
                               replace=True, effective="2026-06-01")
    assert report.summary["closed"] == 1
    assert cost(store, "441", at(2026, 5, 15, 3)) == Decimal("0.05")
    assert cost(store, "441", at(2026, 7, 15, 3)) == Decimal("0.10")


def test_an_effective_date_without_replace_is_refused(tmp_path: Path, decks: Decks) -> None:
    with pytest.raises(InvalidArgument, match="needs --replace"):
        decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.1\n"), NAME, currency="USD",
                          effective="2026-06-01")
    assert decks.tables() == []


def test_fewer_decimals_are_refused_while_a_cap_needs_more(tmp_path: Path, store: Store,
                                                           decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate,cap\n44,0.60,0.1234\n"), NAME,
                      currency="USD", decimals=4)
    with pytest.raises(InvalidArgument, match=r"cost cap 0\.1234 has more decimal places"):
        decks.configure(NAME, rounding=Rounding(2, "half-up"))
    assert decks.table(NAME).rounding.decimals == 4
    assert cost(store, "44", JAN, 3600) == Decimal("0.1234")


# -- rollback and versions


def test_rollback_undoes_the_last_import_exactly(tmp_path: Path, store: Store,
                                                 decks: Decks) -> None:
    rows_v1, _ = _replace_setup(tmp_path, decks)
    assert table_version(decks) == 2
    undone = decks.rollback(NAME)
    assert undone.version == 2
    assert decks.rows(NAME) == rows_v1
    assert table_version(decks) == 1
    assert cost(store, "447700900", JULY) == Decimal("0.10")
    assert cost(store, "4479123", OCT) == Decimal("0.20")
    assert cost(store, "4420", JAN) == Decimal("0.05")
    with Deck(store, NAME) as deck, pytest.raises(NoRate):
        deck.rate("331", JAN, 60)
    assert decks.last_version(NAME).version == 1


def test_second_rollback_undoes_the_one_before(tmp_path: Path, store: Store,
                                               decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n"), NAME, currency="USD")
    rows_v1 = decks.rows(NAME)
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.06\n33,0.03\n", "b.csv"), NAME)
    rows_v2 = decks.rows(NAME)
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.07\n1,0.01\n", "c.csv"), NAME)
    assert cost(store, "441", JAN) == Decimal("0.07")

    assert decks.rollback(NAME).version == 3
    assert decks.rows(NAME) == rows_v2
    assert cost(store, "441", JAN) == Decimal("0.06")
    assert decks.rollback(NAME).version == 2
    assert decks.rows(NAME) == rows_v1
    assert cost(store, "441", JAN) == Decimal("0.05")
    assert table_version(decks) == 1


def test_rolling_back_the_creating_import_removes_the_table(tmp_path: Path, store: Store,
                                                            decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n447,0.10\n"), NAME,
                      currency="USD")
    undone = decks.rollback(NAME)
    assert undone.version == 1 and undone.before is None
    assert decks.tables() == []
    with pytest.raises(UnknownTable):
        decks.table(NAME)
    with pytest.raises(UnknownTable):
        decks.rows(NAME)
    with pytest.raises(UnknownTable):
        Deck(store, NAME)
    # nothing of it remains: the name starts afresh
    report = decks.import_file(deck_file(tmp_path, "prefix,rate\n33,0.03\n", "b.csv"), NAME,
                               currency="EUR")
    assert report.created and report.version == 1
    assert [r.prefix for r in decks.rows(NAME)] == ["33"]
    assert [v.version for v in decks.versions(NAME)] == [1]


def test_rollback_when_nothing_is_left(decks: Decks) -> None:
    created = decks.create(NAME, currency="USD")
    assert created.version == 1 and created.action == "create"
    assert decks.last_version(NAME).action == "create"
    with pytest.raises(Conflict):
        decks.create(NAME, currency="USD")
    decks.rollback(NAME)
    # Undoing the create removes the table, so there is no table left to answer
    # NothingToRollBack: the name is simply unknown.
    with pytest.raises(UnknownTable):
        decks.rollback(NAME)
    with pytest.raises(UnknownTable):
        decks.last_version(NAME)


def test_versions_mark_rolled_back_ones(tmp_path: Path, decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n"), NAME, currency="USD")
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.06\n", "b.csv"), NAME)
    decks.rollback(NAME)
    versions = decks.versions(NAME)
    assert [(v.version, v.rolled_back is not None) for v in versions] == [(1, False), (2, True)]
    assert versions[1].summary == {"added": 0, "changed": 1, "closed": 0, "removed": 0}
    assert decks.last_version(NAME).version == 1
    # the next import takes a new number; the rolled-back one is not reused
    report = decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.07\n", "c.csv"), NAME)
    assert report.version == 3
    assert [v.version for v in decks.versions(NAME)] == [1, 2, 3]
    assert decks.info(NAME)["active"] == [1, 3]


# -- time profiles


def _offpeak_table(tmp_path: Path, decks: Decks) -> None:
    decks.create(NAME, currency="USD")
    decks.configure(NAME, profile=TimeProfile("offpeak", days=parse_days("all"),
                                              windows=tuple(parse_window("20:00-08:00"))))
    decks.import_file(deck_file(tmp_path, "prefix,rate,profile\n44,0.10,\n44,0.02,offpeak\n"
                                          "33,0.30,\n"), NAME)


def test_profile_row_inside_its_window_plain_row_outside(tmp_path: Path, store: Store,
                                                         decks: Decks) -> None:
    _offpeak_table(tmp_path, decks)
    assert "offpeak" in decks.table(NAME).profiles
    day = (2026, 3, 4)                                    # a Wednesday
    assert cost(store, "4420", at(*day, 12)) == Decimal("0.10")
    assert cost(store, "4420", at(*day, 19, 59)) == Decimal("0.10")
    assert cost(store, "4420", at(*day, 20)) == Decimal("0.02")
    assert cost(store, "4420", at(*day, 23, 30)) == Decimal("0.02")
    assert cost(store, "4420", at(*day, 3)) == Decimal("0.02")
    assert cost(store, "4420", at(*day, 8)) == Decimal("0.10")
    # a prefix without a profile row is priced by its plain row at any hour
    assert cost(store, "331", at(*day, 23)) == Decimal("0.30")


def test_profile_days(tmp_path: Path, store: Store, decks: Decks) -> None:
    decks.create(NAME, currency="USD")
    decks.configure(NAME, profile=TimeProfile("weekend", days=parse_days("sat-sun")))
    decks.import_file(deck_file(tmp_path, "prefix,rate,profile\n44,0.10,\n44,0.01,weekend\n"),
                      NAME)
    assert cost(store, "4420", at(2026, 3, 6, 12)) == Decimal("0.10")     # Friday
    assert cost(store, "4420", at(2026, 3, 7, 12)) == Decimal("0.01")     # Saturday
    assert cost(store, "4420", at(2026, 3, 8, 23)) == Decimal("0.01")     # Sunday
    assert cost(store, "4420", at(2026, 3, 9, 0)) == Decimal("0.10")      # Monday


def test_profile_windows_in_the_table_zone(tmp_path: Path, store: Store, decks: Decks) -> None:
    decks.create(NAME, currency="EUR", timezone="Europe/Berlin")
    decks.configure(NAME, profile=TimeProfile("offpeak",
                                              windows=tuple(parse_window("20:00-08:00"))))
    decks.import_file(deck_file(tmp_path, "prefix,rate,profile\n49,0.10,\n49,0.02,offpeak\n"),
                      NAME)
    # 19:30 UTC is 20:30 in Berlin in winter: off-peak there
    assert cost(store, "4930", at(2026, 1, 14, 19, 30)) == Decimal("0.02")
    assert cost(store, "4930", at(2026, 1, 14, 18, 30)) == Decimal("0.10")


def test_deleting_a_profile_in_use_conflicts(tmp_path: Path, store: Store,
                                             decks: Decks) -> None:
    _offpeak_table(tmp_path, decks)
    version = table_version(decks)
    with pytest.raises(Conflict) as exc:
        decks.configure(NAME, drop_profile="offpeak")
    assert "offpeak" in exc.value.message
    assert "offpeak" in decks.table(NAME).profiles
    assert table_version(decks) == version
    assert cost(store, "4420", at(2026, 3, 4, 22)) == Decimal("0.02")
    with pytest.raises(UnknownProfile):
        decks.configure(NAME, drop_profile="nosuch")


def test_deleting_an_unused_profile_and_rolling_it_back(decks: Decks) -> None:
    decks.create(NAME, currency="USD")
    decks.configure(NAME, profile=TimeProfile("night", windows=((0, 21600),)))
    assert list(decks.table(NAME).profiles) == ["night"]
    decks.configure(NAME, drop_profile="night")
    assert decks.table(NAME).profiles == {}
    decks.rollback(NAME)
    assert list(decks.table(NAME).profiles) == ["night"]
    assert table_version(decks) == 2


def test_importing_an_undefined_profile_fails_with_its_cell(tmp_path: Path, store: Store,
                                                           decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.10\n"), NAME, currency="USD")
    p = deck_file(tmp_path, "prefix,destination,rate,profile\n44,UK,0.10,\n"
                            "44,UK,0.02,offpeak\n", "b.csv")
    with pytest.raises(DeckFileError) as exc:
        decks.import_file(p, NAME)
    (problem,) = exc.value.problems
    assert (problem.line, problem.column, problem.field) == (3, 4, "profile")
    assert "offpeak" in problem.message
    assert table_version(decks) == 1


# -- atomicity


def test_a_bad_file_changes_nothing(tmp_path: Path, store: Store, decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n33,0.03\n"), NAME,
                      currency="USD")
    rows_before = decks.rows(NAME)
    bad = deck_file(tmp_path, "prefix,rate\n44,0.50\n33,0.30\n49,-0.02\n1,0.01\n", "bad.csv")
    with pytest.raises(DeckFileError) as exc:
        decks.import_file(bad, NAME)
    assert [(p.line, p.field) for p in exc.value.problems] == [(4, "rate")]
    assert table_version(decks) == 1
    assert [v.version for v in decks.versions(NAME)] == [1]
    assert decks.rows(NAME) == rows_before
    assert cost(store, "441", JAN) == Decimal("0.05")
    assert cost(store, "331", JAN) == Decimal("0.03")
    with Deck(store, NAME) as deck, pytest.raises(NoRate):
        deck.rate("1555", JAN, 60)


def test_a_bad_file_creates_no_table(tmp_path: Path, decks: Decks) -> None:
    bad = deck_file(tmp_path, "prefix,rate\n44,0.05\n4x,0.01\n")
    with pytest.raises(DeckFileError):
        decks.import_file(bad, NAME, currency="USD")
    assert decks.tables() == []


def test_an_open_deck_keeps_its_snapshot_until_refresh(tmp_path: Path, store: Store,
                                                       decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.05\n"), NAME, currency="USD")
    with Deck(store, NAME) as deck:
        assert deck.refresh() is False
        decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.09\n33,0.03\n", "b.csv"),
                          NAME)
        assert deck.version == 1
        assert deck.rate("441", JAN, 60).cost == Decimal("0.05")
        with pytest.raises(NoRate):
            deck.rate("331", JAN, 60)
        assert deck.refresh() is True
        assert deck.version == 2
        assert deck.rate("441", JAN, 60).cost == Decimal("0.09")
        assert deck.rate("331", JAN, 60).cost == Decimal("0.03")
        assert deck.refresh() is False
        decks.rollback(NAME)
        assert deck.rate("441", JAN, 60).cost == Decimal("0.09")
        assert deck.refresh() is True
        assert deck.rate("441", JAN, 60).cost == Decimal("0.05")


# -- the LMDB map

BIG = "prefix,destination,rate\n" + "".join(
    f"{100000 + i},Destination {i},0.{i % 97:04d}\n" for i in range(2000))


def small_and_big(tmp_path: Path, uk_rate: str) -> tuple[Path, Path]:
    """A one-row deck (44 at uk_rate) and a 2000-row one, to make an LMDB map grow."""
    return (deck_file(tmp_path, f"prefix,destination,rate\n44,UK,{uk_rate}\n"),
            deck_file(tmp_path, BIG, "big.csv"))


def test_store_full_leaves_the_previous_state(tmp_path: Path) -> None:
    small, big = small_and_big(tmp_path, "0.05")
    data = tmp_path / "small-store"
    cfg = StorageConfig(map_size=64 * 1024, max_map_size=64 * 1024)
    with Store(data, cfg) as store:
        decks = Decks(store)
        decks.import_file(small, NAME, currency="USD")
        rows_before = decks.rows(NAME)
        with pytest.raises(StoreFull):
            decks.import_file(big, NAME)
        assert store.map_size == 64 * 1024
        assert table_version(decks) == 1
        assert decks.rows(NAME) == rows_before
        assert cost(store, "4420", JAN) == Decimal("0.05")
        with Deck(store, NAME) as deck, pytest.raises(NoRate):
            deck.rate("100005", JAN, 60)

    cfg = StorageConfig(map_size=64 * 1024, max_map_size=16 * 1024 * 1024)
    with Store(data, cfg) as store:
        decks = Decks(store)
        report = decks.import_file(big, NAME)
        assert report.version == 2 and report.summary["added"] == 2000
        assert store.map_size > 64 * 1024
        assert cost(store, "1000051", JAN) == Decimal("0.0005")
        assert cost(store, "4420", JAN) == Decimal("0.05")


def test_map_grows_after_decks_are_closed(tmp_path: Path) -> None:
    small, big = small_and_big(tmp_path, "0.05")
    cfg = StorageConfig(map_size=64 * 1024, max_map_size=16 * 1024 * 1024)
    with Store(tmp_path / "store", cfg) as store:
        decks = Decks(store)
        decks.import_file(small, NAME, currency="USD")
        deck = Deck(store, NAME)
        assert deck.rate("4420", JAN, 60).cost == Decimal("0.05")
        deck.close()
        report = decks.import_file(big, NAME)
        assert report.version == 2
        assert store.map_size > 64 * 1024


def test_the_map_grows_under_decks_in_use(tmp_path: Path) -> None:
    """A resize waits for rating calls in flight, then open decks carry on, newest deck."""
    import threading

    import numpy as np

    small, big = small_and_big(tmp_path, "0.06")
    cfg = StorageConfig(map_size=64 * 1024, max_map_size=64 * 1024 * 1024)
    with Store(tmp_path / "store", cfg) as store:
        decks = Decks(store)
        decks.import_file(small, NAME, currency="USD")
        deck = Deck(store, NAME)
        numbers = np.full(20_000, 4420, np.uint64)
        starts = np.full(20_000, JAN, np.int64)
        durations = np.full(20_000, 60, np.int64)
        seen: list[int] = []
        errors: list[BaseException] = []
        stop = threading.Event()
        rating = threading.Event()

        def rate() -> None:
            try:
                while not stop.is_set():
                    batch = deck.rate_batch(numbers, starts, durations)
                    seen.append(int(batch.cost_nanos.sum()))
                    rating.set()
            except BaseException as exc:     # reported below
                errors.append(exc)

        worker = threading.Thread(target=rate)
        worker.start()
        assert rating.wait(timeout=60)
        try:
            decks.import_file(big, NAME)         # grows the map several times
        finally:
            stop.set()
            worker.join(timeout=60)
        assert not errors and not worker.is_alive()
        assert store.map_size > 64 * 1024
        assert len(seen) > 0 and set(seen) == {20_000 * 60_000_000}
        # The deck was reopened on what was committed then; the import shows on refresh.
        assert deck.rate("4420", JAN, 60).cost == Decimal("0.06")
        assert deck.refresh() is True
        assert deck.rate("1000051", JAN, 60).cost == Decimal("0.0005")
        deck.close()


def test_refresh_while_other_threads_rate(tmp_path: Path, store: Store, decks: Decks) -> None:
    import threading

    import numpy as np

    decks.import_file(deck_file(tmp_path, "prefix,rate\n44,0.06\n"), NAME, currency="USD")
    deck = Deck(store, NAME)
    numbers = np.full(5_000, 4420, np.uint64)
    starts = np.full(5_000, JAN, np.int64)
    durations = np.full(5_000, 60, np.int64)
    totals: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def rate() -> None:
        try:
            while not stop.is_set():
                totals.add(int(deck.rate_batch(numbers, starts, durations).cost_nanos.sum()))
        except BaseException as exc:     # reported below
            errors.append(exc)

    workers = [threading.Thread(target=rate) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        for k in range(20):
            price = "0.06" if k % 2 else "0.07"
            decks.import_file(deck_file(tmp_path, f"prefix,rate\n44,{price}\n", "p.csv"), NAME)
            assert deck.refresh() is True
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
    deck.close()
    assert not errors
    # Every batch was priced wholly by one deck or the other, never half by each.
    assert totals and totals <= {5_000 * 60_000_000, 5_000 * 70_000_000}


def test_a_map_grown_by_another_process_is_adopted(tmp_path: Path) -> None:
    import subprocess
    import sys

    small, big = small_and_big(tmp_path, "0.06")
    data = tmp_path / "store"
    cfg = StorageConfig(map_size=64 * 1024, max_map_size=64 * 1024 * 1024)
    with Store(data, cfg) as store:
        Decks(store).import_file(small, NAME, currency="USD")
        with Deck(store, NAME) as deck:
            other = subprocess.run(
                [sys.executable, "-c",
                 "import sys; from pathlib import Path; from rater.config import StorageConfig;"
                 "from rater.store import Store; from rater.decks import Decks;"
                 "s = Store(Path(sys.argv[1]), StorageConfig(65536, 64 << 20));"
                 "Decks(s).import_file(sys.argv[2], sys.argv[3])",
                 str(data), str(big), NAME], capture_output=True, text=True, timeout=120)
            assert other.returncode == 0, other.stderr
            assert deck.rate("4420", JAN, 60).cost == Decimal("0.06")   # its snapshot
            assert deck.refresh() is True                                # adopts the new size
            assert deck.rate("1000051", JAN, 60).cost == Decimal("0.0005")
        assert store.map_size > 64 * 1024


# -- reading rows


def test_rows_filters_by_prefix_and_instant(tmp_path: Path, decks: Decks) -> None:
    decks.import_file(deck_file(tmp_path, "prefix,rate,effective_from,effective_to\n"
                                          "44,0.05,,\n44,0.06,2026-06-01,\n"
                                          "447,0.10,,2026-09-01\n4,0.50,,\n33,0.03,,\n"),
                      NAME, currency="USD")
    assert [(r.prefix, r.effective_from) for r in decks.rows(NAME, prefix="44")] == [
        ("44", None), ("44", JUNE_1), ("447", None)]
    assert [r.prefix for r in decks.rows(NAME, prefix="447")] == ["447"]
    assert decks.rows(NAME, prefix="9") == []
    assert len(decks.rows(NAME)) == 5

    def in_force(when: int, prefix: str = "") -> set[tuple[str, Decimal]]:
        return {(r.prefix, r.tiers[0].price) for r in decks.rows(NAME, prefix=prefix, at=when)}

    assert in_force(JAN) == {("44", Decimal("0.05")), ("447", Decimal("0.10")),
                             ("4", Decimal("0.50")), ("33", Decimal("0.03"))}
    assert in_force(JULY, "44") == {("44", Decimal("0.06")), ("447", Decimal("0.10"))}
    assert in_force(OCT, "44") == {("44", Decimal("0.06"))}      # 447 ended Sept 1


def test_rows_at_leaves_out_closures(tmp_path: Path, decks: Decks) -> None:
    _replace_setup(tmp_path, decks)
    assert {r.prefix for r in decks.rows(NAME, prefix="447", at=JAN)} == {"447"}
    assert decks.rows(NAME, prefix="447", at=JULY) == []
    assert any(r.closed for r in decks.rows(NAME, prefix="447"))
    with pytest.raises(UnknownTable):
        decks.rows("nosuch")


def test_a_table_holds_at_most_the_profiles_a_row_can_name(
        tmp_path: Path, store: Store, decks: Decks, monkeypatch: pytest.MonkeyPatch) -> None:
    # A compiled row names its profile by a 16-bit index: the compiler refuses more (here
    # the limit is lowered to 1), whichever command adds them, and nothing changes.
    from rater import compiler

    decks.import_file(write(tmp_path / "d.csv", "prefix,destination,rate\n44,UK,0.02\n"),
                      "T", currency="EUR")
    decks.configure("T", profile=TimeProfile("a", days=frozenset({0})))
    monkeypatch.setattr(compiler, "MAX_PROFILES", 1)
    with pytest.raises(InvalidArgument, match="at most 1"):
        decks.configure("T", profile=TimeProfile("b", days=frozenset({1})))
    with Deck(store, "T") as deck:
        assert list(deck.table.profiles) == ["a"]
