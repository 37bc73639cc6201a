"""Section 6: long evaluation jobs (`python -m engine eval`, each cell of `report`) eager against compiled.

One eval-sized job, `evaluate_images` with the settings below, is run three ways from the same seeds: the network
as `load_model` gives it (eager float32), and through `evaluate.compiled_for_run`'s graphs in float32 and in
bfloat16. A compiled job's time is its compile (every batch shape of the job, done up front) plus its sampling; the
table gives both, and the speed-up of the whole job and of its sampling alone over eager. The three sides take
turns (the order reversed on every other repetition), the compile is redone in each repetition (inductor's on-disk
cache warm after the first, as on a machine that has run one job before). Then the evaluator scores each side's
samples (FD against the training split, with its 95 % bootstrap interval, and FD / real held-out images): a
bfloat16 FD inside float32's interval is no measured change of quality. From these, the job size from which
compiling pays (`evaluate.COMPILE_FROM`, in images × network evaluations) is the compile time over the time saved
per image-evaluation.
"""
from __future__ import annotations

import time

import torch

import engine
from engine import evaluate
from engine.classifier import load_classifier
from engine.samplers import SAMPLERS

from .common import Section, Spread, Table, median, ratio, threads

TITLE = "6. Long evaluation jobs: eager vs compiled"


def section(model_name: str = "mnist-ddpm", reps: int = 1, n: int = 500, sampler: str = "ddim",
            schedule: str = "linear", steps: int = 50, batch: int = 250) -> Section:
    model = engine.load_model(model_name)
    dataset = model.card["data"]["dataset"]
    clf = load_classifier(f"{dataset}-classifier")
    run = dict(schedule=schedule, sampler=sampler, spacing=SAMPLERS[sampler].spacing)
    sizes = [min(batch, n - s) for s in range(0, n, batch)]
    sides = ("eager float32", "compiled float32", "compiled bfloat16")
    compile_s = {s: [] for s in sides[1:]}
    sample_s = {s: [] for s in sides}
    results = {}
    for r in range(reps):
        for side in sides if r % 2 == 0 else sides[::-1]:
            served, how = model, side
            if side != "eager float32":
                t0 = time.perf_counter()
                served, how = evaluate.compiled_for_run(model, batches=sizes, precision=side.split()[1], **run)
                compile_s[side].append(time.perf_counter() - t0)
            result = evaluate.evaluate_images(served, clf, dataset, n=n, steps=steps, batch=batch, compile="never",
                                              **run)
            sample_s[side].append(result["seconds"])
            results[side] = result
            if how != side:
                raise RuntimeError(f"{side} ran as {how}: no compiled graph here")
    nfe = SAMPLERS[sampler].nfe(steps) * n
    eager = sample_s["eager float32"]
    table = Table(f"{model_name}, {sampler} {schedule} {steps} steps, n = {n} in batches of {batch} ({nfe:,} "
                  f"image-evaluations; {threads()}, median of {reps}, min–max)",
                  ["network", "compile s", "sampling s", "job s", "job speed-up", "sampling speed-up"])
    figures = {"nfe": nfe}
    for side in sides:
        c = compile_s.get(side, [0.0] * reps)
        job = [a + b for a, b in zip(c, sample_s[side])]
        table.add(side, f"{median(c):.1f}" if side in compile_s else "—", Spread(sample_s[side]).fmt(".1f"),
                  Spread(job).fmt(".1f"), ratio(eager, job).fmt(".2f", "×"), ratio(eager, sample_s[side]).fmt(".2f", "×"))
        saved = (median(eager) - median(sample_s[side])) / nfe  # seconds saved per image-evaluation
        figures[side] = {"job": ratio(eager, job), "sampling": ratio(eager, sample_s[side]), "compile": median(c),
                         "pays_from": median(c) / saved if side in compile_s and saved > 0 else None}
    quality = Table(f"Quality of each side's samples (evaluator, n = {n}, same seeds; 95 % bootstrap intervals)",
                    ["network", "FD", "FD / real", "KID", "confident"])
    for side in sides:
        q = results[side]
        quality.add(side, f"{q['fd']:.3f} [{q['fd_ci'][0]:.3f}, {q['fd_ci'][1]:.3f}]",
                    f"{q['fd_ratio']:.2f} [{q['fd_ratio_ci'][0]:.2f}, {q['fd_ratio_ci'][1]:.2f}]",
                    f"{q['kid']:.4f} ± {q['kid_std']:.4f}", f"{q['confident']:.1%}")
        figures[side]["fd"], figures[side]["fd_ci"] = q["fd"], q["fd_ci"]
    base = results["eager float32"]
    within = [s for s in sides[1:] if base["fd_ci"][0] <= figures[s]["fd"] <= base["fd_ci"][1]]
    quality.note = ("A compiled side whose FD lies inside eager float32's interval: " +
                    (", ".join(within) if within else "none") + ".")
    figures["within"] = within
    return Section(TITLE, tables=[table, quality], figures=figures)
