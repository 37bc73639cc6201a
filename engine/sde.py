"""The forward SDEs that the SDE samplers (``euler-maruyama``, ``pc``) integrate in reverse (Song et al. 2021).

Both are written over the schedule's own noise levels, so any schedule drives either SDE:

  VP:  dx = −½ β(τ) x dτ + √β(τ) dw,   state x = x_t (VP scaling),   with β dτ = −d log ᾱ
  VE:  dx̃ = √(dσ²/dτ) dw,              state x̃ = x_t / √ᾱ (VE scaling), with σ² = (1 − ᾱ)/ᾱ

An SDE object answers, for one interval from the noisier level ᾱ to the cleaner level ᾱ' (> ᾱ):
  ``increments``: the forward drift f dτ and variance g² dτ integrated over the interval (Euler–Maruyama);
  ``discretize``: the forward Markov step x_ᾱ = x_ᾱ' + f + G z that the discrete models use (DDPM for VP,
  NCSN for VE) — score_sde's ``SDE.discretize``, used by the reverse-diffusion predictor;
  ``corrector_alpha``: the α in the Langevin corrector's step size 2 α (snr ‖z‖/‖s‖)².
The reverse-time SDE dx = [f − g² ∇log p] dτ + g dw̄ is then stepped by x' = x − f + g² s + g z.
"""
from __future__ import annotations

import math

import torch


class VPSDE:
    name = "vp"

    def to_state(self, x_t: torch.Tensor, a: float) -> torch.Tensor:
        return x_t

    def from_state(self, x: torch.Tensor, a: float) -> torch.Tensor:
        return x

    def score(self, eps: torch.Tensor, a: float) -> torch.Tensor:
        """∇_x log p(x) = −ε̂ / √(1 − ᾱ)."""
        return -eps / math.sqrt(1 - a)

    def increments(self, x: torch.Tensor, a: float, a_next: float) -> tuple[torch.Tensor, float]:
        """∫ β dτ = log(ᾱ'/ᾱ) =: h;  f dτ = −½ h x,  g² dτ = h."""
        h = math.log(a_next / a)
        return -0.5 * h * x, h

    def discretize(self, x: torch.Tensor, a: float, a_next: float) -> tuple[torch.Tensor, float]:
        """DDPM's step with β = 1 − ᾱ/ᾱ':  x_ᾱ = √(1−β) x_ᾱ' + √β z  →  f = (√(1−β) − 1) x,  G = √β."""
        beta = 1 - a / a_next
        return (math.sqrt(1 - beta) - 1) * x, math.sqrt(beta)

    def corrector_alpha(self, a: float, a_next: float) -> float:
        return a / a_next


class VESDE:
    name = "ve"

    def to_state(self, x_t: torch.Tensor, a: float) -> torch.Tensor:
        return x_t / math.sqrt(a)

    def from_state(self, x: torch.Tensor, a: float) -> torch.Tensor:
        return x * math.sqrt(a)

    def score(self, eps: torch.Tensor, a: float) -> torch.Tensor:
        """∇_x̃ log p_σ(x̃) = −ε̂ / σ."""
        return -eps / math.sqrt((1 - a) / a)

    def increments(self, x: torch.Tensor, a: float, a_next: float) -> tuple[torch.Tensor, float]:
        """f = 0,  g² dτ = σ² − σ'²."""
        return torch.zeros_like(x), (1 - a) / a - (1 - a_next) / a_next

    def discretize(self, x: torch.Tensor, a: float, a_next: float) -> tuple[torch.Tensor, float]:
        """NCSN's step x̃_σ = x̃_σ' + √(σ² − σ'²) z."""
        return torch.zeros_like(x), math.sqrt((1 - a) / a - (1 - a_next) / a_next)

    def corrector_alpha(self, a: float, a_next: float) -> float:
        return 1.0


SDES = {"vp": VPSDE(), "ve": VESDE()}
