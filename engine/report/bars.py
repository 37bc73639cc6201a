"""The quality bars of the models, kept as data (``BARS``), and how a model's cells are judged against them.

The bars are set in noise-equivalent σ (``evaluate.noise_equivalent_sigma``: the σ of Gaussian noise on real
held-out images that scores the same FD), because a ratio of FDs is a property of the feature space, not of the
images: "FD ≤ 2× real" meant σ ≈ 0.065 on our Fashion-MNIST features and σ ≈ 0.03 on another network. σ reads the
same whichever network measures it, and people can picture it. ``SIGMA_BAR`` holds the limit per dataset:
Fashion-MNIST ≤ 0.04; MNIST ≤ 0.08, looser because its 500 held-out images (of 5,000 in all) give one baseline set
and a wide interval. Beside σ every bar asks for legibility: the classifier's confident share within 10 points of
real held-out images'.

A bar names a model, a sampler, the step counts it is judged at and its criteria. It is judged per schedule on the
cells of the bar's sampler and step counts: when several step counts qualify, the bar asks that *some* step count
meet it, so the cell judged is the one with the lowest first figure (σ, ties broken by FD) among those meeting
every criterion, or, when none does, among them all. A bar without ``schedules`` passes when some schedule meets every
criterion; a bar that lists ``schedules`` passes only when every listed schedule does (and is "not run" while one
of them has no cell).

A criterion is met when its *point estimate* is on the right side of the limit. Beside it the page shows the
figure's 95 % bootstrap interval [lo, hi] (engine/evaluate.py), and a criterion whose interval straddles the limit
(lo ≤ limit ≤ hi) is "unresolved": at this n the data cannot tell on which side of the limit the setting lies, so a
pass or a fail on it may turn over with another seed. The bars are set for n ≥ ``BAR_MIN_N`` samples per cell (FD
and its real baseline both depend on n); with fewer the figures are shown but not judged.

``better_than_real`` is the instrument's sanity check on every cell: a model cannot be better than real data, so an
FD ratio whose whole interval lies below 1 (hi < 1) would mean the evaluator, not the model, is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import checkpoints, evaluate
from .text import interval, label, pct

BAR_MIN_N = 500


TIE = 1e-9  # figures within this of a limit sit on it (float rounding of a difference of shares)


@dataclass(frozen=True)
class Criterion:
    """``figure`` of a cell compared with ``limit``: at most the limit when ``at_most``, else at least.

    ``figure`` is a record field (its interval is the record's ``FIGURE_ci``) or a derived figure:
      * "sigma_vs_reference": σ − σ of the bar's reference cell on the same schedule. No interval: the two cells'
        bootstrap resamples are not kept, and subtracting one interval from the other would not be a 95 % interval.
      * "confident_vs_real": confident − confident_heldout, the gap in points to real held-out images. Its interval
        is the samples' confident interval minus the held-out share, whose own spread (≈ ±1 point over 10,000
        Fashion-MNIST images, ±2 over MNIST's 500) is left out.
    """

    text: str
    short: str
    figure: str
    limit: float
    at_most: bool

    def passes(self, value: float) -> bool:
        """The limit is inclusive ("within 10 points" admits exactly 10), and a figure that lands on it exactly
        (424 of 500 confident against 474 real reads −0.1 as 0.0999… or 0.1000…1) meets it whichever way the
        float subtraction rounded."""
        margin = value - self.limit if self.at_most else self.limit - value
        return margin <= TIE

    def value(self, r: dict, reference: dict | None) -> tuple[float, list[float] | None]:
        """(point estimate, 95 % interval or None) of this criterion's figure for record ``r``."""
        if self.figure == "sigma_vs_reference":
            return r["noise_sigma"] - reference["noise_sigma"], None
        if self.figure == "confident_vs_real":
            real = r["confident_heldout"]
            return r["confident"] - real, [v - real for v in r["confident_ci"]]
        return r[self.figure], r.get(self.figure + "_ci")

    def unresolved(self, ci: list[float] | None) -> bool:
        """Whether the interval straddles the limit (lo ≤ limit ≤ hi)."""
        return ci is not None and ci[0] <= self.limit <= ci[1]

    def show(self, value: float, ci: list[float] | None = None) -> str:
        if self.figure in ("confident", "coverage_min_class"):
            return pct(value) + ("" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")
        if self.figure == "confident_vs_real":
            text = f"{100 * value:+.1f} pts"
            return text + ("" if ci is None else f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]")
        if self.figure in ("noise_sigma", "sigma_vs_reference"):
            return f"{value:+.3f}" if ci is None else interval(value, ci, 3)
        unit = "×" if self.figure.startswith("fd") else ""
        return (f"{value:.2f}" if ci is None else interval(value, ci)) + unit


@dataclass(frozen=True)
class Bar:
    """A quality bar of the models issue: criteria met by ``sampler`` at one of ``steps`` (every step count of the
    grid when empty) on some schedule, or on every one of ``schedules`` when given; ``reference`` = (sampler, steps)
    of the cell "fd_vs_reference" divides by, on the same schedule."""

    model: str
    sampler: str
    steps: tuple[int, ...]
    criteria: tuple[Criterion, ...]
    reference: tuple[str, int] | None = None
    schedules: tuple[str, ...] = ()
    stands_in_for: str | None = None

    def describe(self) -> str:
        steps = "any step count" if not self.steps else "–".join(map(str, self.steps)) + " steps"
        where = f" on {' and '.join(self.schedules)} (each)" if self.schedules else ""
        instead = (f" — {self.stands_in_for}'s bar, unconditional sampling by random classes"
                   if self.stands_in_for else "")
        return f"{self.sampler}, {steps}{where}: " + "; ".join(c.text for c in self.criteria) + instead


SIGMA_BAR = {"mnist": 0.08, "fashion-mnist": 0.04}


def _sigma_within(dataset: str) -> Criterion:
    limit = SIGMA_BAR[dataset]
    return Criterion(f"noise-equivalent σ ≤ {limit:g}", "σ", "noise_sigma", limit, True)


_LEGIBLE = Criterion("confident within 10 points of real held-out images", "confident − real", "confident_vs_real",
                     -0.10, False)
_NO_COPIES = (Criterion("every class ≥ 4 %", "smallest class", "coverage_min_class", 0.04, False),
              Criterion("NN ratio ≥ 0.8 (no memorisation)", "NN ratio", "nn_ratio", 0.8, False))
_MNIST, _FASHION = (_sigma_within("mnist"), _LEGIBLE), (_sigma_within("fashion-mnist"), _LEGIBLE)
_BOTH = ("linear", "cosine")
BARS = (
    Bar("mnist-ddpm", "ddim", (50,), (*_MNIST, *_NO_COPIES), schedules=_BOTH),
    Bar("mnist-ddpm", "ddpm", (1000,), (*_MNIST, *_NO_COPIES)),
    Bar("mnist-ddpm", "dpm-solver++", (10, 20), (Criterion("σ ≤ ddpm's 1000-step σ + 0.02", "σ − ddpm-1000",
                                                           "sigma_vs_reference", 0.02, True),),
        reference=("ddpm", 1000)),
    Bar("mnist-ncsn", "pc", (), _MNIST),
    Bar("mnist-ncsn", "langevin", (), _MNIST),
    Bar("mnist-cond", "ddim", (50,), _MNIST, schedules=_BOTH),
    Bar("mnist-fm", "euler", (50,), _MNIST, schedules=("flow",)),
    Bar("mnist-fast", "euler", (4,), _MNIST, schedules=("flow",)),  # the app's default for it: its card's most steps
    Bar("fashion-ddpm", "ddim", (50,), _FASHION, schedules=_BOTH),
    # a class-conditional model may stand in for fashion-ddpm where it serves unconditional sampling at least as
    # well: its grid cells draw each sample's class from the class prior (report.grid.Cell), a sampler of p(x)
    Bar("fashion-cond", "ddim", (50,), _FASHION, schedules=_BOTH, stands_in_for="fashion-ddpm"),
)


def sigma_bar_as_ratio(dataset: str, record: dict) -> tuple[float, float] | None:
    """(σ limit, the FD / real it amounts to on ``record``'s feature space): the FD its noise ladder reads at the
    limit (linear between rungs, as ``evaluate.noise_equivalent_sigma`` reads them) over its real baseline; None
    when the dataset has no σ bar."""
    limit = SIGMA_BAR.get(dataset)
    if limit is None:
        return None
    rungs = record["noise_ladder"]
    for (s0, f0), (s1, f1) in zip(rungs, rungs[1:]):
        if s0 <= limit <= s1:
            return limit, (f0 + (f1 - f0) * (limit - s0) / (s1 - s0)) / record["fd_real"]
    raise ValueError(f"the noise ladder ({rungs[0][0]}–{rungs[-1][0]}) does not reach the σ bar {limit}")


def judge_bar(bar: Bar, records: list[dict], n: int) -> dict:
    """Verdict of one bar on a model's cells.

    For each schedule (the bar's ``schedules`` when it lists some): among the bar's cells the one with the lowest
    first figure (σ, ties broken by FD) of those meeting every criterion, else of them all, and whether it meets them.
    Returns {"bar", "verdict" ("pass", "fail", "not run", or "not judged (n < 500)"), "passing" (schedules),
    "missing" (listed schedules without cells), "shown" (the best passing cell, else the best cell; for a bar over
    every listed schedule the first failing one), "figures" [(criterion, value, interval, ok)] of the shown cell,
    "unresolved" (the short names of the shown cell's criteria whose interval straddles the limit), "judged"
    {schedule: (record, figures)}}.
    """
    judged = {}  # schedule -> (record, [(criterion, value, ci, ok)])
    schedules = bar.schedules or dict.fromkeys(r["schedule"] for r in records)
    for schedule in schedules:
        reference = None
        if bar.reference:
            reference = next((r for r in records if (r["sampler"], r["steps"], r["schedule"]) == (*bar.reference, schedule)), None)
            if reference is None:
                continue
        cands = [r for r in records if r["schedule"] == schedule and r["sampler"] == bar.sampler
                 and (not bar.steps or r["steps"] in bar.steps)]
        if not cands:
            continue
        scored = [(r, [(c, v, ci, c.passes(v)) for c in bar.criteria for v, ci in [c.value(r, reference)]])
                  for r in cands]
        meeting = [(r, figures) for r, figures in scored if all(ok for *_, ok in figures)]
        judged[schedule] = min(meeting or scored, key=lambda item: (item[1][0][1], item[0]["fd"]))
    missing = [s for s in bar.schedules if s not in judged]
    passing = [s for s, (_, figs) in judged.items() if all(ok for *_, ok in figs)]
    if not judged or missing:
        verdict = "not run"
    elif n < BAR_MIN_N:
        verdict = f"not judged (n < {BAR_MIN_N})"
    else:
        verdict = "pass" if (passing == list(judged) if bar.schedules else passing) else "fail"
    if not judged:
        shown = None
    elif bar.schedules:
        shown = next((s for s in judged if s not in passing), next(iter(judged)))
    else:
        shown = min(passing or judged, key=lambda s: (judged[s][1][0][1], judged[s][0]["fd"]))
    record, figures = judged[shown] if shown else (None, [])
    deciding = judged if bar.schedules else {shown: judged[shown]} if shown else {}
    unresolved = [(f"{s}: " if bar.schedules else "") + c.short
                  for s, (_, figs) in deciding.items() for c, _, ci, _ in figs if c.unresolved(ci)]
    return {"bar": bar, "verdict": verdict, "passing": passing, "missing": missing, "shown": record,
            "figures": figures, "unresolved": unresolved, "judged": judged}


def stand_ins(verdicts: list[dict]) -> dict[str, str]:
    """{model: the model whose passing bar stands in for it} over ``verdicts`` (``judge_bar``'s)."""
    return {v["bar"].stands_in_for: v["bar"].model for v in verdicts
            if v["bar"].stands_in_for and v["verdict"] == "pass"}


def bounds(verdict: dict, records: list[dict]) -> list[tuple[str, str]]:
    """What bounds a failed bar, from the model's own grid, as (schedule, sentence): for each criterion the judged
    cell fails on a schedule, the range of that figure over *every* cell of the model on that schedule (all
    samplers and step counts). When none of them meets the limit, no sampler or step count of the grid would pass,
    so the trained network bounds the figure, not the choice of sampler; when some do (on point estimates: their
    intervals are on the page), the bar's own sampler or steps are the bound."""
    lines = []
    for schedule, (r, figures) in verdict["judged"].items():
        cells = [x for x in records if x["schedule"] == schedule]
        for c, value, _, ok in figures:
            if ok or c.figure == "sigma_vs_reference":
                continue
            values = [c.value(x, None)[0] for x in cells]
            meeting = [label(x) for x, v in zip(cells, values) if c.passes(v)]
            where = (f"{len(meeting)} of them {'meets' if len(meeting) == 1 else 'meet'} the limit "
                     f"({'; '.join(meeting)}), so on point estimates the network reaches it on this schedule with "
                     "another sampler or step count: the bar's own setting is what falls short" if meeting else
                     "none meets the limit, so no sampler or step count of the grid would pass: the trained network "
                     "bounds it, not the choice of sampler")
            lines.append((schedule, f"{verdict['bar'].model}, {c.short} on {schedule}: {c.show(value)} at {label(r)}; "
                                    f"over all {len(cells)} {schedule} cells of its grid it lies from "
                                    f"{c.show(min(values))} to {c.show(max(values))} — {where}"))
    return lines


def better_than_real(results: dict) -> list[tuple[str, dict]]:
    """(model, record) of every cell whose FD ratio reads better than real beyond its interval (hi < 1)."""
    return [(model, r) for model, records in results.items() for r in records if r["fd_ratio_ci"][1] < 1]


def record_bars(results: dict, n: int, directory=None) -> None:
    """Store each bar's cells in its model's card, with the bar and its verdict: the cell the page shows, and for a
    bar over every listed schedule the cell of each listed schedule."""
    verdicts = [judge_bar(bar, results.get(bar.model, []), n) for bar in BARS]
    replaced = stand_ins(verdicts)
    for v in verdicts:
        bar = v["bar"]
        cells = list(v["judged"].values()) if bar.schedules else [(v["shown"], v["figures"])] if v["shown"] else []
        found = bounds(v, results.get(bar.model, [])) if v["verdict"] == "fail" else []
        for r, figs in cells:
            figures = evaluate.card_figures({k: val for k, val in r.items() if k not in ("model", "date")})
            figures.update(bar=bar.describe(), verdict=v["verdict"],
                           unresolved=[c.short for c, _, ci, _ in figs if c.unresolved(ci)],
                           source="python -m engine report (docs/RESULTS.md)")
            bound = [b for schedule, b in found if schedule == r["schedule"]]
            if bound:
                figures["bound"] = bound
            if bar.model in replaced:
                figures["met_in_its_place_by"] = replaced[bar.model]
            checkpoints.record_metrics(bar.model, evaluate.metrics_key(r), figures, directory)
