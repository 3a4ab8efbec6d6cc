"""Dial plans: the numbers a switch sends, turned into E.164 digits.

An account's dial plan says how its switch writes numbers:

``country_code``          the country of national numbers (``1``, ``44``)
``national_prefix``       the trunk prefix before a national number (``1`` in
                          North America, ``0`` in most of Europe), may be empty
``international_prefix``  what precedes an international number (``011`` in
                          North America, ``00`` elsewhere)

After separators are removed (spaces, dashes, dots, parentheses) a number is,
in this order: ``+`` then E.164; the international prefix then E.164; the
national prefix then a national number; otherwise a national number. A
national number gets the country code in front. So with ``1 / 1 / 011`` a US
switch's ``715-413-9112`` and ``1 715 413 9112`` are both ``17154139112``, and
``011 44 20 7946 0000`` is ``442079460000``.

Without a dial plan a number is taken as E.164 (``+`` or ``00`` dropped), as the
rating engine reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import InvalidArgument, InvalidNumber
from .numbers import _SEPARATORS, MAX_DIGITS


def _digits(name: str, value: str, *, empty: bool) -> str:
    if (not value and not empty) or (value and not (value.isascii() and value.isdigit())):
        raise InvalidArgument(f"dial plan {name}: {value!r} is not digits")
    if len(value) > 6:
        raise InvalidArgument(f"dial plan {name}: {value!r} is longer than 6 digits")
    return value


@dataclass(frozen=True)
class DialPlan:
    country_code: str
    national_prefix: str = ""
    international_prefix: str = "00"

    def __post_init__(self) -> None:
        _digits("country code", self.country_code, empty=False)
        _digits("national prefix", self.national_prefix, empty=True)
        _digits("international prefix", self.international_prefix, empty=False)
        if self.national_prefix == self.international_prefix:
            raise InvalidArgument("dial plan: the national and international prefixes "
                                  "are the same")

    def to_e164(self, raw: str) -> str:
        """E.164 digits of ``raw`` as this plan reads it; InvalidNumber if it is not a number."""
        s = raw.translate(_SEPARATORS)
        if s.startswith("+"):
            s = s[1:]
        elif s.startswith(self.international_prefix):
            s = s[len(self.international_prefix):]
        else:
            if self.national_prefix and s.startswith(self.national_prefix):
                s = s[len(self.national_prefix):]
            if s:
                s = self.country_code + s
        if not s or not s.isascii() or not s.isdigit() or len(s) > MAX_DIGITS:
            raise InvalidNumber(f"{raw!r} is not a dialled number")
        return s

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> DialPlan | None:
        return None if d is None else cls(**d)

    def __str__(self) -> str:
        return (f"country code {self.country_code}, national prefix "
                f"{self.national_prefix or '(none)'}, international prefix "
                f"{self.international_prefix}")
