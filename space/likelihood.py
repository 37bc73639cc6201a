"""The Likelihood tab's endpoint, ``/likelihood``: an image's bits/dim under a model, per schedule, with the DDPM
variational bound drawn term by term over t (where the bound comes from), and for a score model the
probability-flow ODE's figure beside it. The engine computes (``engine.log_likelihood``, ``engine.bits_per_dim``);
this module checks the request, bounds it, converts nats to bits/dim (÷ D ln 2) and draws.

Bounds: at most ``MAX_SCHEDULES`` schedules, each a chain of at most ``MAX_STEPS`` levels, and at most the app's
network-evaluation budget per request (the VLB takes one evaluation per level; the ODE, adaptive, is bounded by the
time budget, checked after each schedule); one evaluation per browser session at a time (a second is refused, not
queued), two at once server-wide. A result carries no share link: its source may be an upload or a sketch, which a
link cannot carry, and the app's links restore one tab's scalar settings (space/settings.py).
"""
from __future__ import annotations

import math
import threading
import time

import gradio as gr
import torch

import engine
from engine.likelihood import PIXEL_LEVELS
from engine.likelihood import IMAGE_ODE_TOLERANCE as ODE_TOLERANCE  # rtol = atol, as on the results page

from . import imaging, plots
from .engine_thread import on_engine_thread
from .guard import shown
from .handlers import FORWARD_DATASETS, Handlers, _err
from .settings import EDIT_SOURCES, MAX_INDEX, MAX_STEPS, SCHEDULES, as_int, choice

MAX_SCHEDULES = 4
DEFAULT_SCHEDULES = ["linear", "cosine"]
TABLE_HEADERS = ["schedule", "method", "bits/dim", "L_T", "Σ L_{t−1}", "L_0", "NFE", "seconds"]


def terms_figure(parts: list[dict], title: str):
    """Each schedule's VLB term L_{t−1} against t, in bits/dim on a log axis: one curve per schedule."""
    fig = plots._mpl()(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for k, p in enumerate(q for q in parts if q["method"] == "vlb"):
        ax.plot(p["t"], p["per_t"], color=plots.COLORS[k % len(plots.COLORS)], lw=1.2,
                label=f"{p['schedule']}: {p['bpd']:.3f} bits/dim")
    ax.set_yscale("log")
    ax.set_xlabel("t (level of the chain)")
    ax.set_ylabel("L_{t−1} (bits/dim)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _row(p: dict) -> list:
    terms = [round(p[k], 4) for k in ("prior", "diffusion", "decoder")] if p["method"] == "vlb" else [None] * 3
    return [p["schedule"], p["method"], round(p["bpd"], 4), *terms, p["nfe"], round(p["seconds"], 2)]


class LikelihoodHandler:
    """``likelihood`` (the endpoint) and ``likelihood_settings`` (its checks, the event's validator) over the app's
    ``Handlers`` (models, image sources, budgets)."""

    def __init__(self, handlers: Handlers):
        self.h = handlers
        self._running: set[str] = set()  # sessions with an evaluation under way
        self._lock = threading.Lock()

    def likelihood_settings(self, model, source, dataset, index, upload, sketch, schedules, steps, seed) -> dict:
        """The request's checks, or gr.Error naming the parameter and what is allowed."""
        s = {"model": self.h.model_name(model), "source": choice("source", source, EDIT_SOURCES),
             "steps": as_int("steps", steps, 1, MAX_STEPS), "seed": as_int("seed", seed, 0, engine.MAX_SEED)}
        if not isinstance(schedules, (list, tuple)) or not 1 <= len(schedules) <= MAX_SCHEDULES:
            got = f"{len(schedules)}" if isinstance(schedules, (list, tuple)) else shown(schedules)
            raise gr.Error(f"schedules must name 1 to {MAX_SCHEDULES} schedules; got {got}")
        s["schedules"] = list(dict.fromkeys(choice("schedules", name, SCHEDULES) for name in schedules))
        if s["source"] == "dataset":
            s["dataset"] = choice("dataset", dataset, FORWARD_DATASETS)
            s["index"] = as_int("index", index, 0, MAX_INDEX)
        elif (upload if s["source"] == "upload" else sketch) is None:
            todo = "upload an image" if s["source"] == "upload" else "draw on the sketch canvas"
            raise gr.Error(f"source is {s['source']}: {todo} first, or choose another source")
        levels = len(s["schedules"]) * s["steps"]
        if levels > self.h.max_nfe:
            raise gr.Error(f"{len(s['schedules'])} schedules × {s['steps']} steps = {levels:,} network evaluations; "
                           f"the limit per request is {self.h.max_nfe:,}: use fewer steps or schedules")
        return s

    def _claim(self, request: gr.Request | None) -> str | None:
        session = getattr(request, "session_hash", None)
        with self._lock:
            if session is not None and session in self._running:
                raise gr.Error("a likelihood evaluation is already running in this browser session: wait for it to "
                               "finish or stop it")
            if session is not None:
                self._running.add(session)
        return session

    def likelihood(self, model, source="dataset", dataset="mnist", index=0, upload=None, sketch=None,
                   schedules=tuple(DEFAULT_SCHEDULES), steps=1000, seed=0, request: gr.Request = None,
                   progress=gr.Progress()):
        """Bits/dim of one image (a dataset image, ``upload``: an uploaded file's path, or ``sketch``: an image
        editor's value) under ``model``, per schedule: the VLB over ``steps`` levels (and, for a score model, the
        probability-flow ODE). Streams (source image, plot of the VLB terms over t, table, status) after each
        schedule."""
        s = self.likelihood_settings(model, source, dataset, index, upload, sketch, schedules, steps, seed)
        session = self._claim(request)
        try:
            yield from self._evaluate(s, upload, sketch, progress)
        finally:
            if session is not None:
                with self._lock:
                    self._running.discard(session)

    @on_engine_thread
    def _evaluate(self, s: dict, upload, sketch, progress):
        net = self.h._model(s["model"])
        shape = tuple(net.data_shape)
        if len(shape) != 3:
            raise gr.Error(f"model {s['model']} does not make images; choose an image model")
        x0, described = self.h._edit_source(s, shape, upload, sketch)
        picture = imaging.display(x0, 160)
        dim = x0[0].numel()
        methods = ["vlb", "ode"] if self.h.store.card(s["model"]).get("objective") == "dsm" else ["vlb"]
        todo = [(schedule, method) for schedule in s["schedules"] for method in methods]
        title = f"{s['model']} · {described}: where the bound comes from"
        parts: list[dict] = []
        start = time.perf_counter()
        stopped = ""
        for k, (schedule, method) in enumerate(todo):
            progress((k, len(todo)), desc=f"{method} · {schedule}", unit="schedules")
            t0 = time.perf_counter()
            try:
                if method == "vlb":
                    r = engine.log_likelihood(net, x0, schedule=schedule, method="vlb", steps=s["steps"],
                                              seed=s["seed"], bins=PIXEL_LEVELS)
                    scale = 1 / (dim * math.log(2))
                    part = {"bpd": float(-r.log_p[0]) * scale, "prior": float(r.terms["prior"][0]) * scale,
                            "diffusion": float(r.terms["diffusion"].sum()) * scale,
                            "decoder": float(r.terms["decoder"][0]) * scale, "t": r.terms["t"],
                            "per_t": (r.terms["diffusion"][:, 0] * scale).tolist(), "nfe": r.nfe}
                else:
                    bpd = engine.bits_per_dim(net, x0, schedule=schedule, method="ode", seed=s["seed"],
                                              rtol=ODE_TOLERANCE, atol=ODE_TOLERANCE)
                    part = {"bpd": float(bpd[0]), "nfe": None}  # adaptive: bits_per_dim does not report it
            except ValueError as err:
                raise _err(err) from None
            parts.append({"schedule": schedule, "method": method, "seconds": time.perf_counter() - t0, **part})
            elapsed = time.perf_counter() - start
            if k + 1 < len(todo) and elapsed > self.h.time_budget_s:
                stopped = f"stopped after {elapsed:.1f} s (time budget {self.h.time_budget_s:g} s per request) · "
                gr.Warning(stopped.rstrip(" ·"))
            done = k + 1 == len(todo) or bool(stopped)
            figures = " · ".join(f"{p['schedule']} {p['method']} {p['bpd']:.3f}" for p in parts)
            status = (f"{'done' if done else 'running'}: {s['model']} · {described} · {stopped}bits/dim: {figures} · "
                      f"{len(parts)}/{len(todo)} · {elapsed:.1f} s")
            yield picture, terms_figure(parts, title), [_row(p) for p in parts], status
            if stopped:
                return

