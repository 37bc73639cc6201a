"""The Likelihood tab: ``build_likelihood_tab(handlers, image_models, default_model)``, called inside the app's
``gr.Tabs``, lays out the tab and wires its event (endpoint ``/likelihood``, space/likelihood.py)."""
from __future__ import annotations

import gradio as gr

import engine

from .guard import validator
from .handlers import FORWARD_DATASETS, Handlers
from .likelihood import DEFAULT_SCHEDULES, MAX_SCHEDULES, TABLE_HEADERS, LikelihoodHandler
from .settings import EDIT_SOURCES, MAX_INDEX, MAX_STEPS, SCHEDULES



def _source_fields(source: str) -> list:
    return [gr.update(visible=source == "dataset"), gr.update(visible=source == "upload"),
            gr.update(visible=source == "sketch")]


def build_likelihood_tab(h: Handlers, image_models: list[str], default_model: str | None) -> LikelihoodHandler:
    """The tab and its event; returns the handler (its ``likelihood`` is the endpoint). At most the app's WORKERS
    evaluations run at once server-wide, one per browser session (``LikelihoodHandler``)."""
    from .ui import SKETCH_BRUSH, SKETCH_CANVAS, WORKERS  # the Edit tab's sketchpad; ui calls this function

    lk = LikelihoodHandler(h)
    with gr.Tab("Likelihood", id="likelihood"):
        gr.Markdown(f"An image's **bits/dim** under a model: the DDPM variational bound L_T + Σ L_{{t−1}} + L_0 "
                    "(an upper bound on −log₂ p(x) per pixel; lower is better), computed over each chosen "
                    "schedule's chain, with its terms drawn over t so you can see where the bound comes from. A "
                    "score model also gets the probability-flow ODE's figure (Hutchinson's divergence). At most "
                    f"{MAX_SCHEDULES} schedules per run.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                model = gr.Dropdown(image_models, value=default_model, label="model", elem_id="l-model",
                                    allow_custom_value=True)
                source = gr.Radio(EDIT_SOURCES, value="dataset", label="image", elem_id="l-source")
                with gr.Row() as dataset_row:
                    dataset = gr.Dropdown(FORWARD_DATASETS, value="mnist", label="dataset", elem_id="l-dataset")
                    index = gr.Number(0, precision=0, minimum=0, maximum=MAX_INDEX, label="image index (test split)",
                                      elem_id="l-index")
                upload = gr.Image(label="upload (converted to the model's shape)", type="filepath", image_mode=None,
                                  sources=["upload"], height=160, visible=False, elem_id="l-upload")
                sketch = gr.Sketchpad(value=SKETCH_CANVAS, type="pil", image_mode="L",
                                      label="sketch (white on black, like the digits)", brush=SKETCH_BRUSH,
                                      eraser=gr.Eraser(default_size=16), layers=False, transforms=(),
                                      canvas_size=SKETCH_CANVAS.size, fixed_canvas=True, visible=False,
                                      elem_id="l-sketch")
                schedules = gr.CheckboxGroup(SCHEDULES, value=DEFAULT_SCHEDULES, label="schedules to compare",
                                             elem_id="l-schedules")
                steps = gr.Slider(1, MAX_STEPS, value=MAX_STEPS, step=1, label="steps (levels of the chain)",
                                  info="all 1000 give the tightest bound; fewer make a coarser chain and a looser "
                                       "bound", elem_id="l-steps")
                seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed",
                                 info="the bound's draws of x_t and the ODE's dequantisation", elem_id="l-seed")
                with gr.Row():
                    run = gr.Button("Measure", variant="primary", elem_id="l-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="l-stop")
                status = gr.Textbox(label="status", interactive=False, elem_id="l-status")
            with gr.Column(scale=2):
                with gr.Row():
                    image = gr.Image(label="the image measured", format="png", type="pil", interactive=False,
                                     height=220, elem_id="l-image")
                    table = gr.Dataframe(headers=TABLE_HEADERS, label="bits/dim per schedule (L terms in bits/dim)",
                                         interactive=False, elem_id="l-table")
                plot = gr.Plot(label="the bound term by term: L_{t−1} over t, one curve per schedule",
                               elem_id="l-plot")
    source.change(_source_fields, source, [dataset_row, upload, sketch], api_visibility="private", queue=False)
    inputs = [model, source, dataset, index, upload, sketch, schedules, steps, seed]
    event = run.click(lk.likelihood, inputs=inputs, outputs=[image, plot, table, status], api_name="likelihood",
                      show_progress_on=[status], concurrency_limit=WORKERS, concurrency_id="likelihood",
                      validator=validator(lk.likelihood_settings, "likelihood"))
    stop.click(None, cancels=[event], api_visibility="private")
    return lk
