"""Every limit and default of the app, once: the tabs' widgets, their checks and the links all read them here.

A bound the engine already keeps is read from the engine, never restated: the panels of a comparison
(``engine.compare.MAX_PANELS``), the seed (``engine.MAX_SEED``), the guidance scale, RePaint's resamples and the
interpolation's images (``engine.editing``). The sampler options' sliders lie inside the ranges the engine allows
(``engine.samplers.OPTION_VALUES``; ``tests/test_app.py`` checks each bound against ``check_option``): the step size
and the corrector's SNR must be > 0 there, and their sliders start at their resolution, 0.001 and 0.01.
"""
from __future__ import annotations

from PIL import Image

import engine
import engine.models
from engine.compare import MAX_PANELS  # noqa: F401 (Compare's panels: the engine's own bound, read from here)
from engine.editing import MAX_INTERPOLATION_FRAMES, MAX_RESAMPLES  # noqa: F401
from engine.toytrain import MAX_POINTS

# ------------------------------------------------------------------------------------------ choices ---
SCHEDULES = list(engine.SCHEDULES)
SAMPLERS = list(engine.SAMPLERS)
SPACINGS = list(engine.SPACINGS)
TABS = ["generate", "compare", "forward", "field", "edit", "train", "likelihood", "about"]
DATASETS = ["mnist", "digits8", "fashion-mnist"]  # the source images of Forward, Edit and Likelihood
IMAGE_SOURCES = ["dataset", "upload", "sketch"]  # where Edit's and Likelihood's image comes from
EDIT_MODES = ["img2img", "inpaint", "invert", "interpolate"]
EDIT_ENDS = ["seeds", "images"]  # what an interpolation runs between
NO_CLASS = -1  # the class picker's "none": unconditional sampling (a conditional model's null class)
RANDOM_CLASS = -2  # the class picker's "random": each sample's class drawn from the seed (the engine's "random")

# ------------------------------------------------------------------------------- values of requests ---
MAX_SEED = engine.MAX_SEED
MAX_INDEX = 69_999  # an image index: checked exactly against the dataset's test split when it is loaded
MAX_STEPS = 1000
MAX_N = 16  # Generate's images per request
MAX_GUIDANCE = engine.models.MAX_GUIDANCE_SCALE
COMPARE_MAX_N = 4  # images per Compare panel
MAX_TIMESTEPS = 12  # t values in one Forward-process request
FIELD_SIGMA = (0.01, 5.0)  # the Score-field tab's σ
FIELD_MAX_STEPS = 200
FIELD_PARTICLES = (10, 2000)
EDIT_STRENGTH = (0.001, 1.0)  # img2img's strength: diffusers' (0, 1] from the slider's resolution, its minimum
MAX_LIKELIHOOD_SCHEDULES = 4
# Generate's sampler-option sliders (lo, hi, resolution); the engine allows eta [0, 1], n_steps_each 1…100,
# step_size and snr (0, 1], n_corrector 0…20
OPTION_SLIDERS = {"eta": (0, 1, 0.01), "n_steps_each": (1, 100, 1), "step_size": (0.001, 1.0, 0.001),
                  "snr": (0.01, 1.0, 0.01), "n_corrector": (0, 20, 1)}

# ------------------------------------------------------------------------------------ work and queue ---
MAX_NFE = 20_000  # network evaluations per request (build_demo's default)
TIME_BUDGET_S = 300.0  # wall time per request (build_demo's default), checked after every step
# Limits of the public app (README "Limits", docs/RELIABILITY.md). Sampling is CPU-bound: two at a time per kind of
# sampling request; up to QUEUE_SIZE requests wait, and a request beyond that is answered "Queue is full" at once.
QUEUE_SIZE = 32
WORKERS = 2
# Gradio's copies of results (the live frames, galleries, downloads): checked every 10 minutes, removed after an hour
DELETE_CACHE = (600, 3600)
QUEUE_POLL_S = 0.005  # how often Gradio's queue looks for new requests (its default, 1 ms, slows the sampler)

# ------------------------------------------------------------------------------------------ canvases ---
SKETCH_CANVAS = Image.new("L", (280, 280), 0)  # black, 10 canvas pixels per pixel of a 28×28 model
MASK_CANVAS = 280  # the mask editor's canvas: the source upscaled to about this many pixels

# --------------------------------------------------------------------------------------- the Train tab ---
TRAIN_SOURCES = ["draw", "toy", "csv"]
TRAIN_OBJECTIVES = list(engine.models.OBJECTIVES)  # ddpm, dsm, fm: every objective the engine trains
MAX_TRAIN_STEPS = 5000
MAX_TRAIN_SECONDS = 60.0
MAX_TRAININGS = 2  # at once on the server
MAX_SESSIONS = 64  # browser sessions whose trained model is kept (the least recently used idle one goes first)
TRAIN_POINTS = (100, MAX_POINTS)  # points taken from a toy or a drawing
TRAIN_WIDTH = (16, 256)
TRAIN_LR = (1e-4, 5e-2)
TRAIN_BATCH = (16, 1024)
TRAIN_CANVAS = 400  # the drawing canvas, pixels a side
MAX_CSV_BYTES = 1_000_000
SAMPLE_STEPS = (1, 200)
SAMPLE_PARTICLES = (10, 2000)

# ------------------------------------------------------------------------------------------ defaults ---
# the Generate tab's settings when the page opens (the model: DEFAULT_MODEL when there is one, see ``pick``)
DEFAULTS = {"schedule": "cosine", "sampler": "ddim", "steps": 50, "seed": 0, "n": 4, "spacing": "leading"}
DEFAULT_MODEL = "mnist-ddpm"
DEFAULT_TOY = "toy-moons"


def _offered_options(names: tuple[str, ...]) -> dict:
    """The sampler options the UI offers (``names``; 'sde' is left to the engine), each with its default from the
    engine's sampler registry."""
    defaults = {k: v for spec in engine.SAMPLERS.values() for k, v in spec.options.items()}
    return {k: defaults[k] for k in names}


OPTIONS = _offered_options(("eta", "variance", "n_steps_each", "step_size", "snr", "n_corrector"))


def pick(names: list[str], preferred: str | None = None) -> str | None:
    """``preferred`` if it is one of ``names``, else the first name (None when there is none)."""
    if preferred in names:
        return preferred
    return names[0] if names else None
