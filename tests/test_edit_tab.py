"""The Edit tab (space/tabs/edit/endpoint.py ``Edit.edit``, endpoint ``/edit``): each mode through gradio_client on the tiny fixture
checkpoints (8×8 digits), a conditional model's class and guidance, its checks before the queue, its links and its
downloads."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.test_app import app, fixture_checkpoints, pixels  # noqa: F401  (fixtures)

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

EDIT = dict(model="tiny-digits", source="dataset", dataset="digits8", index=3, schedule="cosine", sampler="ddim",
            steps=10, seed=2)


def editor(layer: str | None = None, composite: str | None = None) -> dict:
    """An image editor's value as gradio_client sends it: files for the painted layer and the composite."""
    return {"background": None, "layers": [handle_file(layer)] if layer else [],
            "composite": handle_file(composite) if composite else None}


def settings_of(png) -> dict:
    with Image.open(png) as p:
        return json.loads(p.text["denoisery"])


def test_img2img_starts_where_the_strength_says_and_reproduces(app):
    _, client, port = app
    image, gallery, gif, png, plot, status, link = client.predict(**EDIT, mode="img2img", strength=0.5,
                                                                  api_name="/edit")
    from engine.editing import img2img_levels

    t, a = img2img_levels("cosine", 10, 0.5, "leading")[0]
    assert f"starts at t = {t}, σ = {((1 - a) / a) ** 0.5:.3g} (5 of 10 steps)" in status
    assert status.startswith("done: img2img · ") and "5/5 steps · NFE 5" in status
    assert gallery[0]["caption"] == "source: digits8 test #3"
    assert len(gallery) == 1 + 2 * 5 and plot["type"] == "matplotlib"
    s = settings_of(png)
    assert s["mode"] == "img2img" and s["strength"] == 0.5 and s["index"] == 3 and s["nfe"] == 5
    assert link.startswith(f"http://127.0.0.1:{port}/?tab=edit&model=tiny-digits&mode=img2img")
    assert "strength=0.5" in link and "index=3" in link and "dataset=digits8" in link
    with Image.open(gif) as g:
        assert 2 <= g.n_frames <= 5  # one frame per step (Pillow merges identical neighbours)
    again = client.predict(**EDIT, mode="img2img", strength=0.5, api_name="/edit")
    assert np.array_equal(pixels(image), pixels(again[0]))


def test_inpainting_fills_the_painted_region_only(app, tmp_path):
    _, client, _ = app
    layer = tmp_path / "mask.png"
    paint = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    paint.paste((255, 0, 0, 180), (40, 0, 80, 80))  # the right half of the image
    paint.save(layer)
    out = client.predict(**EDIT, mode="inpaint", mask=editor(str(layer)), jump_length=3, resamples=2,
                         api_name="/edit")
    image, gallery, gif, png, plot, status, link = out
    from engine.editing import inpaint_nfe

    nfe = inpaint_nfe(10, 3, 2)
    assert f"{nfe}/{nfe} steps · NFE {nfe}" in status and "32 of 64 pixels filled" in status
    assert gallery[1]["caption"] == "known / unknown (grey, to fill): 32 of 64 pixels to fill"
    with Image.open(png) as p:
        result = np.asarray(p.convert("L")).astype(int)
    from engine.data import load_dataset

    source = ((load_dataset("digits8", "test")[0][3, 0].numpy() + 1) * 127.5).round().astype(int)
    assert np.abs(result[:, :4] - source[:, :4]).max() <= 1  # the known half is kept
    assert "the link carries the settings, not the mask" in status
    with pytest.raises(Exception, match="nothing to inpaint"):  # nothing painted: the engine's message
        client.predict(**EDIT, mode="inpaint", mask=editor(), api_name="/edit")


def test_inversion_reconstructs_and_reports_the_error(app):
    _, client, _ = app
    image, gallery, gif, png, plot, status, link = client.predict(**EDIT, mode="invert", api_name="/edit")
    captions = [g["caption"] for g in gallery]
    assert captions[1].startswith("x_T from DDIM inversion") and captions[2].startswith("reconstruction")
    assert captions[3].startswith("|reconstruction − source|") and captions[4].startswith("x_t · step 1/20")  # the inversion streams first
    error = float(re.search(r"reconstruction error (\d+\.\d+) grey levels", status).group(1))
    assert 0 <= error < 128
    assert "mode=invert" in link and "seed=" not in link  # an inversion draws no noise: no seed


def test_interpolation_between_seeds_and_images(app):
    _, client, _ = app
    image, gallery, gif, png, plot, status, link = client.predict(
        model="tiny-digits", mode="interpolate", schedule="cosine", sampler="ddim", steps=4, seed=0, k=5,
        ends="seeds", seed_b=1, api_name="/edit")
    with Image.open(png) as p:
        assert p.size == (5 * 8 + 4, 8)  # a strip of k = 5 images
    assert "between seeds 0 and 1" in status and "ends=seeds" in link and "seed_b=1" in link
    # the ends are the seeds' own samples
    gen = client.predict(model="tiny-digits", schedule="cosine", sampler="ddim", steps=4, seed=1, n=1,
                         api_name="/generate")
    with Image.open(gen[3]) as p, Image.open(png) as strip:
        assert np.abs(np.asarray(p.convert("L")).astype(int)
                      - np.asarray(strip.convert("L"))[:, -8:].astype(int)).max() <= 1
    out = client.predict(**dict(EDIT, sampler="ode", steps=3), mode="interpolate", k=3, ends="images", index_b=5,
                         api_name="/edit")
    assert "between digits8 test #3 and digits8 test #5 (inverted)" in out[5]
    with pytest.raises(Exception, match="interpolation needs a deterministic sampler"):
        client.predict(**dict(EDIT, sampler="ddpm"), mode="interpolate", api_name="/edit")


def test_sketch_and_upload_sources(app, tmp_path):
    _, client, _ = app
    sketch = tmp_path / "sketch.png"
    drawing = Image.new("L", (280, 280), 0)
    drawing.paste(255, (120, 40, 160, 240))  # a "1"
    drawing.save(sketch)
    out = client.predict(**dict(EDIT, source="sketch"), sketch=editor(composite=str(sketch)), mode="img2img",
                         strength=0.3, api_name="/edit")
    assert out[1][0]["caption"] == "source: sketch" and "not the sketch" in out[5]
    source = pixels(out[1][0]["image"])
    assert source.max() > 128 and source[:, : source.shape[1] // 4].max() < 64  # white stroke in the middle
    with pytest.raises(Exception, match="the sketch is empty"):
        blank = tmp_path / "blank.png"
        Image.new("L", (280, 280), 0).save(blank)
        client.predict(**dict(EDIT, source="sketch"), sketch=editor(composite=str(blank)), mode="img2img",
                       api_name="/edit")
    with pytest.raises(Exception, match="source is upload: upload an image first"):
        client.predict(**dict(EDIT, source="upload"), mode="img2img", api_name="/edit")
    up = tmp_path / "up.png"
    Image.new("RGB", (50, 40), (255, 255, 255)).save(up)
    out = client.predict(**dict(EDIT, source="upload", steps=3), upload=handle_file(str(up)), mode="invert",
                         api_name="/edit")
    assert out[1][0]["caption"] == "source: upload"


@pytest.mark.parametrize("bad,message", [
    (dict(mode="outpaint"), "unknown mode 'outpaint'"),
    (dict(mode="img2img", strength=0), "strength = 0 is below the minimum 0.001"),
    (dict(mode="img2img", strength=0.05), "runs no step"),  # ⌊10 × 0.05⌋ = 0
    (dict(mode="inpaint", jump_length=11), "jump_length must be an integer from 1 to 10"),
    (dict(mode="inpaint", resamples=21), "resamples = 21 is above the maximum 20"),
    (dict(mode="interpolate", k=1), "k = 1 is below the minimum 2"),
    (dict(mode="img2img", index=10**9), "index = 1000000000 is above the maximum 69999"),
    (dict(mode="img2img", index=5000), "index must be an integer from 0 to"),  # past the dataset's end
    (dict(mode="inpaint", steps=1000, resamples=20, jump_length=1), "network evaluations; the limit per request"),
    (dict(mode="img2img", model="tiny-moons"), "unknown model 'tiny-moons'"),
    (dict(mode="img2img", label=3), "model tiny-digits is unconditional: label must be -1"),
    (dict(mode="img2img", model="tiny-digits-cond", guidance_scale=3.0), "guidance_scale 3 needs a class"),
    (dict(mode="img2img", model="tiny-digits-cond", label=10), "unknown label 10; allowed: -1, 0, 1"),
    (dict(mode="img2img", model="tiny-digits-cond", label=-2), "unknown label -2; allowed: -1, 0, 1"),  # no random
    (dict(mode="invert", model="tiny-digits-cond", label=3, guidance_scale=3.0), "inversion takes no guidance"),
])
def test_edit_refusals_name_the_parameter(app, bad, message):
    _, client, _ = app
    with pytest.raises(Exception, match=re.escape(message)):
        client.predict(**dict(EDIT, **bad), api_name="/edit")


def test_img2img_and_inversion_with_a_class(app):
    _, client, _ = app
    kw = dict(EDIT, model="tiny-digits-cond", steps=4, mode="img2img", strength=0.5)
    uncond = client.predict(**kw, api_name="/edit")
    w0 = client.predict(**kw, label=3, guidance_scale=0.0, api_name="/edit")
    assert np.array_equal(pixels(w0[0]), pixels(uncond[0]))  # w = 0 is the unlabelled edit
    assert "label" not in uncond[-1]  # an unlabelled edit's link says nothing of classes
    image, gallery, gif, png, plot, status, link = client.predict(**kw, label=3, guidance_scale=3.0,
                                                                  api_name="/edit")
    assert status.startswith("done: img2img · ") and link.endswith("&label=3&guidance_scale=3.0")
    assert settings_of(png)["label"] == 3 and settings_of(png)["guidance_scale"] == 3.0
    assert png.endswith("_class3_w3.png")
    out = client.predict(**dict(kw, mode="invert", steps=3), label=3, api_name="/edit")  # conditional inversion
    assert "reconstruction error" in out[5] and out[-1].endswith("&label=3&guidance_scale=1.0")


def test_every_mode_hands_the_class_and_guidance_to_the_engine(fixture_checkpoints, monkeypatch):  # noqa: F811
    """The (label, w) each engine call steers with: the tiny fixture's class table has not learned, so the pictures
    cannot tell."""
    import importlib

    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.edit.endpoint import Edit

    seen = []

    def spy(real):
        def guided(model, label, guidance_scale, n, generator=None):
            seen.append((label, guidance_scale))
            return real(model, label, guidance_scale, n, generator)
        return guided

    for module in map(importlib.import_module, ("engine.editing", "engine.generate")):  # engine.generate: a function
        monkeypatch.setattr(module, "guided", spy(module.guided))
    h = Edit(AppContext(ModelStore(fixture_checkpoints)))
    paint = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    paint.paste((255, 0, 0, 255), (4, 0, 8, 8))
    kw = dict(source="dataset", dataset="digits8", index=3, schedule="cosine", sampler="ddim", steps=2, seed=0,
              strength=1.0, jump_length=1, resamples=1, k=2, label=3, guidance_scale=2.0)
    for mode, extra, calls in [("img2img", {}, [(3, 2.0)]),
                               ("inpaint", dict(mask={"layers": [paint]}), [(3, 2.0)]),
                               ("invert", dict(guidance_scale=1.0), [(3, 1.0), (3, 1.0)]),  # and the way back
                               ("interpolate", dict(ends="images", index_b=5), [(3, 1.0), (3, 2.0)])]:
        seen.clear()
        *_, last = h.edit("tiny-digits-cond", mode, **dict(kw, **extra))
        assert seen == calls and last[-1].endswith(f"&label=3&guidance_scale={calls[-1][1]}"), mode


def test_guided_edits_count_twice_against_the_budget(fixture_checkpoints):  # noqa: F811
    import gradio as gr

    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.edit.endpoint import Edit

    h = Edit(AppContext(ModelStore(fixture_checkpoints), max_nfe=10))
    args = ("tiny-digits-cond", "img2img", "dataset", "digits8", 3, None, None, None, "cosine", "ddim", 10, 0, 1.0,
            10, 5, 8, "seeds", 1, 1)
    assert h.settings(*args, 3, 1.0)["label"] == 3  # 10 evaluations: one row per image
    with pytest.raises(gr.Error, match=re.escape("this edit needs 20 network evaluations (twice for guidance)")):
        h.settings(*args, 3, 3.0)
    with pytest.raises(gr.Error, match="label must be an integer from -1 to 9"):  # past the picker's own check
        h.settings(*args, 10, 1.0)


def test_edit_links_parse_and_say_whether_they_reproduce(app):  # noqa: F811
    """An Edit link keeps the values its fields take (RePaint's resamples and the interpolation's k within the
    engine's bounds, an index ≥ 0) and drops the others; whether it makes its result again."""
    from space.tabs.edit.endpoint import reproducible

    demo, _, _ = app
    q = demo.rooms["edit"].link.parse({"tab": "edit", "mode": "inpaint", "source": "sketch", "dataset": "digits8",
                                       "index": "7", "strength": "0.25", "jump_length": "3", "resamples": "21",
                                       "k": "40", "ends": "images", "seed_b": "9", "index_b": "-1"})
    assert q == {"mode": "inpaint", "source": "sketch", "dataset": "digits8", "index": 7, "strength": 0.25,
                 "jump_length": 3, "ends": "images", "seed_b": 9}
    assert not reproducible(q["mode"], q["source"], q["ends"])  # the mask stays in the browser
    assert reproducible("img2img", "dataset", "seeds")
    assert not reproducible("img2img", "upload", "seeds")
    assert reproducible("interpolate", "sketch", "seeds")
    assert not reproducible("interpolate", "sketch", "images")
    assert reproducible("invert", "dataset", "seeds")


def test_the_mask_canvas_shows_the_source(fixture_checkpoints):  # noqa: F811
    import gradio as gr

    from space.context import AppContext
    from space.models import ModelStore
    from space.settings import MASK_CANVAS
    from space.tabs.edit.endpoint import Edit

    h = Edit(AppContext(ModelStore(fixture_checkpoints)))
    args = ("tiny-digits", "inpaint", "dataset", "digits8", 3, None, None)
    canvas = h.mask_canvas(*args)
    assert canvas["layers"] == [] and canvas["background"].size == (MASK_CANVAS // 8 * 8,) * 2
    assert isinstance(h.mask_canvas("tiny-digits", "img2img", *args[2:]), type(gr.skip()))  # not inpainting
    blank = {"background": None, "layers": [], "composite": Image.new("L", (280, 280), 0)}
    assert isinstance(h.mask_canvas(*args[:2], "sketch", "digits8", 3, None, blank), type(gr.skip()))
    drawn = {"background": None, "layers": [], "composite": Image.new("L", (280, 280), 255)}
    assert np.asarray(h.mask_canvas(*args[:2], "sketch", "digits8", 3, None, drawn)["background"]).min() == 255
