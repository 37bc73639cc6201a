"""The app's Plotly figures, as JSON for gr.Plot: particles moving over the density of their state (a time slider;
Score field and Train), and the Train tab's live views (training points, samples, score arrows; the loss curve).

gr.Plot draws a Plotly figure given as its JSON (``PlotData(type="plotly", plot=json)``): written here as plain
dicts, so the app needs no plotly package. Gradio's Plotly component passes a figure's data and layout to
Plotly.react but not its ``frames``, so the animation is a time slider whose steps restyle the traces.
"""
from __future__ import annotations

import json

import numpy as np

import engine
from engine import fields as engine_fields

ANIMATION_FRAMES = 40
GRID = 40  # density grid points a side


def _plotly(data: list, layout: dict):
    from gradio.components.plot import PlotData

    return PlotData(type="plotly", plot=json.dumps({"data": data, "layout": layout}, allow_nan=False))


def _rounded(a, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _axes(xlim, ylim, y_down: bool) -> dict:
    """Equal-aspect axes over ``xlim`` × ``ylim``; y grows downwards for canvas coordinates."""
    yrange = [ylim[1], ylim[0]] if y_down else list(ylim)
    return {"xaxis": {"range": list(xlim), "zeroline": False},
            "yaxis": {"range": yrange, "scaleanchor": "x", "scaleratio": 1, "zeroline": False},
            "margin": {"l": 40, "r": 10, "t": 40, "b": 40}, "showlegend": True,
            "legend": {"orientation": "h", "y": -0.12}}


def trajectory_animation(frames: list[tuple[str, np.ndarray, np.ndarray | None]], xs, ys, xlim, ylim, title: str,
                         y_down: bool = False):
    """Particles over the density contours of their state, one slider step per frame.

    ``frames``: (label, points (n, 2), density (len(ys), len(xs)) or None); the slider's step k restyles the
    particles (and the contours) to frame k; the figure opens on the last frame (the samples)."""
    has_density = frames[0][2] is not None
    data = []
    if has_density:
        data.append({"type": "contour", "x": _rounded(xs), "y": _rounded(ys), "z": _rounded(frames[-1][2], 6),
                     "colorscale": "Blues", "reversescale": True, "showscale": False, "ncontours": 14,
                     "hoverinfo": "skip", "contours": {"coloring": "fill"}, "line": {"width": 0.5}, "name": "density of x_t"})
    last = np.asarray(frames[-1][1])
    data.append({"type": "scatter", "mode": "markers", "x": _rounded(last[:, 0]), "y": _rounded(last[:, 1]),
                 "marker": {"size": 4, "color": "#dc2626", "opacity": 0.7}, "name": "particles"})
    steps = []
    for label, points, density in frames:
        p = np.asarray(points)
        if has_density:
            change = {"x": [_rounded(xs), _rounded(p[:, 0])], "y": [_rounded(ys), _rounded(p[:, 1])],
                      "z": [_rounded(density, 6), None]}
            traces = [0, 1]
        else:
            change, traces = {"x": [_rounded(p[:, 0])], "y": [_rounded(p[:, 1])]}, [0]
        steps.append({"label": label, "method": "restyle", "args": [change, traces]})
    layout = _axes(xlim, ylim, y_down)
    layout.update(title={"text": title, "font": {"size": 13}}, height=520,
                  sliders=[{"active": len(steps) - 1, "steps": steps, "pad": {"t": 50},
                            "currentvalue": {"prefix": "", "font": {"size": 12}}}])
    return _plotly(data, layout)


def animation(model, steps: list[engine.Step], y0, xlim, ylim, title: str, y_down: bool = False):
    """The animated view of a sampling run: up to ANIMATION_FRAMES of its Steps (the last one included), each with
    the density of the state at its level (``engine.fields.state_density`` from data samples ``y0``; none when
    ``y0`` is None). A step's state x_t has ᾱ = 1 / (1 + σ²) at its next level σ."""
    xs, ys = np.linspace(*xlim, GRID), np.linspace(*ylim, GRID)
    width = (xlim[1] - xlim[0]) / GRID  # the density's smoothing: about one grid cell
    picked = sorted(set(np.linspace(0, len(steps) - 1, min(ANIMATION_FRAMES, len(steps))).round().astype(int)))
    frames = []
    for i in picked:
        st = steps[i]
        a = 1.0 / (1.0 + st.sigma_next**2)
        dens = None if y0 is None else engine_fields.state_density(model, y0, a, xs, ys, bandwidth=width).numpy()
        frames.append((f"step {i + 1}/{len(steps)} · σ={st.sigma_next:.3g}", st.x_t.numpy(), dens))
    return trajectory_animation(frames, xs, ys, xlim, ylim, title, y_down)


def training_snapshot(points: np.ndarray, samples: np.ndarray | None, arrows: tuple | None, xlim, ylim, title: str,
                      y_down: bool = False):
    """The training points (grey), the current model's samples (red) and its score arrows (``arrows`` =
    (grid points (k, 2), unit directions (k, 2), length)), as a Plotly figure."""
    data = [{"type": "scatter", "mode": "markers", "x": _rounded(points[:, 0]), "y": _rounded(points[:, 1]),
             "marker": {"size": 3, "color": "#9ca3af", "opacity": 0.5}, "name": "training points"}]
    if arrows is not None:
        at, unit, length = arrows
        tips = at + length * unit
        xs = np.stack([at[:, 0], tips[:, 0], np.full(len(at), np.nan)], 1).ravel()
        ys = np.stack([at[:, 1], tips[:, 1], np.full(len(at), np.nan)], 1).ravel()
        data.append({"type": "scatter", "mode": "lines", "x": [None if np.isnan(v) else round(float(v), 3) for v in xs],
                     "y": [None if np.isnan(v) else round(float(v), 3) for v in ys], "line": {"width": 1.2,
                     "color": "#d97706"}, "name": "score direction"})
        data.append({"type": "scatter", "mode": "markers", "x": _rounded(tips[:, 0]), "y": _rounded(tips[:, 1]),
                     "marker": {"size": 3, "color": "#d97706"}, "showlegend": False, "hoverinfo": "skip"})
    if samples is not None:
        data.append({"type": "scatter", "mode": "markers", "x": _rounded(samples[:, 0]), "y": _rounded(samples[:, 1]),
                     "marker": {"size": 3, "color": "#dc2626", "opacity": 0.7}, "name": "model samples"})
    layout = _axes(xlim, ylim, y_down)
    layout.update(title={"text": title, "font": {"size": 13}}, height=460)
    return _plotly(data, layout)


def loss_curve(steps: list[int], losses: list[float], objective: str):
    """The training loss against the step, log scale."""
    data = [{"type": "scatter", "mode": "lines", "x": list(steps), "y": _rounded(losses, 6), "name": "loss",
             "line": {"color": "#4f46e5"}}]
    layout = {"title": {"text": f"{objective} loss (mean over each stretch of steps)", "font": {"size": 13}},
              "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "loss"}, "type": "log"},
              "height": 300, "margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "showlegend": False}
    return _plotly(data, layout)
