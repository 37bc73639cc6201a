"""Likelihood: log p(x) of data under a model, by the DDPM variational bound or the probability-flow ODE.

**vlb** (Ho et al. 2020, eq. 5) over the chain of levels a sampler would visit (``levels_for``; all T by default):
    −log p(x_0) ≤ L_T + Σ_i L_i + L_0,
    L_T = KL(q(x_T | x_0) ‖ N(0, I)) = ½ Σ_d [ᾱ_T x_0² + (1 − ᾱ_T) − 1 − log(1 − ᾱ_T)],
    L_i = KL(q(x_s | x_t, x_0) ‖ p_θ(x_s | x_t)) for consecutive levels t > s, with x_t ~ q(x_t | x_0) drawn once:
          both Gaussians have variance β̃ = (1 − ᾱ_s)/(1 − ᾱ_t) · β, β = 1 − ᾱ_t/ᾱ_s ("fixed_small"), and means that
          differ only through x̂0, so L_i = ᾱ_s β² / (2 β̃ (1 − ᾱ_t)²) ‖x_0 − x̂0(x_t)‖²,
    L_0 = −log p_θ(x_0 | x_1) with mean x̂0(x_1) and variance 1 − ᾱ_1 (the step to ᾱ = 1, where β̃ = 0): a Gaussian
          density for continuous data, or the probability of x_0's bin for ``bins``-level data (Ho et al.'s
          discretised decoder: the Gaussian's mass over [x − Δ/2, x + Δ/2], Δ = 2/(bins − 1), open at −1 and 1).
Every term comes back per sample, so the bound can be drawn term by term over t.

**ode** (Song et al. 2021, Appendix D.2; Chen et al. 2018): in the VE scaling x̃ = x_0 + σ ε the probability-flow
ODE is dx̃/dσ = ε̂(x̃ / √(1+σ²), ᾱ = 1/(1+σ²)) (as the ``ode`` sampler), and along it
    log p_{σ_0}(x̃(σ_0)) = log p_{σ_T}(x̃(σ_T)) + ∫_{σ_0}^{σ_T} ∇·ε̂ dσ,
with the prior p_{σ_T} = N(0, (1 + σ_T²) I) (the VP prior x_T ~ N(0, I)) and σ_0, σ_T the schedule's smallest and
largest noise levels, so log p is that of the data blurred by N(0, σ_0² I). It is integrated in u = log σ by
scipy's adaptive RK45 (``solve_ivp``, as score_sde's likelihood.py); the divergence is exact (one backward pass
per dimension) up to ``EXACT_DIVERGENCE_MAX_DIM`` dimensions, and otherwise Hutchinson's estimate
E_z[zᵀ (∂ε̂/∂x̃) z] with one Rademacher z per sample held fixed along the path (FFJORD).

``bits_per_dim`` applies either to 8-bit images in [−1, 1] (pixels on the grid 2p/255 − 1): the ODE's density is
for uniformly dequantised pixels y = x + Δ (u − ½), and −log P(x) ≤ E_u[−log p(y)] − D log Δ; the VLB uses the
discretised decoder. Bits/dim = NLL / (D ln 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.integrate import solve_ivp

from .generate import levels_for, model_device
from .models import check_model
from .schedules import Schedule, get_schedule

METHODS = ("vlb", "ode")
EXACT_DIVERGENCE_MAX_DIM = 16  # above this, Hutchinson's estimator: D backward passes per evaluation cost too much
PIXEL_LEVELS = 256
IMAGE_ODE_TOLERANCE = 1e-3  # rtol = atol for images on a CPU, as the app and the results page use (score_sde's
# likelihood uses 1e-5 on a GPU)


@dataclass
class Likelihood:
    """Per-sample log p(x) in nats (``log_p``, shape (N,)), the network evaluations it took (``nfe``) and, for the
    VLB, its terms in nats per sample: ``terms["prior"]`` L_T (N,), ``terms["diffusion"]`` L_i (steps − 1, N) in
    the order of ``terms["t"]`` (the level t of each term, descending), ``terms["decoder"]`` L_0 (N,)."""

    log_p: torch.Tensor
    nfe: int
    method: str
    terms: dict = field(default_factory=dict)


def _as_schedule(schedule) -> Schedule:
    return schedule if isinstance(schedule, Schedule) else get_schedule(schedule)


def _check_data(model, x) -> torch.Tensor:
    check_model(model)
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(model.data_shape) or x.shape[0] < 1:
        shape = getattr(x, "shape", None)
        raise ValueError(f"x must be a tensor of shape (N, {', '.join(map(str, model.data_shape))}); got {shape}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite")
    return x.double()


def _eps(model, x_t: torch.Tensor, a: float | torch.Tensor) -> torch.Tensor:
    """ε̂ at VP state x_t and level ᾱ (a float or an (N,) tensor), in float64."""
    device = model_device(model)
    a = torch.as_tensor(a, dtype=torch.float64).expand(x_t.shape[0]).to(device)
    dtype = torch.float64 if not isinstance(model, torch.nn.Module) else torch.float32
    return model.eps(x_t.to(device, dtype), a).to("cpu", torch.float64)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def _decoder_nll(x0: torch.Tensor, mean: torch.Tensor, var: float, bins: int | None) -> torch.Tensor:
    """−log p_θ(x_0 | x_1) per sample: a Gaussian density, or the mass of each value's bin for ``bins``-level data."""
    dims = tuple(range(1, x0.dim()))
    if bins is None:
        return 0.5 * (((x0 - mean) ** 2) / var + math.log(2 * math.pi * var)).sum(dims)
    half, sd = 1.0 / (bins - 1), math.sqrt(var)
    upper = torch.where(x0 > 1 - 1e-6, torch.ones_like(x0), _normal_cdf((x0 + half - mean) / sd))
    lower = torch.where(x0 < -1 + 1e-6, torch.zeros_like(x0), _normal_cdf((x0 - half - mean) / sd))
    return -torch.log((upper - lower).clamp_min(1e-12)).sum(dims)


@torch.no_grad()
def _vlb(model, x0: torch.Tensor, sched: Schedule, steps: int, spacing: str, gen: torch.Generator,
         bins: int | None) -> Likelihood:
    chain = levels_for(sched, steps, spacing)  # descending noise: ᾱ_T first, ᾱ_1 last
    levels = [a for _, a in chain]
    dims = tuple(range(1, x0.dim()))
    a_T = levels[0]
    prior = 0.5 * (a_T * x0**2 + (1 - a_T) - 1 - math.log(1 - a_T)).sum(dims)
    diffusion = []
    for a_t, a_s in zip(levels[:-1], levels[1:]):
        x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        x0_hat = (x_t - math.sqrt(1 - a_t) * _eps(model, x_t, a_t)) / math.sqrt(a_t)
        beta = 1 - a_t / a_s
        beta_tilde = (1 - a_s) / (1 - a_t) * beta
        coef = a_s * beta**2 / (2 * beta_tilde * (1 - a_t) ** 2)
        diffusion.append(coef * ((x0 - x0_hat) ** 2).sum(dims))
    a_1 = levels[-1]
    x_1 = math.sqrt(a_1) * x0 + math.sqrt(1 - a_1) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    x0_hat = (x_1 - math.sqrt(1 - a_1) * _eps(model, x_1, a_1)) / math.sqrt(a_1)
    decoder = _decoder_nll(x0, x0_hat, 1 - a_1, bins)
    diffusion_t = torch.stack(diffusion) if diffusion else x0.new_zeros((0, x0.shape[0]))
    total = prior + diffusion_t.sum(0) + decoder
    ts = [t for t, _ in chain][:-1]
    return Likelihood(-total, len(levels), "vlb",
                      {"prior": prior, "diffusion": diffusion_t, "decoder": decoder, "t": ts})


def _ode(model, x0: torch.Tensor, sched: Schedule, gen: torch.Generator, rtol: float, atol: float,
         exact: bool) -> Likelihood:
    n, shape = x0.shape[0], x0.shape
    dim = int(np.prod(shape[1:]))
    sigmas = sched.sigmas
    sigma_0, sigma_T = float(sigmas.min()), float(sigmas.max())
    z = (torch.randint(0, 2, shape, generator=gen, dtype=torch.float64) * 2 - 1) if not exact else None
    nfe = 0

    def drift_and_divergence(u: float, state: np.ndarray) -> np.ndarray:
        """d/du of (x̃, ∫ ∇·f): x̃' = σ ε̂ and the divergence of that drift, u = log σ."""
        nonlocal nfe
        nfe += 1
        sigma = math.exp(u)
        a = 1.0 / (1.0 + sigma * sigma)
        with torch.enable_grad():
            x = torch.from_numpy(state[: n * dim]).reshape(shape).clone().requires_grad_(True)
            drift = sigma * _eps(model, x * math.sqrt(a), a)
            if exact:
                flat = drift.reshape(n, dim)
                div = sum(torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < dim - 1)[0].reshape(n, dim)[:, i]
                          for i in range(dim))
            else:
                (grad,) = torch.autograd.grad((drift * z).sum(), x)
                div = (grad * z).reshape(n, dim).sum(1)
        return np.concatenate([drift.detach().reshape(-1).numpy(), div.detach().numpy()])

    start = np.concatenate([x0.reshape(-1).numpy(), np.zeros(n)])
    sol = solve_ivp(drift_and_divergence, (math.log(sigma_0), math.log(sigma_T)), start, method="RK45",
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"the probability-flow ODE solver failed: {sol.message}")
    end = torch.from_numpy(sol.y[:, -1])
    x_T, integral = end[: n * dim].reshape(n, dim), end[n * dim:]
    var_T = 1.0 + sigma_T * sigma_T
    prior = -0.5 * (x_T**2).sum(1) / var_T - 0.5 * dim * math.log(2 * math.pi * var_T)
    return Likelihood(prior + integral, nfe, "ode")


def log_likelihood(model, x: torch.Tensor, *, schedule: str | Schedule = "linear", method: str = "vlb",
                   steps: int | None = None, spacing: str = "leading", seed: int = 0, bins: int | None = None,
                   exact_divergence: bool | None = None, rtol: float = 1e-5, atol: float = 1e-5) -> Likelihood:
    """log p(x) per sample, in nats, by the variational bound (``method="vlb"``, a lower bound) or the
    probability-flow ODE (``"ode"``). ``steps`` (vlb): the chain's length, all T levels by default; ``bins``:
    the number of values each coordinate of discrete data takes (256 for 8-bit images), None for continuous data;
    ``exact_divergence`` (ode): default exact up to ``EXACT_DIVERGENCE_MAX_DIM`` dimensions. Every random draw
    (the VLB's x_t, Hutchinson's z) comes from ``seed``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    x0 = _check_data(model, x)
    sched = _as_schedule(schedule)
    steps = sched.T if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= sched.T:
        raise ValueError(f"steps must be an integer from 1 to {sched.T}; got {steps!r}")
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 2):
        raise ValueError(f"bins must be None (continuous data) or an integer ≥ 2; got {bins!r}")
    gen = torch.Generator().manual_seed(seed)
    if method == "vlb":
        return _vlb(model, x0, sched, steps, spacing, gen, bins)
    dim = int(np.prod(model.data_shape))
    exact = dim <= EXACT_DIVERGENCE_MAX_DIM if exact_divergence is None else bool(exact_divergence)
    return _ode(model, x0, sched, gen, rtol, atol, exact)


def bits_per_dim(model, images: torch.Tensor, *, schedule: str | Schedule = "linear", method: str = "vlb",
                 seed: int = 0, **options) -> torch.Tensor:
    """Bits per dimension of 8-bit images in [−1, 1] (per image): NLL / (D ln 2), the convention of the published
    CIFAR-10 figures. vlb: the bound with the discretised decoder; ode: uniform dequantisation, a draw per pixel
    from ``seed``, and −log P(x) ≤ −log p(y) − D log Δ with Δ = 2/255."""
    x0 = _check_data(model, images)
    if (x0 < -1 - 1e-6).any() or (x0 > 1 + 1e-6).any():
        raise ValueError("images must lie in [-1, 1] (pixels p mapped to 2 p / 255 − 1)")
    dim = int(np.prod(model.data_shape))
    if method == "vlb":
        nll = -log_likelihood(model, x0, schedule=schedule, method="vlb", seed=seed, bins=PIXEL_LEVELS,
                              **options).log_p
    else:
        delta = 2.0 / (PIXEL_LEVELS - 1)
        gen = torch.Generator().manual_seed(seed)
        y = x0 + delta * (torch.rand(x0.shape, generator=gen, dtype=torch.float64) - 0.5)
        log_p = log_likelihood(model, y, schedule=schedule, method=method, seed=seed + 1, **options).log_p
        nll = -log_p - dim * math.log(delta)
    return nll / (dim * math.log(2))
