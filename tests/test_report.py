"""The results page: the grid is what the page promises, the cell cache resumes and notices new weights, the page
lists every cell and the quality-bar verdicts, and the figures are written."""
import json
import os
import random
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
from engine import classifier, evaluate, report, validation
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
    classifier.train_classifier("digits8", epochs=0, directory=d)  # untrained: its features still measure FD
    return d


def test_full_grid_is_what_the_page_promises():
    eps = report.plan_cells("m", "ddpm", report.FULL)
    score = report.plan_cells("m", "dsm", report.FULL)
    for plan, samplers, long_run in ((eps, {"ddpm", "ddim", "dpm-solver++", "ode"}, {"ddpm", "ddim"}),
                                     (score, {"langevin", "euler-maruyama", "pc", "ode"}, {"euler-maruyama", "pc"})):
        assert len(set(plan)) == len(plan)
        assert {c.sampler for c in plan} == samplers
        assert {"linear", "cosine", "sigmoid", "constant", "karras"} <= {c.schedule for c in plan} <= set(engine.SCHEDULES)
        assert {c.sampler for c in plan if c.steps == 1000} == long_run
        for c in plan:
            assert c.steps in (10, 20, 50, 100, 1000)
            assert c.spacing == engine.SAMPLERS[c.sampler].spacing  # the sampler's own, as generate() picks it
    flow = report.plan_cells("m", "fm", report.FULL)
    assert {c.sampler for c in flow} == {"euler", "heun", "ddim", "dpm-solver++"}
    # the flow schedule names its spacing (its trailing Euler grid), which generate() puts before the sampler's
    assert {c.spacing for c in flow if c.schedule == "flow"} == {"trailing"}
    assert len(eps) == 5 * (4 * 4 + 2) and len(score) == 6 * (4 * 4 + 2)
    assert "ve-geometric" in {c.schedule for c in score}
    text = "\n".join(report.page.grid_lines(report.FULL))
    assert "1000 only for ddpm, ddim, euler-maruyama, pc (1000/2000 NFE at 1000 steps" in text
    assert "trailing for dpm-solver++, euler, heun." in text
    assert "dpm-solver++ is made for 10–20 steps, and euler steps along the flow ODE, whose paths flow matching" in text and "leading for ddpm, ddim, ode, langevin" in text
    # the NFE the page states are the registry's
    nfe = {s: engine.SAMPLERS[s].nfe(1000) for s in ("ode", "pc", "langevin")}
    assert f"pc ({nfe['pc'] // 2}/{nfe['pc']} NFE at 1000 steps" in text
    assert f"would cost {nfe['ode']}, {engine.SAMPLERS['heun'].nfe(1000)} and {nfe['langevin']} NFE" in text
    # a leading 10-step run starts at t = 900; trailing starts at t = 999, so only leading gets the warning
    assert "With leading spacing a 10-step run starts at t = 900, not 999" in text and "With trailing" not in text


def _record(cell: report.Cell, fd: float, nn_ratio: float = 1.0, half_width: float = 0.05,
            confident: float = 0.9) -> dict:
    """A cell's record as the evaluator writes it, with real held-out FD 1 (so fd_ratio = fd) and intervals
    fd ± half_width, on the noise ladder FD = 1 + 10 σ (so σ = (fd − 1) / 10, 0 at or below real)."""
    nfe = engine.SAMPLERS[cell.sampler].nfe(cell.steps, cell.options)
    ci = [fd - half_width, fd + half_width]
    ladder = [[s, 1 + 10 * s] for s in evaluate.NOISE_LADDER]
    return {"model": cell.model, "sampler": cell.sampler, "schedule": cell.schedule, "steps": cell.steps,
            "spacing": cell.spacing, "options": cell.options, "n": 500, "nfe": nfe, "fd": fd, "fd_ci": ci,
            "fd_real": 1.0, "fd_real_ci": [0.8, 1.2], "fd_baseline": 1.0, "fd_ratio": fd, "fd_ratio_ci": ci,
            "heldout_sets": 1, "reference_n": 4500, "kid": 0.01, "kid_std": 0.002, "kid_real": 0.0,
            "kid_real_std": 0.002, "confident": confident, "confident_ci": [confident - 0.02, confident + 0.02],
            "confident_heldout": 0.95, "coverage_min_class": 0.08, "nn_ratio": nn_ratio,
            "nn_ratio_ci": [nn_ratio - 0.05, nn_ratio + 0.05], "seconds": 0.01 * nfe, "device": "cpu (test)", "seed": 0,
            "noise_sigma": evaluate.noise_equivalent_sigma(fd, ladder),
            "noise_sigma_ci": [evaluate.noise_equivalent_sigma(v, ladder) for v in ci], "noise_ladder": ladder}


def _bar_rows(page: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith(("| mnist-", "| fashion-"))]


def test_bar_verdicts_follow_the_numbers(tmp_path):
    """The bars judge noise-equivalent σ (here σ = (FD − 1) / 10, ``_record``), MNIST's at ≤ 0.08."""
    cells = report.plan_cells("mnist-ddpm", "ddpm", report.FULL)
    records = []
    for c in cells:
        fd = 5.0
        if (c.sampler, c.steps) == ("ddim", 50):
            fd = 1.35 if c.schedule == "cosine" else 1.9  # σ 0.035 passes on cosine; 0.09 fails on linear
        if (c.sampler, c.steps) == ("ddpm", 1000):
            fd = 1.2  # σ 0.02 passes, memorisation fails below
        if c.sampler == "dpm-solver++" and c.steps == 20:
            fd = 1.3 if c.schedule == "linear" else 1.9  # σ 0.03 − 0.02 ≤ 0.02 on linear; 0.07 elsewhere
        records.append(_record(c, fd, nn_ratio=0.5 if (c.sampler, c.steps) == ("ddpm", 1000) else 1.0))
    verdicts = {(b.model, b.sampler): report.judge_bar(b, records if b.model == "mnist-ddpm" else [], 500)
                for b in report.BARS}
    ddim = verdicts["mnist-ddpm", "ddim"]
    assert ddim["verdict"] == "fail" and ddim["passing"] == ["cosine"] and ddim["shown"]["schedule"] == "linear"
    assert ddim["unresolved"] == []
    ddpm = verdicts["mnist-ddpm", "ddpm"]
    assert ddpm["verdict"] == "fail" and [ok for *_, ok in ddpm["figures"]] == [True, True, True, False]
    dpm = verdicts["mnist-ddpm", "dpm-solver++"]
    assert dpm["verdict"] == "pass" and dpm["passing"] == ["linear"] and dpm["figures"][0][1] == pytest.approx(0.01)
    assert dpm["figures"][0][2] is None  # a difference of two cells' σ has no interval here
    assert verdicts["mnist-ncsn", "pc"]["verdict"] == "not run"
    assert report.judge_bar(report.BARS[0], records, 499)["verdict"] == "not judged (n < 500)"

    page = report.render_page(command="python -m engine report", grid=report.FULL, n=500, seed=0,
                              results={"mnist-ddpm": records}, setups={}, skipped={}, samples={"mnist-ddpm": records[0]},
                              models=[])
    bar_rows = _bar_rows(page)
    assert len(bar_rows) == len(report.BARS)
    assert "| cosine | ddim · linear · 50 steps; ddim · cosine · 50 steps | linear: σ 0.090 [0.085, 0.095] ✗ ·" in bar_rows[0]
    assert "cosine: σ 0.035 [0.030, 0.040] ✓ · confident − real -5.0 pts [-7.0, -3.0] ✓" in bar_rows[0]
    assert bar_rows[0].endswith("**fail** |") and "0.01 ± 0.002 (0 ± 0.002)" in bar_rows[0]
    assert "NN ratio 0.50 [0.45, 0.55] ✗" in bar_rows[1] and bar_rows[1].endswith("**fail** |")
    assert "σ − ddpm-1000 +0.010 ✓" in bar_rows[2] and bar_rows[2].endswith("**pass** |")
    assert all(row.endswith("**not run** |") for row in bar_rows[3:])
    assert ("- Not run: mnist-ncsn, pc, any step count: noise-equivalent σ ≤ 0.08; confident within 10 points of real "
            "held-out images — mnist-ncsn is not on this page.") in page
    assert f"Verdicts: 2 fail, 1 pass, {len(report.BARS) - 3} not run." in page
    # the grid's cells lead with σ
    assert "| ddim | 50 | 50 | σ 0.090 [0.085, 0.095] · 1.90 [1.85, 1.95]× · 0.5 s | **σ 0.035 [0.030, 0.040] · " in page
    # the five ddpm-1000 cells (1.2 ± 0.05) overlap one another and clear the rest (the next, ddpm-50 is 5.0)
    # the five ddpm-1000 cells (1.2 ± 0.05) and dpm-solver++ 20 on linear (1.3 ± 0.05) touch; the rest are 1.35 and up
    assert ("- Lowest FD: 6 settings are indistinguishable at n = 500 (their FD intervals overlap the lowest's) — "
            "ddpm · linear · 1000 steps (1.20 [1.15, 1.25]×); ddpm · cosine · 1000 steps") in page
    assert "Fewest NFE within 1.5× real: 20 — dpm-solver++ · linear · 20 steps (1.30 [1.25, 1.35]×)." in page
    assert "No cell reads better than real beyond its interval: the FD / real interval of every one of the " in page
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
    assert metrics["ddim/cosine/50/leading/n=500/seed=0/eta=0.0"]["verdict"] == "fail"  # the bar's, over both
    assert metrics["ddim/cosine/50/leading/n=500/seed=0/eta=0.0"]["noise_sigma_ci"] == pytest.approx([0.03, 0.04])
    assert metrics["ddpm/linear/1000/leading/n=500/seed=0/variance=fixed_small"]["nn_ratio"] == 0.5
    assert len(metrics) == 4 and "model" not in next(iter(metrics.values()))


def test_overlapping_intervals_are_never_ranked():
    """Findings, the cross table and the budget table name one winner only where its FD interval clears the
    others'; otherwise they say the settings are indistinguishable at this n and list them."""
    grid = report.Grid(steps=(10, 50), schedules={"ddpm": ("linear", "cosine")}, n=500)
    fds = {("ddim", 10, "linear"): (3.0, 0.2), ("ddim", 10, "cosine"): (2.0, 0.2),  # resolved: cosine
           ("ddim", 50, "linear"): (1.3, 0.4), ("ddim", 50, "cosine"): (1.2, 0.4)}  # overlapping
    records = [_record(c, fd, half_width=hw) for c in report.plan_cells("mnist-ddpm", "ddpm", grid)
               for fd, hw in [fds.get((c.sampler, c.steps, c.schedule), (6.0, 0.3))]]
    lines = report.findings.findings(records, 500)
    assert lines[0] == ("Lowest FD: 2 settings are indistinguishable at n = 500 (their FD intervals overlap the "
                        "lowest's) — ddim · cosine · 50 steps (1.20 [0.80, 1.60]×); ddim · linear · 50 steps "
                        "(1.30 [0.90, 1.70]×).")
    # 1.3 is within 1.5× on its point estimate but its interval reaches 1.7: unresolved, and no setting is sure
    assert lines[1].startswith("Fewest NFE within 1.5× real: 50 — ddim · cosine · 50 steps (1.20 [0.80, 1.60]×); "
                               "ddim · linear · 50 steps") and lines[1].endswith("unresolved: the interval reaches "
                                                                                 "past 1.5×, as every such setting's does.")
    assert lines[3].startswith("Fewest NFE within 3× real: 10 — ddim · cosine · 10 steps (2.00 [1.80, 2.20]×); ddim · linear")
    assert "ddim: cosine at 10, indistinguishable (cosine, linear) at 50" in lines[4]
    assert lines[5].startswith("The schedule matters most for ")  # some group is resolved (6.0 vs 2.0 and others)
    table = "\n".join(report.findings.cross_table(records))
    assert ("| ddim | 10 | 10 | σ 0.200 [0.180, 0.220] · 3.00 [2.80, 3.20]× · 0.1 s | **σ 0.100 [0.080, 0.120] · "
            "2.00 [1.80, 2.20]× · 0.1 s** |") in table
    assert ("| ddim | 50 | 50 | σ 0.030 [0.000, 0.070] · 1.30 [0.90, 1.70]× · 0.5 s | σ 0.020 [0.000, 0.060] · "
            "1.20 [0.80, 1.60]× · 0.5 s |") in table  # no bold
    budget = report.findings.budget_table(records)
    assert budget[-1].startswith("| ≤ 100 | ddim · cosine · 50 steps | 50 | 1.20 [0.80, 1.60]× | ddim · linear · 50")
    tight = [dict(r, fd_ci=[r["fd"] - 0.01, r["fd"] + 0.01]) for r in records]
    assert report.findings.findings(tight, 500)[0].startswith("Lowest FD: ddim · cosine · 50 steps (1.20 [0.80, 1.60]×)")


def test_a_bar_over_any_step_count_passes_when_some_step_count_meets_it():
    grid = report.Grid(steps=(100, 1000), schedules={"dsm": ("ve-geometric",)}, n=500)
    cells = {c.steps: c for c in report.plan_cells("mnist-ncsn", "dsm", grid) if c.sampler == "pc"}
    bar = next(b for b in report.BARS if (b.model, b.sampler) == ("mnist-ncsn", "pc"))
    sharp_but_illegible = _record(cells[100], 1.1, confident=0.80)
    legible = _record(cells[1000], 1.3, confident=0.86)
    v = report.judge_bar(bar, [sharp_but_illegible, legible], 500)
    assert v["verdict"] == "pass" and v["shown"]["steps"] == 1000
    v = report.judge_bar(bar, [sharp_but_illegible, dict(legible, confident=0.84)], 500)
    assert v["verdict"] == "fail" and v["shown"]["steps"] == 100  # none meets it: the lowest FD is shown


def test_a_figure_exactly_on_a_limit_meets_it_however_the_float_difference_rounds():
    legible = next(c for b in report.BARS for c in b.criteria if c.figure == "confident_vs_real")
    for confident, real in ((0.848, 0.948), (0.85, 0.95), (0.7, 0.8), (0.61, 0.71)):  # each exactly −10 points
        assert legible.passes(legible.value({"confident": confident, "confident_heldout": real, "confident_ci": [0, 1]},
                                            None)[0])
    assert not legible.passes(0.846 - 0.948)  # one image short of the limit
    sigma = next(c for b in report.BARS for c in b.criteria if c.figure == "noise_sigma")
    assert sigma.passes(sigma.limit) and not sigma.passes(sigma.limit + 1e-6)


def test_unresolved_every_schedule_bars_and_better_than_real():
    """A criterion met on its point estimate but straddled by its interval is "unresolved"; a bar that lists
    schedules passes only when each does; a cell whose whole FD-ratio interval is below 1 is called out."""
    grid = report.Grid(steps=(50,), schedules={"ddpm": ("linear", "cosine")}, n=500)
    cells = {c.schedule: c for c in report.plan_cells("fashion-ddpm", "ddpm", grid) if c.sampler == "ddim"}
    bar = next(b for b in report.BARS if b.model == "fashion-ddpm")
    assert bar.schedules == ("linear", "cosine") and "on linear and cosine (each)" in bar.describe()
    good, wide = _record(cells["linear"], 1.3), _record(cells["cosine"], 1.35, half_width=0.4)  # σ 0.03, 0.035
    v = report.judge_bar(bar, [good, wide], 500)
    assert v["verdict"] == "pass" and v["unresolved"] == ["cosine: σ"]
    low_confidence = _record(cells["cosine"], 1.3, confident=0.8)  # 15 points below real 95 %
    v = report.judge_bar(bar, [good, low_confidence], 500)
    assert v["verdict"] == "fail" and v["passing"] == ["linear"] and v["shown"]["schedule"] == "cosine"
    assert [round(value, 2) for _, value, _, _ in v["figures"]] == [0.03, -0.15]
    assert report.judge_bar(bar, [good], 500)["verdict"] == "not run"  # cosine missing: not judged on linear alone
    row = report.page._bar_table([report.judge_bar(bar, [good, wide], 500)], set())[-1]
    assert "cosine: σ 0.035 [0.000, 0.075] ✓ (unresolved)" in row and "confident − real -5.0 pts [-7.0, -3.0] ✓" in row
    assert row.endswith("**pass**, unresolved: cosine: σ |")
    withdrawn = report.page._bar_table([report.judge_bar(bar, [good, wide], 500)], {"fashion-ddpm"})[-1]
    assert withdrawn.endswith("; not offered in the app (its section says why) |")

    better = dict(good, fd_ratio=0.7, fd_ratio_ci=[0.6, 0.9])
    line = report.page._better_than_real_line({"fashion-ddpm": [better, wide]})
    assert line.startswith("**1 of 2 cells read better than real beyond their interval**")
    assert "fashion-ddpm: ddim · linear · 50 steps (0.70 [0.60, 0.90]×)" in line
    assert report.page._better_than_real_line({"fashion-ddpm": [dict(better, fd_ratio_ci=[0.6, 1.0]), wide]}).startswith(
        "No cell reads better than real beyond its interval")


def test_a_failed_bar_says_what_bounds_it_and_which_model_meets_it_in_its_place(tmp_path):
    """fashion-cond's random-class cells stand in for fashion-ddpm on its bar; a failed bar's page line and card say
    whether any cell of the model's grid on that schedule meets the failed criterion."""
    grid = report.Grid(steps=(10, 50), schedules={"ddpm": ("linear", "cosine"), "dsm": ()}, n=500)
    uncond = [_record(c, 1.3, confident=0.8 if c.schedule == "cosine" else 0.9)  # cosine: 15 points below real
              for c in report.plan_cells("fashion-ddpm", "ddpm", grid)]
    cond = [dict(_record(c, 1.2), label=c.label) for c in report.plan_cells("fashion-cond", "ddpm", grid, conditional=True)]
    assert {c.label for c in report.plan_cells("fashion-cond", "ddpm", grid, conditional=True)} == {"random"}
    results = {"fashion-ddpm": uncond, "fashion-cond": cond}
    verdicts = [report.judge_bar(b, results.get(b.model, []), 500) for b in report.BARS]
    assert [v["verdict"] for v in verdicts if v["bar"].model.startswith("fashion")] == ["fail", "pass"]
    assert report.bars.stand_ins(verdicts) == {"fashion-ddpm": "fashion-cond"}
    page = report.render_page(command="c", grid=grid, n=500, seed=0, results=results, setups={}, skipped={},
                              samples={m: r[0] for m, r in results.items()}, models=[])
    row = next(r for r in _bar_rows(page) if r.startswith("| fashion-ddpm"))
    assert row.endswith("**fail**; met in its place by fashion-cond |")
    assert "(fashion-ddpm's met in its place by fashion-cond)" in page.split("Verdicts: ")[1].split("\n")[0]
    assert ("- What bounds it: fashion-ddpm, confident − real on cosine: -15.0 pts at ddim · cosine · 50 steps; over "
            "all 8 cosine cells of its grid it lies from -15.0 pts to -15.0 pts — none meets the limit") in page
    assert "ddim · linear · 50 steps · random classes" in next(r for r in _bar_rows(page) if r.startswith("| fashion-cond"))
    one_passes = [dict(r, confident=0.9) if (r["sampler"], r["steps"], r["schedule"]) == ("ddpm", 10, "cosine") else r
                  for r in uncond]
    fashion_bar = next(b for b in report.BARS if b.model == "fashion-ddpm")
    (_, text), = report.bars.bounds(report.judge_bar(fashion_bar, one_passes, 500), one_passes)
    assert ("1 of them meets the limit (ddpm · cosine · 10 steps), so on point estimates the network reaches it on "
            "this schedule with another sampler or step count") in text
    # the cards: the failed cell with its bound and its stand-in, the stand-in's cells under their label
    for name in results:
        card = {"name": name, "arch": {"type": "unet"}, "objective": "ddpm", "sha256": "0" * 64,
                "data_shape": [1, 28, 28], "metrics": {}}
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
    report.record_bars(results, 500, tmp_path)
    failed = json.loads((tmp_path / "fashion-ddpm.json").read_text())["metrics"]["ddim/cosine/50/leading/n=500/seed=0/eta=0.0"]
    assert failed["met_in_its_place_by"] == "fashion-cond" and failed["bound"][0].startswith("fashion-ddpm, confident")
    stand_in = json.loads((tmp_path / "fashion-cond.json").read_text())["metrics"]
    assert sorted(stand_in) == [f"ddim/{s}/50/leading/label=random/n=500/seed=0/eta=0.0" for s in ("cosine", "linear")]


def test_trust_section_states_the_validation_and_its_weak_spots():
    def row(kind, ratio, lo, hi, confident, sets=1):
        return {"corruption": kind, "fd": 10 * ratio, "fd_ci": [5 * lo, 15 * hi], "fd_ratio": ratio, "fd_ratio_ci": [lo, hi], "kid": 0.0,
                "kid_std": 0.001, "confident": confident, "confident_ci": [confident - 0.02, confident + 0.02],
                "coverage_min_class": 0.08, "nn_ratio": 1.0, "n": 250, "seed": 0, "bootstrap": 200,
                "heldout_sets": sets, "reference_n": 4500, "fd_real": 10.0, "fd_real_ci": [5.0, 17.0],
                "kid_real": 0.0, "kid_real_std": 0.001, "confident_heldout": 0.97,
                "noise_sigma": validation.KNOWN_NOISE.get(kind, 0.5), "noise_sigma_ci": [0.0, 0.6],
                "noise_ladder": [[0.0, 10.0], [0.1, 12.0]]}
    rows = [row("real", 1.09, 0.44, 3.0, 0.92), row("noise 0.05", 1.2, 0.5, 3.2, 0.92),
            row("noise 0.1", 1.36, 0.62, 3.49, 0.91),
            row("noise 0.3", 5.07, 3.1, 11.0, 0.84), row("blur 5x5", 47.0, 28.0, 97.0, 0.77),
            row("half noise", 23.0, 13.0, 52.0, 0.96)]
    text = "\n".join(report.trust.trust_lines({"mnist": rows}))
    assert "## How far to trust these numbers" in text and "- pass: ranked real < noise 0.1 < noise 0.3 < half noise" in text
    assert ("- mnist, n = 250: noise 0.05, noise 0.1 and noise 0.3 are not separable from real images (the FD intervals "
            "overlap: real FD 10.90 [2.20, 45.00] (1.09 [0.44, 3.00]× real), noise 0.05 FD 12.00 [2.50, 48.00]") in text
    assert "the real baseline is a single held-out set" in text
    assert "images that are half uniform noise read 96.0 % confident against 92.0 % for real ones" in text
    rows[1] = row("noise 0.05", 4.0, 9.1, 6.0, 0.92)
    rows[2] = row("noise 0.1", 4.0, 9.1, 6.0, 0.91)  # FD interval [45.5, 90]: clear of real's [2.2, 45]
    rows[3] = row("noise 0.3", 5.07, 9.2, 11.0, 0.84)
    rows[5] = row("half noise", 23.0, 13.0, 52.0, 0.5)
    text = "\n".join(report.trust.trust_lines({"mnist": rows}))
    assert "every damage's FD interval clears real images'" in text and "half uniform noise" not in text


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

    # the evaluator's validation on the digits, at n = 20 (half the 180 held-out images would allow 90), is on the page
    assert "## How far to trust these numbers" in page and "### digits8: n = 20, seed 0" in page
    assert "No cell reads better than real beyond its interval" in page or "read better than real beyond" in page

    monkeypatch.setattr(evaluate, "evaluate_images", no_evaluation)
    monkeypatch.setattr(validation, "validate", no_evaluation)  # cached like the cells
    again = report.run_report(models, grid=TINY, out=out, device="cpu", directory=ckpt)
    assert (again["computed"], again["reused"]) == (0, total)
    assert (out / "RESULTS.md").read_text().count("### digits8: n = 20") == 1

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

    # a cell scored by another version of the evaluator counts as missing, and is dropped when the cache is read
    path = out / "results" / "cells.json"
    cells = _cells(out)
    old = next(iter(cells))
    cells[old]["evaluator"] = report.cache.EVALUATOR_VERSION - 1
    cells["gone|a cell of an old page"] = dict(cells[old])
    report.cache.write_cache(path, cells)
    assert set(report.cache.load_cache(path)) == set(cells) - {old, "gone|a cell of an old page"}
    monkeypatch.setattr(evaluate, "evaluate_images", real)
    rescored = report.run_report(models, grid=TINY, out=out, device="cpu", directory=ckpt)
    assert (rescored["computed"], rescored["reused"]) == (1, total - 1)
    assert len(_cells(out)) == total and {r["evaluator"] for r in _cells(out).values()} == {report.cache.EVALUATOR_VERSION}


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


def test_a_grid_can_run_some_samplers_only(ckpt, monkeypatch):
    grid = report.FULL.narrowed(steps=(10,), samplers=("ddim", "pc"))
    assert {c.sampler for c in report.plan_cells("m", "ddpm", grid)} == {"ddim"}
    assert {c.sampler for c in report.plan_cells("m", "dsm", grid)} == {"pc"}
    with pytest.raises(ValueError, match="samplers: nope not in the grid's samplers"):
        report.FULL.narrowed(samplers=("nope",))
    page = report.render_page(command="c", grid=report.FULL, n=500, seed=0, results={}, setups={}, skipped={},
                              samples={}, models=[], grids={"mnist-ncsn": grid})
    assert "- **mnist-ncsn** runs a narrower grid: steps 10;" in page  # no setup: its objective is not known here
    monkeypatch.setenv("ENGINE_CHECKPOINTS", str(ckpt))
    seen = {}
    monkeypatch.setattr(report, "run_report", lambda models, **kw: seen.update(kw) or
                        {"skipped": {}, "page": "p", "figures": [], "computed": 0, "reused": 0, "cache": "c"})
    assert main(["report", "--models", "tiny-eps", "--steps", "2", "--samplers", "tiny-eps=ddim,ode"]) == 0
    assert seen["grids"]["tiny-eps"].family("ddpm") == ("ddim", "ode") and seen["command"].endswith(
        "--steps 2 --samplers tiny-eps=ddim,ode")


def test_long_run_cells_can_be_limited_to_some_schedules():
    import dataclasses
    grid = dataclasses.replace(report.FULL, long_run_schedules=("linear",))
    plan = report.plan_cells("m", "ddpm", grid)
    assert {(c.sampler, c.schedule) for c in plan if c.steps == 1000} == {("ddpm", "linear"), ("ddim", "linear")}
    assert len([c for c in plan if c.steps < 1000]) == len([c for c in report.plan_cells("m", "ddpm") if c.steps < 1000])
    assert "only for ddpm, ddim, euler-maruyama, pc on linear" in "\n".join(report.page.grid_lines(grid))


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
    cards = {m: engine.model_card(m, root / "checkpoints") for m in seen["models"]}
    keys = [c.key(seen["n"], seen["seed"], device_type) for m, card in cards.items()
            for c in report.plan_cells(m, card["objective"], seen["grids"][m],
                                       conditional=bool(card["arch"]["config"].get("num_classes")))]
    assert keys and [k for k in keys if k not in cached] == []
    # every bar is judged on cells the page's command runs (a distilled model's few steps are its narrowed grid's)
    for bar in report.BARS:
        card = cards[bar.model]
        plan = {(c.sampler, c.steps) for c in report.plan_cells(bar.model, card["objective"], seen["grids"][bar.model],
                                                                conditional=bool(card["arch"]["config"].get("num_classes")))}
        assert any(sampler == bar.sampler and (not bar.steps or steps in bar.steps) for sampler, steps in plan), bar
        assert bar.reference is None or bar.reference in plan, bar
    # ... scored by this evaluator (cells of an older one count as missing: report.cache)
    assert [k for k in keys if cached[k].get("evaluator") != report.cache.EVALUATOR_VERSION] == []


def _free_port() -> int:
    """A free port below Linux's ephemeral range (32768–60999), which the operating system never hands out by
    itself: the rank that binds it starts seconds after this check, and meanwhile a port of the ephemeral range can
    go to any outgoing connection of the other test worker."""
    for port in random.sample(range(20_000, 32_000), 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 31999")


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


@pytest.mark.xdist_group("subprocesses")
def test_ranks_under_torchrun_share_the_cells_and_give_the_same_cells_as_one_process(ckpt, tmp_path):
    runs = [_report(launcher, ckpt, tmp_path / out) for launcher, out in (
        ([], "one"), (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], "two"))]
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


@pytest.mark.xdist_group("subprocesses")
def test_ranks_on_two_nodes_need_the_same_checkpoints_and_only_rank_0_writes(ckpt, tmp_path):
    """Two ranks as torchrun starts them on two machines that share no filesystem: each with the environment torchrun
    gives it, its own checkpoints and its own --out."""

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


def test_guidance_sweep_section_for_conditional_models(ckpt, tmp_path, monkeypatch):
    from engine.report import guidance

    d = tmp_path / "ck"
    shutil.copytree(ckpt, d)
    torch.manual_seed(1)
    arch = {"type": "unet", "config": {**TINY_UNET["config"], "num_classes": 10}}
    card = {"arch": arch, "objective": "ddpm", "data_shape": [1, 8, 8], "training": {"steps": 0},
            "data": {"dataset": "digits8", "split": "train", "classes": [str(i) for i in range(10)]}}
    model = build_model(card)
    with torch.no_grad():
        model.net.label_emb.weight.normal_()  # untrained, but the labels change the samples
    save_model(model, "tiny-cond", d, card)
    out = tmp_path / "docs"
    result = report.run_report(["tiny-cond", "tiny-eps"], grid=TINY, out=out, device="cpu", directory=d)
    swept = json.loads((out / "results" / "guidance.json").read_text())["cells"]
    assert sorted(swept) == [f"tiny-cond|w={w:g}|n=20|seed=0" for w in sorted(guidance.SCALES)]
    for r in swept.values():
        assert 0 <= r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1] <= 1 and r["fd"] > 0
    page = result["page"].read_text()
    assert "## Classifier-free guidance" in page and "| 3 | " in page
    assert "![guidance sweep of tiny-cond](results/guidance_tiny-cond.png)" in page
    assert "| 0 (null class ∅) | " in page and "| 1 (each class) | " in page  # digits8 has no σ bar or target
    null = {"noise_sigma": 0.05, "noise_sigma_ci": [0.045, 0.06], "confident": 0.7, "confident_heldout": 0.76,
            "confident_ci": [0.64, 0.74]}
    assert guidance._null_class_line(null, 0.04) == (
        "- Target w = 0 (the null class ∅ alone): noise-equivalent σ ≤ 0.04 — 0.050 [0.045, 0.060]: **not met**; "
        "confident within 10 points of real — -6.0 pts [-12.0, -2.0]: **met (unresolved: the interval straddles "
        "it)**.")
    assert (out / "results" / "guidance_tiny-cond.png").is_file()
    metrics = engine.model_card("tiny-cond", d)["metrics"]
    assert {f"guidance/w={w:g}/ddim/cosine/50/n=20/seed=0" for w in guidance.SCALES} <= set(metrics)
    def no_recompute(*args):
        raise AssertionError("a cached scale was computed again")

    monkeypatch.setattr(guidance, "sweep_cell", no_recompute)
    again = guidance.sweeps({"tiny-cond": report.run.prepare("tiny-cond", torch.device("cpu"), 20, d)}, 20, 0,
                            out / "results" / "guidance.json")
    assert [r["guidance_scale"] for r in again["tiny-cond"]] == list(guidance.SCALES)


def test_new_weights_keep_their_cards_withdrawal_until_a_judgement_lifts_it(tmp_path):
    card = {"arch": TINY_UNET, "objective": "ddpm", "data_shape": [1, 8, 8], "data": {"dataset": "digits8"}}
    save_model(build_model(card), "tiny", tmp_path, {**card, "withdrawn": "misses its bar"})
    save_model(build_model(card), "tiny", tmp_path, {**card, "training": {"steps": 500}})  # a resumed training's save
    saved = engine.model_card("tiny", tmp_path)
    assert saved["withdrawn"] == "misses its bar" and saved["training"]["steps"] == 500
    save_model(build_model(card), "tiny", tmp_path, {**card, "withdrawn": None})
    assert "withdrawn" not in engine.model_card("tiny", tmp_path)
    save_model(build_model(card), "tiny", tmp_path, card)
    assert "withdrawn" not in engine.model_card("tiny", tmp_path)


def test_a_withdrawn_models_section_says_why_first():
    cell = report.plan_cells("fashion-ddpm", "ddpm", TINY)[0]
    r = _record(cell, 1.0)
    lines = report.findings.model_section("fashion-ddpm", [r], 500, 0, r, "its samples miss the bar")
    assert lines[:4] == ["## fashion-ddpm", "", "**Not offered in the app:** its samples miss the bar", ""]
    assert "Not offered" not in "\n".join(report.findings.model_section("fashion-ddpm", [r], 500, 0, r))
