"""How much time the samplers' bookkeeping adds to the network's own time.

For each sampler: time ``engine.generate`` to the end, and time the bare network calls it made (the same number of
``model.eps`` calls on inputs of the same shape), interleaved, several repetitions; report the median overhead
(generate / bare − 1) with its spread. Run: ``python bench/sampler_overhead.py [--model mnist-ddpm] [--n 1]``.
"""
import argparse
import statistics
import time

import torch

import engine


def bare_network(model, n_calls: int, n: int, alpha_bars: list[float]) -> float:
    x = torch.randn(n, *model.data_shape)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(n_calls):
            model.eps(x, torch.full((n,), alpha_bars[i % len(alpha_bars)], dtype=torch.float64))
    return time.perf_counter() - t0


def run_generate(model, sampler: str, steps: int, n: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    for step in engine.generate(model, schedule="linear", sampler=sampler, steps=steps, seed=0, n=n):
        pass
    return time.perf_counter() - t0, step.nfe


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist-ddpm")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    model = engine.load_model(args.model)
    levels = [a for _, a in engine.levels_for(engine.get_schedule("linear"), args.steps)]
    print(f"model {args.model}, batch {args.n}, {args.steps} steps, {torch.get_num_threads()} threads, median of {args.reps}")
    print(f"{'sampler':16s} {'NFE':>5s} {'generate s':>11s} {'network s':>10s} {'overhead':>9s} {'spread':>14s}")
    for sampler in engine.SAMPLERS:
        run_generate(model, sampler, 2, args.n)  # warm-up
        ratios, gen_t, net_t = [], [], []
        for _ in range(args.reps):
            g, nfe = run_generate(model, sampler, args.steps, args.n)
            b = bare_network(model, nfe, args.n, levels)
            ratios.append(g / b - 1)
            gen_t.append(g)
            net_t.append(b)
        print(f"{sampler:16s} {nfe:5d} {statistics.median(gen_t):11.3f} {statistics.median(net_t):10.3f} "
              f"{statistics.median(ratios):+9.1%} {min(ratios):+6.1%}..{max(ratios):+6.1%}")


if __name__ == "__main__":
    main()
