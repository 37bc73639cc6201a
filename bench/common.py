"""What every benchmark shares: interleaved timing, medians with their spread, and tables printed as text or Markdown.

Comparisons run both sides in the same process, alternating (the order flips on every other repetition, so that
neither side always runs first); a ratio is taken per repetition from the two sides' times, and its median is
reported with the range over repetitions. Load from other processes then falls on both sides alike.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1,
                self_timed: bool = False) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, ``reps`` times, the functions taking turns (order reversed on every
    other repetition) after ``warmup`` untimed calls of each. ``self_timed``: each call returns its own seconds
    (e.g. measured inside a subprocess, without the process start) instead of being timed here."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            times[k].append(fns[k]() if self_timed else timed(fns[k]))
    return times


@dataclass
class Spread:
    """A median with the range of the values it summarises."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def fmt(self, spec: str = ".2f", unit: str = "") -> str:
        """``1.23× (1.10–1.40)``: the median, then min–max."""
        if len(self.values) == 1:
            return f"{self.median:{spec}}{unit}"
        return f"{self.median:{spec}}{unit} ({self.lo:{spec}}–{self.hi:{spec}})"


def ratio(num: list[float], den: list[float]) -> Spread:
    """Per-repetition ratios num[i] / den[i] (e.g. the other side's time over ours: a speed-up)."""
    return Spread([a / b for a, b in zip(num, den)])


def median(values: list[float]) -> float:
    return statistics.median(values)


def threads() -> str:
    """``1 thread`` / ``2 threads``: torch's intra-op thread count, for table titles."""
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}"


@dataclass
class Table:
    """Rows of already formatted cells under a title; ``text()`` for the terminal, ``markdown()`` for the page."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def _numeric(self, i: int) -> bool:
        """Column ``i`` holds figures (right-aligned): every cell starts with a digit, a sign or a dash."""
        return bool(self.rows) and all(r[i][:1] in "0123456789+-−—" for r in self.rows)

    def text(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        right = [self._numeric(i) for i in range(len(self.columns))]
        line = lambda cells: "  ".join(c.rjust(w) if r else c.ljust(w)  # noqa: E731
                                       for c, w, r in zip(cells, widths, right))
        out = [self.title, line(self.columns), line(["-" * w for w in widths]), *(line(r) for r in self.rows)]
        if self.note:
            out.append(self.note)
        return "\n".join(out)

    def markdown(self) -> str:
        row = lambda cells: "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # noqa: E731
        out = [f"**{self.title}**", "", row(self.columns),
               "|" + "|".join("---:" if self._numeric(i) else "---" for i in range(len(self.columns))) + "|"]
        out += [row(r) for r in self.rows]
        if self.note:
            out += ["", self.note]
        return "\n".join(out)


@dataclass
class Section:
    """One part of the suite: its tables, free Markdown paragraphs, and named figures for the targets."""

    title: str
    tables: list[Table] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""
    intro: str = ""  # how it was measured (the page shows it above the tables)

    def markdown(self) -> str:
        parts = [f"## {self.title}", self.intro] if self.intro else [f"## {self.title}"]
        if self.skipped:
            parts.append(f"skipped: {self.skipped}")
        parts += [t.markdown() for t in self.tables] + self.text
        return "\n\n".join(parts)

    def console(self) -> str:
        parts = [f"== {self.title} =="]
        if self.skipped:
            parts.append(f"skipped: {self.skipped}")
        parts += [t.text() for t in self.tables] + self.text
        return "\n\n".join(parts)
