"""Lock-step comparison of several schedule / sampler / step-count settings from the same seed.

Every panel is an ``engine.generate`` run with the SAME ``seed``. ``generate`` draws x_T first and then every
per-step noise z from one CPU ``torch.Generator(seed)``, so all panels start from the same x_T ~ N(0, I) and their
k-th noise draw is the same tensor: differences between panels come from the schedule (the ᾱ_t it visits), the
sampler's update rule and the number of steps, not from luck. (Panels whose samplers draw a different number of
times per step see the same stream consumed at different rates.)

The runs advance in lock-step: each round moves every unfinished panel by one step, in panel order, and yields
the list of the panels' latest ``Step``; a panel that finished keeps its last Step, and the iteration ends when
all have finished. Wall time spent inside each panel is kept in ``Comparison.elapsed``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

from .generate import generate
from .samplers import Step

MAX_PANELS = 6


@dataclass
class Panel:
    """One setting to compare: a schedule, a sampler, a number of steps, a spacing and sampler options."""

    schedule: str
    sampler: str
    steps: int
    spacing: str = "leading"
    options: dict = field(default_factory=dict)

    def label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.schedule} · {self.sampler} · {self.steps} steps" + (f" ({opts})" if opts else "")


class Comparison:
    """Iterate to run the panels in lock-step; each item is the list of the panels' latest Steps.

    Attributes: ``panels``, ``steps`` (the latest Step of each panel, None before its first), ``done`` (per
    panel), ``elapsed`` (seconds spent in each panel), ``rounds`` (rounds so far).
    All arguments are checked when the Comparison is made (ValueError naming the panel).
    """

    def __init__(self, model, panels: list[Panel | dict], *, seed: int, n: int = 1, device=None):
        if not 1 <= len(panels) <= MAX_PANELS:
            raise ValueError(f"compare needs 1 to {MAX_PANELS} panels; got {len(panels)}")
        self.panels = [p if isinstance(p, Panel) else Panel(**p) for p in panels]
        self._runs: list[Iterator[Step]] = []
        for k, p in enumerate(self.panels, 1):
            try:
                self._runs.append(generate(model, schedule=p.schedule, sampler=p.sampler, steps=p.steps, seed=seed,
                                           n=n, spacing=p.spacing, device=device, **p.options))
            except ValueError as err:
                raise ValueError(f"panel {k}: {err}") from None
        self.steps: list[Step | None] = [None] * len(self.panels)
        self.done = [False] * len(self.panels)
        self.elapsed = [0.0] * len(self.panels)
        self.rounds = 0

    def __iter__(self) -> Iterator[list[Step]]:
        while not all(self.done):
            for k, run in enumerate(self._runs):
                if self.done[k]:
                    continue
                t0 = time.perf_counter()
                try:
                    self.steps[k] = next(run)
                except StopIteration:
                    self.done[k] = True
                self.elapsed[k] += time.perf_counter() - t0
            if all(self.done):
                break
            self.rounds += 1
            yield list(self.steps)


def compare(model, panels: list[Panel | dict], *, seed: int, n: int = 1, device=None) -> Comparison:
    """``Comparison(model, panels, seed=seed, n=n)``: lock-step runs of ``panels`` from the same seed."""
    return Comparison(model, panels, seed=seed, n=n, device=device)
