"""A small residual MLP denoiser for 2-D toy data, conditioned on the continuous log-SNR λ.

  e  = MLP(sinusoid(λ))                                   noise-level embedding, (N, hidden)
  h  = Linear(x)
  h ← h + Linear(SiLU(Linear(LayerNorm(h)) + e))          × depth residual blocks
  out = Linear(SiLU(LayerNorm(h)))                         zero-initialised: the network outputs 0 at init

A noise-conditioned MLP is the usual toy-data denoiser (e.g. github.com/tanelp/tiny-diffusion, which concatenates
the embedding instead); here the embedding is added inside every pre-norm residual block. It trains in seconds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from timm.layers import Mlp
from torch import nn

from .embedding import noise_level_embedding


@dataclass
class MLPConfig:
    dim: int = 2
    hidden: int = 128
    depth: int = 3
    emb_dim: int = 64  # width of the sinusoidal embedding of λ (even)

    def __post_init__(self):
        if self.dim < 1 or self.hidden < 1 or self.depth < 1 or self.emb_dim < 2 or self.emb_dim % 2:
            raise ValueError(f"MLPConfig: dim, hidden, depth must be positive and emb_dim even, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MLPConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"MLPConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


class _Block(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h)) + e))


class MLPDenoiser(nn.Module):
    """``forward(x, log_snr)``: x of shape (N, dim), log_snr of shape (N,) (or a scalar) → (N, dim)."""

    def __init__(self, config: MLPConfig | None = None):
        super().__init__()
        self.config = cfg = config or MLPConfig()
        self.time_mlp = Mlp(cfg.emb_dim, cfg.hidden, cfg.hidden, act_layer=nn.SiLU)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(_Block(cfg.hidden) for _ in range(cfg.depth))
        self.out_norm = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        log_snr = torch.as_tensor(log_snr, device=x.device, dtype=torch.float32).reshape(-1)
        if log_snr.numel() == 1:
            log_snr = log_snr.expand(x.shape[0])
        e = self.time_mlp(noise_level_embedding(log_snr, self.config.emb_dim).to(x.dtype))
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h, e)
        return self.out(nn.functional.silu(self.out_norm(h)))
