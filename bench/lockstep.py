"""Section 3: the Compare tab's lock-step batching against the same panels run one after another.

Batched: ``engine.compare(model, panels, seed, n)`` iterated to the end (one network call serves every panel that
needs ε̂ at that moment). Sequential: ``engine.sample`` of each panel in turn, same seed. Two sets: the Compare
tab's six default panels (space/tabs/compare.py PANEL_DEFAULTS: mixed samplers and NFE, so batches empty as panels finish),
and six schedules with DDIM at 50 steps each (the same NFE per round: batches stay full). Each on two networks:
``load_model`` (eager float32) and the network as the app serves it (``torch.compile`` in the background,
bfloat16 autocast on a CPU that runs it natively; timed once every batch shape is compiled), which is what the
Compare tab runs.
"""
from __future__ import annotations

import engine
from engine.compare import Comparison, Panel, compare

from .common import Section, Table, interleaved, median, ratio, threads

# space/tabs/compare.py PANEL_DEFAULTS, with the spacing the UI uses for DPM-Solver++
UI_PANELS = [Panel("cosine", "ddim", 50), Panel("linear", "ddim", 50), Panel("karras", "ode", 25),
             Panel("cosine", "dpm-solver++", 20, spacing="trailing"), Panel("linear", "ddpm", 100),
             Panel("ve-geometric", "pc", 50)]
SIX_SCHEDULES = [Panel(s, "ddim", 50) for s in ("linear", "quadratic", "cosine", "sigmoid", "ve-geometric", "karras")]
SETS = {"Compare tab defaults (6 panels)": UI_PANELS, "6 schedules, ddim 50 steps each": SIX_SCHEDULES}


def scaled(panels: list[Panel], steps_scale: float) -> list[Panel]:
    return [Panel(p.schedule, p.sampler, max(2, round(p.steps * steps_scale)), p.spacing, p.options) for p in panels]


def batched(model, panels: list[Panel], n: int = 1) -> Comparison:
    run = compare(model, panels, seed=0, n=n)
    for _ in run:
        pass
    return run


def sequential(model, panels: list[Panel], n: int = 1) -> int:
    """Each panel by ``engine.generate`` in turn; returns the total NFE."""
    nfe = 0
    for p in panels:
        for step in engine.generate(model, schedule=p.schedule, sampler=p.sampler, steps=p.steps, seed=0, n=n,
                                    spacing=p.spacing, **p.options):
            pass
        nfe += step.nfe
    return nfe


def section(model_name: str = "mnist-ddpm", reps: int = 3, steps_scale: float = 1.0, n: int = 1) -> Section:
    model = engine.load_model(model_name)
    served = engine.load_served(model_name, background_compile=True)
    networks = {"load_model default (eager float32)": model,
                f"app's network (compiled, {served.net.compiled.precision})": served}
    table = Table(f"Lock-step batching vs one panel after another ({model_name}, n={n}, "
                  f"{threads()}; median of {reps}, min–max)",
                  ["set", "network", "panels", "NFE (sequential)", "batched calls", "rows per call", "sequential s",
                   "batched s", "speed-up"])
    figures = {}
    for name, panels in SETS.items():
        panels = scaled(panels, steps_scale)
        for label, net in networks.items():
            run, nfe = batched(net, panels, n), sequential(net, panels, n)  # also the warm-up (queues the compiles)
            if net is served:
                served.net.compiled.wait()
            t = interleaved({"sequential": lambda: sequential(net, panels, n),
                             "batched": lambda: batched(net, panels, n)}, reps, warmup=0)
            speed = ratio(t["sequential"], t["batched"])
            table.add(name, label, len(panels), nfe, run.batches, f"{run.batch_rows / run.batches / n:.2f}",
                      f"{median(t['sequential']):.2f}", f"{median(t['batched']):.2f}", speed.fmt(".2f", "×"))
            figures[name, label] = {"speedup": speed, "batches": run.batches, "nfe": nfe,
                                    "rows": run.batch_rows / run.batches, "sequential": median(t["sequential"]),
                                    "batched": median(t["batched"]), "served": net is served}
    table.note = ("speed-up = sequential time / batched time per repetition. rows per call = panels served per "
                  "batched network call on average.")
    return Section("3. Lock-step comparison", [table], figures=figures)
