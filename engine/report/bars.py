"""The quality bars of the models, kept as data (``BARS``), and how a model's cells are judged against them.

A bar names a model, a sampler, the step counts it is judged at and its criteria. It is judged per schedule on the
cells of the bar's sampler and step counts (the one with the lowest first figure, an FD ratio, when several step
counts qualify) and passes when some schedule meets every criterion. The bars are set for n ≥ ``BAR_MIN_N``
samples per cell (FD and its real-vs-real baseline both depend on n); with fewer the figures are shown but not
judged.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import checkpoints, evaluate
from .text import pct

BAR_MIN_N = 500


@dataclass(frozen=True)
class Criterion:
    """``figure`` of a cell compared with ``limit``: at most the limit when ``at_most``, else at least."""

    text: str
    short: str
    figure: str  # a record field, or "fd_vs_reference" (FD over the bar's reference cell's FD)
    limit: float
    at_most: bool

    def passes(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def show(self, value: float) -> str:
        if self.figure in ("confident", "coverage_min_class"):
            return pct(value)
        return f"{value:.2f}" + ("×" if self.figure.startswith("fd") else "")


@dataclass(frozen=True)
class Bar:
    """A quality bar of the models issue: criteria met by ``sampler`` at one of ``steps`` (every step count of the
    grid when empty) on some schedule; ``reference`` = (sampler, steps) of the cell "fd_vs_reference" divides by,
    on the same schedule."""

    model: str
    sampler: str
    steps: tuple[int, ...]
    criteria: tuple[Criterion, ...]
    reference: tuple[str, int] | None = None

    def describe(self) -> str:
        steps = "any step count" if not self.steps else "–".join(map(str, self.steps)) + " steps"
        return f"{self.sampler}, {steps}: " + "; ".join(c.text for c in self.criteria)


def _fd_within(k: float) -> Criterion:
    return Criterion(f"FD ≤ {k:g}× baseline", "FD/baseline", "fd_ratio", k, True)


_SAMPLE_QUALITY = (
    Criterion("confident ≥ 85 %", "confident", "confident", 0.85, False),
    Criterion("every class ≥ 4 %", "smallest class", "coverage_min_class", 0.04, False),
    Criterion("NN ratio ≥ 0.8 (no memorisation)", "NN ratio", "nn_ratio", 0.8, False),
)
BARS = (
    Bar("mnist-ddpm", "ddim", (50,), (_fd_within(2), *_SAMPLE_QUALITY)),
    Bar("mnist-ddpm", "ddpm", (1000,), (_fd_within(2), *_SAMPLE_QUALITY)),
    Bar("mnist-ddpm", "dpm-solver++", (10, 20), (Criterion("FD ≤ 1.5× ddpm's 1000-step FD", "FD/ddpm-1000", "fd_vs_reference", 1.5, True),),
        reference=("ddpm", 1000)),
    Bar("mnist-ncsn", "pc", (), (_fd_within(3),)),
    Bar("mnist-ncsn", "langevin", (), (_fd_within(3),)),
    Bar("fashion-ddpm", "ddim", (50,), (_fd_within(3),)),
)


def fd_bar(model: str) -> float | None:
    """The tightest "FD ≤ k× baseline" bar of a model, if it has one."""
    limits = [c.limit for b in BARS if b.model == model for c in b.criteria if c.figure == "fd_ratio"]
    return min(limits, default=None)


def _figure(r: dict, c: Criterion, reference: dict | None) -> float:
    return r["fd"] / reference["fd"] if c.figure == "fd_vs_reference" else r[c.figure]


def judge_bar(bar: Bar, records: list[dict], n: int) -> dict:
    """Verdict of one bar on a model's cells.

    For each schedule: among the bar's cells the one with the lowest first figure (an FD ratio), and whether it
    meets every criterion. Returns {"bar", "verdict" ("pass", "fail", "not run", or "not judged (n < 500)"),
    "passing" (schedules), "shown" (the best passing cell, else the best cell), "figures" [(criterion, value, ok)]}.
    """
    judged = {}  # schedule -> (record, [(criterion, value, ok)])
    for schedule in dict.fromkeys(r["schedule"] for r in records):
        reference = None
        if bar.reference:
            reference = next((r for r in records if (r["sampler"], r["steps"], r["schedule"]) == (*bar.reference, schedule)), None)
            if reference is None:
                continue
        cands = [r for r in records if r["schedule"] == schedule and r["sampler"] == bar.sampler
                 and (not bar.steps or r["steps"] in bar.steps)]
        if not cands:
            continue
        best = min(cands, key=lambda r: _figure(r, bar.criteria[0], reference))
        figures = [(c, v, c.passes(v)) for c in bar.criteria for v in [_figure(best, c, reference)]]
        judged[schedule] = (best, figures)
    if not judged:
        return {"bar": bar, "verdict": "not run", "passing": [], "shown": None, "figures": []}
    passing = [s for s, (_, figs) in judged.items() if all(ok for *_, ok in figs)]
    pool = passing or list(judged)
    shown = min(pool, key=lambda s: judged[s][1][0][1])
    verdict = ("pass" if passing else "fail") if n >= BAR_MIN_N else f"not judged (n < {BAR_MIN_N})"
    return {"bar": bar, "verdict": verdict, "passing": passing, "shown": judged[shown][0], "figures": judged[shown][1]}


def record_bars(results: dict, n: int, directory=None) -> None:
    """Store each bar's cell (the one the page shows) in its model's card, with the bar and its verdict."""
    for bar in BARS:
        v = judge_bar(bar, results.get(bar.model, []), n)
        if v["shown"] is None:
            continue
        r = v["shown"]
        figures = evaluate.card_figures({k: val for k, val in r.items() if k not in ("model", "date")})
        figures.update(bar=bar.describe(), verdict=v["verdict"], source="python -m engine report (docs/RESULTS.md)")
        checkpoints.record_metrics(bar.model, evaluate.metrics_key(r), figures, directory)
