"""``python -m engine report``: the results page ``OUT/RESULTS.md``, its figures, and a cache of evaluated cells.

The grid. A cell is (model, sampler, schedule, steps, spacing). Each is scored by ``evaluate.evaluate_images`` — the
function ``python -m engine eval`` runs — on n samples drawn from ``seed`` (so every cell of a model starts from the
same x_T), which gives: FD against n held-out images, the real-vs-real baseline FD at the same n, the confident
share, the smallest class's share, the memorisation figures, NFE and seconds of sampling. The report adds
FD / baseline (``fd_ratio``) and the median nearest-training-image distance of the samples over that of held-out
images (``nn_ratio``).

  * samplers: for models trained with the DDPM objective ddpm, ddim, dpm-solver++ and ode; for models trained by
    denoising score matching (``dsm``) the score family langevin, euler-maruyama, pc and ode;
  * steps (``FULL``): 10, 20, 50, 100, and 1000 only for ddpm, ddim and euler-maruyama (``LONG_RUN_SAMPLERS``:
    one network evaluation per step, and run at 1000 steps in their papers). At 1000 steps ode (Heun) and pc
    (corrector + predictor) would take ~2000 NFE and langevin (n_steps_each = 5 per level) 5001, and dpm-solver++
    is a 10–20-step solver;
  * schedules: linear, cosine, sigmoid, constant, karras; for score models also ve-geometric, NCSN's own;
  * spacing: trailing for dpm-solver++ (its docstring's advice), leading (the default of generate and eval) for the
    others; every sampler runs with its default options, recorded with the cell.

The cache. Each finished cell is written at once to ``OUT/results/cells.json`` under a key made of its settings
(options included), n, seed and device type; the record keeps the sha256 of the model's and of the classifier's
weights. A cell is reused only when its key is there with both sha256 unchanged, so an interrupted run resumes where
it stopped and a run after retraining one model recomputes that model's cells only. Cells measured on another device
type are not reused, so the seconds on a page come from one kind of device. (After a change to a sampler's code,
delete cells.json: the cache cannot see code.)

Quality bars (``BARS``) are judged per schedule on the cells of the bar's sampler and step counts (the lowest
FD / baseline among them when several step counts qualify); a bar passes when some schedule meets every criterion.
They need n ≥ 500 (``BAR_MIN_N``); with fewer samples the figures are shown but not judged.

The page states the command, n, seed, device and date; its tables and its sentences are computed from the cells, so
nothing in it can go stale: re-run the command after any change. Figures: ``results/schedules.png`` (ᾱ_t and
log-SNR of the grid's schedules), ``results/fd_vs_nfe_MODEL.png`` (FD / baseline against NFE, a panel per schedule,
a line per sampler) and ``results/samples_MODEL.png`` (64 samples from the model's lowest-FD cell).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from tqdm import tqdm  # noqa: E402

from . import checkpoints, evaluate  # noqa: E402
from .data import TOYS, load_dataset  # noqa: E402
from .generate import sample, sampler_options  # noqa: E402
from .pictures import save_samples  # noqa: E402
from .samplers import SAMPLERS  # noqa: E402
from .schedules import get_schedule  # noqa: E402

DEFAULT_MODELS = ("mnist-ddpm", "mnist-ncsn", "fashion-ddpm")
SAMPLERS_BY_OBJECTIVE = {
    "ddpm": ("ddpm", "ddim", "dpm-solver++", "ode"),
    "dsm": ("langevin", "euler-maruyama", "pc", "ode"),
}
LONG_RUN_SAMPLERS = ("ddpm", "ddim", "euler-maruyama")
SPACING = {"dpm-solver++": "trailing"}
DEFAULT_SPACING = "leading"
SAMPLE_GRID_N = 64
BAR_MIN_N = 500
NFE_BUDGETS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Grid:
    """The step counts and the schedules (per training objective) of a report, and its default n.

    Step counts of ``long_run`` or more are run only by ``LONG_RUN_SAMPLERS``, and only on ``long_run_schedules``
    when that is given (on a CPU a 1000-step cell at n = 500 takes ~20 minutes).
    """

    steps: tuple[int, ...]
    schedules: dict
    n: int
    long_run: int = 1000
    long_run_schedules: tuple[str, ...] | None = None

    @property
    def all_schedules(self) -> list[str]:
        """Every schedule of the grid, once, in order (the objectives' lists share most names)."""
        return list(dict.fromkeys(s for names in self.schedules.values() for s in names))

    def narrowed(self, steps=None, schedules=None, long_run_schedules=None) -> "Grid":
        """This grid with only ``steps`` (any positive counts), only ``schedules`` (a subset of its schedules, for
        each objective that has them) and the long runs only on ``long_run_schedules``; None keeps what it is."""
        offered = self.all_schedules
        for option, names in (("schedules", schedules), ("long-run schedules", long_run_schedules)):
            unknown = [s for s in names or () if s not in offered]
            if unknown:
                raise ValueError(f"{option}: {', '.join(unknown)} not in the grid's schedules ({', '.join(offered)})")
        kept = self.schedules if schedules is None else {
            objective: tuple(s for s in names if s in schedules) for objective, names in self.schedules.items()}
        return replace(self, steps=self.steps if steps is None else tuple(steps), schedules=kept,
                       long_run_schedules=self.long_run_schedules if long_run_schedules is None
                       else tuple(long_run_schedules))


_VP_AND_EDM = ("linear", "cosine", "sigmoid", "constant", "karras")
FULL = Grid(steps=(10, 20, 50, 100, 1000), schedules={"ddpm": _VP_AND_EDM, "dsm": (*_VP_AND_EDM, "ve-geometric")}, n=500)
QUICK = Grid(steps=(5, 10), schedules={"ddpm": ("linear", "cosine"), "dsm": ("linear", "cosine")}, n=64)


@dataclass(frozen=True)
class Cell:
    model: str
    sampler: str
    schedule: str
    steps: int
    spacing: str

    @property
    def options(self) -> dict:
        """The sampler's default options, with ``sde`` resolved to the schedule's kind as generate() does."""
        opts = sampler_options(self.sampler)
        if "sde" in opts:
            opts["sde"] = get_schedule(self.schedule).kind
        return opts

    def key(self, n: int, seed: int, device_type: str) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.model}|{self.sampler}|{self.schedule}|{self.steps}|{self.spacing}|{opts}|n={n}|seed={seed}|{device_type}"


def plan_cells(model: str, objective: str, grid: Grid = FULL) -> list[Cell]:
    """The cells of one model: its family's samplers × the grid's schedules for its objective × step counts."""
    if objective not in SAMPLERS_BY_OBJECTIVE:
        raise ValueError(f"no sampler family for objective {objective!r}; known: {', '.join(SAMPLERS_BY_OBJECTIVE)}")
    return [
        Cell(model, sampler, schedule, steps, SPACING.get(sampler, DEFAULT_SPACING))
        for sampler in SAMPLERS_BY_OBJECTIVE[objective]
        for schedule in grid.schedules[objective]
        for steps in grid.steps
        if steps < grid.long_run or (sampler in LONG_RUN_SAMPLERS
                                     and (grid.long_run_schedules is None or schedule in grid.long_run_schedules))
    ]


def label(r: dict) -> str:
    return f"{r['sampler']} · {r['schedule']} · {r['steps']} steps"


# --- quality bars ---------------------------------------------------------------------------------------------


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
            return _pct(value)
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


# --- running the grid -----------------------------------------------------------------------------------------


class NotEvaluated(Exception):
    """A model the report cannot evaluate here; the message says why and what to do."""


@dataclass
class _Setup:
    name: str
    card: dict
    model: torch.nn.Module
    dataset: str
    classifier_name: str
    classifier_card: dict
    classifier: torch.nn.Module


def resolve_device(device: str) -> torch.device:
    """"auto": CUDA when available, else the CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()})"


def _prepare(name: str, device: torch.device, n: int, directory) -> _Setup:
    if name not in checkpoints.list_models(directory):
        config = Path(__file__).resolve().parent / "configs" / f"{name}.json"
        hint = f"; train it with `python -m engine train --config engine/configs/{name}.json`" if config.is_file() else ""
        raise NotEvaluated(f"no checkpoint {name} in {checkpoints.checkpoint_dir(directory)}{hint}")
    card = checkpoints.model_card(name, directory)  # read before loading: toys are skipped unloaded
    dataset = card.get("data", {}).get("dataset")
    if dataset in TOYS or card["objective"] not in SAMPLERS_BY_OBJECTIVE:
        raise NotEvaluated(f"{name} is not an image model with a sampler family here (dataset {dataset}, "
                           f"objective {card['objective']}); score it with `python -m engine eval`")
    classifier_name = f"{dataset}-classifier"
    if classifier_name not in checkpoints.list_models(directory, kind="classifier"):
        raise NotEvaluated(f"no classifier {classifier_name} in {checkpoints.checkpoint_dir(directory)}; train it with "
                           f"`python -c \"from engine.evaluate import train_classifier; train_classifier('{dataset}')\"`")
    try:
        held_out = len(load_dataset(dataset, "test")[0])
    except FileNotFoundError as err:
        raise NotEvaluated(str(err)) from None
    if n > held_out:
        raise ValueError(f"n must be at most {held_out} (the held-out images of {dataset}, for {name}); got {n}")
    model = checkpoints.load_model(name, device, directory)
    # model.card is the card the loaded weights were checked against (a training run may export new ones meanwhile)
    return _Setup(name, model.card, model, dataset, classifier_name, checkpoints.model_card(classifier_name, directory),
                  evaluate.load_classifier(classifier_name, directory))


def load_cache(path: Path) -> dict:
    """The cached cells {key: record} of ``path`` ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {CACHE_VERSION}")
        return dict(data["cells"])
    except (ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"cannot read the cell cache {path} ({err}); delete it to recompute every cell") from None


def _write_cache(path: Path, cells: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "cells": cells}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _fresh(record: dict | None, setup: _Setup) -> bool:
    return (record is not None and record["sha256"] == setup.card["sha256"]
            and record["classifier_sha256"] == setup.classifier_card["sha256"])


def _evaluate(setup: _Setup, cell: Cell, n: int, seed: int, device: torch.device) -> dict:
    r = evaluate.evaluate_images(setup.model, setup.classifier, setup.dataset, sampler=cell.sampler,
                                 schedule=cell.schedule, steps=cell.steps, n=n, seed=seed, spacing=cell.spacing,
                                 **cell.options)
    r.update(
        model=cell.model, seed=seed, fd_ratio=r["fd"] / r["fd_baseline"],
        nn_ratio=r["nn_distance_samples"] / r["nn_distance_heldout"],
        sha256=setup.card["sha256"], classifier_sha256=setup.classifier_card["sha256"],
        device=describe_device(device), date=datetime.date.today().isoformat(),
    )
    return r


def command_line(models, n: int, seed: int, out, device: str, quick: bool, narrowing=()) -> str:
    """The ``python -m engine report`` command, every value spelled out, that reproduces a page. ``narrowing``:
    (option, model or None for every model, names or step counts) in the order given, e.g. ("steps", None, (10, 20))
    or ("schedules", "mnist-ncsn", ("linear",))."""
    args = ["--models", ",".join(models), "--n", str(n), "--seed", str(seed), "--out", str(out), "--device", device]
    for option, model, values in narrowing:
        args += [f"--{option.replace('_', '-')}", ("" if model is None else f"{model}=") + ",".join(map(str, values))]
    return "python -m engine report " + shlex.join(args + (["--quick"] if quick else []))


def run_report(models=DEFAULT_MODELS, *, grid: Grid = FULL, n: int | None = None, seed: int = 0, out="docs",
               device: str = "auto", directory=None, command: str | None = None, grids: dict | None = None) -> dict:
    """Evaluate every cell of the grid (reusing fresh cached cells), then write the page and its figures.

    ``grids`` {model: Grid} replaces ``grid`` for some models (e.g. a narrower one for a model whose full grid would
    take hours on a CPU); the page says which. Returns {"page", "cache", "computed", "reused", "figures",
    "skipped" {model: why}}.
    """
    models = list(models)
    if not models:
        raise ValueError("name at least one model")
    n = grid.n if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer of at least 2; got {n!r}")
    dev = resolve_device(device)
    out = Path(out)
    results_dir = out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    cache_path = results_dir / "cells.json"
    cache = load_cache(cache_path)

    setups, skipped = {}, {}
    for name in models:
        try:
            setups[name] = _prepare(name, dev, n, directory)
        except NotEvaluated as why:
            skipped[name] = str(why)
    grids = {name: g for name, g in (grids or {}).items() if name in models and g != grid}
    plans = {name: [(c, c.key(n, seed, dev.type)) for c in plan_cells(name, s.card["objective"], grids.get(name, grid))]
             for name, s in setups.items()}
    todo = [(setups[name], cell, key) for name, plan in plans.items() for cell, key in plan
            if not _fresh(cache.get(key), setups[name])]
    total = sum(map(len, plans.values()))
    with tqdm(total=total, initial=total - len(todo), desc="report", unit="cell") as progress:
        for setup, cell, key in todo:
            progress.set_postfix_str(f"{cell.model}: {label(asdict(cell))}")
            cache[key] = _evaluate(setup, cell, n, seed, dev)
            _write_cache(cache_path, cache)
            progress.update()

    results = {name: [cache[key] for _, key in plan] for name, plan in plans.items()}
    figures = [results_dir / "schedules.png"]
    plot_schedules(list(dict.fromkeys(s for g in (grid, *grids.values()) for s in g.all_schedules)), figures[0])
    samples = {}
    for name, records in results.items():
        figures.append(results_dir / f"fd_vs_nfe_{name}.png")
        plot_fd_vs_nfe(name, records, figures[-1])
        best = min(records, key=lambda r: r["fd"])
        figures.append(results_dir / f"samples_{name}.png")
        x = sample(setups[name].model, schedule=best["schedule"], sampler=best["sampler"], steps=best["steps"],
                   seed=seed, n=SAMPLE_GRID_N, spacing=best["spacing"], **best["options"])
        save_samples(x, figures[-1])
        samples[name] = best

    page = out / "RESULTS.md"
    command = command or f"engine.report.run_report({models!r}, n={n}, seed={seed}, out={str(out)!r}, device={device!r})"
    page.write_text(render_page(command=command, grid=grid, n=n, seed=seed, results=results, setups=setups,
                                skipped=skipped, samples=samples, models=models, grids=grids))
    record_bars(results, n, directory)
    return {"page": page, "cache": cache_path, "computed": len(todo), "reused": total - len(todo),
            "figures": figures, "skipped": skipped}


# --- figures --------------------------------------------------------------------------------------------------

_COLORS = matplotlib.colormaps["tab10"].colors
_MARKERS = "osD^vP*X"


def plot_schedules(names: list[str], path) -> None:
    """ᾱ_t and log-SNR λ_t against t for each named schedule, side by side."""
    fig = Figure(figsize=(10, 3.6), dpi=100, layout="constrained")
    ax_a, ax_l = fig.subplots(1, 2)
    for k, name in enumerate(names):
        s = get_schedule(name)
        t = np.arange(s.T)
        ax_a.plot(t, s.alphas_cumprod.numpy(), color=_COLORS[k % 10], lw=1.6, label=name)
        ax_l.plot(t, s.log_snr.numpy(), color=_COLORS[k % 10], lw=1.6, label=name)
    ax_a.set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"signal level $\bar\alpha_t$", xlim=(0, 999))
    ax_l.set(xlabel="t", ylabel=r"$\lambda_t = \log(\bar\alpha_t / (1 - \bar\alpha_t))$", title="log-SNR", xlim=(0, 999))
    for ax in (ax_a, ax_l):
        ax.grid(alpha=0.3)
    ax_a.legend(fontsize=8)
    fig.savefig(path)


def _fd_bar(model: str) -> float | None:
    """The tightest "FD ≤ k× baseline" bar of a model, if it has one."""
    limits = [c.limit for b in BARS if b.model == model for c in b.criteria if c.figure == "fd_ratio"]
    return min(limits, default=None)


def plot_fd_vs_nfe(model: str, records: list[dict], path) -> None:
    """FD / baseline against NFE (log–log): a panel per schedule, a line per sampler; the real-vs-real level
    (1×) dashed and the model's FD bar dotted."""
    schedules = list(dict.fromkeys(r["schedule"] for r in records))
    samplers = list(dict.fromkeys(r["sampler"] for r in records))
    cols = min(3, len(schedules))
    rows = math.ceil(len(schedules) / cols)
    fig = Figure(figsize=(3.8 * cols, 2.9 * rows + 0.9), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).flat
    ratios = [r["fd_ratio"] for r in records]
    bar = _fd_bar(model)
    lo, hi = min(ratios + [1.0]) / 1.3, max(ratios + [bar or 1.0]) * 1.3
    for ax, schedule in zip(axes, schedules):
        for sampler in samplers:
            pts = sorted((r["nfe"], r["fd_ratio"]) for r in records if r["schedule"] == schedule and r["sampler"] == sampler)
            k = list(SAMPLERS).index(sampler)  # one colour and marker per sampler on every model's figure
            ax.plot(*zip(*pts), color=_COLORS[k % 10], marker=_MARKERS[k % len(_MARKERS)], ms=4, lw=1.4, label=sampler)
        ax.axhline(1.0, color="0.4", ls="--", lw=1, label="real vs real")
        if bar:
            ax.axhline(bar, color="crimson", ls=":", lw=1.2, label=f"bar: {bar:g}×")
        ax.set(xscale="log", yscale="log", ylim=(lo, hi), title=schedule)
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1, 2, 5 × 10^k instead of powers of ten
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(schedules):]:
        ax.set_visible(False)
    fig.supxlabel("network evaluations (NFE)")
    fig.supylabel("FD / real-vs-real baseline")
    n = records[0]["n"]
    fig.suptitle(f"{model}: FD against NFE (n = {n}, lower is better)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.savefig(path)


# --- the page -------------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _findings(records: list[dict]) -> list[str]:
    """Sentences computed from a model's cells: the best cell, the cheapest cell within 1.5/2/3× of the baseline,
    the schedule that wins most often per sampler, where the schedule matters most, and the cost per NFE."""
    best = min(records, key=lambda r: r["fd"])
    lines = [f"Lowest FD: {_num(best['fd'])} ({best['fd_ratio']:.2f}× the real-vs-real baseline) with "
             f"{label(best)} ({best['nfe']} NFE)."]
    for k in (1.5, 2, 3):
        hits = [r for r in records if r["fd_ratio"] <= k]
        if hits:
            r = min(hits, key=lambda r: (r["nfe"], r["fd"]))
            lines.append(f"Fewest NFE within {k:g}× the baseline: {r['nfe']} ({label(r)}, {r['fd_ratio']:.2f}×).")
        else:
            lines.append(f"No setting comes within {k:g}× the baseline.")
    groups = {}
    for r in records:
        groups.setdefault((r["sampler"], r["steps"]), []).append(r)
    groups = {g: rs for g, rs in groups.items() if len(rs) > 1}
    if groups:
        wins = {}
        for (sampler, _), rs in groups.items():
            wins.setdefault(sampler, Counter())[min(rs, key=lambda r: r["fd"])["schedule"]] += 1
        parts = []
        for sampler, counts in wins.items():
            top = max(counts.values())
            leaders = [s for s, c in counts.items() if c == top]
            parts.append(f"{sampler}: {', '.join(leaders)} ({top} of {sum(counts.values())}{' each' if len(leaders) > 1 else ''})")
        lines.append("Schedule with the lowest FD at the most step counts — " + "; ".join(parts) + ".")
        spread = {g: (min(rs, key=lambda r: r["fd"]), max(rs, key=lambda r: r["fd"])) for g, rs in groups.items()}
        (sampler, steps), (lo, hi) = max(spread.items(), key=lambda kv: kv[1][1]["fd"] / kv[1][0]["fd"])
        lines.append(f"The schedule matters most for {sampler} at {steps} steps: FD {_num(lo['fd'])} ({lo['schedule']}) "
                     f"to {_num(hi['fd'])} ({hi['schedule']}), {hi['fd'] / lo['fd']:.1f}×.")
    per_nfe = statistics.median(r["seconds"] / (r["nfe"] * r["n"]) for r in records)
    devices = ", ".join(sorted({r["device"] for r in records}))
    lines.append(f"Sampling took {1000 * per_nfe:.3g} ms per image per network evaluation (median over cells; {devices}).")
    return lines


def _cross_table(records: list[dict]) -> list[str]:
    """Rows sampler × steps, a column per schedule: FD (FD / baseline) · seconds, the row's lowest FD in bold."""
    schedules = list(dict.fromkeys(r["schedule"] for r in records))
    rows = {}
    for r in records:
        rows.setdefault((r["sampler"], r["steps"]), {})[r["schedule"]] = r
    out = ["| sampler | steps | NFE | " + " | ".join(schedules) + " |", "|---|--:|--:|" + "--:|" * len(schedules)]
    for (sampler, steps), by_schedule in rows.items():
        best = min(by_schedule.values(), key=lambda r: r["fd"])
        nfe = "/".join(str(v) for v in sorted({r["nfe"] for r in by_schedule.values()}))
        cells = []
        for s in schedules:
            r = by_schedule.get(s)
            text = "" if r is None else f"{_num(r['fd'])} ({r['fd_ratio']:.2f}×) · {_secs(r['seconds'])}"
            cells.append(f"**{text}**" if r is best else text)
        out.append(f"| {sampler} | {steps} | {nfe} | " + " | ".join(cells) + " |")
    return out


def _budget_table(records: list[dict]) -> list[str]:
    nfes = [r["nfe"] for r in records]
    budgets = [b for b in NFE_BUDGETS if b >= min(nfes)]
    budgets = budgets[: next((i + 1 for i, b in enumerate(budgets) if b >= max(nfes)), len(budgets))]
    out = ["| NFE budget | best setting | NFE | FD (× baseline) |", "|--:|---|--:|--:|"]
    for b in budgets:
        r = min((r for r in records if r["nfe"] <= b), key=lambda r: r["fd"])
        out.append(f"| ≤ {b} | {label(r)} | {r['nfe']} | {_num(r['fd'])} ({r['fd_ratio']:.2f}×) |")
    return out


def _real(r: dict) -> str:
    """The held-out real images' confident share (the classifier's own ceiling), when the record has it."""
    return f" (real {_pct(r['confident_heldout'])})" if r.get("confident_heldout") is not None else ""


def _detail_table(records: list[dict]) -> list[str]:
    out = ["| sampler | schedule | steps | spacing | NFE | FD | baseline | FD / baseline | confident | smallest class "
           "| NN ratio | seconds |", "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in records:
        out.append(f"| {r['sampler']} | {r['schedule']} | {r['steps']} | {r['spacing']} | {r['nfe']} | {_num(r['fd'])} "
                   f"| {_num(r['fd_baseline'])} | {r['fd_ratio']:.2f} | {_pct(r['confident'])}{_real(r)} "
                   f"| {_pct(r['coverage_min_class'])} | {r['nn_ratio']:.2f} | {_secs(r['seconds'])} |")
    return out


def _bar_table(verdicts: list[dict]) -> list[str]:
    out = ["| model | bar | schedules passing | closest setting | figures | verdict |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        bar = v["bar"]
        figs = " · ".join(f"{c.short} {c.show(value)} {'✓' if ok else '✗'}" for c, value, ok in v["figures"])
        shown = label(v["shown"]) if v["shown"] else "—"
        passing = ", ".join(v["passing"]) or ("none" if v["shown"] else "—")
        out.append(f"| {bar.model} | {bar.describe()} | {passing} | {shown} | {figs or '—'} | **{v['verdict']}** |")
    return out


def _grid_lines(grid: Grid) -> list[str]:
    short = [s for s in grid.steps if s < grid.long_run]
    long_ = [s for s in grid.steps if s >= grid.long_run]
    lines = []
    for objective, samplers in SAMPLERS_BY_OBJECTIVE.items():
        lines.append(f"- Models trained with the `{objective}` objective: samplers {', '.join(samplers)}; schedules "
                     f"{', '.join(grid.schedules[objective])}.")
    steps = f"- Steps {', '.join(map(str, short))}"
    if long_:
        where = "" if grid.long_run_schedules is None else f" on {', '.join(grid.long_run_schedules)}"
        steps += (f"; {', '.join(map(str, long_))} only for {', '.join(LONG_RUN_SAMPLERS)}{where} (one network evaluation "
                  f"per step, and run that long in their papers): ode (Heun) and pc (corrector + predictor) take two "
                  f"evaluations per step and langevin n_steps_each per level, so 1000 steps would cost 2000–5000 NFE, "
                  f"and dpm-solver++ is a 10–20-step solver.")
    lines.append(steps + ("" if long_ else "."))
    spacing = ", ".join(f"{s}: {sp}" for s, sp in SPACING.items())
    lines.append(f"- Timestep spacing {DEFAULT_SPACING} (the default of `generate` and `eval`), except {spacing}. "
                 "Every sampler runs with its default options (in results/cells.json with each cell).")
    fewest = min(grid.steps)
    first = get_schedule("linear").timesteps(fewest, DEFAULT_SPACING)[0].item()
    levels = ", ".join(f"{s} {get_schedule(s).alphas_cumprod[first].item():.1e}"
                       for s in grid.all_schedules)
    last = max(get_schedule(s).alphas_cumprod[-1].item() for s in grid.all_schedules)
    lines.append(f"- With {DEFAULT_SPACING} spacing a {fewest}-step run starts at t = {first}, not 999, from x_T ~ N(0, I); "
                 f"ᾱ_t there is {levels} (at t = 999 every one is ≤ {last:.0e}): where it is far from 0 the start "
                 "does not match the noise level, which costs FD at few steps.")
    return lines


def _narrowed_lines(grids: dict, setups: dict) -> list[str]:
    lines = []
    for name, g in grids.items():
        objective = setups[name].card["objective"] if name in setups else None
        schedules = g.schedules[objective] if objective else g.all_schedules
        long_ = [s for s in g.steps if s >= g.long_run]
        where = "" if not long_ or g.long_run_schedules is None else f" ({', '.join(map(str, long_))} on {', '.join(g.long_run_schedules)})"
        lines.append(f"- **{name}** runs a narrower grid: steps {', '.join(map(str, g.steps))}{where}; schedules "
                     f"{', '.join(schedules)}.")
    return lines


def render_page(*, command: str, grid: Grid, n: int, seed: int, results: dict, setups: dict, skipped: dict,
                samples: dict, models: list[str], grids: dict | None = None) -> str:
    """The markdown of RESULTS.md (figure links relative to it, under results/)."""
    devices = sorted({r["device"] for rs in results.values() for r in rs})
    verdicts = [judge_bar(b, results.get(b.model, []), n) for b in BARS]
    count = ", ".join(f"{c} {verdict}" for verdict, c in Counter(v["verdict"] for v in verdicts).items())
    lines = [
        "# Results",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}; device: {', '.join(devices) or 'none'}; "
        f"n = {n} samples per cell against n held-out images; seed {seed} (every cell of a model starts from the "
        "same x_T). Do not edit by hand: re-run the command. Finished cells are cached in `results/cells.json` "
        "and reused while the model's and the classifier's sha256 are unchanged.",
        "",
        "FD is the Fréchet distance between features of our own classifier (engine/evaluate.py), not Inception "
        "features; the baseline is the FD between n training and n held-out images, what \"as good as real\" reads "
        "at this n. NFE = network evaluations per sample; seconds = wall time to sample all n.",
        "",
        "## Models",
        "",
    ]
    for name in models:
        if name in skipped:
            lines.append(f"- **{name}**: not evaluated — {skipped[name]}.")
            continue
        s = setups[name]
        acc = s.classifier_card.get("metrics", {}).get("held_out_accuracy")
        lines.append(f"- **{name}**: weights sha256 `{s.card['sha256'][:12]}…`, trained "
                     f"{s.card.get('training', {}).get('steps', '?')} steps on {s.dataset} (objective `{s.card['objective']}`); "
                     f"classifier {s.classifier_name} (`{s.classifier_card['sha256'][:12]}…`"
                     + (f", held-out accuracy {_pct(acc)}" if acc is not None else "") + ").")
    lines += ["", "## The grid", "", *_grid_lines(grid), *_narrowed_lines(grids or {}, setups), "",
              "![ᾱ_t and log-SNR of the schedules](results/schedules.png)", "",
              "## Quality bars", "",
              f"Verdicts: {count}. Each bar is checked per schedule on the cell of its sampler and step counts with the lowest FD "
              "ratio; it passes when some schedule meets every criterion (NN ratio = median distance of samples to "
              "their nearest training image / the same for held-out images).", "",
              *_bar_table(verdicts), ""]
    for name, records in results.items():
        base = sorted({_num(r["fd_baseline"]) for r in records})
        best = samples[name]
        lines += [
            f"## {name}", "",
            f"Real-vs-real baseline FD at n = {n}: {', '.join(base)}.", "",
            *[f"- {x}" for x in _findings(records)], "",
            "Each cell: FD (FD / baseline) · seconds; bold: the lowest FD in its row.", "",
            *_cross_table(records), "",
            *_budget_table(records), "",
            f"![FD against NFE for {name}](results/fd_vs_nfe_{name}.png)", "",
            f"![samples from {name}](results/samples_{name}.png)", "",
            f"{SAMPLE_GRID_N} samples from the lowest-FD cell, {label(best)} ({best['spacing']} spacing), seed {seed}.", "",
            "<details><summary>Every cell with every figure</summary>", "",
            *_detail_table(records), "", "</details>", "",
        ]
    return "\n".join(lines)
