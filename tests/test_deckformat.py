"""The compiled deck format: one layout on both sides, and every check on open."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from rater import deckformat as fmt
from rater._engine import Engine, layout
from rater.compiler import compile_deck
from rater.tariff import RateRow, RateTable, Tier, TimeProfile


@pytest.mark.parametrize("name", sorted(fmt.STRUCTS))
def test_numpy_dtypes_match_the_c_structs(name: str) -> None:
    size, offsets = layout()[name]
    dtype = fmt.STRUCTS[name]
    assert dtype.itemsize == size
    for field, offset in offsets.items():
        assert dtype.fields[field][1] == offset, field


def small_deck() -> bytes:
    table = RateTable(name="t", currency="EUR", timezone="Europe/Berlin",
                      profiles={"peak": TimeProfile("peak", windows=((28800, 72000),))})
    rows = [RateRow("44", (Tier(0, Decimal("0.05"), 60, 6),), "UK"),
            RateRow("447", (Tier(0, Decimal("0.10"), 60, 1),), "UK mobile", profile="peak")]
    return compile_deck(table, rows).blob


def test_a_compiled_deck_opens_and_answers() -> None:
    engine = Engine(small_deck())
    engine.validate()
    h = engine.header()
    assert h["format_version"] == fmt.FORMAT_VERSION
    assert h["n_prefixes"] == 2 and engine.n_rows == 2
    assert engine.destination_names() == ["UK", "UK mobile"]
    cost, billed, _, plen = engine.rate(4420, 1_790_000_000, 6)
    assert (cost, billed, plen) == (5_000_000, 6, 2)


def patched(blob: bytes, field: str, value: object) -> bytes:
    head = np.frombuffer(blob, fmt.HEADER_DTYPE, count=1).copy()
    head[field] = value
    return head.tobytes() + blob[fmt.HEADER_DTYPE.itemsize:]


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b[:100], "shorter than its header"),
    (lambda b: b"NOTADECK" + b[8:], "bad magic"),
    (lambda b: patched(b, "format_version", 99), "format 99"),
    (lambda b: b + b"\0" * 8, "its header says"),
    (lambda b: patched(b, "n_rows", 10**6), "section rows lies outside"),
    (lambda b: patched(b, "off_tiers", 12), "section tiers lies outside"),
    (lambda b: patched(b, "n_nodes", 0), "no root node"),
    # A deck that cuts calls is format 2, so that an engine reading format 1 only refuses
    # it rather than price it as a split deck; format 1 with the cut flag is damaged.
    (lambda b: patched(b, "flags", fmt.FLAG_SPLIT | fmt.FLAG_CUT), "format 1 \\(flags 3\\)"),
    (lambda b: patched(b, "flags", 4), "flags 4"),
])
def test_a_damaged_header_is_refused_on_open(change: object, message: str) -> None:
    blob = change(small_deck())  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        Engine(blob)


def test_a_deck_that_cuts_calls_is_format_2() -> None:
    table = RateTable(name="t", currency="EUR", profile_boundary="cut")
    blob = compile_deck(table, [RateRow("44", (Tier(0, Decimal("0.05"), 60, 6),))]).blob
    assert Engine(blob).header()["format_version"] == fmt.FORMAT_VERSION_CUT == 2
    with pytest.raises(ValueError, match="format 1"):
        Engine(patched(blob, "format_version", 1))


def test_a_misaligned_buffer_is_refused() -> None:
    blob = small_deck()
    shifted = bytearray(len(blob) + 8)
    base = np.frombuffer(shifted, np.uint8).ctypes.data
    start = (8 - base % 8) % 8 + 1           # one byte past an 8-byte boundary
    shifted[start:start + len(blob)] = blob
    with pytest.raises(ValueError, match="aligned"):
        Engine(memoryview(shifted)[start:start + len(blob)])


def test_validate_finds_a_corrupted_index() -> None:
    blob = bytearray(small_deck())
    h = np.frombuffer(bytes(blob), fmt.HEADER_DTYPE, count=1)[0]
    rows = np.frombuffer(blob, fmt.ROW_DTYPE, count=int(h["n_rows"]), offset=int(h["off_rows"]))
    rows["tier_start"][1] = 10**6
    engine = Engine(bytes(blob))       # opening checks bounds of sections, not every index
    with pytest.raises(ValueError, match="row 1: tiers out of range"):
        engine.validate()


def test_an_empty_deck_is_valid_and_matches_nothing() -> None:
    engine = Engine(compile_deck(RateTable(name="t", currency="EUR"), []).blob)
    engine.validate()
    assert engine.rate(44, 1_790_000_000, 60)[0] == -1
