"""The results page: the grid is what the page promises, the cell cache resumes and notices new weights, the page
lists every cell and the quality-bar verdicts, and the figures are written."""
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import engine
from engine import evaluate, report
from engine.checkpoints import build_model, load_model, save_model
from engine.cli import main
from engine.devices import resolve_device

TINY_UNET = {"type": "unet", "config": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mults": [1, 2],
                                        "num_res_blocks": 1, "attention_resolutions": [], "num_groups": 4}}
ROOT = Path(__file__).resolve().parents[1]
TINY = report.Grid(steps=(2, 3), schedules={"ddpm": ("linear", "karras"), "dsm": ("ve-geometric",)}, n=20)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Untrained tiny U-Nets on the 8×8 digits (one per objective) and an untrained digits classifier."""
    d = tmp_path_factory.mktemp("report") / "ck"
    torch.manual_seed(0)
    for name, objective in (("tiny-eps", "ddpm"), ("tiny-score", "dsm")):
        card = {"arch": TINY_UNET, "objective": objective, "data_shape": [1, 8, 8],
                "data": {"dataset": "digits8", "split": "train"}, "training": {"steps": 0}}
        save_model(build_model(card), name, d, card)
    evaluate.train_classifier("digits8", epochs=0, directory=d)  # untrained: its features still measure FD
    return d


def test_full_grid_is_what_the_page_promises():
    eps = report.plan_cells("m", "ddpm", report.FULL)
    score = report.plan_cells("m", "dsm", report.FULL)
    for plan, samplers, long_run in ((eps, {"ddpm", "ddim", "dpm-solver++", "ode"}, {"ddpm", "ddim"}),
                                     (score, {"langevin", "euler-maruyama", "pc", "ode"}, {"euler-maruyama"})):
        assert len(set(plan)) == len(plan)
        assert {c.sampler for c in plan} == samplers
        assert {"linear", "cosine", "sigmoid", "constant", "karras"} <= {c.schedule for c in plan} <= set(engine.SCHEDULES)
        assert {c.sampler for c in plan if c.steps == 1000} == long_run
        for c in plan:
            assert c.steps in (10, 20, 50, 100, 1000)
            assert c.spacing == engine.SAMPLERS[c.sampler].spacing  # the sampler's own, as generate() picks it
    assert len(eps) == 5 * (4 * 4 + 2) and len(score) == 6 * (4 * 4 + 1)
    assert "ve-geometric" in {c.schedule for c in score}
    # every bar is judged on cells the full grid runs
    objective = {"mnist-ddpm": "ddpm", "fashion-ddpm": "ddpm", "mnist-ncsn": "dsm"}
    for bar in report.BARS:
        plan = {(c.sampler, c.steps) for c in report.plan_cells(bar.model, objective[bar.model], report.FULL)}
        assert all((bar.sampler, s) in plan for s in bar.steps)
        assert any(sampler == bar.sampler for sampler, _ in plan)
        assert bar.reference is None or bar.reference in plan
    text = "\n".join(report.page.grid_lines(report.FULL))
    assert "1000 only for ddpm, ddim, euler-maruyama (1000 NFE at 1000 steps" in text
    assert "trailing for dpm-solver++." in text and "leading for ddpm, ddim, ode, langevin" in text
    # the NFE the page states are the registry's
    nfe = {s: engine.SAMPLERS[s].nfe(1000) for s in ("ode", "pc", "langevin")}
    assert f"would cost {nfe['ode']}, {nfe['pc']} and {nfe['langevin']} NFE" in text
    # a leading 10-step run starts at t = 900; trailing starts at t = 999, so only leading gets the warning
    assert "With leading spacing a 10-step run starts at t = 900, not 999" in text and "With trailing" not in text


def _record(cell: report.Cell, fd: float, nn_ratio: float = 1.0) -> dict:
    nfe = engine.SAMPLERS[cell.sampler].nfe(cell.steps, cell.options)
    return {"model": cell.model, "sampler": cell.sampler, "schedule": cell.schedule, "steps": cell.steps,
            "spacing": cell.spacing, "options": cell.options, "n": 500, "nfe": nfe, "fd": fd, "fd_baseline": 1.0,
            "fd_ratio": fd, "confident": 0.9, "coverage_min_class": 0.08, "nn_ratio": nn_ratio,
            "seconds": 0.01 * nfe, "device": "cpu (test)", "seed": 0}


def test_bar_verdicts_follow_the_numbers(tmp_path):
    cells = report.plan_cells("mnist-ddpm", "ddpm", report.FULL)
    records = []
    for c in cells:
        fd = 5.0
        if (c.sampler, c.steps) == ("ddim", 50):
            fd = 1.5 if c.schedule == "cosine" else 2.5  # passes on cosine only
        if (c.sampler, c.steps) == ("ddpm", 1000):
            fd = 1.2  # FD passes, memorisation fails below
        if c.sampler == "dpm-solver++" and c.steps == 20:
            fd = 1.7 if c.schedule == "linear" else 1.9  # 1.7 / 1.2 = 1.42 ≤ 1.5 on linear; 1.58 elsewhere
        records.append(_record(c, fd, nn_ratio=0.5 if (c.sampler, c.steps) == ("ddpm", 1000) else 1.0))
    verdicts = {(b.model, b.sampler): report.judge_bar(b, records if b.model == "mnist-ddpm" else [], 500)
                for b in report.BARS}
    ddim = verdicts["mnist-ddpm", "ddim"]
    assert ddim["verdict"] == "pass" and ddim["passing"] == ["cosine"] and ddim["shown"]["schedule"] == "cosine"
    ddpm = verdicts["mnist-ddpm", "ddpm"]
    assert ddpm["verdict"] == "fail" and [ok for *_, ok in ddpm["figures"]] == [True, True, True, False]
    dpm = verdicts["mnist-ddpm", "dpm-solver++"]
    assert dpm["verdict"] == "pass" and dpm["passing"] == ["linear"] and dpm["figures"][0][1] == pytest.approx(1.7 / 1.2)
    assert verdicts["mnist-ncsn", "pc"]["verdict"] == "not run"
    assert report.judge_bar(report.BARS[0], records, 499)["verdict"] == "not judged (n < 500)"

    page = report.render_page(command="python -m engine report", grid=report.FULL, n=500, seed=0,
                              results={"mnist-ddpm": records}, setups={}, skipped={}, samples={"mnist-ddpm": records[0]},
                              models=[])
    bar_rows = [line for line in page.splitlines() if line.startswith("| mnist-") or line.startswith("| fashion-")]
    assert len(bar_rows) == len(report.BARS)
    assert "| cosine | ddim · cosine · 50 steps |" in bar_rows[0] and bar_rows[0].endswith("**pass** |")
    assert "NN ratio 0.50 ✗" in bar_rows[1] and bar_rows[1].endswith("**fail** |")
    assert all(row.endswith("**not run** |") for row in bar_rows[3:])
    assert "Verdicts: 2 pass, 1 fail, 3 not run." in page
    assert "Lowest FD: 1.2 (1.20× the real-vs-real baseline) with ddpm · " in page
    assert "Fewest NFE within 1.5× the baseline: 50 (ddim · cosine · 50 steps, 1.50×)." in page
    assert "Fewest NFE within 2× the baseline: 20 (dpm-solver++ · linear · 20 steps, 1.70×)." in page
    narrow = report.FULL.narrowed(steps=(20, 100), schedules=("linear", "ve-geometric"))
    page = report.render_page(command="c", grid=report.FULL, n=500, seed=0, results={}, setups={}, skipped={},
                              samples={}, models=[], grids={"mnist-ncsn": narrow})
    assert "- **mnist-ncsn** runs a narrower grid: steps 20, 100; schedules linear, ve-geometric." in page
    with pytest.raises(ValueError, match="schedules: nope not in the grid's schedules"):
        report.FULL.narrowed(schedules=("nope",))

    # the bars' cells go into the model's card, with the bar and its verdict
    card = {"name": "mnist-ddpm", "arch": {"type": "unet"}, "objective": "ddpm", "sha256": "0" * 64,
            "data_shape": [1, 28, 28], "metrics": {}}
    (tmp_path / "mnist-ddpm.json").write_text(json.dumps(card))
    report.record_bars({"mnist-ddpm": records}, 500, tmp_path)
    metrics = json.loads((tmp_path / "mnist-ddpm.json").read_text())["metrics"]
    assert metrics["ddim/cosine/50/leading/n=500/seed=0/eta=0.0"]["verdict"] == "pass"
    assert metrics["ddpm/linear/1000/leading/n=500/seed=0/variance=fixed_small"]["nn_ratio"] == 0.5
    assert len(metrics) == 3 and "model" not in next(iter(metrics.values()))


def _cells(out) -> dict:
    return json.loads((out / "results" / "cells.json").read_text())["cells"]


def test_report_resumes_reuses_and_recomputes_after_new_weights(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "docs"
    plans = {m: report.plan_cells(m, o, TINY) for m, o in (("tiny-eps", "ddpm"), ("tiny-score", "dsm"))}
    total = sum(map(len, plans.values()))
    models = ["tiny-eps", "tiny-score", "absent"]

    real, calls = evaluate.evaluate_images, []

    def interrupted(*args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.run_report(models, grid=TINY, out=out, device="cpu", directory=ckpt)
    assert len(_cells(out)) == 5 and not (out / "RESULTS.md").exists()

    monkeypatch.setattr(evaluate, "evaluate_images", real)
    first = report.run_report(models, grid=TINY, out=out, device="cpu", directory=ckpt, command="python -m engine report X")
    assert (first["computed"], first["reused"]) == (total - 5, 5)
    assert list(first["skipped"]) == ["absent"]
    page = (out / "RESULTS.md").read_text()
    assert "Generated by `python -m engine report X`" in page and "n = 20 samples per cell" in page
    assert "**absent**: not evaluated — no checkpoint absent" in page
    for plan in plans.values():
        for c in plan:  # every cell has its row in the full table
            assert f"| {c.sampler} | {c.schedule} | {c.steps} | {c.spacing} |" in page
    assert "not judged" not in page and page.count("**not run**") == len(report.BARS)  # no bar model here
    names = {p.name for p in first["figures"]}
    assert names == {"schedules.png", "fd_vs_nfe_tiny-eps.png", "fd_vs_nfe_tiny-score.png",
                     "samples_tiny-eps.png", "samples_tiny-score.png"}
    for p in first["figures"]:
        assert Image.open(p).size[0] >= 60 and f"results/{p.name}" in page

    def no_evaluation(*args, **kwargs):
        raise AssertionError("a fresh cell was recomputed")

    monkeypatch.setattr(evaluate, "evaluate_images", no_evaluation)
    again = report.run_report(models, grid=TINY, out=out, device="cpu", directory=ckpt)
    assert (again["computed"], again["reused"]) == (0, total)

    # new weights for one model: only its cells are stale
    model = load_model("tiny-eps", directory=ckpt)
    with torch.no_grad():
        next(model.net.parameters()).add_(0.01)
    save_model(model, "tiny-eps", ckpt)
    monkeypatch.setattr(evaluate, "evaluate_images", real)
    retrained = report.run_report(models, grid=TINY, out=out, device="cpu", directory=ckpt)
    assert (retrained["computed"], retrained["reused"]) == (len(plans["tiny-eps"]), len(plans["tiny-score"]))
    sha = engine.model_card("tiny-eps", ckpt)["sha256"]
    assert {r["sha256"] for r in _cells(out).values() if r["model"] == "tiny-eps"} == {sha}


def test_report_command(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt))
    out = tmp_path / "quick"
    assert main(["report", "--quick", "--models", "tiny-score", "--n", "10", "--out", str(out), "--device", "cpu"]) == 0
    assert f"{len(report.plan_cells('tiny-score', 'dsm', report.QUICK))} cells computed" in capsys.readouterr().out
    page = (out / "RESULTS.md").read_text()
    assert (f"`python -m engine report --models tiny-score --n 10 --seed 0 --out {out} --device cpu --quick`"
            in page)
    assert f"| langevin | cosine | 10 | leading | {engine.SAMPLERS['langevin'].nfe(10)} |" in page  # counted = registry
    assert main(["report", "--models", "tiny-score", "--n", "500", "--out", str(out), "--device", "cpu"]) == 2
    assert "n must be at most 180" in capsys.readouterr().err


def test_long_run_cells_can_be_limited_to_some_schedules():
    import dataclasses
    grid = dataclasses.replace(report.FULL, long_run_schedules=("linear",))
    plan = report.plan_cells("m", "ddpm", grid)
    assert {(c.sampler, c.schedule) for c in plan if c.steps == 1000} == {("ddpm", "linear"), ("ddim", "linear")}
    assert len([c for c in plan if c.steps < 1000]) == len([c for c in report.plan_cells("m", "ddpm") if c.steps < 1000])
    assert "only for ddpm, ddim, euler-maruyama on linear" in "\n".join(report.page.grid_lines(grid))


def test_the_committed_page_command_finds_every_cell_in_the_committed_cache(monkeypatch):
    """Re-running docs/RESULTS.md's own command plans only cells whose keys docs/results/cells.json holds: the grid and
    the keys (settings, options, n, seed, device type) are those the committed cells were measured under."""
    root = Path(__file__).resolve().parents[1]
    command = (root / "docs" / "RESULTS.md").read_text().split("Generated by `python -m engine ", 1)[1].split("`", 1)[0]
    seen = {}
    monkeypatch.setattr(report, "run_report", lambda models, **kw: seen.update(kw, models=models) or
                        {"skipped": {}, "page": "p", "figures": [], "computed": 0, "reused": 0, "cache": "c"})
    assert main(shlex.split(command)) == 0
    cached = json.loads((root / "docs" / "results" / "cells.json").read_text())["cells"]
    device_type = resolve_device(seen["device"]).type
    keys = [c.key(seen["n"], seen["seed"], device_type) for m in seen["models"]
            for c in report.plan_cells(m, engine.model_card(m, root / "checkpoints")["objective"], seen["grids"][m])]
    assert keys and [k for k in keys if k not in cached] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _report(launcher: list, ckpt, out, models="tiny-eps,tiny-score", **env) -> subprocess.Popen:
    """``python -m engine report`` at 2 steps on the linear schedule, as ``launcher`` starts it, with ``env`` added to
    the environment (``--samples``: torchrun would read ``--n`` as its own)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", ENGINE_CHECKPOINTS=str(ckpt), **env)
    command = [sys.executable, *launcher, "-m", "engine", "report", "--models", models, "--samples", "10",
               "--out", str(out), "--device", "cpu", "--steps", "2", "--schedules", "linear"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(run: subprocess.Popen) -> tuple[int, str, str]:
    out, err = run.communicate(timeout=300)
    return run.returncode, out, err


def _measured(out) -> dict:
    """The cells of ``out`` without the fields that time a run (its seconds and its date)."""
    return {key: {k: v for k, v in r.items() if k not in ("seconds", "date")} for key, r in _cells(out).items()}


def test_ranks_under_torchrun_share_the_cells_and_give_the_same_cells_as_one_process(ckpt, tmp_path):
    runs = [_report(launcher, ckpt, tmp_path / out) for launcher, out in (
        ([], "one"), (["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"], "two"))]
    one, two = map(_finished, runs)
    assert one[0] == 0 and two[0] == 0, one[2][-3000:] + two[2][-3000:]
    grid = report.FULL.narrowed(steps=(2,), schedules=("linear",))
    total = len(report.plan_cells("tiny-eps", "ddpm", grid)) + len(report.plan_cells("tiny-score", "dsm", grid))
    cells = _measured(tmp_path / "one")
    assert len(cells) == total and _measured(tmp_path / "two") == cells  # cell for cell, to the last digit
    # one page, written once, with every cell computed by one rank or the other
    assert two[1].count("wrote ") == 1 and f"{total} cells computed" in two[1]
    files = sorted(p.relative_to(tmp_path / "two").as_posix() for p in (tmp_path / "two").rglob("*"))
    assert files == sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*"))
    assert files.count("RESULTS.md") == 1 and not [f for f in files if f.endswith(".tmp")]


def test_ranks_on_two_nodes_need_the_same_checkpoints_and_only_rank_0_writes(ckpt, tmp_path):
    """Two ranks as torchrun starts them on two machines that share no filesystem: each with the environment torchrun
    gives it, its own checkpoints and its own --out."""
    import shutil

    node1 = tmp_path / "node1-ck"
    shutil.copytree(ckpt, node1)

    def on_two_nodes(out):
        env = dict(WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        runs = [_report([], ck, tmp_path / f"{out}{rank}", models="tiny-score", RANK=str(rank), **env)
                for rank, ck in enumerate((ckpt, node1))]
        return [_finished(run) for run in runs]

    (rc0, out0, err0), (rc1, out1, err1) = on_two_nodes("same")
    assert rc0 == rc1 == 0, err0[-3000:] + err1[-3000:]
    assert "wrote " in out0 and out1 == "" and not (tmp_path / "same1").exists()
    assert len(_cells(tmp_path / "same0")) == len(report.plan_cells("tiny-score", "dsm", report.FULL.narrowed(
        steps=(2,), schedules=("linear",))))

    model = load_model("tiny-score", directory=node1)
    with torch.no_grad():
        next(model.net.parameters()).add_(0.01)
    save_model(model, "tiny-score", node1)
    (rc0, _, err0), (rc1, _, err1) = on_two_nodes("other")
    assert rc0 != 0 and rc1 != 0
    for err in (err0, err1):  # each rank says why, rather than wait for the other
        assert "rank(s) 1 have other checkpoints than rank 0" in err
    assert not (tmp_path / "other0" / "results" / "cells.json").exists() and not (tmp_path / "other1").exists()


def test_ranks_deal_each_missing_cell_to_one_rank_round_by_round():
    keys = list("abcdefg")
    teams = [report.ranks.Team(rank, 3, torch.device("cpu")) for rank in range(3)]
    dealt = [team.rounds(keys) for team in teams]
    assert [batch for batch, _ in dealt[0]] == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert [[key for _, key in rounds] for rounds in dealt] == [["a", "d", "g"], ["b", "e", None], ["c", "f", None]]
    assert report.ranks.Team(0, 1, torch.device("cpu")).rounds(keys) == [([k], k) for k in keys]
