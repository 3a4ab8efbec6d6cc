"""Seeded, reproducible benchmark data: a ~318k-prefix deck of real prefixes, and calls.

The prefixes are the union of the ``phonenumbers`` package's geocoding,
carrier and time-zone prefix maps and its country calling codes: real
numbering-plan prefixes (China about 130k, Australia about 61k) with real place
and operator names. Rates are synthetic: a price per country, varied per
prefix, and a billing increment drawn from what carriers use; the same seed
always gives the same file.

    python bench/deckgen.py OUT.csv            # the deck, canonical CSV
    python bench/deckgen.py OUT.csv --cdrs N   # and N canonical CDRs beside it
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np

INCREMENTS = ["60/60", "1/1", "30/6", "60/6", "60/1"]


def real_prefixes() -> dict[str, str]:
    """Prefix -> destination name, from the phonenumbers package's maps."""
    from phonenumbers.carrierdata import CARRIER_DATA
    from phonenumbers.geodata import GEOCODE_DATA
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE
    from phonenumbers.tzdata import TIMEZONE_DATA

    names: dict[str, str] = {}
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        names[str(code)] = "/".join(regions)
    for prefix in TIMEZONE_DATA:
        names.setdefault(prefix, "")
    for prefix, by_lang in GEOCODE_DATA.items():
        names[prefix] = by_lang.get("en") or next(iter(by_lang.values()))
    for prefix, by_lang in CARRIER_DATA.items():
        carrier = by_lang.get("en") or next(iter(by_lang.values()))
        names[prefix] = f"{carrier} Mobile" if carrier else names.get(prefix, "")
    # A name for every prefix: its own, or the nearest shorter prefix's.
    for prefix in sorted(names, key=len):
        if not names[prefix]:
            names[prefix] = next((names[prefix[:n]] for n in range(len(prefix) - 1, 0, -1)
                                  if names.get(prefix[:n])), "Unknown")
    return names


def write_deck(path: Path, seed: int = 2026) -> int:
    """The canonical CSV deck of every real prefix; returns the row count."""
    rng = random.Random(seed)
    names = real_prefixes()
    country_rate: dict[str, int] = {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prefix", "destination", "rate", "connect_fee", "increment"])
        for prefix in sorted(names):
            cc = prefix[:3]
            base = country_rate.setdefault(cc, rng.randint(50, 50_000))   # 1e-5 units
            rate = base * rng.randint(80, 160) // 100
            fee = 0 if rng.random() < 0.9 else rng.randint(1, 500)
            w.writerow([prefix, names[prefix], f"{rate / 100_000:.5f}",
                        f"{fee / 10_000:.4f}", rng.choice(INCREMENTS)])
    return len(names)


def deck_prefixes(path: Path) -> list[str]:
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        return [row[0] for row in r]


def calls(prefixes: list[str], n: int, seed: int = 7,
          start: int = 1_790_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n calls to numbers under random deck prefixes: (uint64 numbers, starts, durations)."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(prefixes), n)
    numbers = np.empty(n, np.uint64)
    lengths = rng.integers(10, 13, n)
    for i, (k, length) in enumerate(zip(pick.tolist(), lengths.tolist(), strict=True)):
        p = prefixes[k]
        rest = max(length - len(p), 0)
        tail = int(rng.integers(0, 10**rest)) if rest else 0
        numbers[i] = int(p) * 10**rest + tail
    starts = start + rng.integers(0, 86400 * 30, n)
    durations = rng.integers(0, 1800, n)
    return numbers, starts.astype(np.int64), durations.astype(np.int64)


def write_cdrs(path: Path, prefixes: list[str], n: int, seed: int = 7) -> None:
    """n canonical CDRs (id,start,number,duration) with naive ISO start times."""
    import datetime as dt

    numbers, starts, durations = calls(prefixes, n, seed)
    with open(path, "w") as f:
        f.write("id,start,number,duration\n")
        for i, (num, st, du) in enumerate(zip(numbers.tolist(), starts.tolist(),
                                              durations.tolist(), strict=True)):
            when = dt.datetime.fromtimestamp(st, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"c{i},{when},{num},{du}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--cdrs", type=int, default=0, help="also write N CDRs to OUT.cdrs.csv")
    args = ap.parse_args()
    rows = write_deck(args.out, args.seed)
    print(f"{args.out}: {rows} rows")
    if args.cdrs:
        out = args.out.with_suffix(".cdrs.csv")
        write_cdrs(out, deck_prefixes(args.out), args.cdrs)
        print(f"{out}: {args.cdrs} CDRs")


if __name__ == "__main__":
    main()
