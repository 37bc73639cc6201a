"""Event handlers: each turns UI values into engine calls and engine results into pictures. No diffusion maths.

Handlers are methods of ``Handlers`` (one per app, bound to a ``ModelStore``); their parameter names are the
keyword names of the API endpoints.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData
from gradio.utils import get_upload_folder

import engine
from engine import compare as engine_compare
from engine import data as engine_data
from engine import evaluate
from engine import fields as engine_fields
from engine import forward as engine_forward

from . import engine_thread, imaging, plots
from .engine_thread import on_engine_thread
from .guard import shown
from .models import ModelStore
from .settings import (MAX_N, MAX_STEPS, OPTIONS, SAMPLERS, SCHEDULES, SPACINGS, as_float, as_int, base_url, choice,
                       query_string, sampler_opts)

N_SNAPSHOTS = 12  # x_t / x̂0 pairs in the gallery
N_GIF_FRAMES = 60
UPDATE_EVERY_S = 0.2  # at most this often a streamed update (5 per second)
GALLERY_EVERY_S = 0.5  # the gallery (Gradio checks each of its files at every send) at most this often mid-run
FORWARD_DATASETS = ["mnist", "digits8", "fashion-mnist"]
MAX_TIMESTEPS = 12  # t values in one Forward-process request
FIELD_SIGMA = (0.01, 5.0)  # the Score-field tab's ranges (its sliders use them too)
FIELD_MAX_STEPS = 200
FIELD_PARTICLES = (10, 2000)
RESULTS_MAX_AGE_S = 3600  # result folders (PNG, GIF) older than this are removed when a new one is made

log = logging.getLogger("denoisery")


def _err(err: Exception) -> gr.Error:
    return gr.Error(str(err).strip("'\""))


def _caption(kind: str, step: engine.Step, total: int) -> str:
    return f"{kind} · step {step.i + 1}/{total} · t={step.t} · σ={step.sigma:.3g} · NFE {step.nfe}"


def _quality(classifier, images) -> str:
    """The evaluator's classifier on a panel's images: predicted digits and mean top-class probability."""
    if classifier is None:
        return "no classifier for this model"
    label, p = evaluate.top_class(classifier, images)
    return f"{' '.join(map(str, label.tolist()))} ({float(p.mean()):.2f})"


def generate_curves(schedule: str, sampler: str, steps: int, spacing: str) -> list[dict]:
    """The Generate tab's schedule plot: the schedule's curves with the run's timesteps ticked."""
    visited = engine.get_schedule(schedule).timesteps(steps, spacing).tolist()
    return [{"schedule": schedule, "label": f"{schedule} · {sampler}", "visited": visited}]


def warm_up(schedule="cosine", sampler="ddim", steps=50, spacing="leading", store: ModelStore | None = None,
            model: str = "mnist-ddpm", batches=(1, 4)) -> None:
    """Import matplotlib and draw the schedule plot of the default Generate settings, so that the first request
    pays for neither (~1 s); for a background thread once the page is served (app.py). With a ``store`` whose models
    compile in the background, also run ``model`` for one step at each of ``batches`` (one image, and the Generate
    tab's default four), which queues their compile before the first visitor asks; that run is made on the engine
    thread, like every request's."""
    plots.schedule_plot(generate_curves(schedule, sampler, steps, spacing))
    if store is not None and store.background_compile and model in store.image_models():
        net = store.load(model)
        for n in batches:
            engine_thread.run(engine.sample, net, schedule=schedule, sampler=sampler, steps=1, seed=0, n=n,
                              spacing=spacing)


def _snapshot_indices(total: int, k: int = N_SNAPSHOTS) -> set[int]:
    return set(np.linspace(0, total - 1, min(k, total)).round().astype(int).tolist())


class Handlers:
    def __init__(self, store: ModelStore, *, max_nfe: int = 20_000, time_budget_s: float = 300.0):
        self.store = store
        self.max_nfe = max_nfe
        self.time_budget_s = time_budget_s

    # ------------------------------------------------------------------------------------------ common ---

    def _out_dir(self) -> str:
        """A fresh folder for one result's files (live frames, gallery snapshots, GIF, PNG), inside Gradio's cache
        folder (``GRADIO_TEMP_DIR``), so Gradio serves them as they are instead of hashing and copying each file at
        every streamed update. Folders older than RESULTS_MAX_AGE_S are removed here (Gradio's ``delete_cache``
        removes the files too)."""
        root = os.path.join(get_upload_folder(), "denoisery")
        os.makedirs(root, exist_ok=True)
        cutoff = time.time() - RESULTS_MAX_AGE_S
        for name in os.listdir(root):
            path = os.path.join(root, name)
            try:
                if os.path.getmtime(path) < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
        path = os.path.join(root, uuid.uuid4().hex)  # its files are served by URL: a name nobody can guess
        os.mkdir(path)
        return path

    def _model(self, name, kind: str = "image"):
        """The loaded model called ``name`` — a name from the list of intact models, never a path — or gr.Error.
        Messages name no server path (the log has the details)."""
        names = self.store.image_models() if kind == "image" else self.store.toy_models()
        if not names:
            what = "image" if kind == "image" else "2-D toy"
            raise gr.Error(f"no {what} model is available on this server: train one "
                           f"(python -m engine train --config engine/configs/...) or set ENGINE_CHECKPOINTS")
        if not isinstance(name, str) or name not in names:
            raise gr.Error(f"unknown model {shown(name)}; models available here: {', '.join(names)}")
        try:
            return self.store.load(name)
        except (ValueError, engine.CheckpointError) as err:  # its files changed and no longer check out
            log.error("model %s could not be loaded: %s", name, err)
            raise gr.Error(f"model {name} cannot be loaded now: its checkpoint changed or is damaged; "
                           f"try another model") from None

    def _settings(self, model, schedule, sampler, steps, seed, n, spacing, opts_in: dict) -> dict:
        s = {
            "model": model,
            "schedule": choice("schedule", schedule, SCHEDULES),
            "sampler": choice("sampler", sampler, SAMPLERS),
            "steps": as_int("steps", steps, 1, MAX_STEPS),
            "seed": as_int("seed", seed, 0, engine.MAX_SEED),
            "n": as_int("n", n, 1, MAX_N),
            "spacing": choice("spacing", spacing, SPACINGS),
        }
        s["options"] = sampler_opts(s["sampler"], opts_in)
        est = engine.sampler_spec(s["sampler"]).nfe(s["steps"], s["options"]) * s["n"]
        if est > self.max_nfe:
            raise gr.Error(f"this run needs {est:,} network evaluations (steps × per-step evaluations × n); "
                           f"the limit per request is {self.max_nfe:,}: use fewer steps, images or corrector steps")
        return s

    # ---------------------------------------------------------------------------------------- generate ---

    @on_engine_thread
    def generate(self, model, schedule, sampler, steps, seed, n=1, spacing="leading", eta=OPTIONS["eta"],
                 variance=OPTIONS["variance"], n_steps_each=OPTIONS["n_steps_each"], step_size=OPTIONS["step_size"],
                 snr=OPTIONS["snr"], n_corrector=OPTIONS["n_corrector"], request: gr.Request = None):
        """Stream a sampling run. Yields (image, gallery, gif, png, plot, status, link).

        What each streamed update costs is kept small (a 50-step run sends 3–5, at most one per UPDATE_EVERY_S):
        the live image is a PNG this handler writes itself (zlib level 1) into a folder inside Gradio's cache, like
        the gallery's snapshots, the GIF and the download PNG, so Gradio neither re-encodes nor hashes and copies
        them; the gallery is sent only when it has new snapshots, at most every GALLERY_EVERY_S; the schedule plot
        is drawn once per setting and kept, and only its current-step marker is redrawn (``plots.schedule_plot``),
        sent as ready PNG data; the GIF's frames become pictures in one go at the end. Mid-run, the downloads and
        the link are None (the last run's are cleared when this one starts)."""
        opts_in = dict(eta=eta, variance=variance, n_steps_each=n_steps_each, step_size=step_size, snr=snr,
                       n_corrector=n_corrector)
        s = self._settings(model, schedule, sampler, steps, seed, n, spacing, opts_in)
        net = self._model(s["model"])
        try:
            run = engine.generate(net, schedule=s["schedule"], sampler=s["sampler"], steps=s["steps"],
                                  seed=s["seed"], n=s["n"], spacing=s["spacing"], **s["options"])
        except (ValueError, TypeError) as err:
            raise _err(err) from None
        curves = generate_curves(s["schedule"], s["sampler"], s["steps"], s["spacing"])
        total = s["steps"]
        snaps = _snapshot_indices(total)
        gif_at = _snapshot_indices(total, N_GIF_FRAMES)
        gallery: list[tuple] = []
        frames: list = []
        tmp = self._out_dir()
        t0 = last = time.perf_counter()
        gallery_due = t0  # the first snapshots go out with the first frame
        step = None
        marked = None  # the schedule plot, drawn (or found kept) after the first frame has gone out
        skip = gr.skip()
        gallery_dirty = False
        try:
            for step in run:
                now = time.perf_counter()
                elapsed = now - t0
                if step.i in snaps:  # saved once as files, so re-sending the gallery re-encodes nothing
                    for kind, x in (("x_t", step.x_t), ("x̂0", step.x0_pred)):
                        path = os.path.join(tmp, f"{'xt' if kind == 'x_t' else 'x0'}_{step.i:04d}.png")
                        imaging.save_png(imaging.display(x, 160), path)
                        gallery.append((path, _caption(kind, step, total)))
                    gallery_dirty = True
                if step.i in gif_at:  # kept as tensors: converted to pictures in one go at the end
                    frames.append(step.x_t.detach().clone())
                if elapsed > self.time_budget_s and step.i + 1 < total:
                    gr.Warning(f"stopped after {elapsed:.1f} s (time budget {self.time_budget_s:g} s per request)")
                    break
                if step.i + 1 < total and (step.i == 0 or now - last >= UPDATE_EVERY_S):
                    # the first frame goes out at once (without the plot); later ones at most every UPDATE_EVERY_S
                    last = now
                    status = (f"step {step.i + 1}/{total} · t={step.t} · σ={step.sigma:.3g} · NFE {step.nfe} · "
                              f"{(step.i + 1) / max(elapsed, 1e-9):.1f} steps/s · {elapsed:.1f} s")
                    # gr.skip() costs Gradio ~1 ms per output (it rebuilds the component's config), so outputs
                    # without a value yet are sent as None: the downloads and the link of the last run are
                    # cleared when this one starts, and filled at its end
                    plot = skip
                    if step.i > 0 or plots.is_kept(curves):  # a first drawing waits until the first frame is out
                        marked = marked or plots.schedule_plot(curves)
                        plot = PlotData(type="matplotlib", plot=marked.png(step.t))
                    shown_gallery = skip
                    if gallery_dirty and now >= gallery_due:
                        shown_gallery, gallery_dirty, gallery_due = list(gallery), False, now + GALLERY_EVERY_S
                    frame = imaging.save_png(imaging.display(step.x_t), os.path.join(tmp, f"live_{step.i:04d}.png"))
                    yield frame, shown_gallery, None, None, plot, status, None
        except ValueError as err:  # a sampler's own option check runs at its first step
            raise _err(err) from None
        if step is None:
            raise gr.Error("the sampler produced no steps")
        elapsed = time.perf_counter() - t0
        final = imaging.grid(step.x_t)
        stopped = step.i + 1 < total  # by the time budget
        if step.i not in gif_at:
            frames.append(step.x_t.detach().clone())
        settings = {k: v for k, v in s.items() if k != "options"}
        settings.update(s["options"])
        settings["app"] = "denoisery"
        settings["nfe"] = step.nfe
        stem = f"{s['model']}_{s['schedule']}_{s['sampler']}_{s['steps']}_seed{s['seed']}"
        png = imaging.png_with_settings(final, settings, tmp, stem)
        gif = imaging.gif([imaging.upscale(f) for f in imaging.grids(frames)], tmp, stem)
        link = base_url(request) + query_string({"tab": "generate", **{k: v for k, v in settings.items()
                                                                        if k not in ("app", "nfe")}})
        head = f"stopped by the time budget ({self.time_budget_s:g} s per request)" if stopped else "done"
        status = (f"{head}: {step.i + 1}/{total} steps · NFE {step.nfe} · {(step.i + 1) / max(elapsed, 1e-9):.1f} "
                  f"steps/s · {elapsed:.2f} s")
        marked = marked or plots.schedule_plot(curves)
        plot = PlotData(type="matplotlib", plot=marked.png(step.t))
        image = imaging.save_png(imaging.upscale(final), os.path.join(tmp, "final.png"))
        yield image, list(gallery), gif, png, plot, status, link

    # ----------------------------------------------------------------------------------------- compare ---

    @on_engine_thread
    def compare(self, model, seed, panels=3, n=1, request: gr.Request = None, **panel_values):
        """Run up to 6 panels in lock-step from one seed. Yields (gallery, plot, table, status, trajectories,
        scrub-slider update, link)."""
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        count = as_int("panels", panels, 1, engine_compare.MAX_PANELS)
        n = as_int("n", n, 1, 4)
        specs = []
        for k in range(1, count + 1):
            sched = choice(f"schedule of panel {k}", panel_values.get(f"schedule_{k}"), SCHEDULES)
            samp = choice(f"sampler of panel {k}", panel_values.get(f"sampler_{k}"), SAMPLERS)
            steps = as_int(f"steps of panel {k}", panel_values.get(f"steps_{k}"), 1, MAX_STEPS)
            specs.append(engine_compare.Panel(sched, samp, steps, engine.sampler_spec(samp).spacing))
        est = sum(engine.sampler_spec(p.sampler).nfe(p.steps) for p in specs) * n
        if est > self.max_nfe:
            raise gr.Error(f"these panels need {est:,} network evaluations; the limit per request is "
                           f"{self.max_nfe:,}: use fewer steps or panels")
        net = self._model(model)
        try:
            comp = engine_compare.compare(net, specs, seed=seed, n=n)
        except ValueError as err:
            raise _err(err) from None
        traj: list[list[np.ndarray]] = [[] for _ in specs]
        t0 = last = time.perf_counter()
        skip = gr.skip()
        latest = None
        try:
            for latest in comp:
                for k, st in enumerate(latest):
                    if not comp.done[k] and len(traj[k]) <= st.i:
                        traj[k].append(np.asarray(imaging.grid(st.x_t)))
                now = time.perf_counter()
                if comp.rounds == 1 or now - last >= UPDATE_EVERY_S * 2:
                    last = now
                    yield (self._compare_gallery(latest, comp, specs), skip, skip,
                           f"round {comp.rounds} · {now - t0:.1f} s", skip, skip, skip)
                if now - t0 > self.time_budget_s:
                    gr.Warning(f"stopped after {now - t0:.0f} s (time budget per request)")
                    break
        finally:  # also when the request is cancelled: the panels' threads end here
            comp.close()
        if latest is None:
            raise gr.Error("nothing ran")
        clf = self.store.classifier_for(model)
        rows = [[k + 1, p.label(), st.nfe, round(comp.elapsed[k], 3), _quality(clf, st.x_t)]
                for k, (p, st) in enumerate(zip(specs, latest))]
        plot = PlotData(type="matplotlib", plot=plots.schedule_plot(  # drawn once per set of panels, then kept
            [{"schedule": p.schedule, "label": f"{k + 1}: {p.label()}",
              "visited": engine.get_schedule(p.schedule).timesteps(p.steps, p.spacing).tolist()}
             for k, p in enumerate(specs)]).png(None))
        longest = max(len(t) for t in traj)
        state = {"traj": traj, "labels": [p.label() for p in specs], "steps": [p.steps for p in specs]}
        query = {"tab": "compare", "model": model, "seed": seed, "n": n, "panels": count}
        for k, p in enumerate(specs, 1):
            query.update({f"schedule_{k}": p.schedule, f"sampler_{k}": p.sampler, f"steps_{k}": p.steps})
        status = (f"done: {comp.rounds} rounds · {comp.batches} batched network calls · "
                  f"{time.perf_counter() - t0:.2f} s · same x_T and noise (seed {seed})")
        yield (self._compare_gallery(latest, comp, specs), plot, rows, status, state,
               gr.update(maximum=longest, value=longest, interactive=True), base_url(request) + query_string(query))

    @staticmethod
    def _compare_gallery(steps, comp, specs):
        out = []
        for k, (st, p) in enumerate(zip(steps, specs)):
            cap = (f"{k + 1}: {p.label()} · step {st.i + 1}/{p.steps} · NFE {st.nfe} · "
                   f"{comp.elapsed[k]:.2f} s")
            out.append((imaging.display(st.x_t, 192), cap))
        return out

    @staticmethod
    def scrub(position, state):
        """The panels at lock-step round ``position`` (a panel that had finished shows its last state)."""
        if not state:
            return gr.skip()
        r = max(1, int(position or 1))
        out = []
        for k, (tr, label, steps) in enumerate(zip(state["traj"], state["labels"], state["steps"])):
            i = min(r, len(tr)) - 1
            out.append((imaging.upscale(imaging.Image.fromarray(np.asarray(tr[i])), 192),
                        f"{k + 1}: {label} · step {i + 1}/{steps}"))
        return out

    # ----------------------------------------------------------------------------------------- forward ---

    @on_engine_thread
    def forward(self, dataset="mnist", index=0, schedules=("linear", "cosine"), timesteps="0, 50, 100, 250, 500, 750, 999",
                seed=0, upload=None):
        """q(x_t | x_0) at the chosen t for each schedule. Returns (gallery, plot, x_0 image, x_0 description).

        ``upload`` is the path of an uploaded image file (or None: the dataset's image ``index``); it is decoded
        by ``imaging.open_upload``, within the app's byte and pixel caps."""
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        if isinstance(schedules, str):
            schedules = [schedules]
        schedules = list(schedules or [])
        if not schedules:
            raise gr.Error("choose at least one schedule")
        for sname in schedules:
            choice("schedule", sname, SCHEDULES)
        parts = [t.strip() for t in str(timesteps).replace(";", ",").split(",") if t.strip()]
        if not 1 <= len(parts) <= MAX_TIMESTEPS:
            raise gr.Error(f"choose 1 to {MAX_TIMESTEPS} values of t; got {len(parts)}")
        try:
            ts = [int(t) for t in parts]  # whole numbers only: "1.5", "1e400" and 5000-digit strings are refused
        except ValueError:
            raise gr.Error(f"t values must be integers separated by commas; got {shown(timesteps)}") from None
        dataset = choice("dataset", dataset, FORWARD_DATASETS)
        try:
            images, _ = engine_data.load_dataset(dataset, "test")
        except (FileNotFoundError, ValueError) as err:
            log.error("dataset %s could not be loaded: %s", dataset, err)
            raise gr.Error(f"the dataset {dataset} is not installed on this server; choose another") from None
        if upload is not None:
            try:
                x0 = engine_forward.image_to_tensor(imaging.open_upload(upload), tuple(images.shape[1:]))
            except ValueError as err:
                raise _err(err) from None
            source = "upload"
        else:
            index = as_int("index", index, 0, len(images) - 1)
            x0 = images[index: index + 1]
            source = f"{dataset} test #{index}"
        gallery = []
        for sname in schedules:
            try:
                xt = engine_forward.noise_images(x0, sname, ts, seed)  # (len(ts), 1, C, H, W)
                stats = engine_forward.signal_stats(sname, ts)
            except ValueError as err:
                raise _err(err) from None
            for st, img in zip(stats, xt):
                gallery.append((imaging.display(img, 128),
                                f"{sname} · t={st['t']} · ᾱ={st['alpha_bar']:.3g} · σ={st['sigma']:.3g}"))
        plot = PlotData(type="matplotlib", plot=plots.forward_curves_plot(schedules, ts))
        return gallery, plot, imaging.display(x0, 128), source

    # ------------------------------------------------------------------------------------- score field ---

    @on_engine_thread
    def score_field(self, model, sigma=0.5, sampler="ddim", schedule="cosine", steps=50, seed=0, particles=500):
        """Score arrows at σ over p_σ, and particles moved by the sampler. Returns (plot, gallery, status)."""
        sigma = as_float("sigma", sigma, *FIELD_SIGMA)
        steps = as_int("steps", steps, 1, FIELD_MAX_STEPS)
        seed = as_int("seed", seed, 0, engine.MAX_SEED)
        count = as_int("particles", particles, *FIELD_PARTICLES)
        choice("sampler", sampler, SAMPLERS)
        choice("schedule", schedule, SCHEDULES)
        net = self._model(model, kind="toy")
        t0 = time.perf_counter()
        try:
            field = engine_fields.score_field(net, sigma, lim=3.0, n=21)
            toy = engine_fields.toy_of(net)
            dens = engine_fields.noisy_density(toy, sigma, lim=3.0, n=80) if toy else None
            run = engine_fields.particles(net, schedule=schedule, sampler=sampler, steps=steps, seed=seed, n=count)
        except (ValueError, TypeError) as err:
            raise _err(err) from None
        final = run[-1].x_t.numpy()
        fig = plots.score_field_figure(field, dens, f"{model}: score at σ = {sigma:.3g} (arrows),\n"
                                                    f"p_σ (shade), {sampler} samples (dots)", points=final)
        gallery = []
        for i in sorted(_snapshot_indices(len(run), 8)):
            st = run[i]
            gallery.append((plots.particles_image(st.x_t.numpy(), title=f"step {i + 1} · σ={st.sigma_next:.3g}"),
                            f"step {i + 1}/{len(run)} · t={st.t} · σ={st.sigma:.3g} → {st.sigma_next:.3g} · NFE {st.nfe}"))
        status = f"{count} particles · {len(run)} steps · NFE {run[-1].nfe} · {time.perf_counter() - t0:.2f} s"
        return fig, gallery, status
