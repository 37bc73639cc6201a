"""Flow matching checked against an oracle: for Gaussian data x_0 ~ N(μ, Σ) the exact velocity of the path
x_t = (1 − t) x_0 + t ε is known in closed form,

    C = (1 − t)² Σ + t² I,   r = C⁻¹ (x − (1 − t) μ),   E[ε | x_t] = t r,   E[x_0 | x_t] = μ + (1 − t) Σ r,
    v(x, t) = E[ε | x_t] − E[x_0 | x_t],

written here apart from the engine, so the engine's links (ε̂ = x + (1 − t) v̂), its ``flow`` schedule and its flow
samplers are checked against something they do not share."""
import math

import pytest
import torch
from torch import nn

import engine
from engine import GaussianModel, sample
from engine.generate import plan
from engine.fields import velocity_field
from engine.models import FlowModel, velocity
from engine.schedules import alpha_bar_from_flow_time, flow_time
from engine.straightness import straightness

MEAN = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6, 0.1], [0.6, 0.5, 0.0], [0.1, 0.0, 0.3]], dtype=torch.float64)


def exact_velocity(x: torch.Tensor, t: torch.Tensor, mean=MEAN, cov=COV) -> torch.Tensor:
    t = t.double().reshape(-1, 1, 1)
    eye = torch.eye(len(mean), dtype=torch.float64)
    c = (1 - t) ** 2 * cov + t**2 * eye
    r = torch.linalg.solve(c, (x.double() - (1 - t[:, :, 0]) * mean).unsqueeze(-1)).squeeze(-1)
    return t[:, :, 0] * r - (mean + (1 - t[:, :, 0]) * (r @ cov.T))


class ExactVelocityNet(nn.Module):
    """A "network" that returns the exact velocity, given log-SNR λ = 2 log((1 − t)/t) as the engine feeds it."""

    def __init__(self, mean=MEAN, cov=COV):
        super().__init__()
        self.mean, self.cov = mean, cov

    def forward(self, x, log_snr):
        return exact_velocity(x, torch.sigmoid(-log_snr.double() / 2), self.mean, self.cov).to(x.dtype)


def flow_oracle(mean=MEAN, cov=COV) -> FlowModel:
    card = {"name": "flow-oracle", "objective": "fm", "noise_range": FlowModel.noise_range(0, 0)}
    return FlowModel(ExactVelocityNet(mean, cov), (len(mean),), card)


def test_flow_time_round_trips_and_matches_the_path():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    a = alpha_bar_from_flow_time(t)
    assert torch.allclose(flow_time(a), t, atol=1e-12)
    # log-SNR of the path α = 1 − t, σ = t is 2 log((1 − t)/t)
    assert torch.allclose(engine.schedules.log_snr_from_alpha_bar(a), 2 * torch.log((1 - t) / t), atol=1e-9)


def test_flow_schedule_is_a_uniform_grid_visited_from_the_top():
    s = engine.get_schedule("flow")
    t = flow_time(s.alphas_cumprod)
    assert torch.allclose(t, torch.arange(1, 1001, dtype=torch.float64) / 1001, atol=1e-12)
    run = plan(GaussianModel(MEAN, COV), schedule="flow", sampler="ddim", steps=8, seed=0)
    visited = [flow_time(torch.tensor(a, dtype=torch.float64)).item() for _, a in run.levels]
    assert visited == pytest.approx([1000 / 1001 * (8 - i) / 8 for i in range(8)], abs=1e-12)


def test_the_flow_models_eps_link_is_the_gaussian_optimum():
    """ε̂ = x + (1 − t) v̂ with the exact velocity is the exact ε̂ of the Gaussian oracle, at every level."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    a = torch.rand(64, generator=gen, dtype=torch.float64) * 0.998 + 0.001
    assert torch.allclose(flow_oracle().eps(x, a), GaussianModel(MEAN, COV).eps(x, a), atol=1e-9)


def test_ddim_on_the_flow_schedule_is_euler_on_the_flow_ode():
    """Euler on dx/dt = v, written here with the exact velocity on the grid the schedule visits, equals the
    engine's DDIM (η = 0) on ``flow`` and its ``euler`` sampler, to float64 precision."""
    steps, n = 8, 256
    x_T = torch.randn(n, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    top = 1000 / 1001
    grid = [top * (steps - i) / steps for i in range(steps)] + [0.0]
    a_top = alpha_bar_from_flow_time(torch.tensor(top, dtype=torch.float64)).item()
    k = math.sqrt(a_top) + math.sqrt(1 - a_top)
    x = x_T / k  # the VP x_T in the path's own coordinates
    for t, t_next in zip(grid, grid[1:]):
        x = x + (t_next - t) * exact_velocity(x, torch.full((n,), t))
    model = GaussianModel(MEAN, COV)
    for sampler in ("ddim", "euler"):
        out = sample(model, schedule="flow", sampler=sampler, steps=steps, seed=0, n=n, x_T=x_T.float()).double()
        # the engine's states are float32; the reference is float64
        assert (out - x).abs().max().item() < 1e-4, sampler


@pytest.mark.parametrize("sampler", ["ddim", "euler", "heun", "dpm-solver++", "ode"])
def test_a_flow_model_runs_through_every_deterministic_sampler(sampler):
    """A velocity model gives the same samples as the ε-oracle through each deterministic sampler (its ε̂ is the
    same), and they have the data's mean and covariance."""
    steps = {"ddim": 100, "euler": 100, "heun": 20, "dpm-solver++": 20, "ode": 40}[sampler]
    kw = dict(schedule="flow", sampler=sampler, steps=steps, seed=1, n=4000)
    x = sample(flow_oracle(), **kw).double()
    assert (x - sample(GaussianModel(MEAN, COV), **kw).double()).abs().max().item() < 1e-3
    assert (x.mean(0) - MEAN).abs().max().item() < 0.06
    assert (torch.cov(x.T) - COV).abs().max().item() < 0.08


def test_heun_is_second_order_where_euler_is_first():
    """On a curved field, halving the steps halves Euler's error and quarters Heun's (near enough)."""
    model = GaussianModel(MEAN, torch.diag(torch.tensor([2.0, 0.05, 0.5], dtype=torch.float64)))
    kw = dict(schedule="flow", seed=2, n=512)
    ref = sample(model, sampler="heun", steps=400, **kw).double()
    err = {(s, n): (sample(model, sampler=s, steps=n, **kw).double() - ref).abs().mean().item()
           for s in ("euler", "heun") for n in (10, 20)}
    assert 1.6 < err["euler", 10] / err["euler", 20] < 2.6
    assert err["heun", 10] / err["heun", 20] > 3.0
    assert err["heun", 20] < err["euler", 20] / 5


def test_straightness_is_zero_for_straight_paths_and_positive_for_curved_ones():
    """Data at one point: every path x_t = (1 − t) μ + t ε is straight, so S = 0 and one Euler step is exact.
    Data spread very unequally bends the paths: S > 0, and more so the more unequal."""
    point = GaussianModel(MEAN, torch.zeros(3, 3, dtype=torch.float64))
    assert straightness(point, steps=20, n=64) < 1e-10
    one_step = sample(point, schedule="flow", sampler="euler", steps=1, seed=0, n=8).double()
    # float32 states: x̂0 = (x − √(1−ᾱ) ε̂)/√ᾱ divides by √ᾱ ≈ 1e-3 at the grid's top, costing 3 of 7 digits
    assert (one_step - MEAN).abs().max().item() < 1e-3
    mild = straightness(GaussianModel(MEAN, torch.diag(torch.tensor([1.0, 0.5, 0.3], dtype=torch.float64))))
    bent = straightness(GaussianModel(MEAN, torch.diag(torch.tensor([4.0, 0.01, 0.3], dtype=torch.float64))))
    assert 1e-4 < mild < bent


def test_the_fm_loss_is_the_velocity_error_and_trains_a_toy():
    model = flow_oracle()
    gen = torch.Generator().manual_seed(0)
    x0 = MEAN + torch.randn(4096, 3, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(COV).T
    eps = torch.randn(4096, 3, generator=gen, dtype=torch.float64)
    t = model.draw_noise_levels(4096, gen)
    assert 1e-4 <= t.min() and t.max() <= 1 - 1e-4
    # the exact velocity is E[ε − x_0 | x_t]: its loss is the irreducible variance, below a wrong field's
    exact = model.loss(x0, t, eps).item()
    model.net.mean = MEAN + 0.3
    assert model.loss(x0, t, eps).item() > exact + 0.05
    *_, last = engine.train_toy(torch.randn(500, 2, generator=gen), objective="fm", steps=60, report_every=60)
    assert math.isfinite(last.loss) and last.model.card["objective"] == "fm"
    out = sample(last.model, schedule="flow", sampler="euler", steps=4, seed=0, n=16)
    assert out.shape == (16, 2) and torch.isfinite(out).all()


def test_velocity_of_any_model_is_its_flow_velocity():
    """models.velocity through the ε-links of the Gaussian oracle equals the closed form, and a flow model's own;
    the Score field's velocity grid is that function on its points."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(32, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    assert torch.allclose(velocity(GaussianModel(MEAN, COV), x, t), exact_velocity(x, t), atol=1e-8)
    assert torch.allclose(velocity(flow_oracle(), x, t), exact_velocity(x, t), atol=1e-12)
    toy = GaussianModel(MEAN[:2], COV[:2, :2])
    field = velocity_field(toy, 0.3, lim=2.0, n=5)
    expected = exact_velocity(field["points"].double(), torch.full((25,), 0.3), MEAN[:2], COV[:2, :2])
    assert torch.allclose(field["velocity"].double(), expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"t must be a number in \(0, 1\)"):
        velocity_field(toy, 1.0)
