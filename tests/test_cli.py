"""The command line: sample a grid from a checkpoint, list what is on offer, and fail clearly on bad input."""
import pytest
from PIL import Image

from engine.cli import main
from engine.train import TrainConfig, Trainer


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = TrainConfig(
        name="tiny-moons", dataset="moons", arch="mlp", arch_config={"hidden": 32, "depth": 1},
        steps=2, batch_size=16, save_every=2, run_dir=str(tmp / "runs"), export_dir=str(tmp / "ck"), device="cpu",
    )
    Trainer(cfg).run(quiet=True)
    return tmp / "ck"


def test_sample_writes_a_picture(ckpt_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt_dir))
    out = tmp_path / "grid.png"
    code = main(["sample", "--model", "tiny-moons", "--schedule", "cosine", "--sampler", "ddim", "--steps", "5",
                 "--seed", "0", "--n", "64", "--option", "eta=0.5", "--out", str(out)])
    assert code == 0
    assert Image.open(out).size[0] > 100
    assert "64 samples, 5 network evaluations" in capsys.readouterr().out


def test_sample_and_eval_take_a_class(ckpt_dir, tmp_path, monkeypatch, capsys):
    """--label (a class or "random") and --guidance-scale reach the engine: a conditional model samples them, an
    unconditional one refuses them saying why; eval records the label in the card's metrics key."""
    out = tmp_path / "cond.png"
    assert main(["sample", "--model", "mnist-cond", "--steps", "2", "--n", "4", "--label", "random", "--out",
                 str(out)]) == 0 and out.is_file()
    assert main(["sample", "--model", "mnist-cond", "--steps", "2", "--n", "4", "--label", "7", "--guidance-scale",
                 "3", "--out", str(out)]) == 0
    assert "4 samples, 2 network evaluations" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sample", "--model", "mnist-cond", "--label", "seven"])
    assert "label must be a class index or 'random'; got 'seven'" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt_dir))
    assert main(["eval", "--model", "tiny-moons", "--steps", "2", "--n", "50", "--label", "random"]) == 2
    assert "tiny-moons is unconditional" in capsys.readouterr().err


def test_info_lists_models_and_samplers(ckpt_dir, monkeypatch, capsys):
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt_dir))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "models: tiny-moons" in out and "sampler ddim: eta=0.0" in out
    assert main(["info", "tiny-moons"]) == 0
    assert '"objective": "ddpm"' in capsys.readouterr().out


def test_bad_input_is_a_clear_error(ckpt_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt_dir))
    assert main(["sample", "--model", "tiny-moons", "--steps", "5000", "--out", str(tmp_path / "x.png")]) == 2
    assert "steps must be an integer from 1 to 1000" in capsys.readouterr().err
    assert main(["sample", "--model", "../etc/passwd", "--out", str(tmp_path / "x.png")]) == 2
    assert "never a path" in capsys.readouterr().err
    assert main(["sample", "--model", "tiny-moons", "--option", "eta=2", "--out", str(tmp_path / "x.png")]) == 2
    assert "eta must be in [0, 1]" in capsys.readouterr().err


def test_train_classifier_makes_the_evaluators_classifier(tmp_path, monkeypatch, capsys):
    from engine import checkpoints
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(tmp_path))
    assert main(["train-classifier", "--dataset", "digits8", "--epochs", "1"]) == 0
    assert '"held_out_accuracy"' in capsys.readouterr().out
    assert checkpoints.list_models(tmp_path, kind="classifier") == ["digits8-classifier"]


def test_report_steps_restrict_the_grid_and_are_checked(capsys):
    from engine import report
    line = report.command_line(["mnist-ddpm"], 500, 0, "docs", "cpu", False, [("steps", None, (10, 20))])
    assert line.endswith("--steps 10,20")  # the page's command reproduces the restricted grid
    for bad in ("10,x", "0,10", "10,10", ""):
        with pytest.raises(SystemExit):
            main(["report", "--steps", bad])
        assert "steps must be distinct positive whole numbers" in capsys.readouterr().err


def test_eval_record_stores_the_figures_in_the_card(ckpt_dir, monkeypatch, capsys):
    from engine import checkpoints
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt_dir))
    sha = checkpoints.model_card("tiny-moons")["sha256"]
    assert main(["eval", "--model", "tiny-moons", "--sampler", "ddim", "--schedule", "cosine", "--steps", "5",
                 "--n", "200", "--record"]) == 0
    card = checkpoints.model_card("tiny-moons")
    figures = card["metrics"]["ddim/cosine/5/n=200/seed=0"]
    assert figures["swd"] > 0 and figures["swd_baseline"] > 0 and figures["nfe"] == 5
    assert card["sha256"] == sha
    checkpoints.load_model("tiny-moons")  # the card still matches its weights


def test_report_long_run_schedules_must_be_in_the_grid(capsys):
    assert main(["report", "--models", "mnist-ddpm", "--long-run-schedules", "linear,nope"]) == 2
    assert "nope not in the grid's schedules" in capsys.readouterr().err
    assert main(["report", "--models", "mnist-ddpm", "--schedules", "mnist-ddpm=linear,nope"]) == 2
    assert "schedules: nope not in the grid's schedules" in capsys.readouterr().err
    assert main(["report", "--models", "mnist-ddpm", "--steps", "mnist-ncsn=10"]) == 2
    assert "mnist-ncsn not among --models (mnist-ddpm)" in capsys.readouterr().err


def test_report_narrows_the_grid_per_model(monkeypatch):
    """--steps/--schedules/--long-run-schedules for every model, and MODEL=... for one (its own value wins, in any
    order); the page's command spells every one back."""
    from engine import report
    seen = {}
    monkeypatch.setattr(report, "run_report", lambda models, **kw: seen.update(kw, models=models) or
                        {"skipped": {}, "page": "p", "figures": [], "computed": 0, "reused": 0, "cache": "c"})
    assert main(["report", "--models", "a,b", "--steps", "b=20", "--steps", "10,1000", "--schedules", "b=linear,ve-geometric",
                 "--long-run-schedules", "linear", "--device", "cpu"]) == 0
    a, b = seen["grids"]["a"], seen["grids"]["b"]
    assert seen["grid"] == a and a.steps == (10, 1000) and a.long_run_schedules == ("linear",)
    assert a.schedules == report.FULL.schedules
    assert b.steps == (20,) and b.schedules == {"ddpm": ("linear",), "dsm": ("linear", "ve-geometric"),
                                                             "fm": ()}
    assert [c.steps for c in report.plan_cells("b", "dsm", b)] == [20] * 8
    assert seen["command"].endswith("--steps b=20 --steps 10,1000 --schedules b=linear,ve-geometric "
                                    "--long-run-schedules linear")
