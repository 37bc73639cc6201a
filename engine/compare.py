"""Lock-step comparison of several schedule / sampler / step-count settings — and models — from the same seed.

Every panel is an ``engine.generate`` run with the SAME ``seed``. ``generate`` draws x_T first and then every
per-step noise z from one CPU ``torch.Generator(seed)``, so all panels start from the same x_T ~ N(0, I) and their
k-th noise draw is the same tensor: differences between panels come from the schedule (the ᾱ_t it visits), the
sampler's update rule and the number of steps, not from luck. (Panels whose samplers draw a different number of
times per step see the same stream consumed at different rates.)

Panels from different models. A panel may name its own ``model`` (None: the comparison's). x_T is
``randn((n, *data_shape), generator=Generator(seed))``, the run's first draw, whatever the model's objective: an
ε-model (DDPM), a score model and a velocity model (flow matching) all start from x_T ~ N(0, I) — the VP chain's
x_T at ᾱ_T ≈ 0 and the flow path's x_1 = ε (α_1 = 0, σ_1 = 1) are the same distribution, and every sampler runs in
the VP coordinates (``FlowModel.eps``) — so equal data shapes give the identical tensor. The models must
therefore share the data shape (C, H, W); a panel whose model's shape differs is refused (ValueError). A class
"random" is drawn after x_T, so it never shifts x_T either.

The runs advance in lock-step: each round moves every unfinished panel by one step and yields the list of the
panels' latest ``Step``; a panel that finished keeps its last Step, and the iteration ends when all have finished.

Batching. The panels' network evaluations are batched: one call ``model.eps(cat(x_1..x_k), cat(ᾱ_1..ᾱ_k))`` serves
every panel of that model that needs ε̂ at that moment, whatever its schedule or ᾱ (the models take a per-sample ᾱ).
Rows of different models cannot share a call: the pending requests are grouped by model (in the order of each model's
first panel) and each model is called once per batch. Each panel's sampler runs in its own thread, unchanged, against
a stand-in model whose ``eps`` hands (x, ᾱ) to this coordinator and waits. The coordinator resumes the panels one at
a time, each until it either asks for ε̂ or yields its Step; when every resumed panel has done one or the other, the
pending requests go to the network (one batch per model), and the requesters are resumed again. A panel whose step
needs two evaluations (ode's Heun step, pc's corrector, Langevin's inner steps) simply takes part in more batches; a
panel that finished drops out. A guided panel (a class-conditional model with ``label`` and ``guidance_scale``) sends
both of its branches as one request, with labels; the batch then carries every row's label (∅ for the unconditional
panels' rows). Only one thread runs at a time, so the batches — and therefore the samples — depend on the settings
alone, never on timing. Per-panel wall time (``Comparison.elapsed``) is the panel's own sampler arithmetic plus its
share of each batched network call (shared in proportion to batch rows).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .generate import generate, model_device
from .models import check_model
from .samplers import Step

MAX_PANELS = 6


@dataclass
class Panel:
    """One setting to compare: a schedule, a sampler, a number of steps, a spacing and sampler options, for a
    class-conditional model a class ``label`` and ``guidance_scale`` (as in ``generate``), and the ``model`` that
    runs it (None: the comparison's model; another must make data of the same shape)."""

    schedule: str
    sampler: str
    steps: int
    spacing: str | None = None  # None: the sampler's own (engine.samplers.SamplerSpec.spacing)
    options: dict = field(default_factory=dict)
    label: int | None = None
    guidance_scale: float = 1.0
    model: object = field(default=None, repr=False)  # a protocol model (engine.models.check_model), or None

    def title(self) -> str:
        opts = [f"{k}={v}" for k, v in self.options.items()]
        if self.label is not None:
            opts.append(f"class {self.label}, w={self.guidance_scale:g}")
        steps = f"{self.steps} step{'s' * (self.steps != 1)}"
        return f"{self.schedule} · {self.sampler} · {steps}" + (f" ({', '.join(opts)})" if opts else "")


def _panel_models(model, panels: list[Panel]) -> list:
    """The model each panel runs (its own, or the comparison's ``model``); ValueError naming the panel whose model
    makes data of another shape than the comparison's (they must all start from one x_T), TypeError for a
    non-model."""
    check_model(model)
    shape = tuple(model.data_shape)
    models = []
    for k, p in enumerate(panels, 1):
        m = model if p.model is None else p.model
        check_model(m)
        if tuple(m.data_shape) != shape:
            raise ValueError(f"panel {k}: its model makes data of shape {tuple(m.data_shape)}, the comparison's "
                             f"model {shape}; every panel starts from the same x_T, so all models must share "
                             f"the data shape")
        models.append(m)
    return models


class _Stop(Exception):
    """Raised inside a panel's thread when the comparison is closed; ends that thread's run."""


_GO, _STOP = "go", "stop"


class _PanelChannel:
    """The two one-way queues between a panel's thread and the coordinator."""

    def __init__(self):
        self.to_panel: queue.SimpleQueue = queue.SimpleQueue()
        self.to_coordinator: queue.SimpleQueue = queue.SimpleQueue()

    def ask(self, message: tuple):
        """Panel side: send ``message``, wait for the reply (raises _Stop when the comparison was closed)."""
        self.to_coordinator.put(message)
        reply = self.to_panel.get()
        if isinstance(reply, str) and reply == _STOP:
            raise _Stop
        return reply

    def resume(self, reply) -> tuple:
        """Coordinator side: let the panel go on with ``reply`` and wait for its next message."""
        self.to_panel.put(reply)
        return self.to_coordinator.get()


class _RemoteModel:
    """The model as a panel's sampler sees it: ``eps`` is answered by the coordinator's batched call."""

    def __init__(self, model, channel: _PanelChannel):
        self.data_shape = model.data_shape
        self.card = getattr(model, "card", {})
        self.num_classes = getattr(model, "num_classes", 0)
        self._channel = channel

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self._channel.ask(("eps", x_t, alpha_bar, label))


def _panel_thread(run: Iterator[Step], channel: _PanelChannel) -> None:
    """Body of a panel's thread: wait to be resumed, run one step, report it, repeat; then report the end."""
    try:
        if channel.to_panel.get() == _STOP:
            return
        for step in run:
            channel.ask(("step", step))
        channel.to_coordinator.put(("done",))
    except _Stop:
        pass
    except BaseException as err:  # reported to the coordinator, which raises it in the caller's thread
        channel.to_coordinator.put(("error", err))
    finally:
        run.close()


class Comparison:
    """Iterate to run the panels in lock-step; each item is the list of the panels' latest Steps.

    Attributes: ``panels``, ``models`` (the model each panel runs), ``steps`` (the latest Step of each panel, None
    before its first), ``done`` (per panel), ``elapsed`` (seconds attributed to each panel), ``rounds`` (rounds so
    far), ``batches`` (network calls made) and ``batch_rows`` (rows sent through the network in all).
    All arguments are checked when the Comparison is made (ValueError naming the panel). ``close()`` (also run
    when the iteration ends or is abandoned) stops the panels' threads. Each panel's state lives on ``device``,
    by default its own model's device (as ``generate`` alone would put it).
    """

    def __init__(self, model, panels: list[Panel | dict], *, seed: int, n: int = 1, device=None):
        if not 1 <= len(panels) <= MAX_PANELS:
            raise ValueError(f"compare needs 1 to {MAX_PANELS} panels; got {len(panels)}")
        self.panels = [p if isinstance(p, Panel) else Panel(**p) for p in panels]
        self.model = model
        self.models = _panel_models(model, self.panels)
        self._channels = [_PanelChannel() for _ in self.panels]
        self._runs: list[Iterator[Step]] = []
        for k, (p, m, ch) in enumerate(zip(self.panels, self.models, self._channels), 1):
            where = torch.device(device) if device is not None else model_device(m)
            try:
                self._runs.append(generate(_RemoteModel(m, ch), schedule=p.schedule, sampler=p.sampler,
                                           steps=p.steps, seed=seed, n=n, spacing=p.spacing, device=where,
                                           label=p.label, guidance_scale=p.guidance_scale, **p.options))
            except ValueError as err:
                raise ValueError(f"panel {k}: {err}") from None
        self._threads: list[threading.Thread] = []
        self.steps: list[Step | None] = [None] * len(self.panels)
        self.done = [False] * len(self.panels)
        self.elapsed = [0.0] * len(self.panels)
        self.rounds = 0
        self.batches = 0
        self.batch_rows = 0

    def _resume(self, k: int, reply) -> tuple:
        t0 = time.perf_counter()
        message = self._channels[k].resume(reply)
        self.elapsed[k] += time.perf_counter() - t0
        return message

    def _network(self, requests: dict[int, tuple]) -> dict[int, torch.Tensor]:
        """The pending requests grouped by the model that answers them, in panel order (the first panel of each
        model), so the calls depend on the settings alone; one batched call per model."""
        groups: dict[int, list[int]] = {}
        for k in sorted(requests):
            groups.setdefault(id(self.models[k]), []).append(k)
        answers = {}
        for ks in groups.values():
            answers.update(self._batch(self.models[ks[0]], {k: requests[k] for k in ks}))
        return answers

    def _batch(self, model, requests: dict[int, tuple]) -> dict[int, torch.Tensor]:
        """One batched ε̂ call of ``model`` for its pending requests; its time is shared among the panels by rows."""
        ks = list(requests)
        xs = [requests[k][1] for k in ks]
        labels = [requests[k][3] for k in ks]
        if all(lab is None for lab in labels):
            label = None
        else:  # rows without a label are the null class ∅'s
            null = model.num_classes
            label = torch.cat([torch.full((len(x),), null, dtype=torch.long, device=x.device) if lab is None
                               else lab for x, lab in zip(xs, labels)])
        t0 = time.perf_counter()
        extra = () if label is None else (label,)  # a protocol model's eps need not take a label
        with torch.inference_mode():
            if len(ks) == 1:
                outs = [model.eps(xs[0], requests[ks[0]][2], *extra)]
            else:
                eps = model.eps(torch.cat(xs), torch.cat([requests[k][2] for k in ks]), *extra)
                outs = list(torch.split(eps, [x.shape[0] for x in xs]))
        dt = time.perf_counter() - t0
        rows = sum(x.shape[0] for x in xs)
        self.batches += 1
        self.batch_rows += rows
        for k, x in zip(ks, xs):
            self.elapsed[k] += dt * x.shape[0] / rows
        return dict(zip(ks, outs))

    def _round(self) -> None:
        """Advance every unfinished panel by one step."""
        pending = {k: self._resume(k, _GO) for k in range(len(self.panels)) if not self.done[k]}
        while pending:
            for k, message in list(pending.items()):
                if message[0] == "step":
                    self.steps[k] = message[1]
                    del pending[k]
                elif message[0] == "done":
                    self.done[k] = True
                    del pending[k]
                elif message[0] == "error":
                    self.done[k] = True
                    raise message[1]
            if pending:
                answers = self._network(pending)
                pending = {k: self._resume(k, answers[k]) for k in pending}

    def __iter__(self) -> Iterator[list[Step]]:
        if not self._threads:
            self._threads = [threading.Thread(target=_panel_thread, args=(run, ch), daemon=True,
                                              name=f"compare-panel-{k + 1}")
                             for k, (run, ch) in enumerate(zip(self._runs, self._channels))]
            for th in self._threads:
                th.start()
        try:
            while not all(self.done):
                self._round()
                if all(self.done):
                    break
                self.rounds += 1
                yield list(self.steps)
        finally:
            self.close()

    def close(self) -> None:
        """Stop every panel thread still waiting (idempotent)."""
        for ch, th in zip(self._channels, self._threads):
            if th.is_alive():
                ch.to_panel.put(_STOP)
        for th in self._threads:
            th.join(timeout=5)


def compare(model, panels: list[Panel | dict], *, seed: int, n: int = 1, device=None) -> Comparison:
    """``Comparison(model, panels, seed=seed, n=n)``: lock-step runs of ``panels`` from the same seed; a panel
    whose ``model`` is set runs that model instead of ``model``."""
    return Comparison(model, panels, seed=seed, n=n, device=device)
