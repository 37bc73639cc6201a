"""How straight a model's sampling paths are: Liu et al. (2023)'s straightness of its probability-flow ODE,

    S = ∫₀¹ E ‖(x_1 − x_0) − v(x_t, t)‖² dt,

for any model, through its velocity on the flow path x_t = (1 − t) x_0 + t ε: v̂ = ε̂ − x̂0, which every model
gives (a flow model directly, an ε- or score model through the links). S = 0 when every path is a straight line
(then one Euler step is exact); the more the paths bend, the more steps a solver needs.

The trajectory is the ODE's own: Euler in t (``samplers.euler``) on the ``flow`` schedule, from x_T at the grid's
top t₀ = T/(T+1) to the sample x_0. The straight velocity is the run's mean velocity (x_{t₀} − x_0)/t₀, and the
integral is the left Riemann sum over the steps, divided by t₀. ‖·‖² is averaged over the data's dimensions, so
the figure is per dimension, in the path's own units (data in [−1, 1] for images), and comparable across models.
"""
from __future__ import annotations

import torch

from .generate import plan
from .samplers import flow_coords


@torch.inference_mode()
def straightness(model, *, steps: int = 100, n: int = 256, seed: int = 0) -> float:
    """S of ``model`` (any protocol model) along ``n`` Euler paths of ``steps`` steps from the seed's x_T."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"n must be an integer from 1 to 100000; got {n!r}")
    run = plan(model, schedule="flow", sampler="euler", steps=steps, seed=seed)
    x_T = torch.randn((n, *model.data_shape), generator=run.gen)
    t0, k0 = flow_coords(run.levels[0][1])
    times = [flow_coords(a)[0] for _, a in run.levels] + [0.0]
    velocities, x = [], None
    for step in run.start(model, x_T):
        velocities.append((step.eps_pred - step.x0_pred).double())
        x = step.x_t
    straight = (x_T.double().to(x.device) / k0 - x.double()) / t0
    total = sum((t - t_next) * (straight - v).pow(2).mean().item()
                for t, t_next, v in zip(times, times[1:], velocities))
    return total / t0
