"""Many users at once on the running app (docs/RELIABILITY.md), cancellation, and a full queue.

The load test starts N gradio_client users together (N = 8 in CI; LOAD_N overrides it), each sending small valid
Generate requests and, every third request, an invalid one. Every request must be answered — a result, a clear
error, or Gradio's "Queue is full! Please try again." — and nothing else; the server must answer afterwards and the
process's resident memory stay within RSS_BOUND_MB of where it started. The figures are printed.

A larger manual run, on the shipped checkpoints — the server in this process, as in the tests, or the deployed app in
its own process (then RSS is that process's, given its pid):

    python tests/test_load.py --users 32              # --per-user 3 --model mnist-ddpm --checkpoints DIR
    python app.py --port 7860 &  python tests/test_load.py --users 64 --url http://127.0.0.1:7860/ --pid $!

Loopback only; every wait has a timeout.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.client import Status  # noqa: E402
from PIL import Image  # noqa: E402

from tests.test_app import free_port, make_fixture_checkpoints  # noqa: E402

pytestmark = pytest.mark.slow  # each test runs several seconds of concurrent requests

LOAD_N = int(os.environ.get("LOAD_N", "8"))
RSS_BOUND_MB = 500  # growth of the process's resident memory allowed during a load run
ANSWER_TIMEOUT_S = 300  # a request not answered within this counts as unanswered
BUSY = "Queue is full"
# invalid requests sent among the valid ones, each with the message it must get (gradio_client says which parameter
# failed validation first)
INVALID = [(dict(steps=0), "steps = 0 is below the minimum 1"),
           (dict(model="../../etc/passwd"), "unknown model '../../etc/passwd'"),
           (dict(seed=-1), "seed = -1 is below the minimum 0"),
           (dict(n=10**6), "n = 1000000 is above the maximum 16"),
           (dict(schedule="<script>"), "unknown schedule '&lt;script&gt;'")]


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (Linux /proc), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakRSS:
    """Samples rss_mb(pid) every 50 ms in a thread while in use; ``peak`` is the largest value seen."""

    def __init__(self, pid: int | str = "self"):
        self.pid = pid

    def __enter__(self):
        self.start = self.peak = rss_mb(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.end = rss_mb(self.pid)
        self.peak = max(self.peak, self.end)


def tree_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def connect(url: str) -> Client:
    """A gradio_client user that waits up to 60 s for a reply (httpx's default, 5 s, is shorter than an overloaded
    server takes to send its page config: this measures the server, not the client's patience)."""
    return Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 60})


def run_load(url: str, users: int, per_user: int, model: str, cache_dir: str | None = None,
             pid: int | str = "self") -> dict:
    """``users`` clients started together, each sending ``per_user`` Generate requests (ddim, 5 steps, n = 1;
    every third one invalid). Returns the counts, latencies and memory figures (RSS of process ``pid``);
    ``problems`` lists every answer that was not what the request should get."""
    outcomes: list[tuple[str, float, str]] = []  # (kind, latency, detail)
    problems: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(users)

    def user(k: int):
        try:
            client = connect(url)
        except Exception as err:  # noqa: BLE001 - a user who cannot connect gets no answer at all
            with lock:
                outcomes.extend([("unanswered", math.nan, "")] * per_user)
                problems.append(f"user {k} could not connect: {type(err).__name__}: {err}")
            start.abort()
            return
        try:
            start.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass
        for j in range(per_user):
            kw = dict(model=model, schedule="cosine", sampler="ddim", steps=5, seed=1000 * k + j, n=1)
            expect = None
            if j % 3 == 2:
                bad, expect = INVALID[(k + j) % len(INVALID)]
                kw.update(bad)
            t0 = time.perf_counter()
            try:
                out = client.submit(**kw, api_name="/generate").result(timeout=ANSWER_TIMEOUT_S)
                kind, detail = "result", out[5]
            except TimeoutError:
                kind, detail = "unanswered", ""
            except Exception as err:  # noqa: BLE001 - every answer is classified below
                detail = str(err)
                kind = "busy" if BUSY in detail else "error"
            latency = time.perf_counter() - t0
            with lock:
                outcomes.append((kind, latency, detail))
                if kind == "unanswered":
                    problems.append(f"user {k} request {j}: no answer in {ANSWER_TIMEOUT_S} s")
                elif expect is None and kind == "error":
                    problems.append(f"user {k} request {j} (valid): {detail[:200]}")
                elif expect is None and kind == "result" and not detail.startswith("done: 5/5 steps"):
                    problems.append(f"user {k} request {j}: status {detail[:200]}")
                elif expect is not None and kind == "result":
                    problems.append(f"user {k} request {j} (invalid {kw}): got a result")
                elif expect is not None and kind == "error" and expect not in detail:
                    problems.append(f"user {k} request {j}: unclear error {detail[:200]!r}, expected {expect!r}")
        client.close() if hasattr(client, "close") else None

    cache_before = tree_bytes(cache_dir) if cache_dir else 0
    wall = time.perf_counter()
    with PeakRSS(pid) as mem:
        threads = [threading.Thread(target=user, args=(k,)) for k in range(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=ANSWER_TIMEOUT_S * per_user + 180)
    wall = time.perf_counter() - wall
    answered = [o for o in outcomes if o[0] != "unanswered"]
    served = [lat for kind, lat, _ in outcomes if kind == "result"]
    return {
        "users": users, "requests": users * per_user, "answered": len(answered),
        "results": sum(o[0] == "result" for o in outcomes), "errors": sum(o[0] == "error" for o in outcomes),
        "busy": sum(o[0] == "busy" for o in outcomes), "unanswered": users * per_user - len(answered),
        "p50_s": statistics.median(served) if served else float("nan"), "p95_s": percentile(served, 0.95),
        "max_s": max(served, default=float("nan")), "wall_s": wall,
        "busy_max_s": max((lat for kind, lat, _ in outcomes if kind == "busy"), default=float("nan")),
        "error_max_s": max((lat for kind, lat, _ in outcomes if kind == "error"), default=float("nan")), "rss_start_mb": mem.start,
        "rss_peak_mb": mem.peak, "rss_end_mb": mem.end,
        "cache_growth_mb": (tree_bytes(cache_dir) - cache_before) / 2**20 if cache_dir else float("nan"),
        "problems": problems,
    }


def report(fig: dict) -> str:
    return (f"load: {fig['users']} users · {fig['requests']} requests · answered {fig['answered']} · "
            f"results {fig['results']} · clear errors {fig['errors']} · busy {fig['busy']} · "
            f"unanswered {fig['unanswered']} · latency of results p50 {fig['p50_s']:.2f} s, p95 {fig['p95_s']:.2f} s, "
            f"max {fig['max_s']:.2f} s · slowest clear error {fig['error_max_s']:.2f} s, slowest busy answer "
            f"{fig['busy_max_s']:.2f} s · wall {fig['wall_s']:.1f} s · RSS {fig['rss_start_mb']:.0f} → peak "
            f"{fig['rss_peak_mb']:.0f} MiB (+{fig['rss_peak_mb'] - fig['rss_start_mb']:.0f}), end "
            f"{fig['rss_end_mb']:.0f} MiB · Gradio cache +{fig['cache_growth_mb']:.1f} MiB")


def launch(demo) -> str:
    from space import CSS

    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, css=CSS)
    return f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------------------------------------------ tests ---

@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return make_fixture_checkpoints(str(tmp_path_factory.mktemp("load-ck")))


@pytest.fixture(scope="module")
def server(ck):
    """The app with its production limits (queue, workers, budgets), on the fixture checkpoints."""
    from space import build_demo

    demo = build_demo(ck)
    url = launch(demo)
    yield demo, url
    demo.close()


def test_concurrent_users_all_answered(server, capsys):
    demo, url = server
    fig = run_load(url, users=LOAD_N, per_user=3, model="tiny-digits", cache_dir=demo.GRADIO_CACHE)
    with capsys.disabled():
        print("\n" + report(fig))
    assert fig["problems"] == []
    assert fig["answered"] == fig["requests"] == fig["results"] + fig["errors"] + fig["busy"]
    assert fig["errors"] == LOAD_N  # exactly the invalid ones (one in three), each with its clear message
    assert fig["rss_peak_mb"] - fig["rss_start_mb"] < RSS_BOUND_MB
    # the server still answers
    out = connect(url).predict(
        model="tiny-digits", schedule="cosine", sampler="ddim", steps=5, seed=0, n=1, api_name="/generate")
    assert out[5].startswith("done: 5/5 steps")


def wait_for(predicate, timeout: float, what):
    """Poll ``predicate`` until true; after ``timeout`` s fail, saying ``what`` (a string, or a callable giving
    one at that moment)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


def traced(real, closed: list):
    """``real`` (an engine function that returns a run of Steps) with each run's loop traced: when it is closed,
    (the time, the steps it yielded) is appended to ``closed``."""
    def call(*args, **kwargs):
        run = real(*args, **kwargs)

        def loop():
            done = 0
            try:
                for step in run:
                    done += 1
                    yield step
            finally:
                closed.append((time.perf_counter(), done))
        return loop()
    return call


def test_stop_frees_the_worker_within_a_step(server, monkeypatch, capsys):
    """Both workers busy with long runs; cancelling them closes their sampling loops (the engine's generator) at
    the next step, and a new request is served at once."""
    import engine

    _, url = server
    closed: list[tuple[float, int]] = []  # (time, steps done) when each sampling loop was closed
    monkeypatch.setattr(engine, "generate", traced(engine.generate, closed))
    client = connect(url)
    small = dict(model="tiny-digits", schedule="cosine", sampler="ddim", steps=5, seed=0, n=1)
    t0 = time.perf_counter()
    client.predict(**small, api_name="/generate")
    alone = time.perf_counter() - t0
    long = dict(small, sampler="ddpm", steps=1000, n=16)  # minutes of work
    jobs = [client.submit(**long, api_name="/generate") for _ in range(2)]
    wait_for(lambda: all(len(j.outputs()) >= 2 for j in jobs), 120, "both long runs to stream")
    closed.clear()
    cancelled = time.perf_counter()
    for job in jobs:
        job.cancel()
    out = client.submit(**small, api_name="/generate").result(timeout=60)
    after = time.perf_counter() - cancelled
    wait_for(lambda: len(closed) >= 3, 30, "the cancelled loops to close")
    loops = sorted(closed)[:2]
    with capsys.disabled():
        print(f"\ncancel: loops closed {', '.join(f'{t - cancelled:.2f} s' for t, _ in loops)} after Stop "
              f"(after {', '.join(str(d) for _, d in loops)} of 1000 steps); next request answered in {after:.2f} s "
              f"(alone: {alone:.2f} s)")
    assert out[5].startswith("done: 5/5 steps")
    assert all(job.status().code == Status.CANCELLED for job in jobs)
    assert all(d < 1000 for _, d in loops)
    assert all(t - cancelled < 5 for t, _ in loops)
    assert after < alone + 10


def runs_and_cancelled(demo, stop_id: str, concurrency_id: str) -> tuple[set, set]:
    """The events that share the workers ``concurrency_id``, and those the Stop button ``stop_id`` cancels."""
    config = demo.get_config_file()
    stop = next(c["id"] for c in config["components"] if c["props"].get("elem_id") == stop_id)
    cancelled = {i for d in config["dependencies"] if [stop, "click"] in [list(t) for t in d["targets"]]
                 for i in d["cancels"]}
    return {fn._id for fn in demo.fns.values() if fn.concurrency_id == concurrency_id}, cancelled


def test_stop_cancels_every_generate_run(server):
    """The Stop button cancels each event that runs Generate (they share the "generate" workers): a click on Run,
    the run a result link starts when the page opens, and the run of each example."""
    from space.ui import EXAMPLES

    demo, _ = server
    runs, cancelled = runs_and_cancelled(demo, "g-stop", "generate")
    config = demo.get_config_file()
    examples = [c for c in config["components"] if c["type"] == "button" and c["props"].get("value") in dict(EXAMPLES)]
    assert len(examples) == 3  # the fixtures have no score model (no Langevin example) but a conditional one
    assert len(runs) == 2 + len(examples) and runs <= cancelled


def test_stop_frees_an_edit_within_a_step(server, monkeypatch):
    """Stop on a long Edit run (inpainting: RePaint's walk) closes its loop at the next step; the worker serves the
    next request at once."""
    from engine import editing

    _, url = server
    closed: list[tuple[float, int]] = []
    monkeypatch.setattr(editing, "inpaint", traced(editing.inpaint, closed))
    client = connect(url)
    mask = {"background": None, "layers": [], "composite": None}
    layer = os.path.join(tempfile.mkdtemp(), "paint.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(layer)
    mask["layers"] = [handle_file(layer)]
    long = dict(model="tiny-digits", mode="inpaint", source="dataset", dataset="digits8", index=0, mask=mask,
                schedule="linear", steps=1000, seed=0, jump_length=10, resamples=10)  # 10,000 network calls
    job = client.submit(**long, api_name="/edit")
    wait_for(lambda: len(job.outputs()) >= 2, 120, "the long edit to stream")
    cancelled = time.perf_counter()
    job.cancel()
    wait_for(lambda: len(closed) >= 1, 30, "the cancelled loop to close")
    out = client.predict(**dict(long, steps=5, jump_length=1, resamples=1), api_name="/edit")
    assert out[5].startswith("done: inpaint · 64 of 64 pixels filled")
    assert closed[0][1] < 10_000 and closed[0][0] - cancelled < 5
    assert job.status().code == Status.CANCELLED


def test_stop_cancels_every_edit_run(server):
    """The Edit tab's Stop cancels a click on Edit and the run a result link starts when the page opens."""
    demo, _ = server
    runs, cancelled = runs_and_cancelled(demo, "e-stop", "edit")
    assert len(runs) == 1 + 1 + 3 and runs <= cancelled  # Edit, the page's link, the fill-in of each of 3 examples


def test_an_invalid_request_is_refused_before_the_queue(server, capsys):
    """With both Generate workers busy and two requests waiting, each invalid request is answered at once with its
    clear message: the endpoint's validator answers it when it arrives, and it takes no place in the queue."""
    _, url = server
    client = connect(url)
    long = dict(model="tiny-digits", schedule="cosine", sampler="ddpm", steps=1000, seed=0, n=16)
    running = [client.submit(**long, api_name="/generate") for _ in range(2)]
    wait_for(lambda: all(j.status().code == Status.ITERATING for j in running), 120, "two running")
    waiting = [client.submit(**long, api_name="/generate") for _ in range(2)]
    wait_for(lambda: all(j.status().code == Status.IN_QUEUE for j in waiting), 120, "two waiting")
    times = []
    try:
        for bad, message in INVALID:
            t0 = time.perf_counter()
            with pytest.raises(Exception, match=re.escape(message)):
                client.predict(**{**long, "steps": 5, "n": 1, **bad}, api_name="/generate")
            times.append(time.perf_counter() - t0)
        assert all(j.status().code == Status.IN_QUEUE for j in waiting)  # still waiting: the refusals did not
    finally:
        for job in running + waiting:
            job.cancel()
    with capsys.disabled():
        print(f"\nrefused with 2 running and 2 waiting: {len(times)} invalid requests answered in "
              f"{min(times):.3f}–{max(times):.3f} s")
    assert max(times) < 2


def test_a_full_queue_answers_busy_at_once(ck, capsys):
    """With room for 2 running and 2 waiting, the 5th to 7th simultaneous requests are told the queue is full —
    at once, not after a wait — and the server serves again once the queue drains."""
    from space import build_demo

    demo = build_demo(ck)
    demo.queue(max_size=2, default_concurrency_limit=2)
    url = launch(demo)
    try:
        client = connect(url)
        long = dict(model="tiny-digits", schedule="cosine", sampler="ddpm", steps=1000, seed=0, n=16)
        # two running, then two waiting: one pair at a time, so that none of them finds the queue full
        running = [client.submit(**long, api_name="/generate") for _ in range(2)]
        wait_for(lambda: all(j.status().code == Status.ITERATING for j in running), 120,
                 lambda: f"two running (status: {[j.status().code.name for j in running]})")
        waiting = [client.submit(**long, api_name="/generate") for _ in range(2)]
        wait_for(lambda: all(j.status().code == Status.IN_QUEUE for j in waiting), 120,
                 lambda: f"two waiting (status: {[j.status().code.name for j in running + waiting]})")
        jobs = running + waiting
        t0 = time.perf_counter()
        extra = [client.submit(**long, api_name="/generate") for _ in range(3)]
        answers = []
        for job in extra:
            with pytest.raises(Exception, match="Queue is full! Please try again.") as info:
                job.result(timeout=30)
            answers.append(str(info.value))
        busy_s = time.perf_counter() - t0
        with capsys.disabled():
            print(f"\nbusy: 3 requests beyond 2 running + 2 waiting answered {answers[0]!r} within {busy_s:.2f} s")
        assert busy_s < 10
        for job in jobs:
            job.cancel()
        out = client.submit(**dict(long, sampler="ddim", steps=5, n=1), api_name="/generate").result(timeout=60)
        assert out[5].startswith("done: 5/5 steps")
    finally:
        demo.close()


# ------------------------------------------------------------------------------------------------- manual run ---

def main(argv=None) -> int:
    import logging

    import torch

    from gradio.utils import get_upload_folder

    from space import build_demo

    p = argparse.ArgumentParser(description="Load test: N concurrent gradio_client users on the app (in-process)")
    p.add_argument("--users", type=int, default=int(os.environ.get("LOAD_N", "32")))
    p.add_argument("--per-user", type=int, default=3)
    p.add_argument("--model", default="mnist-ddpm")
    p.add_argument("--checkpoints", default=None, help="default: $ENGINE_CHECKPOINTS or checkpoints/")
    p.add_argument("--url", default=None, help="a running app (default: start one in this process)")
    p.add_argument("--pid", default=None, help="with --url: the app's process id, for its memory figures")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    demo = None if args.url else build_demo(args.checkpoints)
    url = args.url or launch(demo)
    pid = args.pid or ("self" if demo else None)
    try:
        fig = run_load(url, args.users, args.per_user, args.model, cache_dir=get_upload_folder(), pid=pid or "self")
        alive = connect(url).predict(
            model=args.model, schedule="cosine", sampler="ddim", steps=5, seed=0, n=1, api_name="/generate")[5]
    finally:
        if demo:
            demo.close()
    if pid is None:
        print("(RSS figures are this client process's: give --pid for the server's)")
    print(report(fig))
    print(f"afterwards: {alive}")
    for line in fig["problems"]:
        print("PROBLEM:", line)
    return 1 if fig["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
