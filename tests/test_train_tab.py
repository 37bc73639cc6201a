"""The Train tab (space/tabs/train/) and the pieces it stands on: the rings toy, the density and
score of the sampling state in a model's own coordinates (engine/fields.py), drawn points → training → samples,
the bounds (points, CSV, one training per session, two per server), Stop within a step, export → load, and the
animated trajectories (a Plotly figure with a time slider) in the Train and Score field tabs."""
import json
import math
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import engine
from engine import fields as F
from engine.data import toy_sample
from space.tabs.train.endpoint import SNAPSHOT_N, Playground
from space.tabs.train.points import csv_points, drawing_points
from tests.test_app import app, fixture_checkpoints  # noqa: F401  (fixtures)

TRAIN = dict(source="draw", toy="moons", csv_file=None, n_points=500, objective="ddpm", schedule="cosine",
             width=32, steps=60, lr=1e-2, batch_size=128, seed=0)


def ring_drawing(size: int = 400) -> dict:
    """An image editor's value holding a drawn circle (white on black)."""
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).ellipse((100, 120, 300, 320), outline=255, width=10)
    return {"background": img, "layers": [], "composite": img}


def session(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)


def figure(plot) -> dict:
    return json.loads(plot.plot)


# ----------------------------------------------------------------------------------------------- engine ---

def test_rings_are_four_circles():
    x = toy_sample("rings", 4000, torch.Generator().manual_seed(0))
    r = x.norm(dim=1)
    ring = (r / 0.75).round()
    assert set(ring.int().tolist()) == {1, 2, 3, 4}
    assert (r - 0.75 * ring).abs().mean() < 0.1  # the 0.08 jitter
    assert all(abs(float((ring == k).float().mean()) - 0.25) < 0.03 for k in range(1, 5))


def gaussian_in_pixels(mu=(200.0, 150.0), scale=40.0):
    """The Gaussian oracle of standardised data N(m, C), read in pixel coordinates y = μ + s x."""
    model = engine.GaussianModel(torch.tensor([0.5, -0.5]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))
    model.card = {**model.card, "data": {"standardised": {"mean": list(mu), "scale": scale}}}
    return model


def test_state_score_is_the_exact_score_in_the_models_coordinates():
    model = gaussian_in_pixels()
    mu, s, a = torch.tensor([200.0, 150.0], dtype=torch.float64), 40.0, 0.6
    y = mu + 30 * torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cov = s**2 * (a * model.cov + (1 - a) * torch.eye(2, dtype=torch.float64))  # Cov(y_t)
    centre = mu + s * math.sqrt(a) * model.mean
    exact = -(y - centre) @ torch.linalg.inv(cov)
    assert torch.allclose(F.state_score(model, y, a).double(), exact, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="alpha_bar < 1"):
        F.state_score(model, y, 1.0)


def test_state_density_is_the_noised_mixture():
    model = gaussian_in_pixels()
    y0 = torch.tensor([[240.0, 150.0], [160.0, 190.0]])
    xs, ys = np.linspace(0, 400, 201), np.linspace(-50, 350, 201)
    a = 0.5
    d = F.state_density(model, y0, a, xs, ys).double()
    assert abs(float(d.sum()) * 2.0 * 2.0 - 1) < 1e-3  # a density: integrates to 1 (cells of 2 × 2 pixels)
    # each component sits at μ + √ᾱ (y0 − μ) with variance s²(1−ᾱ)
    peak = 200 + math.sqrt(a) * 40, 150.0
    var = 40**2 * (1 - a)
    one = F.state_density(model, y0[:1], a, [peak[0]], [peak[1]])
    assert float(one) == pytest.approx(1 / (2 * math.pi * var), rel=1e-5)
    with pytest.raises(ValueError, match="bandwidth"):
        F.state_density(model, y0, 1.0, xs, ys)


# ---------------------------------------------------------------------------------------------- points ---

def test_drawing_points_follow_the_strokes_in_canvas_coordinates():
    pts = drawing_points(ring_drawing(), 1000, seed=3)
    assert pts.shape == (1000, 2)
    r = np.hypot(pts[:, 0] - 200, pts[:, 1] - 220)  # the circle's centre, y down
    assert np.all(np.abs(r - 97) < 10)
    assert np.array_equal(pts, drawing_points(ring_drawing(), 1000, seed=3))
    with pytest.raises(gr.Error, match="the canvas is empty"):
        drawing_points({"composite": Image.new("L", (400, 400), 0)}, 100, 0)


@pytest.mark.parametrize("text, message", [
    ("x,y\n1,2\nthree,4\n", "line 3 is 'three,4'; each line must be two numbers, x,y"),
    ("1,2,3\n4,5,6\n", "line 1 is '1,2,3'"),
    ("1,2\n", r"1 point\(s\); train on 2 to 5,000"),
    ("1,2\nnan,3\n", "line 2 holds a NaN"),
    ("1,1\n1,1\n1,1\n", "all points are identical"),
    ("".join(f"{k},{k % 7}\n" for k in range(5001)), "more than 5,000 points"),
])
def test_bad_csv_is_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "points.csv"
    path.write_text(text)
    with pytest.raises(gr.Error, match=message):
        csv_points(str(path))


def test_csv_with_a_header_gives_its_points(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("x,y\n0,0\n1.5,-2\n\n3,4e-1\n")
    assert csv_points(str(path)).tolist() == [[0, 0], [1.5, -2], [3, 0.4]]


@pytest.mark.parametrize("change, message", [
    (dict(n_points=5001), "n_points must be an integer from 100 to 5000"),
    (dict(steps=5001), "steps must be an integer from 1 to 5000"),
    (dict(objective="vlb"), "unknown objective 'vlb'; allowed: ddpm, dsm, fm"),
    (dict(source="toy", toy="spiral"), "unknown toy 'spiral'"),
    (dict(source="csv"), "csv_file: upload a CSV file"),
    (dict(lr=1.0), "lr must be a number from 0.0001 to 0.05"),
])
def test_bad_settings_are_refused(change, message):
    with pytest.raises(gr.Error, match=message):
        Playground().train_settings(**{**TRAIN, "sketch": ring_drawing(), **change})


# -------------------------------------------------------------------------------------------- training ---

def test_drawn_points_train_and_samples_appear_then_export_loads(tmp_path):
    pg = Playground()
    me = session("a")
    outs = list(pg.train(**TRAIN, sketch=ring_drawing(), request=me))
    loss, view, status = outs[-1]
    assert status.startswith("done: step 60/60") and "500 points" in status
    curve = figure(loss)["data"][0]
    assert curve["x"][-1] == 60 and all(math.isfinite(v) for v in curve["y"])
    traces = {t.get("name"): t for t in figure(view)["data"]}
    assert len(traces["model samples"]["x"]) == SNAPSHOT_N and "score direction" in traces
    assert figure(view)["layout"]["yaxis"]["range"][0] > figure(view)["layout"]["yaxis"]["range"][1]  # y down

    anim, info = pg.sample("ddpm", "cosine", 12, 200, 1, request=me)
    fig = figure(anim)
    assert info.startswith("200 particles · 12 steps · NFE 12")
    assert [t["type"] for t in fig["data"]] == ["contour", "scatter"]
    steps = fig["layout"]["sliders"][0]["steps"]
    assert len(steps) == 12 and steps[-1]["label"].startswith("step 12/12")
    last = steps[-1]["args"][0]
    assert len(last["x"][1]) == 200 and np.isfinite(np.asarray(last["z"][0])).all()
    ys = np.asarray(last["y"][1])  # the samples lie in the canvas's coordinates, around the drawn circle
    assert 120 < np.median(ys) < 320

    paths = pg.export(request=me)
    weights = next(p for p in paths if p.endswith(".safetensors"))
    name, folder = weights.rsplit("/", 1)[1][: -len(".safetensors")], weights.rsplit("/", 1)[0]
    loaded = engine.load_model(name, directory=folder)
    kw = dict(schedule="cosine", sampler="ddim", steps=5, seed=2, n=50)
    assert torch.equal(engine.sample(loaded, **kw), engine.sample(pg.sessions.get("a").model, **kw))


def test_flow_matching_trains_from_a_drawing_and_says_how_straight_its_paths_are():
    pg = Playground()
    me = session("fm")
    *_, (loss, view, status) = pg.train(**{**TRAIN, "objective": "fm"}, sketch=ring_drawing(), request=me)
    assert status.startswith("done: step 60/60") and status.endswith("fm · path straightness S = "
                                                                       f"{_straightness(status)} · the model is kept "
                                                                       "for sampling and export")
    assert pg.sessions.get("fm").model.card["objective"] == "fm"
    anim, info = pg.sample("euler", "flow", 8, 200, 1, request=me)
    assert info.startswith("200 particles · 8 steps · NFE 8") and "path straightness S = " in info
    ys = np.asarray(figure(anim)["layout"]["sliders"][0]["steps"][-1]["args"][0]["y"][1])
    assert 120 < np.median(ys) < 320  # on the drawn circle, in the canvas's coordinates


def _straightness(status: str) -> str:
    """The S figure of a status, checked to be a non-negative number."""
    figure_text = status.split("path straightness S = ")[1].split(" ")[0]
    assert float(figure_text) >= 0
    return figure_text


def test_stop_ends_within_a_step_and_keeps_the_model():
    pg = Playground()
    me = session("s")
    run = pg.train(**{**TRAIN, "steps": 5000}, sketch=ring_drawing(), request=me)
    next(run)
    at = pg.sessions.get("s").step
    assert pg.stop(request=me).startswith("stopping at step")
    outs = list(run)
    assert outs[-1][2].startswith(f"stopped: step {at + 1}/5000")  # the step under way, and no other
    assert not pg.sessions.get("s").training
    assert pg.sample("ddim", "cosine", 5, 50, 0, request=me)[1].startswith("50 particles")
    assert pg.stop(request=me) == "no training is running in this session"


def test_one_training_per_session_and_two_per_server():
    pg = Playground()
    settings = {**TRAIN, "steps": 5000, "sketch": ring_drawing()}
    a = pg.train(**settings, request=session("a"))
    next(a)
    with pytest.raises(gr.Error, match="a training is already running in this browser session"):
        pg.train_settings(**settings, request=session("a"))
    with pytest.raises(gr.Error, match="a training is running in this session"):
        pg.sample("ddpm", "cosine", 5, 50, 0, request=session("a"))
    b = pg.train(**settings, request=session("b"))
    next(b)
    with pytest.raises(gr.Error, match="the server is busy: 2 trainings are running"):
        pg.train_settings(**settings, request=session("c"))
    pg.stop(request=session("a"))
    list(a)
    pg.train_settings(**settings, request=session("c"))  # a slot is free again
    b.close()  # a closed stream (the page went away) frees its slot too
    assert pg.sessions.running() == 0


def test_sampling_needs_a_trained_model_and_the_time_limit_holds():
    pg = Playground(max_seconds=0.5)
    with pytest.raises(gr.Error, match="no trained model in this session yet"):
        pg.sample_settings("ddpm", "cosine", 10, 100, 0, request=session("x"))
    outs = list(pg.train(**{**TRAIN, "steps": 5000, "source": "toy", "toy": "rings"}, sketch=None,
                         request=session("x")))
    assert outs[-1][2].startswith("time limit")
    loaded_steps = pg.sessions.get("x").model.card["training"]["steps"]
    assert 1 <= loaded_steps < 5000


def test_score_field_animation_replaces_the_gallery(tmp_path):
    """The Score field tab's particles as a slider animation over the toy's noised density."""
    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.field import ScoreField
    from tests.test_app import make_fixture_checkpoints

    h = ScoreField(AppContext(ModelStore(make_fixture_checkpoints(str(tmp_path)))))
    plot, anim, status = h.score_field("tiny-moons", 0.5, "ddim", "cosine", 6, 0, 100)
    assert type(plot).__name__ == "Figure"  # the arrows over p_σ, as before
    fig = figure(anim)
    assert [t["type"] for t in fig["data"]] == ["contour", "scatter"]
    assert len(fig["layout"]["sliders"][0]["steps"]) == 6
    assert status.startswith("100 particles · 6 steps")


def test_score_field_draws_what_a_flow_model_learns(tmp_path):
    """A velocity model's arrows are −v̂ at t = σ/(1 + σ), the direction sampling moves a point (here the model is
    untrained, so only the picture's kind and the arrows' source are checked)."""
    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.field import ScoreField

    *_, last = engine.train_toy(toy_sample("moons", 300, torch.Generator().manual_seed(0)), objective="fm", steps=5,
                                report_every=5)
    engine.save_model(last.model, "tiny-moons-fm", tmp_path)
    h = ScoreField(AppContext(ModelStore(str(tmp_path))))
    plot, _, status = h.score_field("tiny-moons-fm", 0.5, "euler", "flow", 6, 0, 100)
    assert "−velocity at t = 0.333 (σ = 0.5)" in plot.axes[0].get_title()
    field, _ = h._arrows(last.model, 0.5)
    t = 0.5 / 1.5
    expected = -engine.models.velocity(last.model, field["points"] * (1 - t), torch.full((441,), t))
    assert torch.allclose(field["score"], expected.float(), atol=1e-5)


# ------------------------------------------------------------------------------------------- endpoints ---

def test_endpoints_train_sample_export_and_refuse_before_the_queue(app, tmp_path):  # noqa: F811
    """Through gradio_client (one browser session): /train streams to its end, /sample_trained and
    /export_trained use the session's model, and a bad CSV is refused by the validator with its message."""
    from gradio_client import handle_file

    _, client, _ = app
    loss, view, status = client.predict(source="toy", toy="8gaussians", n_points=300, objective="dsm", steps=40,
                                        width=32, batch_size=64, seed=1, api_name="/train")
    assert status.startswith("done: step 40/40") and loss["type"] == "plotly" and view["type"] == "plotly"
    anim, info = client.predict(sampler="ddim", schedule="cosine", steps=8, particles=100, seed=0,
                                api_name="/sample_trained")
    assert info.startswith("100 particles · 8 steps")
    assert len(json.loads(anim["plot"])["layout"]["sliders"][0]["steps"]) == 8
    files = client.predict(api_name="/export_trained")
    assert sorted(str(f).rsplit(".", 1)[1] for f in files) == ["json", "safetensors"]
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,four\n")
    with pytest.raises(Exception, match="csv_file: line 3 is '3,four'; each line must be two numbers"):
        client.predict(source="csv", csv_file=handle_file(str(bad)), api_name="/train")
