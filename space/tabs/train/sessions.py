"""The Train tab's models, one per browser session, and the server-wide count of trainings: a training request is
refused, before the queue, when its session already trains (one per session at a time) or when MAX_TRAININGS run
on the server; the least recently used idle session's model goes when MAX_SESSIONS are kept."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import gradio as gr
import numpy as np

from ...settings import MAX_SESSIONS, MAX_TRAININGS


@dataclass
class Session:
    """One browser session's playground: its model (None before the first training), the training data, whether
    it is training now and the flag that stops it."""

    model: object = None
    points: np.ndarray | None = None
    y_down: bool = False
    training: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    step: int = 0


class Sessions:
    """The sessions' playgrounds (LRU, at most MAX_SESSIONS) and the server-wide count of trainings."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_trainings: int = MAX_TRAININGS):
        self.max_sessions, self.max_trainings = max_sessions, max_trainings
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Session | None:
        with self._lock:
            return self._sessions.get(key)

    def running(self) -> int:
        with self._lock:
            return sum(s.training for s in self._sessions.values())

    def busy(self, key: str) -> str | None:
        """Why a training for session ``key`` cannot start now (None when it can)."""
        with self._lock:
            return self._busy(key)

    def _busy(self, key: str) -> str | None:
        s = self._sessions.get(key)
        if s is not None and s.training:
            return ("a training is already running in this browser session: wait for it to end or press Stop "
                    "(one training per session at a time)")
        if sum(s.training for s in self._sessions.values()) >= self.max_trainings:
            return (f"the server is busy: {self.max_trainings} trainings are running (at most {self.max_trainings} "
                    f"at once); try again in a minute")
        return None

    def start(self, key: str) -> Session:
        """Mark session ``key`` as training (made if new), or gr.Error when ``busy``."""
        with self._lock:
            why = self._busy(key)
            if why:
                raise gr.Error(why)
            s = self._sessions.get(key) or Session()
            s.training, s.step = True, 0
            s.stop.clear()
            self._sessions[key] = s
            self._sessions.move_to_end(key)
            idle = [k for k, v in self._sessions.items() if not v.training]
            while len(self._sessions) > self.max_sessions and idle:
                del self._sessions[idle.pop(0)]
            return s

    def finish(self, key: str) -> None:
        with self._lock:
            s = self._sessions.get(key)
            if s is not None:
                s.training = False

    def forget(self, key: str) -> None:
        """Drop session ``key``'s model (its page closed); a training still running is stopped."""
        with self._lock:
            s = self._sessions.pop(key, None)
        if s is not None:
            s.stop.set()
