"""The Gradio Blocks app: ``build_demo(checkpoint_dir=None)`` assembles the tabs (space/tabs/, one module each) and
the page around them: the title, the notice of missing or damaged models, the row of examples, and result links.

A link's query string is restored from what each tab declares its link carries (``Room.link``, space/links.py);
then each tab does what a link asks of it (``Room.follow``: rerun a result, show an instant default). An example is
a link's settings filled in by a button. API endpoints: ``generate``, ``compare``, ``forward``, ``score_field``,
``edit``, ``likelihood`` and the Train tab's (``train``, ``stop_training``, ``sample_trained``, ``export_trained``).
"""
from __future__ import annotations

import functools
import logging
import re

import gradio as gr

from .context import AppContext
from .guard import GuardedBlocks
from .links import MAX_NAME, link_tab
from .models import ModelStore
from .room import Room
from .settings import (DEFAULT_MODEL, DELETE_CACHE, MAX_NFE, QUEUE_POLL_S, QUEUE_SIZE, TIME_BUDGET_S, WORKERS,
                       pick)
from .tabs import about, compare, edit, field, forward, generate, likelihood, train

log = logging.getLogger("denoisery")
TABS = (generate, compare, forward, field, edit, train, likelihood, about)  # in the page's order
CSS = """
#live-image img, #e-image img { image-rendering: pixelated; }
.gallery-item img, .thumbnail-item img { image-rendering: pixelated; }
.matplotlib.layout { padding-top: 28px; box-sizing: border-box; }  /* the block's floating label covered the top */
"""
# the row of examples: each is a result link's settings (a query string), filled in and run like one; "score" stands
# for a model trained by denoising score matching, "conditional" for a class-conditional one, "distilled" for a
# distilled student and "teacher" for its teacher, another name for that model (the tab's "model" or a Compare
# panel's "model_K"); a button is left out when a model it needs is not offered
EXAMPLES = [
    ("10 steps: cosine vs linear", {"tab": "compare", "panels": 2, "seed": 0, "n": 1, "schedule_1": "cosine",
                                    "sampler_1": "ddim", "steps_1": 10, "schedule_2": "linear", "sampler_2": "ddim",
                                    "steps_2": 10}),
    ("Langevin on the score model", {"tab": "generate", "model": "score", "schedule": "ve-geometric",
                                     "sampler": "langevin", "steps": 100}),
    ("1000-step DDPM", {"tab": "generate", "schedule": "linear", "sampler": "ddpm", "steps": 1000}),
    ("Guidance w = 0 / 1 / 3 / 6", {"tab": "compare", "model": "conditional", "panels": 4, "seed": 0, "n": 2,
                                    "label": 7, **{f"{key}_{k}": value for k in range(1, 5) for key, value in
                                                   (("schedule", "cosine"), ("sampler", "ddim"), ("steps", 50))},
                                    "guidance_1": 0, "guidance_2": 1, "guidance_3": 3, "guidance_4": 6}),
    # a velocity model beside an ε-model from the same x_T, about 8 network evaluations each: Heun at 4 steps (7 NFE)
    # rather than DDIM at 8, which on the flow path is exactly Euler (x_s = x_t − (t − s) v̂) and would repeat panel 1;
    # DDPM on linear: DDIM's leading 8-step grid starts at t = 875, where cosine's ᾱ (2e-2) is far from pure noise
    # and linear's is not (the results page: DDIM 10 on cosine read 4.5× real against 1.1× on linear)
    ("8 steps: flow matching vs DDPM", {"tab": "compare", "model": "mnist-ddpm", "panels": 4, "seed": 0, "n": 2,
                                        "model_1": "mnist-fm", "schedule_1": "flow", "sampler_1": "euler", "steps_1": 8,
                                        "model_2": "mnist-fm", "schedule_2": "flow", "sampler_2": "heun", "steps_2": 4,
                                        "schedule_3": "linear", "sampler_3": "ddim", "steps_3": 8,
                                        "schedule_4": "linear", "sampler_4": "dpm-solver++", "steps_4": 8}),
    # a distilled student (reflow: its paths are straight, so one Euler step follows them) beside its teacher's
    # solvers at the same 4 network evaluations, from the same x_T; DDIM on the flow path is Euler on the teacher
    ("1–4 steps: distilled vs DPM-Solver++ and DDIM", {
        "tab": "compare", "model": "teacher", "panels": 4, "seed": 0, "n": 2,
        "model_1": "distilled", "schedule_1": "flow", "sampler_1": "euler", "steps_1": 1,
        "model_2": "distilled", "schedule_2": "flow", "sampler_2": "euler", "steps_2": 4,
        "schedule_3": "flow", "sampler_3": "dpm-solver++", "steps_3": 4, "schedule_4": "flow", "sampler_4": "ddim",
        "steps_4": 4}),
]
MODEL_KEY = re.compile(r"model(_\d+)?")  # an example's keys that name a model: the tab's, a Compare panel's


def no_models_text(store: ModelStore) -> str:
    """The page's notice: missing kinds of model and checkpoints skipped as damaged ("" when all is well). It names
    no server path; the log has the folder and each skipped checkpoint's reason."""
    lines = []
    skipped = store.skipped()
    if skipped:
        lines.append(f"⚠️ Skipped damaged checkpoints (they failed their sha256 or safetensors check, or a file is "
                     f"missing; the server log says why): {', '.join(skipped)}.")
    parts = [what for what, models in (("no image model", store.image_models()), ("no 2-D toy model",
                                                                                   store.toy_models())) if not models]
    if parts:
        lines.append(f"⚠️ {' and '.join(parts).capitalize()} in the checkpoint folder. Train one with "
                     f"`python -m engine train --config engine/configs/NAME.json` (or point `ENGINE_CHECKPOINTS` at a "
                     f"folder of checkpoints); tabs that need it will say so.")
    return "\n\n".join(lines)


def offered_examples(store: ModelStore) -> list[tuple[str, dict]]:
    """The examples this server can run, each with its models named: "score", "conditional" and "distilled" become
    such a model (a distilled one's card names its teacher: "teacher"), another name stays if that model is
    offered, and an example that names no model gets the default one. An example is left out when a model it needs
    is not offered (mnist-fm's until it is exported)."""
    images = store.image_models()
    score = [m for m in images if store.card(m).get("objective") == "dsm"]
    distilled = pick([m for m in images if store.card(m).get("distilled_from")], "mnist-fast")
    teacher = store.card(distilled)["distilled_from"]["teacher"] if distilled else None
    models_for = {"score": pick(score, "mnist-ncsn"),
                  "conditional": pick([m for m in images if store.classes(m)], "mnist-cond"),
                  "distilled": distilled, "teacher": teacher if teacher in images else None}
    offered = []
    for label, query in EXAMPLES:
        models = {"model": pick(images, DEFAULT_MODEL)}
        models.update({key: models_for[name] if name in models_for else name if name in images else None
                       for key, name in query.items() if MODEL_KEY.fullmatch(key)})
        if None not in models.values():
            offered.append((label, {**query, **models}))
    return offered


def _example_buttons(store: ModelStore) -> list[tuple[gr.Button, dict]]:
    examples = []
    offered = offered_examples(store)
    if offered:
        with gr.Row(equal_height=True, elem_id="examples"):
            with gr.Column(scale=0, min_width=40):
                gr.Markdown("**Try:**")
            for label, query in offered:
                examples.append((gr.Button(label, size="sm", variant="secondary"), query))
    return examples


def _wire_links(demo: gr.Blocks, store: ModelStore, rooms: list[Room], tabs: gr.Tabs, notice: gr.Markdown,
                opened: gr.State, examples: list) -> None:
    """Restore the page's link when it loads, and an example's settings when its button is pressed; then let each
    tab follow (rerun the link's result, show its default)."""
    links = [room.link for room in rooms if room.link is not None]
    outputs = [tabs, notice, opened, *(block for link in links for block in link.outputs)]

    def fill(query: dict) -> dict:
        """{component: value} for a link's settings (``query``: its raw query string), every tab's declared fields
        included (their initial values where the link says nothing)."""
        text = no_models_text(store)
        out = {tabs: gr.Tabs(selected=link_tab(query)), notice: gr.update(value=text, visible=bool(text)),
               opened: {"tab": link_tab(query), "model": str(query["model"])[:MAX_NAME] if "model" in query else None}}
        for link in links:
            out.update(link.fill(query))
        return out

    def restore(request: gr.Request):
        return fill(dict(request.query_params) if request is not None else {})

    filled = [demo.load(restore, outputs=outputs, api_visibility="private", queue=False)]
    filled += [button.click(functools.partial(fill, {k: str(v) for k, v in query.items()}), outputs=outputs,
                            api_visibility="private", queue=False) for button, query in examples]
    for event in filled:
        for room in rooms:
            if room.follow is not None:
                room.follow(event)


def build_demo(checkpoint_dir=None, *, max_nfe: int = MAX_NFE, time_budget_s: float = TIME_BUDGET_S,
               store: ModelStore | None = None) -> gr.Blocks:
    """The app over the models in ``checkpoint_dir`` (default: $ENGINE_CHECKPOINTS or the repo's checkpoints/), or
    over ``store`` when one is given (app.py passes one that compiles the models in the background). Its tabs'
    rooms are ``demo.rooms`` (by tab id; app.py's warm-up makes Generate's default result with its handlers)."""
    app = AppContext(store or ModelStore(checkpoint_dir), max_nfe=max_nfe, time_budget_s=time_budget_s)
    store = app.store
    log.info("models in %s: %s; skipped as damaged: %s", store.directory,
             ", ".join(store.image_models() + store.toy_models()) or "none", ", ".join(store.skipped()) or "none")
    with GuardedBlocks(title="Denoisery", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# Denoisery\nDDPM and score-based diffusion from scratch: watch images emerge "
                    "from noise, compare samplers and schedules from the same noise, see the forward process and "
                    "the learned score.")
        text = no_models_text(store)
        notice = gr.Markdown(text, visible=bool(text))
        opened = gr.State({})  # the link (or example) the page was filled from: {"tab", "model"}
        examples = _example_buttons(store)
        with gr.Tabs(selected="generate") as tabs:
            rooms = [tab.build(app, opened) for tab in TABS]
        _wire_links(demo, store, rooms, tabs, notice, opened, examples)
        for room in rooms:
            if room.closed is not None:
                demo.unload(room.closed)
    demo.rooms = {room.tab: room for room in rooms}
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=WORKERS)
    _slow_queue_polling(demo)
    return demo


def _slow_queue_polling(demo: gr.Blocks, every_s: float = QUEUE_POLL_S) -> None:
    """Gradio's queue looks for new requests every 1 ms (``Queue.sleep_when_free``) in the server's event-loop
    thread; each look takes the GIL from the thread that runs the sampler, which made the engine ~20% slower in the
    server's process (0.33 s against 0.26 s for a 50-step DDIM run on this CPU, measured). Every ``every_s`` keeps
    nearly all of the engine's speed and delays the start of a request by at most that much."""
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, every_s)
    else:  # another Gradio version: nothing to tune, say so once
        log.warning("Gradio's queue has no sleep_when_free: its polling interval is left as it is")
