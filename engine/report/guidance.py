"""The guidance-scale sweep of a class-conditional model: fidelity to the asked class against distance from the data.

Classifier-free guidance (Ho & Salimans 2022) trades diversity for fidelity: as w grows, samples look more like
their class (the evaluator's classifier agrees with the asked label more often) and the set drifts from the data's
distribution (FD to the training split grows). For each w in ``SCALES`` the sweep draws n samples with DDIM,
50 steps, cosine (the setting of the issue's targets), the k-th asking for class k mod C, so every class is asked
n/C times, and records

  accuracy   share of samples whose top class under the evaluator's classifier is the class asked for, with a
             95 % percentile-bootstrap interval over the n samples (``BOOTSTRAP`` resamples drawn from ``seed``)
  fd, fd_ratio, kid, confident, noise_sigma  ``evaluate.score_images`` on the same samples, intervals included

w = 0 samples the null class ∅ alone, the unconditional branch that guidance leans on at every w ≠ 1, so it is
held to its dataset's σ bar and the legibility check (``bars``), beside w = 1 (every class asked equally often,
p(x) with the class prior), so that nobody mistakes one for the other.

Records are cached in ``guidance.json`` beside the report's cells, under "MODEL|w=W|n=N|seed=S", and reused
while the model's and the classifier's sha256 and the evaluator's version are unchanged.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from .. import evaluate
from ..checkpoints import record_metrics
from ..classifier import top_class
from ..generate import sample
from .bars import SIGMA_BAR
from .cache import EVALUATOR_VERSION, is_fresh, load_cache, write_cache
from .text import interval, num

SCALES = (0.0, 1.0, 3.0, 6.0)
SETTING = {"sampler": "ddim", "schedule": "cosine", "steps": 50}
TARGETS = {"mnist": 0.95, "fashion-mnist": 0.85}  # accuracy at w = 3 (the targets); σ bar at w = 0
BATCH = 250
BOOTSTRAP = 200  # resamples behind the recognised share's interval


def sweep_cell(setup, w: float, n: int, seed: int) -> dict:
    """One scale's record (see the module docstring) for a report ``Setup`` of a conditional model."""
    k = setup.model.num_classes
    labels = [i % k for i in range(n)]
    chunks = []
    for j, start in enumerate(range(0, n, BATCH)):
        rows = labels[start:start + BATCH]
        chunks.append(sample(setup.model, **SETTING, seed=seed + j, n=len(rows), label=rows,
                             guidance_scale=w).cpu().clamp(-1, 1))
    images = torch.cat(chunks)
    predicted, _ = top_class(setup.classifier, images)
    accuracy, accuracy_ci = evaluate.bootstrap_mean(predicted == torch.tensor(labels), torch.Generator().manual_seed(seed),
                                                    BOOTSTRAP)
    scores = evaluate.score_images(images, setup.dataset, seed=seed, classifier=setup.classifier)
    keep = ("fd", "fd_ci", "fd_real", "fd_ratio", "fd_ratio_ci", "kid", "kid_std", "confident", "confident_ci",
            "confident_heldout", "noise_sigma", "noise_sigma_ci")
    return {"model": setup.name, "guidance_scale": w, **SETTING, "n": n, "seed": seed, "accuracy": accuracy,
            "accuracy_ci": accuracy_ci, **{key: scores[key] for key in keep}, "sha256": setup.card["sha256"],
            "classifier_sha256": setup.classifier_card["sha256"], "evaluator": EVALUATOR_VERSION,
            "date": datetime.date.today().isoformat()}


def sweeps(setups: dict, n: int, seed: int, path: Path, scales=SCALES) -> dict:
    """{model: records over ``scales``} for the conditional models among ``setups``, computing only what the cache
    ``path`` lacks (written after every record, so an interrupted sweep resumes)."""
    cache = load_cache(path)
    planned = {name: [(w, f"{name}|w={w:g}|n={n}|seed={seed}") for w in scales]
               for name, setup in setups.items() if setup.conditional}
    todo = [(name, w, key) for name, cells in planned.items() for w, key in cells
            if not is_fresh(cache.get(key), setups[name].card["sha256"], setups[name].classifier_card["sha256"])]
    for name, w, key in tqdm(todo, desc="guidance sweep", unit="cell", disable=not todo):
        cache[key] = sweep_cell(setups[name], float(w), n, seed)
        write_cache(path, cache)
    return {name: [cache[key] for _, key in cells] for name, cells in planned.items()}


def record_in_cards(results: dict, directory=None) -> None:
    """Each conditional model's sweep in its card, under metrics["guidance/w=W/ddim/cosine/50/n=N/seed=S"]."""
    for name, records in results.items():
        for r in records:
            key = f"guidance/w={r['guidance_scale']:g}/{r['sampler']}/{r['schedule']}/{r['steps']}/n={r['n']}/seed={r['seed']}"
            record_metrics(name, key, {k: r[k] for k in ("accuracy", "accuracy_ci", "noise_sigma", "noise_sigma_ci",
                                                          "fd_ratio", "fd_ratio_ci", "kid", "kid_std", "confident",
                                                          "classifier_sha256", "date")},
                           directory)


def _pct(x: float, ci: list[float]) -> str:
    return f"{100 * x:.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _verdict(value: float, ci: list[float], target: float, below: bool = False) -> str:
    """"met" or "not met" on the point estimate, as the quality bars judge, with "(unresolved …)" when the 95 %
    interval straddles the target, so another seed could turn the verdict."""
    lo, hi = ci
    met = value <= target if below else value >= target
    resolved = (hi <= target or lo > target) if below else (lo >= target or hi < target)
    return ("met" if met else "not met") + ("" if resolved else " (unresolved: the interval straddles it)")


def _null_class_line(r: dict, limit: float) -> str:
    """The null class's verdict: its dataset's σ bar and the legibility check, as the quality bars judge them."""
    gap = r["confident"] - r["confident_heldout"]
    gap_ci = [v - r["confident_heldout"] for v in r["confident_ci"]]
    return (f"- Target w = 0 (the null class ∅ alone): noise-equivalent σ ≤ {limit:g} — "
            f"{interval(r['noise_sigma'], r['noise_sigma_ci'], 3)}: "
            f"**{_verdict(r['noise_sigma'], r['noise_sigma_ci'], limit, below=True)}**; confident within 10 points of "
            f"real — {100 * gap:+.1f} pts [{100 * gap_ci[0]:+.1f}, {100 * gap_ci[1]:+.1f}]: "
            f"**{_verdict(gap, gap_ci, -0.10)}**.")


def plot_sweep(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["guidance_scale"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    acc = [100 * r["accuracy"] for r in records]
    err = [[100 * (r["accuracy"] - r["accuracy_ci"][0]) for r in records],
           [100 * (r["accuracy_ci"][1] - r["accuracy"]) for r in records]]
    ax.errorbar(w, acc, yerr=err, marker="o", color="tab:blue", capsize=3)
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("asked class recognised (%)", color="tab:blue")
    ax2 = ax.twinx()
    ratio = [r["fd_ratio"] for r in records]
    err2 = [[r["fd_ratio"] - r["fd_ratio_ci"][0] for r in records], [r["fd_ratio_ci"][1] - r["fd_ratio"] for r in records]]
    ax2.errorbar(w, ratio, yerr=err2, marker="s", color="tab:red", capsize=3)
    ax2.set_ylabel("FD / real", color="tab:red")
    ax.set_title(f"{records[0]['model']}: guidance trades diversity for fidelity (95 % intervals)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(results: dict, setups: dict, figures_dir: Path) -> list[str]:
    """The page's guidance section: per conditional model, a table over w, a figure, and the targets' verdicts."""
    if not results:
        return []
    lines = ["", "## Classifier-free guidance: fidelity against diversity", "",
             "Each class-conditional model sampled at several guidance scales w (ε̂ = ε̂(x, ∅) + w (ε̂(x, c) − ε̂(x, ∅)); "
             "w = 0 is its unconditional model, w = 1 plain conditional), DDIM 50 steps, cosine, every class asked "
             "equally often. *Recognised* is the share of samples the evaluator's classifier assigns to the class "
             "asked for; FD / real is the usual figure (1 = as far from the training split as real held-out images "
             "of the same number). Intervals are 95 % bootstrap intervals; two scales whose intervals overlap are "
             "not told apart.", ""]
    for name, records in results.items():
        dataset = setups[name].dataset
        path = figures_dir / f"guidance_{name}.png"
        plot_sweep(records, path)
        lines += [f"### {name}", "", "| w | recognised | noise-equivalent σ | FD / real | KID ± se | confident |",
                  "|---|---|---|---|---|---|"]
        for r in records:
            w = {0.0: "0 (null class ∅)", 1.0: "1 (each class)"}.get(r["guidance_scale"], f"{r['guidance_scale']:g}")
            lines.append(f"| {w} | {_pct(r['accuracy'], r['accuracy_ci'])} | "
                         f"{interval(r['noise_sigma'], r['noise_sigma_ci'], 3)} | "
                         f"{r['fd_ratio']:.2f}× [{r['fd_ratio_ci'][0]:.2f}, {r['fd_ratio_ci'][1]:.2f}] | "
                         f"{num(r['kid'])} ± {r['kid_std']:.2g} | {100 * r['confident']:.1f} % |")
        by_w = {r["guidance_scale"]: r for r in records}
        lines += ["", f"![guidance sweep of {name}](results/{path.name})", ""]
        target = TARGETS.get(dataset)
        if target is not None and 3.0 in by_w:
            r = by_w[3.0]
            lines.append(f"- Target w = 3: ≥ {100 * target:.0f} % recognised — {_pct(r['accuracy'], r['accuracy_ci'])}: "
                         f"**{_verdict(r['accuracy'], r['accuracy_ci'], target)}**.")
        if 0.0 in by_w and dataset in SIGMA_BAR:
            lines.append(_null_class_line(by_w[0.0], SIGMA_BAR[dataset]))
        lines.append("")
    return lines
