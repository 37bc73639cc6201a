"""engine.forward (q(x_t|x_0)), engine.compare (lock-step panels from one seed) and engine.fields (2-D score)."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import engine
from engine import compare as C
from engine import fields as F
from engine import forward as FW


def gaussian2d():
    return engine.GaussianModel(torch.tensor([0.5, -0.5]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))


# ------------------------------------------------------------------------------------------------ forward ---

def test_noise_images_closed_form_and_seeded():
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    ts = [0, 10, 500, 999]
    out = FW.noise_images(x0, "linear", ts, seed=7)
    assert out.shape == (4, 3, 1, 8, 8)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    a = engine.get_schedule("linear").alphas_cumprod
    for k, t in enumerate(ts):
        expect = math.sqrt(a[t]) * x0 + math.sqrt(1 - a[t]) * eps
        assert torch.allclose(out[k], expect, atol=1e-6)
    assert torch.equal(out, FW.noise_images(x0, "linear", ts, seed=7))
    assert not torch.equal(out, FW.noise_images(x0, "linear", ts, seed=8))
    # same seed, other schedule: same ε, only ᾱ differs
    cos = FW.noise_images(x0, "cosine", [999], seed=7)[0]
    ac = engine.get_schedule("cosine").alphas_cumprod[999]
    assert torch.allclose(cos, math.sqrt(ac) * x0 + math.sqrt(1 - ac) * eps, atol=1e-6)


def test_noise_images_statistics():
    """x_t has mean √ᾱ x_0 and variance 1−ᾱ over many draws."""
    x0 = torch.full((20000, 1), 0.8)
    out = FW.noise_images(x0, "cosine", [300], seed=0)[0]
    a = float(engine.get_schedule("cosine").alphas_cumprod[300])
    assert abs(out.mean().item() - math.sqrt(a) * 0.8) < 0.02
    assert abs(out.var().item() - (1 - a)) < 0.03


def test_signal_stats_and_bad_t():
    st = FW.signal_stats("karras", [0, 999])
    assert st[0]["sigma"] == pytest.approx(0.002, rel=1e-6) and st[1]["sigma"] == pytest.approx(80.0, rel=1e-6)
    assert st[0]["log_snr"] == pytest.approx(-2 * math.log(0.002), rel=1e-6)
    for bad in ([1000], [-1], [1.5], [], ["3"]):
        with pytest.raises(ValueError, match="t|at least one"):
            FW.noise_images(torch.zeros(1, 2), "linear", bad, seed=0)
    with pytest.raises(ValueError, match="seed"):
        FW.noise_images(torch.zeros(1, 2), "linear", [1], seed=-1)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "I;16", "CMYK", "1", "F", "RGB"])
def test_image_to_tensor_any_mode(mode):
    img = Image.new("RGB", (37, 91), (200, 30, 90)).convert(mode)
    x = FW.image_to_tensor(img, (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    y = FW.image_to_tensor(img, (3, 8, 8))
    assert y.shape == (1, 3, 8, 8)


def test_image_to_tensor_values_and_limits():
    white = FW.image_to_tensor(Image.new("L", (5, 5), 255), (1, 4, 4))
    assert torch.allclose(white, torch.ones(1, 1, 4, 4))
    clear = Image.new("RGBA", (6, 6), (0, 0, 0, 0))  # transparent → composited on white
    assert torch.allclose(FW.image_to_tensor(clear, (1, 4, 4)), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="at most"):
        FW.image_to_tensor(Image.new("L", (100, 100)), (1, 8, 8), max_pixels=1000)
    with pytest.raises(ValueError, match="not an image"):
        FW.image_to_tensor(Image.new("L", (10, 10)), (2,))


# ------------------------------------------------------------------------------------------------ compare ---

def test_compare_same_seed_same_start_and_noise():
    model = gaussian2d()
    panels = [dict(schedule="linear", sampler="ddpm", steps=10), C.Panel("linear", "ddpm", 10),
              C.Panel("cosine", "ddim", 5, options={"eta": 1.0}), C.Panel("karras", "ode", 3)]
    comp = C.compare(model, panels, seed=11, n=4)
    history = list(comp)
    assert all(comp.done) and len(history) == 10 == comp.rounds
    # each panel matches its own stand-alone run, step by step
    for k, p in enumerate(comp.panels):
        alone = list(engine.generate(model, schedule=p.schedule, sampler=p.sampler, steps=p.steps, seed=11, n=4,
                                     **p.options))
        seen = []
        for item in history:
            if not seen or item[k] is not seen[-1]:
                seen.append(item[k])
        assert len(seen) == len(alone)
        for a, b in zip(seen, alone):
            assert torch.equal(a.x_t, b.x_t) and a.t == b.t
    # identical settings → identical trajectories; the stochastic panels drew the same first noise
    assert all(torch.equal(h[0].x_t, h[1].x_t) for h in history)
    assert torch.equal(history[0][0].noise, history[0][2].noise)
    # finished panels keep their last Step; list length is the panel count
    assert history[-1][3] is history[2][3] and all(len(h) == 4 for h in history)
    assert all(e >= 0 for e in comp.elapsed)


class _RecordingModel:
    """Wraps a model and records the batch size of every eps call."""

    def __init__(self, model):
        self.model, self.data_shape, self.calls, self.inputs = model, model.data_shape, [], []

    def eps(self, x, a):
        self.calls.append(x.shape[0])
        self.inputs.append(x.clone())
        return self.model.eps(x, a)


def test_compare_batches_network_calls_and_matches_alone():
    """Panels with 1, 2 and 2 evaluations per step and different step counts share batched network calls,
    and each panel's samples equal its stand-alone run (real U-Net: batching changes nothing beyond float noise)."""
    net = engine.load_model("mnist-ddpm")
    model = _RecordingModel(net)
    panels = [C.Panel("cosine", "ddim", 4), C.Panel("karras", "ode", 3), C.Panel("linear", "pc", 2),
              C.Panel("cosine", "dpm-solver++", 5, spacing="trailing")]
    comp = C.compare(model, panels, seed=3, n=2)
    final = list(comp)[-1]
    nfe = sum(st.nfe for st in final)
    assert comp.batch_rows == 2 * nfe == sum(model.calls)
    assert comp.batches == len(model.calls) < nfe
    assert max(model.calls) == 2 * len(panels)  # the first round sends every panel in one call
    for p, st in zip(panels, final):
        alone = engine.sample(net, schedule=p.schedule, sampler=p.sampler, steps=p.steps, seed=3, n=2,
                              spacing=p.spacing)
        # batch size changes the convolution kernels' summation order (~1e-6 per call); few-step samplers amplify
        # it (measured up to 5e-4 for dpm-solver++ at 5 steps). 2e-3 stays below a quarter of one grey level (2/255).
        assert torch.allclose(st.x_t, alone, atol=2e-3), (p.title(), (st.x_t - alone).abs().max())


def test_compare_abandoned_midway_stops_its_threads():
    import threading
    comp = C.compare(gaussian2d(), [C.Panel("linear", "ddpm", 50), C.Panel("cosine", "langevin", 50)], seed=0)
    for _ in zip(range(3), comp):
        pass
    comp.close()
    assert not any(t.name.startswith("compare-panel") and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("where", ["network", "sampler"])
def test_compare_error_reaches_caller_and_stops_threads(where):
    import threading

    class Broken(_RecordingModel):
        def eps(self, x, a):
            if len(self.calls) == 2:
                if where == "network":
                    raise RuntimeError("network failed")
                return torch.zeros(x.shape[0], 3)  # the panel's own arithmetic fails on this shape
            return super().eps(x, a)

    comp = C.compare(Broken(gaussian2d()), [C.Panel("linear", "ddim", 5), C.Panel("cosine", "ddim", 5)], seed=0)
    with pytest.raises(RuntimeError, match="network failed" if where == "network" else "size"):
        list(comp)
    assert not any(t.name.startswith("compare-panel") and t.is_alive() for t in threading.enumerate())


def test_compare_errors():
    model = gaussian2d()
    with pytest.raises(ValueError, match="1 to 6 panels"):
        C.compare(model, [], seed=0)
    with pytest.raises(ValueError, match="1 to 6 panels"):
        C.compare(model, [C.Panel("linear", "ddim", 2)] * 7, seed=0)
    with pytest.raises(ValueError, match="panel 2: unknown schedule 'nope'"):
        C.compare(model, [C.Panel("linear", "ddim", 2), C.Panel("nope", "ddim", 2)], seed=0)
    with pytest.raises(ValueError, match="panel 1: sampler 'ode' has no option eta"):
        C.compare(model, [C.Panel("linear", "ode", 2, options={"eta": 0.5})], seed=0)
    assert C.Panel("cosine", "ddim", 5, options={"eta": 0.5}).title() == "cosine · ddim · 5 steps (eta=0.5)"


def _steps_of(history: list, k: int) -> list:
    """Panel k's own Steps from a comparison's rounds (a finished panel repeats its last Step)."""
    seen = []
    for item in history:
        if not seen or item[k] is not seen[-1]:
            seen.append(item[k])
    return seen


def test_compare_panels_from_two_models_match_their_lone_runs():
    """"8 steps: flow matching vs DDPM" on oracles: a velocity model (flow·euler, flow·ddim) beside an ε-model
    (cosine·ddim, cosine·dpm-solver++), one comparison, one seed. Each panel is what generate gives for its model
    alone; both models see the identical x_T; each model is called once per batch, with its own panels' rows only."""
    from tests.test_flow import COV, MEAN, flow_oracle

    flow, eps = _RecordingModel(flow_oracle()), _RecordingModel(engine.GaussianModel(MEAN, COV))
    panels = [C.Panel("flow", "euler", 8), C.Panel("cosine", "ddim", 8, model=eps), C.Panel("flow", "ddim", 8),
              C.Panel("cosine", "dpm-solver++", 8, model=eps)]
    comp = C.compare(flow, panels, seed=4, n=3)
    history = list(comp)
    assert comp.models == [flow, eps, flow, eps]
    for k, p in enumerate(comp.panels):
        alone = list(engine.generate(comp.models[k].model, schedule=p.schedule, sampler=p.sampler, steps=p.steps,
                                     seed=4, n=3))
        seen = _steps_of(history, k)
        assert len(seen) == len(alone) == 8
        for a, b in zip(seen, alone):
            assert a.t == b.t and torch.allclose(a.x_t, b.x_t, atol=1e-5), (k, (a.x_t - b.x_t).abs().max())
    # the first network call of each model sees x_T of all its panels: the same tensor for the flow and the ε-model
    x_T = torch.randn((3, 3), generator=torch.Generator().manual_seed(4))
    assert [torch.equal(x, x_T) for x in flow.inputs[0].split(3) + eps.inputs[0].split(3)] == [True] * 4
    # one call per model per batch, 2 panels × 3 rows each; the calls add up to the batches
    assert flow.calls[0] == eps.calls[0] == 6 and comp.batches == len(flow.calls) + len(eps.calls)
    assert comp.batch_rows == sum(flow.calls) + sum(eps.calls)


def test_compare_refuses_models_of_different_shapes():
    from tests.test_flow import flow_oracle

    with pytest.raises(ValueError, match=r"panel 2: its model makes data of shape \(3,\), the comparison's model "
                                         r"\(2,\)"):
        C.compare(gaussian2d(), [C.Panel("linear", "ddim", 2), C.Panel("flow", "euler", 2, model=flow_oracle())],
                  seed=0)
    with pytest.raises(TypeError, match="not a model"):
        C.compare(gaussian2d(), [C.Panel("linear", "ddim", 2, model=object())], seed=0)


# ------------------------------------------------------------------------------------------------- fields ---

def test_score_field_matches_gaussian_score():
    """For Gaussian data p_σ = N(μ, Σ + σ² I), so ∇ log p_σ(x) = −(Σ + σ² I)^{-1}(x − μ)."""
    model = gaussian2d()
    sigma = 0.7
    f = F.score_field(model, sigma, lim=2.0, n=7)
    assert f["points"].shape == (49, 2) and f["score"].shape == (49, 2)
    cov = model.cov + sigma**2 * torch.eye(2, dtype=torch.float64)
    expect = -(torch.linalg.solve(cov, (f["points"].double() - model.mean).T)).T
    assert torch.allclose(f["score"].double(), expect, atol=1e-4)
    assert f["alpha_bar"] == pytest.approx(1 / (1 + sigma**2))
    # the grid is row-major in y then x
    assert f["points"][1].tolist() == pytest.approx([f["xs"][1].item(), -2.0])


def test_score_field_errors_and_density():
    with pytest.raises(ValueError, match="2-D toy model"):
        F.score_field(engine.GaussianModel(torch.zeros(3), torch.eye(3)), 0.5)
    with pytest.raises(ValueError, match="sigma"):
        F.score_field(gaussian2d(), 0.0)
    with pytest.raises(ValueError, match="unknown toy"):
        F.noisy_density("nope", 0.5)
    d = F.noisy_density("8gaussians", 0.3, lim=5.0, n=50, m=500)
    dens = d["density"].numpy()
    cell = (d["xs"][1] - d["xs"][0]).item() ** 2
    assert dens.shape == (50, 50) and abs(dens.sum() * cell - 1) < 0.1  # a density: integrates to ≈ 1
    assert dens[25, 25] < dens.max() / 5  # 8 gaussians: a hole in the middle


def test_particles_via_generate():
    model = gaussian2d()
    steps = F.particles(model, schedule="cosine", sampler="ddim", steps=100, seed=3, n=4000)
    assert len(steps) == 100 and steps[-1].x_t.shape == (4000, 2)
    x = steps[-1].x_t.double()
    assert torch.allclose(x.mean(0), model.mean, atol=0.06)
    assert torch.allclose(torch.cov(x.T), model.cov, atol=0.08)
    again = F.particles(model, schedule="cosine", sampler="ddim", steps=100, seed=3, n=4000)
    assert torch.equal(again[-1].x_t, steps[-1].x_t)
    assert F.toy_of(model) is None
    with pytest.raises(ValueError, match="2-D toy model"):
        F.particles(engine.GaussianModel(torch.zeros(1), torch.eye(1)), schedule="cosine", sampler="ddim", steps=2, seed=0)


def test_grid_bounds():
    xs, pts = F.grid(1.0, 3)
    assert np.allclose(xs.numpy(), [-1, 0, 1]) and pts.shape == (9, 2)
    with pytest.raises(ValueError):
        F.grid(1.0, 1)
