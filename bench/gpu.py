"""Section 5: on a CUDA GPU, the network eager vs ``torch.compile`` vs a captured CUDA graph; images/s at batch 1024.

Each timing is ``calls`` network calls on fixed inputs followed by ``torch.cuda.synchronize()``. The CUDA graph is
captured once per batch size on static input tensors (a real sampler would copy each step's x and log-SNR into
them before ``replay()``). Without CUDA the section is skipped.
"""
from __future__ import annotations

import time

import torch

import engine

from .common import Section, Table, interleaved, median, ratio
from .sampler_overhead import run_generate

TITLE = "5. GPU"


def cuda_graph(net, x: torch.Tensor, lam: torch.Tensor) -> torch.cuda.CUDAGraph:
    """One ``net(x, lam)`` captured as a CUDA graph on these (static) tensors, after warm-up on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            net(x, lam)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        net(x, lam)
    return graph


def calls_of(fn, calls: int):
    def run():
        with torch.no_grad():
            for _ in range(calls):
                fn()
        torch.cuda.synchronize()
    return run


def section(model_name: str = "mnist-ddpm", batches=(1, 1024), reps: int = 5, calls: int = 50,
            steps: int = 50) -> Section:
    if not torch.cuda.is_available():
        return Section(TITLE, skipped="no CUDA device in this run")
    dev = torch.device("cuda")
    plain = engine.load_model(model_name, device=dev)
    net = plain.net
    compiled = torch.compile(net, dynamic=False)
    table = Table(f"{torch.cuda.get_device_name()}: {calls} network calls ({model_name}, float32; median of {reps}, "
                  "min–max)", ["batch", "eager ms/call", "compiled ms/call", "graph ms/call", "compiled speed-up",
                               "graph speed-up", "compile s"])
    figures = {}
    for n in batches:
        x = torch.randn(n, *plain.data_shape, device=dev)
        lam = torch.zeros(n, device=dev)
        t0 = time.perf_counter()
        calls_of(lambda: compiled(x, lam), 1)()
        compile_s = time.perf_counter() - t0
        graph = cuda_graph(net, x, lam)
        t = interleaved({"eager": calls_of(lambda: net(x, lam), calls),
                         "compiled": calls_of(lambda: compiled(x, lam), calls),
                         "graph": calls_of(graph.replay, calls)}, reps)
        comp, graphed = ratio(t["eager"], t["compiled"]), ratio(t["eager"], t["graph"])
        table.add(n, *(f"{median(t[k]) / calls * 1e3:.3f}" for k in ("eager", "compiled", "graph")),
                  comp.fmt(".2f", "×"), graphed.fmt(".2f", "×"), f"{compile_s:.1f}")
        figures[n] = {"compiled": comp, "graph": graphed}
    big = max(batches)
    model = engine.load_model(model_name, device=dev)

    def ddim_run():
        run_generate(model, "ddim", steps, big)
        torch.cuda.synchronize()

    run_s = interleaved({"ddim": ddim_run}, reps)["ddim"]
    figures["images_per_s"] = big / median(run_s)
    text = (f"engine.generate, ddim {steps} steps at batch {big} (load_model default, eager): "
            f"{figures['images_per_s']:,.0f} images/s (median of {reps}).")
    return Section(TITLE, [table], [text], figures)
