"""Sampler maths checked against an oracle: for Gaussian data the optimal ε̂ is known in closed form, so every
sampler driven by it must return samples with the data's mean and covariance (up to the method's known error)."""
import pytest
import torch

import engine
from engine import GaussianModel, generate, sample

MEAN = torch.tensor([0.5, -1.0, 0.25])
COV = torch.tensor([[1.0, 0.6, 0.1], [0.6, 0.5, 0.0], [0.1, 0.0, 0.3]])
N = 4000
# steps per sampler: enough for the method's discretisation error to sit inside the tolerance
# (ddpm at its native 1000 steps: with skipped steps its fixed variances ignore the x̂0 uncertainty, which shows
# on schedules whose smallest noise is large, like constant)
STEPS = {"ddpm": 1000, "ddim": 100, "langevin": 200, "euler-maruyama": 500, "pc": 200, "ode": 40, "dpm-solver++": 25,
         "euler": 100, "heun": 20}
# DPM-Solver++(2M) runs with its registry spacing, trailing, as diffusers recommends: "leading" ends on t = 0, and
# the second order step into it extrapolates x̂0 over a large jump in log-SNR (measured: covariance error 0.16 vs 0.04).
OPTIONS = {"langevin": {"n_steps_each": 10}}
SCHEDS = ["linear", "cosine", "sigmoid", "quadratic", "constant", "ve-geometric", "karras", "flow"]


def expected_cov(schedule: str, steps: int, spacing: str = "leading") -> torch.Tensor:
    """Covariance of the exact output: every sampler ends with x̂0 = E[x0 | x_t] at the last visited level ᾱ,
    whose covariance is ᾱ Σ (ᾱ Σ + (1−ᾱ) I)^{-1} Σ (≈ Σ unless the schedule's smallest noise is large)."""
    s = engine.get_schedule(schedule)
    a = s.alphas_cumprod[s.timesteps(steps, spacing)[-1]].item()
    cov = COV.double()
    return a * cov @ torch.linalg.solve(a * cov + (1 - a) * torch.eye(3, dtype=torch.float64), cov)


@pytest.mark.parametrize("schedule", SCHEDS)
@pytest.mark.parametrize("sampler", list(engine.SAMPLERS))
def test_oracle_mean_and_covariance(sampler, schedule):
    model = GaussianModel(MEAN, COV)
    opts = OPTIONS.get(sampler, {})
    x = sample(model, schedule=schedule, sampler=sampler, steps=STEPS[sampler], seed=1, n=N, **opts).double()
    assert torch.isfinite(x).all()
    # standard error of the mean is ~0.016 at n=4000; of a covariance entry ~0.02
    mean_err = (x.mean(0) - MEAN.double()).abs().max().item()
    spacing = engine.get_schedule(schedule).spacing or engine.SAMPLERS[sampler].spacing
    cov_err = (torch.cov(x.T) - expected_cov(schedule, STEPS[sampler], spacing)).abs().max().item()
    # annealed Langevin lags the shrinking noise (a known bias of few steps per level): looser bound
    cov_tol = 0.15 if sampler == "langevin" else 0.08
    assert mean_err < 0.06, f"mean off by {mean_err:.3f}"
    assert cov_err < cov_tol, f"covariance off by {cov_err:.3f}"


def test_a_wrong_denoiser_is_caught():
    """The oracle test has teeth: an ε̂ off by 10% gives a visibly wrong covariance."""

    class Off(GaussianModel):
        def eps(self, x_t, alpha_bar):
            return 1.1 * super().eps(x_t, alpha_bar)

    x = sample(Off(MEAN, COV), schedule="linear", sampler="ddim", steps=100, seed=1, n=N).double()
    assert (torch.cov(x.T) - COV.double()).abs().max().item() > 0.08


def test_steps_fields_and_nfe():
    model = GaussianModel(MEAN, COV)
    nfe_per_step = {"ddpm": 1, "ddim": 1, "euler-maruyama": 1, "dpm-solver++": 1, "pc": 2, "langevin": 5, "euler": 1}
    for name in engine.SAMPLERS:
        steps = list(generate(model, schedule="cosine", sampler=name, steps=10, seed=0, n=3))
        assert [s.i for s in steps] == list(range(10))
        ts = [s.t for s in steps]
        assert ts == sorted(ts, reverse=True)
        last = steps[-1]
        assert last.x_t.shape == (3, 3) and last.sigma_next == 0.0
        if name in ("ode", "heun"):
            assert last.nfe == 2 * 10 - 1  # Heun: two evaluations per step, Euler on the last
        elif name == "langevin":
            assert last.nfe == 10 * 5 + 1  # 5 per level and the final denoise
        else:
            assert last.nfe == 10 * nfe_per_step[name]
        for s in steps:
            assert s.x0_pred.shape == (3, 3) and s.eps_pred.shape == (3, 3)
            assert s.sigma == pytest.approx(((1 - s.alpha_bar) / s.alpha_bar) ** 0.5)
        deterministic = name in ("ode", "dpm-solver++", "ddim", "euler", "heun")
        assert all(s.noise is None for s in steps) == deterministic


@pytest.mark.parametrize("sampler", list(engine.SAMPLERS))
def test_same_seed_same_result_different_seed_differs(sampler):
    model = GaussianModel(MEAN, COV)
    kw = dict(schedule="linear", sampler=sampler, steps=20, n=8)
    a = sample(model, seed=7, **kw)
    b = sample(model, seed=7, **kw)
    c = sample(model, seed=8, **kw)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_same_seed_same_start_across_schedules_and_samplers():
    """Runs with the same seed start from the same x_T and draw the same per-step noise."""
    model = GaussianModel(MEAN, COV)
    s1 = list(generate(model, schedule="linear", sampler="ddpm", steps=10, seed=3, n=4))
    s2 = list(generate(model, schedule="cosine", sampler="ddpm", steps=10, seed=3, n=4))
    for a, b in zip(s1[:-1], s2[:-1]):
        assert torch.equal(a.noise, b.noise)
    # ddim with η=0 draws nothing per step; its x_T is the same draw as ddpm's
    x_T = torch.randn((4, 3), generator=torch.Generator().manual_seed(3))
    explicit = sample(model, schedule="linear", sampler="ddim", steps=10, seed=999, n=4, x_T=x_T)
    implicit = sample(model, schedule="linear", sampler="ddim", steps=10, seed=3, n=4)
    assert torch.equal(explicit, implicit)


def test_explicit_x_T_is_respected():
    model = GaussianModel(MEAN, COV)
    x_T = torch.full((2, 3), 0.5)
    first = next(iter(generate(model, schedule="linear", sampler="ddim", steps=5, seed=0, n=2, x_T=x_T)))
    a = first.alpha_bar
    expect = (x_T.double() - (1 - a) ** 0.5 * model.eps(x_T, torch.full((2,), a, dtype=torch.float64)).double()) / a**0.5
    torch.testing.assert_close(first.x0_pred.double(), expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"x_T must have shape \(2, 3\)"):
        generate(model, schedule="linear", sampler="ddim", steps=5, seed=0, n=2, x_T=torch.zeros(3, 3))


def test_ddim_eta_one_equals_ddpm_posterior_variance():
    """DDIM with η = 1 and DDPM with fixed_small take the same step from the same state and noise."""
    model = GaussianModel(MEAN, COV)
    a = sample(model, schedule="linear", sampler="ddim", steps=50, seed=4, n=16, eta=1.0)
    b = sample(model, schedule="linear", sampler="ddpm", steps=50, seed=4, n=16)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sampler="nope"), "unknown sampler 'nope'; allowed: ddpm, ddim"),
        (dict(schedule="nope"), "unknown schedule 'nope'"),
        (dict(steps=0), "steps must be an integer from 1 to 1000"),
        (dict(steps=2.5), "steps must be an integer"),
        (dict(seed=-1), r"seed must be an integer from 0 to 4294967295"),
        (dict(seed=2**32), r"seed must be an integer from 0 to 4294967295"),
        (dict(n=0), "n must be an integer"),
        (dict(spacing="middle"), "unknown spacing 'middle'"),
        (dict(eta=0.5, sampler="ddpm"), "sampler 'ddpm' has no option eta; its options: variance"),
        (dict(eta=float("nan")), r"eta must be in \[0, 1\]; got nan"),
        (dict(eta="0.5"), r"eta must be in \[0, 1\]; got '0.5'"),
        (dict(eta=1.5), r"eta must be in \[0, 1\]"),
        (dict(sampler="pc", snr=0.0), r"snr must be in \(0, 1\]"),
        (dict(sampler="pc", sde="xx"), "sde must be one of vp, ve"),
        (dict(sampler="langevin", n_steps_each=2.0), "n_steps_each must be an integer from 1 to 100"),
    ],
)
def test_bad_arguments_fail_when_generate_is_called(kwargs, message):
    args = dict(schedule="linear", sampler="ddim", steps=10, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(GaussianModel(MEAN, COV), **args)


def test_option_ranges_are_checked():
    model = GaussianModel(MEAN, COV)
    for sampler, opts, msg in [
        ("ddim", {"eta": 1.5}, r"eta must be in \[0, 1\]"),
        ("ddpm", {"variance": "huge"}, "variance must be"),
        ("pc", {"snr": 0.0}, r"snr must be in \(0, 1\]"),
        ("pc", {"sde": "xx"}, "sde must be one of vp, ve"),
        ("langevin", {"n_steps_each": 0}, "n_steps_each must be an integer from 1 to 100"),
    ]:
        with pytest.raises(ValueError, match=msg):
            sample(model, schedule="linear", sampler=sampler, steps=5, seed=0, **opts)


def test_not_a_model():
    with pytest.raises(TypeError, match="needs a method eps"):
        generate(object(), schedule="linear", sampler="ddim", steps=5, seed=0)


def test_inference_mode_does_not_leak_to_the_caller():
    it = generate(GaussianModel(MEAN, COV), schedule="linear", sampler="ddim", steps=3, seed=0)
    next(it)
    assert not torch.is_inference_mode_enabled()
    w = torch.ones(2, requires_grad=True)
    (w * 2).sum().backward()  # would fail inside inference mode
    assert w.grad is not None


@pytest.mark.parametrize("sampler, options", [
    ("ddpm", {}), ("ddim", {"eta": 0.5}), ("langevin", {}), ("langevin", {"n_steps_each": 3}), ("euler-maruyama", {}),
    ("pc", {}), ("pc", {"n_corrector": 0}), ("pc", {"n_corrector": 3}), ("ode", {}), ("dpm-solver++", {}),
    ("euler", {}), ("heun", {}),
])
def test_registry_nfe_is_the_count_a_run_makes(sampler, options):
    """The app's work budget and the report read SamplerSpec.nfe: it must equal what a run counts."""
    model = GaussianModel(MEAN, COV)
    for steps in (1, 7):
        last = None
        for last in generate(model, schedule="cosine", sampler=sampler, steps=steps, seed=0, n=2, **options):
            pass
        assert last.nfe == engine.SAMPLERS[sampler].nfe(steps, options), (sampler, options, steps)


def test_default_spacing_is_the_samplers_own():
    """dpm-solver++ called without a spacing runs on trailing timesteps (its best samples); the others on leading."""
    model = GaussianModel(MEAN, COV)
    for sampler in ("dpm-solver++", "ddim"):
        spacing = engine.SAMPLERS[sampler].spacing
        default = list(generate(model, schedule="linear", sampler=sampler, steps=10, seed=3, n=4))
        explicit = list(generate(model, schedule="linear", sampler=sampler, steps=10, seed=3, n=4, spacing=spacing))
        assert [s.t for s in default] == [s.t for s in explicit]
        assert torch.equal(default[-1].x_t, explicit[-1].x_t)
    assert engine.SAMPLERS["dpm-solver++"].spacing == "trailing" and engine.SAMPLERS["ddim"].spacing == "leading"
    first = next(iter(generate(model, schedule="linear", sampler="dpm-solver++", steps=10, seed=3)))
    assert first.t == 999
    # a schedule that names its spacing (flow: trailing, the Euler grid from t ≈ 1) takes precedence over the sampler's
    assert next(iter(generate(model, schedule="flow", sampler="ddim", steps=10, seed=3))).t == 999
