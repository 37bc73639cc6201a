"""The public app under hostile use (docs/RELIABILITY.md): random and hostile values for engine.generate, the
settings validators and every API endpoint; hostile model names; a handler that crashes; damaged checkpoints at
start-up and while serving; uploads of every colour mode, corrupt files, bombs and oversized files; the time budget.

Loopback only, on tiny fixture checkpoints; hypothesis runs a capped number of examples (no example database);
every network wait has a timeout. Cancellation, queue-full and the concurrent load are in test_load.py.
"""
import json
import logging
import math
import os
import re
import shutil
import struct
import zlib

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import engine
from tests.test_app import free_port, make_fixture_checkpoints

LOGGER = "denoisery"
# an absolute path, as the guard redacts them: no message a client sees may contain one
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?[\\/](?:[\w.@+-]+[\\/])+[\w.@+-]*")
HOSTILE = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "C:\\Windows\\win.ini", "tiny-digits/../../x", "~root",
                     "<img src=x onerror=alert(1)>", "x" * 5000, "nan", "1e400", "-0", "tiny-digits\x00",
                     "9" * 5000]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just({"path": "/etc/passwd"}),
    st.just({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}),
)
FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Records(logging.Handler):
    """Keeps the records of the app's logger (the server runs in this process, in other threads)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


def damage(ck: str) -> dict[str, str]:
    """Beside the intact tiny-digits, copies of it damaged in each way a file can be; returns {name: what}."""
    card = json.loads(open(os.path.join(ck, "tiny-digits.json")).read())
    weights = open(os.path.join(ck, "tiny-digits.safetensors"), "rb").read()

    def write(name, data: bytes | None, card_text: str | None):
        if data is not None:
            open(os.path.join(ck, f"{name}.safetensors"), "wb").write(data)
        if card_text is not None:
            open(os.path.join(ck, f"{name}.json"), "w").write(card_text)

    flipped = bytearray(weights)
    flipped[len(flipped) // 2] ^= 0x01
    write("copy-digits", weights, json.dumps(card))  # intact: served like the original
    write("tampered-digits", bytes(flipped), json.dumps(card))
    write("truncated-digits", weights[: len(weights) // 3], json.dumps(card))
    write("cardless-digits", weights, None)
    write("weightless-digits", None, json.dumps(card))
    write("badjson-digits", weights, "{not json")
    # an attacker who also rewrites the card's sha256: the bytes are still not safetensors
    junk = b"\x80\x04not a safetensors file" * 10
    write("resigned-digits", junk, json.dumps(dict(card, sha256=engine.checkpoints.sha256_bytes(junk))))
    return {"tampered-digits": "sha256", "truncated-digits": "sha256", "cardless-digits": "no model card",
            "weightless-digits": "no weights file", "badjson-digits": "not valid JSON",
            "resigned-digits": "not a valid safetensors"}


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return make_fixture_checkpoints(str(tmp_path_factory.mktemp("rel-ck")))


@pytest.fixture(scope="module")
def strict(ck, tmp_path_factory):
    """The app with tight budgets (every valid request is small) over the fixtures plus damaged checkpoints.
    Yields (demo, url, client, damaged {name: reason}, start-up log records)."""
    from space import build_demo

    folder = str(tmp_path_factory.mktemp("rel-damaged") / "ck")
    shutil.copytree(ck, folder)
    damaged = damage(folder)
    records = Records()
    logging.getLogger(LOGGER).addHandler(records)
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    try:
        demo = build_demo(folder, max_nfe=24, time_budget_s=10)
    finally:
        logging.getLogger(LOGGER).removeHandler(records)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, verbose=False)
    yield demo, url, client, damaged, records, folder
    demo.close()


def call_raw(url: str, api: str, data: list, timeout: float = 60) -> tuple[str, object]:
    """POST raw JSON values (NaN and ±inf included, which gradio_client cannot send) to an endpoint and read its
    event stream to the end: ("complete", outputs) or ("error", payload). A request the endpoint's validator refuses
    is answered at once (HTTP 422, a verdict per parameter): ("error", {"error": the refused parameter's message})."""
    r = httpx.post(f"{url}gradio_api/call/{api}", content=json.dumps({"data": data}),
                   headers={"content-type": "application/json"}, timeout=timeout)
    if r.status_code == 422:
        refused = [v for v in r.json()["detail"] if v.get("__type__") == "validate" and v.get("is_valid") is False]
        assert len(refused) == 1, r.text[:300]
        return "error", {"error": refused[0]["message"], "parameter": refused[0]["parameter_name"]}
    assert r.status_code == 200, r.text[:300]
    event = None
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line[5:])
    raise AssertionError(f"the stream of {api} ended without a result or an error")


def assert_clear(message) -> None:
    """A message fit for a client: present, specific, short, and naming no server internals."""
    assert isinstance(message, str) and message.strip(), f"generic error: {message!r}"
    assert "upstream Gradio app has raised an exception" not in message
    assert "Traceback" not in message and 'File "' not in message
    assert not ABSOLUTE_PATH.search(message), message
    assert len(message) < 1200
    assert "<img" not in message and "<script" not in message


# ------------------------------------------------------------------------------- property-based (hypothesis) ---

GAUSSIAN = engine.GaussianModel(torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))


def maybe(valid):
    """Mostly a valid value (so that runs happen too), sometimes a hostile one."""
    return st.one_of(valid, valid, HOSTILE)


@FAST
@given(schedule=maybe(st.sampled_from(list(engine.SCHEDULES))), sampler=maybe(st.sampled_from(list(engine.SAMPLERS))),
       steps=maybe(st.integers(1, 1000)), seed=maybe(st.integers(0, 2**32 - 1)), n=maybe(st.integers(1, 64)),
       spacing=maybe(st.sampled_from(list(engine.SPACINGS))),
       options=st.dictionaries(st.sampled_from(["eta", "variance", "n_steps_each", "step_size", "snr",
                                                "n_corrector", "sde", "bogus"]),
                               st.one_of(st.floats(-2, 200), st.integers(-5, 200),
                                         st.sampled_from(["vp", "ve", "fixed_large"]), HOSTILE), max_size=2))
def test_engine_generate_hostile_arguments(schedule, sampler, steps, seed, n, spacing, options):
    """engine.generate either refuses (ValueError/TypeError saying what is wrong) before any work, or runs: its
    first step is finite and has the requested shape."""
    try:
        run = engine.generate(GAUSSIAN, schedule=schedule, sampler=sampler, steps=steps, seed=seed, n=n,
                              spacing=spacing, **options)
    except (ValueError, TypeError) as err:
        assert str(err).strip()
        return
    step = next(iter(run))
    assert step.x_t.shape == (n, 2) and torch.isfinite(step.x_t).all()


@settings(max_examples=300, deadline=None, database=None)
@given(value=HOSTILE, lo=st.integers(-10, 10), span=st.integers(0, 2**33))
def test_settings_validators_hostile_values(value, lo, span):
    """as_int / as_float / choice return an in-range value of the right type, or gr.Error naming the parameter."""
    from space.checks import as_float, as_int, choice
    from space.settings import SCHEDULES

    hi = lo + span
    for check, kind in ((as_int, int), (as_float, float)):
        try:
            v = check("thing", value, lo, hi)
        except gr.Error as err:
            assert "thing" in err.message and "got" in err.message and len(err.message) < 300
        else:
            assert type(v) is kind and lo <= v <= hi and math.isfinite(v)
    try:
        assert choice("schedule", value, SCHEDULES) in SCHEDULES
    except gr.Error as err:
        assert err.message.startswith("unknown schedule") and "allowed: linear" in err.message


ENDPOINTS = {  # a valid, cheap payload for each endpoint, in its parameter order
    "generate": ["tiny-digits", "cosine", "ddim", 3, 0, 1, "leading", 0.0, "fixed_small", 5, 0.5, 0.16, 1, -1, 1.0],
    "forward": ["digits8", 0, ["linear"], "0, 500", 0, None],
    "score_field": ["tiny-moons", 0.5, "ddim", "cosine", 3, 0, 20],
    "compare": ["tiny-digits", 0, 1, 1] + ["cosine", "ddim", 2] * 6,
    "edit": ["tiny-digits", "img2img", "dataset", "digits8", 0, None, None, None, "cosine", "ddim", 4, 0, 0.5, 2, 1,
             2, "seeds", 1, 1, -1, 1.0],
    "train": ["toy", "moons", None, None, 100, "ddpm", "cosine", 16, 3, 0.01, 16, 0],
    "sample_trained": ["ddpm", "cosine", 3, 10, 0],  # no model in a fresh session: a clear refusal
}


@pytest.mark.slow
@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint=st.sampled_from(sorted(ENDPOINTS)), data=st.data())
def test_api_hostile_values_get_a_result_or_a_clear_error(strict, endpoint, data):
    """Raw JSON to every endpoint with one to three values replaced by hostile ones (NaN, ±inf, 10^21, wrong
    types, long and path-like strings, forged file references): always a result or a clear error message."""
    _, url, _, _, _, _ = strict
    values = list(ENDPOINTS[endpoint])
    positions = data.draw(st.lists(st.integers(0, len(values) - 1), min_size=1, max_size=3, unique=True))
    for i in positions:
        values[i] = data.draw(HOSTILE)
    event, payload = call_raw(url, endpoint, values)
    if event == "error":
        message = payload.get("error") if isinstance(payload, dict) else payload
        assert_clear(message)
        assert "failed on the server" not in message  # that answer is for bugs: a bad value must be recognised
    else:
        assert isinstance(payload, list) and payload


# ------------------------------------------------------------------------------------- targeted API checks ---

@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "tiny-digits/../../x", "..", "~",
                                  "C:\\x", "tiny-digits\x00", "<script>alert(1)</script>", "a" * 999,
                                  "TINY-DIGITS", " tiny-digits", "tampered-digits", "checkpoints/tiny-digits"])
def test_model_names_are_names_never_paths(strict, name):
    _, _, client, _, _, _ = strict
    with pytest.raises(Exception) as info:
        client.predict(model=name, schedule="cosine", sampler="ddim", steps=2, seed=0, n=1, api_name="/generate")
    message = str(info.value)
    assert "unknown model" in message and "models available here: copy-digits, tiny-digits" in message
    assert_clear(message)


@pytest.mark.parametrize("values,message", [
    (dict(steps="abc"), "steps must be an integer from 1 to 1000; got 'abc'"),
    (dict(seed=1.5), "seed must be an integer from 0 to 4294967295; got 1.5"),
    (dict(seed=2**32), "seed = 4294967296 is above the maximum 4294967295"),
    (dict(seed="7"), "seed must be an integer"),
    (dict(n=True), "n must be an integer from 1 to 16; got True"),
    (dict(n=17), "n = 17 is above the maximum 16"),
    (dict(eta=[0.1]), "eta must be a number from 0 to 1; got [0.1]"),
    (dict(sampler="pc", snr=0), "snr = 0 is below the minimum 0.01"),
    (dict(variance="huge"), "unknown variance 'huge'; allowed: fixed_small, fixed_large"),
    (dict(spacing=None), "unknown spacing None; allowed: leading, trailing, linspace"),
    (dict(steps=20, n=2), "the limit per request is 24"),  # the NFE budget: steps × n
])
def test_wrong_types_and_ranges_name_the_parameter(strict, values, message):
    _, _, client, _, _, _ = strict
    kw = {**dict(model="tiny-digits", schedule="cosine", sampler="ddim", steps=2, seed=0, n=1), **values}
    with pytest.raises(Exception, match=re.escape(message)):
        client.predict(**kw, api_name="/generate")


def test_nan_inf_and_missing_values_over_raw_json(strict):
    _, url, _, _, _, _ = strict
    base = ENDPOINTS["generate"]
    for position, value, expected in [(3, math.nan, "steps must be an integer from 1 to 1000; got nan"),
                                      (7, math.inf, "eta must be a number from 0 to 1; got inf"),
                                      (4, 10**21, "seed = 1000000000000000000000 is above the maximum")]:
        event, payload = call_raw(url, "generate", base[:position] + [value] + base[position + 1:])
        assert event == "error" and payload["error"].startswith(expected), payload
        assert payload["parameter"] == expected.split()[0]  # the input the page marks
    event, payload = call_raw(url, "generate", base[:2])
    assert event == "error" and payload["error"].startswith("generate takes 15 values (model, schedule, sampler,")
    event, payload = call_raw(url, "forward", ["digits8", 0, "linear", "5", 0, None])
    assert event == "error" and "schedules must be a list of names from: linear" in payload["error"]


def test_an_unexpected_failure_is_logged_and_answered_cleanly(strict, monkeypatch, caplog):
    """A crash inside a handler: the client gets a reference, never the exception's text or a path; the log has
    the endpoint, the values and the traceback; the next request is served."""
    from space import imaging

    _, _, client, _, _, _ = strict
    caplog.set_level(logging.INFO, logger=LOGGER)

    def broken(*args, **kwargs):
        raise RuntimeError("boom in /srv/secret/module.py")

    monkeypatch.setattr(imaging, "display", broken)
    kw = dict(model="tiny-digits", schedule="cosine", sampler="ddim", steps=2, seed=0, n=1)
    with pytest.raises(Exception) as info:
        client.predict(**kw, api_name="/generate")
    message = str(info.value)
    ref = re.search(r"generate failed on the server \(reference ([0-9a-f]{8})\)", message)
    assert ref, message
    assert "boom" not in message and "secret" not in message
    failed = [r for r in caplog.records if f"reference {ref.group(1)}" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR and failed[0].exc_info
    assert "model='tiny-digits'" in failed[0].getMessage() and "sampler='ddim'" in failed[0].getMessage()
    monkeypatch.undo()
    assert client.predict(**kw, api_name="/generate")[5].startswith("done: 2/2 steps")


def test_refusals_are_logged_with_endpoint_and_values(strict, caplog):
    _, _, client, _, _, _ = strict
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(Exception):
        client.predict(model="tiny-moons", sigma=0.5, sampler="ddim", schedule="cosine", steps=500, seed=0,
                       particles=20, api_name="/score_field")
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("score_field refused")]
    assert refused and "steps = 500 is above the maximum 200" in refused[0] and "steps=500" in refused[0]


# ------------------------------------------------------------------------------------------------ checkpoints ---

def test_damaged_checkpoints_are_skipped_at_startup(strict):
    demo, _, client, damaged, records, _ = strict
    errors = [r.getMessage() for r in records.records if r.levelno == logging.ERROR]
    for name, reason in damaged.items():
        line = [e for e in errors if e.startswith(f"checkpoint {name} ")]
        assert len(line) == 1 and reason in line[0], (name, errors)
    assert "skipped as damaged: " + ", ".join(sorted(damaged)) in records.text()
    # the page's notice names the skipped ones (and no server path)
    notices = [c["props"].get("value") for c in client.config["components"]
               if c.get("type") == "markdown" and "Skipped damaged checkpoints" in str(c["props"].get("value"))]
    assert len(notices) == 1 and all(name in notices[0] for name in damaged)
    assert_clear(notices[0])
    # the intact ones are served, the copy included
    for model in ("tiny-digits", "copy-digits"):
        out = client.predict(model=model, schedule="cosine", sampler="ddim", steps=2, seed=0, n=1,
                             api_name="/generate")
        assert out[5].startswith("done: 2/2 steps")


def test_a_checkpoint_damaged_while_serving_is_withdrawn_then_restored(strict, caplog):
    _, _, client, _, _, folder = strict
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = os.path.join(folder, "copy-digits.safetensors")
    good = open(path, "rb").read()
    kw = dict(model="copy-digits", schedule="cosine", sampler="ddim", steps=2, seed=0, n=1)
    try:
        open(path, "wb").write(good[:-10])
        with pytest.raises(Exception, match="unknown model 'copy-digits'; models available here: tiny-digits, tiny-digits-cond"):
            client.predict(**kw, api_name="/generate")
        assert any("checkpoint copy-digits" in r.getMessage() and "sha256" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.ERROR)
    finally:
        open(path, "wb").write(good)
    assert client.predict(**kw, api_name="/generate")[5].startswith("done: 2/2 steps")


def test_model_store_serves_only_verified_checkpoints(strict):
    from space.models import ModelStore

    _, _, _, damaged, _, folder = strict
    store = ModelStore(folder)
    assert store.names() == ["copy-digits", "tiny-digits", "tiny-digits-cond", "tiny-moons"]
    assert store.skipped() == sorted(damaged)
    for name in damaged:
        with pytest.raises(ValueError, match="unknown model"):
            store.load(name)
    assert store.classifier_for("tiny-digits") is not None


# ---------------------------------------------------------------------------------------------------- uploads ---

def png_declaring(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A tiny PNG whose header declares width × height greyscale pixels (a decompression bomb's shape): its pixel
    data is a few rows of zeros, or ``pixels`` as the compressed stream."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4) if pixels is None else pixels
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def saved(tmp_path, name: str, image: Image.Image, **kw) -> str:
    path = str(tmp_path / name)
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("mode,ext", [("1", "png"), ("L", "png"), ("P", "png"), ("RGB", "jpg"), ("RGBA", "png"),
                                      ("LA", "png"), ("I;16", "png"), ("I", "tiff"), ("F", "tiff"),
                                      ("CMYK", "jpg"), ("CMYK", "tiff"), ("YCbCr", "jpg"), ("RGB", "webp"),
                                      ("RGB", "bmp"), ("P", "gif")])
def test_uploads_of_every_colour_mode(tmp_path, mode, ext):
    from engine.forward import image_to_tensor
    from space.imaging import open_upload

    base = Image.linear_gradient("L").resize((40, 30))  # 0 at the top → 255 at the bottom
    wide = {"I;16": np.uint16, "I": np.int32}
    if mode in wide:  # the same gradient in 16 bits
        image = Image.fromarray((np.asarray(base).astype(np.int64) * 257).astype(wide[mode]))
    elif mode == "F":
        image = Image.fromarray(np.asarray(base, dtype=np.float32))
    else:
        image = base.convert(mode)
    assert image.mode == mode
    x = image_to_tensor(open_upload(saved(tmp_path, f"up.{ext}", image)), (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    # the gradient survives every conversion: dark at the top, light at the bottom
    assert x[0, 0, -1].mean() - x[0, 0, 0].mean() > 1.0, mode


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    from engine.forward import image_to_tensor
    from space.imaging import open_upload

    mid = Image.fromarray(np.full((6, 6), 32896, dtype=np.uint16))  # 128 × 257: mid grey in 16 bits
    x = image_to_tensor(open_upload(saved(tmp_path, "mid.png", mid)), (1, 4, 4))
    assert torch.allclose(x, torch.full_like(x, 2 * 128 / 255 - 1), atol=1e-6)


@pytest.mark.parametrize("content,message", [
    (b"", "not an image"),
    (b"hello, I am text", "not an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),  # EPS would run Ghostscript
    (png_declaring(5000, 5000), "5000×5000 pixels; at most 16,777,216"),
    (png_declaring(30000, 30000), "declares too many pixels"),  # beyond Pillow's own bomb limit
    (png_declaring(64, 64, pixels=b"this is not a zlib stream"), "damaged or truncated"),
])
def test_bad_uploads_are_refused_clearly(tmp_path, content, message):
    from space.imaging import open_upload

    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        open_upload(str(path))


def test_truncated_real_image_and_byte_cap(tmp_path):
    from space.imaging import open_upload

    photo = saved(tmp_path, "photo.png", Image.effect_noise((300, 300), 60))
    data = open(photo, "rb").read()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        open_upload(str(cut))
    with pytest.raises(ValueError, match=r"MiB; at most 0 MiB are accepted"):
        open_upload(photo, max_bytes=1000)


def test_uploads_through_the_api(strict, tmp_path):
    _, url, client, _, _, _ = strict
    # the upload field reaches the page as a plain image component with its props
    field = [c for c in client.config["components"]
             if str(c["props"].get("label")).startswith("…or upload an image")]
    assert len(field) == 1 and field[0]["type"] == "image" and field[0]["props"]["sources"] == ["upload"]
    kw = dict(dataset="digits8", index=0, schedules=["linear"], timesteps="0", seed=0, api_name="/forward")
    good = saved(tmp_path, "cmyk.tiff", Image.new("CMYK", (50, 20), (0, 200, 0, 0)))
    out = client.predict(**kw, upload=handle_file(good))
    assert out[3] == "upload" and len(out[0]) == 1
    for content, message in [(b"GIF89a broken", "the upload is not an image"),
                             (png_declaring(6000, 6000), "6000×6000 pixels; at most 16,777,216")]:
        bad = tmp_path / "bad.png"
        bad.write_bytes(content)
        with pytest.raises(Exception, match=re.escape(message)):
            client.predict(**kw, upload=handle_file(str(bad)))
    # a file over the byte cap: gradio_client refuses to send it, and the server's upload route refuses it too
    too_big = b"\0" * (10 * 2**20 + 1)
    big = tmp_path / "big.png"
    big.write_bytes(too_big)
    with pytest.raises(Exception, match="exceeds the maximum file size of 10485760 bytes"):
        client.predict(**kw, upload=handle_file(str(big)))
    r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", too_big, "image/png")}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size of 10485760 bytes" in r.text
    # a forged reference to a server file is refused
    event, payload = call_raw(url, "forward", ["digits8", 0, ["linear"], "0", 0,
                                               {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}])
    assert event == "error" and payload["error"].startswith("files must be uploaded to this app first")
    assert payload["parameter"] == "upload"


def test_an_upload_that_vanished_is_refused_clearly():
    from gradio.utils import get_upload_folder

    from space.guard import check_value

    gone = {"path": os.path.join(get_upload_folder(), "no-such-dir", "gone.png"), "meta": {"_type": "gradio.FileData"}}
    with pytest.raises(gr.Error, match="the uploaded file for upload is gone: upload it again"):
        check_value("upload", gr.Image(type="filepath"), gone)


# ------------------------------------------------------------------------------------------------ time budget ---

def test_a_request_over_the_time_budget_ends_with_a_clear_message(ck):
    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.generate import Generate

    h = Generate(AppContext(ModelStore(ck), time_budget_s=0.3))
    with pytest.warns(UserWarning, match=r"stopped after \d+\.\d s \(time budget 0.3 s per request\)"):
        outputs = list(h.generate("tiny-digits", "linear", "ddpm", 1000, 0, n=1))  # the warning is a UI toast
    status = outputs[-1][5]
    assert status.startswith("stopped by the time budget (0.3 s per request): "), status
    done = int(re.search(r": (\d+)/1000 steps", status).group(1))
    assert 1 <= done < 1000


# ------------------------------------------------------------------------------------ the Edit tab's images ---

def editor_value(path=None, **files) -> dict:
    """An image editor's raw value with ``files`` ({background|composite: path}) and a layer at ``path``."""
    ref = {"meta": {"_type": "gradio.FileData"}}
    value = {"background": None, "layers": [], "composite": None}
    for key, file in files.items():
        value[key] = dict(ref, path=file)
    if path is not None:
        value["layers"] = [dict(ref, path=path)]
    return value


def uploaded(url: str, name: str, content: bytes) -> str:
    """``content`` uploaded to the app; its server path."""
    r = httpx.post(f"{url}gradio_api/upload", files={"files": (name, content, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    return r.json()[0]


@pytest.mark.parametrize("field", ["sketch", "mask"])
def test_sketches_and_masks_are_checked_like_uploads(strict, field):
    """A sketch or a mask (an image editor's value) over raw JSON: its structure, the number of layers and each
    file are checked before anything is decoded, and refused with the parameter named."""
    _, url, _, _, _, _ = strict
    position = ENDPOINTS["edit"].index(None) + (1 if field == "sketch" else 2)
    source = "sketch" if field == "sketch" else "dataset"
    mode = "img2img" if field == "sketch" else "inpaint"

    def send(value):
        values = list(ENDPOINTS["edit"])
        values[1], values[2], values[position] = mode, source, value
        return call_raw(url, "edit", values)

    bomb = uploaded(url, "bomb.png", png_declaring(6000, 6000))
    text = uploaded(url, "text.png", b"hello, I am text")
    good = uploaded(url, "good.png", open(saved_png(), "rb").read())
    for value, message in [
        ("a string", f"{field} must be an image editor's value {{background, layers, composite}}"),
        ({"layers": "x"}, f"{field} must be an image editor's value"),
        ({"layers": [], "extra": 1}, f"{field} must be an image editor's value"),
        (editor_value(composite=bomb), "6000×6000 pixels; at most 16,777,216"),
        (editor_value(text), "the upload is not an image"),
        (dict(editor_value(good), layers=[editor_value(good)["layers"][0]] * 5), "with at most 4 layers"),
        (editor_value(composite="/etc/hostname"), "files must be uploaded to this app first"),
    ]:
        event, payload = send(value)
        assert event == "error" and message in payload["error"], (value, payload)
        assert_clear(payload["error"])
        assert payload.get("parameter", field) == field
    if field == "sketch":  # a readable, blank sketch: nothing drawn
        blank = uploaded(url, "blank.png", open(saved_png(Image.new("L", (40, 40), 0)), "rb").read())
        event, payload = send(editor_value(composite=blank))
        assert event == "error" and payload["error"].startswith("the sketch is empty: draw on the canvas first")
    else:  # nothing painted: the engine's message
        event, payload = send(editor_value())
        assert event == "error" and "there is nothing to inpaint" in payload["error"]
        event, payload = send(editor_value(good))  # painted everywhere: all filled
        assert event == "complete" and payload[5].startswith("done: inpaint · 64 of 64 pixels filled"), payload


def saved_png(image: Image.Image | None = None) -> str:
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "image.png")
    (image or Image.new("RGBA", (40, 40), (255, 0, 0, 255))).save(path)
    return path


def test_edit_is_bounded_by_the_nfe_budget(strict):
    """Each mode's work is counted before the queue (the strict app allows 24 network evaluations)."""
    _, _, client, _, _, _ = strict
    base = dict(model="tiny-digits", source="dataset", dataset="digits8", index=0, schedule="cosine", sampler="ddim",
                seed=0)
    for kw, nfe in [(dict(mode="img2img", steps=50, strength=0.5), 25), (dict(mode="invert", steps=13), 26),
                    (dict(mode="inpaint", steps=10, jump_length=2, resamples=3), 26),
                    (dict(mode="interpolate", steps=5, k=5), 25),
                    (dict(mode="interpolate", steps=4, k=5, ends="images"), 20 + 8)]:
        with pytest.raises(Exception, match=re.escape(f"this edit needs {nfe:,} network evaluations; the limit per "
                                                      f"request is 24")):
            client.predict(**base, **kw, api_name="/edit")
    out = client.predict(**base, mode="img2img", steps=48, strength=0.5, api_name="/edit")
    assert "24/24 steps · NFE 24" in out[5]


def test_an_edit_over_the_time_budget_ends_with_a_clear_message(ck):
    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.edit.endpoint import Edit

    h = Edit(AppContext(ModelStore(ck), time_budget_s=0.3))
    with pytest.warns(UserWarning, match=r"stopped after \d+\.\d s \(time budget 0.3 s per request\)"):
        outputs = list(h.edit("tiny-digits", "img2img", "dataset", "digits8", 0, schedule="linear", sampler="ddpm",
                              steps=1000, strength=1.0))
    status = outputs[-1][5]
    assert status.startswith("stopped by the time budget (0.3 s per request): img2img · starts at t = 999"), status
    assert 1 <= int(re.search(r" (\d+)/1000 steps", status).group(1)) < 1000
