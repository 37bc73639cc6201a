"""The Score field tab: the learned score s(x̃, σ) = −ε̂/σ of a 2-D toy model (a flow model's −velocity) as arrows
(length normalised, colour = log magnitude) over the noised data density p_σ, and particles moved from noise by a
sampler, animated with a time slider (endpoint ``/score_field``). Instant: the tab shows its default result when it
is opened.
"""
from __future__ import annotations

import time

import gradio as gr
import torch

import engine
from engine import data as engine_data
from engine import fields as engine_fields

from .. import plotly_figures, plots
from ..checks import as_float, as_int, choice, engine_error
from ..context import AppContext
from ..engine_thread import on_engine_thread
from ..guard import validator
from ..links import Link
from ..room import Room, show_when_opened
from ..settings import DEFAULT_TOY, FIELD_MAX_STEPS, FIELD_PARTICLES, FIELD_SIGMA, SAMPLERS, SCHEDULES, pick
from ..widgets import model_picker, model_update, seed_number

LIMIT = 3.0  # the field is drawn over [−LIMIT, LIMIT]² (the toys are standardised)


class ScoreField:
    """The endpoint ``score_field`` and its checks (``settings``, the event's validator)."""

    def __init__(self, app: AppContext):
        self.app = app

    def settings(self, model, sigma, sampler, schedule, steps, seed, particles) -> tuple:
        """Score field's checks: (σ, steps, seed, particles), or gr.Error naming the parameter."""
        out = (as_float("sigma", sigma, *FIELD_SIGMA), as_int("steps", steps, 1, FIELD_MAX_STEPS),
               as_int("seed", seed, 0, engine.MAX_SEED), as_int("particles", particles, *FIELD_PARTICLES))
        choice("sampler", sampler, SAMPLERS)
        choice("schedule", schedule, SCHEDULES)
        self.app.model_name(model, kind="toy")
        return out

    @on_engine_thread
    def score_field(self, model, sigma=0.5, sampler="ddim", schedule="cosine", steps=50, seed=0, particles=500):
        """Score arrows at σ over p_σ, and particles moved by the sampler, animated (a time slider) over the density
        of their state. Returns (plot, animation, status)."""
        sigma, steps, seed, count = self.settings(model, sigma, sampler, schedule, steps, seed, particles)
        net = self.app.model(model, kind="toy")
        t0 = time.perf_counter()
        try:
            field, what = self._arrows(net, sigma)
            toy = engine_fields.toy_of(net)
            dens = engine_fields.noisy_density(toy, sigma, lim=LIMIT, n=80) if toy else None
            run = engine_fields.particles(net, schedule=schedule, sampler=sampler, steps=steps, seed=seed, n=count)
        except (ValueError, TypeError) as err:
            raise engine_error(err) from None
        title = f"{model}: {what} (arrows),\np_σ (shade), {sampler} samples (dots)"
        fig = plots.score_field_figure(field, dens, title, points=run[-1].x_t.numpy())
        y0 = engine_data.toy_sample(toy, 1000, torch.Generator().manual_seed(seed)) if toy else None
        anim = plotly_figures.animation(net, run, y0, (-LIMIT, LIMIT), (-LIMIT, LIMIT),
                                        f"{sampler} · {schedule} · {len(run)} steps: drag the slider to move in time")
        status = f"{count} particles · {len(run)} steps · NFE {run[-1].nfe} · {time.perf_counter() - t0:.2f} s"
        return fig, anim, status


    @staticmethod
    def _arrows(net, sigma: float) -> tuple[dict, str]:
        """The field to draw at noise level σ and what it is. A velocity model (flow matching) learns v = ε − x_0
        on the path x_t = (1 − t) x_0 + t ε, whose level σ is t = σ/(1 + σ), x_t = (1 − t) x̃: its arrows are
        −v̂(x_t, t), where sampling moves a point as t falls, drawn at x̃ over the same p_σ. Other models: the
        score s(x̃, σ)."""
        if net.card.get("objective") != "fm":
            return engine_fields.score_field(net, sigma, lim=LIMIT, n=21), f"score at σ = {sigma:.3g}"
        t = sigma / (1 + sigma)
        field = engine_fields.velocity_field(net, t, lim=(1 - t) * LIMIT, n=21)
        return ({"xs": field["xs"] / (1 - t), "points": field["points"] / (1 - t), "score": -field["velocity"]},
                f"−velocity at t = {t:.3g} (σ = {sigma:.3g})")


def build(app: AppContext, opened: gr.State) -> Room:
    """The Score field tab: its layout and the endpoint ``/score_field``; its default result when it is opened."""
    handlers = ScoreField(app)
    toys = app.store.toy_models()
    with gr.Tab("Score field", id="field") as tab:
        gr.Markdown("The learned score s(x̃, σ) = −ε̂/σ of a 2-D toy model as arrows (length normalised, "
                    "colour = log magnitude) over the noised data density p_σ, and particles moved from "
                    "noise by a sampler. A flow-matching model (`-fm`) shows what it learns instead: −v̂, the "
                    "velocity that carries a point towards the data, at the path's t = σ/(1 + σ).")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                model = model_picker(toys, pick(toys, DEFAULT_TOY), label="toy model")
                inputs = [model, gr.Slider(*FIELD_SIGMA, value=0.3, step=0.01, label="noise level σ"),
                          gr.Dropdown(SAMPLERS, value="ddim", label="sampler"),
                          gr.Dropdown(SCHEDULES, value="cosine", label="schedule"),
                          gr.Slider(1, FIELD_MAX_STEPS, value=50, step=1, label="steps")]
                particles = gr.Slider(*FIELD_PARTICLES, value=500, step=10, label="particles")
                inputs += [seed_number(), particles]
                run = gr.Button("Draw field and move particles", variant="primary", elem_id="s-run")
                status = gr.Textbox(label="status", interactive=False, elem_id="s-status")
            with gr.Column(scale=2):
                plot = gr.Plot(label="score field")
                anim = gr.Plot(label="particles during sampling over the density of x_t (time slider)",
                               elem_id="s-anim")
    outputs = [plot, anim, status]
    run.click(handlers.score_field, inputs=inputs, outputs=outputs, api_name="score_field",
              show_progress_on=[status], validator=validator(handlers.settings, "score_field"),
              concurrency_id="score_field")

    def derive(settings: dict) -> dict:
        names = app.store.toy_models()
        return {model: model_update(names, pick(names, settings.get("model") if settings.get("model") in names
                                                else DEFAULT_TOY))}

    follow = show_when_opened(tab, "field", handlers.score_field, inputs, outputs, opened, "score_field")
    return Room("field", Link({"model": model}, derive), follow, handlers)
