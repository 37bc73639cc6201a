"""A model's section of the results page: its real baseline, the findings computed from its cells, the table sampler
× steps by schedule, the best setting per NFE budget, and every cell with every figure. Settings whose intervals
overlap are never ranked (``leaders``): the section lists them as indistinguishable at this n.
"""
from __future__ import annotations

import statistics

from .figures import SAMPLE_GRID_N
from .text import interval, kid_text, label, named, overlap, pct, ratio_text, secs, sigma_text

NFE_BUDGETS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def leaders(records: list[dict]) -> list[dict]:
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


def lowest(records: list[dict], n: int, what: str) -> str:
    """"what: SETTING (ratio), its interval clear of the rest" or, where intervals overlap, the indistinguishable
    settings listed."""
    tied = leaders(records)
    best = tied[0]
    if len(tied) == 1:
        rest = " (its FD interval clears every other setting's)" if len(records) > 1 else ""
        return f"{what}: {named(best)}, {best['nfe']} NFE{rest}."
    return (f"{what}: {len(tied)} settings are indistinguishable at n = {n} (their FD intervals overlap the "
            f"lowest's) — " + "; ".join(named(r) for r in tied) + ".")


def findings(records: list[dict], n: int) -> list[str]:
    """Sentences computed from a model's cells: the lowest FD (or the settings indistinguishable from it), the
    fewest NFE within 1.5/2/3× real, the best schedule per sampler where the intervals separate the schedules,
    the largest schedule effect the intervals resolve, and the cost per NFE. Nothing is ranked on overlapping
    intervals (``leaders``)."""
    lines = [lowest(records, n, "Lowest FD")]
    for k in (1.5, 2, 3):
        hits = sorted((r for r in records if r["fd_ratio"] <= k), key=lambda r: r["fd"])
        if not hits:
            lines.append(f"No setting comes within {k:g}× real.")
            continue
        fewest = min(r["nfe"] for r in hits)
        text = f"Fewest NFE within {k:g}× real: {fewest} — " + "; ".join(named(r) for r in hits if r["nfe"] == fewest)
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
            tied = leaders(rs)
            verdict = (tied[0]["schedule"] if len(tied) == 1
                       else "indistinguishable (" + ", ".join(r["schedule"] for r in tied) + ")")
            per_sampler.setdefault(sampler, []).append(f"{verdict} at {steps}")
        lines.append("Best schedule per sampler, where the FD intervals separate the schedules — "
                     + "; ".join(f"{sampler}: {', '.join(parts)}" for sampler, parts in per_sampler.items()) + ".")
        resolved = {g: (min(rs, key=lambda r: r["fd"]), max(rs, key=lambda r: r["fd"])) for g, rs in groups.items()}
        resolved = {g: (lo, hi) for g, (lo, hi) in resolved.items() if not overlap(lo["fd_ci"], hi["fd_ci"])}
        if resolved:
            (sampler, steps), (lo, hi) = max(resolved.items(), key=lambda kv: kv[1][1]["fd"] / kv[1][0]["fd"])
            lines.append(f"The schedule matters most for {sampler} at {steps} steps: FD/real {ratio_text(lo)} "
                         f"({lo['schedule']}) against {ratio_text(hi)} ({hi['schedule']}), FD {hi['fd'] / lo['fd']:.1f}× higher.")
        else:
            lines.append(f"No schedule's FD interval separates from another's at the same sampler and steps (n = {n}).")
    per_nfe = statistics.median(r["seconds"] / (r["nfe"] * r["n"]) for r in records)
    devices = ", ".join(sorted({r["device"] for r in records}))
    lines.append(f"Sampling took {1000 * per_nfe:.3g} ms per image per network evaluation (median over cells; {devices}).")
    return lines


def cross_table(records: list[dict]) -> list[str]:
    """Rows sampler × steps, a column per schedule: σ [95 % CI] · FD / real [95 % CI] · seconds; in bold the row's lowest FD when
    its interval clears the row's others (``leaders``), else nothing is bold."""
    schedules = list(dict.fromkeys(r["schedule"] for r in records))
    rows = {}
    for r in records:
        rows.setdefault((r["sampler"], r["steps"]), {})[r["schedule"]] = r
    out = ["| sampler | steps | NFE | " + " | ".join(schedules) + " |", "|---|--:|--:|" + "--:|" * len(schedules)]
    for (sampler, steps), by_schedule in rows.items():
        tied = leaders(list(by_schedule.values()))
        best = tied[0] if len(tied) == 1 and len(by_schedule) > 1 else None
        nfe = "/".join(str(v) for v in sorted({r["nfe"] for r in by_schedule.values()}))
        cells = []
        for s in schedules:
            r = by_schedule.get(s)
            text = "" if r is None else f"{sigma_text(r)} · {ratio_text(r)} · {secs(r['seconds'])}"
            cells.append(f"**{text}**" if r is best else text)
        out.append(f"| {sampler} | {steps} | {nfe} | " + " | ".join(cells) + " |")
    return out


def budget_table(records: list[dict]) -> list[str]:
    """Per NFE budget, the lowest-FD setting within it, with the settings its interval cannot separate from it."""
    nfes = [r["nfe"] for r in records]
    budgets = [b for b in NFE_BUDGETS if b >= min(nfes)]
    budgets = budgets[: next((i + 1 for i, b in enumerate(budgets) if b >= max(nfes)), len(budgets))]
    out = ["| NFE budget | lowest FD | NFE | FD / real [95 % CI] | indistinguishable from it at this n |",
           "|--:|---|--:|--:|---|"]
    for b in budgets:
        best, *tied = leaders([r for r in records if r["nfe"] <= b])
        out.append(f"| ≤ {b} | {label(best)} | {best['nfe']} | {ratio_text(best)} | "
                   + ("; ".join(named(r) for r in tied) or "none") + " |")
    return out


def _heldout_confident(r: dict) -> str:
    """The held-out real images' confident share (the classifier's own ceiling), when the record has it."""
    return f" (real {pct(r['confident_heldout'])})" if r.get("confident_heldout") is not None else ""


def detail_table(records: list[dict]) -> list[str]:
    out = ["| sampler | schedule | steps | spacing | NFE | noise-equivalent σ [95 % CI] | FD [95 % CI] "
           "| FD / real [95 % CI] | KID ± se | confident [95 % CI] | smallest class | NN ratio [95 % CI] | seconds |",
           "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in records:
        conf = interval(100 * r["confident"], [100 * v for v in r["confident_ci"]], 1)
        out.append(f"| {r['sampler']} | {r['schedule']} | {r['steps']} | {r['spacing']} | {r['nfe']} "
                   f"| {interval(r['noise_sigma'], r['noise_sigma_ci'], 3)} | {interval(r['fd'], r['fd_ci'])} | {ratio_text(r)} | {kid_text(r)} | {conf} %{_heldout_confident(r)} "
                   f"| {pct(r['coverage_min_class'])} | {interval(r['nn_ratio'], r['nn_ratio_ci'])} "
                   f"| {secs(r['seconds'])} |")
    return out


def baseline_line(records: list[dict], n: int) -> str:
    """The model's real baseline as its cells state it: FD of n held-out images against the training split (one
    value for every cell of a model), with its interval, the number of held-out sets, KID and confident share."""
    lines = []
    for r in {(r["fd_real"], r["heldout_sets"]): r for r in records}.values():
        lines.append(f"real held-out images at n = {n}: FD {interval(r['fd_real'], r['fd_real_ci'])} against the "
                     f"{r['reference_n']} training images ("
                     + (f"the mean over {r['heldout_sets']} disjoint held-out sets" if r["heldout_sets"] > 1
                        else "one held-out set: the test split holds no second") + f"), KID {kid_text(r, real=True)}, confident "
                     f"{pct(r['confident_heldout'])}")
    return "Baseline: " + "; ".join(lines) + "."


def model_section(name: str, records: list[dict], n: int, seed: int, best: dict,
                  withdrawn: str | None = None) -> list[str]:
    """The page's section on one model: ``best`` is the cell whose samples it shows (the lowest FD point estimate);
    ``withdrawn``, its card's reason for not being offered in the app, is said first."""
    return [
        f"## {name}", "",
        *([f"**Not offered in the app:** {withdrawn}", ""] if withdrawn else []),
        baseline_line(records, n), "",
        *[f"- {x}" for x in findings(records, n)], "",
        "Each cell: noise-equivalent σ [95 % CI] · FD / real [95 % CI] · seconds; bold: the row's lowest FD when its interval clears the row's "
        "others (none bold: the schedules are indistinguishable at this n).", "",
        *cross_table(records), "",
        *budget_table(records), "",
        f"![FD against NFE for {name}](results/fd_vs_nfe_{name}.png)", "",
        f"![samples from {name}](results/samples_{name}.png)", "",
        f"{SAMPLE_GRID_N} samples from the cell with the lowest FD point estimate, {label(best)} "
        f"({best['spacing']} spacing), seed {seed}.", "",
        "<details><summary>Every cell with every figure</summary>", "",
        *detail_table(records), "", "</details>", "",
    ]
