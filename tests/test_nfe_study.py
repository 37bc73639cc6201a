"""The NFE study's plan and page: which step counts each solver gets for an NFE budget, and that a line is called
better only where its interval clears every other's."""
from pathlib import Path

import engine
from engine.report import nfe

FLOW = nfe.TARGETS[0]  # mnist-fm DDIM 8 on flow against mnist-ddpm DDIM 50


def test_steps_for_spends_at_most_the_budget():
    assert [nfe.steps_for("ddim", k) for k in (1, 8, 128)] == [1, 8, 128]
    assert [nfe.steps_for("heun", k) for k in (1, 2, 4, 8)] == [1, 1, 2, 4]  # 2 per step, the last step 1
    assert nfe.steps_for("pc", 1) is None and nfe.steps_for("pc", 4) == 2
    for sampler, _ in (line for lines in nfe.STUDY.values() for line in lines):
        for k in nfe.NFES:
            steps = nfe.steps_for(sampler, k)
            assert steps is None or engine.SAMPLERS[sampler].nfe(steps) <= k < engine.SAMPLERS[sampler].nfe(steps + 1)


def test_planned_runs_cover_the_ladder_and_the_target_once():
    runs = nfe.planned({"mnist-fm": None, "mnist-ddpm": None})
    assert len(runs) == len(set(runs))
    assert ("mnist-fm", "ddim", "flow", 8) in runs and ("mnist-ddpm", "ddim", "cosine", 50) in runs
    assert {r[3] for r in runs if r[:3] == ("mnist-fm", "heun", "flow")} == {1, 2, 4, 8, 16, 32, 64}
    assert not any(r[0] == "mnist-ncsn" for r in runs)


def _record(nfe_count, ratio, lo, hi, confident=0.9):
    """A study record; its noise-equivalent σ is (ratio − 1) / 10 here, clipped at 0."""
    def sigma(r):
        return max(0.0, (r - 1) / 10)
    return {"nfe": nfe_count, "fd_ratio": ratio, "fd_ratio_ci": [lo, hi], "confident": confident,
            "noise_sigma": sigma(ratio), "noise_sigma_ci": [sigma(lo), sigma(hi)]}


def test_a_line_is_better_only_where_its_interval_clears_the_others():
    assert nfe.separated_best({"a": _record(8, 1.0, 0.8, 1.2), "b": _record(8, 3.0, 2.0, 4.0)}) == "a"
    assert nfe.separated_best({"a": _record(8, 1.0, 0.8, 2.1), "b": _record(8, 3.0, 2.0, 4.0)}) is None


def test_the_section_draws_the_figure_and_judges_the_target(tmp_path: Path):
    records = {("mnist-fm", "euler", "flow", k): {**_record(k, 8 / k, 6 / k, 10 / k), "model": "mnist-fm"}
               for k in (1, 2, 4, 8)}
    records[("mnist-ddpm", "ddim", "cosine", 8)] = _record(8, 5.0, 4.0, 6.0)
    records[FLOW[1]] = _record(8, 1.1, 0.9, 1.4, confident=0.9)
    records[FLOW[2]] = _record(50, 1.0, 0.8, 1.3)
    page = nfe.section({"records": records, "straightness": {"mnist-fm": 0.01, "mnist-ddpm": 0.2}}, tmp_path,
                       nfes=(1, 2, 4, 8))
    text = "\n".join(page)
    assert (tmp_path / "quality_vs_nfe.png").stat().st_size > 1000
    assert ("| 8 | σ 0.000 [0.000, 0.025] · 1.00 [0.75, 1.25]× · 90 % | σ 0.400 [0.300, 0.500] · 5.00 [4.00, 6.00]× · "
            "90 % | mnist-fm · euler (flow) |") in text
    assert "| 1 | σ 0.700 [0.500, 0.900] · 8.00 [6.00, 10.00]× · 90 % | — | not separated |" in text
    assert ("Target, flow matching at 8 steps: mnist-fm ddim on flow, 8 steps: σ 0.010 [0.000, 0.040], "
            "1.10 [0.90, 1.40]×") in text
    heun = {"a": [_record(1, 9.0, 8.0, 10.0), _record(3, 3.0, 2.0, 4.0), _record(7, 1.5, 1.0, 2.0)]}
    assert [nfe.within_budget(heun, k)["a"]["nfe"] for k in (1, 2, 4, 8)] == [1, 1, 3, 7]
    assert nfe.within_budget({"pc": [_record(2, 9.0, 8.0, 10.0)]}, 1) == {}  # one pc step costs 2
    assert "**met**" in text
    records[FLOW[1]] = _record(8, 2.0, 1.5, 2.5)
    assert "**not met**" in "\n".join(nfe.section({"records": records, "straightness": {}}, tmp_path))


def test_every_line_starts_from_pure_noise_and_the_target_runs_as_the_bars_judge():
    assert nfe.spacing_of(("mnist-ddpm", "ddim", "cosine", 128)) == "trailing"  # leading would start at t = 889
    assert nfe.spacing_of(FLOW[2]) == "leading"  # DDIM 50 as the results page's bars run it
    assert nfe.spacing_of(FLOW[1]) == "trailing"  # the flow schedule's own


def test_a_target_is_better_only_where_the_intervals_separate():
    """"not worse" fails only when the candidate's interval lies wholly above; "better" needs it wholly below, and
    overlapping intervals with the lower point read unresolved; the confident share is a floor either way."""
    ref = _record(8, 2.0, 1.5, 2.5)
    verdict = lambda cand, judged: nfe.target_verdict(cand, ref, judged, 0.7)  # noqa: E731
    assert verdict(_record(1, 1.0, 0.8, 1.2), "better") == "met"
    assert verdict(_record(1, 1.8, 1.2, 2.2), "better") == "unresolved"
    assert verdict(_record(1, 2.2, 1.6, 2.8), "better") == "not met"
    assert verdict(_record(1, 2.2, 1.6, 2.8), "not worse") == "met"
    assert verdict(_record(1, 3.2, 2.6, 3.8), "not worse") == "not met"
    assert verdict(_record(1, 1.0, 0.8, 1.2, confident=0.6), "better") == "not met"
    runs = nfe.planned({"mnist-fast": None, "mnist-fm": None})
    assert ("mnist-fast", "euler", "flow", 1) in runs and ("mnist-fm", "dpm-solver++", "flow", 8) in runs
    assert ("mnist-fm", "ddim", "flow", 50) in runs and nfe.spacing_of(("mnist-fm", "ddim", "flow", 50)) == "trailing"
