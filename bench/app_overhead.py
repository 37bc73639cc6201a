"""Section 4: what the app adds to the engine's time.

The app runs in this process on a free loopback port, as tests/test_app.py launches it (``build_demo`` then
``launch(prevent_thread_lock=True)``), over the repository's checkpoints. Timed through ``gradio_client``:
a whole /generate call against the bare ``engine.sample`` with the same settings (interleaved), and the time from
``client.submit`` to the first streamed frame. The same request is also made as the browser makes it — join the
queue, read the server-sent events — with a plain HTTP client (``sse_request``): gradio_client waits up to 50 ms
between its looks at the event stream (a no-op request through it takes ~75 ms against ~10 ms as the browser
does, both timed here on a one-button app), so its figures carry that wait. A third side, the app's handler
iterated in-process (no server), splits the app's time into its own work (frames, gallery PNGs, plot, GIF) and
Gradio's processing and transport. The client is made with ``download_files=False``: it gets the files' URLs, as a
browser does (which then fetches each, ~10 ms). The default client, which downloads every file of every streamed
update over a fresh HTTP connection, is timed separately. Cold start: ``python app.py --port P`` in a subprocess
until ``GET /`` answers 200, beside ``python -c "import app"`` (the imports alone).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import engine

from .common import Section, Spread, Table, interleaved, median, ratio, threads, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(schedule="cosine", sampler="ddim", steps=50, seed=0, n=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fn_index(root: str, api_name: str) -> int:
    """The id of the event named ``api_name`` in the app's config."""
    with urllib.request.urlopen(root + "config", timeout=10) as r:
        config = json.load(r)
    for dep in config["dependencies"]:
        if dep.get("api_name") == api_name:
            return dep["id"]
    raise KeyError(api_name)


def api_inputs(client, api_name: str, values: dict) -> list:
    """An endpoint's inputs in the page's order, as the browser sends them: ``values`` by parameter name, every
    other input at its default (read from the app's API, so the list follows the page's controls)."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"][api_name]["parameters"]
    return [values.get(p["parameter_name"], p.get("parameter_default")) for p in params]


def sse_request(http, root: str, fn: int, data: list) -> tuple[float, float | None]:
    """One request made as the browser makes it: POST /gradio_api/queue/join, then read the event stream of
    /gradio_api/queue/data as it arrives. Returns (seconds to ``process_completed``, seconds to the first streamed
    update or None)."""
    session = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    http.post(root + "gradio_api/queue/join", json={"data": data, "event_data": None, "fn_index": fn,
                                                    "trigger_id": None, "session_hash": session}).raise_for_status()
    first = None
    with http.stream("GET", root + "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            kind = msg.get("msg")
            if kind == "process_generating" and first is None:
                first = time.perf_counter() - t0
            elif kind == "process_completed":
                if not msg.get("success", True):
                    raise RuntimeError(f"request failed: {msg.get('output')}")
                return time.perf_counter() - t0, first
    raise RuntimeError("the event stream ended before process_completed")


def noop_floor(reps: int) -> tuple[Spread, Spread]:
    """A one-textbox app whose generator yields 5 times: seconds per request through gradio_client and as the
    browser makes it (the transport's floor on this machine)."""
    import gradio as gr
    import httpx
    from gradio_client import Client

    def count(x):
        for i in range(5):
            yield f"{x}{i}"

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        gr.Button().click(count, box, out, api_name="count")
    demo.queue()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    root = f"http://127.0.0.1:{port}/"
    try:
        client = Client(root, verbose=False, download_files=False)
        fn = fn_index(root, "count")
        with httpx.Client(timeout=60) as http:
            t = interleaved({"client": lambda: client.predict("x", api_name="/count"),
                             "browser": lambda: sse_request(http, root, fn, ["x"])}, reps)
    finally:
        demo.close()
    return Spread(t["client"]), Spread(t["browser"])


def first_frame(client, settings: dict, poll_s: float = 0.002) -> float:
    """Seconds from ``client.submit`` of /generate to its first streamed output; waits for the run to end."""
    t0 = time.perf_counter()
    job = client.submit(**settings, eta=0.0, api_name="/generate")
    while not job.outputs():
        if job.done() and not job.outputs():
            raise RuntimeError(f"/generate streamed nothing: {job.exception()}")
        time.sleep(poll_s)
    dt = time.perf_counter() - t0
    job.result()
    return dt


def cold_start(timeout_s: float = 120.0) -> float:
    """Seconds from starting ``python app.py --port P`` until ``GET /`` answers 200."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with status {proc.returncode} before answering")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"app.py did not answer within {timeout_s:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def imports_s() -> float:
    """Seconds of ``python -c "import app"``: the imports alone (app.py starts nothing on import)."""
    return timed(lambda: subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, check=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def _added(num: list[float], den: list[float]) -> Spread:
    """The time ``num`` adds to ``den``, per repetition: num / den − 1."""
    return Spread([v - 1 for v in ratio(num, den).values])


def _more_timings(http, root: str, fn: int, client, settings: dict, model, more) -> dict:
    """{label: (settings, timings)}: each of ``more``'s changes to the settings timed as the browser makes the
    request, against the bare engine."""
    extra = {}
    for label, change, k in more:
        other = dict(settings, **change)
        other_data = api_inputs(client, "/generate", other)
        other_engine = {key: v for key, v in other.items() if key != "model"}
        tt = interleaved({"browser": lambda: sse_request(http, root, fn, other_data),
                          "engine": lambda: engine.sample(model, **other_engine)}, k)
        extra[label] = (other, tt)
    return extra


def _timings(root: str, model, handler, settings: dict, reps: int, download_reps: int, more) -> dict:
    """Every timing made against the app served at ``root``: /generate through gradio_client, as the browser makes
    it, in-process and on the bare engine (interleaved), the ``more`` settings, the first frame, and the default
    (downloading) client."""
    import httpx
    from gradio_client import Client

    engine_settings = {k: v for k, v in settings.items() if k != "model"}
    browser_first: list[float] = []

    def browser() -> None:
        total, first_s = sse_request(http, root, fn, data)
        browser_first.append(first_s)

    client = Client(root, verbose=False, download_files=False)
    fn = fn_index(root, "generate")
    data = api_inputs(client, "/generate", settings)
    with httpx.Client(timeout=120) as http:
        t = interleaved({"app": lambda: client.predict(**settings, eta=0.0, api_name="/generate"),
                         "browser": browser, "handler": handler,
                         "engine": lambda: engine.sample(model, **engine_settings)}, reps)
        extra = _more_timings(http, root, fn, client, settings, model, more)
    first = Spread([first_frame(client, settings) for _ in range(reps)])
    downloading = Client(root, verbose=False)
    default_client = Spread([timed(lambda: downloading.predict(**settings, eta=0.0, api_name="/generate"))
                             for _ in range(download_reps)])
    return {"t": t, "browser_first": Spread(browser_first[-reps:]),  # the warm-up call's is left out
            "extra": extra, "first": first, "default_client": default_client}


def _cold_starts(reps: int) -> tuple[Spread, Spread]:
    """(cold start of ``python app.py``, the imports alone), ``reps`` of each, alternating."""
    cold, imports = Spread([]), Spread([])
    for _ in range(reps):
        imports.values.append(imports_s())
        cold.values.append(cold_start())
    return cold, imports


def _table(title: str, f: dict, t: dict, extra: dict, reps: int, cold_reps: int, download_reps: int) -> Table:
    """The section's table from its figures ``f``, the interleaved timings ``t`` and the ``more`` timings."""
    table = Table(title, ["measure", "value", "reps"])
    table.add("engine.sample", Spread(t["engine"]).fmt(".3f", " s"), reps)
    table.add("/generate through gradio_client (streamed, to the end)", Spread(t["app"]).fmt(".3f", " s"), reps)
    table.add("time the app adds", f["added"].fmt("+.0%"), reps)
    table.add("/generate as the browser makes it (queue join + event stream, plain HTTP)",
              Spread(t["browser"]).fmt(".3f", " s"), reps)
    table.add("… time the app adds, as the browser receives it", f["browser_added"].fmt("+.0%"), reps)
    table.add("… of which the handler in-process (frames, gallery PNGs, plot, GIF; no server)",
              f["handler_added"].fmt("+.0%"), reps)
    for label, (other, tt) in extra.items():
        table.add(f"{label} (n={other['n']}, {other['steps']} steps): engine.sample / as the browser receives it",
                  f"{median(tt['engine']):.2f} s / {median(tt['browser']):.2f} s", len(tt["engine"]))
        table.add("… time the app adds, as the browser receives it", f["more"][label][1].fmt("+.0%"),
                  len(tt["engine"]))
    table.add("request → first streamed frame (gradio_client)", f["first"].fmt(".3f", " s"), reps)
    table.add("request → first streamed frame, as the browser receives it", f["browser_first"].fmt(".3f", " s"),
              reps)
    table.add("transport floor: a no-op 5-update request through gradio_client", f["floor_client"].fmt(".3f", " s"),
              reps)
    table.add("… the same as the browser makes it", f["floor_browser"].fmt(".3f", " s"), reps)
    table.add("/generate, default Client (downloads every streamed file)", f["default_client"].fmt(".2f", " s"),
              download_reps)
    table.add("cold start: python app.py → GET / 200", f["cold"].fmt(".1f", " s"), cold_reps)
    table.add("… of which python -c 'import app' (imports alone)", f["imports"].fmt(".1f", " s"), cold_reps)
    table.note = ("time the app adds = /generate time / engine time − 1, per repetition (it includes the live "
                  "frames, the gallery PNGs, the schedule plot, the GIF and the PNG download the app makes). "
                  "Client(download_files=False) except in the default-Client row. gradio_client looks at the event "
                  "stream at most every 50 ms: the transport-floor rows show what that adds to any request.")
    return table


def section(model_name: str = "mnist-ddpm", reps: int = 5, steps: int = 50, cold_reps: int = 3,
            download_reps: int = 2, more=(("Generate's defaults", dict(n=4), 3),
                                          ("a long run", dict(steps=1000), 2))) -> Section:
    """``more``: further settings (label, changes to n / steps, repetitions) timed as the browser makes the
    request, against the bare engine."""
    from space import CSS, build_demo
    from space.context import AppContext
    from space.models import ModelStore
    from space.tabs.generate import Generate

    settings = dict(SETTINGS, model=model_name, steps=steps)
    model = engine.load_model(model_name)
    handlers = Generate(AppContext(ModelStore()))

    def handler() -> int:
        """The /generate handler in-process; returns the number of updates it yields (streamed + final)."""
        return sum(1 for _ in handlers.generate(**settings, eta=0.0))

    demo = build_demo()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, css=CSS)
    try:
        timings = _timings(f"http://127.0.0.1:{port}/", model, handler, settings, reps, download_reps, more)
    finally:
        demo.close()
    t, extra = timings["t"], timings["extra"]
    floor_client, floor_browser = noop_floor(reps)
    cold, imports = _cold_starts(cold_reps)
    figures = {"updates": handler(), "added": _added(t["app"], t["engine"]), "first": timings["first"],
               "cold": cold, "imports": imports, "engine": median(t["engine"]), "app": median(t["app"]),
               "handler_added": _added(t["handler"], t["engine"]), "default_client": timings["default_client"],
               "steps": steps, "browser": median(t["browser"]), "browser_added": _added(t["browser"], t["engine"]),
               "browser_first": timings["browser_first"], "floor_client": floor_client,
               "floor_browser": floor_browser,
               "more": {label: (other, _added(tt["browser"], tt["engine"])) for label, (other, tt) in extra.items()}}
    title = (f"App overhead ({model_name}, {settings['schedule']} ddim {steps} steps, n=1 unless said, "
             f"{threads()}; median, min–max)")
    return Section("4. App overhead", [_table(title, figures, t, extra, reps, cold_reps, download_reps)],
                   figures=figures)
