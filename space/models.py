"""Which checkpoints the app offers, and a small cache of loaded models (reloaded when a file changes)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import engine
from engine.checkpoints import checkpoint_dir
from engine.evaluate import load_classifier


class ModelStore:
    """Models in one checkpoint directory. ``image_models()`` have (C, H, W) data, ``toy_models()`` (2,)."""

    def __init__(self, directory=None, max_loaded: int = 4):
        self.directory = Path(checkpoint_dir(directory))
        self.max_loaded = max_loaded
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._classifiers: dict = {}

    def names(self) -> list[str]:
        return engine.list_models(self.directory)

    def card(self, name: str) -> dict:
        return engine.model_card(name, self.directory)

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
        """The evaluator's classifier for the model's dataset (``DATASET-classifier``), or None if none is shipped."""
        dataset = self.card(name).get("data", {}).get("dataset")
        clf_name = f"{dataset}-classifier"
        if clf_name not in engine.list_models(self.directory, kind="classifier"):
            return None
        with self._lock:
            if clf_name not in self._classifiers:
                self._classifiers[clf_name] = load_classifier(clf_name, self.directory)
            return self._classifiers[clf_name]

    def load(self, name: str):
        """The model, loaded once per version of its weights file (the key includes the file's mtime)."""
        if name not in self.names():
            known = ", ".join(self.names()) or "none"
            raise ValueError(f"unknown model {name!r}; models available: {known}")
        path = self.directory / f"{name}.safetensors"
        key = (name, path.stat().st_mtime_ns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            model = engine.load_model(name, directory=self.directory)
            for k in [k for k in self._cache if k[0] == name]:
                del self._cache[k]
            self._cache[key] = model
            while len(self._cache) > self.max_loaded:
                self._cache.popitem(last=False)
            return model
