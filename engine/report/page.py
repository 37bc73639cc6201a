"""The results page, ``OUT/RESULTS.md``: its tables and its sentences, every one computed from the cells.

The page states the command, n, seed, device and date; the grid it ran, with the samplers' spacings and costs read
from their registry records (``engine.SAMPLERS``); the quality bars' verdicts; and per model its findings, a table
sampler × steps by schedule, the best setting per NFE budget, and every cell with every figure. Nothing in it is
written by hand, so nothing in it can go stale: re-run the command after any change.
"""
from __future__ import annotations

import datetime
import statistics
from collections import Counter

from ..generate import sampler_spec
from ..schedules import get_schedule
from .bars import BARS, judge_bar
from .figures import SAMPLE_GRID_N
from .grid import LONG_RUN_SAMPLERS, SAMPLERS_BY_OBJECTIVE, Grid, grid_samplers
from .text import label, num, pct, secs

NFE_BUDGETS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _findings(records: list[dict]) -> list[str]:
    """Sentences computed from a model's cells: the best cell, the cheapest cell within 1.5/2/3× of the baseline,
    the schedule that wins most often per sampler, where the schedule matters most, and the cost per NFE."""
    best = min(records, key=lambda r: r["fd"])
    lines = [f"Lowest FD: {num(best['fd'])} ({best['fd_ratio']:.2f}× the real-vs-real baseline) with "
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
        lines.append(f"The schedule matters most for {sampler} at {steps} steps: FD {num(lo['fd'])} ({lo['schedule']}) "
                     f"to {num(hi['fd'])} ({hi['schedule']}), {hi['fd'] / lo['fd']:.1f}×.")
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
            text = "" if r is None else f"{num(r['fd'])} ({r['fd_ratio']:.2f}×) · {secs(r['seconds'])}"
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
        out.append(f"| ≤ {b} | {label(r)} | {r['nfe']} | {num(r['fd'])} ({r['fd_ratio']:.2f}×) |")
    return out


def _real(r: dict) -> str:
    """The held-out real images' confident share (the classifier's own ceiling), when the record has it."""
    return f" (real {pct(r['confident_heldout'])})" if r.get("confident_heldout") is not None else ""


def _detail_table(records: list[dict]) -> list[str]:
    out = ["| sampler | schedule | steps | spacing | NFE | FD | baseline | FD / baseline | confident | smallest class "
           "| NN ratio | seconds |", "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in records:
        out.append(f"| {r['sampler']} | {r['schedule']} | {r['steps']} | {r['spacing']} | {r['nfe']} | {num(r['fd'])} "
                   f"| {num(r['fd_baseline'])} | {r['fd_ratio']:.2f} | {pct(r['confident'])}{_real(r)} "
                   f"| {pct(r['coverage_min_class'])} | {r['nn_ratio']:.2f} | {secs(r['seconds'])} |")
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
    for objective, samplers in SAMPLERS_BY_OBJECTIVE.items():
        lines.append(f"- Models trained with the `{objective}` objective: samplers {', '.join(samplers)}; schedules "
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
                     + (f", held-out accuracy {pct(acc)}" if acc is not None else "") + ").")
    lines += ["", "## The grid", "", *grid_lines(grid), *_narrowed_lines(grids or {}, setups), "",
              "![ᾱ_t and log-SNR of the schedules](results/schedules.png)", "",
              "## Quality bars", "",
              f"Verdicts: {count}. Each bar is checked per schedule on the cell of its sampler and step counts with the lowest FD "
              "ratio; it passes when some schedule meets every criterion (NN ratio = median distance of samples to "
              "their nearest training image / the same for held-out images).", "",
              *_bar_table(verdicts), ""]
    for name, records in results.items():
        base = sorted({num(r["fd_baseline"]) for r in records})
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
