"""Train a 2-D denoiser on the caller's own points, live: ``train_toy`` yields progress records while it trains.

The points come in the caller's coordinates (canvas pixels, y down, say). Training runs in standardised
coordinates x = (y − μ)/s, μ the points' mean and s one overall scale, s² = mean over both axes of the variance,
so the data have unit variance and the schedules' prior N(0, I) fits them. The model is the engine's EpsModel or
ScoreModel for that standardised process, its card recording {"mean": μ, "scale": s} under
``data["standardised"]``; ``model.to_data(x) = μ + s x`` maps back, and ``engine.generate`` applies it to every
Step, so ``engine.sample(model, ...)`` returns points in the caller's coordinates. (A VP process run directly in
pixel coordinates would be another process: its log-SNR is shifted by 2 log s ≈ 9 for a 500-pixel canvas, so the
schedules would spend their steps where nothing happens, and the prior N(0, I) would not cover the data.)

Each step is ``train.optimisation_step`` (AdamW, warm-up, clipping, EMA), the loss being the model's own
(``model.loss`` at ``model.draw_noise_levels``); every random draw — the initial weights, the batches, the levels
and ε — comes from ``seed`` through one torch.Generator. The defaults (AdamW at 1e-2, batch 512, 1,000 steps) were
tuned to reach, from 2,000 points, a sliced Wasserstein distance within 2× that of a fresh sample of the same shape
in under 30 s on one CPU thread, for both objectives (bench/toy_training.py measures it).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from timm.utils import ModelEmaV3

from .checkpoints import build_model, denoiser_card
from .models import OBJECTIVES, DenoisingModel
from .train import TrainConfig, TrainingLoss, optimisation_step

MAX_POINTS = 5000
RECORDED = ("objective", "steps", "batch_size", "lr", "warmup_steps", "lr_decay_start", "ema_decay", "grad_clip",
            "sigma_min", "sigma_max", "seed")  # the training options the card keeps


@dataclass
class ToyProgress:
    """A progress record: ``step`` steps taken, ``loss`` the mean loss over the steps since the last record,
    ``seconds`` the training time so far (time spent by the caller between records not counted), ``model`` the EMA
    model (sampling with ``engine.generate`` gives points in the caller's coordinates; it is the live model, which
    training goes on updating in place: ``copy.deepcopy`` it to keep a snapshot), ``done`` on the last record
    (``stopped`` says why: "steps" or "max_seconds")."""

    step: int
    loss: float
    seconds: float
    model: DenoisingModel
    done: bool = False
    stopped: str | None = None


def standardise(points) -> tuple[torch.Tensor, list[float], float]:
    """(x, μ, s) with x = (points − μ)/s of unit variance; ValueError for anything that is not 2 to 5,000 finite,
    not all identical, (N, 2) points."""
    try:
        y = torch.as_tensor(points, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"points must be an (N, 2) array of numbers: {err}") from None
    if y.dim() != 2 or y.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2); got {tuple(y.shape)}")
    if not 2 <= len(y) <= MAX_POINTS:
        raise ValueError(f"train on 2 to {MAX_POINTS:,} points; got {len(y):,}")
    if not torch.isfinite(y).all():
        raise ValueError("points contain NaN or infinite values")
    mean = y.mean(0)
    scale = math.sqrt(float((y - mean).pow(2).mean()))
    if scale == 0:
        raise ValueError("all points are identical: there is no shape to learn")
    return ((y - mean) / scale).float(), [float(v) for v in mean], scale


def train_toy(points, *, objective: str = "ddpm", schedule: str = "cosine", steps: int = 1000, seed: int = 0,
              hidden: int = 128, depth: int = 3, lr: float = 1e-2, batch_size: int = 512, warmup_steps: int = 50,
              ema_decay: float = 0.995, sigma_min: float = 0.01, sigma_max: float = 10.0,
              report_every: int = 100, max_seconds: float | None = None,
              name: str = "toy") -> Iterator[ToyProgress]:
    """Train a residual MLP (engine/mlp.py, ``hidden`` wide, ``depth`` blocks) on ``points`` and yield a
    ``ToyProgress`` every ``report_every`` steps and at the end (after ``steps`` steps, or the first step past
    ``max_seconds`` of training time).

    ``objective``: "ddpm" trains ε̂ on the ᾱ_t of ``schedule``; "dsm" trains the score on σ log-uniform in
    [``sigma_min``, ``sigma_max``] — by default [0.01, 10] of the unit-variance data (1 pixel of a 100-pixel
    spread to 10× the spread; above it the v-parameterisation's weight √ᾱ < 0.1 leaves ε̂ ≈ x_t, which is right),
    narrower than the image models' [0.002, 200], which spends most steps where a 2-D shape has nothing to learn
    (measured: from moons in pixels, 300 steps reach 2.3× a fresh sample's SWD instead of 3.4×). The learning
    rate warms up over ``warmup_steps`` and decays (cosine) to 0 at ``steps``, which lets the last steps settle;
    the EMA weights (decay ``ema_decay``, timm's warm-up) are the model. All settings are checked before the
    first step, when it is called (ValueError).
    """
    x, mean, scale = standardise(points)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    for key, value in (("steps", steps), ("report_every", report_every), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer; got {value!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive (or None); got {max_seconds!r}")
    cfg = TrainConfig(name=name, dataset="points", objective=objective, arch="mlp",
                      arch_config={"hidden": hidden, "depth": depth}, steps=steps, batch_size=batch_size, lr=lr,
                      warmup_steps=warmup_steps, lr_decay_start=0, ema_decay=ema_decay, sigma_min=sigma_min,
                      sigma_max=sigma_max, seed=seed, device="cpu")
    card = denoiser_card(
        name, "mlp", cfg.arch_config, objective, (2,),
        data={"dataset": "points", "n": len(x), "standardised": {"mean": mean, "scale": scale}},
        noise_range=OBJECTIVES[objective].noise_range(sigma_min, sigma_max, (schedule,)),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the initial weights from the seed, leaving the caller's global RNG as it was
        torch.manual_seed(seed)
        model = build_model(card)
    ema = ModelEmaV3(model, decay=ema_decay, use_warmup=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    return _loop(cfg, model, ema, opt, x, gen, report_every, max_seconds)


def _loop(cfg: TrainConfig, model: DenoisingModel, ema: ModelEmaV3, opt: torch.optim.Optimizer, x: torch.Tensor,
          gen: torch.Generator, report_every: int, max_seconds: float | None) -> Iterator[ToyProgress]:
    """``train_toy``'s steps on the standardised points ``x``, as a generator of its records."""
    loss_fn = TrainingLoss(model)
    losses: list[float] = []
    seconds = 0.0
    step = 0
    while True:
        start = time.perf_counter()
        x0 = x[torch.randint(len(x), (cfg.batch_size,), generator=gen)]
        losses.append(optimisation_step(cfg, step, model, loss_fn, opt, ema, x0, gen))
        step += 1
        seconds += time.perf_counter() - start
        stopped = "steps" if step >= cfg.steps else "max_seconds" if max_seconds and seconds >= max_seconds else None
        if stopped or step % report_every == 0:
            mean_loss = sum(losses) / len(losses)
            losses.clear()
            ema.module.card["training"] = {"steps": step, "seconds": round(seconds, 2), "loss": round(mean_loss, 5),
                                           "options": {k: getattr(cfg, k) for k in RECORDED}}
            yield ToyProgress(step, mean_loss, seconds, ema.module.eval(), stopped is not None, stopped)
        if stopped:
            return
