"""The networks' shared input encoding: a sinusoidal embedding of the continuous noise level."""
from __future__ import annotations

import math

import torch


def noise_level_embedding(log_snr: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of the continuous noise level c = log σ = −λ/2, scaled so that the usual range
    (log σ in about [−10, 10]) spreads over the frequencies like a step index 0…1000 would (Vaswani et al. 2017;
    Ho et al. 2020 embed t the same way)."""
    c = (-0.5 * log_snr.float()).reshape(-1, 1) * 50.0
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c.device, dtype=torch.float32) / half)
    args = c * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
