"""The app's model work runs on one thread (space/engine_thread.py), whichever thread Gradio calls a handler from;
checkpoints load in threads that end. Both keep GNU OpenMP to one lasting team per engine thread (bench levers: about 2× per request)."""
import contextvars
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import engine
from space import engine_thread, imaging
from space.context import AppContext
from space.models import ModelStore
from space.tabs.generate import Generate

RUN = dict(model="mnist-ddpm", schedule="cosine", sampler="ddim", steps=4, seed=3, n=2)


@pytest.fixture(scope="module")
def handlers():
    return Generate(AppContext(ModelStore()))


def _consume_from_rotating_threads(gen) -> list:
    """Each next() from a different new thread, as Gradio's worker pool may do."""
    items = []
    while True:
        with ThreadPoolExecutor(1) as pool:
            item = pool.submit(next, gen, None).result()
        if item is None:
            return items
        items.append(item)


def test_a_request_runs_its_network_on_one_thread_whichever_thread_asks(handlers):
    net = handlers.app.store.load("mnist-ddpm")
    callers: set[int] = set()
    hook = net.net.register_forward_hook(lambda *_: callers.add(threading.get_ident()))
    try:
        outputs = _consume_from_rotating_threads(handlers.generate(**RUN))
    finally:
        hook.remove()
    assert len(callers) == 1 and threading.get_ident() not in callers
    assert outputs[-1][5].startswith("done")  # the final update's status
    # the same samples as the engine gives in this thread (the download PNG holds the grid at native size)
    final = engine.sample(net, **{k: v for k, v in RUN.items() if k != "model"})
    with Image.open(outputs[-1][3]) as png:
        served = np.asarray(png, dtype=np.int16)
    assert np.abs(served - np.asarray(imaging.grid(final), dtype=np.int16)).max() <= 1


def test_requests_at_the_same_time_each_keep_their_engine_thread(handlers):
    net = handlers.app.store.load("mnist-ddpm")
    current = {}
    seen: dict[int, set[int]] = {1: set(), 2: set()}
    hook = net.net.register_forward_hook(lambda *_: seen[current["request"]].add(threading.get_ident()))
    first, second = handlers.generate(**RUN), handlers.generate(**dict(RUN, seed=4))
    try:
        pending = {1: first, 2: second}
        while pending:  # the two requests take turns, one streamed update each
            for k, gen in list(pending.items()):
                current["request"] = k
                if next(gen, None) is None:
                    del pending[k]
    finally:
        hook.remove()
    assert all(len(ids) == 1 for ids in seen.values())
    # as many engine threads as the cores hold at the intra-op thread count: side by side where there are two
    distinct = len(seen[1] | seen[2])
    assert distinct == min(2, len(engine_thread.engine_threads().executors))


def test_work_sees_the_callers_context_and_raises_its_errors():
    var = contextvars.ContextVar("request", default=None)
    var.set("caller's")

    def read():
        return var.get(), threading.get_ident()

    value, ident = engine_thread.run(read)
    assert value == "caller's" and ident != threading.get_ident()
    with pytest.raises(ValueError, match="bad steps"):
        engine_thread.run(lambda: (_ for _ in ()).throw(ValueError("bad steps")))
    # called from the engine thread itself it runs in place instead of waiting for itself
    assert engine_thread.run(lambda: engine_thread.run(read))[1] == ident


def test_a_streamed_handler_stays_a_generator_and_closing_it_closes_the_work():
    events = []

    @engine_thread.on_engine_thread
    def stream(k: int, request=None):
        try:
            for i in range(k):
                events.append(("step", threading.get_ident()))
                yield i
        finally:
            events.append(("closed", threading.get_ident()))

    assert inspect.isgeneratorfunction(stream)  # Gradio streams generator functions only
    assert list(inspect.signature(stream).parameters) == ["k", "request"]  # the API's parameter names
    gen = stream(10)
    assert [next(gen), next(gen)] == [0, 1]
    gen.close()  # a stopped request
    assert events[-1][0] == "closed" and len({ident for _, ident in events}) == 1


def test_checkpoints_load_in_a_thread_that_has_ended(monkeypatch):
    loaders: list[threading.Thread] = []
    real = engine.load_served

    def recording(*args, **kwargs):
        loaders.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "load_served", recording)
    store = ModelStore()
    store.load("mnist-ddpm")
    assert loaders and all(t is not threading.current_thread() and not t.is_alive() for t in loaders)
    with pytest.raises(KeyError):
        engine_thread.in_passing_thread(lambda: {}["missing"])


def test_app_refuses_a_thread_count_below_one(capsys):
    import app
    with pytest.raises(SystemExit) as stop:
        app.main(["--threads", "0"])
    assert stop.value.code == 2 and "--threads must be a whole number of at least 1" in capsys.readouterr().err
