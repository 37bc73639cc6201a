"""Section 2: the engine's arithmetic rate against this machine's matrix-multiply rate.

Achieved rate = FLOPs per network call (``torch.utils.flop_counter.FlopCounterMode``: convolutions, matrix
products and attention; the elementwise work is not counted) × NFE ÷ the wall time of an ``engine.generate`` DDIM
run. The ceilings are ``torch.mm`` of two square matrices in float32 and bfloat16 at the same thread count, timed
in the same loop as the runs (interleaved), so load falls on both. The same runs are timed on the network as the app
serves it (``torch.compile``, bfloat16 autocast on a CPU that runs bfloat16 natively; engine/serving.py), here
compiled up to the largest batch (the app itself compiles batches up to 16 and runs larger ones eager).
``torch.profiler`` then names the operators that take the eager network's time.

The U-Net's size (engine/unet.py), measured by hand on the 2-core CPU in eager float32 at batch 1 on one thread: the
default 16 · (1, 2, 4) channels (0.72 M parameters) ~9 ms per call, 32 · (1, 2, 2) with two ResBlocks (1.74 M)
~19 ms; a small convolution costs ~0.1 ms, mostly per-operator overhead.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import engine

from .common import Section, Spread, Table, interleaved, threads
from .sampler_overhead import run_generate


def flops_per_call(model, n: int) -> int:
    """FLOPs of one ``model.eps`` call at batch ``n``."""
    x, a = torch.randn(n, *model.data_shape), torch.full((n,), 0.5, dtype=torch.float64)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model.eps(x, a)
    return fc.get_total_flops()


def matmul(size: int, dtype: torch.dtype, k: int):
    """A function doing ``k`` products of two ``size``² matrices, and the FLOPs it does."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)

    def fn():
        for _ in range(k):
            torch.mm(a, b)

    return fn, 2 * size**3 * k


def top_ops(model, n: int, calls: int | None = None, k: int = 5) -> list[tuple[str, float, int]]:
    """(operator, share of self CPU time, calls) of the ``k`` most expensive operators in ``calls`` network calls
    (default: enough to average out the moments another process holds the core)."""
    calls = calls or max(3, 20 // n)
    x, a = torch.randn(n, *model.data_shape), torch.full((n,), 0.5, dtype=torch.float64)
    with torch.inference_mode():
        model.eps(x, a)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model.eps(x, a)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total, e.count // calls) for e in events[:k]]


def section(model_name: str = "mnist-ddpm", batches=(1, 16, 64), steps: int = 20, reps: int = 3,
            mm_size: int = 1024, mm_k: dict | None = None, profile_batches=(1, 16, 64)) -> Section:
    """``mm_k``: products per timing, by dtype (bfloat16 is ~100× slower than float32 on a CPU without native
    bfloat16 instructions)."""
    model = engine.load_model(model_name)
    mm_k = mm_k or {torch.float32: 8, torch.bfloat16: 1}
    fns, flops = {}, {}
    for name, dtype in (("mm float32", torch.float32), ("mm bfloat16", torch.bfloat16)):
        fns[name], flops[name] = matmul(mm_size, dtype, mm_k[dtype])
    served = engine.load_served(model_name, background_compile=True)
    served.net.compiled.max_batch = max(batches)
    nfe = {n: run_generate(model, "ddim", steps, n).nfe for n in batches}
    for n in batches:
        run_generate(served, "ddim", 1, n)  # queues the shape's compile
    served.net.compiled.wait()
    for n in batches:
        fns[f"batch {n}"] = lambda n=n: run_generate(model, "ddim", steps, n)
        flops[f"batch {n}"] = flops_per_call(model, n) * nfe[n]
    for n in batches:
        fns[f"app, batch {n}"] = lambda n=n: run_generate(served, "ddim", steps, n)
        flops[f"app, batch {n}"] = flops[f"batch {n}"]
    t = interleaved(fns, reps)
    rate = {k: Spread([flops[k] / s / 1e9 for s in t[k]]) for k in fns}
    ceil = {"float32": rate["mm float32"].median, "bfloat16": rate["mm bfloat16"].median}

    table = Table(f"Arithmetic rate ({model_name}, engine.generate ddim {steps} steps, {threads()}; "
                  f"median of {reps}, min–max)",
                  ["workload", "GFLOP per call", "GFLOP/s", "% of fp32 mm", "% of bf16 mm"])
    for k in fns:
        if k.startswith("mm"):
            table.add(f"{k} {mm_size}² (ceiling)", "—", rate[k].fmt(".1f"), "—", "—")
        else:
            n = int(k.split()[-1])
            label = f"{k.replace('app, ', '')}, " + (f"app's graph (compiled, {served.net.compiled.precision_for(n)})"
                                                     if k.startswith("app") else "load_model default (eager float32)")
            table.add(label, f"{flops[k] / nfe[n] / 1e9:.3f}", rate[k].fmt(".1f"),
                      f"{rate[k].median / ceil['float32']:.0%}", f"{rate[k].median / ceil['bfloat16']:.0%}")
    table.note = ("GFLOP counts convolutions, matrix products and attention (FlopCounterMode; one multiply-add = "
                  "2 FLOPs); the mm rows are the ceilings, timed interleaved with the runs. The app's graph rows do "
                  "the same FLOPs per call; a bfloat16 graph's column is the bfloat16 one.")
    prof = Table("Where the network's time goes (torch.profiler, self CPU time, load_model default, "
                 f"{threads()})",
                 ["batch", "operator", "share", "calls per network call"])
    tops = {}
    for n in profile_batches:
        tops[n] = top_ops(model, n)
        for op, share, count in tops[n]:
            prof.add(n, op, f"{share:.0%}", count)
    figures = {"ceiling": ceil, "rate": {n: rate[f"batch {n}"] for n in batches}, "top_ops": tops,
               "app_rate": {n: rate[f"app, batch {n}"] for n in batches},
               "precision": {n: served.net.compiled.precision_for(n) for n in batches},
               "gflop_per_call": {n: flops[f"batch {n}"] / nfe[n] / 1e9 for n in batches}}
    speed = ceil["bfloat16"] / ceil["float32"]
    text = [f"bfloat16 mm runs at {speed:.0%} of float32's rate on this machine" + (
        ": the CPU runs bfloat16 natively (see Machine), and the bfloat16 ceiling is the higher one." if speed > 1
        else ", so here the bfloat16 ceiling is the lower one (whether the CPU has native bfloat16 instructions: "
             "see Machine); the float32 column is the meaningful one.")]
    return Section("2. Against the arithmetic ceiling", [table, prof], text, figures)
