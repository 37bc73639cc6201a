"""The model protocol, and the engine's two parameterisations of a denoising network, each with its training loss.

Anything with ``eps(x_t, alpha_bar) -> Tensor`` (ε̂ for VP-scaled x_t, ``alpha_bar`` a per-sample tensor of ᾱ) and
``data_shape`` (the per-sample shape) is a model that every sampler accepts. From ε̂ the samplers take

  x̂0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ                          (Tweedie's estimate of the clean sample)
  ∇ log p_t(x_t) = −ε̂ / √(1−ᾱ)                           (VP score)
  ∇ log p_σ(x̃) = −ε̂ / σ,   x̃ = x_t / √ᾱ,  σ² = (1−ᾱ)/ᾱ   (VE score; the link ε = −σ s)

``EpsModel`` wraps a network trained with the DDPM objective (predicts ε from x_t). ``ScoreModel`` wraps a network
trained by denoising score matching over VE noise levels (predicts s(x̃, σ)) and gives ε̂ by that link, so one
sampler code path serves both. Both feed the network a continuous noise level — the log-SNR λ — never a step
index, so one trained network serves every schedule and step count.

Both parameterise the network output F as v (Salimans & Ho 2022; diffusers' ``prediction_type="v_prediction"``):
  ε̂ = √(1−ᾱ) x_t + √ᾱ F,   so   x̂0 = √ᾱ x_t − √(1−ᾱ) F.
A plain ε-network turns an ε̂ error δ into an x̂0 error δ/√ᾱ — 20,000 δ at the cosine schedule's last level
(ᾱ ≈ 2.4e−9), which made DDIM diverge there; with this form x̂0 stays bounded, and at high SNR ε̂ ≈ F as before.
The training losses are unchanged (ε-MSE, and DSM with λ(σ) = σ², which is the same quantity).

A class-conditional network (``num_classes`` > 0) takes ``label`` in ``eps`` and ``loss``; ``None`` is the null
class ∅. ``Guided`` turns one into a plain protocol model with classifier-free guidance.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import nn

from .schedules import SCHEDULES, alpha_bar_from_flow_time, flow_time, get_schedule, log_snr_from_alpha_bar


def check_model(model) -> None:
    """Raise TypeError unless ``model`` follows the protocol (``eps`` callable and ``data_shape`` tuple)."""
    if not callable(getattr(model, "eps", None)):
        raise TypeError(f"{type(model).__name__} is not a model: it needs a method eps(x_t, alpha_bar) -> Tensor")
    shape = getattr(model, "data_shape", None)
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise TypeError(f"{type(model).__name__} is not a model: data_shape must be a tuple of positive ints")


def _per_sample(alpha_bar: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample (N,) tensor against x of shape (N, ...)."""
    return alpha_bar.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


class DenoisingModel(nn.Module):
    """Shared parts of the engine's models: the network ``net``, ``data_shape`` and the model ``card``.

    Each subclass is one parameterisation and its training objective, kept together as k-diffusion keeps ``loss``
    beside each denoiser: ``eps`` for sampling, and for training ``draw_noise_levels`` (from a generator, so a
    resumed run draws the same levels) and ``loss`` at those levels. ``card["noise_range"]`` records the levels it
    trains on; ``noise_range`` makes that record from a training config's options."""

    def __init__(self, net: nn.Module, data_shape: tuple[int, ...], card: dict | None = None):
        super().__init__()
        self.net = net
        self.data_shape = tuple(int(d) for d in data_shape)
        self.card = dict(card or {})

    @property
    def num_classes(self) -> int:
        """How many classes the network is conditioned on (0: unconditional), from the card's architecture."""
        return int(self.card.get("arch", {}).get("config", {}).get("num_classes", 0))

    @property
    def class_names(self) -> list[str]:
        """The names of labels 0…num_classes−1 (the card's ``data["classes"]``, else the indices)."""
        names = (self.card.get("data") or {}).get("classes")
        return list(names) if names else [str(i) for i in range(self.num_classes)]

    def _net(self, x: torch.Tensor, log_snr: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        return self.net(x, log_snr) if label is None else self.net(x, log_snr, label)

    @property
    def to_data(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The map of a sample of the model's (standardised) space to the data's own coordinates,

            y = μ + s x,   with ``card["data"]["standardised"] = {"mean": μ, "scale": s}``

        (a model trained on points given in, e.g., canvas pixels learns x = (y − μ)/s, unit variance, because the
        schedules' prior N(0, I) fits that scale), or None when the card records no such map: the model samples in
        its data's own coordinates, and ``generate`` passes its Steps through untouched."""
        std = (self.card.get("data") or {}).get("standardised")
        if std is None:
            return None
        mean, scale = std["mean"], std["scale"]
        return lambda x: torch.as_tensor(mean, dtype=x.dtype, device=x.device) + scale * x


@functools.lru_cache(maxsize=4)
def _alpha_bar_table(schedules: tuple[str, ...]) -> torch.Tensor:
    """Every ᾱ_t of the named schedules (T = 1000 each), concatenated."""
    return torch.cat([get_schedule(s).alphas_cumprod for s in schedules])


# The schedules an ε-model trains on unless its config names others: every schedule the app offered when the shipped
# models were trained (kept fixed, so their configs still reproduce them; ``flow`` came later).
EPS_SCHEDULES = ("linear", "quadratic", "cosine", "sigmoid", "constant", "ve-geometric", "karras")


class EpsModel(DenoisingModel):
    """DDPM objective (Ho et al. 2020): ε̂ = √(1−ᾱ) x_t + √ᾱ net(x_t, λ), trained by

        x_t = √ᾱ x_0 + √(1−ᾱ) ε,   loss = ‖ε̂(x_t, ᾱ) − ε‖²   (averaged over dimensions and batch)

    with ᾱ drawn from the app's schedules (one of their levels, uniformly), so every schedule the app offers lies in
    the training range."""

    objective = "ddpm"

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        a = alpha_bar.double()
        v = self._net(x_t, log_snr_from_alpha_bar(a).to(x_t.dtype), label)
        a = _per_sample(a, x_t)
        return (1 - a).sqrt() * x_t + a.sqrt() * v

    @staticmethod
    def noise_range(sigma_min: float, sigma_max: float, schedules: tuple[str, ...] = EPS_SCHEDULES) -> dict:
        """The card's record of the training levels: the schedules whose ᾱ_t are drawn (default: ``EPS_SCHEDULES``,
        which cover every offered schedule's λ range but the flow grid's last 0.1 % of t). The σ range is the score
        model's; an ε-model trains on schedules instead."""
        unknown = sorted(set(schedules) - set(SCHEDULES))
        if unknown or not schedules:
            raise ValueError(f"unknown schedule(s) {unknown or schedules!r}; allowed: {', '.join(SCHEDULES)}")
        return {"schedules": list(schedules)}

    def draw_noise_levels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n values of ᾱ, each a level of the card's schedules drawn uniformly: a schedule, then t in 0…T−1."""
        table = _alpha_bar_table(tuple(self.card["noise_range"]["schedules"]))
        return table[torch.randint(len(table), (n,), generator=gen)]

    def loss(self, x0: torch.Tensor, alpha_bar: torch.Tensor, eps: torch.Tensor,
             label: torch.Tensor | None = None) -> torch.Tensor:
        a = _per_sample(alpha_bar, x0)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        return (self.eps(x_t, alpha_bar, label) - eps).pow(2).mean()


class ScoreModel(DenoisingModel):
    """Score network trained by denoising score matching in the VE scaling x̃ = x_0 + σ ε:

    s_θ(x̃, σ) = −ε̂(x̃/√(1+σ²), ᾱ)/σ  with ᾱ = 1/(1+σ²) and ε̂ as above. Scaling the input to unit variance is EDM's
    c_in; dividing by σ is NCSNv2's output scaling. The DSM loss (Vincent 2011; Song & Ermon 2019)

        loss = λ(σ) ‖s_θ(x_0 + σ ε, σ) + ε/σ‖²,   λ(σ) = σ²   (averaged over dimensions and batch)

    then has the same size at every σ. σ is drawn log-uniform in [sigma_min, sigma_max] (NCSN's geometric levels,
    made continuous). [0.002, 200] covers every offered schedule but cosine's last 4 levels (σ up to 2e4); there
    the v-parameterisation weights the network's output by √ᾱ < 0.005, so ε̂ ≈ x_t, which is right. ε̂ for the
    protocol comes from the link ε = −σ s.
    """

    objective = "dsm"

    def score_ve(self, x_tilde: torch.Tensor, sigma: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        sig = sigma.double()
        a = _per_sample(1 / (1 + sig**2), x_tilde)
        x_t = x_tilde * a.sqrt()
        v = self._net(x_t, (-2 * torch.log(sig)).to(x_tilde.dtype), label)
        eps = (1 - a).sqrt() * x_t + a.sqrt() * v
        return -eps / _per_sample(sig, x_tilde)

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        a = alpha_bar.double()
        sigma = torch.sqrt((1 - a) / a)
        x_tilde = x_t / _per_sample(a.sqrt(), x_t)
        return -_per_sample(sigma, x_t) * self.score_ve(x_tilde, sigma, label)

    @staticmethod
    def noise_range(sigma_min: float, sigma_max: float, schedules: tuple[str, ...] = EPS_SCHEDULES) -> dict:
        """The card's record of the training levels; ValueError unless 0 < sigma_min < sigma_max. ``schedules`` is
        the ε-model's record; a score model trains on the σ range, which serves every schedule's levels within it."""
        if not 0 < sigma_min < sigma_max:
            raise ValueError("dsm needs 0 < sigma_min < sigma_max")
        return {"sigma_min": sigma_min, "sigma_max": sigma_max}

    def draw_noise_levels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n values of σ, log-uniform in the card's [sigma_min, sigma_max]."""
        lo, hi = (math.log(self.card["noise_range"][k]) for k in ("sigma_min", "sigma_max"))
        u = torch.rand(n, generator=gen, dtype=torch.float64)
        return torch.exp(lo + u * (hi - lo))

    def loss(self, x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor,
             label: torch.Tensor | None = None) -> torch.Tensor:
        s = _per_sample(sigma, x0)
        score = self.score_ve(x0 + s * eps, sigma, label)
        return (s**2 * (score + eps / s).pow(2)).mean()


class FlowModel(DenoisingModel):
    """Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023): on the straight path

        x_t = (1 − t) x_0 + t ε,   t ∈ [0, 1],
    the network predicts the velocity v = dx_t/dt = ε − x_0 and trains on  loss = ‖v̂(x_t, t) − v‖²  (averaged over
    dimensions and batch). t is drawn uniformly in [t_min, 1 − t_min], as both papers do: few-step samplers start
    at t ≈ 1 and every schedule's levels lie between (SD3's logit-normal t would starve the ends, which a 1-step
    Euler sampler evaluates). The network is fed the path's log-SNR λ = 2 log((1 − t)/t), as the other models.

    It is a Gaussian path, so every ε-sampler runs it through the links (``eps``):
        x̂0 = x_t − t v̂,   ε̂ = x_t + (1 − t) v̂   (in the path's own coordinates; ``schedules.flow_time`` links them to the VP ones).
    """

    objective = "fm"

    def velocity(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """v̂(x_t, t) for x in the path's own coordinates; ``t`` a per-sample (N,) tensor."""
        t = t.double()
        return self._net(x, (2 * (torch.log1p(-t) - torch.log(t))).to(x.dtype), label)

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        a = alpha_bar.double()
        t = flow_time(a)
        x = x_t / _per_sample(a.sqrt() + (1 - a).sqrt(), x_t)
        return x + _per_sample(1 - t, x_t) * self.velocity(x, t, label)

    @staticmethod
    def noise_range(sigma_min: float, sigma_max: float, schedules: tuple[str, ...] = EPS_SCHEDULES) -> dict:
        """The card's record of the training levels: t uniform in [t_min, t_max]. The σ range and the schedules are
        the other objectives' records; a flow model trains on t, whose levels serve every schedule."""
        return {"t_min": FLOW_T_MIN, "t_max": 1 - FLOW_T_MIN, "t_draw": "uniform"}

    def draw_noise_levels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n values of t, uniform in the card's [t_min, t_max]."""
        lo, hi = self.card["noise_range"]["t_min"], self.card["noise_range"]["t_max"]
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)

    def loss(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
             label: torch.Tensor | None = None) -> torch.Tensor:
        s = _per_sample(t, x0)
        return (self.velocity((1 - s) * x0 + s * eps, t, label) - (eps - x0)).pow(2).mean()


FLOW_T_MIN = 1e-4  # t in [1e-4, 1 − 1e-4]: λ within ±18.4, past every offered schedule's levels but cosine's last


OBJECTIVES = {cls.objective: cls for cls in (EpsModel, ScoreModel, FlowModel)}  # a card's "objective" → its model class


def velocity(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v̂(x_t, t) = ε̂ − x̂0 on the flow path x_t = (1 − t) x_0 + t ε, for any protocol model: a flow model's own
    network output, else ε̂ at the VP level of t through the links (``schedules.flow_time``),

        ᾱ = (1 − t)²/((1 − t)² + t²),   ε̂ = model.eps(k x, ᾱ) with k = √ᾱ + √(1−ᾱ),   x̂0 = (x − t ε̂)/(1 − t).
    ``x`` is in the path's own coordinates and ``t`` a per-sample (N,) tensor in (0, 1)."""
    if isinstance(model, FlowModel):
        return model.velocity(x, t)
    a = alpha_bar_from_flow_time(t)
    k = _per_sample(a.sqrt() + (1 - a).sqrt(), x)
    eps = model.eps(k * x, a)
    s = _per_sample(t, x)
    return eps - (x - s * eps) / (1 - s)


def num_classes(model) -> int:
    """The classes of a conditional model; ValueError for an unconditional one, which takes no label."""
    k = getattr(model, "num_classes", 0)
    if not k:
        name = (getattr(model, "card", None) or {}).get("name", "this model")
        raise ValueError(f"{name} is unconditional: it takes no label (pick a class-conditional model, e.g. mnist-cond)")
    return k


def check_labels(model, label, n: int) -> torch.Tensor:
    """``label`` (an int for all ``n`` samples, or one int per sample) as an (n,) long tensor, checked against the
    model's classes; ValueError saying what is allowed. An unconditional model refuses any label."""
    k = num_classes(model)
    values = [label] * n if isinstance(label, int) and not isinstance(label, bool) else label
    if not isinstance(values, (list, tuple)) or len(values) != n or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < k for v in values):
        raise ValueError(f"label must be an integer class from 0 to {k - 1}, or a list of {n} such integers (one per "
                         f"sample), or {RANDOM_LABEL!r} when sampling from noise (generate, compare); got {label!r}")
    return torch.tensor(values, dtype=torch.long)


class Guided:
    """Classifier-free guidance (Ho & Salimans 2022) as a plain protocol model over a class-conditional one:

        ε̂_w(x, c) = ε̂(x, ∅) + w · (ε̂(x, c) − ε̂(x, ∅)),   w = ``guidance_scale``

    so w = 0 is the unconditional model, w = 1 the plain conditional one (each one network call per step), and
    w > 1 pushes samples towards what makes class c likelier than the rest (guided: both branches in one batched
    network call of 2N rows). Every sampler runs on it unchanged. ``label``: (N,) classes, one per sample."""

    def __init__(self, model: DenoisingModel, label: torch.Tensor, guidance_scale: float):
        self.model = model
        self.label = label
        self.guidance_scale = float(guidance_scale)
        self.data_shape = model.data_shape
        self.card = model.card
        self.to_data = getattr(model, "to_data", None)

    def parameters(self):
        return self.model.parameters()

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        w = self.guidance_scale
        if w == 0:
            return self.model.eps(x_t, alpha_bar)
        label = self.label.to(x_t.device)
        if w == 1:
            return self.model.eps(x_t, alpha_bar, label)
        null = torch.full_like(label, self.model.num_classes)
        both = self.model.eps(torch.cat([x_t, x_t]), torch.cat([alpha_bar, alpha_bar]), torch.cat([label, null]))
        cond, uncond = both.chunk(2)
        return uncond + w * (cond - uncond)


def rows_per_sample(label, guidance_scale: float) -> int:
    """Network rows a sample costs per evaluation: 2 when guided (``Guided`` runs both branches), else 1."""
    return 2 if label is not None and guidance_scale not in (0, 1) else 1


MAX_GUIDANCE_SCALE = 10.0  # beyond this, samples saturate: a bound on input, not a tuned value


RANDOM_LABEL = "random"  # a label asking for each sample's class drawn from the run's generator (guided)


def guided(model, label, guidance_scale: float, n: int, generator: torch.Generator | None = None):
    """``model`` itself when no label is asked for (a conditional model then samples unconditionally, ∅),
    else ``Guided(model, labels, guidance_scale)``; ValueError for a bad label or scale.

    ``label`` RANDOM_LABEL ("random") draws each sample's class uniformly from ``generator`` (the run's, so the
    seed fixes the classes too). Uniform is the class prior of our training sets (Fashion-MNIST: 6,000 images per
    class; the MNIST 5k: 500 per digit), so at w = 1 the samples follow p(x) = Σ_c p(c) p(x | c) — unconditional
    sampling by ancestral sampling of the class, then of the image given it, with the conditional branch instead of
    the null class's."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or not (
            0 <= guidance_scale <= MAX_GUIDANCE_SCALE):
        raise ValueError(f"guidance_scale must be a number from 0 to {MAX_GUIDANCE_SCALE:g}; got {guidance_scale!r}")
    if label is None:
        if guidance_scale != 1.0:
            raise ValueError("guidance_scale needs a label: guidance pushes samples towards a class")
        return model
    if isinstance(label, str) and label == RANDOM_LABEL and generator is not None:
        label = torch.randint(num_classes(model), (n,), generator=generator).tolist()
    return Guided(model, check_labels(model, label, n), guidance_scale)


class GaussianModel:
    """The exact denoiser for Gaussian data x_0 ~ N(μ, Σ) — an oracle for testing samplers without training.

    With x_t = √ᾱ x_0 + √(1−ᾱ) ε:  Cov(x_t) = ᾱ Σ + (1−ᾱ) I  and
        E[ε | x_t] = √(1−ᾱ) (ᾱ Σ + (1−ᾱ) I)^{-1} (x_t − √ᾱ μ),
    which is the optimal ε̂ at every noise level.
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        self.mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        self.data_shape = (int(self.mean.numel()),)
        self.card = {"name": "gaussian-oracle", "objective": "analytic"}
        # Σ = Q diag(λ) Qᵀ, so (ᾱ Σ + (1−ᾱ) I)^{-1} = Q diag(1 / (ᾱ λ + 1 − ᾱ)) Qᵀ: elementwise per sample
        self._evals, self._evecs = torch.linalg.eigh(self.cov)

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        dev = x_t.device
        a = alpha_bar.double().to(dev).reshape(-1, 1)
        q = self._evecs.to(dev)
        r = (x_t.double() - a.sqrt() * self.mean.to(dev)) @ q
        out = (r / (a * self._evals.to(dev) + 1 - a)) @ q.T * (1 - a).sqrt()
        return out.to(x_t.dtype)
