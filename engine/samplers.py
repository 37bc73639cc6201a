"""Samplers: each a short generator over a model, a starting x_T, a noise-level sequence and a noise source.

Every sampler has the signature ``sampler(net, x, levels, noise, **options)`` and yields a ``Step`` after each
step; the last Step's ``x_t`` is the sample. ``levels`` is the descending list of (t, ᾱ_t) pairs to visit; the
sampler ends at the clean level ᾱ = 1, where it applies the method's final denoise. ``net(x, ᾱ)`` returns ε̂ and
counts network evaluations; ``noise(x)`` draws N(0, I) shaped like x from the run's seeded generator.

States are VP-scaled (x_t = √ᾱ x_0 + √(1−ᾱ) ε) unless a sampler says otherwise; Step.x_t is always VP-scaled, so
snapshots from every sampler are comparable. Conventions (names and options) follow diffusers where it has the
same method; the structure follows k-diffusion's sampling.py (one function per method) and score_sde's
sampling.py (predictor / corrector written against an SDE object, see sde.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import inspect
from typing import Callable, Iterator

import torch

from .sde import SDES


@dataclass
class Step:
    """One sampling step.

    ``t``, ``alpha_bar`` and ``sigma`` give the level the step started from, where the network was evaluated and
    where ``x0_pred`` / ``eps_pred`` belong; ``x_t`` is the VP-scaled state after the step, at noise level
    ``sigma_next`` (0 for the final sample). ``noise`` is the Gaussian noise drawn in this step (stacked on a new
    first dimension when a step draws more than once), or None. ``nfe`` counts network evaluations so far.
    """

    i: int
    t: int
    alpha_bar: float
    sigma: float
    x_t: torch.Tensor
    x0_pred: torch.Tensor
    eps_pred: torch.Tensor
    noise: torch.Tensor | None
    nfe: int
    sigma_next: float = 0.0


Levels = list[tuple[int, float]]
Net = Callable[[torch.Tensor, float], torch.Tensor]
Noise = Callable[[torch.Tensor], torch.Tensor]


def _sigma(a: float) -> float:
    return math.sqrt((1 - a) / a)


def _pairs(levels: Levels):
    """(i, t, ᾱ, ᾱ_next) over the levels, the last step going to the clean level ᾱ_next = 1."""
    for i, (t, a) in enumerate(levels):
        a_next = levels[i + 1][1] if i + 1 < len(levels) else 1.0
        yield i, t, a, a_next


def _x0(x: torch.Tensor, eps: torch.Tensor, a: float) -> torch.Tensor:
    """x̂0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ."""
    return (x - math.sqrt(1 - a) * eps) / math.sqrt(a)


def ddpm(net: Net, x, levels: Levels, noise: Noise, *, variance: str = "fixed_small") -> Iterator[Step]:
    """Ancestral sampling (Ho et al. 2020). With β = 1 − ᾱ/ᾱ' for the step from ᾱ to ᾱ':

        x' = (x − β/√(1−ᾱ) ε̂) / √(1−β) + σ z,
        σ² = β̃ = β (1−ᾱ')/(1−ᾱ)  ("fixed_small", the posterior variance)  or  σ² = β  ("fixed_large").
    The last step (to ᾱ' = 1) adds no noise: its mean is x̂0.
    """
    for i, t, a, a_next in _pairs(levels):
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        beta = 1 - a / a_next
        x = (x - beta / math.sqrt(1 - a) * eps) / math.sqrt(1 - beta)
        z = None
        if a_next < 1:
            var = beta * (1 - a_next) / (1 - a) if variance == "fixed_small" else beta
            z = noise(x)
            x = x + math.sqrt(var) * z
        yield Step(i, t, a, _sigma(a), x, x0, eps, z, net.nfe, _sigma(a_next))


def ddim(net: Net, x, levels: Levels, noise: Noise, *, eta: float = 0.0) -> Iterator[Step]:
    """DDIM (Song, Meng & Ermon 2020):

        x' = √ᾱ' x̂0 + √(1 − ᾱ' − σ²) ε̂ + σ z,   σ = η √((1−ᾱ')/(1−ᾱ)) √(1 − ᾱ/ᾱ').
    η = 0 is deterministic; η = 1 has DDPM's posterior variance.
    """
    for i, t, a, a_next in _pairs(levels):
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        s = eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
        x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - s * s, 0.0)) * eps
        z = None
        if s > 0:
            z = noise(x)
            x = x + s * z
        yield Step(i, t, a, _sigma(a), x, x0, eps, z, net.nfe, _sigma(a_next))


def langevin(net: Net, x, levels: Levels, noise: Noise, *, n_steps_each: int = 5, step_size: float = 0.5) -> Iterator[Step]:
    """Annealed Langevin dynamics (Song & Ermon 2019), in the VE scaling x̃ = x_t/√ᾱ.

    At each level σ_i (largest first), ``n_steps_each`` updates with α_i = step_size · σ_i²:
        x̃ ← x̃ + (α_i / 2) s(x̃, σ_i) + √α_i z,    s = −ε̂/σ_i.
    NCSN writes α_i = ε σ_i²/σ_L² with σ_L the smallest level; our ``step_size`` is ε/σ_L², so one value works for
    every schedule (NCSN's ε = 2e−5 at σ_L = 0.01 is step_size = 0.2). The last level ends with the denoising
    step x̃ ← x̃ + σ_L² s (Tweedie). After a level, Step.x_t is the state at that level's σ.
    """
    xt = x / math.sqrt(levels[0][1])
    for i, t, a, a_next in _pairs(levels):
        sigma = _sigma(a)
        alpha = step_size * sigma**2
        draws = []
        for _ in range(n_steps_each):
            x_in = xt * math.sqrt(a)
            eps = net(x_in, a)
            x0 = _x0(x_in, eps, a)
            z = noise(xt)
            xt = xt - (alpha / 2) * eps / sigma + math.sqrt(alpha) * z
            draws.append(z)
        if a_next == 1:  # final denoise: x̃ + σ² s(x̃, σ) = x̂0 at the last level
            x_in = xt * math.sqrt(a)
            eps = net(x_in, a)
            xt = x0 = _x0(x_in, eps, a)
            sigma_state = 0.0
        else:  # the state is a sample at level σ_i; it starts the next level as it is
            sigma_state = sigma
        yield Step(i, t, a, sigma, xt / math.sqrt(1 + sigma_state**2), x0, eps, torch.stack(draws), net.nfe, sigma_state)


def euler_maruyama(net: Net, x, levels: Levels, noise: Noise, *, sde: str = "vp") -> Iterator[Step]:
    """Euler–Maruyama on the reverse-time SDE dx = [f − g² ∇log p] dτ + g dw̄ (Song et al. 2021):

        x' = x − f dτ + g² dτ · s(x) + √(g² dτ) z,
    with f dτ, g² dτ integrated over each interval of the schedule (sde.py). The last step is the final denoise
    x̂0 (Tweedie), as score_sde's ``noise_removal``.
    """
    S = SDES[sde]
    for i, t, a, a_next in _pairs(levels):
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        z = None
        if a_next < 1:
            state = S.to_state(x, a)
            f, g2 = S.increments(state, a, a_next)
            z = noise(x)
            state = state - f + g2 * S.score(eps, a) + math.sqrt(g2) * z
            x = S.from_state(state, a_next)
        else:
            x = x0
        yield Step(i, t, a, _sigma(a), x, x0, eps, z, net.nfe, _sigma(a_next))


def pc(net: Net, x, levels: Levels, noise: Noise, *, snr: float = 0.16, n_corrector: int = 1, sde: str = "vp") -> Iterator[Step]:
    """Predictor–corrector (Song et al. 2021): at each level, ``n_corrector`` Langevin corrector updates

        x ← x + δ s(x) + √(2δ) z,   δ = 2 α (snr ‖z‖ / ‖s‖)²   (α = 1 − β for VP, 1 for VE),
    then the reverse-diffusion predictor x' = x − f + G² s(x) + G z with (f, G) = ``sde.discretize``.
    As in score_sde, the norms are averaged over the batch (a per-sample ‖s‖ near a mode makes δ explode in low
    dimensions), so the step size depends on the whole batch. The last level ends with the final denoise x̂0.
    """
    S = SDES[sde]
    for i, t, a, a_next in _pairs(levels):
        state = S.to_state(x, a)
        draws = []
        for _ in range(n_corrector):
            score = S.score(net(S.from_state(state, a), a), a)
            z = noise(x)
            ratio = snr * z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            delta = float(2 * S.corrector_alpha(a, a_next) * ratio**2)
            state = state + delta * score + math.sqrt(2 * delta) * z
            draws.append(z)
        x = S.from_state(state, a)
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        if a_next < 1:
            f, G = S.discretize(state, a, a_next)
            z = noise(x)
            state = state - f + G * G * S.score(eps, a) + G * z
            draws.append(z)
            x = S.from_state(state, a_next)
        else:
            x = x0
        yield Step(i, t, a, _sigma(a), x, x0, eps, torch.stack(draws) if draws else None, net.nfe, _sigma(a_next))


def ode(net: Net, x, levels: Levels, noise: Noise) -> Iterator[Step]:
    """Probability-flow ODE with Heun's method (Karras et al. 2022, Alg. 1), in the VE scaling:

        dx̃/dσ = ε̂(x̃, σ)   (= −σ ∇log p_σ(x̃); the same flow as the VP probability-flow ODE, rescaled),
        x̃' = x̃ + (σ' − σ) d,  then, if σ' > 0,  x̃' = x̃ + (σ' − σ)(d + d')/2  with d' = ε̂(x̃', σ').
    The last step to σ' = 0 is an Euler step, which lands on x̂0. Deterministic: uses no noise.
    """
    xt = x / math.sqrt(levels[0][1])
    for i, t, a, a_next in _pairs(levels):
        s, s_next = _sigma(a), _sigma(a_next)
        eps = net(xt * math.sqrt(a), a)
        x0 = xt - s * eps
        x_euler = xt + (s_next - s) * eps
        if s_next > 0:
            eps_next = net(x_euler * math.sqrt(a_next), a_next)
            xt = xt + (s_next - s) * 0.5 * (eps + eps_next)
        else:
            xt = x_euler
        yield Step(i, t, a, s, xt * math.sqrt(a_next), x0, eps, None, net.nfe, s_next)


def dpm_solver_pp(net: Net, x, levels: Levels, noise: Noise) -> Iterator[Step]:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep in λ = log(α/σ), α = √ᾱ, σ = √(1−ᾱ), on the data prediction D = x̂0:

        x' = (σ'/σ) x − α' (e^{−h} − 1) D̃,   h = λ' − λ,
        D̃ = D_i (first step, and the last step to ᾱ' = 1, as diffusers' ``lower_order_final``)
        D̃ = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1},  r = h_{i−1}/h_i   (second order).
    Deterministic: uses no noise. Prefer ``trailing`` or ``linspace`` spacing: ``leading`` ends on t = 0, and the
    second-order step into it extrapolates x̂0 over a large jump in λ. With the same timesteps the samples equal
    diffusers' ``DPMSolverMultistepScheduler`` (``final_sigmas_type="zero"``).
    """
    prev = None  # (D_{i-1}, h_{i-1})
    for i, t, a, a_next in _pairs(levels):
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        if a_next < 1:
            lam = 0.5 * math.log(a / (1 - a))
            lam_next = 0.5 * math.log(a_next / (1 - a_next))
            h = lam_next - lam
            d = x0
            if prev is not None:
                r = prev[1] / h
                d = (1 + 0.5 / r) * x0 - (0.5 / r) * prev[0]
            x = math.sqrt((1 - a_next) / (1 - a)) * x + math.sqrt(a_next) * (-math.expm1(-h)) * d
            prev = (x0, h)
        else:
            x = x0
        yield Step(i, t, a, _sigma(a), x, x0, eps, None, net.nfe, _sigma(a_next))


def flow_coords(a: float) -> tuple[float, float]:
    """(t, k) of VP level ᾱ on the flow path x_t = (1 − t) x_0 + t ε: t = √(1−ᾱ)/(√ᾱ + √(1−ᾱ)) and the scale
    k = √ᾱ + √(1−ᾱ) with x_vp = k x_flow (``schedules.flow_time``)."""
    k = math.sqrt(a) + math.sqrt(1 - a)
    return math.sqrt(1 - a) / k, k


def euler(net: Net, x, levels: Levels, noise: Noise) -> Iterator[Step]:
    """Euler on the flow ODE dx/dt = v (rectified flow, Liu et al. 2023), spaced in the path's t:

        v̂ = ε̂ − x̂0,   x_{t'} = x_t + (t' − t) v̂,   x_t = (1 − t) x̂0 + t ε̂   (the path's own coordinates).
    A straight path (v constant along it) is followed exactly in one step. Algebraically this is DDIM (η = 0) on
    any schedule: both land on (1 − t') x̂0 + t' ε̂. The last step (t' = 0) lands on x̂0. Deterministic."""
    for i, t_idx, a, a_next in _pairs(levels):
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        (t, k), (t_next, k_next) = flow_coords(a), flow_coords(a_next)
        x = (x / k + (t_next - t) * (eps - x0)) * k_next
        yield Step(i, t_idx, a, _sigma(a), x, x0, eps, None, net.nfe, _sigma(a_next))


def heun(net: Net, x, levels: Levels, noise: Noise) -> Iterator[Step]:
    """Heun's method on the flow ODE dx/dt = v, spaced in t (the trapezoid rule of Karras et al. 2022, Alg. 1, in
    the flow's coordinates rather than the VE σ of ``ode``):

        x_E = x_t + (t' − t) v̂(x_t, t),   x_{t'} = x_t + (t' − t) (v̂(x_t, t) + v̂(x_E, t'))/2   if t' > 0,
    and the Euler step x_E to t' = 0, which lands on x̂0. Deterministic."""
    for i, t_idx, a, a_next in _pairs(levels):
        eps = net(x, a)
        x0 = _x0(x, eps, a)
        (t, k), (t_next, k_next) = flow_coords(a), flow_coords(a_next)
        v = eps - x0
        xf = x / k + (t_next - t) * v
        if t_next > 0:
            eps_next = net(xf * k_next, a_next)
            v_next = eps_next - _x0(xf * k_next, eps_next, a_next)
            xf = x / k + (t_next - t) * 0.5 * (v + v_next)
        x = xf * k_next
        yield Step(i, t_idx, a, _sigma(a), x, x0, eps, None, net.nfe, _sigma(a_next))


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric option: lo ≤ v ≤ hi (lo < v when lo_open), an integer when ``integer``."""

    lo: float
    hi: float
    lo_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        if self.integer:
            return f"an integer from {self.lo} to {self.hi}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"

    def check(self, name: str, v) -> float | int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.integer and not isinstance(v, int)):
            raise ValueError(f"{name} must be {self.describe()}; got {v!r}")
        if not (math.isfinite(v) and (self.lo < v if self.lo_open else self.lo <= v) and v <= self.hi):
            raise ValueError(f"{name} must be {self.describe()}; got {v!r}")
        return v if self.integer else float(v)


# What each sampler option accepts (a Range, or a tuple of choices); generate() checks them before a run.
OPTION_VALUES = {
    "variance": ("fixed_small", "fixed_large"),
    "eta": Range(0.0, 1.0),
    "n_steps_each": Range(1, 100, integer=True),
    "step_size": Range(0.0, 1.0, lo_open=True),
    "snr": Range(0.0, 1.0, lo_open=True),
    "n_corrector": Range(0, 20, integer=True),
    "sde": tuple(SDES),
}


def check_option(name: str, value):
    """The option's value if allowed, else ValueError saying what is allowed."""
    allowed = OPTION_VALUES[name]
    if isinstance(allowed, Range):
        return allowed.check(name, value)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


@dataclass(frozen=True)
class SamplerSpec:
    """Everything the engine, the report and the app know about one sampler, in one record.

    ``fn`` is the sampler function; its keyword-only parameters and their defaults are the sampler's options (the
    allowed values of each are in ``OPTION_VALUES``). ``spacing`` is the timestep spacing ``generate`` uses when
    the caller gives none: the one that suits the method. ``evals_per_step(options)`` is the number of network
    evaluations one step makes and ``evals_extra`` those made once per run, so ``nfe`` is exact.
    ``draws_noise(options)``: whether a run draws noise after x_T (if not, x_T alone decides the sample).
    """

    name: str
    fn: Callable[..., Iterator[Step]]
    spacing: str = "leading"
    evals_per_step: Callable[[dict], int] = lambda opts: 1
    evals_extra: int = 0
    draws_noise: Callable[[dict], bool] = lambda opts: True

    @property
    def options(self) -> dict:
        """The options the sampler takes, with their defaults: ``{"eta": 0.0}`` for ddim."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def nfe(self, steps: int, options: dict | None = None) -> int:
        """Network evaluations of a ``steps``-step run with ``options`` (missing ones at their defaults)."""
        opts = {**self.options, **(options or {})}
        return steps * self.evals_per_step(opts) + self.evals_extra

    def deterministic(self, options: dict | None = None) -> bool:
        """Whether x_T alone decides the sample with these ``options`` (missing ones at their defaults)."""
        return not self.draws_noise({**self.options, **(options or {})})


SAMPLERS = {spec.name: spec for spec in (
    SamplerSpec("ddpm", ddpm),
    SamplerSpec("ddim", ddim, draws_noise=lambda o: o["eta"] > 0),
    # n_steps_each updates per level, then one final denoise at the last level
    SamplerSpec("langevin", langevin, evals_per_step=lambda o: int(o["n_steps_each"]), evals_extra=1),
    SamplerSpec("euler-maruyama", euler_maruyama),
    SamplerSpec("pc", pc, evals_per_step=lambda o: int(o["n_corrector"]) + 1),
    # Heun: two evaluations a step, except the last (an Euler step to σ' = 0)
    SamplerSpec("ode", ode, evals_per_step=lambda o: 2, evals_extra=-1, draws_noise=lambda o: False),
    # trailing: see dpm_solver_pp's docstring
    SamplerSpec("dpm-solver++", dpm_solver_pp, spacing="trailing", draws_noise=lambda o: False),
    # flow ODE samplers in t; trailing: their steps start at the top level, t ≈ 1 (pure noise)
    SamplerSpec("euler", euler, spacing="trailing", draws_noise=lambda o: False),
    SamplerSpec("heun", heun, spacing="trailing", evals_per_step=lambda o: 2, evals_extra=-1,
                draws_noise=lambda o: False),
)}
