"""Likelihood checked where the answer is known: for Gaussian data the exact denoiser is known in closed form, so
the probability-flow ODE must give log N(x; μ, Σ + σ_0² I) and the variational bound must sit close below it."""
import math

import pytest
import torch

import engine
from engine.likelihood import bits_per_dim, log_likelihood

MEAN = torch.tensor([0.5, -1.0, 0.25])
COV = torch.tensor([[1.0, 0.6, 0.1], [0.6, 0.5, 0.0], [0.1, 0.0, 0.3]])


def _data(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return MEAN.double() + torch.randn(n, 3, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(COV.double()).T


def _true_log_p(x, schedule):
    """log p_{σ_0}: the data law blurred by the schedule's smallest noise level, where the ODE starts."""
    s0 = float(engine.get_schedule(schedule).sigmas.min())
    cov = COV.double() + s0**2 * torch.eye(3, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(MEAN.double(), cov).log_prob(x)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "karras"])
def test_ode_equals_the_gaussian_log_density(schedule):
    model, x = engine.GaussianModel(MEAN, COV), _data()
    r = log_likelihood(model, x, schedule=schedule, method="ode")
    # what remains is the prior N(0, (1+σ_T²) I) standing in for p_{σ_T} (largest at karras' σ_T = 80)
    assert (r.log_p - _true_log_p(x, schedule)).abs().max() < 0.05
    assert r.method == "ode" and r.nfe > 10


def test_hutchinson_divergence_is_unbiased():
    model = engine.GaussianModel(MEAN, COV)
    x = _data(1).repeat(400, 1)  # one point, 400 independent probe vectors
    exact = log_likelihood(model, x[:1], schedule="cosine", method="ode").log_p
    est = log_likelihood(model, x, schedule="cosine", method="ode", exact_divergence=False, seed=3).log_p
    assert abs(est.mean() - exact) < 4 * est.std() / math.sqrt(len(est)) + 1e-3
    assert est.std() > 0.1  # it is an estimate: the probes differ


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_vlb_is_a_close_lower_bound_with_its_terms(schedule):
    model, x = engine.GaussianModel(MEAN, COV), _data()
    runs = [log_likelihood(model, x, schedule=schedule, method="vlb", seed=k) for k in range(12)]
    mean = torch.stack([r.log_p for r in runs]).mean(0)
    true = _true_log_p(x, schedule)
    gap = (true - mean) / 3  # nats per dimension; each point's mean has a Monte Carlo error of ~0.15
    # a bound on average (the gap is the KL between the fixed-variance reverse chain and the true one), and close
    assert 0 < gap.mean() < 0.6 and (gap > -0.3).all() and (gap < 1.2).all(), gap
    r = runs[0]
    total = r.terms["prior"] + r.terms["diffusion"].sum(0) + r.terms["decoder"]
    assert torch.allclose(-r.log_p, total)
    assert r.terms["diffusion"].shape == (999, 8) and r.terms["t"][0] == 999 and r.terms["t"][-1] == 1
    assert (r.terms["diffusion"] >= 0).all() and (r.terms["prior"] >= 0).all()


def test_same_seed_same_bound_and_shorter_chains():
    model, x = engine.GaussianModel(MEAN, COV), _data(4)
    a = log_likelihood(model, x, schedule="cosine", method="vlb", steps=50, seed=5)
    b = log_likelihood(model, x, schedule="cosine", method="vlb", steps=50, seed=5)
    assert torch.equal(a.log_p, b.log_p) and a.nfe == 50 and a.terms["diffusion"].shape == (49, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "elbo"}, "unknown method"),
    ({"steps": 0}, "steps must be"),
    ({"bins": 1}, "bins must be"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        log_likelihood(engine.GaussianModel(MEAN, COV), _data(2), **kwargs)
    with pytest.raises(ValueError, match="shape"):
        log_likelihood(engine.GaussianModel(MEAN, COV), torch.zeros(2, 4))


def test_bits_per_dim_of_held_out_digits():
    from engine.data import load_dataset

    images, _ = load_dataset("mnist", "test")
    model = engine.load_model("mnist-ddpm")
    vlb = bits_per_dim(model, images[:2], schedule="cosine", method="vlb", steps=100)
    assert vlb.shape == (2,) and ((vlb > 0.3) & (vlb < 8)).all(), vlb
    noise = bits_per_dim(model, torch.rand(2, 1, 28, 28) * 2 - 1, schedule="cosine", method="vlb", steps=100)
    assert (noise > vlb + 1).all()  # uniform noise is far less likely than digits
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        bits_per_dim(model, images[:1] * 3)
