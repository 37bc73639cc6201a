"""The results page, ``OUT/RESULTS.md``: its tables and its sentences, every one computed from the cells.

The page states the command, n, seed, device and date; how to read its figures; the grid it ran, with the samplers'
spacings and costs read from their registry records (``engine.SAMPLERS``); the quality bars' verdicts, with each
figure's 95 % interval and "unresolved" where it straddles the limit, and a check that no cell reads better than real
beyond its interval; how far to trust the numbers (the evaluator's validation on known damage, ``trust.trust_lines``);
and per model its real baseline, its findings, a table sampler × steps by schedule, the best setting per NFE budget,
and every cell with every figure (``findings.model_section``). Settings whose intervals overlap are never ranked
(``findings.leaders``): the page lists them as indistinguishable at this n. Nothing in it is written by hand, so
nothing in it can go stale: re-run the command after any change.
"""
from __future__ import annotations

import datetime
from collections import Counter

from ..generate import sampler_spec
from ..schedules import get_schedule
from ..evaluate import NOISE_LADDER
from .bars import BARS, SIGMA_BAR, better_than_real, bounds, judge_bar, stand_ins
from .findings import model_section
from .grid import LONG_RUN_SAMPLERS, SAMPLERS_BY_OBJECTIVE, Grid, grid_samplers
from .ladder import ladder_lines, placements
from .text import kid_text, label, named, pct, spoken_list
from .trust import trust_lines


def _figures_text(figures: list) -> str:
    """"FD/real 1.20 [0.80, 2.10]× ✓ · …": each criterion's figure with its interval, ✓/✗ on the point
    estimate, "unresolved" where the interval straddles the limit."""
    return " · ".join(f"{c.short} {c.show(value, ci)} {'✓' if ok else '✗'}" + (" (unresolved)" if c.unresolved(ci) else "")
                      for c, value, ci, ok in figures)


def _bar_table(verdicts: list[dict], withdrawn: set) -> list[str]:
    out = ["| model | bar | schedules passing | setting judged | figures [95 % CI] | KID ± se (real) | verdict |",
           "|---|---|---|---|---|---|---|"]
    replaced = stand_ins(verdicts)
    for v in verdicts:
        bar = v["bar"]
        if bar.schedules:
            judged = list(v["judged"].values())
            figs = " — ".join(f"{r['schedule']}: {_figures_text(f)}" for r, f in judged)
        else:
            judged = [(v["shown"], v["figures"])] if v["shown"] else []
            figs = _figures_text(v["figures"])
        shown = "; ".join(label(r) for r, _ in judged) or "—"
        kid = "; ".join(f"{kid_text(r)} ({kid_text(r, real=True)})" for r, _ in judged if "kid" in r) or "—"
        passing = ", ".join(v["passing"]) or ("none" if judged else "—")
        verdict = f"**{v['verdict']}**" + (f", unresolved: {', '.join(v['unresolved'])}" if v["unresolved"] else "")
        if bar.model in replaced:
            verdict += f"; met in its place by {replaced[bar.model]}"
        if bar.model in withdrawn:
            verdict += "; not offered in the app (its section says why)"
        out.append(f"| {bar.model} | {bar.describe()} | {passing} | {shown} | {figs or '—'} | {kid} | {verdict} |")
    return out


def _bound_lines(verdicts: list[dict], results: dict) -> list[str]:
    """For each failed bar, what bounds it (``bars.bounds``), and the bar standing in for it where one passes."""
    replaced = stand_ins(verdicts)
    lines = []
    for v in verdicts:
        if v["verdict"] != "fail":
            continue
        lines += [f"- What bounds it: {text}." for _, text in bounds(v, results.get(v["bar"].model, []))]
        model = v["bar"].model
        if model in replaced:
            lines.append(f"- {replaced[model]} meets this bar in {model}'s place: a class-conditional model serves "
                         "unconditional sampling when each sample's class is drawn from the class prior (uniform "
                         "here) and the image sampled given it at w = 1, so the samples follow p(x) = Σ_c p(c) p(x | c) "
                         "(its grid's \"random classes\" cells).")
    return lines


def _not_run_lines(verdicts: list[dict], results: dict) -> list[str]:
    """Why each bar that was not run lacks cells: the page's grid has none of its sampler, steps or schedules."""
    lines = []
    for v in verdicts:
        if v["verdict"] != "not run":
            continue
        bar = v["bar"]
        if bar.model not in results:
            why = f"{bar.model} is not on this page"
        elif v["missing"]:
            why = f"no {bar.sampler} cell at {'/'.join(map(str, bar.steps))} steps on {', '.join(v['missing'])}"
        elif bar.reference:
            why = f"its reference, {bar.reference[0]} at {bar.reference[1]} steps, is not in this page's grid"
        else:
            why = f"no {bar.sampler} cell at {'/'.join(map(str, bar.steps)) or 'any'} steps in this page's grid"
        lines.append(f"- Not run: {bar.model}, {bar.describe()} — {why}.")
    return lines


def _better_than_real_line(results: dict) -> str:
    """The page's check that no cell reads better than real beyond its interval (``bars.better_than_real``)."""
    total = sum(map(len, results.values()))
    bad = better_than_real(results)
    if not bad:
        return (f"No cell reads better than real beyond its interval: the FD / real interval of every one of the "
                f"{total} cells reaches 1 or lies above it.")
    return (f"**{len(bad)} of {total} cells read better than real beyond their interval** (the interval's upper end "
            "is below 1), which real data cannot do: the evaluator misjudges them — "
            + "; ".join(f"{model}: {named(r)}" for model, r in bad) + ".")


FLOW_STEPPERS = ("euler", "heun")  # the flow ODE's own steppers (engine/samplers.py), in t


def _long_runs(grid: Grid, long_: list[int]) -> str:
    """Which samplers run the long step counts and why the others do not, with network evaluations (per step and
    per run, at their default options) from the samplers' registry records."""
    steps = long_[0]
    specs = {name: sampler_spec(name) for name in grid_samplers()}
    nfe = {name: spec.nfe(steps) for name, spec in specs.items()}
    own = sorted({nfe[name] for name in LONG_RUN_SAMPLERS})
    others = [name for name in specs if name not in LONG_RUN_SAMPLERS]
    costly = sorted((name for name in others if nfe[name] > steps), key=nfe.get)
    few_step = [name for name in others if nfe[name] <= steps]
    where = "" if grid.long_run_schedules is None else f" on {', '.join(grid.long_run_schedules)}"
    text = (f"; {', '.join(map(str, long_))} only for {', '.join(LONG_RUN_SAMPLERS)}{where} ({'/'.join(map(str, own))} "
            f"NFE at {steps} steps, and run that long in their papers)")
    reasons = []
    if costly:
        per_step = [specs[name].evals_per_step(specs[name].options) for name in costly]
        reasons.append(f"{spoken_list(costly)} take {spoken_list(per_step)} network evaluations per step, so {steps} steps would "
                       f"cost {spoken_list(nfe[name] for name in costly)} NFE")
    solvers = [name for name in few_step if name not in FLOW_STEPPERS]
    if solvers:
        reasons.append(f"{spoken_list(solvers)} {'is' if len(solvers) == 1 else 'are'} made for 10–20 steps")
    flow = [name for name in few_step if name in FLOW_STEPPERS]
    if flow:
        reasons.append(f"{spoken_list(flow)} {'steps' if len(flow) == 1 else 'step'} along the flow ODE, whose paths "
                       "flow matching makes nearly straight, so few steps suffice (the NFE study below runs 1 to 128)")
    return text + (": " + ", and ".join(reasons) if reasons else "") + "."


def _spacing_lines(grid: Grid) -> list[str]:
    """The spacing of each sampler (its registry record's, which generate and eval use when given none), and for a
    spacing whose fewest-step run does not start at t = T − 1, how far from pure noise its first level is."""
    by_spacing = {}
    for name in grid_samplers():
        by_spacing.setdefault(sampler_spec(name).spacing, []).append(name)
    lines = ["- Timestep spacing: each sampler's own, the default of `generate` and `eval` — "
             + "; ".join(f"{spacing} for {', '.join(names)}" for spacing, names in by_spacing.items())
             + ". Every sampler runs with its default options (in results/cells.json with each cell)."]
    fewest = min(grid.steps)
    reference = get_schedule("linear")
    final = reference.T - 1
    for spacing in by_spacing:
        first = reference.timesteps(fewest, spacing)[0].item()
        if first == final:
            continue
        levels = ", ".join(f"{s} {get_schedule(s).alphas_cumprod[first].item():.1e}" for s in grid.all_schedules)
        last = max(get_schedule(s).alphas_cumprod[-1].item() for s in grid.all_schedules)
        lines.append(f"- With {spacing} spacing a {fewest}-step run starts at t = {first}, not {final}, from x_T ~ N(0, I); "
                     f"ᾱ_t there is {levels} (at t = {final} every one is ≤ {last:.0e}): where it is far from 0 the start "
                     "does not match the noise level, which costs FD at few steps.")
    return lines


def grid_lines(grid: Grid) -> list[str]:
    """The page's description of the grid: samplers and schedules per objective, step counts, spacings."""
    short = [s for s in grid.steps if s < grid.long_run]
    long_ = [s for s in grid.steps if s >= grid.long_run]
    lines = []
    for objective in grid.schedules:
        lines.append(f"- Models trained with the `{objective}` objective: samplers {', '.join(grid.family(objective))}; schedules "
                     f"{', '.join(grid.schedules[objective])}.")
    lines.append(f"- Steps {', '.join(map(str, short))}" + (_long_runs(grid, long_) if long_ else "."))
    return lines + _spacing_lines(grid)


def _narrowed_lines(grids: dict, setups: dict) -> list[str]:
    lines = []
    for name, g in grids.items():
        objective = setups[name].card["objective"] if name in setups else None
        schedules = g.schedules[objective] if objective else g.all_schedules
        long_ = [s for s in g.steps if s >= g.long_run]
        where = "" if not long_ or g.long_run_schedules is None else f" ({', '.join(map(str, long_))} on {', '.join(g.long_run_schedules)})"
        samplers = "" if g.samplers is None or objective is None else f"; samplers {', '.join(g.family(objective))}"
        lines.append(f"- **{name}** runs a narrower grid: steps {', '.join(map(str, g.steps))}{where}; schedules "
                     f"{', '.join(schedules)}{samplers}.")
    return lines


HOW_TO_READ = [
    "How to read the figures (engine/evaluate.py defines them):",
    "",
    "- **Noise-equivalent σ**, the headline figure: the σ of Gaussian noise added to real held-out images (on the "
    "[-1, 1] pixel scale) that scores the same FD as the cell, read off a ladder of noised real images ("
    + ", ".join(f"{sigma:g}" for sigma in NOISE_LADDER if sigma <= 0.2) + ", …; the ladder and where the models sit "
    "are under How far to trust these numbers). 0 reads as real; 0.05 looks like real images with faint grain. "
    "Unlike a ratio of FDs it means the same whichever feature network measures it, so the bars are set in it: "
    + ", ".join(f"{dataset} σ ≤ {limit:g}" for dataset, limit in SIGMA_BAR.items())
    + " (MNIST's 500 held-out images resolve less).",
    "- **FD** is the Fréchet distance between Gaussians fitted to features of our own classifier (not "
    "Inception's): the n samples' against the dataset's *whole training split*.",
    "- **Real** (the baseline) is the same FD for n *held-out real images* against the same training split — "
    "the mean over disjoint n-image held-out sets where the test split holds several. FD has a finite-sample "
    "bias, so \"as good as real\" reads this value at this n, not 0.",
    "- **FD / real** (the FD ratio): 1 reads as real, 2 twice as far from the training data as real images. "
    "Every figure comes with its 95 % bootstrap interval [lo, hi]; a ratio below 1 whose interval reaches 1 "
    "reads \"as real\", not better. Settings are compared by their FD intervals (the real baseline divides "
    "every cell of a model alike); where the intervals overlap the page calls them indistinguishable at this n "
    "and names no winner.",
    "- **KID** is the unbiased squared MMD of the features (cubic polynomial kernel): ≈ 0 for real data at any "
    "n, so small negative values are noise; shown ± its standard error, beside the held-out images' KID.",
    "- **confident**: share of images the classifier gives > 0.9 to one class, beside held-out real images' "
    "share; a legibility check, not a quality figure (see How far to trust these numbers).",
    "- NFE = network evaluations per sample; seconds = wall time to sample all n.",
]

HOW_BARS_ARE_JUDGED = (
    "Each bar is checked per schedule on the cell of its sampler and step counts with the "
    "lowest σ (ties broken by FD) among those meeting every criterion, else among them all (a bar over several step "
    "counts asks that some step count meet it); it passes when some schedule meets every criterion, or, "
    "for a bar that lists schedules, when each listed schedule does. A criterion is met on its point estimate; "
    "\"unresolved\" marks one whose 95 % interval straddles the limit, so the verdict on it could turn with another seed "
    "(NN ratio = median distance of samples to their nearest training image / the same for held-out "
    "images).")


def _head_lines(command: str, results: dict, n: int, seed: int) -> list[str]:
    """The title, how the page was made, and how to read its figures."""
    devices = sorted({r["device"] for rs in results.values() for r in rs})
    return ["# Results", "",
            f"Generated by `{command}` on {datetime.date.today().isoformat()}; device: {', '.join(devices) or 'none'}; "
            f"n = {n} samples per cell against n held-out images; seed {seed} (every cell of a model starts from the "
            "same x_T). Do not edit by hand: re-run the command. Finished cells are cached in `results/cells.json` "
            "and reused while the model's and the classifier's sha256 and the evaluator's version are unchanged.",
            "", *HOW_TO_READ, ""]


def _model_lines(models: list[str], setups: dict, skipped: dict) -> list[str]:
    """"## Models": each model's weights, training and classifier, or why it was not evaluated."""
    lines = ["## Models", ""]
    for name in models:
        if name in skipped:
            lines.append(f"- **{name}**: not evaluated — {skipped[name]}.")
            continue
        s = setups[name]
        acc = s.classifier_card.get("metrics", {}).get("held_out_accuracy")
        lines.append(f"- **{name}**: weights sha256 `{s.card['sha256'][:12]}…`, trained "
                     f"{s.card.get('training', {}).get('steps', '?')} steps on {s.dataset} (objective `{s.card['objective']}`); "
                     f"classifier {s.classifier_name} (`{s.classifier_card['sha256'][:12]}…`"
                     + (f", held-out accuracy {pct(acc)}" if acc is not None else "") + ").")
    return lines


def _grid_section(grid: Grid, grids: dict, setups: dict) -> list[str]:
    """"## The grid": samplers, schedules and steps, the narrower grids, how conditional models' cells sample."""
    conditional = [name for name, s in setups.items() if s.conditional]
    random_classes = [f"- Class-conditional models ({', '.join(conditional)}) sample every cell with random classes: "
                      "each sample's class drawn uniformly from the cell's seed (the training sets' class prior), then "
                      "the image given it at w = 1, so the cells sample p(x) = Σ_c p(c) p(x | c) like the unconditional "
                      "models'. Their null class ∅ (w = 0) is measured in the guidance sweep below."] if conditional else []
    return ["## The grid", "", *grid_lines(grid), *_narrowed_lines(grids, setups), *random_classes, "",
            "![ᾱ_t and log-SNR of the schedules](results/schedules.png)", ""]


def _verdict_count(verdicts: list[dict]) -> str:
    """"3 pass, 1 fail (fashion-ddpm's met in its place by fashion-cond)": the bars' verdicts counted."""
    count = ", ".join(f"{c} {verdict}" for verdict, c in Counter(v["verdict"] for v in verdicts).items())
    replaced = [f"{model}'s met in its place by {stand_in}" for model, stand_in in stand_ins(verdicts).items()
                if any(v["bar"].model == model and v["verdict"] == "fail" for v in verdicts)]
    return count + (f" ({'; '.join(replaced)})" if replaced else "")


def _bars_section(results: dict, n: int, withdrawn: set) -> list[str]:
    """"## Quality bars": each bar's verdict with its figures, what bounds a failed one, why one was not run, and the
    check that no cell reads better than real."""
    verdicts = [judge_bar(b, results.get(b.model, []), n) for b in BARS]
    return ["## Quality bars", "", f"Verdicts: {_verdict_count(verdicts)}. {HOW_BARS_ARE_JUDGED}", "",
            *_bar_table(verdicts, withdrawn), "", *_bound_lines(verdicts, results), *_not_run_lines(verdicts, results),
            f"- {_better_than_real_line(results)}", ""]


def render_page(*, command: str, grid: Grid, n: int, seed: int, results: dict, setups: dict, skipped: dict,
                samples: dict, models: list[str], grids: dict | None = None, validation: dict | None = None) -> str:
    """The markdown of RESULTS.md (figure links relative to it, under results/); ``validation`` {dataset: rows of
    ``validation.validate``} fills "How far to trust these numbers"."""
    lines = [*_head_lines(command, results, n, seed), *_model_lines(models, setups, skipped), "",
             *_grid_section(grid, grids or {}, setups), *_bars_section(results, n, {name for name, s in setups.items() if s.card.get("withdrawn")}), *trust_lines(validation or {}),
             *ladder_lines(placements(results, {name: s.dataset for name, s in setups.items()}, n))]
    for name, records in results.items():
        withdrawn = setups[name].card.get("withdrawn") if name in setups else None
        lines += model_section(name, records, n, seed, samples[name], withdrawn)
    return "\n".join(lines)
