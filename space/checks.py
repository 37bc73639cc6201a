"""The checks of request values shared by every tab: each turns a UI or API value into the engine's, or raises
``gr.Error`` naming the parameter and what is allowed (the same words the guard uses, docs/RELIABILITY.md)."""
from __future__ import annotations

import math

import gradio as gr

import engine
import engine.models
from engine.samplers import OPTION_VALUES, Range, check_option

from .guard import shown
from .settings import NO_CLASS, RANDOM_CLASS


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


def engine_error(err: Exception) -> gr.Error:
    """The engine's refusal (a ValueError or TypeError saying what is allowed) as the client's message."""
    return gr.Error(str(err).strip("'\""))


def engine_label(value: int) -> int | str | None:
    """The engine's ``label`` for a class picker value: None for NO_CLASS, "random" for RANDOM_CLASS, else the class."""
    return {NO_CLASS: None, RANDOM_CLASS: engine.models.RANDOM_LABEL}.get(value, value)


def picker_value(label: int | str | None) -> int:
    """The class picker's value, as links carry it, for an engine ``label`` (``engine_label``'s inverse)."""
    return {None: NO_CLASS, engine.models.RANDOM_LABEL: RANDOM_CLASS}.get(label, label)
