"""2-D score fields and particle trajectories for toy models (data_shape == (2,)).

In the VE scaling the noised data is x̃ = x_0 + σ ε, with density p_σ = p_data ∗ N(0, σ² I). A model gives the
score of p_σ through the ε-link (Song & Ermon 2019; Vincent 2011):

    s_θ(x̃, σ) ≈ ∇_x̃ log p_σ(x̃) = −ε̂(x_t, ᾱ) / σ,   x_t = √ᾱ x̃,   ᾱ = 1 / (1 + σ²).

``score_field`` evaluates that on a regular grid. ``noisy_density`` is the reference p_σ on the same grid, a
Monte-Carlo estimate from toy samples: p_σ(x) ≈ (1/M) Σ_m N(x; x_0^(m), (σ² + h²) I), where h is a small smoothing
bandwidth that keeps the σ → 0 picture readable. ``particles`` moves a cloud of points from x_T ~ N(0, I) with
any sampler via ``engine.generate`` and returns the VP-scaled x_t after each step.

For a model trained on points in the caller's own coordinates (engine.toytrain: y = μ + s x, x the standardised
space it learned), the particles come back as y_t = μ + s x_t. ``state_density`` is the density of that state at
a level ᾱ, from data samples y_0: x_t = √ᾱ x_0 + √(1−ᾱ) ε gives y_t = μ + √ᾱ (y_0 − μ) + s √(1−ᾱ) ε, so
    p(y_t) = (1/M) Σ_m N(y_t; μ + √ᾱ (y_0^(m) − μ), (s² (1−ᾱ) + h²) I)
(μ = 0, s = 1 for a model without the map). ``state_score`` is the model's score of that density,
    ∇ log p(y_t) = −ε̂(x_t, ᾱ) / (s √(1−ᾱ)),   x_t = (y_t − μ)/s:
the arrows the particles follow, in the coordinates they are drawn in.
"""
from __future__ import annotations

import math

import torch

from .data import TOYS, toy_sample
from .generate import generate, model_device
from .models import velocity
from .samplers import Step
from .schedules import alpha_bar_from_flow_time
from .sde import SDES

MIN_SIGMA, MAX_SIGMA = 1e-3, 1e3


def _check_toy_model(model) -> None:
    shape = getattr(model, "data_shape", None)
    if tuple(shape or ()) != (2,):
        raise ValueError(f"the score field needs a 2-D toy model (data_shape (2,)); this model has {shape}")


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not MIN_SIGMA <= sigma <= MAX_SIGMA:
        raise ValueError(f"sigma must be a number from {MIN_SIGMA} to {MAX_SIGMA}; got {sigma!r}")
    return float(sigma)


def grid(lim: float = 3.0, n: int = 21) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates ``xs`` (n,) and the points (n·n, 2) of a square grid on [−lim, lim]², row-major in y then x."""
    if not (isinstance(n, int) and 2 <= n <= 200) or not 0 < lim <= 100:
        raise ValueError(f"grid needs 2 ≤ n ≤ 200 and 0 < lim ≤ 100; got n={n!r}, lim={lim!r}")
    xs = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    return xs, torch.stack([xx.flatten(), yy.flatten()], dim=1)


@torch.inference_mode()
def score_field(model, sigma: float, lim: float = 3.0, n: int = 21) -> dict:
    """The model's VE score s(x̃, σ) = −ε̂(√ᾱ x̃, ᾱ)/σ, ᾱ = 1/(1+σ²), on an n×n grid over [−lim, lim]².

    Returns ``{"xs": (n,), "points": (n·n, 2), "score": (n·n, 2), "sigma": σ, "alpha_bar": ᾱ}``; row k of
    ``points`` / ``score`` is grid cell (k // n, k % n) = (y index, x index).
    """
    _check_toy_model(model)
    sigma = _check_sigma(sigma)
    xs, pts = grid(lim, n)
    a = 1.0 / (1.0 + sigma**2)
    alpha = torch.full((pts.shape[0],), a, dtype=torch.float64)
    device = model_device(model)
    eps = model.eps((pts * math.sqrt(a)).to(device), alpha.to(device)).float().cpu()
    return {"xs": xs, "points": pts, "score": SDES["ve"].score(eps, a), "sigma": sigma, "alpha_bar": a}


@torch.inference_mode()
def velocity_field(model, t: float, lim: float = 3.0, n: int = 21) -> dict:
    """The model's flow velocity v̂(x, t) = ε̂ − x̂0 (``models.velocity``: a flow model's own output, any other model's
    through the links) on an n×n grid over [−lim, lim]² of the path x_t = (1 − t) x_0 + t ε, t in (0, 1). Sampling
    moves a point by −v̂ dt as t falls to 0, so −v̂ is where it goes. Returns ``{"xs", "points", "velocity", "t",
    "alpha_bar"}`` laid out as ``score_field``'s."""
    _check_toy_model(model)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1:
        raise ValueError(f"t must be a number in (0, 1); got {t!r}")
    xs, pts = grid(lim, n)
    device = model_device(model)
    times = torch.full((pts.shape[0],), float(t), dtype=torch.float64, device=device)
    v = velocity(model, pts.to(device), times).float().cpu()
    return {"xs": xs, "points": pts, "velocity": v, "t": float(t),
            "alpha_bar": float(alpha_bar_from_flow_time(torch.tensor(float(t), dtype=torch.float64)))}


def noisy_density(toy: str, sigma: float, lim: float = 3.0, n: int = 80, m: int = 2000, seed: int = 0,
                  bandwidth: float = 0.05) -> dict:
    """p_σ(x) ≈ (1/M) Σ_m N(x; x_0^(m), (σ² + h²) I) on an n×n grid, from M toy samples drawn with ``seed``.

    Returns ``{"xs": (n,), "density": (n, n)}`` with density[i, j] at (x = xs[j], y = xs[i]).
    """
    if toy not in TOYS:
        raise ValueError(f"unknown toy {toy!r}; allowed: {', '.join(TOYS)}")
    sigma = _check_sigma(sigma)
    x0 = toy_sample(toy, m, torch.Generator().manual_seed(seed)).double()
    xs, pts = grid(lim, n)
    var = sigma**2 + bandwidth**2
    d2 = torch.cdist(pts.double(), x0).pow(2)
    dens = torch.exp(-d2 / (2 * var)).mean(dim=1) / (2 * math.pi * var)
    return {"xs": xs, "density": dens.reshape(n, n).float()}


def particles(model, *, schedule: str, sampler: str, steps: int, seed: int, n: int = 500, spacing: str | None = None,
              **options) -> list[Step]:
    """Move ``n`` particles from x_T ~ N(0, I) with ``sampler``; returns every Step (``step.x_t`` is (n, 2))."""
    _check_toy_model(model)
    return list(generate(model, schedule=schedule, sampler=sampler, steps=steps, seed=seed, n=n, spacing=spacing,
                         **options))


def toy_of(model) -> str | None:
    """The toy dataset a model was trained on, from its card (None if unknown)."""
    name = (getattr(model, "card", {}) or {}).get("data", {}).get("dataset")
    return name if name in TOYS else None


def _frame(model) -> tuple[torch.Tensor, float]:
    """(μ, s) of the model's map to its data's coordinates, y = μ + s x (0 and 1 when it has none)."""
    std = (getattr(model, "card", {}) or {}).get("data", {}).get("standardised")
    if std is None:
        return torch.zeros(2, dtype=torch.float64), 1.0
    return torch.as_tensor(std["mean"], dtype=torch.float64), float(std["scale"])


def _check_alpha_bar(alpha_bar: float) -> float:
    if isinstance(alpha_bar, bool) or not isinstance(alpha_bar, (int, float)) or not 0 < alpha_bar <= 1:
        raise ValueError(f"alpha_bar must be a number in (0, 1]; got {alpha_bar!r}")
    return float(alpha_bar)


def state_density(model, y0, alpha_bar: float, xs, ys, bandwidth: float = 0.0) -> torch.Tensor:
    """p(y_t) at level ``alpha_bar`` on the grid (x = xs[j], y = ys[i]) as (len(ys), len(xs)), from data samples
    ``y0`` (M, 2) in the model's data coordinates: the mixture of the module docstring, its variance widened by
    ``bandwidth``² so that the ᾱ → 1 picture stays readable."""
    _check_toy_model(model)
    a = _check_alpha_bar(alpha_bar)
    mean, scale = _frame(model)
    y0 = torch.as_tensor(y0, dtype=torch.float64)
    centres = mean + math.sqrt(a) * (y0 - mean)
    var = scale**2 * (1 - a) + bandwidth**2
    if not var > 0:
        raise ValueError("at alpha_bar = 1 the density needs a bandwidth > 0")
    xs, ys = torch.as_tensor(xs, dtype=torch.float64), torch.as_tensor(ys, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    dens = torch.exp(-torch.cdist(pts, centres).pow(2) / (2 * var)).mean(dim=1) / (2 * math.pi * var)
    return dens.reshape(len(ys), len(xs)).float()


@torch.inference_mode()
def state_score(model, y, alpha_bar: float) -> torch.Tensor:
    """The model's score ∇ log p(y_t) = −ε̂((y − μ)/s, ᾱ) / (s √(1−ᾱ)) at the states ``y`` (n, 2), in the model's
    data coordinates; ᾱ = ``alpha_bar`` in (0, 1)."""
    _check_toy_model(model)
    a = _check_alpha_bar(alpha_bar)
    if a == 1:
        raise ValueError("the score needs a noise level: alpha_bar < 1")
    mean, scale = _frame(model)
    x = ((torch.as_tensor(y, dtype=torch.float64) - mean) / scale).float()
    device = model_device(model)
    alpha = torch.full((len(x),), a, dtype=torch.float64)
    eps = model.eps(x.to(device), alpha.to(device)).float().cpu()
    return -eps / (scale * math.sqrt(1 - a))
