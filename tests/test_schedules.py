"""Schedules against their closed forms and against diffusers' own numbers."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from engine.schedules import (
    SCHEDULES,
    alpha_bar_from_log_snr,
    alpha_bar_from_sigma,
    get_schedule,
    log_snr_from_alpha_bar,
    sigma_from_alpha_bar,
)

DIFFUSERS_NAMES = {"linear": "linear", "quadratic": "scaled_linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid"}


@pytest.mark.parametrize("ours,theirs", DIFFUSERS_NAMES.items())
def test_matches_diffusers_numbers(ours, theirs):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs)
    s = get_schedule(ours)
    # diffusers computes in float32; we compute the same expressions in float64
    torch.testing.assert_close(s.betas.float(), ref.betas, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(s.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-4, atol=1e-7)
    assert get_schedule(theirs).betas.equal(s.betas)  # diffusers' names are accepted as aliases


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 10, 50, 333, 1000])
def test_timestep_spacing_matches_diffusers(spacing, steps):
    ref = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    ref.set_timesteps(steps)
    ours = get_schedule("linear").timesteps(steps, spacing)
    assert ours.tolist() == ref.timesteps.tolist()
    assert len(set(ours.tolist())) == steps and ours.tolist() == sorted(ours.tolist(), reverse=True)


def test_closed_forms():
    T = 1000
    lin = get_schedule("linear")
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(lin.betas[1:] - lin.betas[:-1], torch.full((T - 1,), (0.02 - 1e-4) / (T - 1), dtype=torch.float64))
    quad = get_schedule("quadratic")
    assert torch.allclose(quad.betas.sqrt(), torch.linspace(1e-2, 0.02**0.5, T, dtype=torch.float64))
    cos = get_schedule("cosine")
    f = lambda tau: math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):  # away from the 0.999 cap, ᾱ_t = f((t+1)/T) / f(0)
        assert cos.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    assert cos.betas.max().item() == pytest.approx(0.999)
    const = get_schedule("constant", beta=0.02)
    assert torch.allclose(const.alphas_cumprod, 0.98 ** torch.arange(1, T + 1, dtype=torch.float64))
    sig = get_schedule("sigmoid")
    x = torch.linspace(-6, 6, T, dtype=torch.float64)
    assert torch.allclose(sig.betas, 1e-4 + (0.02 - 1e-4) / (1 + torch.exp(-x)))


def test_ve_schedules_from_sigmas():
    ve = get_schedule("ve-geometric", sigma_min=0.01, sigma_max=50.0)
    assert ve.kind == "ve"
    assert ve.sigmas[0].item() == pytest.approx(0.01) and ve.sigmas[-1].item() == pytest.approx(50.0)
    ratios = ve.sigmas[1:] / ve.sigmas[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric
    k = get_schedule("karras", sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert k.sigmas[0].item() == pytest.approx(0.002) and k.sigmas[-1].item() == pytest.approx(80.0)
    ramp = torch.linspace(0, 1, 1000, dtype=torch.float64)
    expect = (0.002 ** (1 / 7) + ramp * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    assert torch.allclose(k.sigmas, expect, rtol=1e-10)
    # the βs of a VE schedule reproduce its ᾱ through the VP product
    assert torch.allclose(torch.cumprod(1 - k.betas, 0), k.alphas_cumprod, rtol=1e-9)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_is_a_valid_vp_sequence(name):
    s = get_schedule(name)
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float64
    assert s.T == 1000 and ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()  # strictly more noise as t grows
    assert torch.allclose(s.log_snr, -2 * torch.log(s.sigmas))


def test_vp_ve_conversions_round_trip():
    a = torch.cat([torch.logspace(-9, -1e-6, 200, dtype=torch.float64), torch.tensor([0.5, 0.999])]).clamp(max=0.999999)
    sig = sigma_from_alpha_bar(a)
    assert torch.allclose(alpha_bar_from_sigma(sig), a, rtol=1e-10)
    lam = log_snr_from_alpha_bar(a)
    assert torch.allclose(alpha_bar_from_log_snr(lam), a, rtol=1e-10)
    assert torch.allclose(lam, -2 * torch.log(sig), rtol=1e-10)


def test_custom_and_bad_input():
    c = get_schedule("custom", betas=[0.1, 0.2, 0.3])
    assert c.T == 3 and c.alphas_cumprod[-1].item() == pytest.approx(0.9 * 0.8 * 0.7)
    with pytest.raises(ValueError, match="allowed: linear"):
        get_schedule("nope")
    with pytest.raises(ValueError, match="0 < beta < 1"):
        get_schedule("custom", betas=[0.1, 1.5])
    with pytest.raises(ValueError, match="steps must be an integer from 1 to 1000"):
        get_schedule("linear").timesteps(1001)
    with pytest.raises(ValueError, match="spacing"):
        get_schedule("linear").timesteps(10, "middle")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        get_schedule("karras", sigma_min=5.0, sigma_max=1.0)
