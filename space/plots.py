"""Matplotlib figures for the app (made with ``matplotlib.figure.Figure``, not pyplot, so nothing global leaks)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import engine  # noqa: E402

COLORS = ["#4f46e5", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"]


def _curves(name: str):
    s = engine.get_schedule(name)
    a = s.alphas_cumprod.numpy()
    lam = s.log_snr.numpy()
    return np.arange(s.T), a, lam


def schedule_figure(curves: list[dict], title: str = "") -> Figure:
    """ᾱ_t (solid, left axis) and log-SNR λ_t (dashed, right axis) of each entry in ``curves``.

    Each entry: {"schedule": name, "label": str, "visited": [t...] (optional), "current": t or None}.
    The visited timesteps are ticks on the ᾱ curve; the current one a big dot on both curves and a vertical line.
    """
    fig = Figure(figsize=(6.4, 3.0), dpi=72, layout="constrained")
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    for k, c in enumerate(curves):
        color = COLORS[k % len(COLORS)]
        t, a, lam = _curves(c["schedule"])
        ax.plot(t, a, color=color, lw=1.8, label=c.get("label", c["schedule"]))
        ax2.plot(t, np.clip(lam, -20, 20), color=color, lw=1.0, ls="--", alpha=0.7)
        visited = c.get("visited")
        if visited is not None and len(visited) <= 200:
            v = np.asarray(visited, dtype=int)
            ax.plot(v, a[v], "|", color=color, ms=6, alpha=0.6)
        cur = c.get("current")
        if cur is not None:
            ax.axvline(cur, color=color, lw=0.8, alpha=0.6)
            ax.plot([cur], [a[cur]], "o", color=color, ms=7)
            ax2.plot([cur], [np.clip(lam[cur], -20, 20)], "o", color=color, ms=5, mfc="white")
    ax.set_xlabel("t")
    ax.set_ylabel("ᾱ_t (solid)")
    ax2.set_ylabel("log-SNR λ_t (dashed)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, 1000)
    ax.grid(alpha=0.25)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    return fig


def forward_curves_figure(schedules: list[str], ts: list[int]) -> Figure:
    """ᾱ_t and log-SNR of the chosen schedules with the chosen t marked."""
    return schedule_figure([{"schedule": s, "label": s, "visited": ts} for s in schedules],
                           title="signal kept √ᾱ_t x_0 vs noise √(1−ᾱ_t) ε")


def score_field_figure(field: dict, density: dict | None, title: str, points=None) -> Figure:
    """Arrows of the score (normalised length, colour = magnitude) over the noised density p_σ."""
    fig = Figure(figsize=(5.2, 5.0), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    if density is not None:
        xs = density["xs"].numpy()
        ax.imshow(density["density"].numpy(), origin="lower", extent=(xs[0], xs[-1], xs[0], xs[-1]),
                  cmap="Blues", aspect="equal")
    pts = field["points"].numpy()
    s = field["score"].numpy()
    mag = np.linalg.norm(s, axis=1)
    u = s / np.maximum(mag, 1e-12)[:, None]
    ax.quiver(pts[:, 0], pts[:, 1], u[:, 0], u[:, 1], np.log10(mag + 1e-12), cmap="autumn", angles="xy",
              scale_units="xy", scale=1 / (0.8 * float(field["xs"][1] - field["xs"][0])), width=0.004)
    if points is not None:
        p = np.asarray(points)
        ax.scatter(p[:, 0], p[:, 1], s=3, c="k", alpha=0.5)
    lim = float(field["xs"][-1])
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    return fig


def particles_image(points, lim: float = 3.0, title: str = "", size_px: int = 240):
    """A small scatter plot rendered to a PIL image (for galleries)."""
    from PIL import Image

    fig = Figure(figsize=(size_px / 80, size_px / 80), dpi=80, layout="constrained")
    ax = fig.add_subplot()
    p = np.asarray(points)
    ax.scatter(p[:, 0], p[:, 1], s=2, c="#4f46e5", alpha=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    buf = np.asarray(canvas.buffer_rgba())
    return Image.fromarray(buf[..., :3].copy())
