"""Settings shared by the tabs: parsing/validating UI values, sampler options, and the shareable query string."""
from __future__ import annotations

import math
from urllib.parse import urlencode

import gradio as gr

import engine
import engine.models
from engine.editing import MAX_INTERPOLATION_FRAMES, MAX_RESAMPLES
from engine.samplers import OPTION_VALUES, Range, check_option

from .guard import shown

SCHEDULES = list(engine.SCHEDULES)
SAMPLERS = list(engine.SAMPLERS)
SPACINGS = list(engine.SPACINGS)
TABS = ["generate", "compare", "forward", "field", "edit", "train", "likelihood", "about"]
# the Edit tab's choices (its endpoint checks against them too)
EDIT_MODES = ["img2img", "inpaint", "invert", "interpolate"]
EDIT_SOURCES = ["dataset", "upload", "sketch"]
EDIT_ENDS = ["seeds", "images"]  # what an interpolation runs between
DATASETS = ["mnist", "digits8", "fashion-mnist"]  # the Forward and Edit tabs' source images
MAX_INDEX = 69_999  # an image index: checked exactly against the dataset's test split when it is loaded
MAX_STEPS = 1000
MAX_N = 16
NO_CLASS = -1  # the class picker's "none": unconditional sampling (a conditional model's null class)
RANDOM_CLASS = -2  # the class picker's "random": each sample's class drawn from the seed (the engine's "random")
MAX_GUIDANCE = engine.models.MAX_GUIDANCE_SCALE


def _offered_options(names: tuple[str, ...]) -> dict:
    """The sampler options the UI offers (``names``; 'sde' is left to the engine), each with its default from the
    engine's sampler registry."""
    defaults = {k: v for spec in engine.SAMPLERS.values() for k, v in spec.options.items()}
    return {k: defaults[k] for k in names}


OPTIONS = _offered_options(("eta", "variance", "n_steps_each", "step_size", "snr", "n_corrector"))
# the Generate tab's settings when the page opens (the model: DEFAULT_MODEL when there is one, see ``pick``)
DEFAULTS = {"schedule": "cosine", "sampler": "ddim", "steps": 50, "seed": 0, "n": 4, "spacing": "leading"}
DEFAULT_MODEL = "mnist-ddpm"


def pick(names: list[str], preferred: str | None = None) -> str | None:
    """``preferred`` if it is one of ``names``, else the first name (None when there is none)."""
    if preferred in names:
        return preferred
    return names[0] if names else None


def as_int(name: str, value, lo: int, hi: int) -> int:
    """A UI number (an int, an integral float or such a string) as int in [lo, hi], or gr.Error."""
    def refuse():
        return gr.Error(f"{name} must be an integer from {lo} to {hi}; got {shown(value)}")

    v = value
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise refuse() from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise refuse()
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        raise refuse()
    if not lo <= v <= hi:  # compared before int(): a huge float or int is refused, never converted
        raise refuse()
    return int(v)


def as_float(name: str, value, lo: float, hi: float) -> float:
    """A UI number as float in [lo, hi], or gr.Error (NaN, ±inf and out-of-range values included)."""
    try:
        v = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if not math.isfinite(v) or not lo <= v <= hi:
        raise gr.Error(f"{name} must be a number from {lo:g} to {hi:g}; got {shown(value)}")
    return v


def choice(name: str, value, allowed: list[str]) -> str:
    """``value`` if it is one of ``allowed`` (compared as given: a model name is never taken as a path), else
    gr.Error listing what is allowed."""
    if not isinstance(value, str) or value not in allowed:
        raise gr.Error(f"unknown {name} {shown(value)}; allowed: {', '.join(allowed) or 'none'}")
    return value


def sampler_opts(sampler: str, values: dict) -> dict:
    """The options ``sampler`` takes, taken from the UI ``values`` (others ignored; 'sde' left to the engine), each
    checked against the range the engine allows (``engine.samplers.OPTION_VALUES``)."""
    out = {}
    for k in engine.sampler_spec(sampler).options:
        if k in values:
            spec, v = OPTION_VALUES[k], values[k]
            if isinstance(spec, Range):
                v = as_int(k, v, spec.lo, spec.hi) if spec.integer else as_float(k, v, spec.lo, spec.hi)
            else:
                v = choice(k, v, list(spec))
            try:
                out[k] = check_option(k, v)
            except ValueError as err:  # an open bound: step_size and snr must be > 0
                raise gr.Error(str(err)) from None
    return out


def class_choices(classes: list[str], random: bool = True) -> list[tuple[str, int]]:
    """The class picker's (shown name, value) pairs: "none" (NO_CLASS), "random" (RANDOM_CLASS, when ``random``:
    the pickers of runs from noise) and then each class with its index."""
    drawn = [("random (each image's class drawn from the seed)", RANDOM_CLASS)] if random else []
    return [("none (unconditional)", NO_CLASS), *drawn] + [(f"{i}: {c}" if c != str(i) else c, i)
                                                           for i, c in enumerate(classes)]


def engine_label(value: int) -> int | str | None:
    """The engine's ``label`` for a class picker value: None for NO_CLASS, "random" for RANDOM_CLASS, else the class."""
    return {NO_CLASS: None, RANDOM_CLASS: engine.models.RANDOM_LABEL}.get(value, value)


def picker_value(label: int | str | None) -> int:
    """The class picker's value, as links carry it, for an engine ``label`` (``engine_label``'s inverse)."""
    return {None: NO_CLASS, engine.models.RANDOM_LABEL: RANDOM_CLASS}.get(label, label)


def query_string(params: dict) -> str:
    return "?" + urlencode({k: v for k, v in params.items() if v is not None})


def base_url(request: gr.Request | None) -> str:
    """The page's URL without its query string: the browser's Referer when there is one, else the server root."""
    if request is None:
        return ""
    try:
        ref = request.headers.get("referer")
        if ref:
            return ref.split("?", 1)[0].split("#", 1)[0]
        return str(request.request.base_url)
    except Exception:
        return ""


def parse_query(q: dict) -> dict:
    """Validated settings from a query string; bad or unknown values are dropped (the defaults stay)."""
    out = {}

    def num(key, lo, hi, integer=True):
        if key in q:
            try:
                v = float(q[key])
                if math.isfinite(v) and lo <= v <= hi and (not integer or v == int(v)):
                    out[key] = int(v) if integer else v
            except ValueError:
                pass

    for key, allowed in (("tab", TABS), ("schedule", SCHEDULES), ("sampler", SAMPLERS), ("spacing", SPACINGS),
                         ("variance", OPTION_VALUES["variance"]), ("mode", EDIT_MODES), ("source", EDIT_SOURCES),
                        ("ends", EDIT_ENDS), ("dataset", DATASETS)):
        if q.get(key) in allowed:
            out[key] = q[key]
    if "model" in q:
        out["model"] = str(q["model"])[:64]
    num("steps", 1, MAX_STEPS)
    num("seed", 0, engine.MAX_SEED)
    num("n", 1, MAX_N)
    num("eta", 0.0, 1.0, integer=False)
    num("n_steps_each", 1, 100)
    num("step_size", 1e-6, 1.0, integer=False)
    num("snr", 1e-6, 1.0, integer=False)
    num("n_corrector", 0, 20)
    num("panels", 1, 6)
    num("strength", 0.001, 1.0, integer=False)
    num("jump_length", 1, MAX_STEPS)
    num("resamples", 1, MAX_RESAMPLES)
    num("k", 2, MAX_INTERPOLATION_FRAMES)
    num("seed_b", 0, engine.MAX_SEED)
    num("index", 0, MAX_INDEX)
    num("index_b", 0, MAX_INDEX)
    num("label", RANDOM_CLASS, 999)  # checked against the model's classes when the settings are filled in
    num("guidance_scale", 0.0, MAX_GUIDANCE, integer=False)
    for k in range(1, 7):
        for key, allowed in ((f"schedule_{k}", SCHEDULES), (f"sampler_{k}", SAMPLERS)):
            if q.get(key) in allowed:
                out[key] = q[key]
        num(f"steps_{k}", 1, MAX_STEPS)
        num(f"guidance_{k}", 0.0, MAX_GUIDANCE, integer=False)
    return out
