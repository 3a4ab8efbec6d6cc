"""The reference engine: small, slow and obviously correct.

It prices a call straight from the rate model, the way the documentation says:

* lookup tries every prefix of the number from the longest to the shortest
  and takes the first that has a row applicable at the call's start (its
  effective window holds the start; its time profile, read with ``zoneinfo``
  in the table's zone, holds at the instant in question);
* billing walks the call one increment at a time: each increment is charged
  by the tier in force at the call second where it starts, and in ``split``
  mode by the row in force at that instant; in ``cut`` mode the call is first
  cut where the row in force changes and at each midnight, and each part is
  walked on its own, its last increment billed whole;
* money is a :class:`fractions.Fraction` until the one rounding at the end.

The compiled engine is tested against this one (tests/test_engine_properties.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from .errors import NoRate
from .money import round_fraction, to_nano
from .numbers import normalise_number
from .tariff import RateRow, RateTable, Tier
from .timeutil import wall_instants, zone

FOREVER = 2**63 - 1
NEVER = -(2**63)


@dataclass(frozen=True)
class Charge:
    """A stretch of a call billed by one tier of one row."""

    prefix: str
    from_s: int
    increments: int
    tier: Tier

    @property
    def seconds(self) -> int:
        return self.increments * self.tier.increment_s


@dataclass(frozen=True)
class Step:
    """One increment of a walk: the call second it covers to, the seconds billed and the
    exact cost so far, and how it was charged."""

    call_end: int
    billed: int
    total: Fraction
    charge: Charge


@dataclass(frozen=True)
class Priced:
    """What the reference engine found for one call."""

    row: RateRow
    prefix: str
    cost_nano: int
    billed_s: int
    charges: tuple[Charge, ...]


class ReferenceDeck:
    """Prices calls from a table and its rows, with no compiled structure."""

    def __init__(self, table: RateTable, rows: Iterable[RateRow]) -> None:
        self.table = table
        self.tz = zone(table.timezone)
        series: dict[tuple[str, str], list[RateRow]] = {}
        for row in rows:
            series.setdefault((row.prefix, row.profile or ""), []).append(row)
        # Each row holds until its effective_to or the next row of its series.
        self._windows: dict[str, list[tuple[RateRow, int, int]]] = {}
        for (prefix, _), items in series.items():
            items.sort(key=lambda r: NEVER if r.effective_from is None else r.effective_from)
            for i, row in enumerate(items):
                lo = NEVER if row.effective_from is None else row.effective_from
                nxt = items[i + 1].effective_from if i + 1 < len(items) else None
                hi = min(FOREVER if row.effective_to is None else row.effective_to,
                         FOREVER if nxt is None else nxt)
                if not row.closed and lo < hi:
                    self._windows.setdefault(prefix, []).append((row, lo, hi))

    def _rank(self, row: RateRow) -> tuple[int, int]:
        if row.profile is None:
            return (-1, 0)
        return (self.table.profiles[row.profile].weight, -self.table.profile_id(row.profile))

    def applicable(self, prefix: str, t_eff: int, t_prof: int) -> RateRow | None:
        """The row of ``prefix`` in force: effective at ``t_eff``, profile active at ``t_prof``."""
        local = datetime.fromtimestamp(t_prof, self.tz)
        best: RateRow | None = None
        for row, lo, hi in self._windows.get(prefix, ()):
            if not lo <= t_eff < hi:
                continue
            if row.profile is not None and not self.table.profiles[row.profile].active(local):
                continue
            if best is None or self._rank(row) > self._rank(best):
                best = row
        return best

    def find(self, digits: str, t_eff: int, t_prof: int) -> tuple[RateRow, str] | None:
        for n in range(len(digits), 0, -1):
            row = self.applicable(digits[:n], t_eff, t_prof)
            if row is not None:
                return row, digits[:n]
        return None

    def _walk(self, digits: str, start: int, row0: RateRow, prefix0: str,
              until_s: int) -> list[Step]:
        """Increments from second 0 until ``until_s`` is covered."""
        split = self.table.profile_boundary == "split"
        cuts = self._cuts(digits, start, row0, prefix0, until_s) \
            if self.table.profile_boundary == "cut" else [(until_s, row0, prefix0)]
        out: list[Step] = []
        t = 0
        billed = 0
        total = Fraction(0)
        row, prefix = row0, prefix0
        for part_end, next_row, next_prefix in cuts:
            while t < min(part_end, until_s):
                if split:
                    found = self.find(digits, start, start + t)
                    row, prefix = found if found is not None else (row0, prefix0)
                tier = [x for x in row.tiers if x.from_s <= t][-1]
                total += Fraction(tier.price) * tier.increment_s / tier.unit_s
                billed += tier.increment_s
                out.append(Step(min(t + tier.increment_s, part_end), billed, total,
                                Charge(prefix, t, 1, tier)))
                t += tier.increment_s
            t = min(t, part_end)       # cut: the next part starts where the call was cut
            row, prefix = next_row, next_prefix
        return out

    def _cuts(self, digits: str, start: int, row0: RateRow, prefix0: str,
              until_s: int) -> list[tuple[int, RateRow, str]]:
        """Cut mode: each part's end (call seconds) and the row and prefix after it; the
        call is cut where the row in force changes and at every wall-clock midnight."""
        edges = {e % 86400 for p in self.table.profiles.values() for w in p.windows for e in w}
        out: list[tuple[int, RateRow, str]] = []
        row, prefix = row0, prefix0
        for c, midnight in wall_instants(self.table.timezone, start, start + until_s, edges):
            found = self.find(digits, start, c) or (row0, prefix0)
            if found[0] is not row or found[1] != prefix or midnight:
                out.append((c - start, *found))
                row, prefix = found
        out.append((until_s, row, prefix))
        return out

    def _cost(self, row: RateRow, total: Fraction) -> int:
        rule = self.table.row_rounding(row)
        cost = to_nano(round_fraction(Fraction(row.connect_fee) + total,
                                      rule.decimals, rule.method))
        if row.cap is not None:
            cost = min(cost, to_nano(row.cap))
        return cost

    def price(self, number: str, start: int, duration_s: int,
              tech_prefix: str = "") -> Priced:
        """Price one call; NoRate when nothing matches."""
        digits = normalise_number(number, tech_prefix)
        found = self.find(digits, start, start)
        if found is None:
            raise NoRate(f"no rate for {number} in table {self.table.name}")
        row, prefix = found
        if duration_s <= 0 or duration_s <= row.grace_s:
            return Priced(row, prefix, 0, 0, ())
        billed_to = max(duration_s, row.min_duration_s)
        steps = self._walk(digits, start, row, prefix, billed_to)
        charges: list[Charge] = []
        for c in (s.charge for s in steps):
            last = charges[-1] if charges else None
            if last and last.tier is c.tier and last.prefix == c.prefix:
                charges[-1] = Charge(last.prefix, last.from_s, last.increments + 1, last.tier)
            else:
                charges.append(c)
        return Priced(row, prefix, self._cost(row, steps[-1].total), steps[-1].billed,
                      tuple(charges))

    def max_duration(self, number: str, start: int, amount_nano: int, limit_s: int,
                     tech_prefix: str = "") -> int:
        """The longest duration up to ``limit_s`` whose cost is at most ``amount_nano``.

        Scans every duration from 0 to ``limit_s``, pricing each from one walk
        of the increments.
        """
        digits = normalise_number(number, tech_prefix)
        found = self.find(digits, start, start)
        if found is None:
            raise NoRate(f"no rate for {number} in table {self.table.name}")
        row, prefix = found
        if amount_nano < 0:
            return 0            # not even a free call costs less than nothing
        steps = self._walk(digits, start, row, prefix, max(limit_s, row.min_duration_s))
        best = 0
        k = 0
        for d in range(1, limit_s + 1):
            if d <= row.grace_s:
                best = d
                continue
            billed_to = max(d, row.min_duration_s)
            while steps[k].call_end < billed_to:
                k += 1
            if self._cost(row, steps[k].total) <= amount_nano:
                best = d
        return best
