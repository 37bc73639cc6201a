"""The app's matplotlib figures: the schedule plots (every tab's, through ``marked``), the forward process's curves and
the score field (made with ``matplotlib.figure.Figure``, not pyplot, so nothing global leaks). The Plotly ones are
space/plotly_figures.py's.

matplotlib is imported on first use, not with the app (it costs ~0.8 s of a cold start); app.py has it imported
in the background once the page is served (``space.tabs.generate.warm_up``). The schedule plots are drawn once per
setting and kept (``schedule_plot``): each streamed Generate update only re-draws the current-step marker onto the kept
pixels.
"""
from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict

import numpy as np

import engine

COLORS = ["#4f46e5", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"]


def _curves(name: str):
    s = engine.get_schedule(name)
    a = s.alphas_cumprod.numpy()
    lam = s.log_snr.numpy()
    return np.arange(s.T), a, lam


_FIGURE = None
_IMPORT_LOCK = threading.Lock()


def figure_class():
    """matplotlib's Figure class, with the Agg backend (imported on first use). Under a lock: the warm-up thread and
    a first request importing it at once failed with a "partially initialized module matplotlib.pyplot" error."""
    global _FIGURE
    with _IMPORT_LOCK:
        if _FIGURE is None:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib.figure import Figure

            _FIGURE = Figure
    return _FIGURE


def schedule_figure(curves: list[dict], title: str = "", *, marked: bool = True):
    """ᾱ_t (solid, left axis) and log-SNR λ_t (dashed, right axis) of each entry in ``curves``.

    Each entry: {"schedule": name, "label": str, "visited": [t...] (optional), "current": t or None}.
    The visited timesteps are ticks on the ᾱ curve; the current one a big dot on both curves and a vertical line.
    """
    Figure = figure_class()
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
        if cur is not None and marked:
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


def _png_data_url(img) -> str:
    """A PIL image as a ``data:image/png;base64,…`` URL, zlib level 1."""
    with io.BytesIO() as out:
        img.save(out, "png", compress_level=1)
        return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class Palette:
    """The 256 commonest colours of a picture (a figure: its background, text and curves), and the mapping of other
    pictures onto them: a colour in the palette keeps its exact value, any other (rare anti-aliasing shades) takes
    the nearest one. (Pillow's ``quantize(palette=…)`` shifts even exact colours: white came out 252.)"""

    def __init__(self, rgb: np.ndarray):
        colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
        self.colours = colours[np.argsort(-counts, kind="stable")[:256]].astype(np.uint8)
        keys = _keys(self.colours)
        order = np.argsort(keys)
        self.known = (keys[order], order)  # every colour met so far (sorted) → its palette index

    def image(self, index: np.ndarray):
        """(H, W) uint8 indices into this palette as a PIL "P" image (an 8-bit PNG: half the bytes of RGB)."""
        from PIL import Image

        img = Image.fromarray(index, "P")
        img.putpalette(self.colours.tobytes())
        return img

    def indices(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` (H, W, 3) uint8 as (H, W) uint8 indices into this palette."""
        keys = _keys(rgb)
        known_keys, known_index = self.known
        pos = np.minimum(np.searchsorted(known_keys, keys), len(known_keys) - 1)
        miss = known_keys[pos] != keys
        if miss.any():  # colours not met before: their nearest palette colour, remembered
            new = np.unique(keys[miss])
            px = np.stack([new >> 16, (new >> 8) & 255, new & 255], axis=-1)
            nearest = ((px[:, None, :] - self.colours[None].astype(np.int32)) ** 2).sum(-1).argmin(1)
            all_keys = np.concatenate([known_keys, new])
            order = np.argsort(all_keys)
            known_keys, known_index = all_keys[order], np.concatenate([known_index, nearest])[order]
            self.known = (known_keys, known_index)
            pos = np.searchsorted(known_keys, keys)
        return known_index[pos].astype(np.uint8)


class MarkedSchedule:
    """``schedule_figure(curves)`` drawn once; ``png(current)`` is that figure with the current step of each curve
    marked (vertical line, dots on ᾱ_t and log-SNR), as a PNG data URL.

    Only the markers are drawn per call (matplotlib blitting: the kept pixels restored, three artists drawn on top),
    only the columns around them are read back and mapped to the figure's 256 commonest colours (the rest of the
    8-bit picture is kept), and the PNG is written at zlib level 1: ~1.5 ms against ~0.2 s for drawing and saving
    the whole figure. Thread-safe (one figure, a lock)."""

    MARGIN_PX = 10  # columns either side of a marker's x that its drawing may touch (dots of 7 pt at 72 dpi)

    def __init__(self, curves: list[dict], title: str = ""):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = schedule_figure(curves, title, marked=False)
        ax, ax2 = fig.axes
        self.ax = ax
        self.canvas = FigureCanvasAgg(fig)
        self.markers = []  # per curve: (ᾱ_t, clipped λ_t, [vline, dot, dot on ax2])
        for k, c in enumerate(curves):
            color = COLORS[k % len(COLORS)]
            _, a, lam = _curves(c["schedule"])
            artists = [ax.axvline(0, color=color, lw=0.8, alpha=0.6, animated=True),
                       ax.plot([], [], "o", color=color, ms=7, animated=True)[0],
                       ax2.plot([], [], "o", color=color, ms=5, mfc="white", animated=True)[0]]
            self.markers.append((a, np.clip(lam, -20, 20), artists))
        self.canvas.draw()  # the layout is fixed here; animated artists are left out of this drawing
        self.background = self.canvas.copy_from_bbox(fig.bbox)
        self.lock = threading.Lock()
        bare = self._pixels([None] * len(self.markers))
        self.palette = Palette(self._pixels([len(a) // 2 for a, _, _ in self.markers]))
        self.bare_index = self.palette.indices(bare)  # the figure without markers, as palette indices

    def _draw(self, current: list[int | None]) -> None:
        """The kept figure with the markers of ``current`` drawn on it (call with the lock held)."""
        self.canvas.restore_region(self.background)
        for (a, lam, (vline, dot, dot2)), t in zip(self.markers, current):
            if t is None:
                continue
            vline.set_xdata([t, t])
            dot.set_data([t], [a[t]])
            dot2.set_data([t], [lam[t]])
            for artist in (vline, dot, dot2):
                artist.axes.draw_artist(artist)

    def _pixels(self, current: list[int | None]) -> np.ndarray:
        """The whole figure with ``current`` marked, (H, W, 3) uint8."""
        with self.lock:
            self._draw(current)
            return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def png(self, current: list[int | None] | int | None) -> str:
        if not isinstance(current, (list, tuple)):
            current = [current] * len(self.markers)
        index = self.bare_index.copy()
        width = index.shape[1]
        with self.lock:
            self._draw(list(current))
            buf = np.asarray(self.canvas.buffer_rgba())
            strips = []
            for t in current:
                if t is None:
                    continue
                x = int(round(float(self.ax.transData.transform((t, 0.0))[0])))
                lo, hi = max(0, x - self.MARGIN_PX), min(width, x + self.MARGIN_PX + 1)
                if lo < hi:
                    strips.append((lo, hi, buf[:, lo:hi, :3].copy()))
        for lo, hi, rgb in strips:
            index[:, lo:hi] = self.palette.indices(rgb)
        return _png_data_url(self.palette.image(index))


_KEPT: OrderedDict = OrderedDict()
_KEPT_LOCK = threading.Lock()
KEPT_FIGURES = 16  # schedule plots kept for reuse (a few hundred kB each)


def _key(curves: list[dict], title: str) -> tuple:
    return (title, tuple((c["schedule"], c.get("label", c["schedule"]),
                          tuple(c["visited"]) if c.get("visited") is not None else None) for c in curves))


def is_kept(curves: list[dict], title: str = "") -> bool:
    """Whether ``schedule_plot(curves, title)`` is kept already (costs nothing to draw)."""
    with _KEPT_LOCK:
        return _key(curves, title) in _KEPT


def schedule_plot(curves: list[dict], title: str = "") -> MarkedSchedule:
    """The ``MarkedSchedule`` of ``curves`` (their "current" ignored), drawn on first use and kept (LRU) for the
    next request with the same schedules, labels and visited steps."""
    key = _key(curves, title)
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is not None:
            _KEPT.move_to_end(key)
            return kept
    kept = MarkedSchedule(curves, title)
    with _KEPT_LOCK:
        _KEPT[key] = kept
        while len(_KEPT) > KEPT_FIGURES:
            _KEPT.popitem(last=False)
    return kept


def visited(schedule: str, steps: int, spacing: str) -> list[int]:
    """The timesteps a run of ``steps`` steps visits on ``schedule`` with ``spacing``."""
    return engine.get_schedule(schedule).timesteps(steps, spacing).tolist()


def curve(schedule: str, label: str, ticks: list[int]) -> dict:
    """One curve of a schedule plot: the schedule's ᾱ_t and log-SNR, labelled, with the ``ticks`` (the levels a
    run visits) marked."""
    return {"schedule": schedule, "label": label, "visited": ticks}


def marked(curves: list[dict], t: int | None = None):
    """The kept schedule plot of ``curves`` (drawn on first use) with step ``t`` marked, as ready PNG data for
    gr.Plot: every tab's schedule plot goes out through here."""
    from gradio.components.plot import PlotData

    return PlotData(type="matplotlib", plot=schedule_plot(curves).png(t))


FORWARD_TITLE = "signal kept √ᾱ_t x_0 vs noise √(1−ᾱ_t) ε"


def forward_curves_plot(schedules: list[str], ts: list[int]):
    """ᾱ_t and log-SNR of the chosen schedules with the chosen t marked, as ready PNG data for gr.Plot, drawn once
    per setting and kept (``schedule_plot``)."""
    from gradio.components.plot import PlotData

    kept = schedule_plot([curve(s, s, ts) for s in schedules], FORWARD_TITLE)
    return PlotData(type="matplotlib", plot=kept.png(None))


def score_field_figure(field: dict, density: dict | None, title: str, points=None):
    """Arrows of the score (normalised length, colour = magnitude) over the noised density p_σ."""
    Figure = figure_class()
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
