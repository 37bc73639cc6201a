"""The Edit tab's endpoint ``/edit`` and its checks: img2img (SDEdit: noise the image to a level, denoise), inpainting
(RePaint: the painted region filled), DDIM inversion to x_T and back, and interpolation between two seeds or two
images, each streamed like Generate. One function per mode sets its run up (``MODES``); ``Edit.edit`` streams it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import gradio as gr
import torch

import engine
from engine import editing as engine_editing
from engine.models import rows_per_sample

from ... import imaging, plots, streaming
from ...checks import as_float, as_int, choice, engine_error
from ...context import AppContext
from ...engine_thread import on_engine_thread
from ...links import base_url, class_settings, query_string
from ...settings import (DATASETS, EDIT_ENDS, EDIT_MODES, EDIT_STRENGTH, MASK_CANVAS, MAX_INDEX,
                         MAX_INTERPOLATION_FRAMES, MAX_RESAMPLES, MAX_STEPS, NO_CLASS, SAMPLERS, SCHEDULES)
from ...sources import dataset_image, sketch_picture, source_image, source_settings

INVERSION_RESULTS = ("x_T from DDIM inversion", "reconstruction", "|reconstruction − source|")


class Plan(NamedTuple):
    """A mode's run set up: its Steps (``run``, ``total`` of them), the schedule plot's ``curves``, the status's
    ``head``, the tiles per row of a picture (``cols``: a strip of interpolated images) and the plot's fixed mark
    (img2img's starting level; None: the current step)."""
    run: object
    total: int
    curves: list
    head: str = ""
    cols: int | None = None
    mark: int | None = None


def _img2img(net, x0, s: dict, guided: dict, live, described: str, mask) -> Plan:
    spacing = engine.sampler_spec(s["sampler"]).spacing
    levels = engine_editing.img2img_levels(s["schedule"], s["steps"], s["strength"], spacing)
    mark, a = levels[0]
    head = f"starts at t = {mark}, σ = {math.sqrt((1 - a) / a):.3g} ({len(levels)} of {s['steps']} steps)"
    run = engine_editing.img2img(net, x0, strength=s["strength"], schedule=s["schedule"], sampler=s["sampler"],
                                 steps=s["steps"], seed=s["seed"], **guided)
    return Plan(run, len(levels), [plots.curve(s["schedule"], f"{s['schedule']} · img2img", [t for t, _ in levels])],
                head, mark=mark)


def _inpaint(net, x0, s: dict, guided: dict, live, described: str, mask) -> Plan:
    m = imaging.mask_from_layers((mask or {}).get("layers") or [], tuple(net.data_shape)[1:])
    run = engine_editing.inpaint(net, x0, m, schedule=s["schedule"], steps=s["steps"], seed=s["seed"],
                                 jump_length=s["jump_length"], resamples=s["resamples"], **guided)
    unknown = int((m == 0).sum())
    live.snapshot(imaging.display(x0 * m, 160), "split.png",
                  f"known / unknown (grey, to fill): {unknown} of {m.numel()} pixels to fill")
    return Plan(run, engine_editing.inpaint_nfe(s["steps"], s["jump_length"], s["resamples"]),
                [plots.curve(s["schedule"], f"{s['schedule']} · RePaint (ddpm)",
                             plots.visited(s["schedule"], s["steps"], "leading"))],
                f"{unknown} of {m.numel()} pixels filled")


def _invert_then_reconstruct(net, x0, schedule: str, steps: int, live: streaming.Stream, label):
    """DDIM inversion to x_T, step by step, then the DDIM η=0 run back from it: one run of 2 × steps Steps
    (the reconstruction's renumbered after the inversion's), so Stop and the time budget act between any two.
    A conditional model's ``label`` steers both (unguided), as the reconstruction must see the ε̂ inverted."""
    step = None
    for step in engine_editing.inversion(net, x0, schedule=schedule, steps=steps, label=label):
        yield step
    live.snapshot(imaging.display(step.x_t, 160), "x_T.png", f"{INVERSION_RESULTS[0]} (shown clipped to ±1)")
    back = engine.generate(net, schedule=schedule, sampler="ddim", steps=steps, seed=0, x_T=step.x_t,
                           spacing="leading", eta=0.0, label=label)
    for later in back:
        yield dataclasses.replace(later, i=later.i + steps, nfe=later.nfe + steps)


def _invert(net, x0, s: dict, guided: dict, live, described: str, mask) -> Plan:
    run = _invert_then_reconstruct(net, x0, s["schedule"], s["steps"], live, s["label"])
    return Plan(run, 2 * s["steps"], [plots.curve(s["schedule"], f"{s['schedule']} · DDIM η=0",
                                                  plots.visited(s["schedule"], s["steps"], "leading"))])


def _interpolate(net, x0, s: dict, guided: dict, live, described: str, mask) -> Plan:
    spacing = engine.sampler_spec(s["sampler"]).spacing
    common = dict(schedule=s["schedule"], sampler=s["sampler"], steps=s["steps"], k=s["k"], spacing=spacing, **guided)
    if s["ends"] == "images":
        x_b = dataset_image(s["dataset"], s["index_b"], "index_b", tuple(net.data_shape))
        ends = engine_editing.invert(net, torch.cat([x0, x_b]), schedule=s["schedule"], steps=s["steps"],
                                     spacing=spacing, label=s["label"])
        run = engine_editing.interpolate(net, x_T=(ends[0], ends[1]), **common)
        head = f"between {described} and {s['dataset']} test #{s['index_b']} (inverted)"
    else:
        run = engine_editing.interpolate(net, seeds=(s["seed"], s["seed_b"]), **common)
        head = f"between seeds {s['seed']} and {s['seed_b']}"
    return Plan(run, s["steps"], [plots.curve(s["schedule"], f"{s['schedule']} · {s['sampler']}",
                                              plots.visited(s["schedule"], s["steps"], spacing))], head, cols=s["k"])


MODES = {"img2img": _img2img, "inpaint": _inpaint, "invert": _invert, "interpolate": _interpolate}


def _mode_settings(s: dict, sampler, strength, jump_length, resamples, k, ends, seed_b, index_b, w: float,
                   rows: int) -> int:
    """The settings of ``s["mode"]`` only, added to ``s``; returns the run's network evaluations."""
    mode, steps = s["mode"], s["steps"]
    if mode == "img2img":
        s["sampler"] = choice("sampler", sampler, SAMPLERS)
        s["strength"] = as_float("strength", strength, *EDIT_STRENGTH)
        spec = engine.sampler_spec(s["sampler"])
        try:
            kept = len(engine_editing.img2img_levels(s["schedule"], steps, s["strength"], spec.spacing))
        except ValueError as err:
            raise engine_error(err) from None
        return spec.nfe(kept) * rows
    if mode == "inpaint":
        s["jump_length"] = as_int("jump_length", jump_length, 1, steps)
        s["resamples"] = as_int("resamples", resamples, 1, MAX_RESAMPLES)
        return engine_editing.inpaint_nfe(steps, s["jump_length"], s["resamples"]) * rows
    if mode == "invert":
        # the engine inverts with ε̂(x, c) unguided: with w > 1 DDIM inversion's error grows (Mokady et al.
        # 2022), so guided inversion is left out rather than offered badly
        if w != 1:
            raise gr.Error(f"inversion takes no guidance: set guidance_scale to 1 (got {w:g}); "
                           f"a class is allowed and inverts with the conditional model")
        return 2 * steps  # the inversion, then the reconstruction
    s["sampler"] = choice("sampler", sampler, SAMPLERS)
    s["k"] = as_int("k", k, 2, MAX_INTERPOLATION_FRAMES)
    try:  # the engine's own refusal of a sampler that draws noise during the run
        engine_editing.check_deterministic(s["sampler"])
    except ValueError as err:
        raise engine_error(err) from None
    s["ends"] = choice("ends", ends, EDIT_ENDS)
    if s["ends"] == "seeds":
        s["seed_b"] = as_int("seed_b", seed_b, 0, engine.MAX_SEED)
        return engine.sampler_spec(s["sampler"]).nfe(steps) * s["k"] * rows
    s["index_b"] = as_int("index_b", index_b, 0, MAX_INDEX)
    return engine.sampler_spec(s["sampler"]).nfe(steps) * s["k"] * rows + 2 * steps  # both images inverted


def reproducible(mode, source, ends) -> bool:
    """Whether an Edit link's settings make its result again: its source is a dataset image or no image at all
    (interpolation between seeds); never an inpainting (the painted mask stays in the browser)."""
    if mode == "inpaint":
        return False
    if mode == "interpolate" and ends == "seeds":
        return True
    return source == "dataset"


class Edit:
    """The endpoint ``edit``, its checks (``settings``, the event's validator) and the mask editor's canvas."""

    def __init__(self, app: AppContext):
        self.app = app

    def settings(self, model, mode, source, dataset, index, upload, sketch, mask, schedule, sampler, steps, seed,
                 strength, jump_length, resamples, k, ends, seed_b, index_b, label=NO_CLASS,
                 guidance_scale=1.0) -> dict:
        """Edit's checks: the run's settings (those of its ``mode`` only, and a conditional model's ``label`` and
        ``guidance_scale``), or gr.Error naming the parameter and what is allowed (the network-evaluation budget
        included: a guided step is two evaluations per image). The images themselves are decoded by ``edit``
        (the guard has checked their files' size, format and pixel count); an image ``index`` is checked against the
        dataset's size there too, as Forward does."""
        s = {"model": model, "mode": choice("mode", mode, EDIT_MODES),
             "schedule": choice("schedule", schedule, SCHEDULES), "steps": as_int("steps", steps, 1, MAX_STEPS)}
        self.app.model_name(model)
        label, w = self.app.guidance(model, label, guidance_scale, random_classes=False)
        rows = rows_per_sample(label, w)
        est = _mode_settings(s, sampler, strength, jump_length, resamples, k, ends, seed_b, index_b, w, rows)
        if s["mode"] != "interpolate" or s["ends"] == "images":
            s.update(source_settings(source, dataset, index, upload, sketch))
        if "index_b" in s and "dataset" not in s:
            s["dataset"] = choice("dataset", dataset, DATASETS)
        if s["mode"] in ("img2img", "inpaint") or s.get("ends") == "seeds":
            s["seed"] = as_int("seed", seed, 0, engine.MAX_SEED)
        self.app.check_budget("this edit needs", est, "steps" + {"inpaint": ", resamples or a longer jump_length",
                                                                 "interpolate": " or images (k)"}.get(s["mode"], ""),
                              " (twice for guidance)" if rows > 1 else "")
        s["label"], s["guidance_scale"] = label, w  # last, as in the endpoint's parameters (and so in its links)
        return s

    def mask_canvas(self, model, mode, source, dataset, index, upload, sketch):
        """The mask editor's canvas for inpainting: the source image at the model's resolution, upscaled, with no
        paint; gr.skip() outside inpainting or while the source is not ready (nothing uploaded or drawn yet)."""
        if mode != "inpaint" or model not in self.app.store.image_models():
            return gr.skip()
        shape = tuple(self.app.store.card(model).get("data_shape", ()))
        if len(shape) != 3 or source == "upload" and upload is None or source == "sketch" and sketch_picture(
                sketch) is None:
            return gr.skip()
        x0, _ = source_image(source_settings(source, dataset, index, upload, sketch), shape, upload, sketch)
        return {"background": imaging.upscale(imaging.grid(x0), MASK_CANVAS), "layers": [], "composite": None}

    @on_engine_thread
    def edit(self, model, mode, source="dataset", dataset="mnist", index=0, upload=None, sketch=None, mask=None,
             schedule="cosine", sampler="ddim", steps=50, seed=0, strength=0.6, jump_length=10, resamples=5, k=8,
             ends="seeds", seed_b=1, index_b=1, label=NO_CLASS, guidance_scale=1.0, request: gr.Request = None):
        """Edit an image with a model, streamed like ``generate``: img2img (SDEdit), inpainting (RePaint) of the
        region painted on ``mask``, DDIM inversion and reconstruction, or interpolation between two seeds or two
        images. ``upload`` is an uploaded file's path; ``sketch`` and ``mask`` are image editors' values
        ({background, layers, composite} as PIL images). A class-conditional model takes a ``label`` and, except in
        inversion, a ``guidance_scale``, as in ``generate`` (label and guidance are the last parameters, so calls
        made before they existed still work). Yields (image, gallery, gif, png, plot, status, link)."""
        s = self.settings(model, mode, source, dataset, index, upload, sketch, mask, schedule, sampler, steps,
                          seed, strength, jump_length, resamples, k, ends, seed_b, index_b, label, guidance_scale)
        net = self.app.image_model(s["model"])
        live = streaming.Stream(self.app.time_budget_s)
        x0, described = source_image(s, tuple(net.data_shape), upload, sketch) if "source" in s else (None, "")
        if x0 is not None:
            live.snapshot(imaging.display(x0, 160), "source.png", f"source: {described}")
        guided = {"label": s["label"], "guidance_scale": s["guidance_scale"]}
        try:
            plan = MODES[s["mode"]](net, x0, s, guided, live, described, mask)
        except ValueError as err:
            raise engine_error(err) from None
        frames: list = []
        step = yield from streaming.drive(plan.run, plan.total, plan.curves, live, frames, plan.cols, plan.mark)
        elapsed = live.elapsed
        tail = f"{plan.head} · " if plan.head else ""
        if s["mode"] == "invert":
            err = (step.x_t.clamp(-1, 1) - x0).abs()
            live.snapshot(imaging.display(step.x_t, 160), "reconstruction.png",
                          f"{INVERSION_RESULTS[1]} (DDIM η=0 from x_T)")
            live.snapshot(imaging.display(err * 2 - 1, 160), "error.png", f"{INVERSION_RESULTS[2]} (white = 2)")
            tail += f"reconstruction error {float(err.mean()) * 127.5:.2f} grey levels (mean |x̂ − x|) · "
        settings, named_class = class_settings(s)
        kept_out = [s["source"]] if s.get("source") in ("upload", "sketch") else []
        kept_out += ["mask"] if s["mode"] == "inpaint" else []
        if kept_out:
            tail += f"the link carries the settings, not the {' or the '.join(kept_out)} · "
        image, gif, png = streaming.result_files(live, step.x_t, frames, dict(settings, nfe=step.nfe),
                                                 _stem(s, named_class), plan.cols)
        rows = rows_per_sample(s["label"], s["guidance_scale"])
        status = (f"{self.app.ended(step.i + 1 == plan.total)}: {s['mode']} · {tail}{step.i + 1}/{plan.total} steps · "
                  f"{streaming.cost(step.nfe, rows)} · {elapsed:.2f} s")
        gallery = list(live.gallery)
        if s["mode"] == "invert":  # source, x_T, reconstruction and error first, then the runs' snapshots
            front = [g for g in gallery if g[1].startswith(INVERSION_RESULTS)]
            gallery = gallery[:1] + front + [g for g in gallery[1:] if g not in front]
        link = base_url(request) + query_string({"tab": "edit", **settings})
        yield (image, gallery, gif, png, plots.marked(plan.curves, step.t if plan.mark is None else plan.mark),
               status, link)


def _stem(s: dict, named_class: str) -> str:
    """The result files' name: model, mode, schedule, steps, the seed if the mode draws one, the class and w."""
    seeded = f"_seed{s['seed']}" if "seed" in s else ""
    return f"{s['model']}_{s['mode']}_{s['schedule']}_{s['steps']}{seeded}{named_class}"
