"""What every benchmark line records besides its timings (bench/report.py reads it)."""

from __future__ import annotations


def items(benchmark, n: int, **extra: object) -> None:  # type: ignore[no-untyped-def]
    """``n`` items a round (report.py divides by the median), and extra facts to show."""
    benchmark.extra_info["items"] = n
    benchmark.extra_info.update(extra)
