"""The Edit tab: an image from the dataset, an upload or a sketch, edited by a model — img2img, inpainting with a
painted mask, inversion, interpolation — streamed like Generate (endpoint ``/edit``, space/tabs/edit/endpoint.py).
A link to an edit of a dataset image (or between two seeds) makes it again; a sketch, an upload or a mask cannot
travel in a URL.
"""
from __future__ import annotations

import gradio as gr

from ...context import AppContext
from ...guard import validator
from ...links import Link
from ...room import Room
from ...settings import (DEFAULT_MODEL, EDIT_ENDS, EDIT_STRENGTH, MAX_INDEX, MAX_INTERPOLATION_FRAMES, MAX_RESAMPLES,
                         MAX_STEPS, NO_CLASS, SAMPLERS, SCHEDULES, WORKERS, pick)
from ...widgets import (class_picker, class_updates, follow_model, guidance_slider, image_source, model_picker,
                        model_update, run_controls, seed_number, stops, streamed_result)
from .endpoint import Edit, reproducible

MODE_LABELS = [("img2img (SDEdit)", "img2img"), ("inpainting (RePaint)", "inpaint"),
               ("inversion + reconstruction", "invert"), ("interpolation", "interpolate")]
MASK_BRUSH = gr.Brush(default_size=16, colors=["rgba(255, 64, 64, 0.7)"], color_mode="fixed")


def _mode_fields() -> tuple[dict, gr.Group, gr.Group]:
    """The fields only some modes use: strength (img2img), RePaint's (inpainting) and the interpolation's, with the
    two groups that hold the latter."""
    low, high = EDIT_STRENGTH
    fields = {"strength": gr.Slider(low, high, value=0.6, step=low, label="strength",
                                    info="the share of the steps that runs: 1 starts from noise, small values change "
                                         "little", elem_id="e-strength")}
    with gr.Group(visible=False) as inpaint_box:
        fields["jump_length"] = gr.Slider(1, MAX_STEPS, value=10, step=1, label="jump_length",
                                          info="steps between RePaint's jumps back up", elem_id="e-jump")
        fields["resamples"] = gr.Slider(1, MAX_RESAMPLES, value=5, step=1, label="resamples",
                                        info="passes over each stretch (1 = plain replacement)", elem_id="e-resamples")
    with gr.Group(visible=False) as interpolate_box:
        fields["k"] = gr.Slider(2, MAX_INTERPOLATION_FRAMES, value=8, step=1, label="images (k)", elem_id="e-k")
        fields["ends"] = gr.Radio(EDIT_ENDS, value="seeds", label="between", elem_id="e-ends",
                                  info="two seeds (seed and seed_b), or the source image and dataset image index_b, "
                                       "both inverted")
        fields["seed_b"] = seed_number(1, label="seed_b", elem_id="e-seed-b")
        fields["index_b"] = gr.Number(1, precision=0, minimum=0, maximum=MAX_INDEX, label="index_b",
                                      elem_id="e-index-b")
    return fields, inpaint_box, interpolate_box


def _layout(app: AppContext, model: str | None):
    """The tab's fields (by the endpoint's parameter names, in its order), its image source, the mode's groups, the
    mask's button, its run controls and its outputs."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            fields = {"model": model_picker(app.store.image_models(), model, "e-model"),
                      "mode": gr.Radio(MODE_LABELS, value="img2img", label="mode", elem_id="e-mode")}
            source = image_source("e", "source image", "a sketch or an upload cannot travel in a link (nor can a "
                                  "painted mask): its link carries the settings only; a dataset image reproduces "
                                  "exactly")
            fields.update(zip(("source", "dataset", "index", "upload", "sketch"), source.values))
            late = {"schedule": gr.Dropdown(SCHEDULES, value="cosine", label="schedule", elem_id="e-schedule"),
                    "sampler": gr.Dropdown(SAMPLERS, value="ddim", label="sampler", elem_id="e-sampler",
                                           info="img2img: any; interpolation: a deterministic one (ddim, ode, "
                                                "dpm-solver++); inpainting uses ddpm and inversion DDIM η=0"),
                    "steps": gr.Slider(1, MAX_STEPS, value=50, step=1, label="steps", elem_id="e-steps"),
                    "seed": seed_number(elem_id="e-seed")}
            classes = {"label": class_picker(app, model, "e", random_classes=False),
                       "guidance_scale": guidance_slider(app, model, elem_id="e-guidance")}
            by_mode, inpaint_box, interpolate_box = _mode_fields()
            controls = run_controls("Edit", "e")
        with gr.Column(scale=2):
            fields["mask"] = gr.ImageEditor(type="pil", image_mode="RGBA", sources=(), brush=MASK_BRUSH, layers=False,
                                            label="mask: paint the region to fill (inpainting)", transforms=(),
                                            height=320, visible=False, elem_id="e-mask")
            mask_source = gr.Button("put the current source (e.g. a new sketch) on the mask canvas", size="sm",
                                    visible=False, elem_id="e-mask-source")
            image, plot, gallery, gif, png = streamed_result(
                "e", "x_t (live) → result", "schedule: ᾱ_t and log-SNR, start (img2img) or current step marked",
                "source, x_t snapshots and x̂0")
    fields.update(late)
    fields.update(by_mode)
    fields.update(classes)
    outputs = (image, gallery, gif, png, plot, controls.status, controls.link)
    return fields, source, (inpaint_box, interpolate_box, mask_source), controls, outputs


def build(app: AppContext, opened: gr.State) -> Room:
    """The Edit tab: its layout, the endpoint ``/edit`` (Stop ends it), the fields each mode and source shows, the
    mask editor's canvas, the class controls; an Edit link's run when it makes its result again."""
    handlers = Edit(app)
    model = pick(app.store.image_models(), DEFAULT_MODEL)
    with gr.Tab("Edit", id="edit"):
        gr.Markdown("Edit an image with the model: **img2img** (SDEdit: noise it to a level, denoise), "
                    "**inpainting** (RePaint: paint the region to fill), **inversion** (DDIM to x_T and "
                    "back) or **interpolation** between two seeds or two images.")
        fields, source, (inpaint_box, interpolate_box, mask_source), controls, outputs = _layout(app, model)
    inputs = list(fields.values())
    streamed = dict(outputs=list(outputs), show_progress_on=[controls.status], concurrency_id="edit")
    run = controls.run.click(handlers.edit, inputs=inputs, **streamed, api_name="edit", concurrency_limit=WORKERS,
                             validator=validator(handlers.settings, "edit"))
    stops(controls.stop, run)
    follow_model(app, fields["model"], fields["label"], [fields["guidance_scale"]], random_classes=False)

    def shown(mode: str, chosen: str) -> list:
        """The fields ``mode`` and the source ``chosen`` use shown, the others hidden (an interpolation between
        images takes its second image from the dataset)."""
        return [gr.update(visible=mode == "img2img"), gr.update(visible=mode == "inpaint"),
                gr.update(visible=mode == "interpolate"), gr.update(visible=mode == "inpaint"),
                gr.update(visible=mode == "inpaint"), *source.shown_for(chosen, dataset_too=mode == "interpolate")]

    for changed in (fields["mode"], source.source):
        changed.change(shown, [fields["mode"], source.source],
                       [fields["strength"], inpaint_box, interpolate_box, fields["mask"], mask_source,
                        source.dataset_row, source.upload, source.sketch], api_visibility="private", queue=False)
    # the mask is painted over the source, at the model's resolution (a new source clears the paint); a sketch
    # reaches the server only with a click (its strokes send no value), hence the button
    for trigger in (fields["model"].change, fields["mode"].change, source.source.change, source.dataset.change,
                    source.index.change, source.upload.change, mask_source.click):
        trigger(handlers.mask_canvas, [fields["model"], fields["mode"], *source.values], fields["mask"],
                api_visibility="private", show_progress="hidden", concurrency_id="edit-canvas")

    def derive(settings: dict) -> dict:
        images = app.store.image_models()
        chosen = pick(images, settings.get("model") if settings.get("model") in images else model)
        picker, slider = class_updates(app, chosen, 1, settings.get("label", NO_CLASS),
                                       (settings.get("guidance_scale", 1.0),), random_classes=False)
        return {fields["model"]: model_update(images, chosen), fields["label"]: picker,
                fields["guidance_scale"]: slider}

    def from_link(request: gr.Request, link: dict, *values):
        """Runs Edit once when the page was opened from an Edit result link that makes its result again
        (``reproducible``)."""
        named = dict(zip(fields, values))
        if not (link.get("tab") == "edit" and link.get("model") in app.store.image_models()
                and reproducible(named["mode"], named["source"], named["ends"])):
            yield tuple(gr.skip() for _ in outputs)
            return
        yield from handlers.edit(*values, request=request)

    def follow(filled) -> None:
        stops(controls.stop, filled.then(from_link, inputs=[opened, *inputs], api_visibility="private", **streamed))

    carried = {key: block for key, block in fields.items() if key not in ("upload", "sketch", "mask")}
    return Room("edit", Link(carried, derive), follow, handlers)
