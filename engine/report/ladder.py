"""Where the models sit on the noise ladder: the page's picture of its headline unit, per dataset.

The noise ladder (``evaluate.noise_ladder``) is the FD of real held-out images with Gaussian noise of σ added, over
σ = 0 … 1; a cell's noise-equivalent σ is the point of the ladder at its FD. The figure draws the ladder (σ against
FD) and puts each model's bar cells (``bars.judge_bar``: the setting each bar judges, per schedule) on it. The text
states the instrument's resolution at this n: the σ that real held-out images' own FD interval reaches, below which
a setting cannot be told from real images — on MNIST (one 500-image held-out set) that is where the σ bar lies.
"""
from __future__ import annotations

from pathlib import Path

from ..evaluate import noise_equivalent_sigma
from .bars import BARS, SIGMA_BAR, judge_bar
from .text import interval, label, sigma_text


def placements(results: dict, datasets: dict, n: int) -> dict:
    """{dataset: [(model, record)]}: every cell a bar judges, once, grouped by the model's dataset (``datasets``
    {model: dataset})."""
    out: dict = {}
    for bar in BARS:
        if bar.model not in results or bar.model not in datasets:
            continue
        verdict = judge_bar(bar, results[bar.model], n)
        for record, _ in verdict["judged"].values():
            placed = out.setdefault(datasets[bar.model], [])
            if not any(r is record for _, r in placed):
                placed.append((bar.model, record))
    return out


def resolution(record: dict) -> float:
    """The σ that real held-out images' FD interval reaches on ``record``'s ladder: below it, σ is not resolved."""
    return noise_equivalent_sigma(record["fd_real_ci"][1], record["noise_ladder"])


def plot_ladder(dataset: str, placed: list, path: Path) -> None:
    """The ladder (σ against FD, the fine rungs up to 0.3) with each placed cell at (σ, FD) and its σ interval,
    the σ bar dotted and real images' resolution shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ladder = placed[0][1]["noise_ladder"]
    rungs = [(s, f) for s, f in ladder if s <= 0.3]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(*zip(*rungs), marker="o", color="0.3", label="real held-out + noise σ")
    ax.axvspan(0, resolution(placed[0][1]), color="0.85", label="not resolved from real at this n")
    if dataset in SIGMA_BAR:
        ax.axvline(SIGMA_BAR[dataset], color="crimson", ls=":", label=f"bar: σ ≤ {SIGMA_BAR[dataset]:g}")
    for k, (model, r) in enumerate(placed):
        lo, hi = r["noise_sigma_ci"]
        ax.errorbar([r["noise_sigma"]], [r["fd"]], xerr=[[r["noise_sigma"] - lo], [hi - r["noise_sigma"]]],
                    fmt="s", ms=5, capsize=3, color=f"C{k % 10}", label=f"{model}: {label(r)}")
    ax.set(xlabel="noise σ added to real images ([-1, 1] scale)", ylabel="FD",
           title=f"{dataset}: the noise ladder at n = {placed[0][1]['n']}, and where the models sit")
    ax.legend(fontsize=6.5, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ladder_lines(placed: dict) -> list[str]:
    """The page's text for each dataset's ladder figure (``placements``; drawn by ``plot_ladder`` as
    results/noise_ladder_DATASET.png): the rungs, the resolution at this n, and each placed cell's σ."""
    lines = ["### The noise ladder, and where the models sit", "",
             "Each cell's headline figure, the noise-equivalent σ, is the σ of Gaussian noise on real held-out images "
             "(the [-1, 1] scale, clipped) that scores the cell's FD, read off this ladder; its interval maps the ends "
             "of FD / real's interval (times real's FD), so it carries the real baseline's own spread.", ""]
    for dataset, cells in placed.items():
        first = cells[0][1]
        reach = resolution(first)
        bar = SIGMA_BAR.get(dataset)
        rungs = ", ".join(f"{s:g}: {f:.3g}" for s, f in first["noise_ladder"] if s <= 0.3)
        verdict = ("" if bar is None else
                   f" The σ bar ({bar:g}) lies {'inside' if bar < reach else 'beyond'} that range: "
                   + ("a cell whose interval reaches past the bar is \"unresolved\", and at this n the instrument "
                      "cannot tell a model at the bar from real images." if bar < reach else
                      "the instrument resolves it."))
        lines += [f"- **{dataset}**, n = {first['n']}: FD at σ = {rungs}. Real held-out images' FD interval "
                  f"{interval(first['fd_real'], first['fd_real_ci'])} reaches σ {reach:.3f}: below that, σ is "
                  f"not resolved from real images.{verdict}",
                  "  " + "; ".join(f"{model} {label(r)}: {sigma_text(r)}" for model, r in cells) + ".",
                  "", f"![noise ladder of {dataset}](results/noise_ladder_{dataset}.png)", ""]
    return lines
