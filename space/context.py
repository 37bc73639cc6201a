"""What every tab's handlers share: the model store, the budgets of one request, and the refusals that go with them
(an unknown or damaged model, a class or guidance scale the model cannot take, a request over the budget of network
evaluations, a second request of one kind from one browser session). Tabs receive one ``AppContext``."""
from __future__ import annotations

import contextlib
import logging
import threading

import gradio as gr

import engine

from .checks import as_float, as_int, engine_label
from .guard import shown
from .models import ModelStore
from .settings import MAX_GUIDANCE, MAX_NFE, NO_CLASS, RANDOM_CLASS, TIME_BUDGET_S

log = logging.getLogger("denoisery")


def session_key(request: gr.Request | None) -> str:
    """The browser session's key (one per page load); "local" for a call without a request (scripts, tests)."""
    return getattr(request, "session_hash", None) or "local"


class OnePerSession:
    """At most one request of a kind under way per browser session: a second one is refused (not queued), with
    ``busy``, the message saying why."""

    def __init__(self, busy: str):
        self.busy = busy
        self._running: set[str] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def claim(self, request: gr.Request | None):
        """Holds the session's place while the block runs; gr.Error when it is taken. A call without a browser
        session (a script's) is never refused."""
        session = getattr(request, "session_hash", None)
        with self._lock:
            if session is not None and session in self._running:
                raise gr.Error(self.busy)
            if session is not None:
                self._running.add(session)
        try:
            yield
        finally:
            if session is not None:
                with self._lock:
                    self._running.discard(session)


class AppContext:
    """The app's models (``store``) and each request's budgets: at most ``max_nfe`` network evaluations, checked
    before any work, and ``time_budget_s`` of wall time, checked as the work goes."""

    def __init__(self, store: ModelStore, *, max_nfe: int = MAX_NFE, time_budget_s: float = TIME_BUDGET_S):
        self.store = store
        self.max_nfe = max_nfe
        self.time_budget_s = time_budget_s

    def model_name(self, name, kind: str = "image") -> str:
        """``name`` if it is one of the intact models of ``kind`` ("image" or "toy") — a name, never a path — else
        gr.Error listing those models."""
        names = self.store.image_models() if kind == "image" else self.store.toy_models()
        if not names:
            what = "image" if kind == "image" else "2-D toy"
            raise gr.Error(f"no {what} model is available on this server: train one "
                           f"(python -m engine train --config engine/configs/...) or set ENGINE_CHECKPOINTS")
        if not isinstance(name, str) or name not in names:
            if isinstance(name, str) and name in self.store.withdrawn():  # read only for a refused name
                raise gr.Error(f"model {shown(name)} is not offered: it falls short of the results page's quality "
                               f"bar (the About tab says why); models available here: {', '.join(names)}")
            raise gr.Error(f"unknown model {shown(name)}; models available here: {', '.join(names)}")
        return name

    def model(self, name, kind: str = "image"):
        """The loaded model called ``name`` (checked by ``model_name``), or gr.Error. Messages name no server path
        (the log has the details)."""
        name = self.model_name(name, kind)
        try:
            return self.store.load(name)
        except (ValueError, engine.CheckpointError) as err:  # its files changed and no longer check out
            log.error("model %s could not be loaded: %s", name, err)
            raise gr.Error(f"model {name} cannot be loaded now: its checkpoint changed or is damaged; "
                           f"try another model") from None

    def image_model(self, name):
        """``model`` for a tab that works on images: gr.Error when the model's data are not (C, H, W) images."""
        net = self.model(name)
        if len(tuple(net.data_shape)) != 3:
            raise gr.Error(f"model {name} does not make images; choose an image model")
        return net

    def guidance(self, model, label, guidance_scale, where: str = "",
                 random_classes: bool = True) -> tuple[int | str | None, float]:
        """(the engine's label, w) for a checked model name: ``label`` is a class index of a conditional model,
        NO_CLASS (-1, the null class ∅) or, where ``random_classes`` (runs from noise), RANDOM_CLASS (-2: each
        image's class drawn from the seed, the pickers' default there; for an unconditional model it asks for no
        class, as -1 does); ``guidance_scale`` w in [0, MAX_GUIDANCE], other than 1 only with a class."""
        classes = self.store.classes(model)
        if not classes and label not in (NO_CLASS, None) and not (random_classes and label == RANDOM_CLASS):
            raise gr.Error(f"model {model} is unconditional: label must be {NO_CLASS} (none); pick a "
                           f"class-conditional model (e.g. mnist-cond) to ask for a class{where}")
        if not classes:  # the pickers' defaults (none, or random where a run starts from noise) ask for no class
            label = NO_CLASS
        lowest = RANDOM_CLASS if random_classes else NO_CLASS
        label = NO_CLASS if label is None else as_int(f"label{where}", label, lowest, len(classes) - 1)
        w = as_float(f"guidance_scale{where}", guidance_scale, 0.0, MAX_GUIDANCE)
        if label == NO_CLASS and w != 1:
            raise gr.Error(f"guidance_scale{where} {w:g} needs a class to steer towards: pick a class (label 0 to "
                           f"{max(len(classes) - 1, 0)}, or {RANDOM_CLASS} for random ones) or set guidance_scale to 1")
        return engine_label(label), w

    def check_budget(self, needs: str, evaluations: int, advice: str, why: str = "") -> None:
        """gr.Error when a request's ``evaluations`` (network evaluations, counted before any work) exceed the
        budget: "<needs> N network evaluations<why>; the limit per request is M: use fewer <advice>"."""
        if evaluations > self.max_nfe:
            raise gr.Error(f"{needs} {evaluations:,} network evaluations{why}; the limit per request is "
                           f"{self.max_nfe:,}: use fewer {advice}")

    def ended(self, done: bool) -> str:
        """A streamed run's first word: "done", or why it stopped early."""
        return "done" if done else f"stopped by the time budget ({self.time_budget_s:g} s per request)"
