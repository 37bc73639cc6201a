"""Settings shared by the tabs: parsing/validating UI values, sampler options, and the shareable query string."""
from __future__ import annotations

import math
from urllib.parse import urlencode

import gradio as gr

import engine

SCHEDULES = list(engine.SCHEDULES)
SAMPLERS = list(engine.SAMPLERS)
SPACINGS = list(engine.SPACINGS)
VARIANCES = ["fixed_small", "fixed_large"]
TABS = ["generate", "compare", "forward", "field", "about"]

# every option the UI offers, with its default (the engine's defaults)
OPTION_DEFAULTS = {"eta": 0.0, "variance": "fixed_small", "n_steps_each": 5, "step_size": 0.5, "snr": 0.16,
                   "n_corrector": 1}
INT_OPTIONS = {"n_steps_each", "n_corrector"}
MAX_STEPS = 1000
MAX_N = 16
MAX_SEED = 2**32 - 1

# network evaluations per step, for the per-request budget (not maths: a cost estimate)
def nfe_estimate(sampler: str, steps: int, opts: dict) -> int:
    if sampler == "ode":
        return 2 * steps
    if sampler == "langevin":
        return steps * int(opts.get("n_steps_each", 5)) + 1
    if sampler == "pc":
        return steps * (int(opts.get("n_corrector", 1)) + 1)
    return steps


def as_int(name: str, value, lo: int, hi: int) -> int:
    """A UI number (int or integral float) as int in [lo, hi], or gr.Error."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise gr.Error(f"{name} must be an integer from {lo} to {hi}; got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not lo <= int(value) <= hi:
        raise gr.Error(f"{name} must be an integer from {lo} to {hi}; got {value!r}")
    return int(value)


def as_float(name: str, value, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number from {lo} to {hi}; got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise gr.Error(f"{name} must be a number from {lo} to {hi}; got {value!r}")
    return v


def choice(name: str, value, allowed: list[str]) -> str:
    if value not in allowed:
        raise gr.Error(f"unknown {name} {value!r}; allowed: {', '.join(allowed) or 'none'}")
    return value


def sampler_opts(sampler: str, values: dict) -> dict:
    """The options ``sampler`` takes, taken from the UI ``values`` (others ignored; 'sde' left to the engine)."""
    allowed = engine.sampler_options(sampler)
    out = {}
    for k in allowed:
        if k in values and k in OPTION_DEFAULTS:
            v = values[k]
            if k in INT_OPTIONS:
                v = as_int(k, v, 0, 100)
            elif isinstance(OPTION_DEFAULTS[k], float):
                v = as_float(k, v, -1e9, 1e9)
            out[k] = v
    return out


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
                         ("variance", VARIANCES)):
        if q.get(key) in allowed:
            out[key] = q[key]
    if "model" in q:
        out["model"] = str(q["model"])[:64]
    num("steps", 1, MAX_STEPS)
    num("seed", 0, MAX_SEED)
    num("n", 1, MAX_N)
    num("eta", 0.0, 1.0, integer=False)
    num("n_steps_each", 1, 100)
    num("step_size", 1e-6, 1.0, integer=False)
    num("snr", 1e-6, 1.0, integer=False)
    num("n_corrector", 0, 20)
    num("panels", 1, 6)
    for k in range(1, 7):
        for key, allowed in ((f"schedule_{k}", SCHEDULES), (f"sampler_{k}", SAMPLERS)):
            if q.get(key) in allowed:
                out[key] = q[key]
        num(f"steps_{k}", 1, MAX_STEPS)
    return out
