"""Serving (engine/serving.py): background torch.compile, where every call answers at once with the network's values,
compiled once the background thread has finished that shape, eager before and forever after a failed compile; and
channels-last, which changes speed, not samples."""
import logging
import sys
import threading

import pytest
import torch
from torch import nn

import engine
from engine import serving
from engine.serving import BackgroundCompiled, native_bfloat16, resolve_precision


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, log_snr):
        return torch.tanh(self.lin(x)) * log_snr[:, None]


@pytest.fixture(autouse=True)
def compile_at_normal_priority(monkeypatch):
    """The compile thread (and its child process) runs niced so that the app's requests keep the CPU; these tests
    wait for the compile instead, and beside another busy test worker the niced compile starved (the 20 s child
    compile test took 100 s). What runs at which priority is not what these tests check."""
    monkeypatch.setattr(serving, "COMPILE_NICENESS", 0)


def _inputs(n: int):
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, 2, generator=g), torch.randn(n, generator=g)


@pytest.mark.slow
def test_compiles_in_the_background_and_gives_the_same_values():
    net = Tiny().eval().requires_grad_(False)
    bc = BackgroundCompiled(net, max_batch=4)
    interval = sys.getswitchinterval()
    x, lam = _inputs(3)
    with torch.inference_mode():
        expected = net(x, lam)
        first = bc(x, lam)  # answered eager at once; the shape is queued
        assert torch.equal(first, expected)
        assert len(bc.queued) == 1
        assert bc.wait(timeout=300), "the background compile did not finish in 300 s"
        assert bc.failed is None, f"torch.compile failed on this machine: {bc.failed!r}"
        assert sys.getswitchinterval() == interval  # shortened only while compiling
        assert BackgroundCompiled.key(x, lam) in bc.ready
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        # x and lam were made outside inference mode (as a run's x_T is): served by the ready graph, not recompiled
        assert not x.is_inference()
        torch.testing.assert_close(bc(x, lam), expected, atol=1e-5, rtol=1e-5)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "the caller's thread recompiled"
    # a call in another autograd mode runs in inference mode: the same ready graph, nothing queued or recompiled
    with torch.no_grad():
        out = bc(x, lam)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        assert len(bc.queued) == 1
    assert not out.is_inference() and not out.requires_grad
    out.add_(1)  # a normal tensor: the caller may update it in place
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert bc.wait(timeout=300)


class _Counting:
    """A compiled graph that counts the calls made from the thread that wrapped it (not a background compile's)."""

    def __init__(self, graph):
        self.graph, self.calls, self.thread = graph, 0, threading.get_ident()

    def __call__(self, *args):
        self.calls += threading.get_ident() == self.thread
        return self.graph(*args)


@pytest.mark.slow
def test_a_shape_warmed_under_no_grad_serves_generate_s_calls_through_its_graph():
    """Issue 30: a shape first called under ``no_grad`` (bench/levers' warm-up, or a script's) compiled a graph
    guarded on that mode, which ``generate``'s calls (inference mode) never used: after ``wait()`` a DDIM run at
    batch 16 went eager, and timed like eager, until a second compile of the same shape finished. Every call of
    the run now goes through the one graph of its shape (bfloat16 from batch 2 where native, float32 elsewhere),
    and nothing is queued or compiled again."""
    model = serving.serve(engine.load_model("mnist-ddpm"), background_compile=True)
    compiled = model.net.compiled
    with torch.no_grad():
        model.eps(torch.randn(16, 1, 28, 28), torch.full((16,), 0.5, dtype=torch.float64))
    assert compiled.wait(timeout=600) and compiled.failed is None and len(compiled.ready) == 1
    compiled.graphs = {p: _Counting(g) for p, g in compiled.graphs.items()}
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    last = None
    for last in engine.generate(model, schedule="linear", sampler="ddim", steps=4, seed=0, n=16):
        pass
    assert last.nfe == 4
    assert compiled.graphs[compiled.precision_for(16)].calls == 4, "a network call of the run went eager"
    assert len(compiled.queued) == 1 and compiled.wait(timeout=0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_a_call_that_needs_autograd_runs_eager_and_queues_nothing():
    """The graphs compute no backward; a graph compiled from a call's inputs without grad would be recompiled in the
    caller's thread for inputs that require it (seen: one new graph on the first such call). So it runs eager."""
    net = Tiny().eval().requires_grad_(False)
    bc = BackgroundCompiled(net, max_batch=4)
    x, lam = _inputs(3)
    x.requires_grad_(True)
    out = bc(x, lam)
    assert out.requires_grad and torch.equal(out, net(x, lam))
    out.sum().backward()
    assert x.grad is not None and not bc.queued and bc.wait(timeout=0)


@pytest.mark.slow
def test_each_network_keeps_its_own_graphs_past_dynamo_s_default_limit():
    """Two networks of one class, five batch shapes each: ten graphs of one ``forward``, past dynamo's default of 8
    per code object (after which it silently ran eager). Each network's graphs compute its own weights (no module
    guards are kept, so sharing would give the other's values)."""
    nets = [Tiny().eval().requires_grad_(False) for _ in range(2)]
    with torch.no_grad():
        nets[1].lin.weight.add_(1.0)
    compiled = [BackgroundCompiled(net, max_batch=5) for net in nets]
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        for bc in compiled:
            for n in range(1, 6):
                bc(*_inputs(n))
            assert bc.wait(timeout=600) and bc.failed is None
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 10
        for net, bc in zip(nets, compiled):
            for n in range(1, 6):
                x, lam = _inputs(n)
                torch.testing.assert_close(bc(x, lam), net(x, lam), atol=1e-5, rtol=1e-5)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 10  # nothing recompiled


def test_inductor_s_one_fx_trace_is_done_before_any_compile_thread():
    """fx's symbolic tracing swaps nn.Module.__call__ for every thread while it runs; inductor's one trace per process
    (InterpreterShim's GraphModule) must not overlap a request's eager call, so a BackgroundCompiled does it first."""
    from torch._inductor.loop_body import InterpreterShim

    InterpreterShim._dummy_gm.cache_clear()
    BackgroundCompiled(Tiny())
    assert InterpreterShim._dummy_gm.cache_info().currsize == 1


def test_batches_over_the_limit_are_never_compiled():
    net = Tiny().eval()
    bc = BackgroundCompiled(net, max_batch=4)
    x, lam = _inputs(5)
    with torch.inference_mode():
        assert torch.equal(bc(x, lam), net(x, lam))
    assert not bc.queued and bc.wait(timeout=0)


def test_a_failed_compile_leaves_every_call_eager(caplog):
    net = Tiny().eval()
    bc = BackgroundCompiled(net, max_batch=4)

    def broken(*args):
        raise RuntimeError("no C++ compiler found")

    bc.graphs = {"float32": broken}
    x, lam = _inputs(2)
    with caplog.at_level(logging.WARNING, logger="engine.serving"), torch.inference_mode():
        assert torch.equal(bc(x, lam), net(x, lam))
        assert bc.wait(timeout=60)
        assert isinstance(bc.failed, RuntimeError) and not bc.ready
        x3, lam3 = _inputs(3)
        assert torch.equal(bc(x3, lam3), net(x3, lam3))  # nothing more is queued once compiling has failed
    assert len(bc.queued) == 1
    assert "no C++ compiler found" in caplog.text and "stays eager" in caplog.text


def test_load_served_compiles_only_when_asked():
    assert engine.load_served("toy-moons").net.compiled is None
    model = engine.load_served("toy-moons", background_compile=True)
    assert isinstance(model.net.compiled, BackgroundCompiled) and model.net.compiled.net is model.net.net
    assert type(model) is type(engine.load_model("toy-moons")) and model.card == engine.model_card("toy-moons")


def test_precision_is_checked_and_auto_picks_bfloat16_only_where_native():
    with pytest.raises(ValueError, match="allowed: auto, float32, bfloat16"):
        resolve_precision("float16")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        engine.load_served("mnist-ddpm", precision="fp16")
    assert resolve_precision("float32") == "float32" and resolve_precision("bfloat16") == "bfloat16"
    assert resolve_precision("auto") == ("bfloat16" if native_bfloat16("cpu") else "float32")
    assert not native_bfloat16("meta")
    image = engine.load_served("mnist-ddpm", background_compile=True).net.compiled
    # auto: float32 at batch 1 (measured faster there), bfloat16 from batch 2 where the hardware runs it natively
    assert image.precision_for(1) == "float32" and image.precision_for(2) == resolve_precision("auto")
    assert set(image.graphs) == {"float32", resolve_precision("auto")}
    plain = engine.load_served("mnist-ddpm", background_compile=True, precision="float32").net.compiled
    assert plain.precision == "float32" and set(plain.graphs) == {"float32"}
    forced = engine.load_served("mnist-ddpm", background_compile=True, precision="bfloat16").net.compiled
    assert forced.precision == "bfloat16" and forced.precision_for(1) == "bfloat16"
    # a toy MLP's calls are a few small matrix products: "auto" keeps them float32
    assert engine.load_served("toy-moons", background_compile=True).net.compiled.precision == "float32"


def test_auto_precision_on_bfloat16_hardware_is_float32_only_below_the_crossover(monkeypatch):
    monkeypatch.setattr(serving, "native_bfloat16", lambda device="cpu": True)
    bc = BackgroundCompiled(Tiny(), max_batch=4, precision="auto")
    assert [bc.precision_for(n) for n in range(1, 5)] == ["float32"] + ["bfloat16"] * 3
    assert bc.precision == "bfloat16 from batch 2, float32 below" and set(bc.graphs) == {"float32", "bfloat16"}
    monkeypatch.setattr(serving, "native_bfloat16", lambda device="cpu": False)
    assert BackgroundCompiled(Tiny(), max_batch=4, precision="auto").precision == "float32"


@pytest.mark.slow
def test_bfloat16_graph_gives_float32_outputs_and_samples_of_the_same_pictures():
    """The bfloat16 graph (autocast) returns float32; a whole DDIM run from one seed stays the same picture as the
    float32 eager run: bfloat16 rounding moves pixels by a fraction of a grey level on average (measured 0.2–0.3
    levels over 16 images at 50 steps). Served without a checkpoint source, the graph is compiled in this process
    only (compiling in a child first is ``test_a_checkpoints_shapes_compile_in_a_child_process…``'s to check)."""
    eager = engine.load_model("mnist-ddpm")
    model = serving.serve(engine.load_model("mnist-ddpm"), background_compile=True, precision="bfloat16")
    assert model.net.compiled.source is None
    settings = dict(schedule="cosine", sampler="ddim", steps=10, seed=3, n=2)
    expected = engine.sample(eager, **settings)
    engine.sample(model, **settings)  # eager calls, and the shape is queued
    assert model.net.compiled.wait(timeout=600) and model.net.compiled.failed is None
    got = engine.sample(model, **settings)
    assert got.dtype == torch.float32
    diff = (got - expected).abs()
    assert 0 < diff.max()  # it did run in bfloat16
    assert diff.mean() < 4 / 255, f"mean difference {diff.mean() * 127.5:.2f} grey levels"


def test_app_warm_up_queues_the_default_shapes(monkeypatch):
    """app.py's warm-up thread runs the default model once at batch 1 and 4 (Generate's default n), so their compile
    is queued before the first visitor; the compile itself is stubbed out here."""
    from space.models import ModelStore
    from space.tabs.generate import warm_up

    monkeypatch.setattr(BackgroundCompiled, "_work", lambda self: None)
    store = ModelStore(background_compile=True)
    warm_up(store=store)
    compiled = store.load("mnist-ddpm").net.compiled
    assert sorted(key[0][0] for key in compiled.queued) == [1, 4]
    assert not compiled.ready
    warm_up(store=ModelStore())  # without background compile: the plot only, nothing queued, no error


@pytest.mark.xdist_group("subprocesses")
def test_a_checkpoints_shapes_compile_in_a_child_process_and_load_here_from_its_cache(tmp_path, monkeypatch):
    """The long part of a compile (code generation, the C++ compiler) runs in a child process, which holds its own
    GIL; this process then loads the graph from inductor's on-disk caches (a GIL-holding window of ~2.5 s instead
    of ~35 s for the U-Net; requests during the app's first minute measured 0.4–1 s instead of 4.5–8 s)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # empty: only the child can fill it
    children = []
    real_run = serving._run_child

    def spied(spec):
        children.append(spec)
        return real_run(spec)

    monkeypatch.setattr(serving, "_run_child", spied)
    model = engine.load_served("toy-moons", background_compile=True)
    assert model.net.compiled.source["name"] == "toy-moons"
    counters.clear()
    x, alpha_bar = torch.randn(3, 2), torch.full((3,), 0.5)
    with torch.inference_mode():
        expected = model.eps(x, alpha_bar)  # eager; batch 3 is queued
        assert model.net.compiled.wait(timeout=600) and model.net.compiled.failed is None
        assert len(children) == 1 and len(model.net.compiled.ready) == 1
        assert counters["inductor"]["fxgraph_cache_hit"] == 1 and counters["inductor"]["fxgraph_cache_miss"] == 0
        torch.testing.assert_close(model.eps(x, alpha_bar), expected, atol=2e-3, rtol=0)


def test_a_failed_child_compile_leaves_the_compile_to_this_process(monkeypatch, caplog):
    def no_child(spec):
        raise OSError("cannot start a process")

    monkeypatch.setattr(serving, "_run_child", no_child)  # this launch only: inductor runs its own compilers
    net = Tiny().eval()
    bc = BackgroundCompiled(net, max_batch=4, source={"name": "toy-moons", "directory": "checkpoints", "channels_last": True})
    x, lam = _inputs(2)
    with caplog.at_level(logging.INFO, logger="engine.serving"), torch.inference_mode():
        bc(x, lam)
        assert bc.wait(timeout=600) and bc.failed is None and len(bc.ready) == 1
        torch.testing.assert_close(bc(x, lam), net(x, lam))
    assert "child process failed (cannot start a process); compiling here" in caplog.text


def test_channels_last_changes_speed_not_samples():
    """load_served's default inference setting (channels-last, image models only) gives the plain eager model's
    samples to float summation order; load_model is the plain eager model the benchmarks compare against."""
    served, plain = engine.load_served("mnist-ddpm"), engine.load_model("mnist-ddpm")
    assert served.net.memory_format == torch.channels_last
    assert served.net.net.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.net.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    for sampler in ("ddim", "ddpm"):
        a = engine.sample(served, schedule="cosine", sampler=sampler, steps=8, seed=1, n=3)
        b = engine.sample(plain, schedule="cosine", sampler=sampler, steps=8, seed=1, n=3)
        assert torch.allclose(a, b, atol=2e-3), (a - b).abs().max()  # float summation order only: < 1/4 grey level
    assert engine.load_served("toy-moons").net.memory_format == torch.contiguous_format  # 2-D data: nothing to reformat
    assert engine.load_served("mnist-ddpm", channels_last=False).net.memory_format == torch.contiguous_format
