"""Section 9: the distilled student's one step, as the app serves it.

mnist-fast (a reflow student of mnist-fm, engine/distill.py) makes a digit in one network evaluation, sampled as
its card says (one Euler step on the flow schedule). Timed here, for a batch of 16 and of 1: `engine.sample` on
the model as the app serves it (`load_served(name, background_compile=True)`, warm: after its background compile
of that batch has finished) beside the eager network (`load_model`), interleaved, on the section's own intra-op
threads (two: the target's "two cores"); and the same /generate request made as the browser makes it (join
Gradio's queue, read the event stream until `process_completed`) on the app over the repository's checkpoints,
which adds the frames, the gallery's PNGs and the GIF to the network's time.
"""
from __future__ import annotations

import engine

from .app_overhead import api_inputs, fn_index, free_port, sse_request
from .common import Section, Table, interleaved, median, ratio

MODEL = "mnist-fast"
TARGET_S = 0.050  # a batch of 16 in one step, served on two cores


def _engine_timings(own: dict, batches, reps: int) -> dict:
    """{batch: {"served": [s], "eager": [s]}} for one step of the card's sampling ``own``, each side the same seed."""
    eager = engine.load_model(MODEL)
    served = engine.load_served(MODEL, background_compile=True)

    def run(model, n):
        return engine.sample(model, schedule=own["schedule"], sampler=own["sampler"], steps=1, seed=0, n=n)

    for n in batches:
        run(served, n)  # queues the batch's compile
    served.net.compiled.wait()
    return {n: interleaved({"served": lambda n=n: run(served, n), "eager": lambda n=n: run(eager, n)}, reps)
            for n in batches}


def _browser_timings(own: dict, n: int, reps: int) -> list[float] | None:
    """Seconds from joining the queue to ``process_completed`` of /generate (mnist-fast, 1 step, ``n`` images) on
    the app as app.py serves it (its store compiles each batch in the background), timed once that graph is ready;
    None when the app does not offer the model (its card says ``withdrawn``)."""
    import httpx
    from gradio_client import Client

    from space import CSS, build_demo
    from space.models import ModelStore

    store = ModelStore(background_compile=True)
    if MODEL not in store.image_models():
        return None
    demo = build_demo(store=store)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, css=CSS)
    root = f"http://127.0.0.1:{port}/"
    try:
        client = Client(root, verbose=False, download_files=False)
        data = api_inputs(client, "/generate", dict(model=MODEL, schedule=own["schedule"], sampler=own["sampler"],
                                                     steps=1, seed=0, n=n))
        fn = fn_index(root, "generate")
        with httpx.Client(timeout=120) as http:
            sse_request(http, root, fn, data)  # queues the batch's compile
            store.load(MODEL).net.compiled.wait()
            sse_request(http, root, fn, data)  # warm
            return [sse_request(http, root, fn, data)[0] for _ in range(reps)]
    finally:
        demo.close()


def section(model_name: str = MODEL, batches=(16, 1), reps: int = 20, browser_reps: int = 5,
            num_threads: int = 2) -> Section:
    """``model_name`` is the suite's model (mnist-ddpm): this section always times the distilled mnist-fast, and is
    skipped when it is not shipped."""
    import torch

    if MODEL not in engine.list_models():
        return Section("9. One step, distilled", [], skipped=f"{MODEL} is not in checkpoints/")
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        own = engine.model_card(MODEL)["sampling"]
        t = _engine_timings(own, batches, reps)
        browser = _browser_timings(own, max(batches), browser_reps)
    finally:
        torch.set_num_threads(before)
    table = Table(f"{MODEL}: one Euler step on flow ({num_threads} intra-op threads; median of {reps}, min–max)",
                  ["batch", "served ms", "eager ms", "served / eager"])
    for n in batches:
        speed = ratio(t[n]["eager"], t[n]["served"])
        table.add(n, f"{median(t[n]['served']) * 1e3:.1f}", f"{median(t[n]['eager']) * 1e3:.1f}",
                  speed.fmt(".2f", "×"))
    table.add(f"{max(batches)}, /generate as the browser makes it",
              "not offered in the app (withdrawn)" if browser is None else f"{median(browser) * 1e3:.0f}", "—", "—")
    figures = {"served": {n: median(t[n]["served"]) for n in batches},
               "browser": None if browser is None else median(browser),
               "batch": max(batches), "threads": num_threads}
    return Section("9. One step, distilled", [table], figures=figures)
