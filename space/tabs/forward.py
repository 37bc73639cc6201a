"""The Forward process tab: q(x_t | x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I) of a dataset image (or an upload) at chosen t for
each schedule, with the same noise ε at every t, so each row shows how fast a schedule destroys the image (endpoint
``/forward``). Instant: the tab shows its default result when it is opened.
"""
from __future__ import annotations

import gradio as gr

import engine
from engine import forward as engine_forward

from .. import imaging, plots
from ..checks import as_int, choice, engine_error
from ..context import AppContext
from ..engine_thread import on_engine_thread
from ..guard import shown, validator
from ..room import Room, show_when_opened
from ..settings import DATASETS, MAX_TIMESTEPS, SCHEDULES
from ..sources import test_split, upload_image
from ..widgets import seed_number


def settings(dataset, index, schedules, timesteps, seed, upload) -> tuple:
    """Forward's checks: (dataset, schedules, t values, seed), or gr.Error naming the parameter. The image
    ``index`` is checked against the dataset's size, and the upload decoded, by ``forward`` itself."""
    seed = as_int("seed", seed, 0, engine.MAX_SEED)
    if isinstance(schedules, str):
        schedules = [schedules]
    schedules = list(schedules or [])
    if not schedules:
        raise gr.Error("choose at least one schedule")
    for name in schedules:
        choice("schedule", name, SCHEDULES)
    parts = [t.strip() for t in str(timesteps).replace(";", ",").split(",") if t.strip()]
    if not 1 <= len(parts) <= MAX_TIMESTEPS:
        raise gr.Error(f"choose 1 to {MAX_TIMESTEPS} values of t; got {len(parts)}")
    try:
        ts = [int(t) for t in parts]  # whole numbers only: "1.5", "1e400" and 5000-digit strings are refused
    except ValueError:
        raise gr.Error(f"t values must be integers separated by commas; got {shown(timesteps)}") from None
    return choice("dataset", dataset, DATASETS), schedules, ts, seed


@on_engine_thread
def forward(dataset="mnist", index=0, schedules=("linear", "cosine"), timesteps="0, 50, 100, 250, 500, 750, 999",
            seed=0, upload=None):
    """q(x_t | x_0) at the chosen t for each schedule. Returns (gallery, plot, x_0 image, x_0 description).

    ``upload`` is the path of an uploaded image file (or None: the dataset's image ``index``); it is decoded
    by ``imaging.open_upload``, within the app's byte and pixel caps."""
    dataset, schedules, ts, seed = settings(dataset, index, schedules, timesteps, seed, upload)
    images = test_split(dataset)
    if upload is not None:
        x0, source = upload_image(upload, tuple(images.shape[1:])), "upload"
    else:
        index = as_int("index", index, 0, len(images) - 1)
        x0, source = images[index: index + 1], f"{dataset} test #{index}"
    gallery = []
    for name in schedules:
        try:
            xt = engine_forward.noise_images(x0, name, ts, seed)  # (len(ts), 1, C, H, W)
            stats = engine_forward.signal_stats(name, ts)
        except ValueError as err:
            raise engine_error(err) from None
        for st, img in zip(stats, xt):
            gallery.append((imaging.display(img, 128),
                            f"{name} · t={st['t']} · ᾱ={st['alpha_bar']:.3g} · σ={st['sigma']:.3g}"))
    return gallery, plots.forward_curves_plot(schedules, ts), imaging.display(x0, 128), source


def build(app: AppContext, opened: gr.State) -> Room:
    """The Forward process tab: its layout and the endpoint ``/forward``; its default result when it is opened."""
    with gr.Tab("Forward process", id="forward") as tab:
        gr.Markdown("q(x_t | x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I): the same noise ε at every t, so each row shows "
                    "how fast a schedule destroys the image.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                inputs = [gr.Dropdown(DATASETS, value="mnist", label="dataset (sets the shape)"),
                          gr.Number(0, precision=0, minimum=0, label="image index (test split)")]
                upload = gr.Image(label="…or upload an image (converted to the dataset's shape)", type="filepath",
                                  image_mode=None, sources=["upload"], height=160)
                inputs += [gr.CheckboxGroup(SCHEDULES, value=["linear", "cosine", "karras"], label="schedules"),
                           gr.Textbox("0, 50, 100, 250, 500, 750, 999", label="t values (comma separated)"),
                           seed_number(), upload]
                run = gr.Button("Show q(x_t | x_0)", variant="primary", elem_id="f-run")
                x0 = gr.Image(label="x_0", format="png", interactive=False, height=140)
                source = gr.Textbox(label="source", interactive=False, elem_id="f-src")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="x_t per schedule (rows) and t (columns)", columns=7, height=420,
                                     format="png", object_fit="contain", elem_id="f-gallery")
                plot = gr.Plot(label="ᾱ_t and log-SNR with the chosen t")
    outputs = [gallery, plot, x0, source]
    run.click(forward, inputs=inputs, outputs=outputs, api_name="forward", show_progress_on=[source],
              validator=validator(settings, "forward"), concurrency_id="forward")
    return Room("forward", follow=show_when_opened(tab, "forward", forward, inputs, outputs, opened, "forward"),
                handlers=forward)
