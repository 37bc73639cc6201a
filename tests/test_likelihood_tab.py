"""The Likelihood tab (space/tabs/likelihood.py, endpoint ``/likelihood``): its figures are the engine's, per schedule, with
the bound's terms adding up; a score model gets the ODE's figure too; bad requests are refused before the queue with
clear messages; one evaluation per session; and in a browser the tab runs and draws its plot. Small chains only."""
import math
import shutil

import gradio as gr
import pytest
import torch
from PIL import Image

import engine
from engine.checkpoints import load_model, save_model
from engine.data import load_dataset
from space.context import AppContext
from space.models import ModelStore
from space.tabs.likelihood import Likelihood
from tests.test_app import app, fixture_checkpoints  # noqa: F401  (fixtures)

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

ASK = dict(model="tiny-digits", source="dataset", dataset="digits8", index=3, schedules=["linear", "cosine"], steps=10,
           seed=1)


def _last(gen):
    out = None
    for out in gen:
        pass
    return out


def test_bits_per_dim_and_terms_are_the_engines(fixture_checkpoints):  # noqa: F811
    lk = Likelihood(AppContext(ModelStore(fixture_checkpoints), max_nfe=2000))
    updates = list(lk.likelihood(**ASK))
    assert len(updates) == 2 and updates[0][3].startswith("running: ") and updates[1][3].startswith("done: ")
    image, fig, table, status = updates[-1]
    assert "digits8 test #3" in status and "2/2" in status
    assert [row[:2] for row in table] == [["linear", "vlb"], ["cosine", "vlb"]]
    model = load_model("tiny-digits", torch.device("cpu"), fixture_checkpoints)
    x = load_dataset("digits8", "test")[0][3:4]
    for row in table:
        expected = float(engine.bits_per_dim(model, x, schedule=row[0], steps=10, seed=1)[0])
        assert row[2] == pytest.approx(expected, abs=1e-4)
        assert row[3] + row[4] + row[5] == pytest.approx(row[2], abs=1e-3)  # L_T + Σ L_{t−1} + L_0
        assert row[6] == 10  # one network evaluation per level
    lines = fig.axes[0].get_lines()
    assert [len(line.get_xdata()) for line in lines] == [9, 9]  # one curve per schedule, a point per L_{t−1}
    assert fig.axes[0].get_yscale() == "log" and image.size == (160, 160)


def test_a_score_model_gets_the_ode_figure_too(fixture_checkpoints, tmp_path):  # noqa: F811
    ck = tmp_path / "ck"
    shutil.copytree(fixture_checkpoints, ck)
    model = load_model("tiny-digits", torch.device("cpu"), ck)
    card = {k: v for k, v in model.card.items() if k not in ("sha256", "metrics")}
    save_model(engine.checkpoints.build_model(dict(card, objective="dsm")), "tiny-score", ck,
               dict(card, objective="dsm"))
    score = load_model("tiny-score", torch.device("cpu"), ck)
    lk = Likelihood(AppContext(ModelStore(ck), max_nfe=2000))
    _, _, table, status = _last(lk.likelihood(**dict(ASK, model="tiny-score", schedules=["ve-geometric"])))
    assert [row[:2] for row in table] == [["ve-geometric", "vlb"], ["ve-geometric", "ode"]]
    x = load_dataset("digits8", "test")[0][3:4]
    ode = float(engine.bits_per_dim(score, x, schedule="ve-geometric", method="ode", seed=1, rtol=1e-3, atol=1e-3)[0])
    assert table[1][2] == pytest.approx(ode, abs=1e-4) and math.isfinite(ode)
    assert "ve-geometric ode" in status


def test_one_evaluation_per_session(fixture_checkpoints):  # noqa: F811
    lk = Likelihood(AppContext(ModelStore(fixture_checkpoints), max_nfe=2000))

    class Request:
        session_hash = "s1"

    first = lk.likelihood(**ASK, request=Request())
    next(first)  # under way
    with pytest.raises(gr.Error, match="already running in this browser session"):
        next(lk.likelihood(**ASK, request=Request()))
    first.close()  # stopped: the session may start another
    assert _last(lk.likelihood(**dict(ASK, schedules=["linear"]), request=Request()))[3].startswith("done: ")


def test_the_endpoint_through_gradio_client(app, tmp_path):  # noqa: F811
    _, client, _ = app
    image, plot, table, status = client.predict(**dict(ASK, schedules=["sigmoid"], steps=5), api_name="/likelihood")
    assert status.startswith("done: tiny-digits · digits8 test #3 · bits/dim: sigmoid vlb ")
    assert plot["type"] == "matplotlib" and table["data"][0][:2] == ["sigmoid", "vlb"]
    sketch = tmp_path / "sketch.png"
    drawing = Image.new("L", (280, 280), 0)
    drawing.paste(255, (120, 40, 160, 240))
    drawing.save(sketch)
    editor = {"background": None, "layers": [], "composite": handle_file(str(sketch))}
    out = client.predict(**dict(ASK, source="sketch", steps=5, schedules=["linear"]), sketch=editor,
                         api_name="/likelihood")
    assert out[3].startswith("done: tiny-digits · sketch · ")


@pytest.mark.parametrize("bad,message", [
    (dict(steps=0), "steps = 0 is below the minimum 1"),
    (dict(steps=1001), "steps = 1001 is above the maximum 1000"),
    (dict(schedules=[]), "schedules must name 1 to 4 schedules; got 0"),
    (dict(schedules=["linear", "cosine", "sigmoid", "karras", "constant"]), "schedules must name 1 to 4 schedules"),
    (dict(schedules=["lineer"]), "schedules must be a list of names from: "),
    (dict(schedules=["linear", "cosine", "sigmoid"], steps=1000), "3 schedules × 1000 steps = 3,000 network "
                                                                  "evaluations; the limit per request is 2,000"),
    (dict(source="upload"), "source is upload: upload an image first"),
    (dict(model="nope"), "unknown model 'nope'"),
    (dict(index=10**9), "index = 1000000000 is above the maximum 69999"),
])
def test_bad_requests_are_refused_before_the_queue(app, bad, message):  # noqa: F811
    _, client, _ = app
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace("×", "×")):
        client.predict(**dict(ASK, **bad), api_name="/likelihood")


def test_an_index_past_the_dataset_is_refused(app):  # noqa: F811
    _, client, _ = app
    with pytest.raises(Exception, match="index must be an integer from 0 to"):
        client.predict(**dict(ASK, index=5000), api_name="/likelihood")


try:  # the browser test needs Debian's chromium and Playwright for Python (tests/test_browser.py says how)
    from tests.test_browser import browser, page, server, set_number, shot, wait_done  # noqa: F401
    HAVE_BROWSER = True
except pytest.skip.Exception:
    HAVE_BROWSER = False


@pytest.mark.skipif(not HAVE_BROWSER, reason="chromium or Playwright for Python is not installed")
def test_the_tab_in_a_browser_measures_and_draws_the_terms(server, page):  # noqa: F811
    # a link can name the tab; clicking it instead raced the load event's selection of the linked (default) tab
    page.goto(server + "?tab=likelihood", wait_until="load")
    page.wait_for_selector("#l-run", state="visible")
    set_number(page, "#l-steps", 8)
    page.click("#l-run")
    wait_done(page, "#l-status textarea", "done: ")
    status = page.locator("#l-status textarea").first.input_value()
    assert "mnist test #0 · bits/dim: linear vlb " in status and " cosine vlb " in status, status
    page.wait_for_function("() => { const p = document.querySelector('#l-plot img'); "
                           "return p && p.complete && p.naturalWidth > 100; }", timeout=30_000)
    page.locator("#l-table").get_by_text("cosine").first.wait_for(timeout=30_000)  # the table renders after the plot
    shot(page, "12-likelihood.png")
    assert page.outside == [] and page.errors == [], (page.outside[:5], page.errors[:5])


def test_the_results_page_section_caches_its_cells_and_states_the_anchors(fixture_checkpoints, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    from types import SimpleNamespace

    from engine.report import likelihood as section

    model = load_model("tiny-digits", torch.device("cpu"), fixture_checkpoints)
    setup = SimpleNamespace(name="tiny-digits", card=model.card, model=model, dataset="digits8")
    path = tmp_path / "likelihood.json"
    assert section.measure({"tiny-digits": setup}, {"tiny-digits": ["linear"]}, 3, 0, path) == {}  # 17 grey levels
    x = load_dataset("digits8", "test")[0][:3]
    x = torch.round((x + 1) * 127.5) / 127.5 - 1  # on the 8-bit grid
    monkeypatch.setattr(section, "EIGHT_BIT", ("digits8",))
    monkeypatch.setattr(section, "held_out", lambda dataset, n, seed: x[:n])
    out = section.measure({"tiny-digits": setup}, {"tiny-digits": ["linear"]}, 3, 0, path)
    (r,) = out["tiny-digits"]
    assert r["bpd"] == pytest.approx(float(engine.bits_per_dim(model, x, schedule="linear", seed=0).mean()), abs=1e-6)
    assert r["bpd_ci"][0] <= r["bpd"] <= r["bpd_ci"][1] and len(r["per_t"]) == len(r["t"]) == 999
    assert r["prior"] + r["diffusion"] + r["decoder"] == pytest.approx(r["bpd"], abs=1e-6)

    def computed(*args):
        raise AssertionError("computed again")

    monkeypatch.setattr(section, "cell", computed)
    assert section.measure({"tiny-digits": setup}, {"tiny-digits": ["linear"]}, 3, 0, path) == out  # cached
    retrained = SimpleNamespace(**{**vars(setup), "card": {**model.card, "sha256": "0" * 64}})
    with pytest.raises(AssertionError, match="computed again"):  # new weights: measured again
        section.measure({"tiny-digits": retrained}, {"tiny-digits": ["linear"]}, 3, 0, path)
    text = "\n".join(section.section(out, tmp_path))
    assert "## Likelihood: held-out bits/dim" in text and f"| tiny-digits | linear | vlb | {r['bpd']:.3f} [" in text
    assert all(anchor in text for anchor in ("≤ 3.70", "2.94", "2.99", "not comparable"))
    assert "![the VLB's terms over t for tiny-digits](results/likelihood_tiny-digits.png)" in text
    assert (tmp_path / "likelihood_tiny-digits.png").is_file()
