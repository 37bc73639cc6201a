"""Distillation by reflow (engine/distill.py): a 1-step student of an exact teacher matches the teacher's ODE map,
a resumed run gives the weights of an uninterrupted one, and the config refuses what it cannot do."""
import dataclasses
import json

import pytest
import torch

import engine
from engine.distill import DistillConfig, Distiller, distill

MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.5, 0.6], [0.6, 0.5]])


def _config(tmp_path, **changes) -> DistillConfig:
    """A 2-D student (the residual MLP of the Train tab) of the Gaussian oracle: its data shape is a toy's."""
    base = dict(name="tiny-reflow", dataset="moons", arch="mlp", arch_config={"hidden": 64, "depth": 2},
                teacher="gaussian-oracle", pairs=2048, pair_sampler="heun", pair_steps=32, pair_batch=512,
                steps=1200, batch_size=256, lr=5e-3, warmup_steps=50, lr_decay_start=600, ema_decay=0.99,
                log_every=100, save_every=400, run_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "ck"),
                device="cpu")
    return DistillConfig(**{**base, **changes})


def _exact_map(z: torch.Tensor) -> torch.Tensor:
    """The flow ODE's map from N(0, I) to N(μ, Σ): x = μ + Σ^{1/2} z (each eigendirection of Σ is an independent
    1-D Gaussian path, whose ODE map is the monotone affine one)."""
    evals, evecs = torch.linalg.eigh(COV.double())
    root = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    return (MEAN.double() + z.double() @ root.T).float()


def test_a_one_step_student_matches_the_teachers_ode_map(tmp_path):
    """Stated error: one Euler step of the student lands within 0.03 (RMS; the data spread about 1) of the exact map
    (measured 0.007), where one Euler step of the teacher itself misses it by more than 1 (measured 1.4: its paths
    curve, the reflowed student's are straight)."""
    teacher = engine.GaussianModel(MEAN, COV)
    cfg = _config(tmp_path)
    trainer = Distiller(cfg, teacher)
    trainer.run(quiet=True)
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(123))
    exact = _exact_map(z)
    assert (trainer.x - _exact_map(trainer.z)).pow(2).sum(1).mean().sqrt() < 0.01  # the pairs are the ODE map
    student = engine.load_model("tiny-reflow", directory=tmp_path / "ck")
    one = engine.sample(student, schedule="flow", sampler="euler", steps=1, seed=0, n=len(z), x_T=z)
    teacher_one = engine.sample(teacher, schedule="flow", sampler="euler", steps=1, seed=0, n=len(z), x_T=z)
    rms = lambda a: (a - exact).pow(2).sum(1).mean().sqrt().item()  # noqa: E731
    assert rms(one) < 0.03 and rms(teacher_one) > 1.0
    card = engine.model_card("tiny-reflow", tmp_path / "ck")
    assert card["distilled_from"]["teacher"] == "gaussian-oracle" and card["distilled_from"]["method"] == "reflow"
    assert card["sampling"] == {"sampler": "euler", "schedule": "flow", "steps": [1, 2, 4]}


def test_a_resumed_run_gives_the_uninterrupted_runs_weights(tmp_path):
    teacher = engine.GaussianModel(MEAN, COV)
    cfg = _config(tmp_path / "a", steps=40, pairs=512, save_every=20, lr_decay_start=None)
    whole = Distiller(cfg, teacher)
    whole.run(quiet=True)
    half = dataclasses.replace(cfg, run_dir=str(tmp_path / "b" / "runs"), export_dir=str(tmp_path / "b" / "ck"))
    distill(half, steps=20, quiet=True, teacher=teacher)
    resumed = Distiller(half, teacher)
    assert resumed.run(quiet=True)["resumed"]
    for (k, a), (_, b) in zip(whole.ema.module.state_dict().items(), resumed.ema.module.state_dict().items()):
        assert torch.equal(a, b), k
    pairs = json.loads((tmp_path / "b" / "runs" / "tiny-reflow" / "state.json").read_text())
    assert pairs["step"] == 40


def test_the_config_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="objective 'fm'"):
        _config(tmp_path, objective="ddpm")
    with pytest.raises(ValueError, match="method must be one of reflow"):
        _config(tmp_path, method="progressive")
    with pytest.raises(ValueError, match="name the teacher"):
        _config(tmp_path, teacher="")
    teacher = engine.GaussianModel(MEAN, COV)
    teacher.card = {**teacher.card, "sha256": "a" * 64}
    with pytest.raises(ValueError, match="the config pins"):
        Distiller(_config(tmp_path, teacher_sha256="b" * 64), teacher)
    with pytest.raises(ValueError, match="makes data of shape"):
        Distiller(_config(tmp_path), engine.GaussianModel(torch.zeros(3), torch.eye(3)))


def test_the_cli_distils_a_shipped_teacher_and_the_card_names_it(tmp_path, monkeypatch):
    """``python -m engine distill --config``: the student starts as the teacher (init_from), and its card names the
    teacher's sha256 and how to sample it."""
    from engine.checkpoints import build_model, save_model
    from engine.cli import main

    unet = {"type": "unet", "config": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mults": [1, 2],
                                       "num_res_blocks": 1, "attention_resolutions": [], "num_groups": 4}}
    card = {"arch": unet, "objective": "fm", "data_shape": [1, 8, 8], "data": {"dataset": "digits8", "split": "train"},
            "noise_range": engine.models.OBJECTIVES["fm"].noise_range(0.002, 200.0)}
    torch.manual_seed(0)
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(tmp_path / "ck"))
    save_model(build_model(card), "tiny-fm", tmp_path / "ck", card)
    sha = engine.model_card("tiny-fm")["sha256"]
    config = {"name": "tiny-fast", "dataset": "digits8", "teacher": "tiny-fm", "teacher_sha256": sha,
              "init_from": "tiny-fm", "init_from_sha256": sha, "arch": "unet", "arch_config": unet["config"],
              "pairs": 64, "pair_steps": 2, "pair_batch": 32, "steps": 3, "batch_size": 16, "sample_every": 0,
              "run_dir": str(tmp_path / "runs"), "device": "cpu"}
    path = tmp_path / "tiny-fast.json"
    path.write_text(json.dumps(config))
    assert main(["distill", "--config", str(path), "--quiet"]) == 0
    student = engine.model_card("tiny-fast")
    assert student["distilled_from"]["sha256"] == sha and student["init_from"]["sha256"] == sha
    assert student["sampling"]["steps"] == [1, 2, 4] and student["training"]["steps"] == 3
    assert main(["distill", "--config", str(path), "--set", "teacher_sha256=" + "0" * 64]) == 2  # a clear refusal
