"""The ``rater`` command, run as a user runs it: ``python -m rater`` in a subprocess."""

from __future__ import annotations

import csv
import importlib
import io
import json
import pkgutil
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import failed, ok, run_cli, write

import rater
from rater.cli import EXIT_CODES
from rater.errors import all_error_classes

# 40 filler prefixes make the compiled deck a few KB, like any real deck.
FILLER = "".join(f"69{k:02d},Filler {k},1.0000,,60/60,\n" for k in range(40))
DECK = ('prefix,destination,rate,connect_fee,increment,effective_from\n'
        '1,"US, Canada",0.012345,,6/6,\n'
        '44,United Kingdom,0.0200,,60/1,\n'
        '447,"United Kingdom, Mobile",0.0800,0.0100,60/6,\n'
        '4915,Germany - Mobile,0.0900,,60/60,\n'
        '4915,Germany - Mobile,0.0700,,60/60,2027-01-01\n' + FILLER)
DECK_ROWS = 5 + 40
DECK_PREFIXES = 4 + 40


def rate_json(data: Path, number: str, table: str = "carrier", at: str = "2026-11-23T10:15",
              duration: int = 61) -> dict:
    out = ok(run_cli("rate", number, "--table", table, "--at", at, "--duration",
                     str(duration), "--json", data=data))
    return json.loads(out)


def list_json(data: Path) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(ok(run_cli("deck", "list", "--json", data=data)))}


@pytest.fixture
def deck_file(tmp_path: Path) -> Path:
    return write(tmp_path / "deck.csv", DECK)


@pytest.fixture
def data(tmp_path: Path, deck_file: Path) -> Path:
    """A data directory with table ``carrier`` (EUR, Europe/Berlin, default rounding)."""
    d = tmp_path / "data"
    ok(run_cli("deck", "import", str(deck_file), "--table", "carrier", "--currency", "EUR",
               "--timezone", "Europe/Berlin", data=d))
    return d


# -- where the data lives

def test_data_dir_from_option_then_env_then_cwd(tmp_path: Path, deck_file: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    opt, env = tmp_path / "opt", tmp_path / "env"
    imp = ("deck", "import", str(deck_file), "--currency", "EUR", "--table")

    ok(run_cli(*imp, "by_option", data=opt, cwd=work))
    assert (opt / "lmdb").is_dir()
    ok(run_cli(*imp, "by_env", env={"RATER_DATA": str(env)}, cwd=work))
    assert (env / "lmdb").is_dir()
    assert not (work / "rater-data").exists()
    ok(run_cli(*imp, "by_default", cwd=work))
    assert (work / "rater-data" / "lmdb").is_dir()

    def tables(**kw) -> list[str]:
        return [t["name"] for t in json.loads(ok(run_cli("deck", "list", "--json", cwd=work,
                                                         **kw)))]
    assert tables(data=opt) == ["by_option"]
    assert tables(data=opt, env={"RATER_DATA": str(env)}) == ["by_option"]  # --data wins
    assert tables(env={"RATER_DATA": str(env)}) == ["by_env"]
    assert tables() == ["by_default"]


# -- deck commands

def test_deck_import_options_and_json(tmp_path: Path, deck_file: Path) -> None:
    data = tmp_path / "data"
    report = json.loads(ok(run_cli(
        "deck", "import", str(deck_file), "--table", "carrier", "--currency", "eur",
        "--timezone", "Europe/Berlin", "--decimals", "5", "--rounding", "down", "--json",
        data=data)))
    assert report["table"] == "carrier"
    assert (report["version"], report["created"]) == (1, True)
    assert report["file_rows"] == DECK_ROWS
    assert report["summary"] == {"added": DECK_ROWS, "changed": 0, "closed": 0, "removed": 0}
    assert report["prefixes"] == DECK_PREFIXES

    table = list_json(data)["carrier"]
    assert (table["currency"], table["timezone"], table["decimals"], table["rounding"]) == (
        "EUR", "Europe/Berlin", 5, "down")
    assert (table["version"], table["prefixes"]) == (1, DECK_PREFIXES)

    # 7 s to the US in 6/6 increments: 12 s at 0.012345/min = 0.002469 exactly.
    call = rate_json(data, "+1 212 555 0123", duration=7)
    assert call["cost"] == "0.00246"                           # 5 decimals, rounded down
    assert call["start"] == "2026-11-23T10:15:00+01:00"        # --at read in Europe/Berlin

    # The defaults, for contrast: 4 decimals, half-up, UTC.
    ok(run_cli("deck", "import", str(deck_file), "--table", "defaults", "--currency", "EUR",
               data=data))
    call = rate_json(data, "+1 212 555 0123", table="defaults", duration=7)
    assert call["cost"] == "0.0025"
    assert call["start"] == "2026-11-23T10:15:00+00:00"


def test_deck_import_human_output(tmp_path: Path, deck_file: Path) -> None:
    out = ok(run_cli("deck", "import", str(deck_file), "--table", "carrier", "--currency",
                     "EUR", data=tmp_path / "data"))
    assert f"Created table carrier, version 1: {DECK_ROWS} rows read, {DECK_ROWS} added" in out
    assert f"Compiled deck: {DECK_PREFIXES} prefixes" in out


def test_deck_show_prefix_and_at(data: Path) -> None:
    def show(*extra: str) -> dict:
        return json.loads(ok(run_cli("deck", "show", "carrier", *extra, "--json", data=data)))

    later = show("--prefix", "4915", "--at", "2027-02-01")
    assert later["table"]["name"] == "carrier"
    assert (later["version"], later["prefixes"]) == (1, DECK_PREFIXES)
    [row] = later["rows"]
    assert row["prefix"] == "4915"
    assert row["tiers"] == [{"from_second": 0, "price": "0.07", "unit": 60, "increment": 60}]
    assert row["effective_from"] == "2027-01-01T00:00:00+01:00"

    [row] = show("--prefix", "4915", "--at", "2026-12-31T23:59:59")["rows"]
    assert row["tiers"][0]["price"] == "0.09"
    assert row["effective_from"] is None

    assert len(show("--prefix", "4915")["rows"]) == 2           # every stored row
    uk = show("--prefix", "44")["rows"]
    assert [(r["prefix"], r["destination"], r["connect_fee"]) for r in uk] == [
        ("44", "United Kingdom", "0"), ("447", "United Kingdom, Mobile", "0.01")]


def test_deck_diff_history_rollback(data: Path, tmp_path: Path) -> None:
    update = write(tmp_path / "update.csv",
                   "prefix,destination,rate,connect_fee,increment\n"
                   '447,"United Kingdom, Mobile",0.0900,0.0100,60/6\n'
                   "33,France,0.0190,,1/1\n")
    ok(run_cli("deck", "import", str(update), "--table", "carrier", data=data))

    diff = json.loads(ok(run_cli("deck", "diff", "carrier", "--json", data=data)))
    assert (diff["table"], diff["version"], diff["action"]) == ("carrier", 2, "import")
    assert diff["summary"] == {"added": 1, "changed": 1, "closed": 0, "removed": 0}
    kinds = {c["kind"]: c for c in diff["changes"]}
    assert kinds["added"]["before"] is None and kinds["added"]["after"]["prefix"] == "33"
    changed = kinds["changed"]
    assert changed["before"]["tiers"][0]["price"] == "0.08"
    assert changed["after"]["tiers"][0]["price"] == "0.09"
    assert rate_json(data, "447911123456")["cost"] == "0.1090"    # 66 s at 0.09 + 0.01

    history = json.loads(ok(run_cli("deck", "history", "carrier", "--json", data=data)))
    assert [(v["version"], v["action"], v["rolled_back"]) for v in history] == [
        (1, "import", None), (2, "import", None)]
    assert history[1]["source"]["file"] == str(update)

    out = ok(run_cli("deck", "rollback", "carrier", data=data))
    assert "Rolled back version 2 of carrier" in out and "now at version 1" in out
    assert rate_json(data, "447911123456")["cost"] == "0.0980"    # the old price again
    failed(run_cli("rate", "33 1 2345", "--table", "carrier", data=data), "NO_RATE", 3)
    history = json.loads(ok(run_cli("deck", "history", "carrier", "--json", data=data)))
    assert history[0]["rolled_back"] is None and history[1]["rolled_back"] is not None
    assert json.loads(ok(run_cli("deck", "diff", "carrier", "--json", data=data)))[
        "version"] == 1

    # Undoing the version that created the table removes it.
    undone = json.loads(ok(run_cli("deck", "rollback", "carrier", "--json", data=data)))
    assert (undone["undone"], undone["version"]) == (1, None)
    assert list_json(data) == {}
    failed(run_cli("deck", "rollback", "carrier", data=data), "UNKNOWN_TABLE", 4)


def test_deck_profiles(data: Path, tmp_path: Path) -> None:
    out = ok(run_cli("deck", "profile", "add", "carrier", "night", "--days", "mon-fri",
                     "--time", "22:00-06:00", "--weight", "20", data=data))
    assert "profile night added" in out
    profiles = json.loads(ok(run_cli("deck", "profile", "list", "carrier", "--json",
                                     data=data)))
    assert profiles == [{"name": "night", "weight": 20, "days": [0, 1, 2, 3, 4],
                         "windows": [[79200, 86400], [0, 21600]], "dates": []}]

    night = write(tmp_path / "night.csv", "prefix,destination,rate,increment,profile\n"
                                          "447,UK Mobile night,0.0400,60/6,night\n")
    ok(run_cli("deck", "import", str(night), "--table", "carrier", data=data))
    monday = rate_json(data, "447911123456", at="2026-11-23T23:00")       # a Monday night
    saturday = rate_json(data, "447911123456", at="2026-11-28T23:00")
    assert (monday["destination"], monday["cost"]) == ("UK Mobile night", "0.0440")
    assert (saturday["destination"], saturday["cost"]) == ("United Kingdom, Mobile", "0.0980")

    msg = failed(run_cli("deck", "profile", "delete", "carrier", "night", data=data),
                 "CONFLICT", 5)
    assert "night" in msg and "447" in msg
    ok(run_cli("deck", "rollback", "carrier", data=data))                 # undo the import
    ok(run_cli("deck", "profile", "delete", "carrier", "night", data=data))
    assert json.loads(ok(run_cli("deck", "profile", "list", "carrier", "--json",
                                 data=data))) == []
    failed(run_cli("deck", "profile", "delete", "carrier", "night", data=data),
           "UNKNOWN_PROFILE", 4)


def test_deck_create_and_set(tmp_path: Path, deck_file: Path) -> None:
    data = tmp_path / "data"
    out = ok(run_cli("deck", "create", "blank", "--currency", "usd", "--timezone",
                     "America/New_York", "--decimals", "2", "--rounding", "up", data=data))
    assert "Created table blank (USD, America/New_York)" in out
    t = list_json(data)["blank"]
    assert (t["currency"], t["timezone"], t["decimals"], t["rounding"], t["prefixes"]) == (
        "USD", "America/New_York", 2, "up", 0)
    failed(run_cli("deck", "create", "blank", "--currency", "USD", data=data), "CONFLICT", 5)

    out = ok(run_cli("deck", "set", "blank", "--timezone", "UTC", "--decimals", "3",
                     data=data))
    assert "Table blank, version 2" in out
    t = list_json(data)["blank"]
    assert (t["timezone"], t["decimals"], t["rounding"], t["version"]) == ("UTC", 3, "up", 2)
    failed(run_cli("deck", "set", "blank", data=data), "INVALID_ARGUMENT", 64)

    failed(run_cli("deck", "import", str(deck_file), "--table", "blank", "--currency", "EUR",
                   data=data), "CONFLICT", 5)
    ok(run_cli("deck", "import", str(deck_file), "--table", "blank", data=data))
    # 12 s at 0.012345/min = 0.002469, 3 decimals rounded up; --at read in UTC now.
    call = rate_json(data, "+1 212 555 0123", table="blank", duration=7)
    assert (call["cost"], call["currency"]) == ("0.003", "USD")
    assert call["start"] == "2026-11-23T10:15:00+00:00"


# -- rating

def test_rate_json(data: Path) -> None:
    proc = run_cli("rate", "+44 7911 123456", "--table", "carrier", "--at", "2026-11-23T10:15",
                   "--duration", "61", "--json", data=data)
    call = json.loads(ok(proc))                      # the whole output is one JSON object
    assert isinstance(call, dict)
    assert call["cost"] == "0.0980" and Decimal(call["cost"]) == Decimal("0.098")
    assert call["currency"] == "EUR"
    assert (call["prefix"], call["destination"]) == ("447", "United Kingdom, Mobile")
    assert (call["billed_seconds"], call["duration"], call["number"]) == (66, 61,
                                                                          "447911123456")
    assert call["start"] == "2026-11-23T10:15:00+01:00"
    assert call["table"] == "carrier"


def test_rate_json_says_how_the_call_was_billed(data: Path, tmp_path: Path) -> None:
    call = rate_json(data, "+44 7911 123456", at="2026-11-23T10:15", duration=61)
    assert call["connect_fee"] == "0.01"
    assert [(t["from_second"], t["increments"], t["increment"], t["price"])
            for t in call["tiers"]] == [(0, 1, 60, "0.08"), (60, 1, 6, "0.08")]
    assert sum(t["seconds"] for t in call["tiers"]) == call["billed_seconds"] == 66
    # Split at a profile boundary: each stretch names the row that billed it.
    ok(run_cli("deck", "create", "split", "--currency", "EUR", "--timezone", "Europe/Berlin",
               "--profile-boundary", "split", data=data))
    ok(run_cli("deck", "profile", "add", "split", "peak", "--days", "mon-fri",
               "--time", "08:00-20:00", data=data))
    deck = write(tmp_path / "split.csv", "prefix,destination,rate,profile\n"
                                        "44,UK off-peak,0.05,\n44,UK peak,0.10,peak\n")
    ok(run_cli("deck", "import", str(deck), "--table", "split", data=data))
    out = json.loads(ok(run_cli("rate", "4420", "--table", "split", "--at", "2026-11-23T19:59",
                                "--duration", "120", "--json", data=data)))
    assert out["cost"] == "0.1500"
    assert [(t["destination"], t["seconds"]) for t in out["tiers"]] == [
        ("UK peak", 60), ("UK off-peak", 60)]


def test_rate_for_a_very_long_call(data: Path) -> None:
    # 30 days of a call: the breakdown comes per tier, not per increment.
    call = rate_json(data, "+44 7911 123456", at="2026-11-23T10:15", duration=2_592_000)
    assert call["billed_seconds"] == 2_592_000
    assert Decimal(call["cost"]) == Decimal("0.01") + Decimal("0.08") * 43_200


def test_rate_human(data: Path) -> None:
    out = ok(run_cli("rate", "+44 7911 123456", "--table", "carrier", "--at",
                     "2026-11-23T10:15", "--duration", "61", data=data))
    assert "447911123456 -> 447 United Kingdom, Mobile (table carrier)" in out
    assert "billed 66 s" in out
    assert "cost      0.0980 EUR" in out


def test_rate_effective_date_and_tech_prefix(data: Path) -> None:
    before = rate_json(data, "+49 151 2345 6789", at="2026-12-31T23:58:30", duration=125)
    after = rate_json(data, "+49 151 2345 6789", at="2027-01-01T00:00:00", duration=125)
    assert (before["cost"], after["cost"]) == ("0.2700", "0.2100")
    out = ok(run_cli("rate", "777#447911123456", "--tech-prefix", "777#", "--table", "carrier",
                     "--at", "2026-11-23T10:15", "--duration", "61", "--json", data=data))
    assert json.loads(out)["cost"] == "0.0980"


CDRS = ("id,start,number,duration\n"
        "c1,2026-11-23 10:15:00,+44 7911 123456,61\n"
        "c2,2026-11-24 15:05:00,+882 1234 5678,42\n"
        "c3,2026-12-31 23:58:30,+49 151 2345 6789,125\n")


def test_rate_file_into_a_missing_directory(data: Path, tmp_path: Path) -> None:
    cdrs = write(tmp_path / "cdrs.csv", CDRS)
    proc = run_cli("rate-file", str(cdrs), "--table", "carrier", "-o",
                   str(tmp_path / "nowhere" / "rated.csv"), data=data)
    assert proc.returncode == EXIT_CODES["FILE_ERROR"] == 74
    assert proc.stderr.startswith("rater: error: cannot write") and "Traceback" not in proc.stderr


def test_rate_file_writes_csv_and_summary(data: Path, tmp_path: Path) -> None:
    cdrs = write(tmp_path / "cdrs.csv", CDRS)
    out = tmp_path / "rated.csv"
    proc = run_cli("rate-file", str(cdrs), "--table", "carrier", "-o", str(out), data=data)
    assert ok(proc) == ""
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows == [
        ["id", "start", "number", "duration", "prefix", "destination", "billed_seconds", "cost"],
        ["c1", "2026-11-23 10:15:00", "+44 7911 123456", "61", "447", "United Kingdom, Mobile",
         "66", "0.0980"],
        ["c2", "2026-11-24 15:05:00", "+882 1234 5678", "42", "", "", "", ""],
        ["c3", "2026-12-31 23:58:30", "+49 151 2345 6789", "125", "4915", "Germany - Mobile",
         "180", "0.2700"]]
    summary = proc.stderr
    assert "3 rows (canonical): 2 rated, 1 unmatched; total 0.3680 EUR" in summary
    assert "rows/s" in summary

    proc = run_cli("rate-file", str(cdrs), "--table", "carrier", "-o", str(out), "--json",
                   data=data)
    ok(proc)
    js = json.loads(proc.stderr)
    assert (js["rows"], js["rated"], js["unmatched"]) == (3, 2, 1)
    assert (js["total_cost"], js["currency"], js["format"]) == ("0.3680", "EUR", "canonical")

    # Without -o the CSV goes to standard output.
    proc = run_cli("rate-file", str(cdrs), "--table", "carrier", data=data)
    assert ok(proc) == out.read_text()


# -- failures

def test_error_unknown_table(data: Path) -> None:
    msg = failed(run_cli("rate", "44", "--table", "nope", data=data), "UNKNOWN_TABLE", 4)
    assert "nope" in msg


def test_error_no_rate(data: Path) -> None:
    msg = failed(run_cli("rate", "+882 1234", "--table", "carrier", data=data), "NO_RATE", 3)
    assert "no rate for +882 1234" in msg


def test_error_invalid_number(data: Path) -> None:
    msg = failed(run_cli("rate", "abc", "--table", "carrier", data=data), "INVALID_NUMBER", 64)
    assert "'abc'" in msg


def test_error_bad_deck_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.csv", "prefix,destination,rate\n44,UK,0.02\n49,DE,-0.1\n")
    data = tmp_path / "data"
    msg = failed(run_cli("deck", "import", str(bad), "--table", "x", "--currency", "EUR",
                         data=data), "BAD_DECK_FILE", 65)
    assert msg.startswith(f"{bad}:3:3: rate: ")
    assert "'-0.1'" in msg
    assert list_json(data) == {}                     # nothing was imported


def test_error_bad_deck_file_with_several_problems(tmp_path: Path) -> None:
    """Several problems are listed one per line after the error line (a design choice)."""
    bad = write(tmp_path / "bad.csv", "prefix,destination,rate\n4x,UK,0.02\n49,DE,-0.1\n")
    proc = run_cli("deck", "import", str(bad), "--table", "x", "--currency", "EUR",
                   data=tmp_path / "data")
    assert proc.returncode == EXIT_CODES["BAD_DECK_FILE"] == 65
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "rater: error: 2 problems:"
    assert lines[1].strip().startswith(f"{bad}:2:1: prefix: ")
    assert lines[2].strip().startswith(f"{bad}:3:3: rate: ")


def test_error_bad_cdr_file(data: Path, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.csv", "id,start,number,duration\n"
                                      "a,2026-11-23 10:15:00,447911123456,61\n"
                                      "b,2026-11-23 10:15:00,447911123456,-1\n")
    out = tmp_path / "rated.csv"
    msg = failed(run_cli("rate-file", str(bad), "--table", "carrier", "-o", str(out),
                         data=data), "BAD_CDR_FILE", 65)
    assert msg.startswith(f"{bad}:")
    assert "duration: '-1'" in msg
    assert not out.exists()


def test_error_store_missing(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    msg = failed(run_cli("rate", "44", "--table", "carrier", data=fresh), "STORE_ERROR", 74)
    assert str(fresh) in msg
    assert not fresh.exists()                       # reading never creates a store


@pytest.mark.parametrize("args", [
    ("rate", "44"),                                             # --table or --subject
    ("bogus",),
    ("rate", "44", "--table", "t", "--duration", "ten"),
    ("deck", "import", "f.csv", "--table", "t", "--rounding", "sideways"),
    ("deck",),
], ids=["missing-option", "unknown-command", "bad-int", "bad-choice", "no-subcommand"])
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = run_cli(*args, data=tmp_path / "data")
    assert proc.returncode == 2
    assert "usage: rater" in proc.stderr
    assert any(line.startswith("rater: error: ") for line in proc.stderr.splitlines())
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()


def test_debug_shows_the_traceback(data: Path) -> None:
    proc = run_cli("--debug", "rate", "abc", "--table", "carrier", data=data)
    assert proc.returncode == EXIT_CODES["INVALID_NUMBER"] == 64
    assert "Traceback (most recent call last)" in proc.stderr
    assert "rater.errors.InvalidNumber" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "rater: error: 'abc' is not a dialled number"


def test_exit_codes_cover_every_error_code() -> None:
    # Load every module of the package so that every RaterError subclass exists.
    for mod in pkgutil.walk_packages(rater.__path__, "rater."):
        if mod.name != "rater.__main__":
            importlib.import_module(mod.name)
    classes = all_error_classes()
    codes = {cls.code for cls in classes}
    missing = sorted(c for c in codes if c not in EXIT_CODES)
    assert missing == []
    assert set(EXIT_CODES) <= codes                 # no code that nothing raises
    assert all(isinstance(v, int) and 1 <= v <= 125 and v != 2 for v in EXIT_CODES.values())


@pytest.mark.parametrize("name", ["a", "abc", "abcd", "abcdefg"])
def test_any_table_name_can_be_rated(tmp_path: Path, name: str) -> None:
    """A small deck (one row, UTC) rated under table names of every length."""
    deck = write(tmp_path / "small.csv", "prefix,destination,rate\n44,United Kingdom,0.0200\n")
    data = tmp_path / "data"
    ok(run_cli("deck", "import", str(deck), "--table", name, "--currency", "EUR", data=data))
    call = rate_json(data, "441234567", table=name, at="2026-01-01T00:00", duration=60)
    assert (call["prefix"], call["cost"]) == ("44", "0.0200")


# -- demo

def test_demo_in_an_empty_directory_twice(tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    first = ok(run_cli("demo", cwd=work))
    assert (work / "rater-data" / "lmdb").is_dir()
    with (work / "rater-data" / "demo-rated.csv").open(newline="") as f:
        rated = list(csv.reader(f))[1:]
    costs = [Decimal(r[7]) for r in rated if r[7]]
    assert len(rated) == 9 and 0 < len(costs) < 9
    calls = [line for line in first.splitlines() if line.strip().startswith("call-")]
    assert [line.split()[0] for line in calls] == [r[0] for r in rated]
    assert calls[0].split()[:4] == ["call-1", "2026-11-23", "10:15:00", "+44"]
    assert calls[0].split()[-1] == "0.0980"          # +44 7911 at 10:15 for 61 s
    assert f"{len(costs)} rated, {9 - len(costs)} unmatched" in first
    assert f"total {sum(costs)} EUR" in first

    second = ok(run_cli("demo", cwd=work))
    assert [line for line in second.splitlines() if line.strip().startswith("call-")] == calls
    assert f"total {sum(costs)} EUR" in second
