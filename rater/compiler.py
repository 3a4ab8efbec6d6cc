"""Rows to a compiled deck: the flat structure the engine reads in place.

Compiling resolves everything that does not depend on the call: each row's
effective window (its effective_to, or the start of the next row of its
prefix and profile, whichever is first), its profile's rank, its rounding rule
and its prices in nanos; the time zone's offset changes; one common
denominator for every tier's unit so that sums stay exact integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from . import deckformat as fmt
from ._engine import Engine, build_trie
from .money import METHODS, from_nano
from .tariff import MAX_PROFILES, Item, RateRow, RateTable, cap_fits
from .timeutil import days_from_civil, transitions

NEVER = -(2**63)
FOREVER = 2**63 - 1
MAX_DENOMINATOR = 2**31 - 1


@dataclass(frozen=True)
class Compiled:
    blob: bytes = field(repr=False)
    prefixes: int
    rows: int


class CompileError(ValueError):
    """The rows cannot be compiled (a limit of the format is exceeded)."""


def effective_windows(items: Iterable[Item]) -> dict[str, list[tuple[Item, int, int]]]:
    """Per prefix, each row in force and its [from, to) window.

    Closures and empty windows are dropped.
    """
    series: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        series.setdefault((item[0], item[1]), []).append(item)
    out: dict[str, list[tuple[Item, int, int]]] = {}
    for (prefix, _), rows in series.items():
        if len(rows) > 1:
            rows.sort(key=lambda r: NEVER if r[2] is None else r[2])
        for i, item in enumerate(rows):
            st = item[3]
            if st[0]:                      # a closure only ends the row before it
                continue
            lo = NEVER if item[2] is None else item[2]
            hi = FOREVER if st[9] is None else st[9]
            if i + 1 < len(rows):
                nxt = rows[i + 1][2]
                assert nxt is not None
                hi = min(hi, nxt)
            if lo < hi:
                out.setdefault(prefix, []).append((item, lo, hi))
    return out


def compile_deck(table: RateTable, rows: Iterable[RateRow]) -> Compiled:
    """The compiled deck of rate rows (closures included, any order)."""
    return compile_rows(table, ((r.prefix, r.profile or "", r.effective_from, r.to_stored())
                                for r in rows))


def compile_rows(table: RateTable, items: Iterable[Item]) -> Compiled:
    """The compiled deck of rows in their stored form (closures included, any order)."""
    if len(table.profiles) > MAX_PROFILES:
        # A row names its profile by a 16-bit index.
        raise CompileError(f"{len(table.profiles)} time profiles: a rate table holds at most "
                           f"{MAX_PROFILES}")
    by_prefix = effective_windows(items)
    prefixes = sorted(by_prefix)
    node_bytes, end_bytes = build_trie([p.encode() for p in prefixes])
    nodes = np.frombuffer(node_bytes, fmt.NODE_DTYPE)
    ends = np.frombuffer(end_bytes, np.uint32)

    units = {t[2] for items_ in by_prefix.values() for it, _, _ in items_ for t in it[3][3]}
    denominator = math.lcm(*units) if units else 1
    if denominator > MAX_DENOMINATOR:
        raise CompileError(f"the tier units {sorted(units)} have no common denominator below "
                           f"2**31; use units that divide 86400")

    profile_ids = {name: i for i, name in enumerate(table.profiles)}
    ranks = {name: (prof.weight + 1) * 65536 + (65535 - profile_ids[name])
             for name, prof in table.profiles.items()}
    ranks[""] = 0
    profile_ids[""] = -1
    default_dec, default_method = table.rounding.decimals, METHODS[table.rounding.method]
    methods: dict[str | None, int] = {None: default_method}
    methods.update(METHODS)
    dest_ids: dict[str, int] = {}
    # Columns of the rows and tiers sections, filled row by row.
    r_from: list[int] = []
    r_to: list[int] = []
    r_fee: list[int] = []
    r_cap: list[int] = []
    r_rank: list[int] = []
    r_tier: list[int] = []
    r_dest: list[int] = []
    r_min: list[int] = []
    r_grace: list[int] = []
    r_ntiers: list[int] = []
    r_profile: list[int] = []
    r_dec: list[int] = []
    r_method: list[int] = []
    t_price: list[int] = []
    t_from: list[int] = []
    t_inc: list[int] = []
    t_unit: list[int] = []
    node_rows = np.zeros(len(prefixes), np.uint32)
    node_nrows = np.zeros(len(prefixes), np.uint16)
    for k, p in enumerate(prefixes):
        entries = by_prefix[p]
        if len(entries) > fmt.NODE_NROWS:
            raise CompileError(f"prefix {p} has {len(entries)} rows over time; "
                               f"the limit is {fmt.NODE_NROWS}")
        node_rows[k] = len(r_from)
        (_, profile, _, _), lo, hi = entries[0]
        always = len(entries) == 1 and lo == NEVER and hi == FOREVER and not profile
        node_nrows[k] = len(entries) | (fmt.NODE_ALWAYS if always else 0)
        for (_, profile, _, st), lo, hi in entries:
            _, dest, fee, tiers, min_s, grace, cap, dec, method, _ = st
            places = default_dec if dec is None else dec
            if cap is not None and not cap_fits(cap, places):
                raise CompileError(f"prefix {p}: its cost cap {from_nano(cap)} has more decimal "
                                   f"places than the rounding rule's {places}")
            dest_id = dest_ids.get(dest)
            if dest_id is None:
                dest_id = dest_ids[dest] = len(dest_ids)
            r_from.append(lo)
            r_to.append(hi)
            r_fee.append(fee)
            r_cap.append(-1 if cap is None else cap)
            r_rank.append(ranks[profile])
            r_tier.append(len(t_price))
            r_dest.append(dest_id)
            r_min.append(min_s)
            r_grace.append(grace)
            r_ntiers.append(len(tiers))
            r_profile.append(profile_ids[profile])
            r_dec.append(default_dec if dec is None else dec)
            r_method.append(methods[method])
            for from_s, price, unit, inc in tiers:
                t_price.append(price)
                t_from.append(from_s)
                t_inc.append(inc)
                t_unit.append(unit)
    nodes["rows"][ends] = node_rows
    nodes["nrows"][ends] = node_nrows
    rows_arr = np.zeros(len(r_from), fmt.ROW_DTYPE)
    for name, col in (("eff_from", r_from), ("eff_to", r_to), ("connect_fee", r_fee),
                      ("cap", r_cap), ("rank", r_rank), ("tier_start", r_tier),
                      ("dest", r_dest), ("min_duration", r_min), ("grace", r_grace),
                      ("tier_count", r_ntiers), ("profile", r_profile), ("decimals", r_dec),
                      ("method", r_method)):
        rows_arr[name] = col
    tiers_arr = np.zeros(len(t_price), fmt.TIER_DTYPE)
    tiers_arr["price"] = t_price
    tiers_arr["from_s"] = t_from
    tiers_arr["increment"] = t_inc
    tiers_arr["unit"] = t_unit
    tiers_arr["factor"] = denominator // np.array(t_unit, np.int64) if t_unit else []

    profiles = np.zeros(len(table.profiles), fmt.PROFILE_DTYPE)
    windows: list[tuple[int, int]] = []
    dates: list[int] = []
    for i, prof in enumerate(table.profiles.values()):
        only = prof.only_on()
        days = [] if only is None else [days_from_civil(d.year, d.month, d.day) for d in only]
        # A profile limited to days of which none is left never holds: no weekday.
        weekdays = 0 if only == [] else sum(1 << d for d in prof.days)
        profiles[i] = (weekdays, len(windows), len(prof.windows), len(dates), len(days), 0)
        windows.extend(sorted(prof.windows))
        dates.extend(days)

    at, offsets = transitions(table.timezone)
    wall = [a + max(offsets[i], offsets[i + 1]) for i, a in enumerate(at)]

    names = [name.encode("utf-8") for name in dest_ids]
    dest_index = np.zeros(len(names) + 1, "<u4")
    if names:
        dest_index[1:] = np.cumsum([len(b) for b in names])
    dest_bytes = b"".join(names)

    blob = fmt.pack(
        {"flags": {"start": 0, "split": fmt.FLAG_SPLIT,
                   "cut": fmt.FLAG_SPLIT | fmt.FLAG_CUT}[table.profile_boundary],
         "denominator": denominator, "n_nodes": len(nodes), "n_rows": len(rows_arr),
         "n_tiers": len(tiers_arr), "n_profiles": len(profiles), "n_windows": len(windows),
         "n_dates": len(dates), "n_transitions": len(at), "n_destinations": len(names),
         "dest_bytes_size": len(dest_bytes), "n_prefixes": len(prefixes)},
        [("nodes", nodes), ("rows", rows_arr), ("tiers", tiers_arr), ("profiles", profiles),
         ("windows", np.array(windows, dtype="<i4").reshape(-1, 2)),
         ("dates", np.array(dates, "<i4")), ("tz_at", np.array(at, "<i8")),
         ("tz_wall", np.array(wall, "<i8")), ("tz_offset", np.array(offsets, "<i4")),
         ("dest_index", dest_index), ("dest_bytes", dest_bytes)])
    Engine(blob).validate()
    return Compiled(blob=blob, prefixes=len(prefixes), rows=len(rows_arr))
