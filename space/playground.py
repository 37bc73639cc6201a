"""The Train tab's handlers: train a 2-D model on a toy, a drawing or a CSV of points, live, per browser session.

Training is ``engine.train_toy``; sampling is ``engine.fields.particles``; the pictures are ``plots``'s. What this
module adds is the app's side: turning a drawing or a CSV into points, the bounds of a public server, and the
models trained so far, one per browser session (``Sessions``; never written to the checkpoint folder unless the
user exports it, and then into a download folder of its own).

Bounds: a training request runs at most MAX_TRAIN_STEPS steps and MAX_TRAIN_SECONDS of training time, on at most
engine.toytrain.MAX_POINTS points; one training per browser session at a time and MAX_TRAININGS on the server at
once (a request beyond either is refused, before the queue, with a message saying so); Stop ends a training
within one step (the handler looks at the session's stop flag between steps: train_toy reports every step), and
the model trained so far is kept.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import torch

import engine
from engine import fields as engine_fields
from engine.data import TOYS, toy_sample
from engine.toytrain import MAX_POINTS, train_toy

from . import plots, streaming
from .engine_thread import on_engine_thread
from .guard import shown
from .settings import SAMPLERS, SCHEDULES, as_float, as_int, choice

log = logging.getLogger("denoisery")

SOURCES = ["draw", "toy", "csv"]
OBJECTIVES = ["ddpm", "dsm"]
MAX_TRAIN_STEPS = 5000
MAX_TRAIN_SECONDS = 60.0
MAX_TRAININGS = 2  # at once on the server
MAX_SESSIONS = 64  # browser sessions whose trained model is kept (the least recently used idle one goes first)
POINTS = (100, MAX_POINTS)  # points taken from a toy or a drawing
WIDTH = (16, 256)
LR = (1e-4, 5e-2)
BATCH = (16, 1024)
CANVAS = 400  # the drawing canvas, pixels a side
MAX_CSV_BYTES = 1_000_000
SNAPSHOT_EVERY = 250  # steps between the live views of samples and score arrows
LOSS_EVERY = 10  # steps averaged into one point of the loss curve
UPDATE_EVERY_S = 0.5  # at most this often a live update
SNAPSHOT_N = 500  # samples in a live view
ARROW_SIGMA = 0.3  # the level of the live view's score arrows (σ of the standardised data)
SAMPLE_STEPS = (1, 200)
SAMPLE_PARTICLES = (10, 2000)
ANIMATION_FRAMES = 40
GRID = 40  # density grid points a side


@dataclass
class Session:
    """One browser session's playground: its model (None before the first training), the training data, whether
    it is training now and the flag that stops it."""

    model: object = None
    points: np.ndarray | None = None
    y_down: bool = False
    training: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    step: int = 0


class Sessions:
    """The sessions' playgrounds (LRU, at most MAX_SESSIONS) and the server-wide count of trainings."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_trainings: int = MAX_TRAININGS):
        self.max_sessions, self.max_trainings = max_sessions, max_trainings
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Session | None:
        with self._lock:
            return self._sessions.get(key)

    def running(self) -> int:
        with self._lock:
            return sum(s.training for s in self._sessions.values())

    def busy(self, key: str) -> str | None:
        """Why a training for session ``key`` cannot start now (None when it can)."""
        with self._lock:
            return self._busy(key)

    def _busy(self, key: str) -> str | None:
        s = self._sessions.get(key)
        if s is not None and s.training:
            return ("a training is already running in this browser session: wait for it to end or press Stop "
                    "(one training per session at a time)")
        if sum(s.training for s in self._sessions.values()) >= self.max_trainings:
            return (f"the server is busy: {self.max_trainings} trainings are running (at most {self.max_trainings} "
                    f"at once); try again in a minute")
        return None

    def start(self, key: str) -> Session:
        """Mark session ``key`` as training (made if new), or gr.Error when ``busy``."""
        with self._lock:
            why = self._busy(key)
            if why:
                raise gr.Error(why)
            s = self._sessions.get(key) or Session()
            s.training, s.step = True, 0
            s.stop.clear()
            self._sessions[key] = s
            self._sessions.move_to_end(key)
            idle = [k for k, v in self._sessions.items() if not v.training]
            while len(self._sessions) > self.max_sessions and idle:
                del self._sessions[idle.pop(0)]
            return s

    def finish(self, key: str) -> None:
        with self._lock:
            s = self._sessions.get(key)
            if s is not None:
                s.training = False

    def forget(self, key: str) -> None:
        """Drop session ``key``'s model (its page closed); a training still running is stopped."""
        with self._lock:
            s = self._sessions.pop(key, None)
        if s is not None:
            s.stop.set()


def session_key(request: gr.Request | None) -> str:
    """The browser session's key (one per page load); "local" for a call without a request (scripts, tests)."""
    return getattr(request, "session_hash", None) or "local"


# ------------------------------------------------------------------------------------------ the points ---

def drawing_points(sketch, n: int, seed: int) -> np.ndarray:
    """``n`` points from a drawing (an image editor's value): the stroke pixels (brighter than mid-grey on the
    black canvas), drawn with replacement and jittered uniformly within their pixel, so the points follow the
    strokes' ink; (x, y) in canvas pixels, y down. gr.Error when nothing is drawn."""
    picture = sketch.get("composite") if isinstance(sketch, dict) else None
    if picture is None:
        raise gr.Error("sketch: the canvas is empty: draw a shape on it first (white strokes on black)")
    ink = np.asarray(picture.convert("L")) > 127
    rows, cols = np.nonzero(ink)
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


def animation(model, steps: list[engine.Step], y0, xlim, ylim, title: str, y_down: bool = False):
    """The animated view of a sampling run: up to ANIMATION_FRAMES of its Steps (the last one included), each with
    the density of the state at its level (``engine.fields.state_density`` from data samples ``y0``; none when
    ``y0`` is None)."""
    xs, ys = np.linspace(*xlim, GRID), np.linspace(*ylim, GRID)
    width = (xlim[1] - xlim[0]) / GRID  # the density's smoothing: about one grid cell
    picked = sorted(set(np.linspace(0, len(steps) - 1, min(ANIMATION_FRAMES, len(steps))).round().astype(int)))
    frames = []
    for i in picked:
        st = steps[i]
        a = 1.0 / (1.0 + st.sigma_next**2)
        dens = None if y0 is None else engine_fields.state_density(model, y0, a, xs, ys, bandwidth=width).numpy()
        frames.append((f"step {i + 1}/{len(steps)} · σ={st.sigma_next:.3g}", st.x_t.numpy(), dens))
    return plots.trajectory_animation(frames, xs, ys, xlim, ylim, title, y_down)


# ------------------------------------------------------------------------------------------ handlers ---

class Playground:
    """The Train tab's endpoints over one ``Sessions`` store (their parameter names are the API's)."""

    def __init__(self, sessions: Sessions | None = None, max_seconds: float = MAX_TRAIN_SECONDS):
        self.sessions = sessions or Sessions()
        self.max_seconds = max_seconds

    def train_settings(self, source, toy, sketch, csv_file, n_points, objective, schedule, width, steps, lr,
                       batch_size, seed, request: gr.Request = None) -> dict:
        """Training's checks: its settings with the points ((N, 2) array, y_down), or gr.Error naming what was
        wrong and what is allowed (the session's and the server's training slots included)."""
        s = {"source": choice("source", source, SOURCES), "objective": choice("objective", objective, OBJECTIVES),
             "schedule": choice("schedule", schedule, SCHEDULES), "width": as_int("width", width, *WIDTH),
             "steps": as_int("steps", steps, 1, MAX_TRAIN_STEPS), "lr": as_float("lr", lr, *LR),
             "batch_size": as_int("batch_size", batch_size, *BATCH), "seed": as_int("seed", seed, 0, engine.MAX_SEED)}
        if s["source"] == "csv":
            s["points"], s["y_down"] = csv_points(csv_file), False
        else:
            n = as_int("n_points", n_points, *POINTS)
            if s["source"] == "toy":
                name = choice("toy", toy, list(TOYS))
                s["points"] = toy_sample(name, n, torch.Generator().manual_seed(s["seed"])).double().numpy()
                s["y_down"] = False
            else:
                s["points"], s["y_down"] = drawing_points(sketch, n, s["seed"]), True
        why = self.sessions.busy(session_key(request))
        if why:
            raise gr.Error(why)
        return s

    @on_engine_thread
    def train(self, source="toy", toy="moons", sketch=None, csv_file=None, n_points=2000, objective="ddpm",
              schedule="cosine", width=128, steps=1000, lr=1e-2, batch_size=512, seed=0,
              request: gr.Request = None):
        """Train on the chosen points, streaming (loss curve, samples and score arrows, status). The session keeps
        the model when the training ends, is stopped (Stop: within a step) or reaches its time limit."""
        s = self.train_settings(source, toy, sketch, csv_file, n_points, objective, schedule, width, steps, lr,
                                batch_size, seed, request)
        key = session_key(request)
        try:
            run = train_toy(s["points"], objective=s["objective"], schedule=s["schedule"], steps=s["steps"],
                            seed=s["seed"], hidden=s["width"], lr=s["lr"], batch_size=s["batch_size"],
                            report_every=1, max_seconds=self.max_seconds, name="playground")
        except ValueError as err:
            raise gr.Error(str(err)) from None
        session = self.sessions.start(key)
        session.points, session.y_down, session.model = s["points"], s["y_down"], None
        std = None
        try:
            curve_x, curve_y, chunk = [], [], []
            last_update, view, record, why = 0.0, None, None, None
            for record in run:
                session.model, session.step = record.model, record.step
                if std is None:
                    std = record.model.card["data"]["standardised"]
                    xlim, ylim = bounds(s["points"], std["mean"], std["scale"])
                chunk.append(record.loss)
                if len(chunk) == LOSS_EVERY or record.done:
                    curve_x.append(record.step)
                    curve_y.append(sum(chunk) / len(chunk))
                    chunk.clear()
                why = "stopped" if session.stop.is_set() else record.stopped
                if record.step % SNAPSHOT_EVERY == 0 or why:
                    view = self._view(record.model, s, xlim, ylim, record.step)
                now = time.perf_counter()
                if why or view is not None or now - last_update >= UPDATE_EVERY_S:
                    last_update = now
                    yield (plots.loss_curve(curve_x, curve_y, s["objective"]), view if view is not None else
                           gr.skip(), self._status(record, s, why))
                    view = None
                if why:
                    break
        finally:
            self.sessions.finish(key)
            run.close()

    @staticmethod
    def _status(record, s: dict, why: str | None) -> str:
        head = {None: "training", "steps": "done", "max_seconds": f"time limit ({MAX_TRAIN_SECONDS:g} s) reached",
                "stopped": "stopped"}[why]
        tail = " · the model is kept for sampling and export" if why else ""
        return (f"{head}: step {record.step}/{s['steps']} · loss {record.loss:.4f} · {record.seconds:.1f} s of "
                f"training · {len(s['points']):,} points · {s['objective']}{tail}")

    @staticmethod
    def _view(model, s: dict, xlim, ylim, step: int):
        """The live view: the model's samples (ancestral DDPM, 50 cosine steps) and score arrows at σ =
        ARROW_SIGMA over the training points."""
        samples = engine.sample(model, schedule="cosine", sampler="ddpm", steps=50, seed=s["seed"],
                                n=SNAPSHOT_N).numpy()
        gx, gy = np.linspace(*xlim, 15), np.linspace(*ylim, 15)
        at = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        score = engine_fields.state_score(model, at, 1.0 / (1.0 + ARROW_SIGMA**2)).double().numpy()
        unit = score / np.maximum(np.linalg.norm(score, axis=1, keepdims=True), 1e-12)
        length = 0.8 * min(gx[1] - gx[0], gy[1] - gy[0])
        return plots.training_snapshot(s["points"], samples, (at, unit, length), xlim, ylim,
                                       f"step {step}: samples (red) and score directions at σ = {ARROW_SIGMA}",
                                       s["y_down"])

    def stop(self, request: gr.Request = None) -> str:
        """Stop this session's training: it ends within one step and keeps its model."""
        session = self.sessions.get(session_key(request))
        if session is None or not session.training:
            return "no training is running in this session"
        session.stop.set()
        return f"stopping at step {session.step}…"

    def _trained(self, request) -> Session:
        session = self.sessions.get(session_key(request))
        if session is None or session.model is None:
            raise gr.Error("no trained model in this session yet: train one first (Train button)")
        if session.training:
            raise gr.Error("a training is running in this session: wait for it to end or press Stop first")
        return session

    def sample_settings(self, sampler, schedule, steps, particles, seed, request: gr.Request = None) -> dict:
        """Sampling's checks: its settings, or gr.Error (no trained model in the session included)."""
        s = {"sampler": choice("sampler", sampler, SAMPLERS), "schedule": choice("schedule", schedule, SCHEDULES),
             "steps": as_int("steps", steps, *SAMPLE_STEPS), "particles": as_int("particles", particles,
                                                                                 *SAMPLE_PARTICLES),
             "seed": as_int("seed", seed, 0, engine.MAX_SEED)}
        self._trained(request)
        return s

    @on_engine_thread
    def sample(self, sampler="ddpm", schedule="cosine", steps=100, particles=1000, seed=0,
               request: gr.Request = None):
        """Sample from this session's model: the animated trajectories over the density of x_t, and a status."""
        s = self.sample_settings(sampler, schedule, steps, particles, seed, request)
        session = self._trained(request)
        model, t0 = session.model, time.perf_counter()
        try:
            run = engine_fields.particles(model, schedule=s["schedule"], sampler=s["sampler"], steps=s["steps"],
                                          seed=s["seed"], n=s["particles"])
        except (ValueError, TypeError) as err:
            raise gr.Error(str(err)) from None
        std = model.card["data"]["standardised"]
        xlim, ylim = bounds(session.points, std["mean"], std["scale"])
        fig = animation(model, run, session.points, xlim, ylim,
                        f"{s['sampler']} · {s['schedule']} · {len(run)} steps: drag the slider to move in time",
                        session.y_down)
        return fig, (f"{s['particles']} particles · {len(run)} steps · NFE {run[-1].nfe} · "
                     f"{time.perf_counter() - t0:.2f} s")

    def export(self, request: gr.Request = None) -> list[str]:
        """This session's model as a checkpoint (NAME.safetensors and NAME.json, the card with its training
        options), written to a download folder of its own; ``engine.load_model(NAME, directory=folder)`` loads it."""
        model = self._trained(request).model
        name = f"playground-{model.card['objective']}-{model.card['training']['steps']}steps"
        folder = streaming.results_dir()
        weights = engine.save_model(model, name, folder)
        return [str(weights), str(weights.with_suffix(".json"))]

    def forget(self, request: gr.Request = None) -> None:
        """The page closed: its session's model goes."""
        self.sessions.forget(session_key(request))
