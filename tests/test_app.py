"""The Gradio app in-process: every endpoint through gradio_client, determinism by seed, clear errors, deep links.

Runs on tiny fixture checkpoints trained for 2 steps in a temporary folder (never on checkpoints/)."""
import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

import engine  # noqa: E402
from engine.classifier import train_classifier
from engine.train import TrainConfig, Trainer  # noqa: E402

TINY_UNET = {"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
             "num_groups": 4}


def make_fixture_checkpoints(root) -> str:
    """tiny-digits (U-Net on 8×8 digits), tiny-digits-cond (the same, class-conditional) and tiny-moons (MLP on two
    moons), 2 training steps each."""
    ck = os.path.join(root, "ck")
    common = dict(steps=2, lr=1e-3, warmup_steps=1, log_every=1, save_every=2, run_dir=os.path.join(root, "runs"),
                  export_dir=ck, device="cpu")
    Trainer(TrainConfig(name="tiny-digits", dataset="digits8", arch="unet", arch_config=TINY_UNET, batch_size=8,
                        **common)).run(quiet=True)
    Trainer(TrainConfig(name="tiny-digits-cond", dataset="digits8", arch="unet", arch_config={**TINY_UNET, "num_classes": 10},
                        batch_size=8, **common)).run(quiet=True)
    Trainer(TrainConfig(name="tiny-moons", dataset="moons", arch="mlp", arch_config={"hidden": 32, "depth": 2},
                        batch_size=64, **common)).run(quiet=True)
    train_classifier("digits8", epochs=1, directory=ck)  # the Compare tab's quality figure
    return ck


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fixture_checkpoints(tmp_path_factory):
    return make_fixture_checkpoints(str(tmp_path_factory.mktemp("app-ck")))


@pytest.fixture(scope="module")
def app(fixture_checkpoints):
    from space import CSS, build_demo

    demo = build_demo(fixture_checkpoints, max_nfe=2000)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, css=CSS)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield demo, client, port
    client.close() if hasattr(client, "close") else None
    demo.close()


GEN = dict(model="tiny-digits", schedule="cosine", sampler="ddim", steps=6, seed=3, n=2)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")).copy()


def test_api_lists_every_endpoint_with_named_parameters(app):
    _, client, _ = app
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/generate", "/compare", "/forward", "/score_field"} <= set(info)
    gen = [p["parameter_name"] for p in info["/generate"]["parameters"]]
    assert gen[:5] == ["model", "schedule", "sampler", "steps", "seed"]
    assert all(p["parameter_has_default"] for p in info["/generate"]["parameters"][5:])
    comp = [p["parameter_name"] for p in info["/compare"]["parameters"]]
    assert comp[:4] == ["model", "seed", "panels", "n"] and "steps_6" in comp


# captured from the app before issue 27's rebuild; changed since, on purpose: /generate's and /compare's label defaults
# to -2 (random classes, a conditional model's good unconditional mode, issue 28), listed first; /compare gained
# model_1 … model_6 (each panel's own model, default "": the tab's model), added after guidance_6 and nothing else
API_BEFORE = Path(__file__).parent / "data" / "api_before.json"


# a stray guidance slider the Compare tab laid out beside its class picker but never wired (each panel has its own)
REMOVED_ELEM_IDS = {"c-guidance"}


def api_as_saved(info: dict) -> dict:
    """``view_api``'s answer as tests/data/api_before.json keeps it: Gradio's upload folder (where a component's
    default picture is cached) written as {GRADIO_TEMP_DIR}, the cached file's folder (a hash that differs from one
    checkout to another) as {HASH}, and a choice list that is exactly the engine's schedules
    samplers or training objectives (as a JSON enum or a Literal type) written as {SCHEDULES} / {SAMPLERS} /
    {OBJECTIVES}, so that one added to the engine's registries (the flow issue's ``flow``, ``euler``, ``heun``, ``fm``)
    reaches every picker without restating the API, while a picker that drops one still differs. The rest as it
    is."""
    from gradio.utils import get_upload_folder

    text = json.dumps(info, ensure_ascii=False, sort_keys=True).replace(get_upload_folder(), "{GRADIO_TEMP_DIR}")
    text = re.sub(r"\{GRADIO_TEMP_DIR\}/[0-9a-f]{64}/", "{GRADIO_TEMP_DIR}/{HASH}/", text)
    for name, values in (("{SCHEDULES}", list(engine.SCHEDULES)), ("{SAMPLERS}", list(engine.SAMPLERS)),
                         ("{OBJECTIVES}", list(engine.models.OBJECTIVES))):
        text = text.replace(json.dumps(values, ensure_ascii=False), json.dumps([name]))
        text = text.replace("Literal[" + ", ".join(repr(v) for v in values) + "]", f"Literal[{name}]")
    return json.loads(text)


def test_api_and_elem_ids_are_those_saved_before_the_rebuild(app):
    """The HTTP API (every endpoint, parameter, default, bound, description and output) is exactly the one saved
    before the app was rebuilt tab by tab, and every elem_id the page had is still on it."""
    import httpx

    _, client, port = app
    before = json.loads(API_BEFORE.read_text())
    assert api_as_saved(client.view_api(return_format="dict", print_info=False)) == before["view_api"]
    config = httpx.get(f"http://127.0.0.1:{port}/config").json()
    ids = {c["props"].get("elem_id") for c in config["components"] if c.get("props", {}).get("elem_id")}
    assert set(before["elem_ids"]) - REMOVED_ELEM_IDS <= ids


def test_generate_outputs_and_png_settings(app):
    _, client, port = app
    image, gallery, gif, png, plot, status, link = client.predict(**GEN, api_name="/generate")
    im = pixels(image)
    assert im.shape[0] >= 8 * 2 and im.std() > 0  # a 2-image grid, upscaled
    assert len(gallery) == 2 * 6  # x_t and x̂0 at every one of the 6 steps (≤ 12 snapshots)
    caps = [g["caption"] for g in gallery]
    assert caps[0].startswith("x_t · step 1/6 · t=") and "σ=" in caps[0] and "NFE 1" in caps[0]
    assert caps[1].startswith("x̂0 · step 1/6") and caps[-1].startswith("x̂0 · step 6/6")
    with Image.open(gif) as g:
        assert g.format == "GIF" and g.n_frames >= 2
    with Image.open(png) as p:
        settings = json.loads(p.text["denoisery"])
        assert p.size == (17, 8)  # native resolution: two 8×8 tiles and a 1-pixel gap
    assert settings["model"] == "tiny-digits" and settings["steps"] == 6 and settings["seed"] == 3
    assert settings["schedule"] == "cosine" and settings["sampler"] == "ddim" and settings["eta"] == 0.0
    assert plot["type"] == "matplotlib"
    assert status.startswith("done: 6/6 steps · NFE 6")
    assert link.startswith(f"http://127.0.0.1:{port}/?tab=generate&model=tiny-digits&schedule=cosine")
    assert "seed=3" in link and "steps=6" in link


def test_generate_deterministic_by_seed(app):
    _, client, _ = app
    kw = dict(GEN, sampler="ddpm", steps=5)
    a = pixels(client.predict(**kw, api_name="/generate")[0])
    b = pixels(client.predict(**kw, api_name="/generate")[0])
    c = pixels(client.predict(**dict(kw, seed=4), api_name="/generate")[0])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generate_streams_several_updates(app):
    _, _, port = app
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    job = client.submit(**dict(GEN, sampler="ddpm", steps=300, n=1), api_name="/generate")
    final = job.result(timeout=120)
    outs = job.outputs()
    assert len(outs) >= 2, "the first frame comes before the end"
    assert final[5].startswith("done: 300/300")
    assert len(final[1]) == 2 * 12  # snapshots are capped


def _plot_pixels(plot: dict) -> np.ndarray:
    """The schedule plot sent to the page (a PNG data URL) as an RGB array."""
    import base64
    import io

    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(plot["plot"].split(",", 1)[1]))) as im:
        return np.asarray(im.convert("RGB")).copy()


def test_generate_streams_the_plot_with_the_current_step(app):
    """The live updates carry the schedule plot with the current step marked: the marker moves between updates,
    the curves stay put; the gallery and the live frames are files the server serves as they are."""
    _, _, port = app
    from space import streaming

    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    old = streaming.UPDATE_EVERY_S
    streaming.UPDATE_EVERY_S = 0.0  # an update at every step, whatever the machine's speed
    try:
        job = client.submit(**dict(GEN, sampler="ddpm", steps=40, n=1), api_name="/generate")
        final = job.result(timeout=120)
        outs = job.outputs()
    finally:
        streaming.UPDATE_EVERY_S = old
    plots = [o[4] for o in outs if isinstance(o[4], dict) and o[4].get("plot")]
    assert len(plots) >= 3, "the plot comes with the streamed updates, not only at the end"
    first, mid, last = _plot_pixels(plots[0]), _plot_pixels(plots[len(plots) // 2]), _plot_pixels(final[4])
    assert first.shape == mid.shape == last.shape
    changed = (np.abs(first.astype(int) - mid.astype(int)).sum(-1) > 0).mean()
    assert 0 < changed < 0.1, changed  # the marker moved; the rest (curves, axes, labels) is the same picture
    frames = [o[0] for o in outs if isinstance(o[0], dict) and o[0].get("url")]
    assert len(frames) >= 3 and len({f["url"] for f in frames}) == len(frames)  # a new live frame each update
    galleries = [o[1] for o in outs if isinstance(o[1], list)]
    assert galleries and len(galleries[-1]) == 2 * 12
    assert [len(g) for g in galleries] == sorted(len(g) for g in galleries)  # the gallery only grows
    # the live frame is served (as the browser fetches it)
    import urllib.request

    with urllib.request.urlopen(frames[-1]["url"]) as r, Image.open(r) as im:
        assert im.format == "PNG" and im.size[0] >= 8


def test_generate_gif_has_every_step_at_display_size(app):
    _, client, _ = app
    image, gallery, gif, png, plot, status, link = client.predict(**dict(GEN, steps=5), api_name="/generate")
    with Image.open(gif) as g, Image.open(image) as im:
        assert g.n_frames == 5 and g.size == im.size  # one frame per step, as large as the final image
        g.seek(4)
        last = np.asarray(g.convert("L"))
        assert np.array_equal(last, np.asarray(im.convert("L")))  # the GIF ends on the sample


def test_marked_schedule_equals_a_full_drawing():
    """The kept schedule plot with a marker drawn on it looks like the figure drawn whole with that marker."""
    import base64
    import io

    from space import plots

    import engine

    visited = engine.get_schedule("cosine").timesteps(20, "leading").tolist()
    curves = [{"schedule": "cosine", "label": "cosine · ddim", "visited": visited}]
    kept = plots.schedule_plot(curves)
    assert plots.schedule_plot([dict(curves[0], current=5)]) is kept  # kept for the next request
    for t in (visited[0], visited[10], visited[-1]):
        buf = io.BytesIO()
        plots.schedule_figure([dict(curves[0], current=t)]).savefig(buf, format="png")
        with Image.open(buf) as im:
            whole = np.asarray(im.convert("RGB")).astype(int)
        marked = _plot_pixels({"type": "matplotlib", "plot": kept.png(t)}).astype(int)
        assert marked.shape == whole.shape
        assert np.abs(marked - whole).mean() < 1.0, t  # 256 colours and the marker drawn last: tiny differences
        assert (np.abs(marked - whole).max(-1) > 60).mean() < 0.002, t
    assert base64.b64decode(kept.png(None).split(",", 1)[1])[:4] == b"\x89PNG"  # no marker: the bare curves


def test_grids_equal_grid_per_batch():
    import torch

    from space import imaging

    xs = [torch.randn(3, 1, 8, 8) * 1.5 for _ in range(4)]
    for a, b in zip(imaging.grids(xs), [imaging.grid(x) for x in xs]):
        assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))
    assert imaging.grids([]) == []


def test_queue_polls_gently(app):
    """Gradio's queue would look for requests every 1 ms, taking the GIL from the sampler each time (the engine ran
    ~20% slower in the server's process); the app's queue looks every QUEUE_POLL_S."""
    from space.settings import QUEUE_POLL_S

    demo, _, _ = app
    assert demo._queue.sleep_when_free == QUEUE_POLL_S >= 0.005


def test_import_app_leaves_matplotlib_for_later():
    """Cold start: ``import app`` does not import matplotlib (the page is served first; app.py's warm-up thread
    imports it and draws the default plot afterwards)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, app; assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
            "from space.tabs.generate import warm_up; warm_up(); assert 'matplotlib' in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=300)


@pytest.mark.parametrize("sampler,extra", [("langevin", {"n_steps_each": 2, "step_size": 0.1}),
                                           ("pc", {"snr": 0.2, "n_corrector": 1}), ("ode", {}),
                                           ("dpm-solver++", {"spacing": "trailing"}),
                                           ("ddpm", {"variance": "fixed_large"}), ("euler-maruyama", {})])
def test_generate_every_sampler(app, sampler, extra):
    _, client, _ = app
    out = client.predict(**dict(GEN, sampler=sampler, steps=3, n=1, **extra), api_name="/generate")
    assert out[5].startswith("done: 3/3 steps")
    with Image.open(out[3]) as p:
        s = json.loads(p.text["denoisery"])
    for k, v in extra.items():
        assert s[k] == v


@pytest.mark.parametrize("bad,message", [
    (dict(model="nope"), "unknown model 'nope'; models available here: tiny-digits, tiny-digits-cond"),
    (dict(model="tiny-moons"), "unknown model 'tiny-moons'"),  # a toy model cannot make images
    (dict(schedule="bogus"), "bogus"),
    (dict(steps=0), "minimum"),
    (dict(steps=2.5), "steps"),
    (dict(seed=-1), "minimum"),
    (dict(sampler="langevin", steps=1000, n=16, n_steps_each=100), "network evaluations"),
    (dict(sampler="dpm-solver++", spacing="sideways"), "sideways"),
])
def test_generate_invalid_settings_give_clear_errors(app, bad, message):
    _, client, _ = app
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        client.predict(**dict(GEN, **bad), api_name="/generate")


def test_compare_lock_step_same_noise(app):
    _, client, _ = app
    gallery, plot, table, status, scrub, link = client.predict(
        model="tiny-digits", seed=5, panels=3, n=1,
        schedule_1="linear", sampler_1="ddpm", steps_1=4,
        schedule_2="linear", sampler_2="ddpm", steps_2=4,
        schedule_3="karras", sampler_3="ode", steps_3=2, api_name="/compare")
    assert len(gallery) == 3
    assert gallery[0]["caption"].startswith("1: linear · ddpm · 4 steps · step 4/4 · NFE 4")
    assert gallery[2]["caption"].startswith("3: karras · ode · 2 steps · step 2/2 · NFE 3")
    # two panels with the same settings see the same x_T and noise: identical images
    assert np.array_equal(pixels(gallery[0]["image"]), pixels(gallery[1]["image"]))
    rows = table["data"]
    assert [r[0] for r in rows] == [1, 2, 3] and [r[2] for r in rows] == [4, 4, 3]
    # the evaluator's classifier labels each panel's image: "digit (confidence)"
    assert all(re.fullmatch(r"\d \((0|1)\.\d\d\)", r[4]) for r in rows), [r[4] for r in rows]
    assert status.startswith("done: 4 rounds") and scrub["maximum"] == 4
    assert plot["type"] == "matplotlib"
    assert "?tab=compare&model=tiny-digits&seed=5&n=1&panels=3&schedule_1=linear&sampler_1=ddpm&steps_1=4" in link
    assert link.endswith("schedule_3=karras&sampler_3=ode&steps_3=2")
    # same seed again → same images; the panels' defaults fill the rest
    again = client.predict(model="tiny-digits", seed=5, panels=3, n=1, schedule_1="linear", sampler_1="ddpm",
                           steps_1=4, schedule_2="linear", sampler_2="ddpm", steps_2=4, schedule_3="karras",
                           sampler_3="ode", steps_3=2, api_name="/compare")
    assert np.array_equal(pixels(gallery[2]["image"]), pixels(again[0][2]["image"]))


def test_compare_errors(app):
    _, client, _ = app
    with pytest.raises(Exception, match="network evaluations"):
        client.predict(model="tiny-digits", seed=0, panels=6, n=4, steps_1=1000, steps_2=1000, api_name="/compare")
    with pytest.raises(Exception, match="unknown model 'zzz'"):
        client.predict(model="zzz", seed=0, panels=1, api_name="/compare")


def test_compare_panels_from_two_models(app):
    """A panel's own model (``model_K``) runs beside the tab's from the same x_T: each panel is the image its model
    gives alone with that seed, the titles and the table lead with the models' names, and the link names the panel
    that differs; a model that is not offered is refused, naming the panel."""
    _, client, _ = app
    panels = dict(schedule_1="cosine", sampler_1="ddim", steps_1=3, schedule_2="cosine", sampler_2="ddim", steps_2=3)
    gallery, plot, table, status, scrub, link = client.predict(model="tiny-digits", seed=2, panels=2, n=1,
                                                               model_2="tiny-digits-cond", **panels, api_name="/compare")
    assert [g["caption"].split(" · step")[0] for g in gallery] == [
        "1: tiny-digits · cosine · ddim · 3 steps", "2: tiny-digits-cond · cosine · ddim · 3 steps (class random, w=1)"]
    assert [r[1] for r in table["data"]] == [g["caption"].split(" · step")[0][3:] for g in gallery]
    # panel 1 runs the tab's model: the link says nothing of it; the conditional panel's classes: random, by the seed
    assert "&panels=2&label=-2&schedule_1=cosine&sampler_1=ddim&steps_1=3&model_2=tiny-digits-cond&schedule_2" in link
    for k, name in enumerate(["tiny-digits", "tiny-digits-cond"]):
        alone = client.predict(model=name, seed=2, panels=1, n=1, schedule_1="cosine", sampler_1="ddim", steps_1=3,
                               api_name="/compare")[0][0]
        assert not alone["caption"].startswith(f"1: {name}")  # one model: the titles say no name, as before
        assert np.array_equal(pixels(gallery[k]["image"]), pixels(alone["image"])), name
    demo, _, _ = app
    assert demo.rooms["compare"].link.parse({"model_2": "tiny-digits-cond"}) == {"model_2": "tiny-digits-cond"}
    with pytest.raises(Exception, match="unknown model of panel 2 'zzz'; allowed: tiny-digits, tiny-digits-cond"):
        client.predict(model="tiny-digits", seed=0, panels=2, model_2="zzz", api_name="/compare")


class _Offered:
    """What ``offered_examples`` reads of a ModelStore: the image models offered, their cards and classes."""

    def __init__(self, cards: dict):
        self.cards = cards

    def image_models(self) -> list[str]:
        return sorted(self.cards)

    def card(self, name: str) -> dict:
        return self.cards[name]

    def classes(self, name: str) -> list[str]:
        return [str(i) for i in range(self.cards[name].get("num_classes", 0))]


def test_an_example_is_offered_only_with_every_model_it_names():
    """"8 steps: flow matching vs DDPM" names mnist-fm (panels 1 and 2) beside mnist-ddpm: it appears once both are
    offered, with its models as named; the others keep their roles (a score model, a conditional one)."""
    from space.ui import offered_examples

    flow = "8 steps: flow matching vs DDPM"
    today = {"mnist-ddpm": {"objective": "ddpm"}, "mnist-ncsn": {"objective": "dsm"},
             "mnist-cond": {"objective": "ddpm", "num_classes": 10}}
    assert flow not in dict(offered_examples(_Offered(today)))
    assert len(offered_examples(_Offered(today))) == 4  # every other example runs on today's models
    query = dict(offered_examples(_Offered({**today, "mnist-fm": {"objective": "fm"}})))[flow]
    assert (query["model"], query["model_1"], query["model_2"]) == ("mnist-ddpm", "mnist-fm", "mnist-fm")
    assert "model_3" not in query and query["panels"] == 4
    assert flow not in dict(offered_examples(_Offered({"mnist-fm": {"objective": "fm"}})))  # no mnist-ddpm
    assert offered_examples(_Offered({})) == []
    # "distilled" is a model whose card names its teacher, "teacher" that teacher: both must be offered
    fast = "1–4 steps: distilled vs DPM-Solver++ and DDIM"
    student = {"objective": "fm", "distilled_from": {"teacher": "mnist-fm", "method": "reflow"}}
    assert fast not in dict(offered_examples(_Offered({**today, "mnist-fast": student})))  # its teacher is not
    query = dict(offered_examples(_Offered({**today, "mnist-fm": {"objective": "fm"}, "mnist-fast": student})))[fast]
    assert (query["model"], query["model_1"], query["model_2"]) == ("mnist-fm", "mnist-fast", "mnist-fast")
    assert [query[f"steps_{k}"] for k in range(1, 5)] == [1, 4, 4, 4]


def _shipped_example(label: str, model: str) -> tuple:
    """Run the example ``label`` on the shipped checkpoints (checkpoints/ or $ENGINE_CHECKPOINTS) as its button
    does: (gallery, per-panel rows, status, link); skipped while ``model`` is not offered (not shipped, or its card
    says withdrawn)."""
    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.compare import Compare
    from space.ui import offered_examples

    store = ModelStore()
    if model not in store.image_models():
        pytest.skip(f"{model} is not offered (checkpoints/{model}.safetensors + .json missing, or withdrawn)")
    query = dict(offered_examples(store))[label]
    head = {key: query[key] for key in ("model", "seed", "panels", "n")}
    panels = {key: value for key, value in query.items() if key not in head and key != "tab"}
    *_, (gallery, plot, rows, status, state, scrub, link) = Compare(AppContext(store)).compare(**head, **panels)
    return [caption.split(" · step")[0] for _, caption in gallery], [row[2] for row in rows], status, link


def test_the_flow_matching_example_runs_on_the_shipped_models():
    """"8 steps: flow matching vs DDPM" once mnist-fm is offered: four panels from one x_T, each title leading with
    its model."""
    titles, nfe, status, link = _shipped_example("8 steps: flow matching vs DDPM", "mnist-fm")
    assert titles == ["1: mnist-fm · flow · euler · 8 steps", "2: mnist-fm · flow · heun · 4 steps",
                      "3: mnist-ddpm · linear · ddim · 8 steps", "4: mnist-ddpm · linear · dpm-solver++ · 8 steps"]
    assert nfe == [8, 7, 8, 8] and status.startswith("done: 8 rounds")
    assert "&model_1=mnist-fm&schedule_1=flow" in link and "model_3" not in link


def test_the_distillation_example_runs_on_the_shipped_models():
    """"1–4 steps: distilled vs DPM-Solver++ and DDIM" once mnist-fast is offered: the student at 1 and 4 Euler
    steps beside its teacher's DPM-Solver++ and DDIM at 4, from one x_T."""
    titles, nfe, status, _ = _shipped_example("1–4 steps: distilled vs DPM-Solver++ and DDIM", "mnist-fast")
    assert titles == ["1: mnist-fast · flow · euler · 1 step", "2: mnist-fast · flow · euler · 4 steps",
                      "3: mnist-fm · flow · dpm-solver++ · 4 steps", "4: mnist-fm · flow · ddim · 4 steps"]
    assert nfe == [1, 4, 4, 4] and status.startswith("done: 4 rounds")


def test_generate_with_a_class_and_guidance(app):
    _, client, port = app
    kw = dict(GEN, model="tiny-digits-cond")
    null = client.predict(**kw, label=-1, api_name="/generate")
    w0 = client.predict(**kw, label=3, guidance_scale=0.0, api_name="/generate")
    assert np.array_equal(pixels(w0[0]), pixels(null[0]))  # w = 0 is the null class alone
    image, gallery, gif, png, plot, status, link = client.predict(**kw, label=3, guidance_scale=4.0,
                                                                  api_name="/generate")
    # a guided evaluation runs two network rows per image (ε̂(x, ∅) and ε̂(x, c)): the status says both counts
    assert status.startswith("done: 6/6 steps · NFE 6 · 12 network rows per sample · ")
    assert "label=3&guidance_scale=4.0" in link
    assert "network rows" not in null[5] and "network rows" not in w0[5]  # one row per evaluation
    assert "label=-1&guidance_scale=1.0" in null[-1]  # the null class is named: a run from noise defaults to random
    assert "label" not in client.predict(**GEN, api_name="/generate")[-1]  # an unconditional model's link: no class
    with Image.open(png) as p:
        settings = json.loads(p.text["denoisery"])
    assert settings["label"] == 3 and settings["guidance_scale"] == 4.0
    # label -2, the default: each image's class drawn from the seed; the link says so and reruns the same images
    drawn = client.predict(**dict(kw, n=4), api_name="/generate")
    assert "label=-2&guidance_scale=1.0" in drawn[-1] and "_classrandom_w1" in Path(drawn[3]).name
    assert np.array_equal(pixels(drawn[0]), pixels(client.predict(**dict(kw, n=4), label=-2, api_name="/generate")[0]))


@pytest.mark.parametrize("bad, message", [
    (dict(label=3), "model tiny-digits is unconditional: label must be -1"),
    (dict(model="tiny-digits-cond", label=-1, guidance_scale=3.0), "guidance_scale 3 needs a class"),
    (dict(model="tiny-digits-cond", label=10), "unknown label 10; allowed: -2, -1, 0, 1"),
    (dict(model="tiny-digits-cond", label="1"), r"unknown label '1'; allowed \(numbers, not text\): -2, -1, 0, 1"),
    (dict(model="tiny-digits-cond", label=1, guidance_scale=11), "guidance_scale = 11 is above the maximum 10"),
])
def test_bad_classes_and_guidance_are_refused_before_the_queue(app, bad, message):
    _, client, _ = app
    with pytest.raises(Exception, match=message):
        client.predict(**dict(GEN, **bad), api_name="/generate")


def test_compare_guidance_scales_side_by_side(app):
    _, client, _ = app
    same = dict(schedule_1="cosine", sampler_1="ddim", steps_1=3, schedule_2="cosine", sampler_2="ddim", steps_2=3,
                schedule_3="cosine", sampler_3="ddim", steps_3=3)
    gallery, plot, table, status, scrub, link = client.predict(
        model="tiny-digits-cond", seed=1, panels=3, n=1, label=2, guidance_1=0.0, guidance_2=1.0, guidance_3=3.0,
        **same, api_name="/compare")
    assert [g["caption"].split(" · step")[0] for g in gallery] == [
        "1: cosine · ddim · 3 steps (class 2, w=0)", "2: cosine · ddim · 3 steps (class 2, w=1)",
        "3: cosine · ddim · 3 steps (class 2, w=3)"]
    assert "&label=2&" in link and link.endswith("guidance_3=3.0")
    with pytest.raises(Exception, match="model tiny-digits is unconditional"):
        client.predict(model="tiny-digits", seed=1, panels=1, n=1, label=2, api_name="/compare")


def test_links_restore_the_class_and_guidance(app):
    demo, _, _ = app
    generate, compare = demo.rooms["generate"].link, demo.rooms["compare"].link
    q = {"label": "3", "guidance_scale": "2.5", "guidance_2": "4", "guidance_3": "99"}
    assert generate.parse(q) == {"label": 3, "guidance_scale": 2.5}
    assert compare.parse(q) == {"label": 3, "guidance_2": 4.0}  # w ≤ 10
    assert generate.parse({"label": "-2"}) == {"label": -2} and generate.parse({"label": "-3"}) == {}
    assert demo.rooms["edit"].link.parse({"label": "-2"}) == {}  # no random classes in an edit


def test_forward_endpoint(app, tmp_path):
    _, client, _ = app
    gallery, plot, x0, source = client.predict(dataset="digits8", index=3, schedules=["linear", "cosine"],
                                               timesteps="0, 500, 999", seed=0, api_name="/forward")
    assert len(gallery) == 6 and source == "digits8 test #3"
    assert gallery[0]["caption"].startswith("linear · t=0 · ᾱ=") and gallery[5]["caption"].startswith("cosine · t=999")
    # an upload of any mode/size is converted to the dataset's shape
    up = tmp_path / "up.png"
    Image.new("RGBA", (300, 120), (10, 200, 30, 128)).save(up)
    out = client.predict(dataset="digits8", index=0, schedules=["karras"], timesteps="10", seed=1,
                         upload=gradio_client.handle_file(str(up)), api_name="/forward")
    assert out[3] == "upload" and len(out[0]) == 1
    with pytest.raises(Exception, match="t must be an integer from 0 to 999"):
        client.predict(dataset="digits8", index=0, schedules=["linear"], timesteps="5, 1000", seed=0,
                       api_name="/forward")
    with pytest.raises(Exception, match="integers separated by commas"):
        client.predict(dataset="digits8", index=0, schedules=["linear"], timesteps="a, b", seed=0, api_name="/forward")
    with pytest.raises(Exception, match="at least one schedule"):
        client.predict(dataset="digits8", index=0, schedules=[], timesteps="5", seed=0, api_name="/forward")


def test_score_field_endpoint(app):
    _, client, _ = app
    plot, anim, status = client.predict(model="tiny-moons", sigma=0.5, sampler="ddim", schedule="cosine", steps=6,
                                        seed=0, particles=100, api_name="/score_field")
    assert plot["type"] == "matplotlib" and anim["type"] == "plotly"
    assert len(json.loads(anim["plot"])["layout"]["sliders"][0]["steps"]) == 6  # one slider step per sampler step
    assert status.startswith("100 particles · 6 steps · NFE 6")
    with pytest.raises(Exception, match="unknown model 'tiny-digits'; models available here: tiny-moons"):
        client.predict(model="tiny-digits", sigma=0.5, api_name="/score_field")


def test_app_starts_without_any_model(tmp_path):
    from space import build_demo

    demo = build_demo(str(tmp_path / "empty"))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(Exception, match="no image model is available"):
            client.predict(model="x", schedule="cosine", sampler="ddim", steps=2, seed=0, api_name="/generate")
        with pytest.raises(Exception, match="no 2-D toy model is available"):
            client.predict(model="x", sigma=0.5, api_name="/score_field")
    finally:
        demo.close()


def test_links_keep_only_the_values_their_fields_take(app):
    """A link's values are checked by the fields that take them (bounds, integers, choices); one query string
    serves every tab, each reading the keys it declares."""
    demo, _, _ = app
    query = {"tab": "compare", "model": "m", "schedule": "karras", "sampler": "nope", "steps": "20", "seed": "-3",
             "eta": "0.5", "panels": "4", "steps_2": "7", "sampler_3": "ode", "n": "1.5", "step_size": "0.0005"}
    assert demo.rooms["compare"].link.parse(query) == {"model": "m", "panels": 4, "steps_2": 7, "sampler_3": "ode"}
    assert demo.rooms["generate"].link.parse(query) == {"model": "m", "schedule": "karras", "steps": 20, "eta": 0.5}
    assert demo.rooms["compare"].link.parse({"panels": "7"}) == {}  # more than engine.compare.MAX_PANELS


def test_every_readme_link_restores_its_settings(app):
    """Each link the README shows names a tab whose link declares every one of its keys, with a value it takes."""
    from urllib.parse import parse_qsl

    from space.links import link_tab

    demo, _, _ = app
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    links = json.loads(API_BEFORE.read_text())["readme_links"]
    assert all(link in readme for link in links)
    for link in links:
        query = dict(parse_qsl(link.lstrip("?")))
        room = demo.rooms[link_tab(query)]
        assert set(room.link.parse(query)) == set(query) - {"tab"}, link


def test_sampler_option_sliders_lie_within_the_engines_ranges():
    """The step size and the corrector's SNR must be > 0 for the engine: each option slider's bounds pass the
    engine's own check, so what the page, the API and a link accept, the engine runs."""
    from engine.samplers import check_option
    from space.settings import OPTION_SLIDERS

    for name, (lo, hi, _) in OPTION_SLIDERS.items():
        assert check_option(name, lo) == lo and check_option(name, hi) == hi


def test_compare_has_a_default_for_every_panel_the_engine_allows():
    from engine.compare import MAX_PANELS
    from space.tabs.compare import PANEL_DEFAULTS

    assert len(PANEL_DEFAULTS) == MAX_PANELS


def test_default_result_is_made_once_and_kept(fixture_checkpoints):
    """The result every page opens with: one run per process, then served from memory; files that were removed
    (Gradio's and the app's clean-up) are written again from memory, without a run."""
    import shutil

    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.generate import Generate

    h = Generate(AppContext(ModelStore(fixture_checkpoints)))
    runs = []
    real = h.generate

    def counted(*args, **kwargs):
        runs.append(args)
        yield from real(*args, **kwargs)

    h.generate = counted
    image, gallery, gif, png, plot, status, link = h.default_result()
    assert runs == [tuple(h.default_values())] and runs[0][:7] == ("tiny-digits", "cosine", "ddim", 50, 0, 4, "leading")
    assert status.startswith("done: 50/50 steps") and status.endswith("kept from this server's first run of the default "
                                                                      "settings")
    assert link.startswith("?tab=generate&model=tiny-digits&schedule=cosine&sampler=ddim&steps=50&seed=0&n=4")
    assert len(gallery) == 2 * 12 and plot.type == "matplotlib"
    first = pixels(image)
    assert h.default_result()[0] == image and len(runs) == 1
    shutil.rmtree(os.path.dirname(image))
    again = h.default_result()
    assert len(runs) == 1 and again[0] != image and np.array_equal(pixels(again[0]), first)
    assert all(os.path.exists(p) for p in (again[2], again[3], *(g for g, _ in again[1])))


def test_a_withdrawn_model_is_not_offered_but_stays_loadable(tmp_path, caplog):
    """A card's ``withdrawn`` (why the model falls short of our bars) keeps it out of every picker, and the log
    says why; the weights still load for the report (test_report: its section states the reason)."""
    from space.models import ModelStore

    directory = make_fixture_checkpoints(str(tmp_path))
    card_path = Path(directory) / "tiny-digits-cond.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "withdrawn": "its samples miss the bar"}))
    with caplog.at_level("INFO", logger="denoisery"):
        store = ModelStore(directory)
        assert store.image_models() == ["tiny-digits"] and store.skipped() == []
    assert "checkpoint tiny-digits-cond is not offered: its samples miss the bar" in caplog.text
    assert engine.load_model("tiny-digits-cond", directory=directory).num_classes == 10
    # the About tab says which models are offered and why one is not
    from space.context import AppContext
    from space.tabs.about import offered_text
    assert store.withdrawn() == {"tiny-digits-cond": "its samples miss the bar"}
    text = offered_text(AppContext(store))
    assert "Offered: tiny-digits." in text and "- Not offered: **tiny-digits-cond** — its samples miss the bar" in text
    # a request for it says it is held back, not that it is unknown
    with pytest.raises(Exception, match="model .tiny-digits-cond. is not offered: it falls short of the results "
                                       "page's quality bar .*; models available here: tiny-digits"):
        AppContext(store).model_name("tiny-digits-cond")
