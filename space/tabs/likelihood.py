"""The Likelihood tab: an image's bits/dim under a model, per schedule, with the DDPM variational bound drawn term by
term over t (where the bound comes from), and for a score model the probability-flow ODE's figure beside it
(endpoint ``/likelihood``). The engine computes (``engine.log_likelihood``, ``engine.bits_per_dim``); this module
checks the request, bounds it, converts nats to bits/dim (÷ D ln 2) and draws.

Bounds: at most ``MAX_LIKELIHOOD_SCHEDULES`` schedules, each a chain of at most ``MAX_STEPS`` levels, and at most the
app's network-evaluation budget per request (the VLB takes one evaluation per level; the ODE, adaptive, is bounded
by the time budget, checked after each schedule); one evaluation per browser session at a time (a second is refused,
not queued), two at once server-wide. A result carries no share link: its source may be an upload or a sketch,
which a link cannot carry.
"""
from __future__ import annotations

import math
import time

import gradio as gr

import engine
from engine.likelihood import IMAGE_ODE_TOLERANCE as ODE_TOLERANCE  # rtol = atol, as on the results page
from engine.likelihood import PIXEL_LEVELS

from .. import imaging, plots
from ..checks import as_int, choice, engine_error
from ..context import AppContext, OnePerSession
from ..engine_thread import on_engine_thread
from ..guard import shown, validator
from ..room import Room
from ..settings import DEFAULT_MODEL, MAX_LIKELIHOOD_SCHEDULES, MAX_STEPS, SCHEDULES, WORKERS, pick
from ..sources import source_image, source_settings
from ..widgets import image_source, model_picker, run_controls, seed_number, stops

DEFAULT_SCHEDULES = ["linear", "cosine"]
TABLE_HEADERS = ["schedule", "method", "bits/dim", "L_T", "Σ L_{t−1}", "L_0", "NFE", "seconds"]


def terms_figure(parts: list[dict], title: str):
    """Each schedule's VLB term L_{t−1} against t, in bits/dim on a log axis: one curve per schedule."""
    fig = plots.figure_class()(figsize=(6.4, 3.6))
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


def _measure(net, x0, schedule: str, method: str, s: dict) -> dict:
    """One schedule's figure: the VLB's bits/dim and its terms (L_T, Σ L_{t−1}, L_0 and L_{t−1} over t, each
    nats ÷ D ln 2), or the probability-flow ODE's bits/dim."""
    if method == "ode":
        bpd = engine.bits_per_dim(net, x0, schedule=schedule, method="ode", seed=s["seed"], rtol=ODE_TOLERANCE,
                                  atol=ODE_TOLERANCE)
        return {"bpd": float(bpd[0]), "nfe": None}  # adaptive: bits_per_dim does not report it
    r = engine.log_likelihood(net, x0, schedule=schedule, method="vlb", steps=s["steps"], seed=s["seed"],
                              bins=PIXEL_LEVELS)
    scale = 1 / (x0[0].numel() * math.log(2))
    return {"bpd": float(-r.log_p[0]) * scale, "prior": float(r.terms["prior"][0]) * scale,
            "diffusion": float(r.terms["diffusion"].sum()) * scale, "decoder": float(r.terms["decoder"][0]) * scale,
            "t": r.terms["t"], "per_t": (r.terms["diffusion"][:, 0] * scale).tolist(), "nfe": r.nfe}


class Likelihood:
    """``likelihood`` (the endpoint) and ``settings`` (its checks, the event's validator) over the app's models,
    image sources and budgets; one evaluation per browser session at a time."""

    def __init__(self, app: AppContext):
        self.app = app
        self.one_per_session = OnePerSession("a likelihood evaluation is already running in this browser session: "
                                             "wait for it to finish or stop it")

    def settings(self, model, source, dataset, index, upload, sketch, schedules, steps, seed) -> dict:
        """The request's checks, or gr.Error naming the parameter and what is allowed."""
        s = {"model": self.app.model_name(model), "steps": as_int("steps", steps, 1, MAX_STEPS),
             "seed": as_int("seed", seed, 0, engine.MAX_SEED)}
        if not isinstance(schedules, (list, tuple)) or not 1 <= len(schedules) <= MAX_LIKELIHOOD_SCHEDULES:
            got = f"{len(schedules)}" if isinstance(schedules, (list, tuple)) else shown(schedules)
            raise gr.Error(f"schedules must name 1 to {MAX_LIKELIHOOD_SCHEDULES} schedules; got {got}")
        s["schedules"] = list(dict.fromkeys(choice("schedules", name, SCHEDULES) for name in schedules))
        s.update(source_settings(source, dataset, index, upload, sketch))
        self.app.check_budget(f"{len(s['schedules'])} schedules × {s['steps']} steps =",
                              len(s["schedules"]) * s["steps"], "steps or schedules")
        return s

    def likelihood(self, model, source="dataset", dataset="mnist", index=0, upload=None, sketch=None,
                   schedules=tuple(DEFAULT_SCHEDULES), steps=1000, seed=0, request: gr.Request = None,
                   progress=gr.Progress()):
        """Bits/dim of one image (a dataset image, ``upload``: an uploaded file's path, or ``sketch``: an image
        editor's value) under ``model``, per schedule: the VLB over ``steps`` levels (and, for a score model, the
        probability-flow ODE). Streams (source image, plot of the VLB terms over t, table, status) after each
        schedule."""
        s = self.settings(model, source, dataset, index, upload, sketch, schedules, steps, seed)
        with self.one_per_session.claim(request):
            yield from self._evaluate(s, upload, sketch, progress)

    @on_engine_thread
    def _evaluate(self, s: dict, upload, sketch, progress):
        net = self.app.image_model(s["model"])
        x0, described = source_image(s, tuple(net.data_shape), upload, sketch)
        picture = imaging.display(x0, 160)
        methods = ["vlb", "ode"] if self.app.store.card(s["model"]).get("objective") == "dsm" else ["vlb"]
        todo = [(schedule, method) for schedule in s["schedules"] for method in methods]
        title = f"{s['model']} · {described}: where the bound comes from"
        parts: list[dict] = []
        start, stopped = time.perf_counter(), ""
        for k, (schedule, method) in enumerate(todo):
            progress((k, len(todo)), desc=f"{method} · {schedule}", unit="schedules")
            t0 = time.perf_counter()
            try:
                part = _measure(net, x0, schedule, method, s)
            except ValueError as err:
                raise engine_error(err) from None
            parts.append({"schedule": schedule, "method": method, "seconds": time.perf_counter() - t0, **part})
            elapsed = time.perf_counter() - start
            if k + 1 < len(todo) and elapsed > self.app.time_budget_s:
                stopped = f"stopped after {elapsed:.1f} s (time budget {self.app.time_budget_s:g} s per request) · "
                gr.Warning(stopped.rstrip(" ·"))
            done = k + 1 == len(todo) or bool(stopped)
            figures = " · ".join(f"{p['schedule']} {p['method']} {p['bpd']:.3f}" for p in parts)
            status = (f"{'done' if done else 'running'}: {s['model']} · {described} · {stopped}bits/dim: {figures} · "
                      f"{len(parts)}/{len(todo)} · {elapsed:.1f} s")
            yield picture, terms_figure(parts, title), [_row(p) for p in parts], status
            if stopped:
                return


def build(app: AppContext, opened: gr.State) -> Room:
    """The tab and its event (Stop ends it). At most the app's WORKERS evaluations run at once server-wide, one per
    browser session."""
    handlers = Likelihood(app)
    with gr.Tab("Likelihood", id="likelihood"):
        gr.Markdown("An image's **bits/dim** under a model: the DDPM variational bound L_T + Σ L_{t−1} + L_0 "
                    "(an upper bound on −log₂ p(x) per pixel; lower is better), computed over each chosen "
                    "schedule's chain, with its terms drawn over t so you can see where the bound comes from. A "
                    "score model also gets the probability-flow ODE's figure (Hutchinson's divergence). At most "
                    f"{MAX_LIKELIHOOD_SCHEDULES} schedules per run.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                model = model_picker(app.store.image_models(), pick(app.store.image_models(), DEFAULT_MODEL),
                                     "l-model")
                source = image_source("l", "image")
                measured = [gr.CheckboxGroup(SCHEDULES, value=DEFAULT_SCHEDULES, label="schedules to compare",
                                             elem_id="l-schedules"),
                            gr.Slider(1, MAX_STEPS, value=MAX_STEPS, step=1, label="steps (levels of the chain)",
                                      info="all 1000 give the tightest bound; fewer make a coarser chain and a looser "
                                           "bound", elem_id="l-steps"),
                            seed_number(info="the bound's draws of x_t and the ODE's dequantisation",
                                        elem_id="l-seed")]
                controls = run_controls("Measure", "l", link=False)
            with gr.Column(scale=2):
                with gr.Row():
                    image = gr.Image(label="the image measured", format="png", type="pil", interactive=False,
                                     height=220, elem_id="l-image")
                    table = gr.Dataframe(headers=TABLE_HEADERS, label="bits/dim per schedule (L terms in bits/dim)",
                                         interactive=False, elem_id="l-table")
                plot = gr.Plot(label="the bound term by term: L_{t−1} over t, one curve per schedule", elem_id="l-plot")
    source.source.change(source.shown_for, source.source, [source.dataset_row, source.upload, source.sketch],
                         api_visibility="private", queue=False)
    event = controls.run.click(handlers.likelihood, inputs=[model, *source.values, *measured],
                               outputs=[image, plot, table, controls.status], api_name="likelihood",
                               show_progress_on=[controls.status], concurrency_limit=WORKERS,
                               concurrency_id="likelihood", validator=validator(handlers.settings, "likelihood"))
    stops(controls.stop, event)
    return Room("likelihood", handlers=handlers)
