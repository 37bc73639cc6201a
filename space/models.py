"""Which checkpoints the app offers, and a small cache of loaded models.

Every checkpoint in the folder is verified before it is offered — its card parses, the weights' sha256 matches the
card, safetensors parses them and they fit the card's architecture — at start-up and again whenever one of its two
files changes (a new export replaces them). A damaged one (tampered, truncated, missing its weights or its card) is
logged with the reason and left out; the intact ones are served.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import engine
from engine.checkpoints import NAME_PATTERN, checkpoint_dir
from engine.classifier import load_classifier

from .engine_thread import in_passing_thread

log = logging.getLogger("denoisery")
# what loading a damaged checkpoint raises: engine's CheckpointError, or a card with missing or mistyped fields
LOAD_ERRORS = (engine.CheckpointError, ValueError, KeyError, TypeError, OSError)


class ModelStore:
    """Models in one checkpoint directory. ``image_models()`` have (C, H, W) data, ``toy_models()`` (2,)."""

    def __init__(self, directory=None, max_loaded: int = 4, background_compile: bool = False,
                 precision: str = "auto"):
        self.directory = Path(checkpoint_dir(directory))
        self.max_loaded = max_loaded
        self.background_compile = background_compile  # engine.load_served's: torch.compile off the request path
        self.precision = precision  # engine.load_served's: the compiled graph's (auto: bfloat16 where native)
        self._cache: OrderedDict = OrderedDict()  # (name, files' signature) → loaded model, least recent first
        self._lock = threading.RLock()
        self._classifiers: dict = {}
        self._checked: dict[str, tuple] = {}  # name → (files' signature, kind, problem or None)
        self._said_withdrawn: set[str] = set()  # withdrawn models the log has named
        self.verify()

    # ------------------------------------------------------------------------------------ verification ---

    def _files(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.json", self.directory / f"{name}.safetensors"

    def _signature(self, name: str) -> tuple:
        """(mtime, size) of the card and the weights; None for a missing file. A new export changes it."""
        out = []
        for path in self._files(name):
            try:
                st = path.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def _check(self, name: str) -> tuple[str | None, str | None]:
        """(kind, problem) of one checkpoint: loads it fully once per version of its files."""
        sig = self._signature(name)
        known = self._checked.get(name)
        if known and known[0] == sig:
            return known[1], known[2]
        card, weights = self._files(name)
        kind, problem, model = None, None, None
        if not card.is_file():
            problem = f"weights file {weights.name} has no model card {card.name}"
        elif not weights.is_file():
            problem = f"model card {card.name} has no weights file {weights.name}"
        else:
            try:
                kind = engine.model_card(name, self.directory).get("kind", "denoiser")
                if kind == "classifier":  # kept: classifier_for serves this very load
                    self._keep_classifier((name, sig), self._load_classifier(name))
                elif kind == "denoiser":
                    model = self._load_model(name)
                else:
                    problem = f"unknown kind {kind!r} in its card"
            except LOAD_ERRORS as err:
                problem = str(err)
        if problem:
            log.error("checkpoint %s in %s is not offered: %s", name, self.directory, problem)
        elif model is not None:
            self._remember((name, sig), model)
        self._checked[name] = (sig, kind, problem)
        return kind, problem

    def _load_model(self, name: str):
        """``engine.load_served`` in a thread of its own (``in_passing_thread``: the app's model work stays on one
        thread's OpenMP team)."""
        return in_passing_thread(engine.load_served, name, directory=self.directory,
                                 background_compile=self.background_compile, precision=self.precision)

    def _load_classifier(self, name: str):
        """``load_classifier`` in a thread of its own, like ``_load_model``."""
        return in_passing_thread(load_classifier, name, self.directory)

    def verify(self) -> dict[str, str]:
        """Check every checkpoint in the folder (only those whose files changed since the last check are loaded
        again); returns the damaged ones, {name: problem}."""
        if not self.directory.is_dir():
            return {}
        stems = {p.stem for p in self.directory.glob("*.json")} | {p.stem for p in self.directory.glob("*.safetensors")}
        names = sorted(s for s in stems if NAME_PATTERN.match(s))
        with self._lock:
            for gone in set(self._checked) - set(names):
                del self._checked[gone]
            return {name: problem for name in names for _, problem in [self._check(name)] if problem}

    def skipped(self) -> list[str]:
        """Names of the checkpoints left out as damaged (the reasons are in the log)."""
        return sorted(self.verify())

    def _names(self, kind: str) -> list[str]:
        with self._lock:
            self.verify()
            return sorted(n for n, (_, k, problem) in self._checked.items() if k == kind and problem is None)

    def names(self) -> list[str]:
        """The intact denoising models the app offers: one whose card says ``withdrawn`` (why it falls short of the
        results page's bars) is left out of every picker, and the log says why; the report still scores it."""
        intact = self._names("denoiser")
        held_back = self._held_back(intact)
        for name in held_back.keys() - self._said_withdrawn:
            self._said_withdrawn.add(name)
            log.info("checkpoint %s is not offered: %s", name, held_back[name])
        return [name for name in intact if name not in held_back]

    def withdrawn(self) -> dict[str, str]:
        """{name: why} of the intact denoising models that ``names`` leaves out (their cards' ``withdrawn``)."""
        return self._held_back(self._names("denoiser"))

    def _held_back(self, names: list[str]) -> dict[str, str]:
        return {name: why for name in names for why in [self._card_field(name, "withdrawn")] if why is not None}

    def _card_field(self, name: str, key: str):
        try:
            return self.card(name).get(key)
        except Exception:  # an unreadable card is the damage check's business
            return None

    # ---------------------------------------------------------------------------------------- offering ---

    def card(self, name: str) -> dict:
        return engine.model_card(name, self.directory)

    def sampling(self, name: str) -> dict | None:
        """How the model's card says to sample it (``{"sampler", "schedule", "steps": [...]}``: a distilled
        student's own few steps, engine/distill.py), or None when it says nothing."""
        return self._card_field(name, "sampling")

    def classes(self, name: str) -> list[str]:
        """The class names a conditional model takes as labels 0…k−1 ([] for an unconditional model)."""
        card = self.card(name)
        k = int(card.get("arch", {}).get("config", {}).get("num_classes", 0))
        names = (card.get("data") or {}).get("classes") or []
        return list(names) if len(names) == k else [str(i) for i in range(k)]

    def _shape(self, name: str):
        try:
            return tuple(self.card(name).get("data_shape", ()))
        except Exception:  # an unreadable card: the model is not offered
            return None

    def image_models(self) -> list[str]:
        return [m for m in self.names() if (s := self._shape(m)) and len(s) == 3]

    def toy_models(self) -> list[str]:
        return [m for m in self.names() if self._shape(m) == (2,)]

    def classifier_for(self, name: str):
        """The evaluator's classifier for the model's dataset (``DATASET-classifier``), or None if none is shipped
        intact (a damaged one is logged when it is found, and its figure is left out)."""
        dataset = self.card(name).get("data", {}).get("dataset")
        clf_name = f"{dataset}-classifier"
        if clf_name not in self._names("classifier"):
            return None
        with self._lock:
            key = (clf_name, self._checked[clf_name][0])
            if key not in self._classifiers:
                try:
                    self._keep_classifier(key, self._load_classifier(clf_name))
                except LOAD_ERRORS as err:  # replaced since it was verified
                    log.error("classifier %s could not be loaded: %s", clf_name, err)
                    return None
            return self._classifiers[key]

    def _keep_classifier(self, key: tuple, classifier) -> None:
        """Cache ``classifier`` under (name, files' signature), dropping older versions of the same name."""
        for old in [k for k in self._classifiers if k[0] == key[0]]:
            del self._classifiers[old]
        self._classifiers[key] = classifier

    def _remember(self, key: tuple, model) -> None:
        for k in [k for k in self._cache if k[0] == key[0]]:
            del self._cache[k]
        self._cache[key] = model
        while len(self._cache) > self.max_loaded:
            self._cache.popitem(last=False)

    def load(self, name: str):
        """The model, loaded once per version of its files; ValueError for a name that is not an intact model,
        ``engine.CheckpointError`` if its files were damaged after they were verified."""
        with self._lock:
            if name not in self.names():
                known = ", ".join(self.names()) or "none"
                raise ValueError(f"unknown model {name!r}; models available: {known}")
            key = (name, self._checked[name][0])
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            model = self._load_model(name)
            self._remember(key, model)
            return model
