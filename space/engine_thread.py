"""Long-lived engine threads for the app's model work (``on_engine_thread``), each request pinned to one of them.

Why: PyTorch on CPU splits an operator over cores with OpenMP, and GNU OpenMP (the runtime PyTorch's wheels ship)
keeps a team of worker threads for every thread that starts parallel work, for as long as that thread lives. Gradio
calls a handler — and each ``next()`` of a streaming handler — on whichever thread of its pool is free, so after a
few requests several teams exist. Once they hold more threads than the machine has cores, libgomp stops letting idle
workers spin and puts them to sleep after every parallel region: every operator then pays a wake-up, in every thread.
Measured on 2 cores (bench "levers", where the app's model work runs), a 50-step n=4 DDIM run of the compiled
network took 1.0–1.2 s that way against 0.4–0.5 s with one team.

So the app keeps ``cores // torch.get_num_threads()`` engine threads (at least one), each a single-thread executor
with its own lasting team, and runs a whole request on one of them (the least busy when it starts): teams never
hold more threads than there are cores, and with app.py's default of one intra-op thread, two requests run side by
side on two cores. Checkpoints load in a thread of their own that ends with the load, taking its team along
(``in_passing_thread``; the model store loads while holding its lock, from any thread).

Gradio's request context (``gr.Warning``, ``gr.Progress``, the event's id) lives in context variables: every piece
of work runs in a copy of its caller's context.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_END = object()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _EngineThreads:
    """``count`` single-thread executors and how many requests each is serving."""

    def __init__(self, count: int):
        self.executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{k}", initializer=self._started)
                          for k in range(count)]
        self.serving = [0] * count
        self.idents: set[int] = set()
        self._lock = threading.Lock()

    def _started(self) -> None:
        self.idents.add(threading.get_ident())

    def checkout(self) -> int:
        with self._lock:
            k = min(range(len(self.serving)), key=self.serving.__getitem__)
            self.serving[k] += 1
            return k

    def release(self, k: int) -> None:
        with self._lock:
            self.serving[k] -= 1


_threads: _EngineThreads | None = None
_threads_lock = threading.Lock()


def engine_threads() -> _EngineThreads:
    """The process's engine threads, made at first use: as many as fit the cores at the intra-op thread count then
    set (app.py sets it before serving)."""
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = _EngineThreads(max(1, _cores() // torch.get_num_threads()))
        return _threads


def _on(k: int, fn, /, *args, **kwargs):
    ctx = contextvars.copy_context()
    return engine_threads().executors[k].submit(ctx.run, fn, *args, **kwargs).result()


def run(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` on an engine thread, in the caller's context; returns its result or raises its
    exception. Called from an engine thread it runs in place (a handler's own model calls)."""
    threads = engine_threads()
    if threading.get_ident() in threads.idents:
        return fn(*args, **kwargs)
    k = threads.checkout()
    try:
        return _on(k, fn, *args, **kwargs)
    finally:
        threads.release(k)


def iterate(gen):
    """The items of generator ``gen``, every ``next()`` run on the same engine thread. Closing this generator
    (Gradio does when a request is stopped or its client goes away) closes ``gen`` there too."""
    threads = engine_threads()
    if threading.get_ident() in threads.idents:
        yield from gen
        return
    k = threads.checkout()
    try:
        while (item := _on(k, next, gen, _END)) is not _END:
            yield item
    finally:
        try:
            _on(k, gen.close)
        finally:
            threads.release(k)


def in_passing_thread(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a new thread that ends when it returns; its result, or its exception raised here.
    An OpenMP team that ``fn`` starts ends with that thread instead of lasting beside the engine threads'."""
    out: dict = {}

    def body():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as err:  # re-raised in the caller
            out["error"] = err

    worker = threading.Thread(target=body, name="engine-load", daemon=True)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def on_engine_thread(fn):
    """Decorator: each call of ``fn`` (a function or a generator function) runs on one engine thread. The wrapper
    keeps ``fn``'s signature (Gradio reads the API's parameter names from it) and stays a generator function when
    ``fn`` is one (Gradio streams only those)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streamed(*args, **kwargs):
            yield from iterate(fn(*args, **kwargs))
        return streamed

    @functools.wraps(fn)
    def called(*args, **kwargs):
        return run(fn, *args, **kwargs)
    return called
