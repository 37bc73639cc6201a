"""The app in a real browser: Debian's chromium driven by Playwright for Python (never `playwright install`).

Loads the page (no request may leave loopback, no page errors), runs Generate (image and gallery appear), runs
Compare with 3 panels, and opens a deep link (settings restored, the result regenerated). Screenshots go to
artifacts/screenshots/ and their paths are printed.
"""
import logging
import math
import os
import re
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); browser tests skipped",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

from tests.test_app import TINY_UNET, free_port, make_fixture_checkpoints  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.path.join(ROOT, "artifacts", "screenshots")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
SERVER_LOG: list[str] = []  # the app's log ("denoisery": refusals and failures with their tracebacks) while serving
# every toast the page shows, kept after it fades (an error toast lasts seconds; a failed wait reports minutes later)
KEEP_TOASTS = """
window.__toasts = [];
new MutationObserver(() => document.querySelectorAll('[data-testid=toast-body]').forEach(t => {
  if (!window.__toasts.includes(t.innerText)) window.__toasts.push(t.innerText); }))
  .observe(document, {subtree: true, childList: true, characterData: true});
"""


class _KeepLog(logging.Handler):
    def emit(self, record):
        SERVER_LOG.append(self.format(record))


def add_distilled_student(ck: str, root) -> None:
    """tiny-digits-fast in ``ck``: a reflow student of tiny-digits (16 pairs, 2 steps), whose card names its teacher
    and how to sample it, as mnist-fast's does."""
    import engine
    from engine.distill import DistillConfig, distill

    distill(DistillConfig(name="tiny-digits-fast", dataset="digits8", arch="unet", arch_config=TINY_UNET,
                          teacher="tiny-digits", pairs=16, pair_batch=8, pair_steps=2, batch_size=8, steps=2, lr=1e-3,
                          warmup_steps=1, log_every=1, save_every=2, run_dir=str(root / "runs"), export_dir=ck,
                          device="cpu"), quiet=True, teacher=engine.load_model("tiny-digits", directory=ck))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from space import CSS, build_demo

    log, kept = logging.getLogger("denoisery"), _KeepLog()
    level = log.level
    log.addHandler(kept)
    log.setLevel(logging.INFO)
    root = tmp_path_factory.mktemp("browser-ck")
    ck = make_fixture_checkpoints(str(root))
    add_distilled_student(ck, root)
    demo = build_demo(ck)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, css=CSS)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    log.removeHandler(kept)
    log.setLevel(level)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.outside, pg.errors = [], []

    def on_request(req):
        u = urlparse(req.url)
        if u.scheme in ("data", "blob", "about"):
            return
        if u.hostname not in LOOPBACK:
            pg.outside.append(req.url)

    pg.on("request", on_request)
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    pg.add_init_script(KEEP_TOASTS)
    pg.route(re.compile(r"^https?://(?!127\.0\.0\.1|localhost).*"), lambda route: route.abort())
    yield pg
    ctx.close()


def shot(pg, name: str) -> str:
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name)
    pg.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")
    return path


def value_of(pg, selector: str) -> str:
    return pg.locator(selector).first.input_value()


def wait_done(pg, selector: str, prefix: str = "done", timeout: float = 90_000):
    """Wait until the status box reads ``prefix``…, failing at once when its event ends in an error (Gradio marks
    the box "Error") or after ``timeout`` ms. The failure says what the box read, what it shows around it (Gradio's
    queue position or progress), every toast the page showed and the app's log since the wait began (a refusal's
    message, a failure's traceback)."""
    logged = len(SERVER_LOG)
    try:
        pg.wait_for_function(
            "([sel, prefix]) => { const e = document.querySelector(sel);"
            " const box = document.querySelector(sel.split(' ')[0]);"
            " return e && (e.value.startsWith(prefix) || box.innerText.startsWith('Error')); }",
            arg=[selector, prefix], timeout=timeout)
        status = pg.locator(selector).first.input_value()
        if status.startswith(prefix):
            return
        waited = "it ended in an error"
    except sync_api.TimeoutError:
        status = pg.locator(selector).first.input_value() if pg.locator(selector).count() else "(absent)"
        waited = f"within {timeout / 1000:g} s"
    box = pg.locator(selector.split()[0]).first
    raise AssertionError(f"{selector} did not read {prefix!r} ({waited}); it reads {status!r}; its box shows "
                         f"{box.inner_text() if box.count() else '(absent)'!r}; toasts: "
                         f"{pg.evaluate('() => window.__toasts')}; the app's log: {SERVER_LOG[logged:]}")


def opened(pg, url: str) -> None:
    """Open ``url`` (no result link) and wait until the page's load events have filled in its settings and the
    opening result (Generate's status reads "done"), so that what the test does next is not overwritten by them."""
    pg.goto(url, wait_until="load")
    wait_done(pg, "#g-status textarea")


def test_generate_compare_and_deep_link(server, page):
    page.goto(server, wait_until="load")
    page.wait_for_selector("#g-run")
    assert value_of(page, "#g-model input") == "tiny-digits"
    # the page shows the default settings' result without anything pressed: image, snapshots, plot and downloads
    page.wait_for_function("() => { const i = document.querySelector('#live-image img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    page.wait_for_function("() => { const imgs = [...document.querySelectorAll('#g-gallery img')]; "
                           "return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
                           timeout=30_000)
    wait_done(page, "#g-status textarea", "done: 50/50 steps")
    assert "kept from this server's first run of the default settings" in value_of(page, "#g-status textarea")
    assert "?tab=generate&model=tiny-digits&schedule=cosine&sampler=ddim&steps=50" in value_of(page, "#g-link textarea")
    assert page.locator("#g-gif a, #g-gif .file-preview").count() >= 1
    shot(page, "01-loaded.png")

    # Generate: the live image and the gallery appear, then "done"
    page.locator("#g-steps input[type=number]").fill("12")
    page.locator("#g-steps input[type=number]").press("Enter")
    page.click("#g-run")
    page.wait_for_selector("#live-image img", timeout=60_000)
    wait_done(page, "#g-status textarea", "done: 12/12 steps")
    page.wait_for_selector("#g-gallery img", timeout=30_000)
    assert page.locator("#g-gallery img").count() >= 2
    # every snapshot the page shows is fetched and decoded (the files are served from the app's result folder)
    page.wait_for_function("() => { const imgs = [...document.querySelectorAll('#g-gallery img')]; "
                           "return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
                           timeout=30_000)
    assert page.evaluate("() => { const p = document.querySelector('#g-plot img'); "
                         "return p ? p.naturalWidth : 0; }") > 100  # the schedule plot with the current step
    link = value_of(page, "#g-link textarea")
    assert "?tab=generate&model=tiny-digits" in link and "steps=12" in link
    assert page.locator("#g-png a, #g-png .file-preview").count() >= 1
    shot(page, "02-generate.png")

    # Compare with 3 panels
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#c-run")
    assert value_of(page, "#c-panels input[type=number]") == "3"
    page.click("#c-run")
    wait_done(page, "#c-status textarea")
    page.wait_for_selector("#c-gallery img", timeout=30_000)
    assert page.locator("#c-gallery img").count() >= 3
    status = value_of(page, "#c-status textarea")
    assert "3 rounds" not in status  # 100-step panels ran longer than 3 rounds
    shot(page, "03-compare.png")
    c_link = value_of(page, "#c-link textarea")
    assert "?tab=compare&model=tiny-digits" in c_link and "panels=3" in c_link

    # an example fills in its settings and runs them (the Langevin one needs a score model: the fixtures have none)
    assert page.get_by_role("button", name="Langevin on the score model").count() == 0
    page.get_by_role("tab", name="Generate").click()
    page.get_by_role("button", name="10 steps: cosine vs linear").click()
    wait_done(page, "#c-status textarea", "done: 10 rounds")
    assert value_of(page, "#c-panels input[type=number]") == "2"
    assert "panels=2&schedule_1=cosine&sampler_1=ddim&steps_1=10&schedule_2=linear" in value_of(page,
                                                                                               "#c-link textarea")
    shot(page, "03a-example.png")

    # the Compare link restores the panels and runs them again: the same rounds
    page.goto(c_link, wait_until="domcontentloaded")
    wait_done(page, "#c-status textarea", status.split(" · ")[0])
    assert value_of(page, "#c-link textarea") == c_link  # the page opened from the link links to itself
    page.wait_for_selector("#c-gallery img", timeout=30_000)
    assert page.locator("#c-gallery img").count() >= 3
    shot(page, "03b-compare-from-link.png")

    assert page.outside == [], f"requests left loopback: {page.outside[:5]}"
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_deep_link_restores_settings(server, page):
    url = server + "?tab=generate&model=tiny-digits&schedule=karras&sampler=ode&steps=7&seed=42&n=1&spacing=trailing"
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("() => { const e = document.querySelector('#g-schedule input'); "
                           "return e && e.value === 'karras'; }", timeout=30_000)
    assert value_of(page, "#g-sampler input") == "ode"
    assert value_of(page, "#g-steps input[type=number]") == "7"
    assert value_of(page, "#g-seed input") == "42"
    # opening a result link regenerates the result
    wait_done(page, "#g-status textarea", "done: 7/7 steps")
    page.wait_for_selector("#live-image img")
    assert value_of(page, "#g-link textarea").startswith(server + "?tab=generate&model=tiny-digits")
    page.get_by_text("Advanced (sampler options)").click()
    page.wait_for_selector("#g-spacing input[value=trailing][aria-checked=true]", timeout=30_000)  # the link's
    shot(page, "04-deep-link.png")
    # choosing a sampler brings the spacing that suits it (engine.SAMPLERS[name].spacing)
    for sampler, spacing in (("ddim", "leading"), ("dpm-solver++", "trailing")):
        page.locator("#g-sampler input").click()
        page.get_by_role("option", name=sampler).click()
        page.wait_for_selector(f"#g-spacing input[value={spacing}][aria-checked=true]", timeout=30_000)

    page.goto(server + "?tab=compare&panels=4&steps_4=9", wait_until="domcontentloaded")
    page.wait_for_selector("#c-run", state="visible", timeout=30_000)
    page.wait_for_function("() => { const e = document.querySelector('#c-panels input[type=number]'); "
                           "return e && e.value === '4'; }", timeout=30_000)
    shot(page, "05-deep-link-compare.png")

    # Forward process and Score field show their default result as soon as they are opened, nothing pressed
    page.get_by_role("tab", name="Forward process").click()
    wait_done(page, "#f-src textarea", "mnist test #0")
    page.wait_for_selector("#f-gallery img", timeout=30_000)
    shot(page, "06-forward.png")
    page.get_by_role("tab", name="Score field").click()
    wait_done(page, "#s-status textarea", "500 particles")
    page.wait_for_selector("#s-anim .js-plotly-plot .slider-container", timeout=30_000)  # the time slider
    shot(page, "07-score-field.png")
    page.click("#s-run")  # its button makes the result again
    wait_done(page, "#s-status textarea", "500 particles")
    # …and so do links that open them
    for link, status in (("?tab=forward", "#f-src textarea"), ("?tab=field", "#s-status textarea")):
        page.goto(server + link, wait_until="domcontentloaded")
        wait_done(page, status, "mnist test #0" if "forward" in link else "500 particles")

    page.get_by_role("tab", name="About").click()
    page.wait_for_selector(".katex", timeout=30_000)
    shot(page, "08-about.png")
    assert page.outside == [], f"requests left loopback: {page.outside[:5]}"
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def stroke(pg, selector: str, points: list[tuple[float, float]]) -> None:
    """A mouse stroke on the canvas of the image editor ``selector`` through ``points`` (fractions of its size)."""
    box = pg.locator(f"{selector} canvas").first.bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    pg.mouse.move(*at[0])
    pg.mouse.down()
    for (x0, y0), (x1, y1) in zip(at, at[1:]):
        for k in range(1, 11):
            pg.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
    pg.mouse.up()


def settled(pg, selector: str, timeout_s: float = 10) -> None:
    """Wait until the canvas of the image editor ``selector`` keeps its place and size for 0.3 s (a newly shown
    editor is laid out and fitted to its column over a few frames: a stroke measured before that lands elsewhere)."""
    canvas, last = pg.locator(f"{selector} canvas").first, None
    for _ in range(int(timeout_s / 0.3)):
        box = canvas.bounding_box()
        if box is not None and box == last:
            return
        last = box
        pg.wait_for_timeout(300)
    raise AssertionError(f"the canvas of {selector} kept moving for {timeout_s:g} s: {last}")


def draw(pg, selector: str, points: list[tuple[float, float]], tries: int = 3) -> None:
    """A stroke on a sketchpad with nothing drawn yet, checked: the editor enables its Undo button once it has taken
    a stroke into its history. A stroke it did not take (its canvas not yet set up) is drawn again, up to ``tries``
    times; a sketch that reached the server empty would be refused ("the sketch is empty")."""
    undo = pg.locator(f"{selector} button[aria-label=Undo]")
    for _ in range(tries):
        settled(pg, selector)
        stroke(pg, selector, points)
        try:
            sync_api.expect(undo).to_be_enabled(timeout=5_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the image editor {selector} took none of {tries} strokes (its Undo stayed disabled)")


def set_number(pg, selector: str, value) -> None:
    field = pg.locator(f"{selector} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def test_edit_tab_draws_a_sketch_and_a_mask(server, page):
    """The Edit tab: a digit drawn on the sketchpad is edited by img2img (the result and the sketch as its source
    appear), then a region painted on the mask editor over a dataset image is inpainted."""
    opened(page, server + "?tab=edit")
    page.wait_for_selector("#e-run", state="visible")
    page.locator("#e-source input[value=sketch]").check()
    page.wait_for_selector("#e-sketch canvas", state="visible")
    draw(page, "#e-sketch", [(0.5, 0.25), (0.5, 0.75)])  # a "1"
    set_number(page, "#e-steps", 10)
    page.click("#e-run")
    wait_done(page, "#e-status textarea", "done: img2img · starts at t = ")  # an empty sketch would be refused
    assert "the link carries the settings, not the sketch" in value_of(page, "#e-status textarea")
    page.wait_for_function("() => { const i = document.querySelector('#e-image img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    page.wait_for_selector("#e-gallery img", timeout=30_000)
    assert "source=sketch" in value_of(page, "#e-link textarea")
    assert page.locator("#e-png a, #e-png .file-preview").count() >= 1
    shot(page, "09-edit-sketch.png")

    page.locator("#e-mode input[value=inpaint]").check()
    page.wait_for_selector("#e-mask canvas", state="visible")
    page.click("#e-mask-source")  # the sketch goes on the mask's canvas
    with page.expect_response(lambda r: "/gradio_api/file=" in r.url):  # the dataset image replaces it
        page.locator("#e-source input[value=dataset]").check()
    settled(page, "#e-mask")
    for y in (0.3, 0.4, 0.5, 0.6, 0.7):
        stroke(page, "#e-mask", [(0.4, y), (0.6, y)])
    set_number(page, "#e-jump", 3)
    set_number(page, "#e-resamples", 2)
    page.click("#e-run")
    wait_done(page, "#e-status textarea", "done: inpaint · ")
    status = value_of(page, "#e-status textarea")
    filled = int(re.search(r"inpaint · (\d+) of 64 pixels filled", status).group(1))
    assert 0 < filled < 64, status
    shot(page, "10-edit-inpaint.png")

    # a link to an edit of a dataset image fills in its settings and makes the same result again
    link = (server + "?tab=edit&model=tiny-digits&mode=img2img&schedule=cosine&steps=8&sampler=ddim&strength=0.5"
            "&source=dataset&index=2&dataset=digits8&seed=1")
    page.goto(link, wait_until="domcontentloaded")
    wait_done(page, "#e-status textarea", "done: img2img · starts at t = ")
    assert value_of(page, "#e-link textarea") == link  # the page opened from the link links to itself
    assert value_of(page, "#e-dataset input") == "digits8" and value_of(page, "#e-index input") == "2"
    page.wait_for_selector("#e-gallery img", timeout=30_000)
    shot(page, "11-edit-from-link.png")
    assert page.outside == [], f"requests left loopback: {page.outside[:5]}"
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_edit_link_restores_the_class_and_guidance(server, page):
    """An Edit link with a class and a guidance scale shows them in the Edit tab's picker and slider and makes the
    same guided edit again; an unconditional model hides them."""
    link = (server + "?tab=edit&model=tiny-digits-cond&mode=img2img&schedule=cosine&steps=4&sampler=ddim"
            "&strength=0.5&source=dataset&index=2&dataset=digits8&seed=1&label=3&guidance_scale=2.5")
    page.goto(link, wait_until="domcontentloaded")
    wait_done(page, "#e-status textarea", "done: img2img · starts at t = ")
    assert value_of(page, "#e-link textarea") == link
    assert value_of(page, "#e-class input") == "3" and value_of(page, "#e-guidance input[type=number]") == "2.5"
    shot(page, "11a-edit-class.png")
    page.locator("#e-model input").click()
    page.get_by_role("option", name="tiny-digits", exact=True).click()
    page.wait_for_selector("#e-class", state="hidden", timeout=30_000)
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_class_picker_follows_the_model_and_a_link(server, page):
    page.goto(server + "?tab=generate&model=tiny-digits-cond&steps=3&n=1&label=3&guidance_scale=2.5",
              wait_until="domcontentloaded")
    page.wait_for_selector("#g-class", state="visible", timeout=30_000)
    page.wait_for_function("() => { const e = document.querySelector('#g-class input'); "
                           "return e && e.value === '3'; }", timeout=30_000)
    assert value_of(page, "#g-guidance input[type=number]") == "2.5"
    wait_done(page, "#g-status textarea", "done: 3/3 steps")  # the link's guided run, made again
    assert "label=3&guidance_scale=2.5" in value_of(page, "#g-link textarea")
    shot(page, "10-class-picker.png")
    page.locator("#g-model input").click()
    page.get_by_role("option", name="tiny-digits", exact=True).click()
    page.wait_for_selector("#g-class", state="hidden", timeout=30_000)  # an unconditional model: no classes
    page.get_by_role("tab", name="Compare").click()  # its model came from the link too: conditional
    page.wait_for_selector("#c-class", state="visible", timeout=30_000)
    page.locator("#c-model input").click()
    page.get_by_role("option", name="tiny-digits", exact=True).click()
    page.wait_for_selector("#c-class", state="hidden", timeout=30_000)
    # a link with random classes (label -2) restores the picker at "random" and reruns
    page.goto(server + "?tab=generate&model=tiny-digits-cond&steps=3&n=2&label=-2", wait_until="domcontentloaded")
    page.wait_for_function("() => { const e = document.querySelector('#g-class input'); "
                           "return e && e.value.startsWith('random'); }", timeout=30_000)
    wait_done(page, "#g-status textarea", "done: 3/3 steps")
    assert "label=-2&guidance_scale=1.0" in value_of(page, "#g-link textarea")
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_compare_runs_flow_panels_from_a_link(server, page):
    """Compare from a link: Euler and Heun on the flow schedule beside DDIM on cosine, 8 steps each, from the same
    noise; each panel's NFE is its sampler's (Heun: 2 per step, 1 on the last)."""
    page.goto(server + "?tab=compare&model=tiny-digits&seed=0&panels=3&n=1&schedule_1=flow&sampler_1=euler&steps_1=8"
              "&schedule_2=flow&sampler_2=heun&steps_2=8&schedule_3=cosine&sampler_3=ddim&steps_3=8",
              wait_until="load")
    wait_done(page, "#c-status textarea")
    page.wait_for_selector("#c-gallery img", timeout=30_000)
    assert page.locator("#c-gallery img").count() >= 3
    table = page.locator("#c-table").inner_text()
    for setting, nfe in (("flow · euler · 8 steps", 8), ("flow · heun · 8 steps", 15), ("cosine · ddim · 8 steps", 8)):
        assert f"{setting}\n{nfe}\n" in table, table  # heun: 2 evaluations a step, 1 on the last
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_compare_panels_from_two_models(server, page):
    """A panel's own model picker: panel 2 runs tiny-digits-cond beside the tab's tiny-digits, from the same noise;
    the gallery's captions and the table name both models, the link names panel 2's, and opening that link
    restores the picker and runs the same panels again."""
    opened(page, server)
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#c-model-2", state="visible")
    assert value_of(page, "#c-model-2 input") == "the model above"  # the default: the tab's model
    page.locator("#c-model-2 input").click()
    page.get_by_role("option", name="tiny-digits-cond", exact=True).click()
    page.click("#c-run")
    wait_done(page, "#c-status textarea")
    page.wait_for_function("() => document.querySelectorAll('#c-gallery img').length >= 3", timeout=30_000)
    titles = ["1: tiny-digits · cosine · ddim · 50 steps", "2: tiny-digits-cond · linear · ddim · 50 steps",
              "3: tiny-digits · karras · ode · 25 steps"]
    gallery, table = page.locator("#c-gallery").inner_text(), page.locator("#c-table").inner_text()
    assert all(title in gallery for title in titles), gallery
    assert all(title.split(": ", 1)[1] in table for title in titles), table
    link = value_of(page, "#c-link textarea")
    assert "&model_2=tiny-digits-cond&schedule_2=linear" in link and "model_1" not in link
    shot(page, "12-compare-two-models.png")
    page.goto(link, wait_until="domcontentloaded")
    page.wait_for_function("() => { const e = document.querySelector('#c-model-2 input'); "
                           "return e && e.value === 'tiny-digits-cond'; }", timeout=30_000)
    assert value_of(page, "#c-model-1 input") == "the model above"
    wait_done(page, "#c-status textarea")
    assert titles[1] in page.locator("#c-gallery").inner_text()
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_a_distilled_student_brings_its_own_sampling_and_its_example_runs(server, page):
    """Picking the distilled student in Generate sets its card's sampling (flow · euler · 4 steps, the most it
    lists). The example
    "1–4 steps: distilled vs DPM-Solver++ and DDIM" runs it at 1 and 4 Euler steps beside its teacher's DPM-Solver++
    and DDIM at 4, from the same noise; the table gives each panel's network evaluations."""
    opened(page, server)
    page.locator("#g-model input").click()
    page.get_by_role("option", name="tiny-digits-fast", exact=True).click()
    page.wait_for_function("() => document.querySelector('#g-sampler input').value === 'euler'", timeout=30_000)
    assert value_of(page, "#g-schedule input") == "flow" and value_of(page, "#g-steps input[type=number]") == "4"
    page.get_by_role("button", name="1–4 steps: distilled vs DPM-Solver++ and DDIM").click()
    wait_done(page, "#c-status textarea", "done: 4 rounds")
    page.wait_for_function("() => document.querySelectorAll('#c-gallery img').length >= 4", timeout=30_000)
    table = page.locator("#c-table").inner_text()
    for setting, nfe in (("tiny-digits-fast · flow · euler · 1 step", 1), ("tiny-digits-fast · flow · euler · 4 steps", 4),
                         ("tiny-digits · flow · dpm-solver++ · 4 steps", 4), ("tiny-digits · flow · ddim · 4 steps", 4)):
        assert f"{setting}\n{nfe}\n" in table, table
    assert "&model_1=tiny-digits-fast&schedule_1=flow&sampler_1=euler&steps_1=1" in value_of(page, "#c-link textarea")
    shot(page, "14-distilled-vs-solvers.png")
    assert page.errors == [], f"page errors: {page.errors[:5]}"


def test_train_tab_draws_trains_and_animates(server, page):
    """The Train tab: a shape drawn on the canvas trains a small flow-matching model for 300 steps (the loss curve
    and the live view of samples appear, the status gives its paths' straightness), then sampling it shows the
    trajectories with their time slider, which moves them. (ddpm and dsm train through the same endpoint:
    tests/test_train_tab.py.)"""
    page.goto(server + "?tab=train", wait_until="load")
    page.wait_for_selector("#t-sketch canvas", state="visible")
    ring = [(0.5 + 0.08 * math.cos(k * math.pi / 8), 0.5 + 0.25 * math.sin(k * math.pi / 8)) for k in range(17)]
    draw(page, "#t-sketch", ring)
    set_number(page, "#t-steps", 300)
    set_number(page, "#t-width", 32)
    set_number(page, "#t-batch", 128)
    page.locator("#t-objective label", has_text="fm").click()
    page.click("#t-run")
    wait_done(page, "#t-status textarea", "done: step 300/300")
    assert " · fm · path straightness S = " in value_of(page, "#t-status textarea")
    page.wait_for_selector("#t-loss .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#t-view .js-plotly-plot .scatterlayer", timeout=30_000)
    shot(page, "12-train.png")
    set_number(page, "#t-sample-steps", 20)
    page.click("#t-sample")
    wait_done(page, "#t-sample-status textarea", "1000 particles · 20 steps")
    page.wait_for_selector("#t-anim .js-plotly-plot .slider-container", timeout=30_000)
    points = "() => document.querySelector('#t-anim .js-plotly-plot').data[1].x.slice(0, 5).join(',')"
    at_end = page.evaluate(points)
    rail = page.locator("#t-anim .slider-container .slider-rail-rect").first.bounding_box()
    page.mouse.click(rail["x"] + 3, rail["y"] + rail["height"] / 2)  # the slider's first step: the start of the run
    page.wait_for_function(f"() => ({points})() !== {at_end!r}", timeout=10_000)  # the particles moved back in time
    shot(page, "13-train-animation.png")
    assert page.outside == [], f"requests left loopback: {page.outside[:5]}"
    assert page.errors == [], f"page errors: {page.errors[:5]}"
