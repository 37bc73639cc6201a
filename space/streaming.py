"""A streamed run's pacing and files (Generate, Compare and Edit stream): how often a live update goes out, when the
gallery is sent again, where the result files go, the time budget, and ``drive``, which turns a run of engine Steps
into the live updates of Generate's and Edit's outputs (image, gallery, gif, png, plot, status, link).

Each update is kept cheap: pictures are PNG files this module writes (zlib level 1) into a fresh folder inside
Gradio's cache (``GRADIO_TEMP_DIR``), which Gradio serves as they are instead of re-encoding, hashing and copying
them at every send; the gallery goes out only when it has new entries, at most every GALLERY_EVERY_S.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder

import engine

from . import imaging, plots
from .checks import engine_error

UPDATE_EVERY_S = 0.2  # at most this often a Generate update (5 per second)
COMPARE_EVERY_S = 0.4  # Compare sends every panel at each update: at most 2.5 per second
GALLERY_EVERY_S = 0.5  # the gallery (Gradio checks each of its files at every send) at most this often mid-run
RESULTS_FOLDER = "denoisery"  # inside Gradio's cache folder
RESULTS_MAX_AGE_S = 3600  # result folders (PNG, GIF) older than this are removed when a new one is made
N_SNAPSHOTS = 12  # x_t / x̂0 pairs in the gallery
N_GIF_FRAMES = 60


def results_dir() -> str:
    """A fresh folder for one result's files (live frames, gallery snapshots, GIF, PNG), inside Gradio's cache
    folder. Folders older than RESULTS_MAX_AGE_S are removed here (Gradio's ``delete_cache`` removes the files too)."""
    root = os.path.join(get_upload_folder(), RESULTS_FOLDER)
    os.makedirs(root, exist_ok=True)
    cutoff = time.time() - RESULTS_MAX_AGE_S
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            if os.path.getmtime(path) < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
    path = os.path.join(root, uuid.uuid4().hex)  # its files are served by URL: a name nobody can guess
    os.mkdir(path)
    return path


class Stream:
    """The clock, files and gallery of one streamed run.

    ``due(first)`` says whether a live update goes out now (the first at once, then at most one per ``every_s``,
    UPDATE_EVERY_S by default); ``over_budget()`` whether the run has spent its ``budget_s`` (checked after every
    step, with a toast saying so); ``save`` writes a picture into the run's folder (``dir``); ``snapshot`` adds one to
    the gallery, which ``gallery_update()`` gives back only when it has new entries and GALLERY_EVERY_S has passed."""

    def __init__(self, budget_s: float, every_s: float | None = None):
        self.budget_s = budget_s
        self.every_s = UPDATE_EVERY_S if every_s is None else every_s
        self.dir = results_dir()
        self.t0 = self._last = time.perf_counter()
        self._gallery_due = self.t0  # the first snapshots go out with the first update
        self._gallery_new = False
        self.gallery: list[tuple[str, str]] = []

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self, steps: int) -> str:
        return f"{steps / max(self.elapsed, 1e-9):.1f} steps/s"

    def over_budget(self) -> bool:
        elapsed = self.elapsed
        if elapsed <= self.budget_s:
            return False
        gr.Warning(f"stopped after {elapsed:.1f} s (time budget {self.budget_s:g} s per request)")
        return True

    def due(self, first: bool = False) -> bool:
        now = time.perf_counter()
        if first or now - self._last >= self.every_s:
            self._last = now
            return True
        return False

    def save(self, img, name: str) -> str:
        return imaging.save_png(img, os.path.join(self.dir, name))

    def snapshot(self, img, name: str, caption: str) -> None:
        self.gallery.append((self.save(img, name), caption))
        self._gallery_new = True

    def gallery_update(self):
        """The whole gallery when it has new entries and is due, else ``gr.skip()``."""
        now = time.perf_counter()
        if not (self._gallery_new and now >= self._gallery_due):
            return gr.skip()
        self._gallery_new, self._gallery_due = False, now + GALLERY_EVERY_S
        return list(self.gallery)


def _caption(kind: str, step: engine.Step, total: int) -> str:
    return f"{kind} · step {step.i + 1}/{total} · t={step.t} · σ={step.sigma:.3g} · NFE {step.nfe}"


def _evenly(total: int, k: int) -> set[int]:
    """``k`` step indices spread evenly over ``total`` steps, the first and the last among them."""
    return set(np.linspace(0, total - 1, min(k, total)).round().astype(int).tolist())


def drive(run, total: int, curves: list[dict], live: Stream, frames: list, cols: int | None = None,
          mark: int | None = None):
    """Drive ``run`` (an iterator of engine Steps, ``total`` of them) for a streamed handler: the gallery's x_t
    and x̂0 snapshots, the GIF's ``frames`` (kept as tensors, converted to pictures in one go at the end; the
    last step is always among them) and a live update (image, gallery, gif, png, plot, status, link) when one is
    due, with the schedule plot of ``curves`` marking ``mark`` (default: the current step). Mid-run the downloads
    and the link are None: the last run's are cleared when this one starts (gr.skip() would cost Gradio ~1 ms per
    output, as it rebuilds the component's config). Stops at the time budget; returns the last Step. ``cols``:
    tiles per row of a picture (default: a near-square grid)."""
    snaps, gif_at = _evenly(total, N_SNAPSHOTS), _evenly(total, N_GIF_FRAMES)
    size = 160 if cols is None else 480  # a strip of images gets the width of a few
    step = None
    try:
        for step in run:
            if step.i in snaps:  # saved once as files, so re-sending the gallery re-encodes nothing
                for kind, tag, x in (("x_t", "xt", step.x_t), ("x̂0", "x0", step.x0_pred)):
                    live.snapshot(imaging.display(x, size, cols), f"{tag}_{step.i:04d}.png",
                                  _caption(kind, step, total))
            if step.i in gif_at:
                frames.append(step.x_t.detach().clone())
            if step.i + 1 == total:
                continue
            if live.over_budget():
                break
            if live.due(first=step.i == 0):
                # the first frame goes out at once, with the plot only if it is kept (a first drawing waits)
                plot = plots.marked(curves, step.t if mark is None else mark) if step.i > 0 or plots.is_kept(
                    curves) else gr.skip()
                status = (f"step {step.i + 1}/{total} · t={step.t} · σ={step.sigma:.3g} · NFE {step.nfe} · "
                          f"{live.rate(step.i + 1)} · {live.elapsed:.1f} s")
                frame = live.save(imaging.display(step.x_t, imaging.DISPLAY_SIZE * (1 if cols is None else 3), cols),
                                  f"live_{step.i:04d}.png")
                yield frame, live.gallery_update(), None, None, plot, status, None
    except ValueError as err:  # a sampler's own option check runs at its first step
        raise engine_error(err) from None
    if step is None:
        raise gr.Error("the sampler produced no steps")
    if step.i not in gif_at:
        frames.append(step.x_t.detach().clone())
    return step


def cost(nfe: int, rows: int) -> str:
    """A run's cost for its status: its network evaluations, and the network rows per sample when an evaluation
    takes more than one (guidance: ε̂(x, ∅) and ε̂(x, c), 2 rows per evaluation, ``engine.models.rows_per_sample``)."""
    return f"NFE {nfe}" + (f" · {nfe * rows} network rows per sample" if rows > 1 else "")


def result_files(live: Stream, x: torch.Tensor, frames: list, settings: dict, stem: str,
                 cols: int | None = None) -> tuple[str, str, str]:
    """A finished run's files in ``live``'s folder: the result ``x`` upscaled for the page, the GIF of
    ``frames`` and the PNG of ``x`` at native resolution with ``settings`` in its text chunk. Returns their
    paths (image, gif, png)."""
    final = imaging.grid(x, cols=cols)
    png = imaging.png_with_settings(final, dict(settings, app="denoisery"), live.dir, stem)
    size = imaging.DISPLAY_SIZE * (1 if cols is None else 3)
    gif = imaging.gif([imaging.upscale(f, size) for f in imaging.grids(frames, cols=cols)], live.dir, stem)
    return live.save(imaging.upscale(final, size), "final.png"), gif, png


class KeptResult:
    """A finished Generate result held in memory (its files' bytes) and served again as files: the default
    settings' result that a page opened without a result link shows at once.

    The files are written into a results folder once and served from there; when they are older than half of
    ``RESULTS_MAX_AGE_S`` (after which the app and Gradio remove them) or gone, they are written again into
    a fresh folder, so every file served has at least half an hour to live."""

    def __init__(self, final: tuple):
        image, gallery, gif, png, self.plot, status, self.query = final
        self.status = f"{status} · kept from this server's first run of the default settings"
        paths = [image, gif, png, *(path for path, _ in gallery)]
        self.files = {}
        for path in paths:
            with open(path, "rb") as f:
                self.files[os.path.basename(path)] = f.read()
        self.names = [os.path.basename(p) for p in paths[:3]]
        self.gallery = [(os.path.basename(path), caption) for path, caption in gallery]
        self.dir, self.written = None, 0.0

    def outputs(self, base: str) -> tuple:
        """Generate's outputs (image, gallery, gif, png, plot, status, link), the link under the page's ``base``."""
        if self.dir is None or time.time() - self.written > RESULTS_MAX_AGE_S / 2 or not all(
                os.path.exists(os.path.join(self.dir, name)) for name in self.files):
            folder = results_dir()
            for name, data in self.files.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
            self.dir, self.written = folder, time.time()
        image, gif, png = (os.path.join(self.dir, name) for name in self.names)
        gallery = [(os.path.join(self.dir, name), caption) for name, caption in self.gallery]
        return image, gallery, gif, png, self.plot, self.status, base + self.query
