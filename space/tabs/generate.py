"""The Generate tab: sample images from noise with any schedule and sampler, streamed live (endpoint ``/generate``).

The page opens with the default settings' result, made once per process and kept (``streaming.KeptResult``); a Generate
link reruns its settings. A guided run costs two network rows per image and evaluation (ε̂(x, ∅) and ε̂(x, c),
``engine.models.rows_per_sample``): the status says both the NFE and the rows.
"""
from __future__ import annotations

import random
import threading

import gradio as gr

import engine
from engine.models import rows_per_sample
from engine.samplers import OPTION_VALUES

from .. import engine_thread, plots, streaming
from ..checks import as_int, choice, engine_error, sampler_opts
from ..context import AppContext
from ..engine_thread import on_engine_thread
from ..guard import validator
from ..links import Link, base_url, class_settings, query_string
from ..models import ModelStore
from ..room import Room
from ..settings import (DEFAULT_MODEL, DEFAULTS, MAX_N, MAX_STEPS, OPTION_SLIDERS, OPTIONS, RANDOM_CLASS, SAMPLERS,
                        SCHEDULES, SPACINGS, WORKERS, pick)
from ..widgets import (class_picker, class_updates, follow_model, guidance_slider, model_picker, model_update,
                       run_controls, seed_number, stops, streamed_result)


def curves(schedule: str, sampler: str, steps: int, spacing: str) -> list[dict]:
    """The Generate tab's schedule plot: the schedule's curves with the run's timesteps ticked."""
    return [plots.curve(schedule, f"{schedule} · {sampler}", plots.visited(schedule, steps, spacing))]


class Generate:
    """The endpoint ``generate`` and its checks (``settings``, the event's validator); the page's opening result."""

    def __init__(self, app: AppContext):
        self.app = app
        self._kept: tuple[str, streaming.KeptResult] | None = None  # (model, the default settings' result)
        self._kept_lock = threading.Lock()

    def settings(self, model, schedule, sampler, steps, seed, n, spacing, eta, variance, n_steps_each,
                 step_size, snr, n_corrector, label=RANDOM_CLASS, guidance_scale=1.0) -> dict:
        """Generate's checks: the run's settings ({model, schedule, sampler, steps, seed, n, spacing, label,
        guidance_scale, options}), or gr.Error naming the parameter and what is allowed (the network-evaluation
        budget included: a guided step is two evaluations per image)."""
        s = {"model": model, "schedule": choice("schedule", schedule, SCHEDULES),
             "sampler": choice("sampler", sampler, SAMPLERS), "steps": as_int("steps", steps, 1, MAX_STEPS),
             "seed": as_int("seed", seed, 0, engine.MAX_SEED), "n": as_int("n", n, 1, MAX_N),
             "spacing": choice("spacing", spacing, SPACINGS)}
        s["options"] = sampler_opts(s["sampler"], dict(eta=eta, variance=variance, n_steps_each=n_steps_each,
                                                       step_size=step_size, snr=snr, n_corrector=n_corrector))
        self.app.model_name(model)
        s["label"], s["guidance_scale"] = self.app.guidance(model, label, guidance_scale)
        rows = s["n"] * rows_per_sample(s["label"], s["guidance_scale"])
        self.app.check_budget("this run needs",
                              engine.sampler_spec(s["sampler"]).nfe(s["steps"], s["options"]) * rows,
                              "steps, images or corrector steps",
                              " (steps × per-step evaluations × n, twice for guidance)")
        return s

    @on_engine_thread
    def generate(self, model, schedule, sampler, steps, seed, n=1, spacing="leading", eta=OPTIONS["eta"],
                 variance=OPTIONS["variance"], n_steps_each=OPTIONS["n_steps_each"], step_size=OPTIONS["step_size"],
                 snr=OPTIONS["snr"], n_corrector=OPTIONS["n_corrector"], label=RANDOM_CLASS, guidance_scale=1.0,
                 request: gr.Request = None):
        """Stream a sampling run. Yields (image, gallery, gif, png, plot, status, link).

        ``streaming.Stream`` paces the updates (a 50-step run sends 3–5) and writes the pictures as files; the
        schedule plot is drawn once per setting and kept, and only its current-step marker is redrawn
        (``plots.schedule_plot``); the GIF's frames become pictures in one go at the end. Mid-run, the downloads and
        the link are None: the last run's are cleared when this one starts (gr.skip() would cost Gradio ~1 ms per
        output, as it rebuilds the component's config)."""
        s = self.settings(model, schedule, sampler, steps, seed, n, spacing, eta, variance, n_steps_each,
                          step_size, snr, n_corrector, label, guidance_scale)
        net = self.app.model(s["model"])
        try:
            run = engine.generate(net, schedule=s["schedule"], sampler=s["sampler"], steps=s["steps"],
                                  seed=s["seed"], n=s["n"], spacing=s["spacing"], label=s["label"],
                                  guidance_scale=s["guidance_scale"], **s["options"])
        except (ValueError, TypeError) as err:
            raise engine_error(err) from None
        drawn = curves(s["schedule"], s["sampler"], s["steps"], s["spacing"])
        total, live, frames = s["steps"], streaming.Stream(self.app.time_budget_s), []
        step = yield from streaming.drive(run, total, drawn, live, frames)
        elapsed = live.elapsed
        settings, named_class = class_settings({k: v for k, v in s.items() if k != "options"},
                                               conditional=bool(self.app.store.classes(s["model"])))
        settings.update(s["options"])
        link = base_url(request) + query_string({"tab": "generate", **settings})
        stem = f"{s['model']}_{s['schedule']}_{s['sampler']}_{s['steps']}_seed{s['seed']}{named_class}"
        image, gif, png = streaming.result_files(live, step.x_t, frames, dict(settings, nfe=step.nfe), stem)
        rows = rows_per_sample(s["label"], s["guidance_scale"])
        status = (f"{self.app.ended(step.i + 1 == total)}: {step.i + 1}/{total} steps · "
                  f"{streaming.cost(step.nfe, rows)} · {live.rate(step.i + 1)} · {elapsed:.2f} s")
        yield image, list(live.gallery), gif, png, plots.marked(drawn, step.t), status, link

    def default_values(self) -> list | None:
        """Generate's arguments at the page's default settings (model, schedule, …, guidance_scale), in order; None
        when no image model is available."""
        model = pick(self.app.store.image_models(), DEFAULT_MODEL)
        if model is None:
            return None
        d = DEFAULTS
        return [model, d["schedule"], d["sampler"], d["steps"], d["seed"], d["n"], d["spacing"], *OPTIONS.values(),
                RANDOM_CLASS, 1.0]

    def default_result(self, request: gr.Request | None = None) -> tuple | None:
        """Generate's outputs at the default settings (``default_values``), made by the first call in this process
        and then kept in memory (``streaming.KeptResult``): every page opened without a result link shows it at once,
        and no visitor pays for the run again. None when no image model is available."""
        values = self.default_values()
        if values is None:
            return None
        with self._kept_lock:  # the first callers wait for one run; never held on an engine thread
            if self._kept is None or self._kept[0] != values[0]:
                final = None
                for final in self.generate(*values):
                    pass
                self._kept = (values[0], streaming.KeptResult(final))
            return self._kept[1].outputs(base_url(request))


def warm_up(store: ModelStore | None = None, handlers: Generate | None = None, batches=(1, 4)) -> None:
    """Import matplotlib and draw the schedule plot of the default Generate settings, so that the first request
    pays for neither (~1 s); for a background thread once the page is served (app.py). With a ``store`` whose models
    compile in the background, also run the default model for one step at each of ``batches`` (one image, and the
    Generate tab's default four), which queues their compile before the first visitor asks; that run is made on the
    engine thread, like every request's. With ``handlers`` (the Generate tab's), then make the default settings'
    result that every page opens with (``Generate.default_result``), so that the first visitor need not wait."""
    d = DEFAULTS
    plots.schedule_plot(curves(d["schedule"], d["sampler"], d["steps"], d["spacing"]))
    if store is not None and store.background_compile and DEFAULT_MODEL in store.image_models():
        net = store.load(DEFAULT_MODEL)
        for n in batches:
            engine_thread.run(engine.sample, net, schedule=d["schedule"], sampler=d["sampler"], steps=1, seed=0, n=n,
                              spacing=d["spacing"])
    if handlers is not None:
        handlers.default_result()


def own_sampling(app: AppContext, model: str) -> list:
    """Updates of schedule, sampler, steps and spacing for a model whose card says how to sample it
    (``ModelStore.sampling``: a distilled student's sampler at the most of its step counts, the setting its bar on the
    results page judges, and the spacing ``generate`` gives them); a model whose card says nothing leaves the user's
    settings as they are."""
    own = app.store.sampling(model) if model in app.store.image_models() else None
    if not own:
        return [gr.skip()] * 4
    spacing = engine.get_schedule(own["schedule"]).spacing or engine.sampler_spec(own["sampler"]).spacing
    return [gr.update(value=own["schedule"]), gr.update(value=own["sampler"]), gr.update(value=max(own["steps"])),
            gr.update(value=spacing)]


OPTION_LABELS = {"eta": ("DDIM η", "0 = deterministic, 1 = DDPM-like noise"), "n_steps_each": (
    "Langevin steps per level", None), "step_size": ("Langevin step size (α = size·σ²)", None),
    "snr": ("PC corrector SNR", None), "n_corrector": ("PC corrector steps", None)}


def _options() -> dict:
    """The sampler options' fields (in the Advanced accordion), by option name, in the endpoint's order."""
    spacing = gr.Radio(SPACINGS, value=DEFAULTS["spacing"], label="timestep spacing",
                       info="choosing a sampler sets the spacing that suits it", elem_id="g-spacing")
    fields = {"spacing": spacing}
    for name in OPTIONS:
        if name == "variance":
            fields[name] = gr.Radio(list(OPTION_VALUES["variance"]), value=OPTIONS["variance"], label="DDPM variance")
            continue
        lo, hi, step = OPTION_SLIDERS[name]
        label, info = OPTION_LABELS[name]
        fields[name] = gr.Slider(lo, hi, value=OPTIONS[name], step=step, label=label, info=info)
    return fields


def _layout(app: AppContext, model: str | None) -> tuple[dict, object, tuple, gr.Button]:
    """The tab's fields (by the endpoint's parameter names, in its order), its run controls, its outputs and the
    dice that draws a seed."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            fields = {"model": model_picker(app.store.image_models(), model, "g-model"),
                      "schedule": gr.Dropdown(SCHEDULES, value=DEFAULTS["schedule"], label="schedule",
                                              elem_id="g-schedule"),
                      "sampler": gr.Dropdown(SAMPLERS, value=DEFAULTS["sampler"], label="sampler", elem_id="g-sampler"),
                      "steps": gr.Slider(1, MAX_STEPS, value=DEFAULTS["steps"], step=1, label="steps",
                                         elem_id="g-steps")}
            with gr.Row(equal_height=True):
                fields["seed"] = seed_number(DEFAULTS["seed"], elem_id="g-seed", scale=4)
                dice = gr.Button("random", scale=1, min_width=60, elem_id="g-dice")
            fields["n"] = gr.Slider(1, MAX_N, value=DEFAULTS["n"], step=1, label="images (n)", elem_id="g-n")
            label = class_picker(app, model, "g")
            guidance = guidance_slider(app, model, elem_id="g-guidance")
            with gr.Accordion("Advanced (sampler options)", open=False):
                fields.update(_options())
            fields.update(label=label, guidance_scale=guidance)
            controls = run_controls("Generate", "g")
        with gr.Column(scale=2):
            image, plot, gallery, gif, png = streamed_result(
                "g", "x_t (live) → sample", "schedule: ᾱ_t and log-SNR, current step marked",
                "x_t snapshots and x̂0 (the model's current guess)", image_id="live-image")
    return fields, controls, (image, gallery, gif, png, plot, controls.status, controls.link), dice


def build(app: AppContext, opened: gr.State) -> Room:
    """The Generate tab: its layout, the endpoint ``/generate`` (Stop ends it), the dice, the sampler's spacing, the
    class controls; a Generate link's run, and the default result the page opens with."""
    handlers = Generate(app)
    model = pick(app.store.image_models(), DEFAULT_MODEL)
    with gr.Tab("Generate", id="generate"):
        fields, controls, outputs, dice = _layout(app, model)
    inputs = list(fields.values())
    streamed = dict(outputs=list(outputs), show_progress_on=[controls.status], concurrency_id="generate")
    run = controls.run.click(handlers.generate, inputs=inputs, **streamed, api_name="generate",
                             concurrency_limit=WORKERS, validator=validator(handlers.settings, "generate"))
    stops(controls.stop, run)
    # the user's choice of sampler brings its spacing (a link's restored values leave the link's spacing)
    fields["sampler"].input(lambda name: engine.sampler_spec(name).spacing, fields["sampler"], fields["spacing"],
                            api_visibility="private", queue=False)
    dice.click(lambda: random.randint(0, engine.MAX_SEED), outputs=fields["seed"], api_visibility="private",
               queue=False)
    follow_model(app, fields["model"], fields["label"], [fields["guidance_scale"]])
    fields["model"].input(lambda name: own_sampling(app, name), fields["model"],
                          [fields[key] for key in ("schedule", "sampler", "steps", "spacing")],
                          api_visibility="private", queue=False)

    def derive(settings: dict) -> dict:
        images = app.store.image_models()
        chosen = pick(images, settings.get("model") if settings.get("model") in images else model)
        picker, slider = class_updates(app, chosen, 1, settings.get("label"),
                                       (settings.get("guidance_scale", 1.0),))
        return {fields["model"]: model_update(images, chosen), fields["label"]: picker,
                fields["guidance_scale"]: slider}

    def reruns(link: dict) -> bool:
        return link.get("tab") == "generate" and link.get("model") in app.store.image_models()

    def from_link(request: gr.Request, link: dict, *values):
        """Runs Generate once when the page was opened from a Generate result link (or an example). (``request``
        comes first: Gradio fills in only positional gr.Request parameters.)"""
        if not reruns(link):
            yield tuple(gr.skip() for _ in outputs)
            return
        yield from handlers.generate(*values, request=request)

    def opening(request: gr.Request, link: dict, *values):
        """The default settings' result, shown at once when the page opens at the default Generate settings and
        its link runs no Generate: made once per process and kept (``Generate.default_result``), so no visitor
        waits in the queue for it."""
        result = (handlers.default_result(request) if not reruns(link) and list(values) == handlers.default_values()
                  else None)
        return result or tuple(gr.skip() for _ in outputs)

    def follow(filled) -> None:
        filled.then(opening, inputs=[opened, *inputs], outputs=list(outputs), api_visibility="private", queue=False)
        stops(controls.stop, filled.then(from_link, inputs=[opened, *inputs], api_visibility="private", **streamed))

    return Room("generate", Link(fields, derive), follow, handlers)
