"""A small U-Net denoiser conditioned on the continuous log-SNR λ (one readable file).

The layout follows the DDPM U-Net (Ho et al. 2020, github.com/hojonathanho/diffusion) as re-expressed in
diffusers' ``UNet2DModel`` and in ADM (Dhariwal & Nichol 2021, github.com/openai/guided-diffusion); the code is
written here from timm building blocks (``GroupNorm``/``GroupNormAct``, ``Mlp``, ``Attention2d``):

  e   = MLP(sinusoid(λ)) [+ Embedding(c)]                          noise-level (and class) embedding, (N, emb_dim)
  h   = conv3x3(x)
  down: for each level ℓ (channels C·mult_ℓ): num_res_blocks × [ResBlock (+ self-attention if the level's
        resolution is in attention_resolutions)], every output kept as a skip; then a stride-2 3×3 conv
        (except at the last level). Sizes halve with ceil: 28 → 14 → 7, 32 → 16 → 8, 8 → 4 → 2.
  mid:  ResBlock, self-attention, ResBlock
  up:   mirror of down with num_res_blocks + 1 ResBlocks per level, each taking concat(h, skip); upsampling is
        nearest-neighbour to the *skip's* size followed by a 3×3 conv, so odd sizes (7 → 14) come out right.
  out = conv3x3(SiLU(GroupNorm(h)))          zero-initialised, so the network outputs exactly 0 at init

  ResBlock(h, e) = skip(h) + conv3x3(dropout(SiLU(GN(conv3x3(SiLU(GN(h)))) · (1 + s) + b)))
                   with (1 + s, b) = Linear(SiLU(e))  — ADM's scale/shift ("FiLM") conditioning (the second
                   GroupNorm has no affine of its own); the second conv is zero-initialised so every residual
                   branch starts as the identity (ADM does the same).
  Attention(h)   = h + proj(MHSA(GN(h)))      with proj zero-initialised.

The network never sees a step index: one trained net serves every schedule and step count.

Class conditioning (``num_classes`` > 0; ADM's class embedding, Dhariwal & Nichol 2021): a learned vector per class,
plus one for the "null" class ∅ = ``num_classes`` (classifier-free guidance's unconditional input, Ho & Salimans
2022), is added to the noise-level embedding. The table starts at zero, so a conditional net initialised from an
unconditional one computes exactly the unconditional function until it learns the classes; ``label=None`` means ∅.

Default (16 · (1, 2, 4) channels at 28/14/7, one ResBlock per level, attention at 7×7): 0.72 M parameters. It is
small on purpose: on a small CPU in eager float32 a batch-1 forward is bound by per-operator overhead, so its time
grows with the number and width of its layers long before the arithmetic counts (timings: docs/PERFORMANCE.md,
Section 2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from timm.layers import Attention2d, GroupNorm, GroupNormAct, Mlp
from torch import nn

from .embedding import noise_level_embedding


@dataclass
class UNetConfig:
    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (7,)
    dropout: float = 0.0
    num_groups: int = 8
    emb_dim: int | None = None  # width of the noise-level embedding; None → 4 · base_channels
    num_classes: int = 0  # 0: unconditional; else labels 0…num_classes−1 and the null label num_classes

    def __post_init__(self):
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.attention_resolutions = tuple(int(r) for r in self.attention_resolutions)
        if (self.in_channels < 1 or self.image_size < 1 or self.base_channels < 2 or self.num_res_blocks < 1
                or self.num_classes < 0):
            raise ValueError(f"UNetConfig: sizes must be positive, got {self}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(f"UNetConfig: channel_mults must be positive ints, got {self.channel_mults}")
        for c in {self.base_channels * m for m in self.channel_mults}:
            if c % self.num_groups:
                raise ValueError(f"UNetConfig: {c} channels cannot be split into num_groups={self.num_groups}")

    @property
    def time_dim(self) -> int:
        return int(self.emb_dim) if self.emb_dim else 4 * self.base_channels

    def resolutions(self) -> list[int]:
        """Feature-map size at each level for an image_size input (stride-2 convs with padding 1: ceil halving)."""
        res = [self.image_size]
        for _ in self.channel_mults[1:]:
            res.append((res[-1] + 1) // 2)
        return res

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_resolutions"] = list(self.attention_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"UNetConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = GroupNormAct(c_in, groups, act_layer=nn.SiLU)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)  # → (1 + s, b): the scale half's bias starts at 1
        with torch.no_grad():
            self.emb.bias[:c_out] += 1.0
        self.norm2 = GroupNorm(c_out, groups, affine=False)  # the affine comes from the embedding
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: (N, c_in, H, W); e: SiLU(embedding), (N, emb_dim)."""
        h = self.conv1(self.norm1(x))
        scale, shift = self.emb(e)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm2(h), scale), inplace=True)
        if self.drop is not None:
            h = self.drop(h)
        return self.conv2(h).add_(x if self.skip is None else self.skip(x))


class AttnBlock(nn.Module):
    def __init__(self, c: int, groups: int, head_dim: int = 32):
        super().__init__()
        self.norm = GroupNorm(c, groups)
        self.attn = Attention2d(c, num_heads=max(1, c // head_dim))
        _zero(self.attn.proj)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class UNet(nn.Module):
    """ε-style denoiser: ``forward(x, log_snr, label=None) -> Tensor`` with the shape of x; see the module
    docstring (``label``: (N,) class indices, ``num_classes`` being the null label; only for a conditional net)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else UNetConfig()
        C, G, E = cfg.base_channels, cfg.num_groups, cfg.time_dim
        self.freq_dim = max(32, C - C % 2)  # sinusoid width (ADM uses base_channels)
        self.time_mlp = Mlp(self.freq_dim, E, E, act_layer=nn.SiLU)
        self.label_emb = _zero(nn.Embedding(cfg.num_classes + 1, E)) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, C, 3, padding=1)

        res = cfg.resolutions()
        self.down = nn.ModuleList()
        skips, ch = [C], C
        for lvl, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                blocks = [ResBlock(ch, C * mult, E, G, cfg.dropout)]
                ch = C * mult
                if res[lvl] in cfg.attention_resolutions:
                    blocks.append(AttnBlock(ch, G))
                self.down.append(nn.ModuleList(blocks))
                skips.append(ch)
            if lvl < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([Downsample(ch)]))
                skips.append(ch)

        self.mid = nn.ModuleList([ResBlock(ch, ch, E, G, cfg.dropout), AttnBlock(ch, G),
                                  ResBlock(ch, ch, E, G, cfg.dropout)])

        self.up = nn.ModuleList()
        for lvl, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(ch + skips.pop(), C * mult, E, G, cfg.dropout)]
                ch = C * mult
                if res[lvl] in cfg.attention_resolutions:
                    blocks.append(AttnBlock(ch, G))
                self.up.append(nn.ModuleList(blocks))
            if lvl > 0:
                self.up.append(nn.ModuleList([Upsample(ch)]))
        assert not skips

        self.out_norm = GroupNormAct(ch, G, act_layer=nn.SiLU)
        self.conv_out = _zero(nn.Conv2d(ch, cfg.in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, log_snr: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        log_snr = torch.as_tensor(log_snr, device=x.device, dtype=torch.float32).reshape(-1)
        if log_snr.numel() == 1:
            log_snr = log_snr.expand(x.shape[0])
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or log_snr.shape[0] != x.shape[0]:
            raise ValueError(f"UNet expects x (N, {self.config.in_channels}, H, W) and log_snr (N,), "
                             f"got {tuple(x.shape)} and {tuple(log_snr.shape)}")
        e = self.time_mlp(noise_level_embedding(log_snr, self.freq_dim).to(x.dtype))
        if self.label_emb is not None:
            if label is None:
                label = torch.full((x.shape[0],), self.config.num_classes, dtype=torch.long, device=x.device)
            e = e + self.label_emb(label.to(x.device).long().expand(x.shape[0]))
        elif label is not None:
            raise ValueError("this network is unconditional: it takes no class label")
        e = F.silu(e)

        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            for b in blocks:
                h = b(h, e)
            hs.append(h)
        for b in self.mid:
            h = b(h, e)
        for blocks in self.up:
            if isinstance(blocks[0], Upsample):
                h = blocks[0](h, hs[-1].shape[-2:])
                continue
            h = torch.cat([h, hs.pop()], dim=1)
            for b in blocks:
                h = b(h, e)
        return self.conv_out(self.out_norm(h))
