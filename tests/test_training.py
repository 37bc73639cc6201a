"""Training: the loss falls, a resumed run equals an uninterrupted one, torchrun ranks stay identical, and
checkpoints round-trip through safetensors with their hash checked."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import engine
from engine.checkpoints import CheckpointError, load_model
from engine.train import TrainConfig, Trainer, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(tmp_path, **over) -> TrainConfig:
    cfg = dict(
        name="tiny", dataset="digits8", objective="ddpm", arch="unet",
        arch_config={"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4], "num_groups": 4},
        steps=6, batch_size=8, lr=1e-3, warmup_steps=2, log_every=2, save_every=3,
        run_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "ck"), device="cpu",
    )
    cfg.update(over)
    return TrainConfig(**cfg)


def fixed_batch_loss(trainer: Trainer, n: int = 4096) -> float:
    """The objective on one fixed batch (same x_0, noise levels and ε every time)."""
    gen = torch.Generator().manual_seed(123)
    x0, _ = trainer.data.batch(n, gen)
    level = trainer.model.draw_noise_levels(n, gen)
    eps = torch.randn(x0.shape, generator=gen)
    with torch.no_grad():
        return float(trainer.loss_fn(x0, level, eps))


@pytest.mark.parametrize("objective", ["ddpm", "dsm"])
def test_loss_falls_on_a_toy(tmp_path, objective):
    cfg = TrainConfig(
        name=f"moons-{objective}", dataset="moons", objective=objective, arch="mlp", arch_config={"hidden": 64, "depth": 2},
        steps=300, batch_size=256, lr=2e-3, warmup_steps=10, log_every=50, save_every=300,
        run_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "ck"), device="cpu",
    )
    trainer = Trainer(cfg)
    before = fixed_batch_loss(trainer)
    trainer.run(quiet=True)
    after = fixed_batch_loss(trainer)
    print(f"{objective}: fixed-batch loss {before:.4f} -> {after:.4f}")
    assert after < 0.95 * before, (before, after)  # v-parameterised init is already the best linear denoiser


def test_resume_equals_uninterrupted(tmp_path):
    straight = Trainer(tiny(tmp_path / "a"))
    straight.run(quiet=True)
    first = Trainer(tiny(tmp_path / "b"))
    first.run(steps=3, quiet=True)  # stops at step 3 with its state saved
    log = tmp_path / "b" / "runs" / "tiny" / "log.jsonl"
    with log.open("a") as f:  # a run killed at step 5 logged step 4 after its last saved state
        f.write(json.dumps({"step": 4, "loss": 9.0, "wall_time_s": 1.0}) + "\n")
    resumed = Trainer(tiny(tmp_path / "b"))
    out = resumed.run(quiet=True)
    assert out["resumed"] and resumed.step == 6
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in logged] == [2, 4, 6] and 9.0 not in [r["loss"] for r in logged]
    for (k, v), (k2, v2) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    for (k, v), (_, v2) in zip(straight.ema.module.state_dict().items(), resumed.ema.module.state_dict().items()):
        assert torch.equal(v, v2), k


def test_export_loads_and_samples(tmp_path):
    cfg = tiny(tmp_path)
    Trainer(cfg).run(quiet=True)
    assert engine.list_models(cfg.export_dir) == ["tiny"]
    model = load_model("tiny", directory=cfg.export_dir)
    card = json.loads((tmp_path / "ck" / "tiny.json").read_text())
    assert card["training"]["steps"] == 6 and card["objective"] == "ddpm" and card["data_shape"] == [1, 8, 8]
    assert model.data_shape == (1, 8, 8)
    x = engine.sample(model, schedule="cosine", sampler="ddim", steps=5, seed=0, n=2)
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()
    assert (tmp_path / "runs" / "tiny" / "samples_0000006.png").is_file()
    # the weights file holds plain tensors only (safetensors), equal to the EMA weights
    state = load_file(str(tmp_path / "ck" / "tiny.safetensors"))
    assert set(state) == set(model.net.state_dict())


def test_damaged_checkpoints_give_clear_errors(tmp_path):
    cfg = tiny(tmp_path, steps=1, save_every=1)
    Trainer(cfg).run(quiet=True)
    d = tmp_path / "ck"
    weights = d / "tiny.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors does not match its card.*truncated, corrupt or was altered"):
        load_model("tiny", directory=d)
    altered = bytearray(good)
    altered[-5] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(altered))
    with pytest.raises(CheckpointError, match="does not match its card"):
        load_model("tiny", directory=d)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors is missing"):
        load_model("tiny", directory=d)
    with pytest.raises(CheckpointError, match="unknown model 'other'"):
        load_model("other", directory=d)
    for bad in ("../tiny", "/etc/passwd", "TINY", "a" * 65, "", None):
        with pytest.raises(ValueError, match="never a path"):
            load_model(bad, directory=d)
    (d / "tiny.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model("tiny", directory=d)


@pytest.mark.xdist_group("subprocesses")
def test_torchrun_two_ranks_end_identical(tmp_path):
    cfg = tiny(tmp_path, steps=4, save_every=4)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.__dict__))
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "engine", "train", "--config", str(path), "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    digests = [(run / f"weights_rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    # ...and the ranks really trained on different data: a single-process run ends elsewhere
    single = Trainer(tiny(tmp_path / "single", steps=4, save_every=4))
    single.run(quiet=True)
    exported = load_model("tiny", directory=tmp_path / "ck")
    assert not all(torch.equal(a, b) for a, b in zip(single.ema.module.net.state_dict().values(), exported.net.state_dict().values()))


def test_learning_rate_warms_up_holds_then_decays_to_min_lr(tmp_path):
    from engine.train import learning_rate

    cfg = tiny(tmp_path, steps=100, lr=1e-3, warmup_steps=10, lr_decay_start=60, min_lr=1e-5)
    lrs = [learning_rate(cfg, s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up over 10 steps
    assert lrs[10:61] == [pytest.approx(1e-3)] * 51  # constant until the decay starts
    assert all(a > b for a, b in zip(lrs[60:], lrs[61:]))  # then strictly decreasing
    assert lrs[80] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half-way: the cosine's midpoint
    assert learning_rate(cfg, 100) == pytest.approx(1e-5)
    assert [learning_rate(tiny(tmp_path, steps=100, lr=1e-3, warmup_steps=10), s) for s in (50, 99)] == [1e-3, 1e-3]
    with pytest.raises(ValueError, match="lr_decay_start must be in"):
        tiny(tmp_path, steps=100, lr_decay_start=100)


@pytest.mark.parametrize("objective", ["ddpm", "dsm"])
def test_a_step_draws_data_then_levels_then_noise_from_one_generator(tmp_path, objective):
    """The order a resumed run depends on: replaying the generator from its state before a step gives the inputs
    that step's loss saw."""
    trainer = Trainer(tiny(tmp_path, objective=objective))
    state = trainer.gen.get_state()
    seen = []
    loss_fn = trainer.loss_fn
    trainer.loss_fn = lambda *inputs: seen.append(inputs) or loss_fn(*inputs)
    trainer.train_step()
    gen = torch.Generator().set_state(state)
    n = trainer.cfg.batch_size
    x0, _ = trainer.data.batch(n, gen)
    level = trainer.model.draw_noise_levels(n, gen)
    eps = torch.randn(x0.shape, generator=gen)
    for got, expected in zip(seen[0], (x0, level, eps)):
        assert torch.equal(got, expected)


def test_dsm_loss_is_the_eps_loss_in_the_ve_scaling(tmp_path):
    """σ² ‖s_θ(x_0 + σε, σ) + ε/σ‖² = ‖ε̂(x_t, ᾱ) − ε‖² with x_t = √ᾱ (x_0 + σε), ᾱ = 1/(1+σ²), by the link
    ε̂ = −σ s: the two objectives weight the noise levels alike."""
    model = Trainer(tiny(tmp_path, objective="dsm")).model.double()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 1, 8, 8, generator=gen, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    sigma = model.draw_noise_levels(8, gen)
    alpha_bar = 1 / (1 + sigma**2)
    a = alpha_bar.reshape(-1, 1, 1, 1)
    with torch.no_grad():
        eps_mse = (model.eps(a.sqrt() * (x0 + sigma.reshape(-1, 1, 1, 1) * eps), alpha_bar) - eps).pow(2).mean()
        torch.testing.assert_close(model.loss(x0, sigma, eps), eps_mse, rtol=1e-9, atol=0)


def test_a_warm_restart_extends_an_annealed_run_without_changing_its_first_cycle(tmp_path):
    """mnist-ncsn's extension: the finished run (100 steps, decay from 60) is the first cycle of the longer one."""
    from engine.train import learning_rate

    first = tiny(tmp_path, steps=100, lr=1e-3, warmup_steps=10, lr_decay_start=60)
    longer = tiny(tmp_path, steps=150, lr=1e-3, warmup_steps=10, lr_decay_start=110, lr_restarts=[100])
    assert [learning_rate(longer, s) for s in range(100)] == [learning_rate(first, s) for s in range(100)]
    assert learning_rate(longer, 100) == pytest.approx(1e-4)  # warms up again from the restart
    assert learning_rate(longer, 109) == pytest.approx(1e-3) and learning_rate(longer, 110) == pytest.approx(1e-3)
    assert learning_rate(longer, 130) == pytest.approx(0.5e-3)  # decays over its last 40 steps, like the first cycle
    assert learning_rate(longer, 150) == pytest.approx(0.0)
    for bad in ([120, 100], [0], [30], [150]):
        with pytest.raises(ValueError, match="lr_restarts must be"):
            tiny(tmp_path, steps=150, lr_decay_start=110, lr_restarts=bad)
