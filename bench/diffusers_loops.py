"""Section 1: diffusers' scheduler loops against ``engine.generate``, on the same network.

The diffusers side is what a diffusers user would write: our mnist-ddpm network loaded plain (eager float32,
``load_model``), a scheduler configured for it (v-prediction, diffusers' default "linear" betas,
which our "linear" schedule equals), ``torch.no_grad()``, and the network fed the log-SNR log(ᾱ_t / (1 − ᾱ_t)) of
each timestep. The engine side is ``engine.sample`` with its defaults on the same network;
a third side runs the model as the app serves it, ``load_served(name, background_compile=True)``, timed warm (after
its background ``torch.compile`` of that batch shape has finished, as on a server that has answered one request).
On a machine that runs bfloat16 natively the app's graph computes in bfloat16 from batch 2 on, float32 at batch 1
where bfloat16 measured no faster (``precision="auto"``, engine/serving.py). Both start from the same x_T (the engine's draw for the seed); where the algorithms coincide
(DDIM η = 0 with leading spacing and set_alpha_to_one; DPM-Solver++(2M) with trailing spacing and a zero final sigma)
the engine's float32 samples must agree with diffusers', and the largest difference is reported; the app's are
compared by their mean difference and, below, by the evaluator (FD, n = 500, against float32 eager from the same
seeds: "unchanged quality" is FD within 5 %). DDPM draws its noise in another order: timing only.
"""
from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

import engine

from engine.classifier import load_classifier
from engine.evaluate import evaluate_images

from .common import Section, Table, interleaved, median, ratio, threads
from .sampler_overhead import run_generate

COMMON = dict(num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction")
# label, scheduler, engine sampler and options, steps, deterministic (samples comparable)
CASES = [
    ("DDIM η=0", lambda: DDIMScheduler(**COMMON, clip_sample=False), "ddim", {}, 50, True),
    ("DPM-Solver++ 2M", lambda: DPMSolverMultistepScheduler(
        **COMMON, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing",
        final_sigmas_type="zero"), "dpm-solver++", {"spacing": "trailing"}, 50, True),
    ("DDPM", lambda: DDPMScheduler(**COMMON, clip_sample=False), "ddpm", {}, 100, False),
]
SEED = 0


def diffusers_loop(net, scheduler, steps: int, x_T: torch.Tensor, generator=None) -> torch.Tensor:
    """The usual diffusers sampling loop around ``net(x, log_snr)``."""
    scheduler.set_timesteps(steps)
    x = x_T * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            a = scheduler.alphas_cumprod[t]
            log_snr = torch.log(a / (1 - a)).expand(x.shape[0])
            v = net(scheduler.scale_model_input(x, t), log_snr)
            x = scheduler.step(v, t, x, generator=generator).prev_sample
    return x


def network_only(net, calls: int, x_T: torch.Tensor) -> None:
    """The loop's floor: the same number of bare network calls under ``torch.no_grad()``."""
    lam = torch.zeros(x_T.shape[0])
    with torch.no_grad():
        for _ in range(calls):
            net(x_T, lam)


def quality(plain, served, classifier: str, dataset: str, cases, n: int, batch: int) -> tuple[Table, dict]:
    """The evaluator's figures for the app's network against float32 eager, same seeds; ``batch`` at most the
    compiled shapes' limit, so the app side runs its compiled graph."""
    clf = load_classifier(classifier)
    precision = served.net.compiled.precision_for(batch)
    for rows in {batch, n % batch} - {0}:  # every batch shape of the runs compiled first
        engine.sample(served, schedule="cosine", sampler="ddim", steps=1, seed=0, n=rows)
    served.net.compiled.wait()
    table = Table(f"Sample quality: the app's network ({precision}, compiled) against float32 eager (evaluator, "
                  f"n={n}, batches of {batch}, same seeds)",
                  ["sampler", "schedule", "steps", "FD float32", f"FD {precision}", "FD ratio", "confident float32",
                   f"confident {precision}"])
    figures = {}
    for sampler, schedule, steps in cases:
        run = dict(sampler=sampler, schedule=schedule, steps=steps, n=n, batch=batch)
        ref = evaluate_images(plain, clf, dataset, **run)
        app = evaluate_images(served, clf, dataset, **run)
        r = app["fd"] / ref["fd"]
        table.add(sampler, schedule, steps, f"{ref['fd']:.2f}", f"{app['fd']:.2f}", f"{r:.3f}",
                  f"{ref['confident']:.1%}", f"{app['confident']:.1%}")
        figures[(sampler, schedule, steps)] = r
    table.note = (f"FD against {n} held-out real images in the classifier's feature space (engine/evaluate.py; the "
                  "real-vs-real baseline is in docs/RESULTS.md). FD ratio = app / float32: within 0.95–1.05 is "
                  "the target's \"unchanged quality\".")
    return table, figures


def section(model_name: str = "mnist-ddpm", batches=(1, 16), reps: int | dict = 5, steps_scale: float = 1.0,
            floor_batches=(1,), quality_n: int = 500, quality_cases=(("ddim", "cosine", 50),
                                                                     ("dpm-solver++", "cosine", 20))) -> Section:
    """``reps``: repetitions, or a dict of them by batch size. ``quality_n``: images per evaluator run (0: none)."""
    reps = reps if isinstance(reps, dict) else {n: reps for n in batches}
    plain = engine.load_model(model_name)
    served = engine.load_served(model_name, background_compile=True)
    precision = served.net.compiled.precision
    table = Table(f"diffusers loops vs engine.generate ({model_name}, {threads()}; "
                  "median of " + " / ".join(f"{reps[n]} at batch {n}" for n in batches) + ", min–max)",
                  ["method", "batch", "steps", "diffusers s", "engine s", "speed-up", "app s",
                   "app speed-up", "net-only s", "engine max |Δ|", "app mean |Δ|"])
    figures = {}
    for n in batches:
        x_T = torch.randn((n, *plain.data_shape), generator=torch.Generator().manual_seed(SEED))
        for label, make, sampler, opts, steps, deterministic in CASES:
            steps = max(2, round(steps * steps_scale))
            sch = make()
            gen = torch.Generator().manual_seed(SEED)
            fns = {"diffusers": lambda: diffusers_loop(plain.net, sch, steps, x_T, gen),
                   "engine": lambda: run_generate(plain, sampler, steps, n, **opts),
                   "app": lambda: run_generate(served, sampler, steps, n, **opts)}
            if n in floor_batches:
                fns["network"] = lambda: network_only(plain.net, steps, x_T)
            # one run of each side first: the warm-up (the app side's compile), and the samples to compare
            theirs = diffusers_loop(plain.net, sch, steps, x_T, gen)
            mine = run_generate(plain, sampler, steps, n, **opts).x_t
            run_generate(served, sampler, steps, n, **opts)
            served.net.compiled.wait()
            compiled = run_generate(served, sampler, steps, n, **opts).x_t
            diff = f"{(theirs - mine).abs().max().item():.1e}" if deterministic else "— (stochastic)"
            # in grey levels (255 per unit of [0, 1], i.e. 127.5 per unit of [−1, 1])
            app_diff = f"{(theirs - compiled).abs().mean().item() * 127.5:.2f} levels" if deterministic else "—"
            t = interleaved(fns, reps[n], warmup=0)
            speed, app = ratio(t["diffusers"], t["engine"]), ratio(t["diffusers"], t["app"])
            floor = f"{median(t['network']):.3f}" if "network" in t else "—"
            table.add(label, n, steps, f"{median(t['diffusers']):.3f}", f"{median(t['engine']):.3f}",
                      speed.fmt(".2f", "×"), f"{median(t['app']):.3f}", app.fmt(".2f", "×"), floor, diff, app_diff)
            figures[(label, n)] = {"speedup": speed, "app": app, "diff": diff,
                                   "network": median(t["network"]) if "network" in t else None,
                                   "diffusers": median(t["diffusers"]), "engine": median(t["engine"])}
    failed = f" Background compile FAILED here ({served.net.compiled.failed!r}): the app side ran eager." \
        if served.net.compiled.failed else ""
    table.note = ("speed-up = diffusers time / engine time per repetition; app speed-up = diffusers time / the time "
                  f"of the model as the app serves it (background torch.compile, warm; {precision}). net-only = the "
                  "same number of bare eager network calls (the diffusers loop's floor). engine max |Δ| = largest "
                  "difference between diffusers' sample and the engine's (pixels in [−1, 1]); app mean |Δ| = mean "
                  "difference between diffusers' sample and the app's, in grey levels of 255." + failed)
    tables = [table]
    if quality_n:
        dataset = "mnist" if model_name.startswith("mnist") else "fashion-mnist"
        q, figures["quality"] = quality(plain, served, f"{dataset}-classifier", dataset, quality_cases, quality_n,
                                        served.net.compiled.max_batch)
        tables.append(q)
    figures["precision"] = precision
    return Section("1. Against diffusers' scheduler loops", tables, figures=figures)
