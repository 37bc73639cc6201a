"""Held-out bits/dim per model and schedule: where each model's likelihood stands, with 95 % bootstrap intervals.

For each image model and each schedule of its grid, ``engine.bits_per_dim`` on ``n`` held-out 8-bit images (a draw
of the test split from ``seed``): the DDPM variational bound over all T levels (Ho et al. 2020, eq. 5, with the
discretised decoder), an upper bound on −log₂ P(x) / D, and for models trained by denoising score matching the
probability-flow ODE (Song et al. 2021) with Hutchinson's divergence and uniform dequantisation, an upper bound in
the same units. A model's network is a function of ᾱ, so any schedule defines a chain for it; the bound is
tightest for the schedule whose levels the model was trained on densely.

Why all T levels and few images: the bound over a strided chain is much looser (mnist-ddpm, linear, 8 images:
3.20 bits/dim over 100 levels against 1.71 over 1000), so a cheaper chain would measure the chain, not the model;
one level costs one batched network call, so a cell costs T calls on n images, about 6 ms per image and level for
the 28×28 U-Net on one free CPU thread: ``N_IMAGES`` = 10 images ≈ 1 min a cell, 500 would take 50. The interval is
a percentile bootstrap of the mean over the n images (``BOOTSTRAP`` resamples from ``seed``); it covers the spread
of images and the bound's own draws of x_t, and at 10 images it is wide. Only models of 8-bit data are measured
(``EIGHT_BIT``): the 8×8 digits have 17 grey levels, for which a 256-level decoder's bits/dim mean nothing.

Records are cached in ``likelihood.json`` beside the report's cells under "MODEL|SCHEDULE|METHOD|n=N|seed=S" and
reused while the model's sha256 is unchanged (no classifier is involved). A record keeps the bound's mean terms
(prior L_T, Σ L_{t−1}, decoder L_0, in bits/dim) and the mean term at each t, which the section draws.
"""
from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import load_dataset
from ..devices import describe_device
from ..evaluate import bootstrap_mean
from ..likelihood import IMAGE_ODE_TOLERANCE as ODE_TOLERANCE
from ..likelihood import PIXEL_LEVELS, bits_per_dim, log_likelihood
from .cache import CACHE_VERSION, write_cache

N_IMAGES = 10  # at most this many held-out images per cell (fewer when the report's n is smaller)
EIGHT_BIT = ("mnist", "fashion-mnist")
BATCH = 20
BOOTSTRAP = 1000  # resamples behind a cell's interval
ANCHORS = (("DDPM (Ho et al. 2020), VLB", "≤ 3.70"), ("improved DDPM (Nichol & Dhariwal 2021), VLB", "2.94"),
           ("score SDE (Song et al. 2021), ODE", "2.99"))
LN2 = math.log(2)


def load_records(path: Path) -> dict:
    """The cached records {key: record} of ``path`` ({} when there is none or it has another layout)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data.get("cells", {}) if data.get("version") == CACHE_VERSION else {}


def held_out(dataset: str, n: int, seed: int) -> torch.Tensor:
    """n images of the test split, a draw without replacement from ``seed``."""
    images, _ = load_dataset(dataset, "test")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[pick]


def cell(setup, schedule: str, method: str, n: int, seed: int) -> dict:
    """One (model, schedule, method) record on n held-out images (see the module docstring)."""
    x = held_out(setup.dataset, n, seed)
    dim = x[0].numel()
    start = time.perf_counter()
    bpd, terms, nfe = [], {"prior": [], "diffusion": [], "decoder": [], "per_t": []}, 0
    for j, lo in enumerate(range(0, n, BATCH)):
        batch = x[lo:lo + BATCH]
        if method == "vlb":  # the terms too: log_likelihood is what bits_per_dim's vlb computes
            r = log_likelihood(setup.model, batch, schedule=schedule, method="vlb", seed=seed + j, bins=PIXEL_LEVELS)
            scale = 1 / (dim * LN2)
            bpd.append(-r.log_p * scale)
            terms["prior"].append(r.terms["prior"] * scale)
            terms["diffusion"].append(r.terms["diffusion"].sum(0) * scale)
            terms["decoder"].append(r.terms["decoder"] * scale)
            terms["per_t"].append(r.terms["diffusion"].sum(1) * scale)  # summed over the batch's images
            ts, nfe = r.terms["t"], r.nfe
        else:
            bpd.append(bits_per_dim(setup.model, batch, schedule=schedule, method="ode", seed=seed + j,
                                    rtol=ODE_TOLERANCE, atol=ODE_TOLERANCE))
    values = torch.cat(bpd)
    record = {"model": setup.name, "schedule": schedule, "method": method, "n": n, "seed": seed,
              "bpd": float(values.mean()),
              "bpd_ci": bootstrap_mean(values, torch.Generator().manual_seed(seed), BOOTSTRAP)[1],
              "bpd_sd": float(values.std()),
              "seconds": time.perf_counter() - start, "sha256": setup.card["sha256"],
              "device": describe_device(torch.device("cpu")), "date": datetime.date.today().isoformat()}
    if method == "vlb":
        record.update({k: float(torch.cat(terms[k]).mean()) for k in ("prior", "diffusion", "decoder")}, nfe=nfe,
                      t=ts, per_t=[round(float(v), 7) for v in torch.stack(terms["per_t"]).sum(0) / n])
    else:
        record["tolerance"] = ODE_TOLERANCE
    return record


def methods_for(objective: str) -> tuple[str, ...]:
    """The VLB for every model; the ODE too for a score model (DSM), the family whose papers report it."""
    return ("vlb", "ode") if objective == "dsm" else ("vlb",)


def measure(setups: dict, schedules: dict, n: int, seed: int, path: Path) -> dict:
    """{model: records} over ``schedules[model]`` and ``methods_for`` its objective, for the models of 8-bit data
    (``EIGHT_BIT``), computing only what the cache
    ``path`` lacks (written after every record, so an interrupted run resumes)."""
    cache = load_records(path)
    planned = {name: [(schedule, method, f"{name}|{schedule}|{method}|n={n}|seed={seed}")
                      for schedule in schedules[name] for method in methods_for(setup.card["objective"])]
               for name, setup in setups.items() if setup.dataset in EIGHT_BIT}
    todo = [(name, schedule, method, key) for name, cells in planned.items() for schedule, method, key in cells
            if cache.get(key, {}).get("sha256") != setups[name].card["sha256"]]
    for name, schedule, method, key in tqdm(todo, desc="bits/dim", unit="cell", disable=not todo):
        cache[key] = cell(setups[name], schedule, method, n, seed)
        write_cache(path, cache)
    return {name: [cache[key] for *_, key in cells] for name, cells in planned.items()}


def plot_terms(records: list[dict], path: Path) -> None:
    """The VLB's mean term L_{t−1} at each t (bits/dim, log y), one curve per schedule: where the bound comes from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for r in records:
        ax.plot(r["t"], r["per_t"], label=f"{r['schedule']}: {r['bpd']:.3f} bits/dim", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("L_{t−1} (bits/dim)")
    ax.set_title(f"{records[0]['model']}: the bound term by term (mean over {records[0]['n']} held-out images)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(results: dict, figures_dir: Path) -> list[str]:
    """The page's bits/dim section: a table per model and schedule, the terms' figure, and the published anchors."""
    if not results:
        return []
    n = max(r["n"] for records in results.values() for r in records)
    lines = ["", "## Likelihood: held-out bits/dim", "",
             "Bits/dim on held-out 8-bit images (engine/likelihood.py): **vlb** is the DDPM variational bound over "
             "all T levels, L_T + Σ L_{t−1} + L_0 with the discretised decoder; **ode** the probability-flow ODE "
             f"with Hutchinson's divergence (RK45, tolerance {ODE_TOLERANCE:g}) after uniform dequantisation. Both "
             "are upper bounds on −log₂ P(x) / D: lower is better. The model's network takes any ᾱ, so each "
             "schedule gives it another chain; the bound is tightest on the levels it was trained on. Every cell "
             "of a model measures the same held-out images (one draw from the seed), so its schedules are compared "
             "on the same images. Intervals are 95 % bootstrap intervals over the images; seconds are wall time "
             "on the report's device.", "",
             "| model | schedule | method | bits/dim [95 % CI] | L_T | Σ L_{t−1} | L_0 | n | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, records in results.items():
        for r in records:
            parts = ([f"{r['prior']:.4f}", f"{r['diffusion']:.3f}", f"{r['decoder']:.3f}"] if r["method"] == "vlb"
                     else ["", "", ""])
            lines.append(f"| {name} | {r['schedule']} | {r['method']} | {r['bpd']:.3f} [{r['bpd_ci'][0]:.3f}, "
                         f"{r['bpd_ci'][1]:.3f}] | {' | '.join(parts)} | {r['n']} | {r['seconds']:.0f} |")
    lines.append("")
    for name, records in results.items():
        vlb = [r for r in records if r["method"] == "vlb"]
        if vlb:
            path = figures_dir / f"likelihood_{name}.png"
            plot_terms(vlb, path)
            lines += [f"![the VLB's terms over t for {name}](results/{path.name})", ""]
    lines += ["Published figures, for orientation (CIFAR-10, bits/dim): "
              + "; ".join(f"{who} {value}" for who, value in ANCHORS) + ". Ours are not comparable to them: "
              "CIFAR-10 is 32×32×3 natural colour images, while MNIST and Fashion-MNIST are 28×28 grey images, "
              "mostly flat black background that a model codes in almost no bits, so their bits/dim sit far lower "
              "for reasons of the data, not the model; our models are also far smaller and trained far shorter, and "
              f"our intervals come from {n} held-out images, not the 10,000 of CIFAR-10's test set.", ""]
    return lines


def schedules_of(setups: dict, grid, grids: dict) -> dict:
    """{model: the schedules of its grid for its objective}, in order."""
    out = {}
    for name, s in setups.items():
        out[name] = list(grids.get(name, grid).schedules.get(s.card["objective"], ()))
    return out
