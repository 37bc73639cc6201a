"""The Compare tab: up to ``engine.compare.MAX_PANELS`` schedule/sampler/steps settings run side by side from the
same x_T and the same per-step noise, in lock-step (endpoint ``/compare``), so that differences between panels come
from the settings and not from the draw; a scrub slider replays the rounds afterwards.
"""
from __future__ import annotations

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
from ..settings import (COMPARE_MAX_N, DEFAULT_MODEL, MAX_PANELS, MAX_STEPS, RANDOM_CLASS, SAMPLERS, SCHEDULES, WORKERS,
                        pick)
from ..widgets import (class_picker, class_updates, follow_model, guidance_slider, model_picker, model_update,
                       run_controls, seed_number, stops)

# each panel's settings when the page opens (one per panel the engine allows); three are shown
PANEL_DEFAULTS = [("cosine", "ddim", 50), ("linear", "ddim", 50), ("karras", "ode", 25),
                  ("cosine", "dpm-solver++", 20), ("linear", "ddpm", 100), ("ve-geometric", "pc", 50)]
PANELS_SHOWN = 3
TABLE_HEADERS = ["panel", "setting", "NFE", "time (s)", "classifier: label (confidence)"]


def _quality(classifier, images) -> str:
    """The evaluator's classifier on a panel's images: predicted digits and mean top-class probability."""
    if classifier is None:
        return "no classifier for this model"
    label, p = engine_classifier.top_class(classifier, images)
    return f"{' '.join(map(str, label.tolist()))} ({float(p.mean()):.2f})"


def _gallery(steps, comp, specs, live: streaming.Stream) -> list:
    """Each panel's current image, captioned with its setting, step, NFE and time so far."""
    out = []
    for k, (st, p) in enumerate(zip(steps, specs)):
        cap = f"{k + 1}: {p.title()} · step {st.i + 1}/{p.steps} · NFE {st.nfe} · {comp.elapsed[k]:.2f} s"
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


def _link(model, seed: int, n: int, specs: list, conditional: bool) -> dict:
    """Compare's link: a conditional model's names its class (the null class too: the default is random)."""
    query = {"tab": "compare", "model": model, "seed": seed, "n": n, "panels": len(specs),
             "label": picker_value(specs[0].label) if conditional else None}
    for k, p in enumerate(specs, 1):
        query.update({f"schedule_{k}": p.schedule, f"sampler_{k}": p.sampler, f"steps_{k}": p.steps})
        if p.label is not None:
            query[f"guidance_{k}"] = p.guidance_scale
    return query


class Compare:
    """The endpoint ``compare`` and its checks (``panels``, the event's validator)."""

    def __init__(self, app: AppContext):
        self.app = app

    def panels(self, model, seed, panels, n, label=RANDOM_CLASS, **panel_values) -> tuple[int, int, list]:
        """Compare's checks: (seed, n, panel settings), or gr.Error naming the parameter (the panels' budget of
        network evaluations included). ``label`` is every panel's class (a conditional model), ``guidance_K``
        panel K's guidance scale."""
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        count = as_int("panels", panels, 1, MAX_PANELS)
        n = as_int("n", n, 1, COMPARE_MAX_N)
        self.app.model_name(model)
        specs = []
        for k in range(1, count + 1):
            sched = choice(f"schedule of panel {k}", panel_values.get(f"schedule_{k}"), SCHEDULES)
            samp = choice(f"sampler of panel {k}", panel_values.get(f"sampler_{k}"), SAMPLERS)
            steps = as_int(f"steps of panel {k}", panel_values.get(f"steps_{k}"), 1, MAX_STEPS)
            lab, w = self.app.guidance(model, label, panel_values.get(f"guidance_{k}", 1.0), f" of panel {k}")
            specs.append(engine_compare.Panel(sched, samp, steps, engine.sampler_spec(samp).spacing, label=lab,
                                              guidance_scale=w))
        evaluations = n * sum(engine.sampler_spec(p.sampler).nfe(p.steps) * rows_per_sample(p.label, p.guidance_scale)
                              for p in specs)
        self.app.check_budget("these panels need", evaluations, "steps or panels")
        return seed, n, specs

    @on_engine_thread
    def compare(self, model, seed, panels=PANELS_SHOWN, n=1, request: gr.Request = None, **panel_values):
        """Run up to {panels} panels in lock-step from one seed. Yields (gallery, plot, table, status, trajectories,
        scrub-slider update, link)."""
        seed, n, specs = self.panels(model, seed, panels, n, **panel_values)
        net = self.app.model(model)
        try:
            comp = engine_compare.compare(net, specs, seed=seed, n=n)
        except ValueError as err:
            raise engine_error(err) from None
        traj: list[list[np.ndarray]] = [[] for _ in specs]
        live = streaming.Stream(self.app.time_budget_s, streaming.COMPARE_EVERY_S)
        skip, latest = gr.skip(), None
        try:
            for latest in comp:
                for k, st in enumerate(latest):
                    if not comp.done[k] and len(traj[k]) <= st.i:
                        traj[k].append(np.asarray(imaging.grid(st.x_t)))
                if live.due(first=comp.rounds == 1):
                    yield (_gallery(latest, comp, specs, live), skip, skip,
                           f"round {comp.rounds} · {live.elapsed:.1f} s", skip, skip, skip)
                if live.over_budget():
                    break
        finally:  # also when the request is cancelled: the panels' threads end here
            comp.close()
        if latest is None:
            raise gr.Error("nothing ran")
        clf = self.app.store.classifier_for(model)
        rows = [[k + 1, p.title(), st.nfe, round(comp.elapsed[k], 3), _quality(clf, st.x_t)]
                for k, (p, st) in enumerate(zip(specs, latest))]
        plot = plots.marked([plots.curve(p.schedule, f"{k + 1}: {p.title()}", plots.visited(p.schedule, p.steps,
                                                                                               p.spacing))
                             for k, p in enumerate(specs)])  # drawn once per set of panels
        longest = max(len(t) for t in traj)
        state = {"traj": traj, "labels": [p.title() for p in specs], "steps": [p.steps for p in specs]}
        status = (f"done: {comp.rounds} rounds · {comp.batches} batched network calls · "
                  f"{live.elapsed:.2f} s · same x_T and noise (seed {seed})")
        link = _link(model, seed, n, specs, bool(self.app.store.classes(model)))
        yield (_gallery(latest, comp, specs, live), plot, rows, status, state,
               gr.update(maximum=longest, value=longest, interactive=True), base_url(request) + query_string(link))

    compare.__doc__ = compare.__doc__.format(panels=MAX_PANELS)  # the API's description of /compare


def _panel_rows(app: AppContext, model) -> tuple[list, dict, list]:
    """Each panel's row (schedule, sampler, steps, guidance scale), shown for the first PANELS_SHOWN: the rows, the
    panels' fields by parameter name and their guidance sliders."""
    rows, fields, guidance = [], {}, []
    for k, (schedule, sampler, steps) in enumerate(PANEL_DEFAULTS, 1):
        with gr.Row(visible=k <= PANELS_SHOWN) as row:
            fields[f"schedule_{k}"] = gr.Dropdown(SCHEDULES, value=schedule, label=f"{k}: schedule")
            fields[f"sampler_{k}"] = gr.Dropdown(SAMPLERS, value=sampler, label=f"{k}: sampler")
            fields[f"steps_{k}"] = gr.Slider(1, MAX_STEPS, value=steps, step=1, label=f"{k}: steps")
            guidance.append(guidance_slider(app, model, label=f"{k}: guidance w", info=None))
        rows.append(row)
    return rows, fields, guidance


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
        rows, fields, guidance = _panel_rows(app, model)
        # after the panels' settings, so the API's positional order of those stays as it was
        fields["label"] = head["label"]
        fields.update({f"guidance_{k}": g for k, g in enumerate(guidance, 1)})
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
        return {head["model"]: model_update(images, chosen), **dict(zip([head["label"], *guidance], classes)),
                **{row: gr.update(visible=k < shown) for k, row in enumerate(rows)}}

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
