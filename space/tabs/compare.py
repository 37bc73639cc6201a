"""The Compare tab: up to ``engine.compare.MAX_PANELS`` schedule/sampler/steps settings run side by side from the
same x_T and the same per-step noise, in lock-step (endpoint ``/compare``), so that differences between panels come
from the settings and not from the draw; a scrub slider replays the rounds afterwards.

Each panel runs the tab's model unless its own model picker names another (``model_K``, default ``SAME_MODEL``: the
model above), e.g. a flow-matching model's Euler beside a DDPM model's DDIM; all must make images of one shape
(``engine.compare`` starts them from one x_T). When the panels' models differ, each title leads with its model.
"""
from __future__ import annotations

import dataclasses

import gradio as gr
import numpy as np

import engine
from engine import classifier as engine_classifier
from engine import compare as engine_compare
from engine.models import rows_per_sample

from .. import imaging, plots, streaming
from ..checks import as_int, choice, engine_error, picker_value
from ..context import AppContext
from ..engine_thread import on_engine_thread
from ..guard import validator
from ..links import Link, base_url, query_string
from ..room import Room
from ..settings import (COMPARE_MAX_N, DEFAULT_MODEL, MAX_PANELS, MAX_STEPS, NO_CLASS, RANDOM_CLASS, SAMPLERS,
                        SCHEDULES, WORKERS, pick)
from ..widgets import (class_picker, class_updates, follow_model, guidance_slider, model_picker, model_update,
                       run_controls, seed_number, stops)

# each panel's settings when the page opens (one per panel the engine allows); three are shown
PANEL_DEFAULTS = [("cosine", "ddim", 50), ("linear", "ddim", 50), ("karras", "ode", 25),
                  ("cosine", "dpm-solver++", 20), ("linear", "ddpm", 100), ("ve-geometric", "pc", 50)]
PANELS_SHOWN = 3
TABLE_HEADERS = ["panel", "setting", "NFE", "time (s)", "classifier: label (confidence)"]
SAME_MODEL = ""  # a panel's model picker at "the model above": the panel runs the tab's model


def _model_choices(models: list[str]) -> list[tuple[str, str]]:
    """A panel's model picker: the tab's model (SAME_MODEL, its default), then every offered image model."""
    return [("the model above", SAME_MODEL)] + [(m, m) for m in models]


def _titles(specs: list, names: list[str]) -> list[str]:
    """Each panel's setting, led by its model's name when the panels' models differ (one model: the setting alone,
    as the titles read before panels could name a model)."""
    mixed = len(set(names)) > 1
    return [f"{name} · {p.title()}" if mixed else p.title() for p, name in zip(specs, names)]


def _quality(classifier, images) -> str:
    """The evaluator's classifier on a panel's images: predicted digits and mean top-class probability."""
    if classifier is None:
        return "no classifier for this model"
    label, p = engine_classifier.top_class(classifier, images)
    return f"{' '.join(map(str, label.tolist()))} ({float(p.mean()):.2f})"


def _gallery(steps, comp, titles: list[str], live: streaming.Stream) -> list:
    """Each panel's current image, captioned with its title (``_titles``), step, NFE and time so far."""
    out = []
    for k, (st, p, title) in enumerate(zip(steps, comp.panels, titles)):
        cap = f"{k + 1}: {title} · step {st.i + 1}/{p.steps} · NFE {st.nfe} · {comp.elapsed[k]:.2f} s"
        out.append((live.save(imaging.display(st.x_t, 192), f"panel{k + 1}_{comp.rounds:04d}.png"), cap))
    return out


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


def _link(model, seed: int, n: int, specs: list, names: list[str], conditional: list) -> dict:
    """Compare's link: a panel whose model is not the tab's names it (``model_K``); when ``conditional`` (the
    panels whose models are class-conditional) is not empty, the link names their class (the null class too: the
    default is random)."""
    query = {"tab": "compare", "model": model, "seed": seed, "n": n, "panels": len(specs),
             "label": picker_value(conditional[0].label) if conditional else None}
    for k, (p, name) in enumerate(zip(specs, names), 1):
        query[f"model_{k}"] = name if name != model else None
        query.update({f"schedule_{k}": p.schedule, f"sampler_{k}": p.sampler, f"steps_{k}": p.steps})
        if p.label is not None:
            query[f"guidance_{k}"] = p.guidance_scale
    return query


class Compare:
    """The endpoint ``compare`` and its checks (``panels``, the event's validator)."""

    def __init__(self, app: AppContext):
        self.app = app

    def panels(self, model, seed, panels, n, label=RANDOM_CLASS, **panel_values) -> tuple[int, int, list, list]:
        """Compare's checks: (seed, n, panel settings, each panel's model name), or gr.Error naming the parameter
        (the panels' budget of network evaluations included). ``model_K`` is panel K's model (SAME_MODEL: the tab's
        ``model``), ``label`` the class of every panel whose model is conditional (an unconditional model's panel
        asks for none), ``guidance_K`` panel K's guidance scale."""
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        count = as_int("panels", panels, 1, MAX_PANELS)
        n = as_int("n", n, 1, COMPARE_MAX_N)
        self.app.model_name(model)
        specs, names = [], []
        for k in range(1, count + 1):
            name = panel_values.get(f"model_{k}", SAME_MODEL)
            name = model if name in (SAME_MODEL, None) else choice(f"model of panel {k}", name,
                                                                   self.app.store.image_models())
            sched = choice(f"schedule of panel {k}", panel_values.get(f"schedule_{k}"), SCHEDULES)
            samp = choice(f"sampler of panel {k}", panel_values.get(f"sampler_{k}"), SAMPLERS)
            steps = as_int(f"steps of panel {k}", panel_values.get(f"steps_{k}"), 1, MAX_STEPS)
            asked = label if name == model or self.app.store.classes(name) else NO_CLASS
            lab, w = self.app.guidance(name, asked, panel_values.get(f"guidance_{k}", 1.0), f" of panel {k}")
            specs.append(engine_compare.Panel(sched, samp, steps, engine.sampler_spec(samp).spacing, label=lab,
                                              guidance_scale=w))
            names.append(name)
        evaluations = n * sum(engine.sampler_spec(p.sampler).nfe(p.steps) * rows_per_sample(p.label, p.guidance_scale)
                              for p in specs)
        self.app.check_budget("these panels need", evaluations, "steps or panels")
        return seed, n, specs, names

    def _nets(self, model, specs: list, names: list[str]) -> tuple:
        """The tab's loaded model, and the panels with their own loaded models where they name another."""
        nets = {name: self.app.model(name) for name in dict.fromkeys([model, *names])}
        return nets[model], [p if name == model else dataclasses.replace(p, model=nets[name])
                             for p, name in zip(specs, names)]

    @on_engine_thread
    def compare(self, model, seed, panels=PANELS_SHOWN, n=1, request: gr.Request = None, **panel_values):
        """Run up to {panels} panels in lock-step from one seed. Yields (gallery, plot, table, status, trajectories,
        scrub-slider update, link)."""
        seed, n, specs, names = self.panels(model, seed, panels, n, **panel_values)
        net, specs = self._nets(model, specs, names)
        try:
            comp = engine_compare.compare(net, specs, seed=seed, n=n)
        except ValueError as err:  # e.g. a panel's model makes images of another shape than the tab's
            raise engine_error(err) from None
        titles = _titles(specs, names)
        traj: list[list[np.ndarray]] = [[] for _ in specs]
        live = streaming.Stream(self.app.time_budget_s, streaming.COMPARE_EVERY_S)
        skip, latest = gr.skip(), None
        try:
            for latest in comp:
                for k, st in enumerate(latest):
                    if not comp.done[k] and len(traj[k]) <= st.i:
                        traj[k].append(np.asarray(imaging.grid(st.x_t)))
                if live.due(first=comp.rounds == 1):
                    yield (_gallery(latest, comp, titles, live), skip, skip,
                           f"round {comp.rounds} · {live.elapsed:.1f} s", skip, skip, skip)
                if live.over_budget():
                    break
        finally:  # also when the request is cancelled: the panels' threads end here
            comp.close()
        if latest is None:
            raise gr.Error("nothing ran")
        clf = {name: self.app.store.classifier_for(name) for name in dict.fromkeys(names)}
        rows = [[k + 1, title, st.nfe, round(comp.elapsed[k], 3), _quality(clf[name], st.x_t)]
                for k, (title, name, st) in enumerate(zip(titles, names, latest))]
        plot = plots.marked([plots.curve(p.schedule, f"{k + 1}: {title}", plots.visited(p.schedule, p.steps,
                                                                                           p.spacing))
                             for k, (p, title) in enumerate(zip(specs, titles))])  # drawn once per set of panels
        longest = max(len(t) for t in traj)
        state = {"traj": traj, "labels": titles, "steps": [p.steps for p in specs]}
        status = (f"done: {comp.rounds} rounds · {comp.batches} batched network calls · "
                  f"{live.elapsed:.2f} s · same x_T and noise (seed {seed})")
        link = _link(model, seed, n, specs, names,
                     [p for p, name in zip(specs, names) if self.app.store.classes(name)])
        yield (_gallery(latest, comp, titles, live), plot, rows, status, state,
               gr.update(maximum=longest, value=longest, interactive=True), base_url(request) + query_string(link))

    compare.__doc__ = compare.__doc__.format(panels=MAX_PANELS)  # the API's description of /compare


def _panel_rows(app: AppContext, model) -> tuple[list, dict, list, list]:
    """Each panel's row (model, schedule, sampler, steps, guidance scale), shown for the first PANELS_SHOWN: the
    rows, the panels' settings by parameter name, their guidance sliders and their model pickers (elem_ids
    c-model-K; they take any name, as the tab's picker, and the handler checks it)."""
    rows, fields, guidance, pickers = [], {}, [], []
    for k, (schedule, sampler, steps) in enumerate(PANEL_DEFAULTS, 1):
        with gr.Row(visible=k <= PANELS_SHOWN) as row:
            pickers.append(gr.Dropdown(_model_choices(app.store.image_models()), value=SAME_MODEL,
                                       label=f"{k}: model", allow_custom_value=True, elem_id=f"c-model-{k}"))
            fields[f"schedule_{k}"] = gr.Dropdown(SCHEDULES, value=schedule, label=f"{k}: schedule")
            fields[f"sampler_{k}"] = gr.Dropdown(SAMPLERS, value=sampler, label=f"{k}: sampler")
            fields[f"steps_{k}"] = gr.Slider(1, MAX_STEPS, value=steps, step=1, label=f"{k}: steps")
            guidance.append(guidance_slider(app, model, label=f"{k}: guidance w", info=None))
        rows.append(row)
    return rows, fields, guidance, pickers


def build(app: AppContext, opened: gr.State) -> Room:
    """The Compare tab: its layout, the endpoint ``/compare`` (Stop ends it), the panel count, the class controls,
    the scrub slider; a Compare link's run."""
    handlers = Compare(app)
    model = pick(app.store.image_models(), DEFAULT_MODEL)
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("Every panel starts from the **same x_T** and sees the **same noise draws** (one seed); "
                    "they advance in lock-step, one step each per round.")
        with gr.Row():
            head = {"model": model_picker(app.store.image_models(), model, "c-model"),
                    "seed": seed_number(elem_id="c-seed"),
                    "n": gr.Slider(1, COMPARE_MAX_N, value=1, step=1, label="images per panel", elem_id="c-n"),
                    "panels": gr.Slider(1, MAX_PANELS, value=PANELS_SHOWN, step=1, label="panels", elem_id="c-panels"),
                    "label": class_picker(app, model, "c")}
        rows, fields, guidance, pickers = _panel_rows(app, model)
        # after the panels' settings (the panels' models last), so the API's positional order of those stays as it was
        fields["label"] = head["label"]
        fields.update({f"guidance_{k}": g for k, g in enumerate(guidance, 1)})
        fields.update({f"model_{k}": picker for k, picker in enumerate(pickers, 1)})
        controls = run_controls("Compare", "c")
        gallery = gr.Gallery(label="panels", columns=3, height="auto", format="png", object_fit="contain",
                             elem_id="c-gallery")
        scrubber = gr.Slider(1, MAX_STEPS, value=1, step=1, label="scrub: lock-step round (all panels)",
                             interactive=False, elem_id="c-scrub")
        with gr.Row():
            plot = gr.Plot(label="ᾱ_t (solid) and log-SNR (dashed) of every panel")
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="per panel", elem_id="c-table")
        trajectories = gr.State(None, time_to_live=3600)  # the trajectories behind the scrub slider
    inputs = [head["model"], head["seed"], head["panels"], head["n"]]
    outputs = [gallery, plot, table, controls.status, trajectories, scrubber, controls.link]
    streamed = dict(outputs=outputs, show_progress_on=[controls.status], concurrency_id="compare")
    run = controls.run.click(handlers.compare, inputs=inputs, inputs_kwargs=fields, **streamed, api_name="compare",
                             concurrency_limit=WORKERS, validator=validator(handlers.panels, "compare"))
    stops(controls.stop, run)
    head["panels"].change(lambda count: [gr.update(visible=k < int(count)) for k in range(MAX_PANELS)],
                          head["panels"], rows, api_visibility="private", queue=False)
    scrubber.change(scrub, [scrubber, trajectories], gallery, api_visibility="private", show_progress="hidden")
    follow_model(app, head["model"], head["label"], guidance)

    def derive(settings: dict) -> dict:
        images = app.store.image_models()
        chosen = pick(images, settings.get("model") if settings.get("model") in images else model)
        shown = settings.get("panels", PANELS_SHOWN)
        classes = class_updates(app, chosen, MAX_PANELS, settings.get("label"),
                                [settings.get(f"guidance_{k}", 1.0) for k in range(1, MAX_PANELS + 1)])
        # a panel's model named by the link is kept even when it is not offered: the run then says so
        own = [gr.update(choices=_model_choices(images), value=settings.get(f"model_{k}", SAME_MODEL))
               for k in range(1, MAX_PANELS + 1)]
        return {head["model"]: model_update(images, chosen), **dict(zip([head["label"], *guidance], classes)),
                **{row: gr.update(visible=k < shown) for k, row in enumerate(rows)}, **dict(zip(pickers, own))}

    def from_link(request: gr.Request, link: dict, model, seed, panels, n, *values):
        """Runs Compare once when the page was opened from a Compare result link (or an example)."""
        if link.get("tab") != "compare" or link.get("model") not in app.store.image_models():
            yield tuple(gr.skip() for _ in outputs)
            return
        yield from handlers.compare(model, seed, panels, n, request=request, **dict(zip(fields, values)))

    def follow(filled) -> None:
        stops(controls.stop, filled.then(from_link, inputs=[opened, *inputs, *fields.values()],
                                         api_visibility="private", **streamed))

    return Room("compare", Link({**head, **fields}, derive), follow, handlers)
