"""The Train tab: train a small 2-D diffusion model live on a toy, a drawing or a CSV of x,y points; watch its loss,
samples and score directions; Stop keeps the model; sample it as animated trajectories; export it.

API endpoints: ``train`` (streamed), ``stop_training``, ``sample_trained``, ``export_trained``
(space/tabs/train/endpoint.py).
"""
from __future__ import annotations

import gradio as gr
from PIL import Image

from engine.data import TOYS

from ...context import AppContext
from ...guard import validator
from ...room import Room
from ...settings import (MAX_TRAIN_SECONDS, MAX_TRAIN_STEPS, MAX_TRAININGS, SAMPLE_PARTICLES, SAMPLE_STEPS, SAMPLERS,
                         SCHEDULES, TRAIN_BATCH, TRAIN_CANVAS, TRAIN_LR, TRAIN_OBJECTIVES, TRAIN_POINTS,
                         TRAIN_SOURCES, TRAIN_WIDTH)
from ...widgets import run_controls, seed_number, sketchpad
from .endpoint import Playground

CANVAS_IMAGE = Image.new("L", (TRAIN_CANVAS, TRAIN_CANVAS), 0)
BRUSH = gr.Brush(default_size=10, colors=["#ffffff"], color_mode="fixed")
INTRO = ("Train a small 2-D diffusion model live, on a **toy**, your own **drawing** or a **CSV** of x,y points. "
         "The loss streams in; every few hundred steps the current model's samples (red) and its score directions "
         "appear. **Stop** keeps the model trained so far; then sample it (drag the slider to watch the particles move "
         f"from noise onto your data) or export it as a checkpoint. Limits: {MAX_TRAIN_STEPS:,} steps or "
         f"{MAX_TRAIN_SECONDS:g} s per training, {TRAIN_POINTS[1]:,} points, one training per page and {MAX_TRAININGS} "
         "on the server at once. Train the same drawing with each **objective** (ddpm: ε, dsm: the score, fm: the "
         "velocity of straight paths) and compare their paths: the status gives their straightness S (0 for straight "
         "lines, which one Euler step follows exactly); sample with `euler` on the `flow` schedule to see them.")


def _training_fields() -> dict:
    """The training's fields, by the endpoint's parameter names, in its order (the sketch is laid out apart)."""
    return {"source": gr.Radio(TRAIN_SOURCES, value="draw", label="data", elem_id="t-source",
                               info="draw on the canvas, pick a toy, or upload a CSV of x,y rows"),
            "toy": gr.Dropdown(list(TOYS), value="moons", label="toy", visible=False, elem_id="t-toy"),
            "csv_file": gr.File(label="CSV of x,y rows (a header line is allowed)", file_types=[".csv"],
                                type="filepath", visible=False, elem_id="t-csv"),
            "n_points": gr.Slider(*TRAIN_POINTS, value=2000, step=100, label="points (from the toy or the drawing)",
                                  elem_id="t-n"),
            "objective": gr.Radio(TRAIN_OBJECTIVES, value="ddpm", label="objective", elem_id="t-objective",
                                  info="ddpm: ε-prediction on the schedule's ᾱ_t; dsm: denoising score matching over "
                                       "log-uniform σ; fm: flow matching, the velocity v = ε − x₀ of the straight "
                                       "path x_t = (1 − t) x₀ + t ε"),
            "schedule": gr.Dropdown(SCHEDULES, value="cosine", label="schedule (ddpm's training levels)",
                                    elem_id="t-schedule"),
            "width": gr.Slider(*TRAIN_WIDTH, value=128, step=16, label="network width", elem_id="t-width"),
            "steps": gr.Slider(1, MAX_TRAIN_STEPS, value=1000, step=1, label="training steps", elem_id="t-steps"),
            "lr": gr.Slider(*TRAIN_LR, value=1e-2, step=1e-4, label="learning rate", elem_id="t-lr"),
            "batch_size": gr.Slider(*TRAIN_BATCH, value=512, step=16, label="batch", elem_id="t-batch"),
            "seed": seed_number(elem_id="t-seed")}


def _sampling_fields() -> list:
    """Sampling's fields, in the endpoint's order (sampler, schedule, steps, particles, seed)."""
    return [gr.Dropdown(SAMPLERS, value="ddpm", label="sampler", elem_id="t-sampler"),
            gr.Dropdown(SCHEDULES, value="cosine", label="schedule", elem_id="t-sample-schedule"),
            gr.Slider(*SAMPLE_STEPS, value=100, step=1, label="sampling steps", elem_id="t-sample-steps"),
            gr.Slider(*SAMPLE_PARTICLES, value=1000, step=10, label="particles", elem_id="t-particles"),
            seed_number(label="sampling seed", elem_id="t-sample-seed")]


def build(app: AppContext, opened: gr.State, playground: Playground | None = None) -> Room:
    """The Train tab and its events; its handlers are a ``Playground`` (one model per browser session)."""
    pg = playground or Playground()
    with gr.Tab("Train", id="train"):
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                fields = _training_fields()
                controls = run_controls("Train", "t", link=False)
            with gr.Column(scale=2):
                sketch = sketchpad(CANVAS_IMAGE, BRUSH, "draw your data (white on black; y grows downwards)",
                                   "t-sketch")
                loss = gr.Plot(label="loss", elem_id="t-loss")
                view = gr.Plot(label="current model: samples and score directions", elem_id="t-view")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                sampling = _sampling_fields()
                sample = gr.Button("Sample the trained model", variant="primary", elem_id="t-sample")
                sample_status = gr.Textbox(label="sampling status", interactive=False, elem_id="t-sample-status")
                export = gr.Button("Export the trained model (safetensors + card)", elem_id="t-export")
                files = gr.File(label="checkpoint: load with engine.load_model(NAME, directory=FOLDER)",
                                file_count="multiple", interactive=False, elem_id="t-files")
            with gr.Column(scale=2):
                anim = gr.Plot(label="particle trajectories over the density of x_t (time slider)", elem_id="t-anim")
    source = fields["source"]
    # the toy picker, the canvas or the CSV upload: the chosen source's shown; a CSV gives its own number of points
    source.change(lambda chosen: [gr.update(visible=chosen == "toy"), gr.update(visible=chosen == "draw"),
                                  gr.update(visible=chosen == "csv"), gr.update(visible=chosen != "csv")],
                  source, [fields["toy"], sketch, fields["csv_file"], fields["n_points"]], api_visibility="private",
                  queue=False)
    inputs = [source, fields["toy"], sketch, *list(fields.values())[2:]]
    controls.run.click(pg.train, inputs, [loss, view, controls.status], api_name="train",
                       show_progress_on=[controls.status], concurrency_limit=MAX_TRAININGS, concurrency_id="train",
                       validator=validator(pg.train_settings, "train"))
    controls.stop.click(pg.stop, None, controls.status, api_name="stop_training", queue=False)
    sample.click(pg.sample, sampling, [anim, sample_status], api_name="sample_trained",
                 show_progress_on=[sample_status], validator=validator(pg.sample_settings, "sample_trained"))
    export.click(pg.export, None, files, api_name="export_trained", show_progress_on=[files])
    return Room("train", handlers=pg, closed=pg.forget)
