"""The results page, ``OUT/RESULTS.md``: its tables and its sentences, every one computed from the cells.

The page states the command, n, seed, device and date; how to read its figures; the grid it ran, with the samplers'
spacings and costs read from their registry records (``engine.SAMPLERS``); the quality bars' verdicts, with each
figure's 95 % interval and "unresolved" where it straddles the limit, and a check that no cell reads better than real
beyond its interval; how far to trust the numbers (the evaluator's validation on known damage, ``trust_lines``); and
per model its real baseline, its findings, a table sampler × steps by schedule, the best setting per NFE budget, and
every cell with every figure. Settings whose intervals overlap are never ranked (``_leaders``): the page lists them as
indistinguishable at this n. Nothing in it is written by hand, so nothing in it can go stale: re-run the command after
any change.
"""
from __future__ import annotations

import datetime
import statistics
from collections import Counter

from ..validation import validation_markdown
from ..generate import sampler_spec
from ..schedules import get_schedule
from .bars import BARS, better_than_real, bounds, judge_bar, stand_ins
from .figures import SAMPLE_GRID_N
from .grid import LONG_RUN_SAMPLERS, SAMPLERS_BY_OBJECTIVE, Grid, grid_samplers
from .text import interval, label, num, overlap, pct, secs

NFE_BUDGETS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _leaders(records: list[dict]) -> list[dict]:
    """The lowest-FD record first, then every other record whose FD interval overlaps its interval, by FD: the
    settings the data cannot order at this n (one record when the lowest is resolved).

    Settings of one model are compared by FD's own interval, not the ratio's: every cell of a model is divided by
    the same real baseline (the same held-out sets), so the baseline's uncertainty is common to them and cannot
    reorder them, while it widens each ratio's interval (on MNIST, one 500-image held-out set, by a factor of
    about 2). Two settings are called different only when their FD intervals do not overlap, a conservative test
    (two 95 % intervals that just touch correspond to a difference significant well beyond 5 %)."""
    best = min(records, key=lambda r: r["fd"])
    return [best] + sorted((r for r in records if r is not best and overlap(r["fd_ci"], best["fd_ci"])),
                           key=lambda r: r["fd"])


def _ratio(r: dict) -> str:
    """"1.23 [0.80, 2.10]×": a cell's FD / real with its 95 % interval."""
    return interval(r["fd_ratio"], r["fd_ratio_ci"]) + "×"


def _named(r: dict) -> str:
    return f"{label(r)} ({_ratio(r)})"


def _lowest(records: list[dict], n: int, what: str) -> str:
    """"what: SETTING (ratio), its interval clear of the rest" or, where intervals overlap, the indistinguishable
    settings listed."""
    leaders = _leaders(records)
    best = leaders[0]
    if len(leaders) == 1:
        rest = " (its FD interval clears every other setting's)" if len(records) > 1 else ""
        return f"{what}: {_named(best)}, {best['nfe']} NFE{rest}."
    return (f"{what}: {len(leaders)} settings are indistinguishable at n = {n} (their FD intervals overlap the "
            f"lowest's) — " + "; ".join(_named(r) for r in leaders) + ".")


def _findings(records: list[dict], n: int) -> list[str]:
    """Sentences computed from a model's cells: the lowest FD (or the settings indistinguishable from it), the
    fewest NFE within 1.5/2/3× real, the best schedule per sampler where the intervals separate the schedules,
    the largest schedule effect the intervals resolve, and the cost per NFE. Nothing is ranked on overlapping
    intervals (``_leaders``)."""
    lines = [_lowest(records, n, "Lowest FD")]
    for k in (1.5, 2, 3):
        hits = sorted((r for r in records if r["fd_ratio"] <= k), key=lambda r: r["fd"])
        if not hits:
            lines.append(f"No setting comes within {k:g}× real.")
            continue
        fewest = min(r["nfe"] for r in hits)
        text = f"Fewest NFE within {k:g}× real: {fewest} — " + "; ".join(_named(r) for r in hits if r["nfe"] == fewest)
        sure = [r for r in hits if r["fd_ratio_ci"][1] <= k]
        if all(r["fd_ratio_ci"][1] > k for r in hits if r["nfe"] == fewest):
            text += (f"; unresolved: the interval reaches past {k:g}×" + (
                f" (the fewest NFE whose whole interval lies within {k:g}× is {min(r['nfe'] for r in sure)})"
                if sure else f", as every such setting's does"))
        lines.append(text + ".")
    groups = {}
    for r in records:
        groups.setdefault((r["sampler"], r["steps"]), []).append(r)
    groups = {g: rs for g, rs in groups.items() if len(rs) > 1}
    if groups:
        per_sampler = {}
        for (sampler, steps), rs in groups.items():
            leaders = _leaders(rs)
            verdict = (leaders[0]["schedule"] if len(leaders) == 1
                       else "indistinguishable (" + ", ".join(r["schedule"] for r in leaders) + ")")
            per_sampler.setdefault(sampler, []).append(f"{verdict} at {steps}")
        lines.append("Best schedule per sampler, where the FD intervals separate the schedules — "
                     + "; ".join(f"{sampler}: {', '.join(parts)}" for sampler, parts in per_sampler.items()) + ".")
        resolved = {g: (min(rs, key=lambda r: r["fd"]), max(rs, key=lambda r: r["fd"])) for g, rs in groups.items()}
        resolved = {g: (lo, hi) for g, (lo, hi) in resolved.items() if not overlap(lo["fd_ci"], hi["fd_ci"])}
        if resolved:
            (sampler, steps), (lo, hi) = max(resolved.items(), key=lambda kv: kv[1][1]["fd"] / kv[1][0]["fd"])
            lines.append(f"The schedule matters most for {sampler} at {steps} steps: FD/real {_ratio(lo)} "
                         f"({lo['schedule']}) against {_ratio(hi)} ({hi['schedule']}), FD {hi['fd'] / lo['fd']:.1f}× higher.")
        else:
            lines.append(f"No schedule's FD interval separates from another's at the same sampler and steps (n = {n}).")
    per_nfe = statistics.median(r["seconds"] / (r["nfe"] * r["n"]) for r in records)
    devices = ", ".join(sorted({r["device"] for r in records}))
    lines.append(f"Sampling took {1000 * per_nfe:.3g} ms per image per network evaluation (median over cells; {devices}).")
    return lines


def _cross_table(records: list[dict]) -> list[str]:
    """Rows sampler × steps, a column per schedule: FD / real [95 % CI] · seconds; in bold the row's lowest FD when
    its interval clears the row's others (``_leaders``), else nothing is bold."""
    schedules = list(dict.fromkeys(r["schedule"] for r in records))
    rows = {}
    for r in records:
        rows.setdefault((r["sampler"], r["steps"]), {})[r["schedule"]] = r
    out = ["| sampler | steps | NFE | " + " | ".join(schedules) + " |", "|---|--:|--:|" + "--:|" * len(schedules)]
    for (sampler, steps), by_schedule in rows.items():
        leaders = _leaders(list(by_schedule.values()))
        best = leaders[0] if len(leaders) == 1 and len(by_schedule) > 1 else None
        nfe = "/".join(str(v) for v in sorted({r["nfe"] for r in by_schedule.values()}))
        cells = []
        for s in schedules:
            r = by_schedule.get(s)
            text = "" if r is None else f"{_ratio(r)} · {secs(r['seconds'])}"
            cells.append(f"**{text}**" if r is best else text)
        out.append(f"| {sampler} | {steps} | {nfe} | " + " | ".join(cells) + " |")
    return out


def _budget_table(records: list[dict]) -> list[str]:
    """Per NFE budget, the lowest-FD setting within it, with the settings its interval cannot separate from it."""
    nfes = [r["nfe"] for r in records]
    budgets = [b for b in NFE_BUDGETS if b >= min(nfes)]
    budgets = budgets[: next((i + 1 for i, b in enumerate(budgets) if b >= max(nfes)), len(budgets))]
    out = ["| NFE budget | lowest FD | NFE | FD / real [95 % CI] | indistinguishable from it at this n |",
           "|--:|---|--:|--:|---|"]
    for b in budgets:
        best, *tied = _leaders([r for r in records if r["nfe"] <= b])
        out.append(f"| ≤ {b} | {label(best)} | {best['nfe']} | {_ratio(best)} | "
                   + ("; ".join(_named(r) for r in tied) or "none") + " |")
    return out


def _real(r: dict) -> str:
    """The held-out real images' confident share (the classifier's own ceiling), when the record has it."""
    return f" (real {pct(r['confident_heldout'])})" if r.get("confident_heldout") is not None else ""


def _kid(r: dict, real: bool = False) -> str:
    """KID ± its standard error (×1 as the evaluator reports it), of the samples or of the held-out images."""
    kid, se = (r["kid_real"], r["kid_real_std"]) if real else (r["kid"], r["kid_std"])
    return f"{num(kid)} ± {se:.2g}"


def _detail_table(records: list[dict]) -> list[str]:
    out = ["| sampler | schedule | steps | spacing | NFE | FD [95 % CI] | FD / real [95 % CI] | KID ± se "
           "| confident [95 % CI] | smallest class | NN ratio [95 % CI] | seconds |",
           "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in records:
        conf = interval(100 * r["confident"], [100 * v for v in r["confident_ci"]], 1)
        out.append(f"| {r['sampler']} | {r['schedule']} | {r['steps']} | {r['spacing']} | {r['nfe']} "
                   f"| {interval(r['fd'], r['fd_ci'])} | {_ratio(r)} | {_kid(r)} | {conf} %{_real(r)} "
                   f"| {pct(r['coverage_min_class'])} | {interval(r['nn_ratio'], r['nn_ratio_ci'])} "
                   f"| {secs(r['seconds'])} |")
    return out


def _figures_text(figures: list) -> str:
    """"FD/real 1.20 [0.80, 2.10]× ✓ · …": each criterion's figure with its interval, ✓/✗ on the point
    estimate, "unresolved" where the interval straddles the limit."""
    return " · ".join(f"{c.short} {c.show(value, ci)} {'✓' if ok else '✗'}" + (" (unresolved)" if c.unresolved(ci) else "")
                      for c, value, ci, ok in figures)


def _bar_table(verdicts: list[dict]) -> list[str]:
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
        kid = "; ".join(f"{_kid(r)} ({_kid(r, real=True)})" for r, _ in judged if "kid" in r) or "—"
        passing = ", ".join(v["passing"]) or ("none" if judged else "—")
        verdict = f"**{v['verdict']}**" + (f", unresolved: {', '.join(v['unresolved'])}" if v["unresolved"] else "")
        if bar.model in replaced:
            verdict += f"; met in its place by {replaced[bar.model]}"
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
            + "; ".join(f"{model}: {_named(r)}" for model, r in bad) + ".")


def _and(items) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [str(x) for x in items]
    return " and ".join(filter(None, (", ".join(items[:-1]), items[-1])))


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
        reasons.append(f"{_and(costly)} take {_and(per_step)} network evaluations per step, so {steps} steps would "
                       f"cost {_and(nfe[name] for name in costly)} NFE")
    if few_step:
        reasons.append(f"{_and(few_step)} {'is' if len(few_step) == 1 else 'are'} made for 10–20 steps")
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


def _baseline_line(records: list[dict], n: int) -> str:
    """The model's real baseline as its cells state it: FD of n held-out images against the training split (one
    value for every cell of a model), with its interval, the number of held-out sets, KID and confident share."""
    lines = []
    for r in {(r["fd_real"], r["heldout_sets"]): r for r in records}.values():
        lines.append(f"real held-out images at n = {n}: FD {interval(r['fd_real'], r['fd_real_ci'])} against the "
                     f"{r['reference_n']} training images ("
                     + (f"the mean over {r['heldout_sets']} disjoint held-out sets" if r["heldout_sets"] > 1
                        else "one held-out set: the test split holds no second") + f"), KID {_kid(r, real=True)}, confident "
                     f"{pct(r['confident_heldout'])}")
    return "Baseline: " + "; ".join(lines) + "."


def _separable(rows: list[dict]) -> list[str]:
    """The corruptions whose FD interval overlaps the real row's: damage the instrument cannot tell from real
    images at this n (compared by FD, as settings are: ``_leaders``)."""
    real = rows[0]
    return [r["corruption"] for r in rows[1:] if overlap(r["fd_ci"], real["fd_ci"])]


def _fd(r: dict) -> str:
    return f"FD {interval(r['fd'], r['fd_ci'])} ({_ratio(r)} real)"


def trust_lines(validation: dict) -> list[str]:
    """The page's "How far to trust these numbers": the evaluator's validation on known damage to real held-out
    images (``validation.validate`` and ``validation.validation_markdown``, one table per dataset with its verdicts),
    then its weak spots, each computed from those rows: the damage it cannot separate from real images at that n,
    the confident share's failure as a quality figure (images that are half noise read as confident as real ones),
    and a baseline of a single held-out set."""
    lines = ["## How far to trust these numbers", "",
             "Before it judges the models, the evaluator is tested on known damage to real held-out images: real "
             "images should read 0.8–1.25× real, the damage should rank real < noise σ 0.1 < noise σ 0.3 < half "
             "noise (half the images replaced by uniform noise), and a 5×5 blur should read worse than noise σ 0.1. "
             "The damaged images are scored against the other held-out images as the baseline, exactly as a model's "
             "samples are (`engine.validation.validate`; cached in `results/validation.json`).", ""]
    if not validation:
        return lines + ["No dataset was validated: no model on this page was evaluated.", ""]
    for dataset, rows in validation.items():
        lines.append(validation_markdown(dataset, rows))
    lines += ["Weak spots:", ""]
    for dataset, rows in validation.items():
        n = rows[0]["n"]
        by = {r["corruption"]: r for r in rows}
        mild = _separable(rows)
        if mild:
            lines.append(f"- {dataset}, n = {n}: {_and(mild)} {'is' if len(mild) == 1 else 'are'} not separable from "
                         f"real images (the FD intervals overlap: real {_fd(by['real'])}, "
                         + ", ".join(f"{k} {_fd(by[k])}" for k in mild) + "). A model whose samples carry damage "
                         "this mild can read as real here.")
        else:
            lines.append(f"- {dataset}, n = {n}: every damage's FD interval clears real images' ({_fd(by['real'])}).")
        if by["real"]["heldout_sets"] == 1:
            lines.append(f"- {dataset}: the real baseline is a single held-out set (the test split holds too few "
                         "images for more), so every FD / real interval carries that one set's spread and is wide.")
        half, real = by.get("half noise"), by["real"]
        if half is not None and half["confident_ci"][1] >= real["confident"]:
            lines.append(f"- {dataset}: the confident share is not a quality figure: images that are half uniform "
                         f"noise read {pct(half['confident'])} confident against {pct(real['confident'])} for "
                         "real ones (the classifier is sure of many noise images); it is a check that samples are "
                         "legible, to read beside FD, never instead of it.")
    lines += ["- The bootstrap intervals of FD near real data are wide on the safe side: for one held-out set the "
              "bootstrap overstates the spread that disjoint real sets show (engine/evaluate.py, `score_images`), "
              "so \"indistinguishable\" on this page may hide a real difference, but a resolved difference is real.",
              "- The features are our own small classifier's, not Inception's: figures here compare settings and "
              "models of this repository and are not comparable with published FIDs.", ""]
    return lines


def render_page(*, command: str, grid: Grid, n: int, seed: int, results: dict, setups: dict, skipped: dict,
                samples: dict, models: list[str], grids: dict | None = None, validation: dict | None = None) -> str:
    """The markdown of RESULTS.md (figure links relative to it, under results/); ``validation`` {dataset: rows of
    ``validation.validate``} fills "How far to trust these numbers"."""
    devices = sorted({r["device"] for rs in results.values() for r in rs})
    verdicts = [judge_bar(b, results.get(b.model, []), n) for b in BARS]
    count = ", ".join(f"{c} {verdict}" for verdict, c in Counter(v["verdict"] for v in verdicts).items())
    replaced = [f"{model}'s met in its place by {stand_in}" for model, stand_in in stand_ins(verdicts).items()
                if any(v["bar"].model == model and v["verdict"] == "fail" for v in verdicts)]
    count += f" ({'; '.join(replaced)})" if replaced else ""
    conditional = [name for name, s in setups.items() if s.conditional]
    lines = [
        "# Results",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}; device: {', '.join(devices) or 'none'}; "
        f"n = {n} samples per cell against n held-out images; seed {seed} (every cell of a model starts from the "
        "same x_T). Do not edit by hand: re-run the command. Finished cells are cached in `results/cells.json` "
        "and reused while the model's and the classifier's sha256 and the evaluator's version are unchanged.",
        "",
        "How to read the figures (engine/evaluate.py defines them):",
        "",
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
                     + (f", held-out accuracy {pct(acc)}" if acc is not None else "") + ").")
    lines += ["", "## The grid", "", *grid_lines(grid), *_narrowed_lines(grids or {}, setups),
              *([f"- Class-conditional models ({', '.join(conditional)}) sample every cell with random classes: each "
                 "sample's class drawn uniformly from the cell's seed (the training sets' class prior), then the image "
                 "given it at w = 1, so the cells sample p(x) = Σ_c p(c) p(x | c) like the unconditional models'. "
                 "Their null class ∅ (w = 0) is measured in the guidance sweep below."] if conditional else []), "",
              "![ᾱ_t and log-SNR of the schedules](results/schedules.png)", "",
              "## Quality bars", "",
              f"Verdicts: {count}. Each bar is checked per schedule on the cell of its sampler and step counts with the "
              "lowest FD ratio among those meeting every criterion, else among them all (a bar over several step "
              "counts asks that some step count meet it); it passes when some schedule meets every criterion, or, "
              "for a bar that lists schedules, when each listed schedule does. A criterion is met on its point estimate; \"unresolved\" "
              "marks one whose 95 % interval straddles the limit, so the verdict on it could turn with another seed "
              "(NN ratio = median distance of samples to their nearest training image / the same for held-out "
              "images).", "",
              *_bar_table(verdicts), "", *_bound_lines(verdicts, results), *_not_run_lines(verdicts, results),
              f"- {_better_than_real_line(results)}", "",
              *trust_lines(validation or {})]
    for name, records in results.items():
        best = samples[name]
        lines += [
            f"## {name}", "",
            _baseline_line(records, n), "",
            *[f"- {x}" for x in _findings(records, n)], "",
            "Each cell: FD / real [95 % CI] · seconds; bold: the row's lowest FD when its interval clears the row's "
            "others (none bold: the schedules are indistinguishable at this n).", "",
            *_cross_table(records), "",
            *_budget_table(records), "",
            f"![FD against NFE for {name}](results/fd_vs_nfe_{name}.png)", "",
            f"![samples from {name}](results/samples_{name}.png)", "",
            f"{SAMPLE_GRID_N} samples from the cell with the lowest FD point estimate, {label(best)} "
            f"({best['spacing']} spacing), seed {seed}.", "",
            "<details><summary>Every cell with every figure</summary>", "",
            *_detail_table(records), "", "</details>", "",
        ]
    return "\n".join(lines)
