"""Dialled numbers as the rating engine sees them: a string of digits.

Normalisation, in this order (the compiled engine does the same in C):

1. spaces, tabs, dashes, dots and parentheses are removed anywhere;
2. the tech prefix, when one is given and the number starts with it, is cut;
3. a leading ``+`` is removed, or else a leading ``00`` (the international
   call prefix most of the world dials);
4. what is left must be 1 to 32 digits.

A switch's national formats (``715-413-9112`` meaning ``+1 715...``) need the
account's dial plan, which is applied before this step.
"""

from __future__ import annotations

from .errors import InvalidNumber

MAX_DIGITS = 32
_SEPARATORS = str.maketrans("", "", " \t-.()")


def normalise_number(raw: str, tech_prefix: str = "") -> str:
    """The digits the engine looks up for ``raw``; InvalidNumber if there are none."""
    s = raw.translate(_SEPARATORS)
    if tech_prefix and s.startswith(tech_prefix):
        s = s[len(tech_prefix):]
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00"):
        s = s[2:]
    if not s or not s.isascii() or not s.isdigit() or len(s) > MAX_DIGITS:
        raise InvalidNumber(f"{raw!r} is not a dialled number")
    return s


def normalise_prefix(raw: str) -> str:
    """A deck prefix: digits, optionally after a ``+``; anything else is an error."""
    s = raw.strip()
    if s.startswith("+"):
        s = s[1:]
    if not s or not s.isascii() or not s.isdigit():
        raise ValueError(f"{raw!r} is not a prefix of digits")
    if len(s) > MAX_DIGITS:
        raise ValueError(f"{raw!r} is longer than {MAX_DIGITS} digits")
    return s
