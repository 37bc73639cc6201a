"""Editing with an unconditional diffusion model: img2img (SDEdit), inpainting (RePaint), DDIM inversion and
interpolation between two starting points. Each checks its arguments before it runs (ValueError saying what is
wrong and what is allowed) and draws every random number from its seed, like ``generate``.

img2img (Meng et al. 2021, SDEdit): noise the image to the level where the run starts, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε,
then run any sampler from there. ``strength`` has diffusers' meaning: the run keeps the last ⌊steps · strength⌋ of
the ``steps`` levels, so strength 1 starts from (almost) pure noise and small strengths change little.

Inpainting (Lugmayr et al. 2022, RePaint): DDPM ancestral steps in which, after each step to level s, the known
pixels are replaced by x_0 noised to s: x_s = m ⊙ (√ᾱ_s x_0 + √(1−ᾱ_s) ε) + (1 − m) ⊙ x_s^model (m = 1 where
known). Every ``jump_length`` steps the state goes back up ``jump_length`` levels by the forward process,
x_t = √(ᾱ_t/ᾱ_s) x_s + √(1 − ᾱ_t/ᾱ_s) z, and is denoised again, ``resamples`` times in all, so the model can
harmonise the unknown region with the known one; ``resamples=1`` is plain replacement. The last step puts x_0's
known pixels back exactly.

DDIM inversion (Song et al. 2020, §4.3; Dhariwal & Nichol 2021, App. F): DDIM's deterministic update run towards
more noise, x_{t'} = √ᾱ_{t'} x̂0 + √(1−ᾱ_{t'}) ε̂ with ε̂ taken at the current, less noisy state (the first step from
the clean image takes it at √ᾱ x_0). DDIM with η = 0 over the same levels then returns close to x_0; the error
falls with more steps.

Interpolation: spherical interpolation of two starting points (Shoemake 1985; as DDIM §5.3 for x_T),
slerp(a, b; w) = sin((1−w)θ)/sin θ · a + sin(wθ)/sin θ · b, cos θ = ⟨a, b⟩ / (‖a‖ ‖b‖), which keeps a Gaussian x_T's
norm where a straight line would shrink it by up to √2 and leave the typical set; decoded by a deterministic
sampler, so each image depends on its x_T alone.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import torch

from .generate import MAX_SEED, _check_int, levels_for, plan, sampler_spec
from .models import check_model, guided
from .samplers import Step
from .schedules import Schedule, get_schedule

MAX_RESAMPLES = 20
MAX_INTERPOLATION_FRAMES = 32


def _check_images(model, x0, name: str = "x0") -> torch.Tensor:
    check_model(model)
    shape = tuple(model.data_shape)
    if not isinstance(x0, torch.Tensor) or x0.dim() != len(shape) + 1 or tuple(x0.shape[1:]) != shape or not len(x0):
        raise ValueError(f"{name} must be a tensor of shape (N, {', '.join(map(str, shape))}); "
                         f"got {tuple(getattr(x0, 'shape', ())) or type(x0).__name__}")
    if not torch.isfinite(x0).all():
        raise ValueError(f"{name} must be finite")
    return x0.float()


def _kept_steps(steps: int, strength: float) -> int:
    """⌊steps · strength⌋, the steps an img2img run keeps, or ValueError saying why there are none."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1]; got {strength!r}")
    keep = min(int(steps * strength), steps)
    if keep < 1:
        raise ValueError(f"strength × steps must be at least 1 (strength {strength} × {steps} steps runs no step)")
    return keep


def img2img_levels(schedule: str | Schedule, steps: int, strength: float, spacing: str = "leading") -> list:
    """The (t, ᾱ_t) levels an img2img run visits: the last ⌊steps · strength⌋ of the ``steps`` levels."""
    keep = _kept_steps(steps, strength)
    sched = schedule if isinstance(schedule, Schedule) else get_schedule(schedule)
    return levels_for(sched, steps, spacing)[steps - keep:]


def img2img(model, x0: torch.Tensor, *, strength: float, schedule: str | Schedule, sampler: str, steps: int,
            seed: int, spacing: str | None = None, device=None, label=None, guidance_scale: float = 1.0,
            **options) -> Iterator[Step]:
    """SDEdit: noise ``x0`` (N, *data_shape) to the level where the run starts and sample from there; yields the
    sampler's Steps (the last Step's ``x_t`` is the edited image). The noise is the run's first draw. ``label`` and
    ``guidance_scale`` steer a class-conditional model as in ``generate``."""
    x0 = _check_images(model, x0)
    model = guided(model, label, guidance_scale, len(x0))
    run = plan(model, schedule=schedule, sampler=sampler, steps=steps, seed=seed, spacing=spacing, device=device,
               **options)
    levels = run.levels[steps - _kept_steps(steps, strength):]
    a = levels[0][1]
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * run.noise(x0)
    return run.start(model, x, levels)


def repaint_walk(steps: int, jump_length: int, resamples: int) -> list[tuple[int, int]]:
    """RePaint's path over level indices 0 … steps (0 the noisiest level, ``steps`` the clean image): (i, i+1) is a
    denoising step, (i, i − jump_length) a jump back up by the forward process. At each multiple of ``jump_length``
    below ``steps`` the path jumps back ``resamples − 1`` times."""
    jumps_left = {j: resamples - 1 for j in range(jump_length, steps, jump_length)}
    i, walk = 0, []
    while i < steps:
        walk.append((i, i + 1))
        i += 1
        if jumps_left.get(i, 0) > 0:
            jumps_left[i] -= 1
            walk.append((i, i - jump_length))
            i -= jump_length
    return walk


def inpaint_nfe(steps: int, jump_length: int, resamples: int) -> int:
    """Network evaluations of an inpainting run: one per denoising step of ``repaint_walk``."""
    return sum(1 for i, j in repaint_walk(steps, jump_length, resamples) if j == i + 1)


def _check_mask(mask, x0: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a tensor shaped like x0 {tuple(x0.shape)} (1 = known, 0 = to fill)")
    try:
        m = torch.broadcast_to(mask.to(x0.dtype), x0.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit x0 of shape {tuple(x0.shape)}") from None
    if not ((m == 0) | (m == 1)).all():
        raise ValueError("mask values must be 0 (to fill) or 1 (known)")
    if (m == 1).all():
        raise ValueError("the mask marks every pixel as known: there is nothing to inpaint (mark the region to fill "
                         "with 0)")
    return m


@torch.inference_mode()
def _repaint(run, model, x0, m, x, walk) -> Iterator[Step]:
    levels = run.levels
    k = 0
    for i, j in walk:
        if j < i:  # back up by the forward process, from level i to the noisier level j
            ratio = levels[j][1] / levels[i][1]
            x = math.sqrt(ratio) * x + math.sqrt(1 - ratio) * run.noise(x)
            continue
        step = next(run.start(model, x, levels[i:i + 2]))  # one ancestral step to level j (ᾱ = 1 past the last)
        a_next = levels[j][1] if j < len(levels) else 1.0
        known = math.sqrt(a_next) * x0 + (math.sqrt(1 - a_next) * run.noise(x0) if a_next < 1 else 0)
        x = m * known + (1 - m) * step.x_t
        k += 1
        yield dataclasses.replace(step, i=k - 1, x_t=x, x0_pred=m * x0 + (1 - m) * step.x0_pred, nfe=k)


def inpaint(model, x0: torch.Tensor, mask: torch.Tensor, *, schedule: str | Schedule, steps: int, seed: int,
            jump_length: int = 10, resamples: int = 10, spacing: str = "leading", variance: str = "fixed_small",
            device=None, label=None, guidance_scale: float = 1.0) -> Iterator[Step]:
    """RePaint: fill the pixels where ``mask`` is 0, keep those where it is 1 (exactly, in the last Step's x_t).
    ``mask`` broadcasts against ``x0`` (N, *data_shape). Yields a Step after each denoising step. ``label`` and
    ``guidance_scale`` steer a class-conditional model as in ``generate``."""
    x0 = _check_images(model, x0)
    m = _check_mask(mask, x0)
    model = guided(model, label, guidance_scale, len(x0))
    _check_int("jump_length", jump_length, 1, max(1, steps))
    _check_int("resamples", resamples, 1, MAX_RESAMPLES)
    run = plan(model, schedule=schedule, sampler="ddpm", steps=steps, seed=seed, spacing=spacing, device=device,
               variance=variance)
    x0, m = x0.to(run.device), m.to(run.device)
    x_T = run.noise(x0)
    return _repaint(run, model, x0, m, x_T, repaint_walk(steps, jump_length, resamples))


@torch.inference_mode()
def inversion(model, x0: torch.Tensor, *, schedule: str | Schedule, steps: int, spacing: str = "leading",
              device=None, label=None) -> Iterator[Step]:
    """DDIM inversion of ``x0`` (N, *data_shape) step by step, from the clean image to x_T, over the levels a
    ``steps``-step DDIM run visits with ``spacing``; each Step's ``x_t`` is the state at its level (``sigma``), so a
    caller can show progress and stop between steps. The last Step's ``x_t`` is x_T. ``label``: a conditional
    model's class (ε̂(x, c); reconstruct with the same label and guidance_scale 1)."""
    x0 = _check_images(model, x0)
    model = guided(model, label, 1.0, len(x0))
    run = plan(model, schedule=schedule, sampler="ddim", steps=steps, seed=0, spacing=spacing, device=device)
    x, a = x0.to(run.device), 1.0
    for i, (t, a_next) in enumerate(reversed(run.levels)):
        where, level = (x, a) if a < 1 else (math.sqrt(a_next) * x, a_next)
        eps = model.eps(where, torch.full((len(x),), level, dtype=torch.float64, device=x.device)).float()
        x0_hat = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        sigma = math.sqrt((1 - a) / a)
        x, a = math.sqrt(a_next) * x0_hat + math.sqrt(1 - a_next) * eps, a_next
        yield Step(i, t, level, sigma, x, x0_hat, eps, None, i + 1, math.sqrt((1 - a_next) / a_next))


def invert(model, x0: torch.Tensor, *, schedule: str | Schedule, steps: int, spacing: str = "leading",
           device=None, label=None) -> torch.Tensor:
    """x_T of ``x0`` by DDIM inversion (``inversion`` run to its end); ``sample(model, sampler="ddim", eta=0,
    x_T=x_T, ...)`` with the same schedule, steps and spacing reconstructs x0."""
    step = None
    for step in inversion(model, x0, schedule=schedule, steps=steps, spacing=spacing, device=device, label=label):
        pass
    return step.x_t


def slerp(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of two tensors of the same shape at each weight in ``weights`` (K,): (K, *a.shape).
    Falls back to the straight line where a and b are (nearly) parallel."""
    a64, b64, w = a.double().flatten(), b.double().flatten(), weights.double().reshape(-1, 1)
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1, 1))
    if theta < 1e-4:
        out = (1 - w) * a64 + w * b64
    else:
        out = (torch.sin((1 - w) * theta) * a64 + torch.sin(w * theta) * b64) / torch.sin(theta)
    return out.reshape(len(weights), *a.shape).to(a.dtype)


def check_deterministic(sampler: str, options: dict | None = None) -> None:
    """ValueError unless ``sampler`` with ``options`` draws no noise after x_T (interpolation needs that)."""
    if not sampler_spec(sampler).deterministic(options):
        raise ValueError(f"interpolation needs a deterministic sampler (ddim with eta 0, ode, dpm-solver++); "
                         f"{sampler} with {options or 'its defaults'} draws noise during the run")


def interpolate(model, *, schedule: str | Schedule, sampler: str, steps: int, k: int = 8,
                seeds: tuple[int, int] | None = (0, 1), x_T: tuple[torch.Tensor, torch.Tensor] | None = None,
                spacing: str | None = None, device=None, label=None, guidance_scale: float = 1.0,
                **options) -> Iterator[Step]:
    """Decode k points slerped between two starting points, as one batch of k: between the x_T of two seeds (each
    the x_T that ``generate(seed=s, n=1)`` starts from) or two given x_T (e.g. from ``invert``). The sampler must
    be deterministic with its options (ddim with eta 0, ode, dpm-solver++), so each image follows from its x_T.
    ``label`` (one class for every frame) and ``guidance_scale`` steer a conditional model as in ``generate``."""
    _check_int("k", k, 2, MAX_INTERPOLATION_FRAMES)
    model = guided(model, label, guidance_scale, k)
    run = plan(model, schedule=schedule, sampler=sampler, steps=steps, seed=0, spacing=spacing, device=device,
               **options)
    check_deterministic(sampler, run.options)
    shape = tuple(model.data_shape)
    if x_T is None:
        if seeds is None or len(seeds) != 2:
            raise ValueError("give two seeds or two x_T")
        ends = []
        for s in seeds:
            _check_int("seed", s, 0, MAX_SEED)
            ends.append(torch.randn((1, *shape), generator=torch.Generator().manual_seed(s))[0])
    else:
        if len(x_T) != 2 or any(not isinstance(e, torch.Tensor) or tuple(e.shape) != shape for e in x_T):
            raise ValueError(f"x_T must be two tensors of shape {shape}")
        ends = [e.float().cpu() for e in x_T]
    start = slerp(ends[0], ends[1], torch.linspace(0, 1, k))
    return run.start(model, start)
