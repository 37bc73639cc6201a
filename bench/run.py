"""The benchmark suite: ``python -m bench [--quick] [--only SECTION,...] [--out docs/PERFORMANCE.md]``.

Runs the sections (diffusers loops, arithmetic ceiling, lock-step batching, app overhead, GPU, levers, toy
training, long evaluation jobs, the distilled model's one step), prints their tables and writes them, with the targets (met / missed) and the machine's facts, to a
Markdown page.
``--quick`` uses tiny step counts and one repetition: a smoke test of the code, not a measurement.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch

from .common import Section, Table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "docs", "PERFORMANCE.md")

# settings of each section: full run (a contended 2-core machine: ~12 minutes) and --quick
FULL = {
    "diffusers": dict(batches=(1, 16), reps={1: 9, 16: 3}),  # batch 1 runs are short and their ratios noisy
    "ceiling": dict(batches=(1, 16, 64), steps=10, reps=3),
    "lockstep": dict(reps=3),
    "app": dict(reps=5, steps=50, cold_reps=2, download_reps=1),
    "gpu": dict(batches=(1, 1024), reps=5),
    "levers": dict(batches=(1, 16), reps=3),
    "toytrain": dict(every=50),
    "evaljobs": dict(reps=2),
    "fast": dict(reps=20, browser_reps=5),
}
QUICK = {
    "diffusers": dict(batches=(1, 2), reps=1, steps_scale=0.04, quality_n=20, quality_cases=(("ddim", "cosine", 2),)),
    "ceiling": dict(batches=(1, 2), steps=2, reps=1, mm_size=128, profile_batches=(1,)),
    "lockstep": dict(reps=1, steps_scale=0.04),
    "app": dict(reps=1, steps=3, cold_reps=1, download_reps=1, more=(("Generate's defaults", dict(n=4), 1),)),
    "gpu": dict(batches=(1, 8), reps=1, calls=3, steps=3),
    "levers": dict(batches=(1, 2), reps=1, calls={1: 2, 2: 1}, steps=2, cold_compile=False, wait_steps=2,
                   thread_steps=3, thread_n=1),
    "toytrain": dict(every=10, steps=20),
    "evaljobs": dict(reps=1, n=20, steps=2, batch=10),
    "fast": dict(reps=1, browser_reps=1),
}
# section name → module (imported when the section runs: diffusers and gradio take seconds to import)
SECTIONS = {"diffusers": "diffusers_loops", "ceiling": "ceiling", "lockstep": "lockstep", "app": "app_overhead",
            "gpu": "gpu", "levers": "levers", "toytrain": "toy_training",
            "evaljobs": "eval_jobs", "fast": "fast_model"}


# ------------------------------------------------------------------------------------------------ machine ---


def cpu_facts() -> dict:
    info = {"model": platform.processor() or "unknown", "flags": set()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    info["model"] = value.strip()
                elif key.strip() == "flags":
                    info["flags"] = set(value.split())
    except OSError:
        pass
    return info


def busy_processes(window_s: float = 1.0, min_share: float = 0.2) -> list[str]:
    """Other processes that used more than ``min_share`` of a core over ``window_s`` (Linux /proc; else [])."""
    def cpu_times() -> dict[int, int]:
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(pid)] = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
            except (OSError, IndexError, ValueError):
                pass
        return out

    if not os.path.isdir("/proc"):
        return []
    before = cpu_times()
    time.sleep(window_s)
    after = cpu_times()
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, t in after.items():
        share = (t - before.get(pid, t)) / hz / window_s
        if pid != os.getpid() and share >= min_share:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            busy.append(f"{share:.0%} of a core: `{cmd[:90]}`")
    return busy


def machine(busy_start: list[str], busy_end: list[str], load_start, load_end) -> str:
    cpu = cpu_facts()
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx_vnni")
    flags = ", ".join(f"{f} {'yes' if f in cpu['flags'] else 'no'}" for f in wanted)
    rows = [
        f"- CPU: {cpu['model']}, {os.cpu_count()} logical cores; {flags}",
        f"- PyTorch {torch.__version__} (intra-op threads: {torch.get_num_threads()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), Python {platform.python_version()}, "
        f"CUDA {'available: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}",
        f"- Load average (1 min) {load_start:.2f} at the start, {load_end:.2f} at the end",
        "- Other busy processes at the start: " + ("; ".join(busy_start) or "none"),
        "- … and at the end: " + ("; ".join(busy_end) or "none"),
    ]
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ targets ---


DIFFUSERS_SPEEDUP = 2.0  # the app's served path against diffusers' scheduler loops (issue 30; it was 1.5)


@dataclass
class Target:
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    bound: str = ""

    def row(self) -> list[str]:
        status = "not measured" if self.met is None else ("met" if self.met else "**missed**")
        return [self.goal, self.measured, status, self.bound]


def _diffusers_bound(figs: dict, served: dict, precision: str, results: dict[str, Section]) -> str:
    """What bounds the speed-up over diffusers' loops: the bare network's share of their time, what compiling
    alone gives (Levers), and the convolutions' share at the batches below the target (Section 2)."""
    floors = [(k, v) for k, v in figs.items() if v["network"]]
    if not floors:
        return ""
    shares = [v["network"] / v["diffusers"] for _, v in floors]
    share = ", ".join(f"{lab} {x:.0%}" for ((lab, _), _), x in zip(floors, shares))
    noise = " (over 100%: load noise)" if max(shares) > 1 else ""
    bound = (f"the network: at batch {floors[0][0][1]} the same number of bare float32 network calls take "
             f"{share} of diffusers' loop time{noise}: a better loop alone saves at most the rest, so the "
             "speed-up has to come from the network: the app serves it compiled" +
             (f", in {precision} (bfloat16 autocast: this CPU runs bfloat16 natively)"
              if "bfloat16" in precision else ", in float32"))
    lv = results.get("levers")
    if lv and "torch.compile" in lv.figures:
        comp = ", ".join(f"{v:.2f}× at batch {n}" for n, v in lv.figures["torch.compile"].items())
        bound += f"; torch.compile alone measured {comp} on the bare network (see Levers)"
        graphs = [v for k, v in lv.figures.items() if isinstance(k, str) and "the app's" in k]
        if graphs:
            bound += (", the app's graphs " + " and ".join(
                ", ".join(f"{v:.2f}× at batch {n}" for n, v in g.items()) for g in graphs) +
                " (float32, bfloat16): the most the app can gain over a loop around the eager network")
    short = sorted({n for (_, n), v in served.items() if v < DIFFUSERS_SPEEDUP})
    c = results.get("ceiling")
    if short and c and c.figures and c.figures["top_ops"].get(max(short)):
        n = max(short)
        conv = sum(share for op, share, _ in c.figures["top_ops"][n] if "conv" in op)
        bound += (f". At batch {n} the convolutions (ATen's and oneDNN's kernels, the same for diffusers and "
                  f"the engine) take {conv:.0%} of the eager network's time (Section 2); compiling fuses only "
                  "the elementwise rest" + ("" if "bfloat16" in precision else
                                            "; bfloat16 (Levers) would go further on a CPU that runs it natively"))
    return bound


def _diffusers_targets(d: Section, results: dict[str, Section]) -> list[Target]:
    figs = {k: v for k, v in d.figures.items() if isinstance(k, tuple)}  # (method, batch) → timings
    precision = d.figures.get("precision", "float32")
    batches = sorted({n for _, n in figs})
    speeds = {k: v["speedup"].median for k, v in figs.items()}
    served = {k: v["app"].median for k, v in figs.items()}
    same = all(v["diff"].startswith("—") or float(v["diff"]) < 1e-3 for v in figs.values())
    fd = d.figures.get("quality", {})
    fd_ok = all(0.95 <= r <= 1.05 for r in fd.values())
    measured = "; ".join(f"batch {n}: " + ", ".join(f"{lab} {speeds[lab, m]:.2f}× (app: {served[lab, m]:.2f}×)"
                                                    for lab, m in figs if m == n) for n in batches)
    measured += f" (engine = load_model default, eager float32; app = compiled, {precision})"
    measured += "; engine's float32 samples equal diffusers' (max |Δ| < 1e-3)" if same else "; SAMPLES DIFFER"
    if fd:
        measured += (f"; app's FD / float32's: " + ", ".join(f"{r:.3f} ({smp} {sch} {st})"
                                                             for (smp, sch, st), r in fd.items()))
    return [Target(f"≥ {DIFFUSERS_SPEEDUP:g}× diffusers' loops at batch 1 and 16, samples of unchanged quality "
                   "(FD within 5%)", measured, all(s >= DIFFUSERS_SPEEDUP for s in served.values()) and same and fd_ok,
                   _diffusers_bound(figs, served, precision, results))]


def _ceiling_targets(c: Section, results: dict[str, Section]) -> list[Target]:
    big = max(c.figures["rate"])
    rate, app = c.figures["rate"][big].median, c.figures["app_rate"][big].median
    ceil = c.figures["ceiling"]
    tops = c.figures["top_ops"].get(big) or next(iter(c.figures["top_ops"].values()))
    best = max(rate, app)
    return [Target(f"≥ 30% of the measured bfloat16 matmul ceiling at batch {big}",
                   f"the app's graph (compiled, {c.figures['precision'][big]}): {app:.1f} GFLOP/s = "
                   f"{app / ceil['bfloat16']:.0%} of bf16 mm ({ceil['bfloat16']:.1f} GFLOP/s); load_model "
                   f"default (eager float32): {rate:.1f} GFLOP/s = {rate / ceil['bfloat16']:.0%} of bf16 mm, "
                   f"{rate / ceil['float32']:.0%} of fp32 mm ({ceil['float32']:.1f} GFLOP/s)",
                   best >= 0.3 * ceil["bfloat16"],
                   (f"met trivially: bfloat16 mm runs at {ceil['bfloat16'] / ceil['float32']:.1%} of float32's "
                    "rate here; " if ceil["bfloat16"] < min(ceil["float32"], best / 0.3) else "") +
                   "the eager network's top operators: " +
                   ", ".join(f"{op} {share:.0%}" for op, share, _ in tops[:3]) +
                   "; the convolutions are oneDNN's, GroupNorm and the elementwise rest are what compiling "
                   "fuses")]


def _lockstep_targets(lk: Section, results: dict[str, Section]) -> list[Target]:
    first = next(iter(lk.figures))[0]  # the Compare tab's default panels
    rows = {label: f for (name, label), f in lk.figures.items() if name == first}
    app_label = next(label for label, f in rows.items() if f["served"])
    f = rows[app_label]
    cost = (f["batched"] / f["batches"]) / (f["sequential"] / f["nfe"])
    return [Target("lock-step 6 panels ≥ 2× sequential", "; ".join(
                       f"{label}: {g['speedup'].median:.2f}×" for label, g in rows.items()) +
                   f" ({first}; {f['batches']} batched calls for {f['nfe']} NFE)", f["speedup"].median >= 2,
                   f"{f['nfe'] / f['batches']:.1f}× fewer network calls, but on the app's network a call of "
                   f"{f['rows']:.1f} rows on average costs {cost:.1f}× a one-row call (the CPU's convolutions "
                   "scale with the batch once past the per-op overhead)")]


def _app_targets(a: Section, results: dict[str, Section]) -> list[Target]:
    f = a.figures
    steps = f["steps"]
    return [Target("app: first frame < 0.3 s after the request", f"{f['first'].median:.3f} s",
                   f["first"].median < 0.3,
                   f"one engine step takes ~{f['engine'] / steps * 1e3:.0f} ms; the rest is the request's round "
                   "trip through Gradio's queue (join, first streamed message) and the first frame's PNG"),
            Target("app: streaming adds < 10% to the engine's time", "as the browser receives it: " + "; ".join(
                       f"{label} (n={o['n']}, {o['steps']} steps) {a.median:+.0%}"
                       for label, (o, a) in f["more"].items()) +
                   f"; n=1, {steps} steps {f['browser_added'].median:+.0%} ({f['browser']:.2f} s vs "
                   f"{f['engine']:.2f} s; {f['added'].median:+.0%} through gradio_client)",
                   all(a.median < 0.10 for _, a in f["more"].values()) and f["browser_added"].median < 0.10,
                   f"the handler's own work (frames, gallery PNGs, schedule plot, GIF) adds "
                   f"{f['handler_added'].median:+.0%} in-process; a no-op request with as many updates costs "
                   f"{f['floor_browser'].median * 1e3:.0f} ms as the browser makes it and "
                   f"{f['floor_client'].median * 1e3:.0f} ms through gradio_client (it polls the event stream "
                   f"every 50 ms); the rest is Gradio's processing of the run's {f['updates']} updates. "
                   "These are costs per request and per update (at most 5 updates a second), so their share "
                   "falls as the run gets longer"),
            Target("app: cold start < 10 s", f"{f['cold'].median:.1f} s", f["cold"].median < 10,
                   f"`python -c 'import app'` alone takes {f['imports'].median:.1f} s (torch, gradio, timm…; "
                   "matplotlib is imported after the page is served; separate runs under the same load): " + (
                       "the imports are nearly all of it" if f["imports"].median >= 0.7 * f["cold"].median else
                       f"the other {f['cold'].median - f['imports'].median:.1f} s build the UI and start the "
                       "server"))]


def _toytrain_targets(tt: Section, results: dict[str, Section]) -> list[Target]:
    hits = {k: f["hit"] for k, f in tt.figures.items()}
    return [Target("toy training: 2,000 drawn points to within 2× a fresh sample's SWD in ≤ 30 s on one "
                   "thread, both objectives (the browser tool: ~10 s)",
                   "; ".join(f"{shape} {obj}: " + (f"{h[0]:.1f} s ({h[1]} steps)" if h else "not reached")
                             for (shape, obj), h in hits.items()),
                   all(h is not None and h[0] <= 30 for h in hits.values()))]


def _gpu_targets(g: Section, results: dict[str, Section]) -> list[Target]:
    if g.skipped:
        return [Target("GPU: compiled / CUDA graphs ≥ 3× eager at batch 1", f"skipped: {g.skipped}", None)]
    f = g.figures[min(k for k in g.figures if isinstance(k, int))]
    return [Target("GPU: compiled / CUDA graphs ≥ 3× eager at batch 1",
                   f"compiled {f['compiled'].median:.2f}×, graphs {f['graph'].median:.2f}×",
                   max(f["compiled"].median, f["graph"].median) >= 3)]


def _fast_targets(f: Section, results: dict[str, Section]) -> list[Target]:
    from .fast_model import TARGET_S

    goal = f"one step, distilled: a batch of 16 served in < {TARGET_S * 1e3:.0f} ms on two cores (mnist-fast)"
    if f.skipped:
        return [Target(goal, f"skipped: {f.skipped}", None)]
    g = f.figures
    return [Target(goal, "served: " + ", ".join(f"batch {n} {s * 1e3:.1f} ms" for n, s in g["served"].items()) +
                   f" ({g['threads']} threads); /generate of batch {g['batch']} as the browser makes it: " +
                   ("not offered in the app" if g["browser"] is None else f"{g['browser'] * 1e3:.0f} ms"),
                   g["served"][16] < TARGET_S,
                   "one network evaluation of the student; the browser's figure adds Gradio's queue, the frames, "
                   "the gallery's PNGs and the GIF")]


TARGETS = (("diffusers", _diffusers_targets), ("ceiling", _ceiling_targets), ("lockstep", _lockstep_targets),
           ("app", _app_targets), ("toytrain", _toytrain_targets), ("gpu", _gpu_targets), ("fast", _fast_targets))
"""Each section's targets, in the page's order: a function of the section (run, with figures) and of every
section's results (a bound may cite another section's figures)."""


def targets(results: dict[str, Section]) -> list[Target]:
    out = []
    for name, section_targets in TARGETS:
        section = results.get(name)
        if section is not None and (section.figures or section.skipped):  # a skipped section says why
            out += section_targets(section, results)
    return out


# --------------------------------------------------------------------------------------------------- page ---


def page(results: dict[str, Section], facts: str, quick: bool, seconds: float) -> str:
    tt = Table("Targets", ["target", "measured", "status", "what bounds it"])
    for t in targets(results):
        tt.add(*t.row())
    head = [
        "# Performance",
        f"Generated by `python -m bench{' --quick' if quick else ''}` on {datetime.date.today()} in "
        f"{seconds / 60:.1f} minutes" + (" — QUICK MODE: tiny runs, not measurements." if quick else "."),
        "Every comparison runs both sides in the same process, interleaved (the order flips every repetition), "
        "and reports the median of the per-repetition ratios with their range (min–max). Ratios, not absolute "
        "times, are the result: the absolute times move with the machine's load. The machine was shared with other "
        "work during the run (see Machine), so spreads are wide: a ratio whose range straddles 1 is no measured "
        "difference.",
        "## Machine\n\n" + facts,
        tt.markdown(),
    ]
    return "\n\n".join(head + [s.markdown() for s in results.values()]) + "\n"


def main(argv=None) -> dict[str, Section]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny steps and one repetition (smoke test)")
    p.add_argument("--only", default="", help=f"comma-separated sections out of: {', '.join(SECTIONS)}")
    p.add_argument("--out", default=None, help=f"Markdown page to write (default {DEFAULT_OUT}; '-' for none)")
    p.add_argument("--model", default="mnist-ddpm")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(names) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    load_start, busy_start = os.getloadavg()[0], busy_processes()
    results = {}
    for name in names:
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        s = time.perf_counter()
        module = importlib.import_module(f"{__package__}.{SECTIONS[name]}")
        results[name] = module.section(args.model, **settings[name])
        results[name].intro = module.__doc__.split("\n\n", 1)[-1].strip().replace("``", "`")
        print(results[name].console() + f"\n({time.perf_counter() - s:.0f} s)\n", flush=True)
    facts = machine(busy_start, busy_processes(), load_start, os.getloadavg()[0])
    for t in targets(results):
        print(" | ".join(t.row()))
    out = args.out or DEFAULT_OUT
    if out != "-":
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(page(results, facts, args.quick, time.perf_counter() - t0))
        print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
