"""Noise schedules: the discrete sequence ᾱ_t (equivalently β_t, σ_t or log-SNR λ_t), t = 0 … T−1.

Forward process (VP):   q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),   ᾱ_t = Π_{s ≤ t} (1 − β_s).
Equivalent VE view:     x̃_t = x_t / √ᾱ_t = x_0 + σ_t ε,   σ_t² = (1 − ᾱ_t) / ᾱ_t.
log-SNR:                λ_t = log(ᾱ_t / (1 − ᾱ_t)) = −2 log σ_t.

Every schedule is stored as float64 ``betas`` and ``alphas_cumprod``; VE schedules (``ve-geometric``, ``karras``)
are defined by their σ_t and converted with ᾱ = 1 / (1 + σ²), so any schedule can drive any sampler.

Where diffusers has the same schedule, the numbers are the same (diffusers computes in float32; we compute
the same expressions in float64):
``linear`` = ``linear``, ``quadratic`` = ``scaled_linear``, ``cosine`` = ``squaredcos_cap_v2``, ``sigmoid`` = ``sigmoid``.
Timestep spacing (``leading``, ``trailing``, ``linspace``) has the meaning of diffusers' ``timestep_spacing``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

DEFAULT_T = 1000
SPACINGS = ("leading", "trailing", "linspace")


def alpha_bar_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """ᾱ = 1 / (1 + σ²): the VP signal level for VE noise level σ."""
    return 1.0 / (1.0 + sigma**2)


def sigma_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """σ = √((1 − ᾱ) / ᾱ): the VE noise level for VP signal level ᾱ."""
    return torch.sqrt((1.0 - alpha_bar) / alpha_bar)


def log_snr_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """λ = log(ᾱ / (1 − ᾱ)), computed stably as log ᾱ − log1p(−ᾱ)."""
    return torch.log(alpha_bar) - torch.log1p(-alpha_bar)


def alpha_bar_from_log_snr(log_snr: torch.Tensor) -> torch.Tensor:
    """ᾱ = sigmoid(λ)."""
    return torch.sigmoid(log_snr)


def flow_time(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The flow path's t for a VP level ᾱ: the path x_t = (1 − t) x_0 + t ε has α_t = 1 − t, σ_t = t, and
    rescaling it to unit signal-plus-noise weight gives ᾱ = α²/(α² + σ²), so α/σ = √(ᾱ/(1−ᾱ)) = (1 − t)/t and

        t = √(1−ᾱ) / (√ᾱ + √(1−ᾱ)),   x_flow = x_vp / (√ᾱ + √(1−ᾱ)).
    """
    a = alpha_bar.double()
    return (1 - a).sqrt() / (a.sqrt() + (1 - a).sqrt())


def alpha_bar_from_flow_time(t: torch.Tensor) -> torch.Tensor:
    """The inverse of ``flow_time``: ᾱ = (1 − t)² / ((1 − t)² + t²)."""
    t = t.double()
    return (1 - t) ** 2 / ((1 - t) ** 2 + t**2)


def _betas_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """β_t = 1 − ᾱ_t / ᾱ_{t−1}, with ᾱ_{−1} = 1."""
    prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return 1.0 - alpha_bar / prev


@dataclass(frozen=True)
class Schedule:
    """A discrete noise schedule over T training timesteps.

    ``kind`` is "vp" for schedules defined by β (variance preserving) and "ve" for schedules defined by σ
    (variance exploding); it only sets which SDE the SDE samplers use by default.
    """

    name: str
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    kind: str = "vp"
    params: dict = field(default_factory=dict)
    spacing: str | None = None

    @property
    def T(self) -> int:
        return int(self.betas.shape[0])

    @property
    def sigmas(self) -> torch.Tensor:
        return sigma_from_alpha_bar(self.alphas_cumprod)

    @property
    def log_snr(self) -> torch.Tensor:
        return log_snr_from_alpha_bar(self.alphas_cumprod)

    def timesteps(self, steps: int, spacing: str = "leading") -> torch.Tensor:
        """Descending timesteps (int64) for sampling in ``steps`` steps; diffusers' ``timestep_spacing``.

        leading:  (arange(steps) · ⌊T/steps⌋) reversed               e.g. T=1000, 50 → 980, 960, …, 0
        trailing: round(arange(T, 0, −T/steps)) − 1                   e.g. T=1000, 50 → 999, 979, …, 19
        linspace: round(linspace(0, T−1, steps)) reversed              e.g. T=1000, 50 → 999, 979, …, 0
        """
        T = self.T
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
            raise ValueError(f"steps must be an integer from 1 to {T} (the schedule's T); got {steps!r}")
        if spacing == "leading":
            ratio = T // steps
            ts = [i * ratio for i in range(steps)]
        elif spacing == "trailing":
            ratio = T / steps
            ts = [round(T - i * ratio) - 1 for i in range(steps)][::-1]
        elif spacing == "linspace":
            ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()
        else:
            raise ValueError(f"unknown spacing {spacing!r}; allowed: {', '.join(SPACINGS)}")
        return torch.tensor(ts[::-1], dtype=torch.int64)


# --- schedule definitions -------------------------------------------------------------------------------------


def linear(T: int = DEFAULT_T, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """β_t linear from beta_start to beta_end (Ho et al. 2020)."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return _from_betas("linear", betas, beta_start=beta_start, beta_end=beta_end)


def quadratic(T: int = DEFAULT_T, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """√β_t linear from √beta_start to √beta_end (diffusers' ``scaled_linear``)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    return _from_betas("quadratic", betas, beta_start=beta_start, beta_end=beta_end)


def cosine(T: int = DEFAULT_T, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal 2021: ᾱ(τ) = cos²((τ + s)/(1 + s) · π/2), β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), max_beta)."""

    def f(tau: float) -> float:
        return math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=torch.float64)
    return _from_betas("cosine", betas, s=s, max_beta=max_beta)


def sigmoid(T: int = DEFAULT_T, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """β_t = sigmoid(linspace(−6, 6, T)) · (beta_end − beta_start) + beta_start (diffusers' ``sigmoid``)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (beta_end - beta_start) + beta_start
    return _from_betas("sigmoid", betas, beta_start=beta_start, beta_end=beta_end)


def constant(T: int = DEFAULT_T, beta: float = 0.01) -> Schedule:
    """β_t = beta for every t; the default 0.01 ends at ᾱ_T ≈ 4.3e−5, like ``linear``."""
    return _from_betas("constant", torch.full((T,), float(beta), dtype=torch.float64), beta=beta)


def ve_geometric(T: int = DEFAULT_T, sigma_min: float = 0.01, sigma_max: float = 50.0) -> Schedule:
    """NCSN (Song & Ermon 2019): σ_t geometric from sigma_min (t=0) to sigma_max (t=T−1); ᾱ_t = 1/(1+σ_t²)."""
    _check_sigma_range(sigma_min, sigma_max)
    sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), T, dtype=torch.float64))
    return _from_sigmas("ve-geometric", sigmas, sigma_min=sigma_min, sigma_max=sigma_max)


def karras(T: int = DEFAULT_T, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Schedule:
    """Karras et al. 2022 (EDM): σ_t = (σ_min^{1/ρ} + t/(T−1) · (σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ, ascending in t."""
    _check_sigma_range(sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, T, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (lo + ramp * (hi - lo)) ** rho
    return _from_sigmas("karras", sigmas, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)


def flow(T: int = DEFAULT_T) -> Schedule:
    """The flow-matching path x_t = (1 − t) x_0 + t ε (α_t = 1 − t, σ_t = t) on the uniform grid t_k = (k+1)/(T+1),
    k = 0 … T−1, strictly inside (0, 1) so every level has a finite log-SNR 2 log((1 − t)/t); ᾱ from
    ``alpha_bar_from_flow_time``. Its spacing is ``trailing``: S steps then visit t = T/(T+1) · (1, (S−1)/S, …, 1/S)
    and end at 0, the Euler grid of rectified flow, on which DDIM is exactly Euler on dx/dt = v."""
    t = torch.arange(1, T + 1, dtype=torch.float64) / (T + 1)
    alpha_bar = alpha_bar_from_flow_time(t)
    return Schedule("flow", _betas_from_alpha_bar(alpha_bar), alpha_bar, "vp", {}, spacing="trailing")


def custom(betas) -> Schedule:
    """A user-given β sequence (each 0 < β < 1); T is its length."""
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if betas.numel() < 2:
        raise ValueError("a custom schedule needs at least 2 betas")
    if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
        raise ValueError("every custom beta must be a finite number with 0 < beta < 1")
    return _from_betas("custom", betas)


def _check_sigma_range(sigma_min: float, sigma_max: float) -> None:
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf; got sigma_min={sigma_min}, sigma_max={sigma_max}")


def _from_betas(name: str, betas: torch.Tensor, **params) -> Schedule:
    return Schedule(name, betas, torch.cumprod(1.0 - betas, dim=0), "vp", params)


def _from_sigmas(name: str, sigmas: torch.Tensor, **params) -> Schedule:
    alpha_bar = alpha_bar_from_sigma(sigmas)
    return Schedule(name, _betas_from_alpha_bar(alpha_bar), alpha_bar, "ve", params)


SCHEDULES = {
    "linear": linear,
    "quadratic": quadratic,
    "cosine": cosine,
    "sigmoid": sigmoid,
    "constant": constant,
    "ve-geometric": ve_geometric,
    "karras": karras,
    "flow": flow,
}
# diffusers' names for the same schedules
ALIASES = {"scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine"}


def get_schedule(name: str, T: int = DEFAULT_T, **params) -> Schedule:
    """Build a named schedule: ``get_schedule("cosine", T=1000)``; ``get_schedule("custom", betas=[...])``."""
    if name == "custom":
        if set(params) != {"betas"}:
            raise ValueError("the custom schedule takes exactly one parameter: betas (a sequence of floats)")
        return custom(params["betas"])
    key = ALIASES.get(name, name)
    if key not in SCHEDULES:
        allowed = ", ".join([*SCHEDULES, "custom"])
        raise ValueError(f"unknown schedule {name!r}; allowed: {allowed}")
    if isinstance(T, bool) or not isinstance(T, int) or not 2 <= T <= 100_000:
        raise ValueError(f"T must be an integer from 2 to 100000; got {T!r}")
    try:
        return SCHEDULES[key](T, **params)
    except TypeError as err:
        raise ValueError(f"bad parameters for schedule {name!r}: {err}") from None
