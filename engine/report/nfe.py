"""Quality against network evaluations: how few steps each objective and solver need (the seed's open problem).

For each model of ``STUDY`` and each of its (sampler, schedule) lines, the study samples n images at every NFE of
``NFES`` (the largest step count whose evaluations stay within it, ``steps_for``; none where one step costs more)
and scores them with ``evaluate.evaluate_images``, the function behind every cell of the page. Beside it,
each model's straightness S (``engine.straightness``, Liu et al. 2023): 0 for straight paths, which one Euler step
follows exactly. ``TARGETS`` are the issues' few-step targets, each a candidate run against a reference run:
mnist-fm with DDIM on ``flow`` at 8 steps against mnist-ddpm with DDIM at 50 (not worse beyond the intervals), and
the distilled mnist-fast at 4 NFE against its teacher's DDIM 50 (not worse) and at 1 NFE against its teacher's
DPM-Solver++ at 8 (better beyond the intervals), each with a floor on the confident share.

Records are cached in ``nfe.json`` beside the cells, under "MODEL|SAMPLER|SCHEDULE|STEPS|SPACING|n=N|seed=S", reused
while the model's and the classifier's sha256 and the evaluator's version are unchanged (``cache.is_fresh``).
Every line of the study runs on trailing spacing, the target on the bars' (``spacing_of``).
"""
from __future__ import annotations

import datetime
from pathlib import Path

from tqdm import tqdm

from .. import evaluate
from ..generate import sampler_spec
from ..schedules import get_schedule
from ..straightness import straightness
from .cache import EVALUATOR_VERSION, is_fresh, load_cache, write_cache
from .text import ratio_text, sigma_text

NFES = (1, 2, 4, 8, 16, 32, 64, 128)
STUDY = {
    "mnist-ddpm": (("ddim", "cosine"), ("dpm-solver++", "cosine")),
    # the score model on its own VE schedule: a trailing VP grid starts at t = T − 1, where σ = √((1 − ᾱ)/ᾱ) lies far
    # beyond its trained σ_max, and the deterministic ODE never recovers (it read ~125× real at every NFE on cosine)
    "mnist-ncsn": (("euler-maruyama", "ve-geometric"), ("pc", "ve-geometric"), ("ode", "ve-geometric")),
    # on the flow path DDIM is exactly Euler: the teacher's DDIM line is its euler line
    "mnist-fm": (("euler", "flow"), ("heun", "flow"), ("dpm-solver++", "flow")),
    "mnist-fast": (("euler", "flow"),),
}
# (what, candidate run, reference run, "not worse" or "better" beyond the intervals, the least confident share);
# a run is (model, sampler, schedule, steps)
TARGETS = (
    ("flow matching at 8 steps", ("mnist-fm", "ddim", "flow", 8), ("mnist-ddpm", "ddim", "cosine", 50), "not worse",
     0.85),
    ("distilled at 4 NFE", ("mnist-fast", "euler", "flow", 4), ("mnist-fm", "ddim", "flow", 50), "not worse", 0.85),
    ("distilled at 1 NFE", ("mnist-fast", "euler", "flow", 1), ("mnist-fm", "dpm-solver++", "flow", 8), "better",
     0.70),
)
TARGET_RUNS = tuple(run for _, *runs, _, _ in TARGETS for run in runs)
STRAIGHTNESS = {"steps": 100, "n": 256}


def steps_for(sampler: str, nfe: int) -> int | None:
    """The most steps of ``sampler`` (default options) whose network evaluations are at most ``nfe``; None when
    one step already costs more (predictor–corrector: 2)."""
    spec = sampler_spec(sampler)
    fits = [s for s in range(1, nfe + 1) if spec.nfe(s) <= nfe]
    return max(fits) if fits else None


def planned(setups: dict, nfes=NFES) -> list[tuple[str, str, str, int]]:
    """Every (model, sampler, schedule, steps) the study runs for the models among ``setups``, the target's
    settings included, once each."""
    runs = [(name, sampler, schedule, steps) for name, lines in STUDY.items() if name in setups
            for sampler, schedule in lines for steps in dict.fromkeys(steps_for(sampler, k) for k in nfes) if steps]
    runs += [t for t in TARGET_RUNS if t[0] in setups]
    return list(dict.fromkeys(runs))


def spacing_of(run: tuple) -> str:
    """The timestep spacing of a run: trailing on the study's lines, so that every run starts at t = T − 1, pure
    noise (leading at 128 of 1000 steps starts at t = 889 and loses quality for that alone: measured, mnist-ddpm
    DDIM cosine read 5.2× real at 128 steps against 1.6× at 64); the target's runs on ``generate``'s default, as
    the results page's bars judge them."""
    _, sampler, schedule, _ = run
    if run in TARGET_RUNS:
        return get_schedule(schedule).spacing or sampler_spec(sampler).spacing
    return "trailing"


def _record(setup, run: tuple, n: int, seed: int) -> dict:
    _, sampler, schedule, steps = run
    r = evaluate.evaluate_images(setup.model, setup.classifier, setup.dataset, sampler=sampler, schedule=schedule,
                                 steps=steps, n=n, seed=seed, spacing=spacing_of(run))
    r.update(model=setup.name, fd_ratio=r["fd"] / r["fd_baseline"], sha256=setup.card["sha256"],
             classifier_sha256=setup.classifier_card["sha256"], evaluator=EVALUATOR_VERSION,
             date=datetime.date.today().isoformat())
    return r


def measure(setups: dict, n: int, seed: int, path: Path, nfes=NFES) -> dict:
    """{"records": {key: record}, "straightness": {model: S}} for the study's models among ``setups``, computing
    only what the cache ``path`` lacks (written after every record, so an interrupted study resumes)."""
    cache = load_cache(path)
    keys = {run: f"{'|'.join(map(str, run))}|{spacing_of(run)}|n={n}|seed={seed}" for run in planned(setups, nfes)}
    todo = [run for run, key in keys.items()
            if not is_fresh(cache.get(key), setups[run[0]].card["sha256"], setups[run[0]].classifier_card["sha256"])]
    for run in tqdm(todo, desc="NFE study", unit="cell", disable=not todo):
        cache[keys[run]] = _record(setups[run[0]], run, n, seed)
        write_cache(path, cache)
    straight = {}
    for name in dict.fromkeys(run[0] for run in keys):
        s = setups[name]
        key = f"{name}|straightness|steps={STRAIGHTNESS['steps']}|n={STRAIGHTNESS['n']}|seed={seed}"
        if not is_fresh(cache.get(key), s.card["sha256"], s.classifier_card["sha256"]):
            cache[key] = {"straightness": straightness(s.model, **STRAIGHTNESS, seed=seed), "sha256": s.card["sha256"],
                          "classifier_sha256": s.classifier_card["sha256"], "evaluator": EVALUATOR_VERSION}
            write_cache(path, cache)
        straight[name] = cache[key]["straightness"]
    return {"records": {run: cache[key] for run, key in keys.items()}, "straightness": straight}


def lines_of(records: dict) -> dict:
    """{"model · sampler (schedule)": [records by NFE]} over the study's lines (the target's extra settings left
    out unless they are on a line)."""
    out: dict = {}
    for (name, sampler, schedule, _), r in records.items():
        if (sampler, schedule) in STUDY.get(name, ()):
            out.setdefault(f"{name} · {sampler} ({schedule})", []).append(r)
    return {k: sorted(v, key=lambda r: r["nfe"]) for k, v in out.items()}


def within_budget(lines: dict, nfe: int) -> dict:
    """{line: its run with the most network evaluations within ``nfe``}: Heun's steps cost 2 evaluations less one
    (1, 3, 7, 15, …) and a predictor–corrector step 2, so a line's runs sit at or below the budgets, not on them."""
    out = {}
    for line, records in lines.items():
        fits = [r for r in records if r["nfe"] <= nfe]
        if fits:
            out[line] = max(fits, key=lambda r: r["nfe"])
    return out


def separated_best(at_nfe: dict) -> str | None:
    """The line whose FD / real interval lies wholly below every other line's at one NFE, or None when no line's
    does (overlapping intervals are not ranked)."""
    for line, r in at_nfe.items():
        if all(r["fd_ratio_ci"][1] < o["fd_ratio_ci"][0] for other, o in at_nfe.items() if other != line):
            return line
    return None


def plot(lines: dict, path: Path) -> None:
    """FD / real against NFE, log–log, a line per model · sampler with its 95 % interval as a band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    for line, records in lines.items():
        x = [r["nfe"] for r in records]
        ax.plot(x, [r["fd_ratio"] for r in records], marker="o", ms=3, lw=1.4, label=line)
        ax.fill_between(x, [max(r["fd_ratio_ci"][0], 1e-2) for r in records], [r["fd_ratio_ci"][1] for r in records],
                        alpha=0.15)
    ax.axhline(1.0, color="0.4", ls="--", lw=1, label="real held-out")
    ax.set(xscale="log", yscale="log", xlabel="network evaluations (NFE)", ylabel="FD / real [95 % CI]",
           title="quality against network evaluations (lower is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right")
    fig.savefig(path)


def section(study: dict, figures_dir: Path, nfes=NFES) -> list[str]:
    """The page's NFE section: the figure, a table per NFE, the straightness of each model, which line is better
    at few steps where the intervals separate, and the target's verdict."""
    records, straight = study["records"], study["straightness"]
    if not records:
        return []
    lines = lines_of(records)
    path = figures_dir / "quality_vs_nfe.png"
    plot(lines, path)
    out = ["", "## Quality against network evaluations", "",
           "Each model with each of its solvers at NFE " + ", ".join(map(str, nfes)) + " (the most steps within "
           "each count), the same seed and n. Each cell: noise-equivalent σ and FD / real with their 95 % intervals, "
           "and the share of confident digits. "
           "S is the straightness of the model's ODE paths (0: straight; one Euler step is then exact). On the flow "
           "path DDIM is exactly Euler, so a flow model's euler line is its DDIM line.", "",
           f"![quality against NFE](results/{path.name})", "", "| model | straightness S |", "|---|---|"]
    out += [f"| {name} | {s:.4f} |" for name, s in straight.items()]
    out += ["", "| NFE | " + " | ".join(lines) + " | better where the intervals separate |",
            "|---|" + "---|" * (len(lines) + 1)]
    for k in nfes:
        at = within_budget(lines, k)
        cells = [f"{sigma_text(at[line])} · {ratio_text(at[line])} · {100 * at[line]['confident']:.0f} %"
                 + ("" if at[line]["nfe"] == k else f" ({at[line]['nfe']} NFE)") if line in at else "—"
                 for line in lines]
        best = separated_best(at) if len(at) > 1 else None
        out.append(f"| {k} | " + " | ".join(cells) + f" | {best or 'not separated'} |")
    return out + [""] + [line for target in TARGETS if (line := target_line(target, records))] + [""]


def target_verdict(cand: dict, ref: dict, judged: str, least_confident: float) -> str:
    """"met", "not met" or "unresolved": "not worse" fails when the candidate's FD / real interval lies wholly above
    the reference's; "better" needs it wholly below (overlapping intervals are not ranked: unresolved, unless the
    candidate's point is the higher, which is not met). Either needs the confident share."""
    (c_lo, c_hi), (r_lo, r_hi) = cand["fd_ratio_ci"], ref["fd_ratio_ci"]
    if cand["confident"] < least_confident or c_lo > r_hi:
        return "not met"
    if judged == "not worse" or c_hi < r_lo:
        return "met"
    return "unresolved" if cand["fd_ratio"] < ref["fd_ratio"] else "not met"


def target_line(target: tuple, records: dict) -> str | None:
    """A target's verdict line, or None when the study lacks either of its runs."""
    what, cand_run, ref_run, judged, least = target
    cand, ref = records.get(cand_run), records.get(ref_run)
    if not (cand and ref):
        return None
    name = lambda run: f"{run[0]} {run[1]} on {run[2]}, {run[3]} step{'s' * (run[3] != 1)}"  # noqa: E731
    return (f"- Target, {what}: {name(cand_run)}: {sigma_text(cand)}, {ratio_text(cand)}, "
            f"{100 * cand['confident']:.1f} % confident, against {name(ref_run)}: {sigma_text(ref)}, "
            f"{ratio_text(ref)} ({judged} beyond the intervals, ≥ {100 * least:.0f} % confident): "
            f"**{target_verdict(cand, ref, judged, least)}**.")
