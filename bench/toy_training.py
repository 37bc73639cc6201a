"""Time to target of live toy training (``engine.train_toy``) on one CPU thread, for both objectives.

Each shape gives 2,000 training points in canvas pixels (0–500, y down) and a fresh 2,000 of the same shape; the
target is a sliced Wasserstein distance (``evaluate.sliced_wasserstein``, 256 directions) from 2,000 samples to
the training points within 2× the fresh sample's distance to them. ``train_toy`` runs with its defaults and
reports every ``every`` steps; at each report until the target is met (and at the end) 2,000 points are sampled
outside the training clock (ancestral DDPM, 200 cosine steps, seed 0: its fresh noise at every step forgives the
network's errors on a thin stroke, where DDIM's deterministic steps measured 1.3× further at 50 or 200 steps).
Time to target is the training time at the first report that meets it; the anchors are the published browser tool
(~10 s) and the issue's bound (30 s). Run: ``python -m bench.toy_training [--every 50]``.
"""
from __future__ import annotations

import argparse
import math

import torch

import engine
from engine.data import toy_sample
from engine.evaluate import sliced_wasserstein
from engine.models import OBJECTIVES

from .common import Section, Table

N = 2000
FACTOR = 2.0
ANCHORS = (10.0, 30.0)


def drawn_heart(n: int, gen: torch.Generator) -> torch.Tensor:
    """n points along a hand-drawn-looking heart on a 500-pixel canvas (y down): the heart curve
    (16 sin³t, 13 cos t − 5 cos 2t − 2 cos 3t − cos 4t) with a fixed slow wobble of the radius (the hand) and
    4-pixel Gaussian jitter (the brush), t uniform (the pen's speed varies along the stroke)."""
    t = 2 * math.pi * torch.rand(n, generator=gen)
    wobble = 1 + 0.04 * torch.sin(3 * t + 1.0) + 0.02 * torch.sin(7 * t)
    x = 16 * torch.sin(t) ** 3 * wobble
    y = (13 * torch.cos(t) - 5 * torch.cos(2 * t) - 2 * torch.cos(3 * t) - torch.cos(4 * t)) * wobble
    pts = torch.stack([250 + 14 * x, 230 - 14 * y], 1)
    return pts + 4 * torch.randn(n, 2, generator=gen)


def moons_pixels(n: int, gen: torch.Generator) -> torch.Tensor:
    """The engine's two moons scaled into a 500-pixel canvas (y down): (250 + 70 x, 250 − 70 y)."""
    p = toy_sample("moons", n, gen)
    return torch.stack([250 + 70 * p[:, 0], 250 - 70 * p[:, 1]], 1)


SHAPES = {"drawn heart": drawn_heart, "moons (pixels)": moons_pixels}


def time_to_target(points: torch.Tensor, fresh: torch.Tensor, objective: str, every: int, **options) -> dict:
    """Train with ``train_toy``'s defaults (``options`` override them); the training seconds and steps at the first
    report whose samples are within FACTOR× the fresh sample's distance, and the ratio at the end."""
    baseline = sliced_wasserstein(fresh, points)
    hit, ratio, record = None, None, None
    for record in engine.train_toy(points, objective=objective, report_every=every, **options):
        if hit is None or record.done:
            x = engine.sample(record.model, schedule="cosine", sampler="ddpm", steps=200, seed=0, n=N)
            ratio = sliced_wasserstein(x, points) / baseline
            if hit is None and ratio <= FACTOR:
                hit = (record.seconds, record.step)
    return {"hit": hit, "final_ratio": ratio, "steps": record.step, "seconds": record.seconds, "baseline": baseline}


def section(_model_name: str = "", every: int = 50, **options) -> Section:
    """The suite's model name is not used: this section trains its own models. ``options`` go to ``train_toy``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = Table(f"Toy training to within {FACTOR:g}× a fresh sample's SWD, {N:,} points, 1 thread",
                      ["shape", "objective", "time to target s", "steps", "anchors 10 s / 30 s", "ratio at end",
                       "steps at end", "training s"])
        figures = {}
        for shape, draw in SHAPES.items():
            gen = torch.Generator().manual_seed(1)
            points, fresh = draw(N, gen), draw(N, gen)
            for objective in OBJECTIVES:
                f = time_to_target(points, fresh, objective, every, **options)
                figures[shape, objective] = f
                if f["hit"]:
                    s, st = f["hit"]
                    anchors = " / ".join("met" if s <= a else "missed" for a in ANCHORS)
                    table.add(shape, objective, f"{s:.1f}", st, anchors, f"{f['final_ratio']:.2f}", f["steps"],
                              f"{f['seconds']:.1f}")
                else:
                    table.add(shape, objective, "—", "—", "not reached", f"{f['final_ratio']:.2f}", f["steps"],
                              f"{f['seconds']:.1f}")
    finally:
        torch.set_num_threads(threads)
    return Section("Toy training", [table], figures=figures)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--steps", type=int, default=None, help="train_toy's steps (default: its own)")
    args = p.parse_args()
    options = {} if args.steps is None else {"steps": args.steps}
    print(section(every=args.every, **options).console())


if __name__ == "__main__":
    main()
