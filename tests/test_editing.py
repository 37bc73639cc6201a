"""Editing (engine/editing.py): img2img, RePaint inpainting, DDIM inversion and slerp interpolation on the shipped
mnist-ddpm model and held-out digits, with small step counts."""
import pytest
import torch

import engine
from engine.data import load_dataset
import engine.editing
from engine.editing import (MAX_RESAMPLES, img2img, img2img_levels, inpaint, inpaint_nfe, interpolate, invert,
                            repaint_walk, slerp)

GREY = 127.5  # one grey level is 1/127.5 in [-1, 1]


@pytest.fixture(scope="module")
def model():
    return engine.load_model("mnist-ddpm")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist", "test")[0][:4]


def test_img2img_keeps_more_of_the_image_at_lower_strength(model, digits):
    changes = []
    for strength in (0.2, 0.8):
        steps = list(img2img(model, digits, strength=strength, schedule="cosine", sampler="ddim", steps=20, seed=0))
        assert len(steps) == int(20 * strength)
        assert steps[0].t == img2img_levels("cosine", 20, strength)[0][0]
        changes.append((steps[-1].x_t - digits).abs().mean().item())
    assert changes[0] < changes[1]
    a = list(img2img(model, digits, strength=0.5, schedule="cosine", sampler="ddpm", steps=10, seed=4))[-1].x_t
    b = list(img2img(model, digits, strength=0.5, schedule="cosine", sampler="ddpm", steps=10, seed=4))[-1].x_t
    assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    ({"strength": 0}, r"strength must be in \(0, 1\]"),
    ({"strength": 1.5}, r"strength must be in \(0, 1\]"),
    ({"strength": 0.01}, "runs no step"),
    ({"sampler": "rk45"}, "unknown sampler"),
])
def test_img2img_refuses_bad_settings(model, digits, kwargs, message):
    args = {"strength": 0.5, "schedule": "cosine", "sampler": "ddim", "steps": 20, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        img2img(model, digits, **args)
    with pytest.raises(ValueError, match="shape"):
        img2img(model, digits[:, :, :14], strength=0.5, schedule="cosine", sampler="ddim", steps=20, seed=0)


def test_inpainting_keeps_known_pixels_exactly(model, digits):
    mask = torch.ones(1, 1, 28, 28)
    mask[..., 14:] = 0  # fill the right half
    steps = list(inpaint(model, digits, mask, schedule="linear", steps=12, seed=0, jump_length=4, resamples=2))
    out = steps[-1].x_t
    assert torch.equal(out * mask, digits * mask)
    assert len(steps) == steps[-1].nfe == inpaint_nfe(12, 4, 2)
    assert (out * (1 - mask)).abs().sum() > 0 and torch.isfinite(out).all()


def test_repaint_walk():
    assert repaint_walk(5, 2, 1) == [(i, i + 1) for i in range(5)]  # resamples=1: plain replacement
    walk = repaint_walk(6, 2, 3)
    assert walk.count((2, 0)) == 2 and walk.count((4, 2)) == 2 and walk[-1] == (5, 6)
    assert inpaint_nfe(6, 2, 3) == 6 + 2 * 2 * 2


@pytest.mark.parametrize("mask, message", [
    (torch.ones(1, 1, 28, 28), "nothing to inpaint"),
    (torch.full((1, 1, 28, 28), 0.5), "0 .* or 1"),
    (torch.zeros(1, 1, 14, 14), "does not fit"),
    ([[0, 1]], "must be a tensor"),
])
def test_inpainting_refuses_bad_masks(model, digits, mask, message):
    with pytest.raises(ValueError, match=message):
        inpaint(model, digits, mask, schedule="linear", steps=10, seed=0)
    with pytest.raises(ValueError, match="resamples"):
        inpaint(model, digits, torch.zeros(1, 1, 28, 28), schedule="linear", steps=10, seed=0,
                resamples=MAX_RESAMPLES + 1)


def test_ddim_inversion_reconstructs_held_out_digits(model, digits):
    errors = []
    for steps in (10, 20):
        x_T = invert(model, digits, schedule="cosine", steps=steps)
        back = engine.sample(model, schedule="cosine", sampler="ddim", steps=steps, seed=0, n=4, x_T=x_T, eta=0.0)
        errors.append((back - digits).abs().mean().item() * GREY)
    # measured on these digits: 7.8 grey levels at 10 steps, 2.9 at 20, 1.4 at 50, 0.7 at 100 (docs/RESULTS.md)
    assert errors[1] < errors[0] and errors[1] < 5, errors


def test_slerp_keeps_the_norm_where_a_line_shrinks_it():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(784, generator=gen), torch.randn(784, generator=gen)
    w = torch.linspace(0, 1, 9)
    path = slerp(a, b, w)
    norms = path.norm(dim=1)
    lo, hi = min(a.norm(), b.norm()), max(a.norm(), b.norm())
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert ((norms > lo - 1e-3) & (norms < hi + 1e-3)).all()
    assert ((a + b) / 2).norm() < 0.8 * lo  # the straight line's midpoint leaves the shell


def test_interpolation_ends_on_the_seeds_samples(model):
    steps = list(interpolate(model, schedule="cosine", sampler="ddim", steps=10, k=4, seeds=(0, 1)))
    strip = steps[-1].x_t
    assert strip.shape == (4, 1, 28, 28)
    for end, seed in ((0, 0), (-1, 1)):
        alone = engine.sample(model, schedule="cosine", sampler="ddim", steps=10, seed=seed, n=1)
        assert torch.allclose(strip[end], alone[0], atol=1e-4)
    with pytest.raises(ValueError, match="deterministic sampler"):
        interpolate(model, schedule="cosine", sampler="ddim", steps=10, eta=0.5)
    with pytest.raises(ValueError, match="k must be"):
        interpolate(model, schedule="cosine", sampler="ode", steps=10, k=1)


def test_inversion_steps_end_on_invert_x_T(model, digits):
    steps = list(engine.editing.inversion(model, digits, schedule="cosine", steps=5))
    assert [s.i for s in steps] == list(range(5)) and steps[-1].nfe == 5
    assert [s.t for s in steps] == sorted(s.t for s in steps)  # towards more noise
    assert torch.equal(steps[-1].x_t, invert(model, digits, schedule="cosine", steps=5))
