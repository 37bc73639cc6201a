"""The Gradio Blocks app: ``build_demo(checkpoint_dir=None)``.

Tabs: Generate (streamed sampling), Compare (lock-step panels), Forward process, Score field, Edit (img2img,
inpainting, inversion, interpolation; streamed), Train (space/train_tab.py), Likelihood (space/likelihood_tab.py),
About. API endpoints: ``generate``, ``compare``, ``forward``, ``score_field``, ``edit``, ``likelihood``, ``scrub``,
and the Train tab's.
"""
from __future__ import annotations

import functools
import logging
import random

import gradio as gr
from PIL import Image

import engine
from engine.editing import MAX_INTERPOLATION_FRAMES, MAX_RESAMPLES
from engine.samplers import OPTION_VALUES

from . import handlers as H
from .about import ABOUT
from .guard import GuardedBlocks, validator
from .likelihood_tab import build_likelihood_tab
from .models import ModelStore
from .train_tab import build_train_tab
from .settings import (DEFAULT_MODEL, DEFAULTS, EDIT_ENDS, EDIT_SOURCES, MAX_GUIDANCE, MAX_INDEX, MAX_N, MAX_STEPS,
                       NO_CLASS, OPTIONS, RANDOM_CLASS, SAMPLERS, SCHEDULES, SPACINGS, class_choices, parse_query,
                       pick)

log = logging.getLogger("denoisery")
PANEL_DEFAULTS = [("cosine", "ddim", 50), ("linear", "ddim", 50), ("karras", "ode", 25),
                  ("cosine", "dpm-solver++", 20), ("linear", "ddpm", 100), ("ve-geometric", "pc", 50)]
# the row of examples: each is a result link's settings (a query string), filled in and run like one; "score" stands
# for a model trained by denoising score matching, "conditional" for a class-conditional one (a button is left out
# when there is no such model)
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
]
EDIT_MODE_LABELS = [("img2img (SDEdit)", "img2img"), ("inpainting (RePaint)", "inpaint"),
                    ("inversion + reconstruction", "invert"), ("interpolation", "interpolate")]
SKETCH_CANVAS = Image.new("L", (280, 280), 0)  # black, 10 canvas pixels per pixel of a 28×28 model
SKETCH_BRUSH = gr.Brush(default_size=12, colors=["#ffffff"], color_mode="fixed")  # ~2.4 px wide at 28×28
MASK_BRUSH = gr.Brush(default_size=16, colors=["rgba(255, 64, 64, 0.7)"], color_mode="fixed")


def edit_fields(mode: str, source: str) -> list:
    """The Edit tab's fields that ``mode`` and ``source`` use shown, the others hidden: strength, the inpainting
    controls, the interpolation controls, the mask, the upload, the sketch and the dataset image (an interpolation
    between images takes its second image from the dataset) and the button that puts the source on the mask."""
    return [gr.update(visible=mode == "img2img"), gr.update(visible=mode == "inpaint"),
            gr.update(visible=mode == "interpolate"), gr.update(visible=mode == "inpaint"),
            gr.update(visible=source == "upload"), gr.update(visible=source == "sketch"),
            gr.update(visible=source == "dataset" or mode == "interpolate"), gr.update(visible=mode == "inpaint")]


def _run_controls(action: str, prefix: str) -> tuple:
    """A streamed tab's Run and Stop buttons, status and result link (elem_ids PREFIX-run, -stop, -status, -link)."""
    with gr.Row():
        run = gr.Button(action, variant="primary", elem_id=f"{prefix}-run")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
    status = gr.Textbox(label="status", interactive=False, elem_id=f"{prefix}-status")
    link = gr.Textbox(label="link to this result", interactive=False, buttons=["copy"], elem_id=f"{prefix}-link")
    return run, stop, status, link


def _streamed_result(prefix: str, image_label: str, plot_label: str, gallery_label: str,
                     image_id: str | None = None) -> tuple:
    """A streamed tab's outputs: the live image beside the schedule plot, the snapshot gallery, the GIF and the PNG
    (elem_ids PREFIX-image or ``image_id``, -plot, -gallery, -gif, -png)."""
    with gr.Row():
        image = gr.Image(label=image_label, format="png", type="pil", interactive=False, height=300,
                         elem_id=image_id or f"{prefix}-image")
        plot = gr.Plot(label=plot_label, elem_id=f"{prefix}-plot")
    gallery = gr.Gallery(label=gallery_label, columns=6, height=360, format="png", object_fit="contain",
                         elem_id=f"{prefix}-gallery")
    with gr.Row():
        gif = gr.File(label="trajectory (GIF)", elem_id=f"{prefix}-gif")
        png = gr.File(label="image (PNG with settings)", elem_id=f"{prefix}-png")
    return image, plot, gallery, gif, png


def edit_reproducible(query: dict) -> bool:
    """Whether an Edit link's settings (``query``, checked) make its result again: its source is a dataset image or
    no image at all (interpolation between seeds); never an inpainting (the painted mask stays in the browser)."""
    mode = query.get("mode", "img2img")
    if mode == "inpaint":
        return False
    if mode == "interpolate" and query.get("ends", "seeds") == "seeds":
        return True
    return query.get("source", "dataset") == "dataset"


CSS = """
#live-image img, #e-image img { image-rendering: pixelated; }
.gallery-item img, .thumbnail-item img { image-rendering: pixelated; }
.matplotlib.layout { padding-top: 28px; box-sizing: border-box; }  /* the block's floating label covered the top */
"""
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
# Limits of the public app (README "Limits", docs/RELIABILITY.md). Sampling is CPU-bound: two at a time per kind of
# sampling request; up to QUEUE_SIZE requests wait, and a request beyond that is answered "Queue is full" at once.
QUEUE_SIZE = 32
WORKERS = 2
# Gradio's copies of results (the live frames, galleries, downloads): checked every 10 minutes, removed after an hour
DELETE_CACHE = (600, 3600)
QUEUE_POLL_S = 0.005  # how often Gradio's queue looks for new requests (its default, 1 ms, slows the sampler)


def model_classes(store: ModelStore, model) -> list[str]:
    """The classes of ``model`` if it is an offered image model ([] otherwise, or when it is unconditional)."""
    return store.classes(model) if model in store.image_models() else []


def class_updates(store: ModelStore, model, panels: int, label: int = NO_CLASS, w=(1.0,) * 6,
                  random: bool = True) -> list:
    """The class picker and ``panels`` guidance sliders for ``model``: shown with its classes when it is
    conditional (at ``label`` and the scales ``w``; "random" among them where ``random``), hidden at "none" and
    w = 1 otherwise."""
    classes = model_classes(store, model)
    if not (0 <= label < len(classes) or (random and classes and label == RANDOM_CLASS)):
        label, w = NO_CLASS, (1.0,) * 6
    return ([gr.update(choices=class_choices(classes, random), value=label, visible=bool(classes))]
            + [gr.update(value=w[k], visible=bool(classes)) for k in range(panels)])


def _class_controls(store: ModelStore, model, prefix: str, random: bool = True) -> tuple:
    """A class picker and a guidance-scale slider (classifier-free guidance), shown for a conditional model. The
    picker's own choices are every index of the widest conditional model (what a request may send; the handler
    checks it against the chosen model); the page shows the chosen model's names (``class_updates``)."""
    classes = model_classes(store, model)
    widest = max((len(store.classes(m)) for m in store.image_models()), default=0)
    info = "a class-conditional model samples the class you pick" + (
        "; random: each image's class drawn from the seed, which at w = 1 samples the whole data distribution"
        if random else "")
    picker = gr.Dropdown(class_choices([str(i) for i in range(widest)], random), value=NO_CLASS, label="class",
                         visible=bool(classes), info=info, elem_id=f"{prefix}-class")
    scale = gr.Slider(0, MAX_GUIDANCE, value=1.0, step=0.5, label="guidance scale w", visible=bool(classes),
                      info="0 = unconditional, 1 = conditional, > 1 = guided (needs a class)",
                      elem_id=f"{prefix}-guidance")
    return picker, scale


def _no_models_text(store: ModelStore, image: list[str], toy: list[str]) -> str:
    """The page's notice: missing kinds of model and checkpoints skipped as damaged ("" when all is well). It names
    no server path; the log has the folder and each skipped checkpoint's reason."""
    lines = []
    skipped = store.skipped()
    if skipped:
        lines.append(f"⚠️ Skipped damaged checkpoints (they failed their sha256 or safetensors check, or a file is "
                     f"missing; the server log says why): {', '.join(skipped)}.")
    parts = []
    if not image:
        parts.append("no image model")
    if not toy:
        parts.append("no 2-D toy model")
    if parts:
        lines.append(f"⚠️ {' and '.join(parts).capitalize()} in the checkpoint folder. Train one with "
                     f"`python -m engine train --config engine/configs/NAME.json` (or point `ENGINE_CHECKPOINTS` at a "
                     f"folder of checkpoints); tabs that need it will say so.")
    return "\n\n".join(lines)


def build_demo(checkpoint_dir=None, *, max_nfe: int = 20_000, time_budget_s: float = 300.0,
               store: ModelStore | None = None) -> gr.Blocks:
    """The app over the models in ``checkpoint_dir`` (default: $ENGINE_CHECKPOINTS or the repo's checkpoints/), or
    over ``store`` when one is given (app.py passes one that compiles the models in the background)."""
    store = store or ModelStore(checkpoint_dir)
    h = H.Handlers(store, max_nfe=max_nfe, time_budget_s=time_budget_s)
    image_models, toy_models = store.image_models(), store.toy_models()
    default_model = pick(image_models, DEFAULT_MODEL)
    log.info("models in %s: %s; skipped as damaged: %s", store.directory, ", ".join(image_models + toy_models) or "none",
             ", ".join(store.skipped()) or "none")

    with GuardedBlocks(title="Denoisery", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# Denoisery\nDDPM and score-based diffusion from scratch: watch images emerge "
                    "from noise, compare samplers and schedules from the same noise, see the forward process and "
                    "the learned score.")
        notice_text = _no_models_text(store, image_models, toy_models)
        notice = gr.Markdown(notice_text, visible=bool(notice_text))
        autorun = gr.State(False)
        score_models = [m for m in image_models if store.card(m).get("objective") == "dsm"]
        conditional = [m for m in image_models if store.classes(m)]
        models_for = {"score": pick(score_models, "mnist-ncsn"), "conditional": pick(conditional, "mnist-cond")}
        offered = [(label, {**query, "model": models_for.get(query.get("model"), default_model)})
                   for label, query in EXAMPLES]
        offered = [(label, query) for label, query in offered if query["model"] is not None]
        examples = []  # (button, the link's settings)
        if offered:
            with gr.Row(equal_height=True, elem_id="examples"):
                with gr.Column(scale=0, min_width=40):
                    gr.Markdown("**Try:**")
                for label, query in offered:
                    examples.append((gr.Button(label, size="sm", variant="secondary"), query))
        with gr.Tabs(selected="generate") as tabs:
            # ----------------------------------------------------------------------------------- Generate ---
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        g_model = gr.Dropdown(image_models, value=default_model, label="model", elem_id="g-model",
                                              allow_custom_value=True)
                        g_schedule = gr.Dropdown(SCHEDULES, value=DEFAULTS["schedule"], label="schedule",
                                                 elem_id="g-schedule")
                        g_sampler = gr.Dropdown(SAMPLERS, value=DEFAULTS["sampler"], label="sampler",
                                                elem_id="g-sampler")
                        g_steps = gr.Slider(1, MAX_STEPS, value=DEFAULTS["steps"], step=1, label="steps",
                                            elem_id="g-steps")
                        with gr.Row(equal_height=True):
                            g_seed = gr.Number(DEFAULTS["seed"], precision=0, minimum=0, maximum=engine.MAX_SEED,
                                               label="seed", elem_id="g-seed", scale=4)
                            g_dice = gr.Button("random", scale=1, min_width=60, elem_id="g-dice")
                        g_n = gr.Slider(1, MAX_N, value=DEFAULTS["n"], step=1, label="images (n)", elem_id="g-n")
                        g_class, g_guidance = _class_controls(store, default_model, "g")
                        with gr.Accordion("Advanced (sampler options)", open=False):
                            g_spacing = gr.Radio(SPACINGS, value=DEFAULTS["spacing"], label="timestep spacing",
                                                 info="choosing a sampler sets the spacing that suits it",
                                                 elem_id="g-spacing")
                            g_eta = gr.Slider(0, 1, value=OPTIONS["eta"], step=0.01, label="DDIM η",
                                              info="0 = deterministic, 1 = DDPM-like noise")
                            g_variance = gr.Radio(list(OPTION_VALUES["variance"]), value=OPTIONS["variance"],
                                                  label="DDPM variance")
                            g_nse = gr.Slider(1, 100, value=OPTIONS["n_steps_each"], step=1,
                                              label="Langevin steps per level")
                            g_ss = gr.Slider(0.001, 1.0, value=OPTIONS["step_size"], step=0.001,
                                             label="Langevin step size (α = size·σ²)")
                            g_snr = gr.Slider(0.01, 1.0, value=OPTIONS["snr"], step=0.01,
                                              label="PC corrector SNR")
                            g_nc = gr.Slider(0, 20, value=OPTIONS["n_corrector"], step=1,
                                             label="PC corrector steps")
                        g_run, g_stop, g_status, g_link = _run_controls("Generate", "g")
                    with gr.Column(scale=2):
                        g_image, g_plot, g_gallery, g_gif, g_png = _streamed_result(
                            "g", "x_t (live) → sample", "schedule: ᾱ_t and log-SNR, current step marked",
                            "x_t snapshots and x̂0 (the model's current guess)", image_id="live-image")
            # ------------------------------------------------------------------------------------ Compare ---
            with gr.Tab("Compare", id="compare"):
                gr.Markdown("Every panel starts from the **same x_T** and sees the **same noise draws** (one seed); "
                            "they advance in lock-step, one step each per round.")
                with gr.Row():
                    c_model = gr.Dropdown(image_models, value=default_model, label="model", elem_id="c-model",
                                          allow_custom_value=True)
                    c_seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed",
                                       elem_id="c-seed")
                    c_n = gr.Slider(1, H.COMPARE_MAX_N, value=1, step=1, label="images per panel", elem_id="c-n")
                    c_panels = gr.Slider(1, 6, value=3, step=1, label="panels", elem_id="c-panels")
                    c_class = _class_controls(store, default_model, "c")[0]
                c_rows = []
                c_fields: dict[str, gr.components.Component] = {}
                c_guidance = []  # each panel's guidance scale: shown for a conditional model
                for k, (sch, smp, stp) in enumerate(PANEL_DEFAULTS, 1):
                    with gr.Row(visible=k <= 3) as row:
                        c_fields[f"schedule_{k}"] = gr.Dropdown(SCHEDULES, value=sch, label=f"{k}: schedule")
                        c_fields[f"sampler_{k}"] = gr.Dropdown(SAMPLERS, value=smp, label=f"{k}: sampler")
                        c_fields[f"steps_{k}"] = gr.Slider(1, MAX_STEPS, value=stp, step=1, label=f"{k}: steps")
                        c_guidance.append(gr.Slider(0, MAX_GUIDANCE, value=1.0, step=0.5, label=f"{k}: guidance w",
                                                    visible=bool(model_classes(store, default_model))))
                    c_rows.append(row)
                # after the panels' settings, so the API's positional order of those stays as it was
                c_fields["label"] = c_class
                c_fields.update({f"guidance_{k}": g for k, g in enumerate(c_guidance, 1)})
                with gr.Row():
                    c_run = gr.Button("Compare", variant="primary", elem_id="c-run")
                    c_stop = gr.Button("Stop", variant="stop")
                c_status = gr.Textbox(label="status", interactive=False, elem_id="c-status")
                c_link = gr.Textbox(label="link to this result", interactive=False, buttons=["copy"],
                                    elem_id="c-link")
                c_gallery = gr.Gallery(label="panels", columns=3, height="auto", format="png", object_fit="contain",
                                       elem_id="c-gallery")
                c_scrub = gr.Slider(1, MAX_STEPS, value=1, step=1, label="scrub: lock-step round (all panels)",
                                    interactive=False, elem_id="c-scrub")
                with gr.Row():
                    c_plot = gr.Plot(label="ᾱ_t (solid) and log-SNR (dashed) of every panel")
                    c_table = gr.Dataframe(headers=["panel", "setting", "NFE", "time (s)", "classifier: label (confidence)"],
                                           interactive=False, label="per panel", elem_id="c-table")
                c_state = gr.State(None, time_to_live=3600)  # the trajectories behind the scrub slider
            # ---------------------------------------------------------------------------- Forward process ---
            with gr.Tab("Forward process", id="forward"):
                gr.Markdown("q(x_t | x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I): the same noise ε at every t, so each row shows "
                            "how fast a schedule destroys the image.")
                with gr.Row():
                    with gr.Column(scale=1, min_width=280):
                        f_dataset = gr.Dropdown(H.FORWARD_DATASETS, value="mnist", label="dataset (sets the shape)")
                        f_index = gr.Number(0, precision=0, minimum=0, label="image index (test split)")
                        f_upload = gr.Image(label="…or upload an image (converted to the dataset's shape)",
                                            type="filepath", image_mode=None, sources=["upload"], height=160)
                        f_schedules = gr.CheckboxGroup(SCHEDULES, value=["linear", "cosine", "karras"],
                                                       label="schedules")
                        f_ts = gr.Textbox("0, 50, 100, 250, 500, 750, 999", label="t values (comma separated)")
                        f_seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed")
                        f_run = gr.Button("Show q(x_t | x_0)", variant="primary", elem_id="f-run")
                        f_x0 = gr.Image(label="x_0", format="png", interactive=False, height=140)
                        f_src = gr.Textbox(label="source", interactive=False, elem_id="f-src")
                    with gr.Column(scale=2):
                        f_gallery = gr.Gallery(label="x_t per schedule (rows) and t (columns)", columns=7, height=420,
                                               format="png", object_fit="contain", elem_id="f-gallery")
                        f_plot = gr.Plot(label="ᾱ_t and log-SNR with the chosen t")
            # -------------------------------------------------------------------------------- Score field ---
            with gr.Tab("Score field", id="field"):
                gr.Markdown("The learned score s(x̃, σ) = −ε̂/σ of a 2-D toy model as arrows (length normalised, "
                            "colour = log magnitude) over the noised data density p_σ, and particles moved from "
                            "noise by a sampler.")
                with gr.Row():
                    with gr.Column(scale=1, min_width=280):
                        s_model = gr.Dropdown(toy_models, value=pick(toy_models, "toy-moons"), label="toy model",
                                              allow_custom_value=True)
                        s_sigma = gr.Slider(*H.FIELD_SIGMA, value=0.3, step=0.01, label="noise level σ")
                        s_sampler = gr.Dropdown(SAMPLERS, value="ddim", label="sampler")
                        s_schedule = gr.Dropdown(SCHEDULES, value="cosine", label="schedule")
                        s_steps = gr.Slider(1, H.FIELD_MAX_STEPS, value=50, step=1, label="steps")
                        s_particles = gr.Slider(*H.FIELD_PARTICLES, value=500, step=10, label="particles")
                        s_seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed")
                        s_run = gr.Button("Draw field and move particles", variant="primary", elem_id="s-run")
                        s_status = gr.Textbox(label="status", interactive=False, elem_id="s-status")
                    with gr.Column(scale=2):
                        s_plot = gr.Plot(label="score field")
                        s_anim = gr.Plot(label="particles during sampling over the density of x_t (time slider)",
                                         elem_id="s-anim")
            # --------------------------------------------------------------------------------------- Edit ---
            with gr.Tab("Edit", id="edit"):
                gr.Markdown("Edit an image with the model: **img2img** (SDEdit: noise it to a level, denoise), "
                            "**inpainting** (RePaint: paint the region to fill), **inversion** (DDIM to x_T and "
                            "back) or **interpolation** between two seeds or two images.")
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        e_model = gr.Dropdown(image_models, value=default_model, label="model", elem_id="e-model",
                                              allow_custom_value=True)
                        e_mode = gr.Radio([(label, mode) for label, mode in EDIT_MODE_LABELS], value="img2img",
                                          label="mode", elem_id="e-mode")
                        e_source = gr.Radio(EDIT_SOURCES, value="dataset", label="source image", elem_id="e-source",
                                            info="a sketch or an upload cannot travel in a link (nor can a painted "
                                                 "mask): its link carries the settings only; a dataset image "
                                                 "reproduces exactly")
                        with gr.Row() as e_dataset_row:
                            e_dataset = gr.Dropdown(H.FORWARD_DATASETS, value="mnist", label="dataset",
                                                    elem_id="e-dataset")
                            e_index = gr.Number(0, precision=0, minimum=0, maximum=MAX_INDEX,
                                                label="image index (test split)", elem_id="e-index")
                        e_upload = gr.Image(label="upload (converted to the model's shape)", type="filepath",
                                            image_mode=None, sources=["upload"], height=160, visible=False,
                                            elem_id="e-upload")
                        e_sketch = gr.Sketchpad(value=SKETCH_CANVAS, type="pil", image_mode="L", label="sketch "
                                                "(white on black, like the digits)", brush=SKETCH_BRUSH,
                                                eraser=gr.Eraser(default_size=16), layers=False, transforms=(),
                                                canvas_size=SKETCH_CANVAS.size, fixed_canvas=True, visible=False,
                                                elem_id="e-sketch")
                        e_schedule = gr.Dropdown(SCHEDULES, value="cosine", label="schedule", elem_id="e-schedule")
                        e_sampler = gr.Dropdown(SAMPLERS, value="ddim", label="sampler", elem_id="e-sampler",
                                                info="img2img: any; interpolation: a deterministic one (ddim, ode, "
                                                     "dpm-solver++); inpainting uses ddpm and inversion DDIM η=0")
                        e_steps = gr.Slider(1, MAX_STEPS, value=50, step=1, label="steps", elem_id="e-steps")
                        e_seed = gr.Number(0, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed",
                                           elem_id="e-seed")
                        e_class, e_guidance = _class_controls(store, default_model, "e", random=False)
                        e_strength = gr.Slider(0.001, 1.0, value=0.6, step=0.001, label="strength",
                                               info="the share of the steps that runs: 1 starts from noise, small "
                                                    "values change little", elem_id="e-strength")
                        with gr.Group(visible=False) as e_inpaint_box:
                            e_jump = gr.Slider(1, MAX_STEPS, value=10, step=1, label="jump_length",
                                               info="steps between RePaint's jumps back up", elem_id="e-jump")
                            e_resamples = gr.Slider(1, MAX_RESAMPLES, value=5, step=1, label="resamples",
                                                    info="passes over each stretch (1 = plain replacement)",
                                                    elem_id="e-resamples")
                        with gr.Group(visible=False) as e_interp_box:
                            e_k = gr.Slider(2, MAX_INTERPOLATION_FRAMES, value=8, step=1, label="images (k)",
                                            elem_id="e-k")
                            e_ends = gr.Radio(EDIT_ENDS, value="seeds", label="between", elem_id="e-ends",
                                              info="two seeds (seed and seed_b), or the source image and dataset "
                                                   "image index_b, both inverted")
                            e_seed_b = gr.Number(1, precision=0, minimum=0, maximum=engine.MAX_SEED, label="seed_b",
                                                 elem_id="e-seed-b")
                            e_index_b = gr.Number(1, precision=0, minimum=0, maximum=MAX_INDEX, label="index_b",
                                                  elem_id="e-index-b")
                        e_run, e_stop, e_status, e_link = _run_controls("Edit", "e")
                    with gr.Column(scale=2):
                        e_mask = gr.ImageEditor(type="pil", image_mode="RGBA", sources=(), label="mask: paint the "
                                                "region to fill (inpainting)", brush=MASK_BRUSH, layers=False,
                                                transforms=(), height=320, visible=False, elem_id="e-mask")
                        e_mask_source = gr.Button("put the current source (e.g. a new sketch) on the mask canvas",
                                                  size="sm", visible=False, elem_id="e-mask-source")
                        e_image, e_plot, e_gallery, e_gif, e_png = _streamed_result(
                            "e", "x_t (live) → result",
                            "schedule: ᾱ_t and log-SNR, start (img2img) or current step marked",
                            "source, x_t snapshots and x̂0")
            build_train_tab(demo)
            build_likelihood_tab(h, image_models, default_model)
            # -------------------------------------------------------------------------------------- About ---
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT, latex_delimiters=LATEX)

        # -------------------------------------------------------------------------------------- events ---
        g_inputs = [g_model, g_schedule, g_sampler, g_steps, g_seed, g_n, g_spacing, g_eta, g_variance, g_nse,
                    g_ss, g_snr, g_nc, g_class, g_guidance]
        g_outputs = [g_image, g_gallery, g_gif, g_png, g_plot, g_status, g_link]
        generate_run = dict(outputs=g_outputs, show_progress_on=[g_status], concurrency_id="generate")
        gen_event = g_run.click(h.generate, inputs=g_inputs, **generate_run, api_name="generate",
                                concurrency_limit=WORKERS, validator=validator(h.generate_settings, "generate"))
        g_stop.click(None, cancels=[gen_event], api_visibility="private")
        # the user's choice of sampler brings its spacing (a link's restored values leave the link's spacing)
        g_sampler.input(lambda name: engine.sampler_spec(name).spacing, g_sampler, g_spacing, api_visibility="private",
                        queue=False)
        g_dice.click(lambda: random.randint(0, engine.MAX_SEED), outputs=g_seed, api_visibility="private", queue=False)
        # a conditional model shows its class picker and guidance scale(s); another model resets them to "none"
        g_model.input(lambda m: class_updates(store, m, 1), g_model, [g_class, g_guidance], api_visibility="private",
                      queue=False)
        c_model.input(lambda m: class_updates(store, m, 6), c_model, [c_class, *c_guidance],
                      api_visibility="private", queue=False)
        e_model.input(lambda m: class_updates(store, m, 1, random=False), e_model, [e_class, e_guidance],
                      api_visibility="private", queue=False)

        def set_panels(count):
            return [gr.update(visible=k < int(count)) for k in range(6)]

        c_panels.change(set_panels, c_panels, c_rows, api_visibility="private", queue=False)
        c_inputs = [c_model, c_seed, c_panels, c_n]
        c_outputs = [c_gallery, c_plot, c_table, c_status, c_state, c_scrub, c_link]
        c_event = c_run.click(h.compare, inputs=c_inputs, inputs_kwargs=c_fields, outputs=c_outputs, api_name="compare",
                              show_progress_on=[c_status], concurrency_limit=WORKERS, concurrency_id="compare",
                              validator=validator(h.compare_panels, "compare"))
        c_stop.click(None, cancels=[c_event], api_visibility="private")
        c_scrub.change(h.scrub, [c_scrub, c_state], c_gallery, api_visibility="private", show_progress="hidden")
        f_run.click(h.forward, inputs=[f_dataset, f_index, f_schedules, f_ts, f_seed, f_upload],
                    outputs=[f_gallery, f_plot, f_x0, f_src], api_name="forward", show_progress_on=[f_src],
                    validator=validator(h.forward_settings, "forward"))
        s_run.click(h.score_field, inputs=[s_model, s_sigma, s_sampler, s_schedule, s_steps, s_seed, s_particles],
                    outputs=[s_plot, s_anim, s_status], api_name="score_field", show_progress_on=[s_status],
                    validator=validator(h.field_settings, "score_field"))

        # ------------------------------------------------------------------------------------------ edit ---
        e_inputs = [e_model, e_mode, e_source, e_dataset, e_index, e_upload, e_sketch, e_mask, e_schedule, e_sampler,
                    e_steps, e_seed, e_strength, e_jump, e_resamples, e_k, e_ends, e_seed_b, e_index_b, e_class,
                    e_guidance]
        e_outputs = [e_image, e_gallery, e_gif, e_png, e_plot, e_status, e_link]
        edit_run = dict(outputs=e_outputs, show_progress_on=[e_status], concurrency_id="edit")
        e_event = e_run.click(h.edit, inputs=e_inputs, **edit_run, api_name="edit", concurrency_limit=WORKERS,
                              validator=validator(h.edit_settings, "edit"))
        e_stop.click(None, cancels=[e_event], api_visibility="private")
        for changed in (e_mode, e_source):
            changed.change(edit_fields, [e_mode, e_source], [e_strength, e_inpaint_box, e_interp_box, e_mask, e_upload,
                                                             e_sketch, e_dataset_row, e_mask_source],
                           api_visibility="private", queue=False)
        # the mask is painted over the source, at the model's resolution (a new source clears the paint); a sketch
        # reaches the server only with a click (its strokes send no value), hence the button
        for trigger in (e_model.change, e_mode.change, e_source.change, e_dataset.change, e_index.change,
                        e_upload.change, e_mask_source.click):
            trigger(h.mask_canvas, [e_model, e_mode, e_source, e_dataset, e_index, e_upload, e_sketch], e_mask,
                    api_visibility="private", show_progress="hidden", concurrency_id="edit-canvas")

        # ------------------------------------------------ deep links (query string), examples, the first result ---
        e_settings = {"mode": e_mode, "source": e_source, "dataset": e_dataset, "index": e_index,
                      "schedule": e_schedule, "sampler": e_sampler, "steps": e_steps, "seed": e_seed,
                      "strength": e_strength, "jump_length": e_jump, "resamples": e_resamples, "k": e_k,
                      "ends": e_ends, "seed_b": e_seed_b, "index_b": e_index_b}
        restore_outputs = [tabs, notice, g_model, g_schedule, g_sampler, g_steps, g_seed, g_n, g_spacing, g_eta,
                           g_variance, g_nse, g_ss, g_snr, g_nc, g_class, g_guidance, c_model, c_seed, c_n, c_panels, s_model, autorun,
                           *c_fields.values(), *c_rows, e_model, *e_settings.values(), e_class, e_guidance]

        def fill(query: dict) -> list:
            """The values of ``restore_outputs`` for a link's settings (``query``, checked by parse_query; the
            defaults where it says nothing); ``autorun`` is the tab to run when the link names an available model."""
            q = parse_query(query)
            imgs, toys = store.image_models(), store.toy_models()
            model = q.get("model")
            g_m = pick(imgs, model if model in imgs else default_model)
            s_m = pick(toys, model if model in toys else "toy-moons")
            tab = q.get("tab", "generate")
            txt = _no_models_text(store, imgs, toys)

            def val(key, default):
                return q.get(key, default)

            d = DEFAULTS
            out = [gr.Tabs(selected=tab), gr.update(value=txt, visible=bool(txt)),
                   gr.update(choices=imgs, value=g_m), val("schedule", d["schedule"]), val("sampler", d["sampler"]),
                   val("steps", d["steps"]), val("seed", d["seed"]), val("n", d["n"]), val("spacing", d["spacing"]),
                   *(val(k, v) for k, v in OPTIONS.items()),
                   *class_updates(store, g_m, 1, val("label", NO_CLASS), (val("guidance_scale", 1.0),)),
                   gr.update(choices=imgs, value=g_m), val("seed", 0), min(val("n", 1), H.COMPARE_MAX_N),
                   val("panels", 3), gr.update(choices=toys, value=s_m),
                   tab if (tab in ("generate", "compare") or tab == "edit" and edit_reproducible(q)) and "model" in q
                   and g_m == model else False]
            for k, (sch, smp, stp) in enumerate(PANEL_DEFAULTS, 1):
                out += [val(f"schedule_{k}", sch), val(f"sampler_{k}", smp), val(f"steps_{k}", stp)]
            out += class_updates(store, g_m, 6, val("label", NO_CLASS), [val(f"guidance_{k}", 1.0) for k in range(1, 7)])
            count = val("panels", 3)
            out += [gr.update(visible=k < count) for k in range(6)]
            out += [gr.update(choices=imgs, value=g_m)] + [val(key, field.value) for key, field in e_settings.items()]
            out += class_updates(store, g_m, 1, val("label", NO_CLASS), (val("guidance_scale", 1.0),), random=False)
            return out

        def restore(request: gr.Request):
            return fill(dict(request.query_params) if request is not None else {})

        def autogen(request: gr.Request, tab, *values):
            """Runs Generate once when the page was opened from a Generate result link. (``request`` comes first:
            Gradio fills in only positional gr.Request parameters.)"""
            if tab != "generate":
                yield tuple(gr.skip() for _ in g_outputs)
                return
            yield from h.generate(*values, request=request)

        def autocompare(request: gr.Request, tab, model, seed, panels, n, *values):
            """Runs Compare once when the page was opened from a Compare result link."""
            if tab != "compare":
                yield tuple(gr.skip() for _ in c_outputs)
                return
            yield from h.compare(model, seed, panels, n, request=request, **dict(zip(c_fields, values)))

        def autoedit(request: gr.Request, tab, *values):
            """Runs Edit once when the page was opened from an Edit result link that makes its result again
            (``edit_reproducible``)."""
            if tab != "edit":
                yield tuple(gr.skip() for _ in e_outputs)
                return
            yield from h.edit(*values, request=request)

        def run_after(filled) -> None:
            """After ``filled`` (an event that filled in a link's settings): run Generate or Compare as the link
            says. Each Stop button also ends the run it began."""
            auto_gen = filled.then(autogen, inputs=[autorun, *g_inputs], api_visibility="private", **generate_run)
            g_stop.click(None, cancels=[auto_gen], api_visibility="private")
            auto_cmp = filled.then(autocompare, inputs=[autorun, *c_inputs, *c_fields.values()], outputs=c_outputs,
                                   api_visibility="private", show_progress_on=[c_status], concurrency_id="compare")
            c_stop.click(None, cancels=[auto_cmp], api_visibility="private")
            auto_edit = filled.then(autoedit, inputs=[autorun, *e_inputs], api_visibility="private", **edit_run)
            e_stop.click(None, cancels=[auto_edit], api_visibility="private")

        def opening(request: gr.Request, tab, *values):
            """The default settings' result, shown at once when the page opens with the default Generate settings
            and no result link: made once per process and kept (``Handlers.default_result``), so no visitor waits
            in the queue for it."""
            result = h.default_result(request) if tab is False and list(values) == h.default_values() else None
            return result or tuple(gr.skip() for _ in g_outputs)

        loaded = demo.load(restore, outputs=restore_outputs, api_visibility="private", queue=False)
        loaded.then(opening, inputs=[autorun, *g_inputs], outputs=g_outputs, api_visibility="private", queue=False)
        run_after(loaded)
        for button, query in examples:
            run_after(button.click(functools.partial(fill, query), outputs=restore_outputs, api_visibility="private",
                                   queue=False))
    demo.handlers = h  # app.py's warm-up makes the default result with them
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
