"""Running a report: load each model and its classifier, evaluate the grid's cells that the cache lacks, then write
the page, its figures, and the bars' cells into the model cards.

Each cell is scored by ``evaluate.evaluate_images`` — the function ``python -m engine eval`` runs — on n samples
drawn from ``seed``, so every cell of a model starts from the same x_T. The record adds FD / baseline
(``fd_ratio``) and the median nearest-training-image distance of the samples over that of held-out images
(``nn_ratio``: below 1 the samples sit closer to training images than unseen real images do, a sign of
memorisation) and the evaluator's version (``cache.EVALUATOR_VERSION``). Before the page is written, the evaluator
itself is validated on known damage to real images of each dataset (``_validation``), and the page shows how far
its figures can be trusted.
"""
from __future__ import annotations

import datetime
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .. import checkpoints, classifier, evaluate, validation
from ..data import TOYS, load_dataset
from ..devices import describe_device
from . import guidance, inpainting, likelihood, nfe
from .bars import record_bars, sigma_bar_as_ratio
from .cache import EVALUATOR_VERSION, is_fresh, load_cache, write_cache
from .figures import plot_fd_vs_nfe, plot_samples, plot_schedules
from .grid import FULL, SAMPLERS_BY_OBJECTIVE, Cell, Grid, plan_cells
from .ladder import placements, plot_ladder
from .page import render_page
from .ranks import Team, joined
from .text import label

DEFAULT_MODELS = ("mnist-ddpm", "mnist-ncsn", "fashion-ddpm", "mnist-cond", "fashion-cond")


class NotEvaluated(Exception):
    """A model the report cannot evaluate here; the message says why and what to do."""


@dataclass
class Setup:
    """A model ready to evaluate: its card, its weights on the device, its dataset and the classifier that scores it."""

    name: str
    card: dict
    model: torch.nn.Module
    dataset: str
    classifier_name: str
    classifier_card: dict
    classifier: torch.nn.Module

    @property
    def conditional(self) -> bool:
        """Whether the model is class-conditional: its grid cells sample random classes, and it has a guidance
        sweep."""
        return bool(getattr(self.model, "num_classes", 0))


def prepare(name: str, device: torch.device, n: int, directory=None) -> Setup:
    """Load model ``name`` and its dataset's classifier, or raise NotEvaluated saying why the report cannot score it
    (ValueError when n exceeds the held-out images)."""
    if name not in checkpoints.list_models(directory):
        config = Path(__file__).resolve().parents[1] / "configs" / f"{name}.json"
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
                           f"`python -c \"from engine.classifier import train_classifier; train_classifier('{dataset}')\"`")
    try:
        held_out = len(load_dataset(dataset, "test")[0])
    except FileNotFoundError as err:
        raise NotEvaluated(str(err)) from None
    if n > held_out:
        raise ValueError(f"n must be at most {held_out} (the held-out images of {dataset}, for {name}); got {n}")
    model = checkpoints.load_model(name, device, directory)
    # model.card is the card the loaded weights were checked against (a training run may export new ones meanwhile)
    return Setup(name, model.card, model, dataset, classifier_name, checkpoints.model_card(classifier_name, directory),
                 classifier.load_classifier(classifier_name, directory))


def _evaluate(setup: Setup, cell: Cell, n: int, seed: int, device: torch.device) -> dict:
    r = evaluate.evaluate_images(setup.model, setup.classifier, setup.dataset, sampler=cell.sampler,
                                 schedule=cell.schedule, steps=cell.steps, n=n, seed=seed, spacing=cell.spacing,
                                 label=cell.label, **cell.options)
    r.update(
        model=cell.model, seed=seed, fd_ratio=r["fd"] / r["fd_baseline"],
        nn_ratio=r["nn_distance_samples"] / r["nn_distance_heldout"],
        sha256=setup.card["sha256"], classifier_sha256=setup.classifier_card["sha256"], evaluator=EVALUATOR_VERSION,
        device=describe_device(device), date=datetime.date.today().isoformat(),
    )
    return r


def _evaluate_missing(team: Team, todo: list, planned: dict, cache: dict, cache_path: Path, n: int,
                      seed: int) -> int:
    """Evaluate the cells ``todo`` (keys of ``planned``), each rank its share (see ranks), rank 0 writing the cache
    after every round; returns how many cells this rank evaluated."""
    mine = 0
    with tqdm(total=len(planned), initial=len(planned) - len(todo), desc="report", unit="cell",
              disable=not team.leader) as progress:
        for batch, key in team.rounds(todo):
            record = None
            if key is not None:
                setup, cell = planned[key]
                progress.set_postfix_str(f"{cell.model}: {label(asdict(cell))}")
                record = _evaluate(setup, cell, n, seed, team.device)
                mine += 1
            cache.update(zip(batch, team.gather(record)))
            if team.leader:
                write_cache(cache_path, cache)
            progress.update(len(batch))
    return mine


def _validation(setups: dict, n: int, seed: int, path: Path) -> dict:
    """{dataset: rows of ``validation.validate``} for the datasets of the evaluated models, each at n_v = min(n, half
    the held-out images) (``validate`` scores n_v damaged held-out images against the other held-out images, so
    it needs both halves), cached in ``path`` like the cells: under "DATASET|n=N|seed=S", reused while the
    classifier's sha256, the evaluator's version (``cache.EVALUATOR_VERSION``) and the corruptions validated
    (``validation.CORRUPTIONS``) are unchanged, so a re-run of the page does not recompute it."""
    cache = load_cache(path)
    out = {}
    for s in {s.dataset: s for s in setups.values()}.values():
        n_v = min(n, len(load_dataset(s.dataset, "test")[0]) // 2)
        key = f"{s.dataset}|n={n_v}|seed={seed}"
        record = cache.get(key)
        if (record is None or record["classifier_sha256"] != s.classifier_card["sha256"]
                or [r["corruption"] for r in record["rows"]] != list(validation.CORRUPTIONS)):
            rows = validation.validate(s.dataset, n_v, seed, classifier=s.classifier)
            cache[key] = record = {"rows": rows, "classifier_sha256": s.classifier_card["sha256"],
                                   "evaluator": EVALUATOR_VERSION, "date": datetime.date.today().isoformat()}
            write_cache(path, cache)
        out[s.dataset] = [evaluate.with_noise_sigma(r) for r in record["rows"]]
    return out


def command_line(models, n: int, seed: int, out, device: str, quick: bool, narrowing=()) -> str:
    """The ``python -m engine report`` command, every value spelled out, that reproduces a page. ``narrowing``:
    (option, model or None for every model, names or step counts) in the order given, e.g. ("steps", None, (10, 20))
    or ("schedules", "mnist-ncsn", ("linear",))."""
    args = ["--models", ",".join(models), "--n", str(n), "--seed", str(seed), "--out", str(out), "--device", device]
    for option, model, values in narrowing:
        args += [f"--{option.replace('_', '-')}", ("" if model is None else f"{model}=") + ",".join(map(str, values))]
    return "python -m engine report " + shlex.join(args + (["--quick"] if quick else []))


def _checked_n(grid: Grid, n) -> int:
    n = grid.n if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer of at least 2; got {n!r}")
    return n


def _prepare_all(models: list[str], team: Team, n: int, directory) -> tuple[dict, dict]:
    """({model: Setup}, {model: why it is skipped}); every rank must hold rank 0's checkpoints, or every rank stops,
    each saying why, rather than wait for a missing one."""
    setups, skipped = {}, {}
    for name in models:
        try:
            setups[name] = prepare(name, team.device, n, directory)
        except NotEvaluated as why:
            skipped[name] = str(why)
    weights = {name: (s.card["sha256"], s.classifier_card["sha256"]) for name, s in setups.items()}
    every = team.gather(weights)
    odd = [rank for rank, theirs in enumerate(every) if theirs != every[0]]
    if odd:
        raise ValueError(f"rank(s) {', '.join(map(str, odd))} have other checkpoints than rank 0 (model: sha256 of "
                         f"its weights and its classifier's: {every[odd[0]]} against {every[0]}); every node "
                         "needs rank 0's checkpoints")
    return setups, skipped


def _missing(cache: dict, planned: dict) -> list:
    """The keys of the cells the cache lacks, dearest first, so that the cells of a round cost alike (see ranks)."""
    return sorted((key for key, (s, _) in planned.items()
                   if not is_fresh(cache.get(key), s.card["sha256"], s.classifier_card["sha256"])),
                  key=lambda key: -planned[key][1].nfe)


def noise_ladders(setups: dict, n: int, seed: int) -> dict:
    """{model: the noise ladder of its dataset at this n and seed} (``evaluate.noise_ladder``), exactly the ladder
    ``score_images`` uses, so that every record on the page — cell, sweep or study run — is placed on it by
    ``evaluate.with_noise_sigma``: one scored before the figure existed (evaluator version 2 keeps FD and its
    intervals) gets σ from its FD without sampling again, and every record's σ is stated the one way."""
    return {name: evaluate.noise_ladder(s.dataset, n, seed=seed, classifier=s.classifier) for name, s in setups.items()}


def _plot(results: dict, setups: dict, schedules: list[str], n: int, seed: int, results_dir: Path) -> tuple[list, dict]:
    """The schedules' figure, per model FD against NFE and samples from its lowest-FD cell, and per dataset its noise
    ladder with the bars' cells on it: (figure paths, {model: the samples' cell})."""
    figures = [results_dir / "schedules.png"]
    plot_schedules(schedules, figures[0])
    samples = {}
    for name, records in results.items():
        figures.append(results_dir / f"fd_vs_nfe_{name}.png")
        plot_fd_vs_nfe(name, records, figures[-1], sigma_bar_as_ratio(setups[name].dataset, records[0]))
        samples[name] = min(records, key=lambda r: r["fd"])
        figures.append(results_dir / f"samples_{name}.png")
        plot_samples(setups[name].model, samples[name], seed, figures[-1])
    for dataset, placed in placements(results, {name: s.dataset for name, s in setups.items()}, n).items():
        figures.append(results_dir / f"noise_ladder_{dataset}.png")
        plot_ladder(dataset, placed, figures[-1])
    return figures, samples


def _studies(setups: dict, grid: Grid, grids: dict, n: int, seed: int, results_dir: Path,
             ladders: dict) -> tuple[dict, list, list]:
    """The page's sections after the grid's, each cached beside the cells: the guidance sweeps, quality against
    network evaluations (``nfe``: its models among ``setups``) and held-out bits/dim (measured here), and the inpainting study (``python -m engine inpaint-study`` measures it). Returns (the sweeps,
    their markdown lines, their figures)."""
    swept = {name: [evaluate.with_noise_sigma(r, ladders[name]) for r in records]
             for name, records in guidance.sweeps(setups, n, seed, results_dir / "guidance.json").items()}
    guided = guidance.section(swept, setups, results_dir)
    bits = likelihood.measure(setups, likelihood.schedules_of(setups, grid, grids), min(n, likelihood.N_IMAGES), seed,
                              results_dir / "likelihood.json")
    study = nfe.measure(setups, n, seed, results_dir / "nfe.json")
    study["records"] = {run: evaluate.with_noise_sigma(r, ladders[run[0]]) for run, r in study["records"].items()}
    figures = [results_dir / f"guidance_{name}.png" for name in swept]
    figures += [results_dir / f"likelihood_{name}.png" for name, records in bits.items()
                if any(r["method"] == "vlb" for r in records)]
    figures += [results_dir / "quality_vs_nfe.png"] if study["records"] else []
    return swept, (guided + nfe.section(study, results_dir) + likelihood.section(bits, results_dir)
                   + inpainting.section(results_dir)), figures


def run_report(models=DEFAULT_MODELS, *, grid: Grid = FULL, n: int | None = None, seed: int = 0, out="docs",
               device: str = "auto", directory=None, command: str | None = None, grids: dict | None = None) -> dict:
    """Evaluate every cell of the grid (reusing fresh cached cells), then write the page and its figures.

    ``grids`` {model: Grid} replaces ``grid`` for some models (e.g. a narrower one for a model whose full grid would
    take hours on a CPU); the page says which. Under torchrun the ranks share the cells (see ranks). Returns
    {"page", "cache", "computed", "reused", "figures", "skipped" {model: why}}; on ranks other than 0, which write
    nothing, "page" and "cache" are None and "computed" counts the rank's own cells.
    """
    models = list(models)
    if not models:
        raise ValueError("name at least one model")
    n = _checked_n(grid, n)
    grids = {name: g for name, g in (grids or {}).items() if name in models and g != grid}
    out = Path(out)
    results_dir = out / "results"
    cache_path = results_dir / "cells.json"
    with joined(device) as team:
        if team.leader:
            results_dir.mkdir(parents=True, exist_ok=True)
        cache = load_cache(cache_path) if team.leader else {}
        setups, skipped = _prepare_all(models, team, n, directory)
        plans = {name: [(c, c.key(n, seed, team.device.type))
                        for c in plan_cells(name, s.card["objective"], grids.get(name, grid), s.conditional)]
                 for name, s in setups.items()}
        planned = {key: (setups[name], cell) for name, plan in plans.items() for cell, key in plan}
        todo = team.agree(_missing(cache, planned) if team.leader else None)
        mine = _evaluate_missing(team, todo, planned, cache, cache_path, n, seed)
    total = len(planned)
    if not team.leader:
        return {"page": None, "cache": None, "computed": mine, "reused": total - len(todo), "figures": [],
                "skipped": skipped}

    ladders = noise_ladders(setups, n, seed)
    results = {name: [evaluate.with_noise_sigma(cache[key], ladders[name]) for _, key in plan]
               for name, plan in plans.items()}
    schedules = list(dict.fromkeys(s for g in (grid, *grids.values()) for s in g.all_schedules))
    figures, samples = _plot(results, setups, schedules, n, seed, results_dir)
    page = out / "RESULTS.md"
    command = command or f"engine.report.run_report({models!r}, n={n}, seed={seed}, out={str(out)!r}, device={device!r})"
    validation = _validation(setups, n, seed, results_dir / "validation.json")
    swept, study_lines, study_figures = _studies(setups, grid, grids, n, seed, results_dir, ladders)
    page.write_text(render_page(command=command, grid=grid, n=n, seed=seed, results=results, setups=setups,
                                skipped=skipped, samples=samples, models=models, grids=grids, validation=validation)
                    + "\n".join(study_lines))
    record_bars(results, n, directory)
    guidance.record_in_cards(swept, directory)
    return {"page": page, "cache": cache_path, "computed": len(todo), "reused": total - len(todo),
            "figures": figures + study_figures, "skipped": skipped}
