"""Exact money: integers of one nano-unit in the core, Decimal at the edges.

The core counts money in *nanos*: 10**-9 of the currency's main unit, fine
enough for rates with nine decimals. A price is never a float. Amounts are
rounded once, where they are born, by a stated rule (:data:`METHODS`), and
never in between; the helpers here do that rounding on exact integers.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

NANO = 10**9
MAX_DECIMALS = 9

#: Rounding methods, with the integer code the compiled engine uses.
#: ``up`` rounds toward +infinity (a cost of 0.00001 at 4 decimals is 0.0001);
#: ``down`` toward zero; ``half-up`` sends ties up; ``half-even`` sends ties to
#: the even neighbour (banker's rounding).
METHODS = {"up": 0, "half-up": 1, "half-even": 2, "down": 3}


def to_nano(value: Decimal) -> int:
    """The exact number of nanos in ``value``; more than 9 decimals is an error."""
    scaled = value.scaleb(MAX_DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {MAX_DECIMALS} decimal places")
    return int(scaled)


def from_nano(nanos: int, decimals: int | None = None) -> Decimal:
    """Nanos as a Decimal; with ``decimals``, shown with that many places.

    ``decimals`` only sets how the exact value is written: an amount with more
    significant places than ``decimals`` keeps them.
    """
    value = Decimal(nanos).scaleb(-MAX_DECIMALS)
    if decimals is None:
        return value.normalize() if value else Decimal(0)
    shown = value.quantize(Decimal(1).scaleb(-decimals))
    return shown if shown == value else value.normalize()


#: Nanos in a unit of each number of decimal places (UNITS[2]: a cent's).
UNITS: tuple[int, ...] = tuple(int(10 ** (MAX_DECIMALS - d)) for d in range(MAX_DECIMALS + 1))


def format_nanos(nanos: int, decimals: int) -> str:
    """Nanos as a decimal string of at least ``decimals`` places, more only where the
    amount has them (what ``str(from_nano(nanos, decimals))`` gives, in integers)."""
    whole, part = divmod(abs(nanos), NANO)
    sign = "-" if nanos < 0 else ""
    unit = UNITS[decimals]
    if part % unit == 0:                # the common case: a whole number of the places
        return f"{sign}{whole}.{part // unit:0{decimals}d}" if decimals else f"{sign}{whole}"
    digits = f"{part:09d}".rstrip("0")
    return f"{sign}{whole}.{digits:0<{decimals}}"


def round_div(num: int, den: int, method: str) -> int:
    """``num / den`` rounded to an integer by ``method`` (``num >= 0``, ``den > 0``)."""
    if num < 0 or den <= 0:
        raise ValueError("round_div takes num >= 0 and den > 0")
    q, r = divmod(num, den)
    if r == 0 or method == "down":
        return q
    if method == "up":
        return q + 1
    twice = 2 * r
    if method == "half-up":
        return q + (twice >= den)
    if method == "half-even":
        if twice > den:
            return q + 1
        if twice == den:
            return q + (q & 1)
        return q
    raise ValueError(f"unknown rounding method {method!r}")


def round_signed(num: int, den: int, method: str) -> int:
    """``num / den`` rounded by ``method`` on its magnitude, its sign kept: half-up sends
    ties away from zero (``den > 0``)."""
    units = round_div(abs(num), den, method)
    return units if num >= 0 else -units


def round_fraction(amount: Fraction, decimals: int, method: str) -> Decimal:
    """An exact non-negative amount rounded once to ``decimals`` places."""
    scale = 10**decimals
    scaled = amount * scale
    units = round_div(scaled.numerator, scaled.denominator, method)
    return Decimal(units).scaleb(-decimals)


#: ISO 4217 currencies whose minor unit is not a hundredth.
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}


def minor_unit(currency: str) -> int:
    """The decimals of a currency's minor unit (ISO 4217): 2 unless listed."""
    return _MINOR_UNITS.get(currency, 2)
