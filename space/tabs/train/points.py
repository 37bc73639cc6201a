"""The Train tab's points: from a drawing (the strokes' pixels) or a CSV of x,y rows, each refused with a message
saying what is wrong; and the axes that hold them."""
from __future__ import annotations

import csv
import io
import math
import os

import gradio as gr
import numpy as np

from engine.toytrain import MAX_POINTS

from ...guard import shown
from ...settings import MAX_CSV_BYTES
from ...sources import sketch_picture


def drawing_points(sketch, n: int, seed: int) -> np.ndarray:
    """``n`` points from a drawing (an image editor's value): the stroke pixels (brighter than mid-grey on the
    black canvas), drawn with replacement and jittered uniformly within their pixel, so the points follow the
    strokes' ink; (x, y) in canvas pixels, y down. gr.Error when nothing is drawn."""
    picture = sketch_picture(sketch)
    rows, cols = np.nonzero(np.asarray(picture.convert("L")) > 127) if picture is not None else ((), ())
    if len(rows) < 2:
        raise gr.Error("sketch: the canvas is empty: draw a shape on it first (white strokes on black)")
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(rows), size=n)
    return np.stack([cols[pick], rows[pick]], 1) + rng.random((n, 2))


def csv_points(path) -> np.ndarray:
    """The points of a CSV file of x,y rows (a header line is allowed); gr.Error saying what is wrong."""
    if not isinstance(path, (str, os.PathLike)):
        raise gr.Error("csv_file: upload a CSV file of x,y rows first")
    try:
        if os.path.getsize(path) > MAX_CSV_BYTES:
            raise gr.Error(f"csv_file: the file is over {MAX_CSV_BYTES // 1000:,} kB; at most {MAX_POINTS:,} x,y rows "
                           f"are used")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        raise gr.Error("csv_file: the file cannot be read as UTF-8 text; upload a CSV of x,y rows") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    points = []
    for k, row in enumerate(rows, 1):
        try:
            if len(row) != 2:
                raise ValueError
            x, y = float(row[0]), float(row[1])
        except ValueError:
            if k == 1 and len(row) == 2:  # a header
                continue
            raise gr.Error(f"csv_file: line {k} is {shown(','.join(row), 40)}; each line must be two numbers, "
                           f"x,y") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise gr.Error(f"csv_file: line {k} holds a NaN or infinite value; each line must be two finite numbers")
        points.append((x, y))
        if len(points) > MAX_POINTS:
            raise gr.Error(f"csv_file: more than {MAX_POINTS:,} points; at most {MAX_POINTS:,} rows are allowed")
    if len(points) < 2:
        raise gr.Error(f"csv_file: {len(points)} point(s); train on 2 to {MAX_POINTS:,} x,y rows")
    pts = np.asarray(points)
    if np.all(pts == pts[0]):
        raise gr.Error("csv_file: all points are identical: there is no shape to learn")
    return pts


def bounds(points: np.ndarray, mean, scale: float) -> tuple[list[float], list[float]]:
    """Axis ranges that hold the points and the prior's spread (mean ± 2.5 scale), padded by 5 %."""
    lo = np.minimum(points.min(0), np.asarray(mean) - 2.5 * scale)
    hi = np.maximum(points.max(0), np.asarray(mean) + 2.5 * scale)
    pad = 0.05 * (hi - lo)
    return [float(lo[0] - pad[0]), float(hi[0] + pad[0])], [float(lo[1] - pad[1]), float(hi[1] + pad[1])]
