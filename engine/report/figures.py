"""The results page's figures, under ``OUT/results/``.

``schedules.png``: ᾱ_t and log-SNR λ_t = log(ᾱ_t / (1 − ᾱ_t)) of the grid's schedules. ``fd_vs_nfe_MODEL.png``:
FD / real (held-out images) against NFE with its 95 % interval as error bars, a panel per schedule, a line per
sampler, each sampler in the same colour and marker on every model's figure. ``samples_MODEL.png``:
``SAMPLE_GRID_N`` samples from the model's lowest-FD cell, drawn from the page's seed.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from ..generate import sample  # noqa: E402
from ..pictures import save_samples  # noqa: E402
from ..samplers import SAMPLERS  # noqa: E402
from ..schedules import get_schedule  # noqa: E402

SAMPLE_GRID_N = 64
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


def plot_fd_vs_nfe(model: str, records: list[dict], path, bar: tuple[float, float] | None = None) -> None:
    """FD / real against NFE (log–log) with 95 % intervals: a panel per schedule, a line per sampler; the real
    level (1×) dashed and ``bar`` = (σ limit, its FD / real on these features; ``bars.sigma_bar_as_ratio``)
    dotted."""
    schedules = list(dict.fromkeys(r["schedule"] for r in records))
    samplers = list(dict.fromkeys(r["sampler"] for r in records))
    cols = min(3, len(schedules))
    rows = math.ceil(len(schedules) / cols)
    fig = Figure(figsize=(3.8 * cols, 2.9 * rows + 0.9), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).flat
    ends = [v for r in records for v in r["fd_ratio_ci"] if v > 0]  # a re-centred bootstrap end can reach ≤ 0
    lo, hi = min(ends + [1.0]) / 1.3, max(ends + [bar[1] if bar else 1.0]) * 1.3
    for ax, schedule in zip(axes, schedules):
        for sampler in samplers:
            pts = sorted((r["nfe"], r["fd_ratio"], *r["fd_ratio_ci"]) for r in records
                         if r["schedule"] == schedule and r["sampler"] == sampler)
            if not pts:
                continue
            x, y, y_lo, y_hi = map(np.array, zip(*pts))
            y_lo = np.maximum(y_lo, lo)  # drawn to the panel's floor on the log axis
            k = list(SAMPLERS).index(sampler)  # one colour and marker per sampler on every model's figure
            ax.errorbar(x, y, yerr=[y - y_lo, y_hi - y], color=_COLORS[k % 10], marker=_MARKERS[k % len(_MARKERS)],
                        ms=4, lw=1.4, capsize=2, elinewidth=0.8, label=sampler)
        ax.axhline(1.0, color="0.4", ls="--", lw=1, label="real held-out")
        if bar:
            ax.axhline(bar[1], color="crimson", ls=":", lw=1.2, label=f"bar: σ ≤ {bar[0]:g} ({bar[1]:.2f}× here)")
        ax.set(xscale="log", yscale="log", ylim=(lo, hi), title=schedule)
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1, 2, 5 × 10^k instead of powers of ten
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(schedules):]:
        ax.set_visible(False)
    fig.supxlabel("network evaluations (NFE)")
    fig.supylabel("FD / real held-out images [95 % CI]")
    n = records[0]["n"]
    fig.suptitle(f"{model}: FD against NFE (n = {n}, lower is better)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.savefig(path)


def plot_samples(model, cell: dict, seed: int, path) -> None:
    """``SAMPLE_GRID_N`` samples of ``model`` with the settings of the record ``cell`` (its label included), as one
    grid image."""
    x = sample(model, schedule=cell["schedule"], sampler=cell["sampler"], steps=cell["steps"], seed=seed,
               n=SAMPLE_GRID_N, spacing=cell["spacing"], label=cell.get("label"), **cell["options"])
    save_samples(x, path)
