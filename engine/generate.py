"""``generate``: run a named sampler on a model with a named schedule, reproducibly from a seed.

All randomness of a run — x_T and every per-step draw — comes from one CPU ``torch.Generator`` seeded with
``seed``, and is moved to the device afterwards: a seed gives the same draws on CPU and GPU, and two runs with the
same seed start from the same x_T and see the same noise at the same draw, which is what makes side-by-side
comparison of schedules and samplers fair.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch

from .models import check_model, guided
from .samplers import SAMPLERS, SamplerSpec, Step, check_option
from .schedules import SPACINGS, Schedule, get_schedule

MAX_SEED = 2**32 - 1


class _CountingNet:
    """Calls ``model.eps`` with a per-sample ᾱ tensor and counts network evaluations (NFE)."""

    def __init__(self, model):
        self.model = model
        self.nfe = 0

    def __call__(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self.nfe += 1
        a = torch.full((x.shape[0],), alpha_bar, dtype=torch.float64, device=x.device)
        return self.model.eps(x, a)


def model_device(model) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}; got {value!r}")
    return value


def sampler_spec(sampler: str) -> SamplerSpec:
    """The registry record of ``sampler`` (engine.samplers.SAMPLERS), or ValueError listing the names."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler]


def sampler_options(sampler: str) -> dict:
    """The options a sampler takes, with their defaults: ``{"eta": 0.0}`` for ddim."""
    return sampler_spec(sampler).options


def _check_options(sampler: str, options: dict, schedule: Schedule) -> dict:
    allowed = sampler_options(sampler)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        names = ", ".join(allowed) or "none"
        raise ValueError(f"sampler {sampler!r} has no option {', '.join(unknown)}; its options: {names}")
    opts = dict(options)
    if "sde" in allowed and "sde" not in opts:
        opts["sde"] = schedule.kind
    for k, v in opts.items():
        opts[k] = check_option(k, v)
    return opts


def levels_for(schedule: Schedule, steps: int, spacing: str = "leading") -> list[tuple[int, float]]:
    """The descending (t, ᾱ_t) pairs a sampler visits for ``steps`` steps with diffusers' ``spacing``."""
    ts = schedule.timesteps(steps, spacing)
    a = schedule.alphas_cumprod[ts]
    return [(int(t), float(v)) for t, v in zip(ts, a)]


@dataclass
class Run:
    """A checked run, ready to start from any x: the schedule, the sampler's record, the levels it visits, its
    checked options, the seeded generator every draw comes from, and the device."""

    schedule: Schedule
    spec: SamplerSpec
    levels: list[tuple[int, float]]
    options: dict
    gen: torch.Generator
    device: torch.device

    def start(self, model, x: torch.Tensor, levels: list[tuple[int, float]] | None = None) -> Iterator[Step]:
        """Run the sampler from state ``x`` (VP-scaled, at the first of ``levels``; default: all of the run's)."""
        return _run(self.spec.fn, _CountingNet(model), x.float().to(self.device), levels or self.levels, self.noise,
                    self.options)

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """N(0, I) shaped like ``like``, the run's next draw (made on the CPU, so a seed gives the same draws on
        every device)."""
        return torch.randn(like.shape, generator=self.gen).to(device=like.device, dtype=like.dtype)


def plan(model, *, schedule: str | Schedule, sampler: str, steps: int, seed: int, spacing: str | None = None,
         device: str | torch.device | None = None, **sampler_options) -> Run:
    """Check a run's settings (ValueError saying what is wrong and what is allowed; TypeError for a non-model) and
    return it ready to start. ``spacing`` (diffusers' ``timestep_spacing``) defaults to the one that suits the
    schedule when it names one (``flow``: trailing, its Euler grid), else the sampler (its registry record:
    trailing for dpm-solver++, leading for the others)."""
    check_model(model)
    sched = schedule if isinstance(schedule, Schedule) else get_schedule(schedule)
    spec = sampler_spec(sampler)
    _check_int("steps", steps, 1, sched.T)
    _check_int("seed", seed, 0, MAX_SEED)
    spacing = spacing or sched.spacing or spec.spacing
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; allowed: {', '.join(SPACINGS)}")
    opts = _check_options(sampler, sampler_options, sched)
    device = torch.device(device) if device is not None else model_device(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return Run(sched, spec, levels_for(sched, steps, spacing), opts, gen, device)


def generate(
    model,
    *,
    schedule: str | Schedule,
    sampler: str,
    steps: int,
    seed: int,
    n: int = 1,
    spacing: str | None = None,
    x_T: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    label: int | list[int] | str | None = None,
    guidance_scale: float = 1.0,
    **sampler_options,
) -> Iterator[Step]:
    """Sample ``n`` items; returns an iterator of ``Step`` (the last Step's ``x_t`` is the sample).

    Settings are checked before anything runs (``plan``). x_T is the run's first draw from ``seed`` unless given.
    ``label`` (a class-conditional model only: one class for all, one per sample, or "random" for classes drawn
    uniformly right after x_T, see ``models.guided``) and ``guidance_scale`` w give classifier-free guidance,
    ε̂ = ε̂(x, ∅) + w (ε̂(x, c) − ε̂(x, ∅)) (``models.Guided``); without a label a conditional model samples
    unconditionally through its null class.
    A model with a ``to_data`` map (one trained on points in the caller's coordinates: engine.toytrain) samples in
    its standardised space, x_T included, and each Step's ``x_t`` and ``x0_pred`` come back through the map
    y = μ + s x, so the sample is in the caller's coordinates.
    """
    run = plan(model, schedule=schedule, sampler=sampler, steps=steps, seed=seed, spacing=spacing, device=device,
               **sampler_options)
    _check_int("n", n, 1, 1_000_000)
    shape = (n, *model.data_shape)
    if x_T is None:
        x_T = torch.randn(shape, generator=run.gen)
    elif tuple(x_T.shape) != shape:
        raise ValueError(f"x_T must have shape {shape} (n, *data_shape); got {tuple(x_T.shape)}")
    model = guided(model, label, guidance_scale, n, run.gen)  # "random" classes: the draws after x_T
    steps = run.start(model, x_T)
    to_data = getattr(model, "to_data", None)
    if to_data is None:
        return steps
    return (dataclasses.replace(s, x_t=to_data(s.x_t), x0_pred=to_data(s.x0_pred)) for s in steps)


@torch.inference_mode()
def _run(fn, net, x, levels, noise, opts) -> Iterator[Step]:
    # torch's context decorators enter and leave inference mode around each resumption of a generator,
    # so the caller's code between steps is not affected.
    yield from fn(net, x, levels, noise, **opts)


def sample(model, **kwargs) -> torch.Tensor:
    """Run ``generate`` to the end and return the final sample."""
    step = None
    for step in generate(model, **kwargs):
        pass
    return step.x_t
