"""How much time the samplers' bookkeeping adds to the network's own time.

For each sampler: time ``engine.generate`` to the end, and time the bare network calls it made (the same number of
``model.eps`` calls on inputs of the same shape), interleaved, several repetitions; report the median overhead
(generate / bare − 1) with its spread. Run: ``python -m bench.sampler_overhead [--model mnist-ddpm] [--n 1]``.
"""
import argparse

import torch

import engine

from .common import Section, Spread, Table, interleaved, median, ratio, threads


def bare_network(model, n_calls: int, n: int, alpha_bars: list[float]) -> None:
    """``n_calls`` calls of ``model.eps`` at batch ``n``, cycling through ``alpha_bars``, in inference mode."""
    x = torch.randn(n, *model.data_shape)
    with torch.inference_mode():
        for i in range(n_calls):
            model.eps(x, torch.full((n,), alpha_bars[i % len(alpha_bars)], dtype=torch.float64))


def run_generate(model, sampler: str, steps: int, n: int, schedule: str = "linear", **options):
    """``engine.generate`` to the end; returns the last Step."""
    for step in engine.generate(model, schedule=schedule, sampler=sampler, steps=steps, seed=0, n=n, **options):
        pass
    return step


def section(model_name: str = "mnist-ddpm", n: int = 1, steps: int = 20, reps: int = 5) -> Section:
    model = engine.load_model(model_name)
    levels = [a for _, a in engine.levels_for(engine.get_schedule("linear"), steps)]
    table = Table(f"Sampler overhead: {model_name}, batch {n}, {steps} steps, {threads()}, "
                  f"median of {reps} (min–max)", ["sampler", "NFE", "generate s", "network s", "overhead"])
    for sampler in engine.SAMPLERS:
        nfe = run_generate(model, sampler, steps, n).nfe
        t = interleaved({"generate": lambda: run_generate(model, sampler, steps, n),
                         "network": lambda: bare_network(model, nfe, n, levels)}, reps, warmup=0)
        over = Spread([v - 1 for v in ratio(t["generate"], t["network"]).values])
        table.add(sampler, nfe, f"{median(t['generate']):.3f}", f"{median(t['network']):.3f}", over.fmt("+.1%"))
    return Section("Sampler overhead", [table])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist-ddpm")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    print(section(args.model, args.n, args.steps, args.reps).console())


if __name__ == "__main__":
    main()
