"""The Train tab: ``build_train_tab(demo)`` lays it out and wires its events (inside the app's gr.Tabs).

API endpoints: ``train`` (streamed), ``stop_training``, ``sample_trained``, ``export_trained``.
"""
from __future__ import annotations

import gradio as gr
from PIL import Image

import engine
from engine.data import TOYS

from .guard import validator
from .playground import (BATCH, CANVAS, LR, MAX_TRAIN_SECONDS, MAX_TRAIN_STEPS, MAX_TRAININGS, OBJECTIVES, POINTS,
                         SAMPLE_PARTICLES, SAMPLE_STEPS, SOURCES, WIDTH, Playground)
from .settings import SAMPLERS, SCHEDULES

CANVAS_IMAGE = Image.new("L", (CANVAS, CANVAS), 0)
BRUSH = gr.Brush(default_size=10, colors=["#ffffff"], color_mode="fixed")


def _source_fields(source: str) -> list:
    """The toy picker, the canvas and the CSV upload: the chosen source's shown, the others hidden; the number of
    points is taken from a toy or a drawing (a CSV gives its own)."""
    return [gr.update(visible=source == "toy"), gr.update(visible=source == "draw"),
            gr.update(visible=source == "csv"), gr.update(visible=source != "csv")]


def build_train_tab(demo: gr.Blocks, playground: Playground | None = None) -> Playground:
    """The Train tab inside the current gr.Tabs, its events on ``demo``; returns its ``Playground``."""
    pg = playground or Playground()
    with gr.Tab("Train", id="train"):
        gr.Markdown(
            "Train a small 2-D diffusion model live, on a **toy**, your own **drawing** or a **CSV** of x,y points. "
            "The loss streams in; every few hundred steps the current model's samples (red) and its score "
            "directions appear. **Stop** keeps the model trained so far; then sample it (drag the slider to watch "
            f"the particles move from noise onto your data) or export it as a checkpoint. Limits: {MAX_TRAIN_STEPS:,}"
            f" steps or {MAX_TRAIN_SECONDS:g} s per training, {POINTS[1]:,} points, one training per page and "
            f"{MAX_TRAININGS} on the server at once.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                source = gr.Radio(SOURCES, value="draw", label="data", elem_id="t-source",
                                  info="draw on the canvas, pick a toy, or upload a CSV of x,y rows")
                toy = gr.Dropdown(list(TOYS), value="moons", label="toy", visible=False, elem_id="t-toy")
                csv_file = gr.File(label="CSV of x,y rows (a header line is allowed)", file_types=[".csv"],
                                   type="filepath", visible=False, elem_id="t-csv")
                n_points = gr.Slider(*POINTS, value=2000, step=100, label="points (from the toy or the drawing)",
                                     elem_id="t-n")
                objective = gr.Radio(OBJECTIVES, value="ddpm", label="objective", elem_id="t-objective",
                                     info="ddpm: ε-prediction on the schedule's ᾱ_t; dsm: denoising score matching "
                                          "over log-uniform σ")
                schedule = gr.Dropdown(SCHEDULES, value="cosine", label="schedule (ddpm's training levels)",
                                       elem_id="t-schedule")
                width = gr.Slider(*WIDTH, value=128, step=16, label="network width", elem_id="t-width")
                steps = gr.Slider(1, MAX_TRAIN_STEPS, value=1000, step=1, label="training steps", elem_id="t-steps")
                lr = gr.Slider(*LR, value=1e-2, step=1e-4, label="learning rate", elem_id="t-lr")
                batch = gr.Slider(*BATCH, value=512, step=16, label="batch", elem_id="t-batch")
                seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed", elem_id="t-seed")
                with gr.Row():
                    run = gr.Button("Train", variant="primary", elem_id="t-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="t-stop")
                status = gr.Textbox(label="status", interactive=False, elem_id="t-status")
            with gr.Column(scale=2):
                sketch = gr.Sketchpad(value=CANVAS_IMAGE, type="pil", image_mode="L", brush=BRUSH,
                                      label="draw your data (white on black; y grows downwards)",
                                      eraser=gr.Eraser(default_size=16), layers=False, transforms=(),
                                      canvas_size=CANVAS_IMAGE.size, fixed_canvas=True, elem_id="t-sketch")
                loss = gr.Plot(label="loss", elem_id="t-loss")
                view = gr.Plot(label="current model: samples and score directions", elem_id="t-view")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                s_sampler = gr.Dropdown(SAMPLERS, value="ddpm", label="sampler", elem_id="t-sampler")
                s_schedule = gr.Dropdown(SCHEDULES, value="cosine", label="schedule", elem_id="t-sample-schedule")
                s_steps = gr.Slider(*SAMPLE_STEPS, value=100, step=1, label="sampling steps", elem_id="t-sample-steps")
                s_particles = gr.Slider(*SAMPLE_PARTICLES, value=1000, step=10, label="particles",
                                        elem_id="t-particles")
                s_seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="sampling seed",
                                   elem_id="t-sample-seed")
                s_run = gr.Button("Sample the trained model", variant="primary", elem_id="t-sample")
                s_status = gr.Textbox(label="sampling status", interactive=False, elem_id="t-sample-status")
                export = gr.Button("Export the trained model (safetensors + card)", elem_id="t-export")
                files = gr.File(label="checkpoint: load with engine.load_model(NAME, directory=FOLDER)",
                                file_count="multiple", interactive=False, elem_id="t-files")
            with gr.Column(scale=2):
                anim = gr.Plot(label="particle trajectories over the density of x_t (time slider)",
                               elem_id="t-anim")

    source.change(_source_fields, source, [toy, sketch, csv_file, n_points], api_visibility="private", queue=False)
    inputs = [source, toy, sketch, csv_file, n_points, objective, schedule, width, steps, lr, batch, seed]
    run.click(pg.train, inputs, [loss, view, status], api_name="train", show_progress_on=[status],
              concurrency_limit=MAX_TRAININGS, concurrency_id="train", validator=validator(pg.train_settings, "train"))
    stop.click(pg.stop, None, status, api_name="stop_training", queue=False)
    s_run.click(pg.sample, [s_sampler, s_schedule, s_steps, s_particles, s_seed], [anim, s_status],
                api_name="sample_trained", show_progress_on=[s_status],
                validator=validator(pg.sample_settings, "sample_trained"))
    export.click(pg.export, None, files, api_name="export_trained", show_progress_on=[files])
    demo.unload(pg.forget)
    return pg
