"""Event handlers: each turns UI values into engine calls and engine results into pictures. No diffusion maths.

Handlers are methods of ``Handlers`` (one per app, bound to a ``ModelStore``); their parameter names are the
keyword names of the API endpoints. Each endpoint's checks are a method of their own (``generate_settings``,
``compare_panels``, ``forward_settings``, ``field_settings``, ``edit_settings``) with the endpoint's parameters: the handler runs them,
and the UI gives them to Gradio as the event's ``validator``, so a bad value is answered before the request queues.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time

import gradio as gr
import numpy as np
import torch
from gradio.components.plot import PlotData

import engine
from engine import compare as engine_compare
from engine import data as engine_data
from engine import editing as engine_editing
from engine import classifier as engine_classifier
from engine import fields as engine_fields
from engine import forward as engine_forward
from engine.models import rows_per_sample

from . import engine_thread, imaging, playground, plots, streaming
from .engine_thread import on_engine_thread
from .guard import shown
from .models import ModelStore
from .settings import (DATASETS, DEFAULT_MODEL, DEFAULTS, EDIT_ENDS, EDIT_MODES, EDIT_SOURCES, MAX_INDEX, MAX_N,
                       MAX_GUIDANCE, MAX_STEPS, NO_CLASS, OPTIONS, RANDOM_CLASS, SAMPLERS, SCHEDULES, SPACINGS,
                       as_float, as_int, base_url, choice, engine_label, pick, picker_value, query_string,
                       sampler_opts)

N_SNAPSHOTS = 12  # x_t / x̂0 pairs in the gallery
N_GIF_FRAMES = 60
FORWARD_DATASETS = DATASETS
MASK_CANVAS = 280  # the mask editor's canvas: the source upscaled to about this many pixels
MAX_TIMESTEPS = 12  # t values in one Forward-process request
FIELD_SIGMA = (0.01, 5.0)  # the Score-field tab's ranges (its sliders use them too)
FIELD_MAX_STEPS = 200
FIELD_PARTICLES = (10, 2000)
COMPARE_MAX_N = 4  # images per Compare panel
EDIT_STRENGTH = (0.001, 1.0)  # diffusers' img2img strength (0, 1]; ⌊steps · strength⌋ ≥ 1 is checked too
# a one-dimensional stand-in model: the engine checks an interpolation's settings on it (before the queue, no network)

_INVERSION_RESULTS = ("x_T from DDIM inversion", "reconstruction", "|reconstruction − source|")
log = logging.getLogger("denoisery")


def _err(err: Exception) -> gr.Error:
    return gr.Error(str(err).strip("'\""))


def _caption(kind: str, step: engine.Step, total: int) -> str:
    return f"{kind} · step {step.i + 1}/{total} · t={step.t} · σ={step.sigma:.3g} · NFE {step.nfe}"


def _quality(classifier, images) -> str:
    """The evaluator's classifier on a panel's images: predicted digits and mean top-class probability."""
    if classifier is None:
        return "no classifier for this model"
    label, p = engine_classifier.top_class(classifier, images)
    return f"{' '.join(map(str, label.tolist()))} ({float(p.mean()):.2f})"


def _plot(curves: list[dict], t: int | None = None) -> PlotData:
    """The kept schedule plot of ``curves`` (drawn on first use) with step ``t`` marked, as ready PNG data."""
    return PlotData(type="matplotlib", plot=plots.schedule_plot(curves).png(t))


def generate_curves(schedule: str, sampler: str, steps: int, spacing: str) -> list[dict]:
    """The Generate tab's schedule plot: the schedule's curves with the run's timesteps ticked."""
    visited = engine.get_schedule(schedule).timesteps(steps, spacing).tolist()
    return [{"schedule": schedule, "label": f"{schedule} · {sampler}", "visited": visited}]


def warm_up(store: ModelStore | None = None, handlers: Handlers | None = None, batches=(1, 4)) -> None:
    """Import matplotlib and draw the schedule plot of the default Generate settings, so that the first request
    pays for neither (~1 s); for a background thread once the page is served (app.py). With a ``store`` whose models
    compile in the background, also run the default model for one step at each of ``batches`` (one image, and the
    Generate tab's default four), which queues their compile before the first visitor asks; that run is made on the
    engine thread, like every request's. With ``handlers``, then make the default settings' result that every page
    opens with (``Handlers.default_result``), so that the first visitor need not wait for it either."""
    d = DEFAULTS
    plots.schedule_plot(generate_curves(d["schedule"], d["sampler"], d["steps"], d["spacing"]))
    if store is not None and store.background_compile and DEFAULT_MODEL in store.image_models():
        net = store.load(DEFAULT_MODEL)
        for n in batches:
            engine_thread.run(engine.sample, net, schedule=d["schedule"], sampler=d["sampler"], steps=1, seed=0, n=n,
                              spacing=d["spacing"])
    if handlers is not None:
        handlers.default_result()


def _class_settings(settings: dict) -> tuple[dict, str]:
    """A run's settings for its link and PNG, and the file name's class part. An unconditional run (label None)
    says nothing of classes, so its link reads as before classes existed; a conditional one names its class (the
    picker's value: RANDOM_CLASS for random classes) and w."""
    if settings["label"] is None:
        return {k: v for k, v in settings.items() if k not in ("label", "guidance_scale")}, ""
    return ({**settings, "label": picker_value(settings["label"])},
            f"_class{settings['label']}_w{settings['guidance_scale']:g}")


def _snapshot_indices(total: int, k: int = N_SNAPSHOTS) -> set[int]:
    return set(np.linspace(0, total - 1, min(k, total)).round().astype(int).tolist())


class KeptResult:
    """A finished Generate result held in memory (its files' bytes) and served again as files: the default
    settings' result that a page opened without a result link shows at once.

    The files are written into a results folder once and served from there; when they are older than half of
    ``streaming.RESULTS_MAX_AGE_S`` (after which the app and Gradio remove them) or gone, they are written again into
    a fresh folder, so every file served has at least half an hour to live."""

    def __init__(self, final: tuple):
        image, gallery, gif, png, self.plot, status, self.query = final
        self.status = f"{status} · kept from this server's first run of the default settings"
        paths = [image, gif, png, *(path for path, _ in gallery)]
        self.files = {}
        for path in paths:
            with open(path, "rb") as f:
                self.files[os.path.basename(path)] = f.read()
        self.names = [os.path.basename(p) for p in paths[:3]]
        self.gallery = [(os.path.basename(path), caption) for path, caption in gallery]
        self.dir, self.written = None, 0.0

    def outputs(self, base: str) -> tuple:
        """Generate's outputs (image, gallery, gif, png, plot, status, link), the link under the page's ``base``."""
        if self.dir is None or time.time() - self.written > streaming.RESULTS_MAX_AGE_S / 2 or not all(
                os.path.exists(os.path.join(self.dir, name)) for name in self.files):
            folder = streaming.results_dir()
            for name, data in self.files.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
            self.dir, self.written = folder, time.time()
        image, gif, png = (os.path.join(self.dir, name) for name in self.names)
        gallery = [(os.path.join(self.dir, name), caption) for name, caption in self.gallery]
        return image, gallery, gif, png, self.plot, self.status, base + self.query


class Handlers:
    def __init__(self, store: ModelStore, *, max_nfe: int = 20_000, time_budget_s: float = 300.0):
        self.store = store
        self.max_nfe = max_nfe
        self.time_budget_s = time_budget_s
        self._kept: tuple[str, KeptResult] | None = None  # (model, the default settings' result)
        self._kept_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ common ---

    def model_name(self, name, kind: str = "image") -> str:
        """``name`` if it is one of the intact models of ``kind`` ("image" or "toy") — a name, never a path — else
        gr.Error listing those models."""
        names = self.store.image_models() if kind == "image" else self.store.toy_models()
        if not names:
            what = "image" if kind == "image" else "2-D toy"
            raise gr.Error(f"no {what} model is available on this server: train one "
                           f"(python -m engine train --config engine/configs/...) or set ENGINE_CHECKPOINTS")
        if not isinstance(name, str) or name not in names:
            raise gr.Error(f"unknown model {shown(name)}; models available here: {', '.join(names)}")
        return name

    def _model(self, name, kind: str = "image"):
        """The loaded model called ``name`` (checked by ``model_name``), or gr.Error. Messages name no server path
        (the log has the details)."""
        name = self.model_name(name, kind)
        try:
            return self.store.load(name)
        except (ValueError, engine.CheckpointError) as err:  # its files changed and no longer check out
            log.error("model %s could not be loaded: %s", name, err)
            raise gr.Error(f"model {name} cannot be loaded now: its checkpoint changed or is damaged; "
                           f"try another model") from None

    def guidance(self, model, label, guidance_scale, where: str = "",
                 random: bool = True) -> tuple[int | str | None, float]:
        """(the engine's label, w) for a checked model name: ``label`` is a class index of a conditional model,
        NO_CLASS (-1, unconditional) or, where ``random`` (runs from noise), RANDOM_CLASS (-2: each image's class
        drawn from the seed); ``guidance_scale`` w in [0, MAX_GUIDANCE], other than 1 only with a class."""
        classes = self.store.classes(model)
        if not classes and label not in (NO_CLASS, None):
            raise gr.Error(f"model {model} is unconditional: label must be {NO_CLASS} (none); pick a "
                           f"class-conditional model (e.g. mnist-cond) to ask for a class{where}")
        lowest = RANDOM_CLASS if random else NO_CLASS
        label = NO_CLASS if label is None else as_int(f"label{where}", label, lowest, len(classes) - 1)
        w = as_float(f"guidance_scale{where}", guidance_scale, 0.0, MAX_GUIDANCE)
        if label == NO_CLASS and w != 1:
            raise gr.Error(f"guidance_scale{where} {w:g} needs a class to steer towards: pick a class (label 0 to "
                           f"{max(len(classes) - 1, 0)}, or {RANDOM_CLASS} for random ones) or set guidance_scale to 1")
        return engine_label(label), w

    # ---------------------------------------------------------------------------------------- generate ---

    def generate_settings(self, model, schedule, sampler, steps, seed, n, spacing, eta, variance, n_steps_each,
                          step_size, snr, n_corrector, label=NO_CLASS, guidance_scale=1.0) -> dict:
        """Generate's checks: the run's settings ({model, schedule, sampler, steps, seed, n, spacing, label,
        guidance_scale, options}), or gr.Error naming the parameter and what is allowed (the network-evaluation
        budget included: a guided step is two evaluations per image)."""
        s = {
            "model": model,
            "schedule": choice("schedule", schedule, SCHEDULES),
            "sampler": choice("sampler", sampler, SAMPLERS),
            "steps": as_int("steps", steps, 1, MAX_STEPS),
            "seed": as_int("seed", seed, 0, engine.MAX_SEED),
            "n": as_int("n", n, 1, MAX_N),
            "spacing": choice("spacing", spacing, SPACINGS),
        }
        s["options"] = sampler_opts(s["sampler"], dict(eta=eta, variance=variance, n_steps_each=n_steps_each,
                                                       step_size=step_size, snr=snr, n_corrector=n_corrector))
        self.model_name(model)
        s["label"], s["guidance_scale"] = self.guidance(model, label, guidance_scale)
        rows = s["n"] * rows_per_sample(s["label"], s["guidance_scale"])
        est = engine.sampler_spec(s["sampler"]).nfe(s["steps"], s["options"]) * rows
        if est > self.max_nfe:
            raise gr.Error(f"this run needs {est:,} network evaluations (steps × per-step evaluations × n, twice "
                           f"for guidance); the limit per request is {self.max_nfe:,}: use fewer steps, images or "
                           f"corrector steps")
        return s

    @on_engine_thread
    def generate(self, model, schedule, sampler, steps, seed, n=1, spacing="leading", eta=OPTIONS["eta"],
                 variance=OPTIONS["variance"], n_steps_each=OPTIONS["n_steps_each"], step_size=OPTIONS["step_size"],
                 snr=OPTIONS["snr"], n_corrector=OPTIONS["n_corrector"], label=NO_CLASS, guidance_scale=1.0,
                 request: gr.Request = None):
        """Stream a sampling run. Yields (image, gallery, gif, png, plot, status, link).

        ``streaming.Stream`` paces the updates (a 50-step run sends 3–5) and writes the pictures as files; the
        schedule plot is drawn once per setting and kept, and only its current-step marker is redrawn
        (``plots.schedule_plot``); the GIF's frames become pictures in one go at the end. Mid-run, the downloads and
        the link are None: the last run's are cleared when this one starts (gr.skip() would cost Gradio ~1 ms per
        output, as it rebuilds the component's config)."""
        s = self.generate_settings(model, schedule, sampler, steps, seed, n, spacing, eta, variance, n_steps_each,
                                   step_size, snr, n_corrector, label, guidance_scale)
        net = self._model(s["model"])
        try:
            run = engine.generate(net, schedule=s["schedule"], sampler=s["sampler"], steps=s["steps"],
                                  seed=s["seed"], n=s["n"], spacing=s["spacing"], label=s["label"],
                                  guidance_scale=s["guidance_scale"], **s["options"])
        except (ValueError, TypeError) as err:
            raise _err(err) from None
        curves = generate_curves(s["schedule"], s["sampler"], s["steps"], s["spacing"])
        total = s["steps"]
        live = streaming.Stream(self.time_budget_s)
        frames: list = []
        step = yield from self._stream(run, total, curves, live, frames)
        elapsed = live.elapsed
        settings, named_class = _class_settings({k: v for k, v in s.items() if k != "options"})
        settings.update(s["options"])
        link = base_url(request) + query_string({"tab": "generate", **settings})
        stem = f"{s['model']}_{s['schedule']}_{s['sampler']}_{s['steps']}_seed{s['seed']}{named_class}"
        image, gif, png = self._files(live, step.x_t, frames, dict(settings, nfe=step.nfe), stem)
        status = (f"{self._ended(step, total)}: {step.i + 1}/{total} steps · NFE {step.nfe} · "
                  f"{live.rate(step.i + 1)} · {elapsed:.2f} s")
        yield image, list(live.gallery), gif, png, _plot(curves, step.t), status, link

    @staticmethod
    def _invert_then_reconstruct(net, x0, schedule: str, steps: int, live: streaming.Stream, label: int | None):
        """DDIM inversion to x_T, step by step, then the DDIM η=0 run back from it: one run of 2 × steps Steps
        (the reconstruction's renumbered after the inversion's), so Stop and the time budget act between any two.
        A conditional model's ``label`` steers both (unguided), as the reconstruction must see the ε̂ inverted."""
        step = None
        for step in engine_editing.inversion(net, x0, schedule=schedule, steps=steps, label=label):
            yield step
        live.snapshot(imaging.display(step.x_t, 160), "x_T.png", f"{_INVERSION_RESULTS[0]} (shown clipped to ±1)")
        back = engine.generate(net, schedule=schedule, sampler="ddim", steps=steps, seed=0, x_T=step.x_t,
                               spacing="leading", eta=0.0, label=label)
        for later in back:
            yield dataclasses.replace(later, i=later.i + steps, nfe=later.nfe + steps)

    @staticmethod
    def _stream(run, total: int, curves: list[dict], live: streaming.Stream, frames: list, cols: int | None = None,
                mark: int | None = None):
        """Drive ``run`` (an iterator of engine Steps, ``total`` of them) for a streamed handler: the gallery's x_t
        and x̂0 snapshots, the GIF's ``frames`` (kept as tensors, converted to pictures in one go at the end; the
        last step is always among them) and a live update (image, gallery, gif, png, plot, status, link) when one is
        due, with the schedule plot of ``curves`` marking ``mark`` (default: the current step). Stops at the time
        budget; returns the last Step. ``cols``: tiles per row of a picture (default: a near-square grid)."""
        snaps, gif_at = _snapshot_indices(total), _snapshot_indices(total, N_GIF_FRAMES)
        size = 160 if cols is None else 480  # a strip of images gets the width of a few
        step = None
        try:
            for step in run:
                if step.i in snaps:  # saved once as files, so re-sending the gallery re-encodes nothing
                    for kind, tag, x in (("x_t", "xt", step.x_t), ("x̂0", "x0", step.x0_pred)):
                        live.snapshot(imaging.display(x, size, cols), f"{tag}_{step.i:04d}.png",
                                      _caption(kind, step, total))
                if step.i in gif_at:
                    frames.append(step.x_t.detach().clone())
                if step.i + 1 == total:
                    continue
                if live.over_budget():
                    break
                if live.due(first=step.i == 0):
                    # the first frame goes out at once, with the plot only if it is kept (a first drawing waits)
                    at = step.t if mark is None else mark
                    plot = _plot(curves, at) if step.i > 0 or plots.is_kept(curves) else gr.skip()
                    status = (f"step {step.i + 1}/{total} · t={step.t} · σ={step.sigma:.3g} · NFE {step.nfe} · "
                              f"{live.rate(step.i + 1)} · {live.elapsed:.1f} s")
                    frame = live.save(imaging.display(step.x_t, imaging.DISPLAY_SIZE * (1 if cols is None else 3),
                                                      cols), f"live_{step.i:04d}.png")
                    yield frame, live.gallery_update(), None, None, plot, status, None
        except ValueError as err:  # a sampler's own option check runs at its first step
            raise _err(err) from None
        if step is None:
            raise gr.Error("the sampler produced no steps")
        if step.i not in gif_at:
            frames.append(step.x_t.detach().clone())
        return step

    def _ended(self, step: engine.Step, total: int) -> str:
        return "done" if step.i + 1 == total else f"stopped by the time budget ({self.time_budget_s:g} s per request)"

    @staticmethod
    def _files(live: streaming.Stream, x: torch.Tensor, frames: list, settings: dict, stem: str,
               cols: int | None = None) -> tuple[str, str, str]:
        """A finished run's files in ``live``'s folder: the result ``x`` upscaled for the page, the GIF of
        ``frames`` and the PNG of ``x`` at native resolution with ``settings`` in its text chunk. Returns their
        paths (image, gif, png)."""
        final = imaging.grid(x, cols=cols)
        png = imaging.png_with_settings(final, dict(settings, app="denoisery"), live.dir, stem)
        size = imaging.DISPLAY_SIZE * (1 if cols is None else 3)
        gif = imaging.gif([imaging.upscale(f, size) for f in imaging.grids(frames, cols=cols)], live.dir, stem)
        return live.save(imaging.upscale(final, size), "final.png"), gif, png

    def default_values(self) -> list:
        """Generate's arguments at the page's default settings (model, schedule, …, n_corrector), in order; None
        when no image model is available."""
        model = pick(self.store.image_models(), DEFAULT_MODEL)
        if model is None:
            return None
        d = DEFAULTS
        return [model, d["schedule"], d["sampler"], d["steps"], d["seed"], d["n"], d["spacing"], *OPTIONS.values(),
                NO_CLASS, 1.0]

    def default_result(self, request: gr.Request | None = None) -> tuple | None:
        """Generate's outputs at the default settings (``default_values``), made by the first call in this process
        and then kept in memory (``KeptResult``): every page opened without a result link shows it at once, and no
        visitor pays for the run again. None when no image model is available."""
        values = self.default_values()
        if values is None:
            return None
        with self._kept_lock:  # the first callers wait for one run; never held on an engine thread
            if self._kept is None or self._kept[0] != values[0]:
                final = None
                for final in self.generate(*values):
                    pass
                self._kept = (values[0], KeptResult(final))
            return self._kept[1].outputs(base_url(request))

    # ----------------------------------------------------------------------------------------- compare ---

    def compare_panels(self, model, seed, panels, n, label=NO_CLASS, **panel_values) -> tuple[int, int, list]:
        """Compare's checks: (seed, n, panel settings), or gr.Error naming the parameter (the panels' budget of
        network evaluations included). ``label`` is every panel's class (a conditional model), ``guidance_K``
        panel K's guidance scale."""
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        count = as_int("panels", panels, 1, engine_compare.MAX_PANELS)
        n = as_int("n", n, 1, COMPARE_MAX_N)
        self.model_name(model)
        specs = []
        for k in range(1, count + 1):
            sched = choice(f"schedule of panel {k}", panel_values.get(f"schedule_{k}"), SCHEDULES)
            samp = choice(f"sampler of panel {k}", panel_values.get(f"sampler_{k}"), SAMPLERS)
            steps = as_int(f"steps of panel {k}", panel_values.get(f"steps_{k}"), 1, MAX_STEPS)
            lab, w = self.guidance(model, label, panel_values.get(f"guidance_{k}", 1.0), f" of panel {k}")
            specs.append(engine_compare.Panel(sched, samp, steps, engine.sampler_spec(samp).spacing, label=lab,
                                              guidance_scale=w))
        est = sum(engine.sampler_spec(p.sampler).nfe(p.steps) * rows_per_sample(p.label, p.guidance_scale)
                  for p in specs) * n
        if est > self.max_nfe:
            raise gr.Error(f"these panels need {est:,} network evaluations; the limit per request is "
                           f"{self.max_nfe:,}: use fewer steps or panels")
        return seed, n, specs

    @on_engine_thread
    def compare(self, model, seed, panels=3, n=1, request: gr.Request = None, **panel_values):
        """Run up to 6 panels in lock-step from one seed. Yields (gallery, plot, table, status, trajectories,
        scrub-slider update, link)."""
        seed, n, specs = self.compare_panels(model, seed, panels, n, **panel_values)
        net = self._model(model)
        try:
            comp = engine_compare.compare(net, specs, seed=seed, n=n)
        except ValueError as err:
            raise _err(err) from None
        traj: list[list[np.ndarray]] = [[] for _ in specs]
        live = streaming.Stream(self.time_budget_s, streaming.COMPARE_EVERY_S)
        skip = gr.skip()
        latest = None
        try:
            for latest in comp:
                for k, st in enumerate(latest):
                    if not comp.done[k] and len(traj[k]) <= st.i:
                        traj[k].append(np.asarray(imaging.grid(st.x_t)))
                if live.due(first=comp.rounds == 1):
                    yield (self._compare_gallery(latest, comp, specs, live), skip, skip,
                           f"round {comp.rounds} · {live.elapsed:.1f} s", skip, skip, skip)
                if live.over_budget():
                    break
        finally:  # also when the request is cancelled: the panels' threads end here
            comp.close()
        if latest is None:
            raise gr.Error("nothing ran")
        clf = self.store.classifier_for(model)
        rows = [[k + 1, p.title(), st.nfe, round(comp.elapsed[k], 3), _quality(clf, st.x_t)]
                for k, (p, st) in enumerate(zip(specs, latest))]
        plot = _plot([{"schedule": p.schedule, "label": f"{k + 1}: {p.title()}",  # drawn once per set of panels
                       "visited": engine.get_schedule(p.schedule).timesteps(p.steps, p.spacing).tolist()}
                      for k, p in enumerate(specs)])
        longest = max(len(t) for t in traj)
        state = {"traj": traj, "labels": [p.title() for p in specs], "steps": [p.steps for p in specs]}
        query = {"tab": "compare", "model": model, "seed": seed, "n": n, "panels": len(specs),
                 "label": None if specs[0].label is None else picker_value(specs[0].label)}
        for k, p in enumerate(specs, 1):
            query.update({f"schedule_{k}": p.schedule, f"sampler_{k}": p.sampler, f"steps_{k}": p.steps})
            if p.label is not None:
                query[f"guidance_{k}"] = p.guidance_scale
        status = (f"done: {comp.rounds} rounds · {comp.batches} batched network calls · "
                  f"{live.elapsed:.2f} s · same x_T and noise (seed {seed})")
        yield (self._compare_gallery(latest, comp, specs, live), plot, rows, status, state,
               gr.update(maximum=longest, value=longest, interactive=True), base_url(request) + query_string(query))

    @staticmethod
    def _compare_gallery(steps, comp, specs, live: streaming.Stream):
        out = []
        for k, (st, p) in enumerate(zip(steps, specs)):
            cap = (f"{k + 1}: {p.title()} · step {st.i + 1}/{p.steps} · NFE {st.nfe} · "
                   f"{comp.elapsed[k]:.2f} s")
            out.append((live.save(imaging.display(st.x_t, 192), f"panel{k + 1}_{comp.rounds:04d}.png"), cap))
        return out

    @staticmethod
    def scrub(position, state):
        """The panels at lock-step round ``position`` (a panel that had finished shows its last state)."""
        if not state:
            return gr.skip()
        r = max(1, int(position or 1))
        out = []
        for k, (tr, label, steps) in enumerate(zip(state["traj"], state["labels"], state["steps"])):
            i = min(r, len(tr)) - 1
            out.append((imaging.upscale(imaging.Image.fromarray(np.asarray(tr[i])), 192),
                        f"{k + 1}: {label} · step {i + 1}/{steps}"))
        return out

    # ----------------------------------------------------------------------------------------- forward ---

    @staticmethod
    def forward_settings(dataset, index, schedules, timesteps, seed, upload) -> tuple:
        """Forward's checks: (dataset, schedules, t values, seed), or gr.Error naming the parameter. The image
        ``index`` is checked against the dataset's size, and the upload decoded, by ``forward`` itself."""
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        if isinstance(schedules, str):
            schedules = [schedules]
        schedules = list(schedules or [])
        if not schedules:
            raise gr.Error("choose at least one schedule")
        for sname in schedules:
            choice("schedule", sname, SCHEDULES)
        parts = [t.strip() for t in str(timesteps).replace(";", ",").split(",") if t.strip()]
        if not 1 <= len(parts) <= MAX_TIMESTEPS:
            raise gr.Error(f"choose 1 to {MAX_TIMESTEPS} values of t; got {len(parts)}")
        try:
            ts = [int(t) for t in parts]  # whole numbers only: "1.5", "1e400" and 5000-digit strings are refused
        except ValueError:
            raise gr.Error(f"t values must be integers separated by commas; got {shown(timesteps)}") from None
        return choice("dataset", dataset, FORWARD_DATASETS), schedules, ts, seed

    @on_engine_thread
    def forward(self, dataset="mnist", index=0, schedules=("linear", "cosine"), timesteps="0, 50, 100, 250, 500, 750, 999",
                seed=0, upload=None):
        """q(x_t | x_0) at the chosen t for each schedule. Returns (gallery, plot, x_0 image, x_0 description).

        ``upload`` is the path of an uploaded image file (or None: the dataset's image ``index``); it is decoded
        by ``imaging.open_upload``, within the app's byte and pixel caps."""
        dataset, schedules, ts, seed = self.forward_settings(dataset, index, schedules, timesteps, seed, upload)
        try:
            images, _ = engine_data.load_dataset(dataset, "test")
        except (FileNotFoundError, ValueError) as err:
            log.error("dataset %s could not be loaded: %s", dataset, err)
            raise gr.Error(f"the dataset {dataset} is not installed on this server; choose another") from None
        if upload is not None:
            try:
                x0 = engine_forward.image_to_tensor(imaging.open_upload(upload), tuple(images.shape[1:]))
            except ValueError as err:
                raise _err(err) from None
            source = "upload"
        else:
            index = as_int("index", index, 0, len(images) - 1)
            x0 = images[index: index + 1]
            source = f"{dataset} test #{index}"
        gallery = []
        for sname in schedules:
            try:
                xt = engine_forward.noise_images(x0, sname, ts, seed)  # (len(ts), 1, C, H, W)
                stats = engine_forward.signal_stats(sname, ts)
            except ValueError as err:
                raise _err(err) from None
            for st, img in zip(stats, xt):
                gallery.append((imaging.display(img, 128),
                                f"{sname} · t={st['t']} · ᾱ={st['alpha_bar']:.3g} · σ={st['sigma']:.3g}"))
        plot = PlotData(type="matplotlib", plot=plots.forward_curves_plot(schedules, ts))
        return gallery, plot, imaging.display(x0, 128), source

    # ------------------------------------------------------------------------------------- score field ---

    def field_settings(self, model, sigma, sampler, schedule, steps, seed, particles) -> tuple:
        """Score field's checks: (σ, steps, seed, particles), or gr.Error naming the parameter."""
        out = (as_float("sigma", sigma, *FIELD_SIGMA), as_int("steps", steps, 1, FIELD_MAX_STEPS),
               as_int("seed", seed, 0, engine.MAX_SEED), as_int("particles", particles, *FIELD_PARTICLES))
        choice("sampler", sampler, SAMPLERS)
        choice("schedule", schedule, SCHEDULES)
        self.model_name(model, kind="toy")
        return out

    @on_engine_thread
    def score_field(self, model, sigma=0.5, sampler="ddim", schedule="cosine", steps=50, seed=0, particles=500):
        """Score arrows at σ over p_σ, and particles moved by the sampler, animated (a time slider) over the density
        of their state. Returns (plot, animation, status)."""
        sigma, steps, seed, count = self.field_settings(model, sigma, sampler, schedule, steps, seed, particles)
        net = self._model(model, kind="toy")
        t0 = time.perf_counter()
        try:
            field = engine_fields.score_field(net, sigma, lim=3.0, n=21)
            toy = engine_fields.toy_of(net)
            dens = engine_fields.noisy_density(toy, sigma, lim=3.0, n=80) if toy else None
            run = engine_fields.particles(net, schedule=schedule, sampler=sampler, steps=steps, seed=seed, n=count)
        except (ValueError, TypeError) as err:
            raise _err(err) from None
        final = run[-1].x_t.numpy()
        fig = plots.score_field_figure(field, dens, f"{model}: score at σ = {sigma:.3g} (arrows),\n"
                                                    f"p_σ (shade), {sampler} samples (dots)", points=final)
        y0 = engine_data.toy_sample(toy, 1000, torch.Generator().manual_seed(seed)) if toy else None
        anim = playground.animation(net, run, y0, (-3.0, 3.0), (-3.0, 3.0),
                                    f"{sampler} · {schedule} · {len(run)} steps: drag the slider to move in time")
        status = f"{count} particles · {len(run)} steps · NFE {run[-1].nfe} · {time.perf_counter() - t0:.2f} s"
        return fig, anim, status

    # -------------------------------------------------------------------------------------------- edit ---

    def edit_settings(self, model, mode, source, dataset, index, upload, sketch, mask, schedule, sampler, steps, seed,
                      strength, jump_length, resamples, k, ends, seed_b, index_b, label=NO_CLASS,
                      guidance_scale=1.0) -> dict:
        """Edit's checks: the run's settings (those of its ``mode`` only, and a conditional model's ``label`` and
        ``guidance_scale``), or gr.Error naming the parameter and what is allowed (the network-evaluation budget
        included: a guided step is two evaluations per image). The images themselves are decoded by ``edit``
        (the guard has checked their files' size, format and pixel count); an image ``index`` is checked against the
        dataset's size there too, as Forward does."""
        s = {"model": model, "mode": choice("mode", mode, EDIT_MODES),
             "schedule": choice("schedule", schedule, SCHEDULES), "steps": as_int("steps", steps, 1, MAX_STEPS)}
        mode = s["mode"]
        self.model_name(model)
        label, w = self.guidance(model, label, guidance_scale, random=False)
        rows = rows_per_sample(label, w)
        if mode == "img2img":
            s["sampler"] = choice("sampler", sampler, SAMPLERS)
            s["strength"] = as_float("strength", strength, *EDIT_STRENGTH)
            spec = engine.sampler_spec(s["sampler"])
            try:
                kept = len(engine_editing.img2img_levels(s["schedule"], s["steps"], s["strength"], spec.spacing))
            except ValueError as err:
                raise _err(err) from None
            est = spec.nfe(kept) * rows
        elif mode == "inpaint":
            s["jump_length"] = as_int("jump_length", jump_length, 1, s["steps"])
            s["resamples"] = as_int("resamples", resamples, 1, engine_editing.MAX_RESAMPLES)
            est = engine_editing.inpaint_nfe(s["steps"], s["jump_length"], s["resamples"]) * rows
        elif mode == "invert":
            # the engine inverts with ε̂(x, c) unguided: with w > 1 DDIM inversion's error grows (Mokady et al.
            # 2022), so guided inversion is left out rather than offered badly
            if w != 1:
                raise gr.Error(f"inversion takes no guidance: set guidance_scale to 1 (got {w:g}); "
                               f"a class is allowed and inverts with the conditional model")
            est = 2 * s["steps"]  # the inversion, then the reconstruction
        else:
            s["sampler"] = choice("sampler", sampler, SAMPLERS)
            s["k"] = as_int("k", k, 2, engine_editing.MAX_INTERPOLATION_FRAMES)
            try:  # the engine's own refusal of a sampler that draws noise during the run
                engine_editing.check_deterministic(s["sampler"])
            except ValueError as err:
                raise _err(err) from None
            s["ends"] = choice("ends", ends, EDIT_ENDS)
            est = engine.sampler_spec(s["sampler"]).nfe(s["steps"]) * s["k"] * rows
            if s["ends"] == "seeds":
                s["seed_b"] = as_int("seed_b", seed_b, 0, engine.MAX_SEED)
            else:
                s["index_b"] = as_int("index_b", index_b, 0, MAX_INDEX)
                est += 2 * s["steps"]  # both images inverted (with the label, unguided)
        if mode != "interpolate" or s["ends"] == "images":
            s["source"] = choice("source", source, EDIT_SOURCES)
            if s["source"] == "dataset":
                s["index"] = as_int("index", index, 0, MAX_INDEX)
            elif (upload if s["source"] == "upload" else sketch) is None:
                todo = "upload an image" if s["source"] == "upload" else "draw on the sketch canvas"
                raise gr.Error(f"source is {s['source']}: {todo} first, or choose another source")
        if "index" in s or "index_b" in s:
            s["dataset"] = choice("dataset", dataset, FORWARD_DATASETS)
        if mode in ("img2img", "inpaint") or mode == "interpolate" and s["ends"] == "seeds":
            s["seed"] = as_int("seed", seed, 0, engine.MAX_SEED)
        if est > self.max_nfe:
            raise gr.Error(f"this edit needs {est:,} network evaluations{' (twice for guidance)' if rows > 1 else ''}; "
                           f"the limit per request is {self.max_nfe:,}: use fewer steps"
                           f"{', resamples or a longer jump_length' if mode == 'inpaint' else ''}"
                           f"{' or images (k)' if mode == 'interpolate' else ''}")
        s["label"], s["guidance_scale"] = label, w  # last, as in the endpoint's parameters (and so in its links)
        return s

    def _dataset_image(self, dataset: str, index: int, name: str, shape: tuple) -> torch.Tensor:
        """Image ``index`` of the dataset's test split as (1, *shape), converted to the model's shape when the
        dataset's differs; gr.Error when the dataset is missing or the index out of range (``name``: the parameter)."""
        try:
            images, _ = engine_data.load_dataset(dataset, "test")
        except (FileNotFoundError, ValueError) as err:
            log.error("dataset %s could not be loaded: %s", dataset, err)
            raise gr.Error(f"the dataset {dataset} is not installed on this server; choose another") from None
        index = as_int(name, index, 0, len(images) - 1)
        x = images[index: index + 1]
        return x if tuple(x.shape[1:]) == shape else engine_forward.image_to_tensor(imaging.grid(x), shape)

    def _edit_source(self, s: dict, shape: tuple, upload, sketch) -> tuple[torch.Tensor, str]:
        """The source image as (1, *shape) and a description of it."""
        if s["source"] == "dataset":
            return self._dataset_image(s["dataset"], s["index"], "index", shape), f"{s['dataset']} test #{s['index']}"
        try:
            if s["source"] == "upload":
                return engine_forward.image_to_tensor(imaging.open_upload(upload), shape), "upload"
            picture = sketch.get("composite") if isinstance(sketch, dict) else None
            if picture is None or not picture.getbbox():
                raise gr.Error("the sketch is empty: draw on the canvas first (white strokes on black)")
            return engine_forward.image_to_tensor(picture, shape), "sketch"
        except ValueError as err:
            raise _err(err) from None

    def mask_canvas(self, model, mode, source, dataset, index, upload, sketch):
        """The mask editor's canvas for inpainting: the source image at the model's resolution, upscaled, with no
        paint; gr.skip() outside inpainting or while the source is not ready (a refusal says why)."""
        if mode != "inpaint" or model not in self.store.image_models():
            return gr.skip()
        shape = tuple(self.store.card(model).get("data_shape", ()))
        if len(shape) != 3 or source == "upload" and upload is None or source == "sketch" and sketch is None:
            return gr.skip()
        s = {"source": choice("source", source, EDIT_SOURCES), "dataset": choice("dataset", dataset, DATASETS),
             "index": as_int("index", index, 0, MAX_INDEX)}
        if source == "sketch" and not (isinstance(sketch, dict) and sketch.get("composite") is not None
                                       and sketch["composite"].getbbox()):
            return gr.skip()  # nothing drawn yet
        x0, _ = self._edit_source(s, shape, upload, sketch)
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
        s = self.edit_settings(model, mode, source, dataset, index, upload, sketch, mask, schedule, sampler, steps,
                               seed, strength, jump_length, resamples, k, ends, seed_b, index_b, label, guidance_scale)
        class_guidance = {"label": s["label"], "guidance_scale": s["guidance_scale"]}
        net = self._model(s["model"])
        shape = tuple(net.data_shape)
        if len(shape) != 3:
            raise gr.Error(f"model {s['model']} does not make images; choose an image model")
        live = streaming.Stream(self.time_budget_s)
        x0, described = self._edit_source(s, shape, upload, sketch) if "source" in s else (None, "")
        if x0 is not None:
            live.snapshot(imaging.display(x0, 160), "source.png", f"source: {described}")
        mode, steps, cols, mark, head = s["mode"], s["steps"], None, None, ""
        try:
            if mode == "img2img":
                spacing = engine.sampler_spec(s["sampler"]).spacing
                levels = engine_editing.img2img_levels(s["schedule"], steps, s["strength"], spacing)
                mark, a = levels[0]
                head = f"starts at t = {mark}, σ = {math.sqrt((1 - a) / a):.3g} ({len(levels)} of {steps} steps)"
                run = engine_editing.img2img(net, x0, strength=s["strength"], schedule=s["schedule"],
                                             sampler=s["sampler"], steps=steps, seed=s["seed"], **class_guidance)
                total, curves = len(levels), edit_curves(s["schedule"], [t for t, _ in levels], "img2img")
            elif mode == "inpaint":
                m = imaging.mask_from_layers((mask or {}).get("layers") or [], shape[1:])
                run = engine_editing.inpaint(net, x0, m, schedule=s["schedule"], steps=steps, seed=s["seed"],
                                             jump_length=s["jump_length"], resamples=s["resamples"],
                                             **class_guidance)
                unknown = int((m == 0).sum())
                live.snapshot(imaging.display(x0 * m, 160), "split.png",
                              f"known / unknown (grey, to fill): {unknown} of {m.numel()} pixels to fill")
                head = f"{unknown} of {m.numel()} pixels filled"
                total = engine_editing.inpaint_nfe(steps, s["jump_length"], s["resamples"])
                curves = edit_curves(s["schedule"], visited_levels(s["schedule"], steps, "leading"), "RePaint (ddpm)")
            elif mode == "invert":
                run = self._invert_then_reconstruct(net, x0, s["schedule"], steps, live, s["label"])
                total = 2 * steps
                curves = edit_curves(s["schedule"], visited_levels(s["schedule"], steps, "leading"), "DDIM η=0")
            else:
                spacing = engine.sampler_spec(s["sampler"]).spacing
                if s["ends"] == "images":
                    x_b = self._dataset_image(s["dataset"], s["index_b"], "index_b", shape)
                    ends_x = engine_editing.invert(net, torch.cat([x0, x_b]), schedule=s["schedule"], steps=steps,
                                                   spacing=spacing, label=s["label"])
                    run = engine_editing.interpolate(net, schedule=s["schedule"], sampler=s["sampler"], steps=steps,
                                                     k=s["k"], x_T=(ends_x[0], ends_x[1]), spacing=spacing,
                                                     **class_guidance)
                    head = f"between {described} and {s['dataset']} test #{s['index_b']} (inverted)"
                else:
                    run = engine_editing.interpolate(net, schedule=s["schedule"], sampler=s["sampler"], steps=steps,
                                                     k=s["k"], seeds=(s["seed"], s["seed_b"]), spacing=spacing,
                                                     **class_guidance)
                    head = f"between seeds {s['seed']} and {s['seed_b']}"
                total, cols = steps, s["k"]
                curves = edit_curves(s["schedule"], visited_levels(s["schedule"], steps, spacing), s["sampler"])
        except ValueError as err:
            raise _err(err) from None
        frames: list = []
        step = yield from self._stream(run, total, curves, live, frames, cols, mark)
        elapsed = live.elapsed
        tail = f"{head} · " if head else ""
        if mode == "invert":
            err = (step.x_t.clamp(-1, 1) - x0).abs()
            live.snapshot(imaging.display(step.x_t, 160), "reconstruction.png", f"{_INVERSION_RESULTS[1]} (DDIM η=0 from x_T)")
            live.snapshot(imaging.display(err * 2 - 1, 160), "error.png", f"{_INVERSION_RESULTS[2]} (white = 2)")
            tail += f"reconstruction error {float(err.mean()) * 127.5:.2f} grey levels (mean |x̂ − x|) · "
        settings, named_class = _class_settings(s)
        link = base_url(request) + query_string({"tab": "edit", **settings})
        kept_out = [s["source"]] if s.get("source") in ("upload", "sketch") else []
        kept_out += ["mask"] if mode == "inpaint" else []
        if kept_out:
            tail += f"the link carries the settings, not the {' or the '.join(kept_out)} · "
        seeded = f"_seed{s['seed']}" if "seed" in s else ""
        stem = f"{s['model']}_{mode}_{s['schedule']}_{steps}{seeded}{named_class}"
        image, gif, png = self._files(live, step.x_t, frames, dict(settings, nfe=step.nfe), stem, cols)
        status = (f"{self._ended(step, total)}: {mode} · {tail}{step.i + 1}/{total} steps · NFE {step.nfe} · "
                  f"{elapsed:.2f} s")
        gallery = list(live.gallery)
        if mode == "invert":  # source, x_T, reconstruction and error first, then the runs' snapshots
            front = [g for g in gallery if g[1].startswith(_INVERSION_RESULTS)]
            gallery = gallery[:1] + front + [g for g in gallery[1:] if g not in front]
        yield image, gallery, gif, png, _plot(curves, mark if mark is not None else step.t), status, link


def visited_levels(schedule: str, steps: int, spacing: str) -> list[int]:
    return engine.get_schedule(schedule).timesteps(steps, spacing).tolist()


def edit_curves(schedule: str, visited: list[int], label: str) -> list[dict]:
    """The Edit tab's schedule plot: the schedule's curves with the levels the run visits ticked."""
    return [{"schedule": schedule, "label": f"{schedule} · {label}", "visited": visited}]
