"""One streamed run's pacing and files, shared by Generate and Compare: how often a live update goes out, when the
gallery is sent again, where the result files go, and the time budget.

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
from gradio.utils import get_upload_folder

from . import imaging

UPDATE_EVERY_S = 0.2  # at most this often a Generate update (5 per second)
COMPARE_EVERY_S = 0.4  # Compare sends every panel at each update: at most 2.5 per second
GALLERY_EVERY_S = 0.5  # the gallery (Gradio checks each of its files at every send) at most this often mid-run
RESULTS_FOLDER = "denoisery"  # inside Gradio's cache folder
RESULTS_MAX_AGE_S = 3600  # result folders (PNG, GIF) older than this are removed when a new one is made


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
