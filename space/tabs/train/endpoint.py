"""The Train tab's endpoints: train a 2-D model on a toy, a drawing or a CSV of points, live, per browser session;
stop it; sample it; export it.

Training is ``engine.train_toy``; sampling is ``engine.fields.particles``; the pictures are
space/plotly_figures.py's. What this module adds is the app's side: the bounds of a public server and the models
trained so far, one per browser session (``Sessions``; never written to the checkpoint folder unless the user
exports it, and then into a download folder of its own).

Bounds: a training request runs at most MAX_TRAIN_STEPS steps and MAX_TRAIN_SECONDS of training time, on at most
engine.toytrain.MAX_POINTS points; one training per browser session at a time and MAX_TRAININGS on the server at
once (a request beyond either is refused, before the queue, with a message saying so); Stop ends a training
within one step (the handler looks at the session's stop flag between steps: train_toy reports every step), and
the model trained so far is kept.
"""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
import torch

import engine
from engine import fields as engine_fields
from engine.data import TOYS, toy_sample
from engine.straightness import straightness
from engine.toytrain import train_toy

from ... import plotly_figures, streaming
from ...checks import as_float, as_int, choice
from ...context import session_key
from ...engine_thread import on_engine_thread
from ...settings import (MAX_TRAIN_SECONDS, MAX_TRAIN_STEPS, SAMPLE_PARTICLES, SAMPLE_STEPS, SAMPLERS, SCHEDULES,
                         TRAIN_BATCH, TRAIN_LR, TRAIN_OBJECTIVES, TRAIN_POINTS, TRAIN_SOURCES, TRAIN_WIDTH)
from .points import bounds, csv_points, drawing_points
from .sessions import Session, Sessions

SNAPSHOT_EVERY = 250  # steps between the live views of samples and score arrows
LOSS_EVERY = 10  # steps averaged into one point of the loss curve
UPDATE_EVERY_S = 0.5  # at most this often a live update
SNAPSHOT_N = 500  # samples in a live view
ARROW_SIGMA = 0.3  # the level of the live view's score arrows (σ of the standardised data)
# the straightness figure of a trained model (engine.straightness: Euler paths in t): 2-D, so 50 steps of 500 paths
# take milliseconds and resolve it to its second digit
STRAIGHTNESS = {"steps": 50, "n": 500}


class Playground:
    """The Train tab's endpoints over one ``Sessions`` store (their parameter names are the API's)."""

    def __init__(self, sessions: Sessions | None = None, max_seconds: float = MAX_TRAIN_SECONDS):
        self.sessions = sessions or Sessions()
        self.max_seconds = max_seconds

    def train_settings(self, source, toy, sketch, csv_file, n_points, objective, schedule, width, steps, lr,
                       batch_size, seed, request: gr.Request = None) -> dict:
        """Training's checks: its settings with the points ((N, 2) array, y_down), or gr.Error naming what was
        wrong and what is allowed (the session's and the server's training slots included)."""
        s = {"source": choice("source", source, TRAIN_SOURCES),
             "objective": choice("objective", objective, TRAIN_OBJECTIVES),
             "schedule": choice("schedule", schedule, SCHEDULES), "width": as_int("width", width, *TRAIN_WIDTH),
             "steps": as_int("steps", steps, 1, MAX_TRAIN_STEPS), "lr": as_float("lr", lr, *TRAIN_LR),
             "batch_size": as_int("batch_size", batch_size, *TRAIN_BATCH),
             "seed": as_int("seed", seed, 0, engine.MAX_SEED)}
        if s["source"] == "csv":
            s["points"], s["y_down"] = csv_points(csv_file), False
        else:
            n = as_int("n_points", n_points, *TRAIN_POINTS)
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
                    yield (plotly_figures.loss_curve(curve_x, curve_y, s["objective"]), view if view is not None else
                           gr.skip(), self._status(record, s, why))
                    view = None
                if why:
                    break
        finally:
            self.sessions.finish(key)
            run.close()

    @staticmethod
    def _status(record, s: dict, why: str | None) -> str:
        """The training's status; when it ends, with the straightness of the model's paths (``straightness``)."""
        head = {None: "training", "steps": "done", "max_seconds": f"time limit ({MAX_TRAIN_SECONDS:g} s) reached",
                "stopped": "stopped"}[why]
        tail = (f" · path straightness S = {straightness(record.model, **STRAIGHTNESS):.3g}"
                " · the model is kept for sampling and export") if why else ""
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
        return plotly_figures.training_snapshot(s["points"], samples, (at, unit, length), xlim, ylim,
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
        fig = plotly_figures.animation(model, run, session.points, xlim, ylim,
                        f"{s['sampler']} · {s['schedule']} · {len(run)} steps: drag the slider to move in time",
                        session.y_down)
        return fig, (f"{s['particles']} particles · {len(run)} steps · NFE {run[-1].nfe} · "
                     f"{time.perf_counter() - t0:.2f} s · the model's path straightness S = "
                     f"{straightness(model, **STRAIGHTNESS):.3g} (0: straight lines)")

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
