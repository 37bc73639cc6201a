"""Levers: each inference setting measured alone against the eager float32 baseline, the prediction written first.

Baseline: ``load_model(name)`` (plain eager float32) and ``calls`` calls of ``model.eps`` under ``torch.no_grad()``. Each
lever changes one thing; its speed-up is baseline time / lever time per repetition (interleaved), and max |Δ ε̂|
is the largest difference of one call's output from the baseline's. The preview lever is measured on whole
``engine.generate`` DDIM runs instead (previews are per step, not per call).

Measured by hand when the serving layer (engine/serving.py) was built, on the 2-core AVX-512 BF16 CPU with mnist-ddpm
against plain eager float32, interleaved; not re-run by this suite:
- the app compiling in its own process (inductor's cache empty): 50-step Generate requests took 4.5–8 s during the
  first minute and a half, 0.4–0.9 s once compiled. Each shape compiled in a child process first (U-Net batch 4:
  39.6 s in the child, 2.5 s loading it here): 0.4–1 s throughout (once 3.3 s, during one of those loads).
- compile options at batch 1: plain torch.compile 1.37×, without module guards 1.42× (the guards on ~100 parameters
  cost 0.2–0.35 ms per call), + C++ wrapper 1.50–1.57×; inductor's freezing no faster (with dynamo's inlining of
  built-in modules it froze no weight; with that inlining off, the same time). The float32 graph's outputs differ
  from eager by ~4e-6 per call.
- float32 / bfloat16 graph by batch, another process keeping the other core busy: batch 1 1.52× / 1.38×, batch 2
  1.24× / 1.41×, batch 4 1.14× / 1.43×, batch 16 1.11× / 1.58× (batch 1 on a quiet machine, 3 repetitions: 1.55× /
  1.76×), hence float32 below batch 2. The bfloat16 graph's FD is within 0.3 % of float32's (n = 500, DDIM 50 and
  DPM-Solver++ 20); its ε̂ differ from float32 by up to ~1e-1 per call, a seed's images by a mean 0.2–0.3 grey levels,
  a few stroke edges by up to ~50.
- channels-last in eager: between 0.6× and 2× across runs (medians 1.0–1.1×).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time

import torch

import engine
from space import imaging

from .common import Section, Spread, Table, interleaved, median, ratio, threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Written before the first measurement; the table prints them beside what was measured.
PREDICTIONS = {
    "inference_mode instead of no_grad": "1.00–1.03×: saves autograd bookkeeping on ~400 small ops per call",
    "channels-last (load_served default)": "≤ 1.0× at batch 1 (layout copies, tiny convs); 1.2–1.5× at batch 16 "
                                          "(oneDNN NHWC kernels)",
    "bfloat16 autocast (CPU)": "< 0.5× on an AVX2-only CPU (no native bfloat16, plus casts); 1.2–1.5× at batch 16 "
                               "with AVX-512 BF16; outputs change",
    "torch.compile": "1.2–1.5× at batch 1 (fused GroupNorm/SiLU/FiLM chains), ~1.1× at 16; 20–60 s to compile",
    "previews only at the end (not every step)": "1.01–1.05×: a 28×28 → 252² image per step, ~0.2 ms of ~10 ms",
    "compiled, no module guards, C++ wrapper (the app's float32 graph)":
        "1.05–1.2× over torch.compile at batch 1 (guard checks and the Python wrapper, ~0.5 ms of ~4 ms per call); "
        "about torch.compile's at batch 16",
    "the same + bfloat16 autocast (the app's graph where bfloat16 is native)":
        "1.3–1.6× at batch 16 (bfloat16 convolutions at ~2× the float32 rate, casts fused into neighbours); about "
        "the float32 graph's at batch 1; outputs change",
}


def _calls(model, n: int, calls: int, context=torch.no_grad):
    x, a = torch.randn(n, *model.data_shape), torch.full((n,), 0.5, dtype=torch.float64)

    def run():
        with context():
            for _ in range(calls):
                model.eps(x, a)
    return run


def _output(model, n: int, context=torch.no_grad) -> torch.Tensor:
    x = torch.randn((n, *model.data_shape), generator=torch.Generator().manual_seed(0))
    with context():
        return model.eps(x, torch.full((n,), 0.5, dtype=torch.float64)).float()


@contextlib.contextmanager
def bf16_autocast():
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        yield


def _previews(model, steps: int, n: int, every_step: bool):
    def run():
        for step in engine.generate(model, schedule="linear", sampler="ddim", steps=steps, seed=0, n=n):
            if every_step:
                imaging.display(step.x_t)
        imaging.display(step.x_t)
    return run


COLD_COMPILE = """
import sys, time, torch, engine
torch.set_num_threads(int(sys.argv[1]))
model = engine.load_model(sys.argv[2])
model.net = torch.compile(model.net, dynamic=False)
x, a = torch.randn(1, *model.data_shape), torch.full((1,), 0.5, dtype=torch.float64)
t0 = time.perf_counter()
with torch.no_grad():
    model.eps(x, a)
print(time.perf_counter() - t0)
"""


def cold_compile_s(model_name: str) -> float:
    """Seconds of the first compiled call at batch 1 in a fresh process with an empty inductor cache (what a first
    run pays; later processes reuse the on-disk cache)."""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", COLD_COMPILE, str(torch.get_num_threads()), model_name],
                             cwd=ROOT, env=dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache), capture_output=True,
                             text=True, check=True)
    return float(out.stdout.split()[-1])


WAIT_POLICY_RUN = """
import sys, time, torch, engine
model = engine.load_model(sys.argv[1])
steps, n = int(sys.argv[2]), int(sys.argv[3])
engine.sample(model, schedule="linear", sampler="ddim", steps=2, seed=0, n=n)
t0 = time.perf_counter()
engine.sample(model, schedule="linear", sampler="ddim", steps=steps, seed=0, n=n)
print(time.perf_counter() - t0, torch.get_num_threads())
"""
# keeps one core busy; Linux kills it when the process that started it ends (prctl PR_SET_PDEATHSIG, SIGKILL), so
# a killed benchmark leaves no spinner behind
SPINNER = ("import ctypes, signal\ntry:\n    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\nexcept (OSError, AttributeError):"
           "\n    pass\nwhile True:\n    pass")
WAIT_POLICY_PREDICTION = {
    False: "0.9–1.0× on an idle machine: a sleeping thread wakes later than a spinning one",
    True: "≫ 1×: a spinning thread holds its core while its partner waits for a time slice at every parallel region",
}


def _wait_policy_run(model_name: str, steps: int, n: int, passive: bool) -> float:
    """Seconds of a DDIM run in a fresh process's main thread with one intra-op thread per core, under GNU
    OpenMP's default wait policy or ``OMP_WAIT_POLICY=PASSIVE`` (read when the runtime loads, hence a process)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count()))
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, "-c", WAIT_POLICY_RUN, model_name, str(steps), str(n)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def wait_policy_table(model_name: str, batches, reps: int, steps: int) -> tuple[Table, dict]:
    """GNU OpenMP's default wait policy (spin, then sleep) against OMP_WAIT_POLICY=PASSIVE, on the machine as it is
    and with one core kept busy by another process (training, an evaluation)."""
    table = Table(f"OpenMP wait policy ({model_name}, ddim {steps} steps in a fresh process, {os.cpu_count()} "
                  f"threads; median of {reps}, min–max)",
                  ["machine", "prediction", *(f"batch {n}: default / passive" for n in batches), "default time"])
    figures = {}
    for busy in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", SPINNER]) if busy else None
        try:
            cells, times = [], []
            for n in batches:
                run = {"default": lambda n=n: _wait_policy_run(model_name, steps, n, False),
                       "passive": lambda n=n: _wait_policy_run(model_name, steps, n, True)}
                t = interleaved(run, reps, warmup=0, self_timed=True)  # each value from a fresh process
                speed = ratio(t["default"], t["passive"])
                figures[("busy" if busy else "as is", n)] = speed.median
                cells.append(speed.fmt(".2f", "×"))
                times.append(f"batch {n}: {median(t['default']):.2f} s")
            table.add("+ one core kept busy" if busy else "as the machine is (see Machine)", WAIT_POLICY_PREDICTION[busy],
                      *cells, ", ".join(times))
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    table.note = ("speed-up = time with GNU OpenMP's default wait policy / time with OMP_WAIT_POLICY=PASSIVE; "
                  "\"+ one core kept busy\": another process also spins on one core for the whole measurement. Not "
                  "a default: on an idle machine passive waiting measured 1.5–2.3× slower (a sleeping thread wakes "
                  "late at each of a call's ~150 parallel regions); the app uses one intra-op thread per request "
                  "(next table). For scripts and the command line on a busy machine, "
                  "OMP_WAIT_POLICY=PASSIVE or OMP_NUM_THREADS=1 (README, Performance notes).")
    return table, figures


# One Generate request's handler as the app serves it: the store made by the main thread (as build_demo does), the
# handler's generator consumed by another thread (as Gradio does), timed after two untimed runs. THREADS: torch's
# intra-op threads, set first as app.py does ("default": left as torch sets them). "before": as the app was before
# its engine threads, the handler's model work in the request's thread and checkpoints loaded in the main thread.
ENGINE_THREAD_RUN = """
import functools, os, sys, time
import torch
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, os.getcwd())
import space.models
from space.context import AppContext
from space.models import ModelStore
from space.tabs.generate import Generate
name, compiled, mode, threads, steps, n = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
if threads != "default":
    torch.set_num_threads(int(threads))
if mode == "before":
    space.models.in_passing_thread = lambda fn, *args, **kwargs: fn(*args, **kwargs)
store = ModelStore(background_compile=compiled)
h = Generate(AppContext(store))
handler = functools.partial(Generate.generate.__wrapped__, h) if mode == "before" else h.generate
request = ThreadPoolExecutor(1)
run = lambda: request.submit(lambda: list(handler(model=name, schedule="cosine", sampler="ddim", steps=steps, seed=0,
                                                  n=n))).result()
run()
if compiled:
    store.load(name).net.compiled.wait()
run()
t0 = time.perf_counter()
run()
print(time.perf_counter() - t0)
"""
# (mode, intra-op threads) of each row, and its prediction, written before the rows were measured side by side
ENGINE_THREAD_ROWS = {
    "before: each request's thread, torch's default threads": (("before", "default"),
        "idle ~1.2 s (the live app: 0.9–1.2 s); busy: as idle, its workers already sleep"),
    "one engine thread, torch's default threads": (("engine", "default"),
        "idle 2–3× faster than before (one team, spinning); busy ≫ idle: a spinning partner waits for a time slice"),
    "the app: engine threads, 1 intra-op thread": (("engine", "1"),
        "idle within ~20 % of the spinning team; busy about as idle (no partner thread to wait for)"),
}


def _engine_thread_run(model_name: str, mode: str, threads: str, steps: int, n: int) -> float:
    """Seconds of the timed run of ENGINE_THREAD_RUN in a fresh process (the suite's OMP_NUM_THREADS left out: the
    rows set their own thread counts)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", ENGINE_THREAD_RUN, model_name, "1", mode, threads, str(steps),
                          str(n)], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def engine_thread_table(model_name: str, reps: int, steps: int, n: int) -> tuple[Table, dict]:
    """The /generate handler (the app's compiled network) as the app runs it against two other arrangements, on the
    machine as it is and with one core kept busy by another process; each value from a fresh process (an OpenMP
    team lasts as long as its thread, so arrangements cannot share a process)."""
    table = Table(f"Where the app's model work runs, and on how many threads ({model_name}, /generate handler, "
                  f"compiled, ddim {steps} steps, n={n}, {os.cpu_count()} cores, a fresh process per value; "
                  f"median of {reps}, min–max)", ["arrangement", "prediction", "as the machine is", "+ one core busy"])
    figures = {}
    cells: dict[str, list[str]] = {name: [] for name in ENGINE_THREAD_ROWS}
    for busy in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", SPINNER]) if busy else None
        try:
            run = {name: lambda args=args: _engine_thread_run(model_name, *args, steps, n)
                   for name, (args, _) in ENGINE_THREAD_ROWS.items()}
            t = interleaved(run, reps, warmup=0, self_timed=True)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        for name in ENGINE_THREAD_ROWS:
            figures[(name, "busy" if busy else "as is")] = median(t[name])
            cells[name].append(Spread(t[name]).fmt(".3f", " s"))
    for name, (_, prediction) in ENGINE_THREAD_ROWS.items():
        table.add(name, prediction, *cells[name])
    table.note = ("GNU OpenMP keeps a team of worker threads per thread that starts parallel work. Before, the main "
                  "thread's team (from loading the models) and each request thread's held more threads than there "
                  "are cores, and libgomp then puts idle workers to sleep after every parallel region. One lasting "
                  "team spins instead, which is fast on an idle machine and slow when another process holds a "
                  "core. The app runs each request on one of cores ÷ threads engine threads with one intra-op thread "
                  "(python app.py --threads N to change) and loads checkpoints in threads that end "
                  "(space/engine_thread.py).")
    return table, figures


def verdict(name: str, speed: dict[int, float], compile_s: dict[int, float], per_call: dict[int, float]) -> str:
    """Kept or not, and why, from the measured speed-ups (by batch)."""
    s = ", ".join(f"batch {n}: {v:.2f}×" for n, v in speed.items())
    if name.startswith("inference_mode"):
        return f"kept: engine.generate runs in inference_mode ({s}); samples never need autograd"
    if name.startswith("channels-last"):
        slow = [str(n) for n, v in speed.items() if v < 0.97]
        fast = [str(n) for n, v in speed.items() if v >= 0.97]
        if not slow:
            return f"kept: load_served's default ({s})"
        if not fast:
            return f"load_served's default, but slower at every batch measured ({s}): reconsider"
        return (f"load_served's default; not slower at batch {', '.join(fast)}, slower at batch {', '.join(slow)} "
                f"({s}): worth choosing the layout by batch size")
    if name.startswith("bfloat16"):
        if max(speed.values()) < 1.0:
            return f"not kept: slower here ({s}) and changes the samples"
        return (f"not in eager: faster at some batch sizes only ({s}), each cast a separate operator; the app's "
                "compiled graph uses it (below), where the casts fuse into their neighbours")
    if name.startswith("the same + bfloat16"):
        return (f"the app's graph where the CPU or GPU runs bfloat16 natively (load_served(background_compile=True), "
                f"precision auto; {s}); its samples' quality against float32: Section 1's evaluator table; "
                "`python app.py --precision float32` for float32")
    if name.startswith("compiled, no module guards"):
        return f"the app's graph elsewhere, and with --precision float32 ({s})"
    if name.startswith("torch.compile"):
        gains = {n: per_call[n] * (1 - 1 / speed[n]) for n in speed}  # seconds saved per call
        even = [f"batch {n}: {compile_s[n] / g:,.0f} calls" if g > 0 else f"batch {n}: never"
                for n, g in gains.items()]
        cold = (f"the first compile costs {compile_s['cold']:.0f} s with an empty cache (a fresh install or "
                "Space), and ") if "cold" in compile_s else ""
        return ("kept for the app, off the request path: " + cold + "each new process "
                "recompiles every batch size (" + " / ".join(f"{compile_s[n]:.0f} s" for n in speed) + " here with "
                "the disk cache warm), paid back after " + ", ".join(even) + " (a Generate run makes 20–1000 "
                "calls). So `python app.py` compiles each batch shape in a background thread and serves eager "
                "until it is ready (load_served(background_compile=True)); a script's load_model stays eager")
    if max(speed.values()) < 1.05:
        return f"kept: no measurable cost even at every step ({s}); the app sends at most one frame per 0.2 s"
    return (f"kept, rate-limited: the app sends at most one frame per 0.2 s (UPDATE_EVERY_S), well under this "
            f"every-step cost ({s})")


def section(model_name: str = "mnist-ddpm", batches=(1, 16), reps: int = 3, calls=None, steps: int = 20,
            cold_compile: bool = True, wait_steps: int = 10, thread_steps: int = 50, thread_n: int = 4) -> Section:
    calls = calls or {1: 20, 16: 3}
    base = engine.load_model(model_name)
    channels_last = engine.load_served(model_name)
    compiled = engine.load_model(model_name)
    compiled.net = torch.compile(compiled.net, dynamic=False)
    served = {p: engine.load_served(model_name, background_compile=True, precision=p) for p in ("float32", "bfloat16")}
    table = Table(f"Levers against eager float32 under no_grad ({model_name}, {threads()}; "
                  f"median of {reps}, min–max)",
                  ["lever", "prediction", *(f"batch {n}" for n in batches), "max |Δ ε̂|", "kept?"])
    rows = {"inference_mode instead of no_grad": (base, torch.inference_mode),
            "channels-last (load_served default)": (channels_last, torch.no_grad),
            "bfloat16 autocast (CPU)": (base, bf16_autocast),
            "torch.compile": (compiled, torch.no_grad),
            "compiled, no module guards, C++ wrapper (the app's float32 graph)": (served["float32"], torch.no_grad),
            "the same + bfloat16 autocast (the app's graph where bfloat16 is native)":
                (served["bfloat16"], torch.no_grad)}
    compile_s, per_call, figures = {}, {}, {}
    for n in batches:  # compile first, outside the timings
        t0 = time.perf_counter()
        _output(compiled, n)
        compile_s[n] = time.perf_counter() - t0
    for model in served.values():  # queue every batch shape (under no_grad, as timed) and wait for the graphs
        for n in batches:
            model.net.compiled.max_batch = max(model.net.compiled.max_batch, n)
            _output(model, n)
        model.net.compiled.wait()
    if cold_compile:
        compile_s["cold"] = cold_compile_s(model_name)
    for name, (model, context) in rows.items():
        speed, cells = {}, []
        for n in batches:
            t = interleaved({"base": _calls(base, n, calls[n]), "lever": _calls(model, n, calls[n], context)}, reps)
            r = ratio(t["base"], t["lever"])
            speed[n], per_call[n] = r.median, median(t["base"]) / calls[n]
            cells.append(r.fmt(".2f", "×"))
        diff = max((_output(model, n, context) - _output(base, n)).abs().max().item() for n in batches)
        table.add(name, PREDICTIONS[name], *cells, f"{diff:.1e}", verdict(name, speed, compile_s, per_call))
        figures[name] = speed
    name = "previews only at the end (not every step)"
    speed, cells = {}, []
    for n in batches:
        t = interleaved({"every": _previews(base, steps, n, True), "end": _previews(base, steps, n, False)}, reps)
        r = ratio(t["every"], t["end"])
        speed[n] = r.median
        cells.append(r.fmt(".2f", "×"))
    table.add(name, PREDICTIONS[name], *cells, "0 (same run)", verdict(name, speed, compile_s, per_call))
    figures[name] = speed
    sizes = ", ".join(f"{calls[n]} calls at batch {n}" for n in batches)
    table.note = (f"speed-up = baseline time / lever time ({sizes}"
                  f"; previews: engine.generate ddim {steps} steps). torch.compile's first call: "
                  + ", ".join(f"batch {n} {compile_s[n]:.1f} s" for n in batches)
                  + " in this process (inductor's on-disk cache as earlier runs left it)"
                  + (f"; {compile_s['cold']:.1f} s at batch 1 in a fresh process with an empty cache"
                     if "cold" in compile_s else "") + ".")
    figures["compile_s"] = compile_s
    wait_table, figures["wait_policy"] = wait_policy_table(model_name, batches, reps, wait_steps)
    thread_table, figures["engine_thread"] = engine_thread_table(model_name, reps, thread_steps, thread_n)
    return Section("Levers", [table, wait_table, thread_table], figures=figures)
