"""A progress bar for long work, drawn on stderr only when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("rating", total) as bar: bar.advance(n)``; silent off a terminal."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None,
                 enabled: bool | None = None, unit: str = "rows") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        #: What the bar counts when ``total`` measures something else (bytes of a file).
        self.items: int | None = None
        #: A phase of the work without a count, shown instead of the bar.
        self.phase: str | None = None
        self.started = time.perf_counter()
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def note(self, text: str) -> None:
        """Show what is being done now: a phase of the work, after or without a count."""
        self.phase = text
        if self.enabled:
            self._draw(time.perf_counter())

    def set(self, done: int, items: int | None = None) -> None:
        """Progress to ``done`` of the total; ``items``, when the total counts something
        else (bytes of a file), is what the bar shows a count and a rate of."""
        if items is not None:
            self.items = items
        self.advance(done - self.done)

    def _draw(self, now: float) -> None:
        if self.phase is not None:
            self.stream.write(f"\r{self.label}: {self.phase}...\033[K")
            self.stream.flush()
            return
        count = self.done if self.items is None else self.items
        rate = count / max(now - self.started, 1e-9)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            of = f"/{self.total:,}" if self.items is None else ""
            text = (f"\r{self.label} [{bar:<30}] {frac:6.1%} {count:,}{of} "
                    f"{self.unit} ({rate:,.0f}/s)")
        else:
            text = f"\r{self.label} {count:,} {self.unit} ({rate:,.0f}/s)"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        """End the bar: it stays with its final count, or a phase line is wiped."""
        if self.enabled:
            if self.phase is None:
                self._draw(time.perf_counter())
                self.stream.write("\n")
            else:
                self.stream.write("\r\033[K")
            self.stream.flush()
            self.enabled = False
