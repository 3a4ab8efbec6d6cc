"""Medians, per-item rates and ratios to each group's baseline, from pytest-benchmark JSON.

    python bench/report.py bench.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[(b["group"], b["extra_info"].get("deck", ""))].append(b)
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
          f"python {data['machine_info']['python_version']}")
    for (group, deck), items in sorted(groups.items()):
        base = next((b for b in items if b["extra_info"].get("baseline")), None)
        base_rate = base and base["extra_info"]["items"] / base["stats"]["median"]
        print(f"\n[{group}] {deck}")
        for b in items:
            median = b["stats"]["median"]
            n = b["extra_info"]["items"]
            rate = n / median
            per = median / n
            ratio = ""
            if base_rate and b is not base:
                x = rate / base_rate
                ratio = f"x{x:,.0f} baseline" if x >= 10 else f"x{x:.2f} baseline"
            if b is base:
                ratio = "baseline"
            extra = {k: v for k, v in b["extra_info"].items()
                     if k not in ("items", "deck", "baseline")}
            print(f"  {b['name']:<40} median {median * 1000:10.3f} ms  {per * 1e9:10.1f} ns/item"
                  f"  {rate:14,.0f} items/s  {ratio}  {extra if extra else ''}")


if __name__ == "__main__":
    main(sys.argv[1])
