"""Class conditioning and classifier-free guidance: ε̂_w = ε̂(x, ∅) + w (ε̂(x, c) − ε̂(x, ∅)) in one batched call,
w = 0 is the unconditional run, every sampler takes it, unconditional models refuse labels, and conditional
training draws its label dropout from the run's generator."""
import pytest
import torch

import engine
from engine.checkpoints import build_model, denoiser_card
from engine.models import Guided
from engine.train import TrainConfig, Trainer

ARCH = {"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
        "num_groups": 4, "num_classes": 10}


@pytest.fixture(scope="module")
def cond():
    """A conditional 8×8 U-Net with random (non-zero) weights, class table included."""
    torch.manual_seed(0)
    card = denoiser_card("cond", "unet", ARCH, "ddpm", (1, 8, 8), data={"dataset": "digits8"},
                         noise_range={"schedules": ["linear"]})
    model = build_model(card).eval()
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


class Counting:
    """Counts network calls and the rows each call saw."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.data_shape, self.card, self.num_classes = model.data_shape, model.card, model.num_classes

    def eps(self, x, a, label=None):
        self.calls.append(len(x))
        return self.model.eps(x, a, label)

    def parameters(self):
        return self.model.parameters()


def test_guided_eps_is_the_cfg_combination_in_one_batched_call(cond):
    x = torch.randn(3, 1, 8, 8)
    a = torch.full((3,), 0.4, dtype=torch.float64)
    label = torch.tensor([1, 5, 7])
    counted = Counting(cond)
    with torch.no_grad():
        out = Guided(counted, label, 3.0).eps(x, a)
        c = cond.eps(x, a, label)
        u = cond.eps(x, a)
    assert counted.calls == [6]  # both branches, one call
    torch.testing.assert_close(out, u + 3.0 * (c - u), rtol=1e-4, atol=1e-5)
    assert (c - u).abs().max() > 1e-3  # the label matters, so the check above is not vacuous


def test_w0_equals_the_unconditional_run_and_w1_the_conditional(cond):
    kw = dict(schedule="cosine", sampler="ddim", steps=8, seed=3, n=4)
    uncond = engine.sample(cond, **kw)
    torch.testing.assert_close(engine.sample(cond, label=2, guidance_scale=0.0, **kw), uncond)
    guided = engine.sample(cond, label=2, guidance_scale=3.0, **kw)
    plain = engine.sample(cond, label=2, **kw)
    assert (guided - uncond).abs().max() > 1e-3 and (plain - guided).abs().max() > 1e-3


def test_random_classes_are_the_draws_after_x_T_so_the_seed_fixes_them(cond):
    """label "random": each sample's class drawn uniformly from the run's generator right after x_T (so x_T is the
    unlabelled run's), which makes the run the explicit-label run with those classes, reproducible from its seed."""
    gen = torch.Generator().manual_seed(11)
    x_T = torch.randn(64, 1, 8, 8, generator=gen)
    classes = torch.randint(10, (64,), generator=gen).tolist()
    assert len(set(classes)) == 10  # every class is drawn
    ddim = dict(schedule="cosine", sampler="ddim", steps=6, seed=11, n=64)  # deterministic after x_T
    drawn = engine.sample(cond, label="random", **ddim)
    torch.testing.assert_close(drawn, engine.sample(cond, label=classes, x_T=x_T, **ddim), rtol=0, atol=0)
    ddpm = dict(ddim, sampler="ddpm")  # per-step noise too: the same seed, the same run
    torch.testing.assert_close(engine.sample(cond, label="random", **ddpm), engine.sample(cond, label="random", **ddpm),
                               rtol=0, atol=0)
    guided = engine.sample(cond, label="random", guidance_scale=3.0, **ddim)
    assert torch.isfinite(guided).all() and (guided - drawn).abs().max() > 1e-3
    with pytest.raises(ValueError, match="unconditional"):
        engine.sample(engine.load_model("mnist-ddpm"), schedule="linear", sampler="ddim", steps=2, seed=0,
                      label="random")


@pytest.mark.parametrize("sampler", list(engine.SAMPLERS))
def test_every_sampler_runs_guided_with_per_sample_labels(cond, sampler):
    x = engine.sample(cond, schedule="linear", sampler=sampler, steps=4, seed=0, n=3, label=[0, 4, 9],
                      guidance_scale=2.0)
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"label": 10}, "from 0 to 9"),
    ({"label": [1, 2]}, "list of 3"),
    ({"label": "3"}, "integer class"),
    ({"label": 1, "guidance_scale": -1.0}, "guidance_scale must be a number from 0"),
    ({"guidance_scale": 3.0}, "needs a label"),
])
def test_bad_labels_and_scales_are_refused_clearly(cond, kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.sample(cond, schedule="linear", sampler="ddim", steps=2, seed=0, n=3, **kwargs)


def test_unconditional_models_refuse_a_label():
    model = engine.load_model("mnist-ddpm")
    with pytest.raises(ValueError, match="mnist-ddpm is unconditional"):
        next(engine.generate(model, schedule="linear", sampler="ddim", steps=2, seed=0, label=3))
    with pytest.raises(ValueError, match="unconditional"):
        next(engine.img2img(model, torch.zeros(1, 1, 28, 28), strength=0.5, schedule="linear", sampler="ddim",
                            steps=4, seed=0, label=3))


def test_editing_takes_a_label(cond):
    x0 = torch.zeros(2, 1, 8, 8)
    kw = dict(schedule="linear", steps=6, seed=1)
    steps = list(engine.img2img(cond, x0, strength=0.5, sampler="ddim", label=3, guidance_scale=2.0, **kw))
    assert len(steps) == 3
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 4:, :] = 0
    out = list(engine.inpaint(cond, x0, mask, jump_length=2, resamples=2, label=[1, 2], guidance_scale=2.0, **kw))
    assert torch.equal(out[-1].x_t[..., :4, :], x0[..., :4, :])
    x_T = engine.invert(cond, x0, schedule="linear", steps=6, label=5)
    back = engine.sample(cond, schedule="linear", sampler="ddim", steps=6, seed=0, n=2, x_T=x_T, label=5)
    assert (back - x0).abs().max() < (engine.sample(cond, schedule="linear", sampler="ddim", steps=6, seed=0, n=2,
                                                    x_T=x_T) - x0).abs().max()


def tiny_cond(tmp_path, **over) -> TrainConfig:
    cfg = dict(name="tinycond", dataset="digits8", objective="ddpm", arch="unet", arch_config=dict(ARCH),
               steps=6, batch_size=8, lr=1e-3, warmup_steps=2, log_every=2, save_every=3, label_dropout=0.5,
               run_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "ck"), device="cpu")
    cfg.update(over)
    return TrainConfig(**cfg)


def test_conditional_training_resumes_exactly_and_exports_a_conditional_card(tmp_path):
    straight = Trainer(tiny_cond(tmp_path / "a"))
    straight.run(quiet=True)
    first = Trainer(tiny_cond(tmp_path / "b"))
    first.run(steps=3, quiet=True)
    second = Trainer(tiny_cond(tmp_path / "b"))
    second.run(quiet=True)
    for (k, v), (_, w) in zip(straight.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(v, w), k
    assert straight.model.net.label_emb.weight.abs().sum() > 0  # the class table learned
    model = engine.load_model("tinycond", directory=tmp_path / "a" / "ck")
    assert model.num_classes == 10 and model.class_names == [str(i) for i in range(10)]


def test_label_dropout_per_cycle_keeps_the_earlier_cycles_and_changes_the_later(tmp_path):
    """fashion-cond's fourth cycle trains the null class on more batches; its first cycles must stay as trained."""
    from engine.train import label_dropout

    cycles = dict(steps=8, lr_decay_start=6, lr_restarts=[4])
    one = Trainer(tiny_cond(tmp_path / "a", label_dropout=0.5, **cycles))
    two = Trainer(tiny_cond(tmp_path / "b", label_dropout=[0.5, 0.9], **cycles))
    assert [label_dropout(two.cfg, s) for s in range(8)] == [0.5] * 4 + [0.9] * 4
    one.run(steps=4, quiet=True)
    two.run(steps=4, quiet=True)
    assert all(torch.equal(v, w) for v, w in zip(one.model.state_dict().values(), two.model.state_dict().values()))
    one.run(quiet=True)
    two.run(quiet=True)
    assert not torch.equal(one.model.net.label_emb.weight, two.model.net.label_emb.weight)
    for bad in ([0.5], [0.5, 0.5, 0.5], [0.5, 1.0]):
        with pytest.raises(ValueError, match="one per cycle"):
            tiny_cond(tmp_path, label_dropout=bad, **cycles)


def test_init_from_starts_as_the_unconditional_checkpoint(tmp_path, monkeypatch):
    arch = {"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
            "num_groups": 4}
    Trainer(tiny_cond(tmp_path, name="base", arch_config=arch, steps=2)).run(quiet=True)
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(tmp_path / "ck"))
    t = Trainer(tiny_cond(tmp_path, name="fromit", init_from="base"))
    base = engine.load_model("base", directory=tmp_path / "ck")
    x, a = torch.randn(2, 1, 8, 8), torch.full((2,), 0.3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(t.model.eps(x, a, torch.tensor([1, 2])), base.eps(x, a))
    assert t.card["init_from"]["name"] == "base"
    pinned = tiny_cond(tmp_path, name="pinned", init_from="base", init_from_sha256=t.card["init_from"]["sha256"])
    assert Trainer(pinned).card["init_from"] == t.card["init_from"]  # the pinned weights are the shipped ones
    with pytest.raises(ValueError, match="retrained since"):
        Trainer(tiny_cond(tmp_path, name="stale", init_from="base", init_from_sha256="0" * 64))
    with pytest.raises(ValueError, match="num_classes=3 does not fit"):
        Trainer(tiny_cond(tmp_path, name="bad", arch_config={**ARCH, "num_classes": 3}))


def test_compare_panels_take_guidance_and_match_their_lone_runs(cond):
    from engine.compare import compare
    panels = [dict(schedule="cosine", sampler="ddim", steps=5),
              dict(schedule="cosine", sampler="ddim", steps=5, label=3, guidance_scale=1.0),
              dict(schedule="cosine", sampler="ddim", steps=5, label=3, guidance_scale=4.0)]
    comp = compare(cond, panels, seed=2, n=2)
    *_, last = comp
    assert comp.batches == 5  # one batched call per round: 2 + 2 + 4 rows
    assert comp.batch_rows == 5 * 8
    for p, st in zip(panels, last):
        alone = engine.sample(cond, seed=2, n=2, **p)
        torch.testing.assert_close(st.x_t, alone, rtol=1e-3, atol=2e-3)
    assert "class 3, w=4" in comp.panels[2].title()
