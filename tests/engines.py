"""The two engines behind one small interface, so that one suite runs on both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rater._engine import Engine
from rater.compiler import compile_deck
from rater.errors import InvalidNumber, NoRate
from rater.money import from_nano
from rater.reference import ReferenceDeck
from rater.tariff import RateRow, RateTable


@dataclass(frozen=True)
class Result:
    cost_nano: int
    billed_s: int
    prefix: str
    destination: str


class Compiled:
    name = "compiled"

    def __init__(self, table: RateTable, rows: Sequence[RateRow]) -> None:
        self.engine = Engine(compile_deck(table, rows).blob)

    def price(self, number: str, start: int, duration: int) -> Result | None:
        cost, billed, row, plen = self.engine.rate(number, start, duration)
        if cost == -1:
            return None
        if cost == -2:
            return INVALID
        assert cost >= 0, cost
        prefix = _digits(number)[:plen]
        return Result(cost, billed, prefix, self.engine.destination(row))

    def max_duration(self, number: str, start: int, amount: int, limit: int) -> int | None:
        seconds, row = self.engine.max_duration(number, start, amount, limit)
        return None if row < 0 else seconds


class Reference:
    name = "reference"

    def __init__(self, table: RateTable, rows: Sequence[RateRow]) -> None:
        self.deck = ReferenceDeck(table, rows)

    def price(self, number: str, start: int, duration: int) -> Result | None:
        try:
            p = self.deck.price(number, start, duration)
        except NoRate:
            return None
        except InvalidNumber:
            return INVALID
        return Result(p.cost_nano, p.billed_s, p.prefix, p.row.destination)

    def max_duration(self, number: str, start: int, amount: int, limit: int) -> int | None:
        try:
            return self.deck.max_duration(number, start, amount, limit)
        except (NoRate, InvalidNumber):
            return None


ENGINES = (Compiled, Reference)

#: What both engines answer for a number that is not digits once normalised.
INVALID = Result(-2, 0, "", "")


def _digits(number: str) -> str:
    from rater.numbers import normalise_number
    return normalise_number(number)


def cost(result: Result | None, decimals: int = 4) -> str | None:
    """A result's cost as the decimal string a user sees."""
    return None if result is None else str(from_nano(result.cost_nano, decimals))
