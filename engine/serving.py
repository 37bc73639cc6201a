"""Serving a model: the inference settings that change speed, not what is computed — channels-last memory format,
``torch.compile`` off the request path, bfloat16 where the hardware runs it natively. The one module that knows
about them; the models below it (engine/models.py) call their network plainly, and a served model is the same model
class over a ``ServedNetwork``. The measurements behind each choice are in docs/PERFORMANCE.md (Levers).

Compile in a background thread, run eager until then. ``torch.compile`` makes the U-Net's calls faster, but its
first call per input shape takes seconds with inductor's disk cache warm and tens of seconds with it empty, and
every new process pays it again; a Generate run is 20–1000 network calls, so compiling in the request path would
make the first request of every shape far slower than eager. ``BackgroundCompiled`` instead answers every call
at once: a call whose shape has a finished compiled graph runs it; any other call runs the eager network and, the
first time its shape is seen, queues that shape for compilation on a daemon thread (one at a time; it ends when
the queue is empty). Once the graph is ready, later calls of that shape use it. In float32 the compiled graph
computes the same function (its outputs differ from eager by float rounding), so a run's samples do not depend on
whether the graph was ready; in bfloat16 (below) they do, by that precision's rounding.

Compiling still shares the machine with the requests. Dynamo and inductor are mostly Python, and a request needs
the GIL back after every torch operator, so while this process compiles, requests wait for the GIL. So a network
loaded from a checkpoint (``load_served`` gives its ``source``) has each shape compiled in a child process first
(``compile_for_parent``): the child, with its own GIL, fills inductor's on-disk caches (FX graph and AOT autograd)
and this process then only loads the graph from them, a short GIL-holding window instead of the whole compile. The
compile thread also runs at a lower CPU priority (nice +10, Linux; the child and its C++ compilers inherit it), and
while it compiles here the interpreter switches threads more often, so requests get the GIL back sooner. A child
that fails (no process can be started, a changed checkpoint) is logged and the compile runs here in full.

Every compiled call runs in inference mode, whatever the caller's autograd mode, so one graph per shape serves them
all. Dynamo guards a graph on the autograd mode it was compiled in; when each mode had a graph of its own, a shape
first called under ``no_grad`` (a benchmark's or a script's warm-up) compiled a graph that ``generate``'s calls, in
inference mode, never used: ``wait()`` returned, and the runs after it went eager until a second compile of the same
shape finished — a warm served model that timed like eager. A call outside inference mode that needs no autograd is
therefore run inside it and its output copied out of it (an inference tensor could not be updated in place there).
A call that does need autograd (grad mode on and an input or a weight requiring grad, as the likelihood's divergence
does) runs eager: the graphs compute no backward, and one compiled for inputs without grad was recompiled in the
caller's thread.

Only batches up to ``max_batch`` are compiled: that is where the speed-up was measured, and dynamo keeps a bounded
number of graphs per function. If compiling fails (no C++ compiler, an unsupported platform), the failure is logged
once and every later call stays eager.

A served network is fixed, and the compile says so (``COMPILE_OPTIONS``): dynamo keeps no guards on the module (a
check of each of its ~100 parameters on every call), and ``cpp_wrapper`` runs the graph's kernel calls from C++
instead of Python. Each ``BackgroundCompiled`` keeps its graphs apart (``isolate_recompiles``): without it, dynamo
counts every graph of one class's ``forward`` together — three U-Nets × batch shapes — and after 8 silently runs
the rest eager; and without module guards, two U-Nets would share one graph.

With ``precision="bfloat16"`` the graph runs the network under bfloat16 autocast (convolutions and matrix products
in bfloat16, the output back in float32): faster where the hardware has bfloat16 arithmetic, most at larger
batches, with the evaluator's FD unchanged; a seed's images differ from a float32 run's by a fraction of a grey
level on average. ``"auto"`` picks bfloat16 only where the hardware runs it natively (``native_bfloat16``; elsewhere
it is emulated and slower than float32), and only from batch 2 on (``BFLOAT16_FROM_BATCH``): at batch 1 it was no
faster than the float32 graph, and a one-image run then stays float32 throughout, the same picture as a script's.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque

import torch
from torch import nn

from .checkpoints import checkpoint_dir, load_model
from .models import DenoisingModel

log = logging.getLogger(__name__)
COMPILE_NICENESS = 10  # added to the compile thread's nice value: it takes the CPU time requests leave idle
COMPILE_SWITCH_INTERVAL_S = 1e-4  # sys.setswitchinterval while compiling (default 5e-3): requests get the GIL back
_ONE_COMPILE_AT_A_TIME = threading.Lock()  # across models: the switch interval is the process's
PRECISIONS = ("auto", "float32", "bfloat16")
BFLOAT16_FROM_BATCH = 2  # "auto" on bfloat16 hardware: the float32 graph below this many rows (no faster there)
COMPILE_OPTIONS = {"cpp_wrapper": True, "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
_NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}
CHILD_TIMEOUT_S = 900  # a child compile taking longer is abandoned (the compile then runs in the parent)
_CHILD = "import json, sys; from engine.serving import compile_for_parent; compile_for_parent(json.loads(sys.argv[1]))"


def native_bfloat16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` runs bfloat16 arithmetic natively: a CUDA GPU that supports it, or an x86 CPU with
    AVX-512 BF16 or AMX (read from /proc/cpuinfo, so Linux only; False wherever it cannot be told)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(_NATIVE_BF16_CPU_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """"float32" or "bfloat16" for a requested ``precision`` (one of PRECISIONS); "auto" is bfloat16 where
    ``native_bfloat16(device)``. Raises ValueError for anything else."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision


class _Autocast(nn.Module):
    """``net`` under bfloat16 autocast, its output back in the input's dtype."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self.net(x, log_snr)
        return out.to(x.dtype)


def _trace_fx_once() -> None:
    """Inductor makes one fx GraphModule per process by symbolic tracing (torch._inductor.loop_body's
    ``InterpreterShim``), the first time it generates code. While fx traces, it replaces ``nn.Module.__call__`` for
    every thread, so an eager network call in a request thread at that moment failed ("module is not installed as a
    submodule"; seen through the app during its first compile). Done here, when a model is loaded, before any compile
    thread runs, it overlaps no request. A torch without that cache simply skips it."""
    try:
        from torch._inductor.loop_body import InterpreterShim
        InterpreterShim._dummy_gm()
    except (ImportError, AttributeError):
        pass


def _needs_autograd(net: nn.Module, x: torch.Tensor, log_snr: torch.Tensor) -> bool:
    """Whether a call of ``net`` now must record autograd: grad mode on (outside inference mode) and an input or a
    weight that requires grad. Any other call computes the same output in inference mode."""
    return torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and (
        x.requires_grad or log_snr.requires_grad or any(p.requires_grad for p in net.parameters()))


class BackgroundCompiled:
    """Calls ``net(x, log_snr)`` through a ``torch.compile``-d copy once the copy is ready for that input shape.

    ``precision`` is the compiled graphs': "float32", "bfloat16" (autocast), or "auto": where the device runs
    bfloat16 natively, float32 below ``BFLOAT16_FROM_BATCH`` rows and bfloat16 from there on, else float32
    (``precision_for`` tells which for a batch size). Eager calls are always the network itself. ``wait()`` blocks
    until every queued shape has been compiled (benchmarks and tests use it to time or check the warm state)."""

    def __init__(self, net: nn.Module, max_batch: int = 16, precision: str = "float32",
                 source: dict | None = None):
        _trace_fx_once()
        self.net = net
        self.max_batch = max_batch
        self.precision_arg = precision
        self.source = source  # load_served's arguments for ``net``: each shape is first compiled in a child process
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        bfloat16 = resolve_precision(precision, device) == "bfloat16"
        # the first batch size served in bfloat16 (None: none is)
        self.bfloat16_from = (BFLOAT16_FROM_BATCH if precision == "auto" else 1) if bfloat16 else None
        wanted = {self.precision_for(n) for n in range(1, max_batch + 1)}
        # each its own graphs (isolate_recompiles), up to one per batch shape (and input layout)
        self.graphs = {p: torch.compile(_Autocast(net) if p == "bfloat16" else net, dynamic=False,
                                        options=COMPILE_OPTIONS, isolate_recompiles=True,
                                        recompile_limit=4 * max_batch) for p in sorted(wanted)}
        self.ready: set[tuple] = set()
        self.queued: set[tuple] = set()
        self.failed: BaseException | None = None
        self.frozen = False  # see freeze()
        self._lock = threading.Lock()
        self._jobs: deque = deque()
        self._idle = threading.Event()  # clear while a worker thread runs; it ends when the queue is empty
        self._idle.set()
        self._worker: threading.Thread | None = None

    def precision_for(self, batch: int) -> str:
        """"float32" or "bfloat16": the arithmetic of the compiled graph for ``batch`` rows."""
        return "bfloat16" if self.bfloat16_from is not None and batch >= self.bfloat16_from else "float32"

    @property
    def precision(self) -> str:
        """The compiled graphs' arithmetic, in words."""
        if self.bfloat16_from is None:
            return "float32"
        if self.bfloat16_from == 1:
            return "bfloat16"
        return f"bfloat16 from batch {self.bfloat16_from}, float32 below"

    def _graph(self, x: torch.Tensor):
        return self.graphs[self.precision_for(x.shape[0])]

    @staticmethod
    def key(x: torch.Tensor, log_snr: torch.Tensor) -> tuple:
        """What a compiled graph is specialised on (every graph runs in inference mode)."""
        return tuple(x.shape), tuple(x.stride()), x.dtype, x.device, tuple(log_snr.shape), log_snr.dtype

    def __call__(self, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        """The network's output, through the compiled graph of the call's shape once it is ready; a call in another
        autograd mode runs in inference mode (one graph serves every mode), one that needs autograd runs eager."""
        if torch.is_inference_mode_enabled():
            return self._inference_call(x, log_snr)
        if _needs_autograd(self.net, x, log_snr):
            return self.net(x, log_snr)
        with torch.inference_mode():
            out = self._inference_call(x, log_snr)
        return out.clone()  # a normal tensor again: the caller may update it in place outside inference mode

    def _inference_call(self, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        # a tensor made outside inference mode (a run's x_T reaches the network unchanged at its first step)
        # carries other dispatch keys: the graph's guards would fail and dynamo would recompile in this thread
        x, log_snr = (v if v.is_inference() else v.clone() for v in (x, log_snr))
        key = self.key(x, log_snr)
        if key in self.ready:
            return self._graph(x)(x, log_snr)
        if self.failed is None and not self.frozen and x.shape[0] <= self.max_batch:
            with self._lock:
                if key not in self.queued:
                    self.queued.add(key)
                    self._jobs.append((key, torch.zeros_like(x), log_snr.detach().clone()))
                    if self._idle.is_set():
                        self._idle.clear()
                        self._worker = threading.Thread(target=self._work, name="engine-compile", daemon=True)
                        self._worker.start()
        return self.net(x, log_snr)

    def _work(self) -> None:
        try:  # Linux: a thread's nice value is its own; requests keep priority over the compile (and its compilers)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPILE_NICENESS)
        except (AttributeError, OSError):  # not Linux, or not allowed: the compile runs at normal priority
            pass
        while True:
            with self._lock:
                if not self._jobs:
                    self._idle.set()
                    return
                key, x, log_snr = self._jobs.popleft()
            if self.failed is None:
                with _ONE_COMPILE_AT_A_TIME:
                    t0 = time.perf_counter()
                    in_child = self.source is not None and self._compile_in_child(key)
                    t1 = time.perf_counter()
                    interval = sys.getswitchinterval()
                    sys.setswitchinterval(COMPILE_SWITCH_INTERVAL_S)
                    try:
                        with torch.inference_mode():
                            self._graph(x)(x, log_snr)
                        self.ready.add(key)
                        log.info("batch %d compiled (%s): %s%.1f s in this process", key[0][0],
                                 self.precision_for(key[0][0]), f"{t1 - t0:.1f} s in a child process, " if in_child
                                 else "", time.perf_counter() - t1)
                    except Exception as err:  # noqa: BLE001 - any failure means: stay eager
                        self.failed = err
                        log.warning("torch.compile is unavailable here (%s: %s); the network stays eager",
                                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                    finally:
                        sys.setswitchinterval(interval)

    def _compile_in_child(self, key: tuple) -> bool:
        """Compile ``key``'s graph in a child process first (``compile_for_parent``, at this thread's nice
        value), which fills inductor's on-disk caches; the compile in this process then loads the result instead of
        generating it. The child holds its own GIL: a request here waits for the GIL only during the short cached
        compile. False (logged; the compile here still runs in full) if the child failed."""
        shape, stride, dtype, device, lshape, ldtype = key
        spec = {**self.source, "precision": self.precision_arg,
                "max_batch": self.max_batch, "threads": torch.get_num_threads(), "shape": list(shape),
                "stride": list(stride), "dtype": str(dtype).removeprefix("torch."), "device": str(device),
                "log_snr_shape": list(lshape), "log_snr_dtype": str(ldtype).removeprefix("torch.")}
        try:
            done = _run_child(spec)
            if done.returncode == 0:
                return True
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        except (OSError, subprocess.TimeoutExpired) as err:
            why = err
        log.info("compiling batch %s in a child process failed (%s); compiling here", shape[0], why)
        return False

    def freeze(self) -> None:
        """Queue no further shapes: a call whose shape has no finished graph runs eager from now on. A batch job
        that has compiled its shapes up front freezes them, so that no call's arithmetic depends on when a
        background compile finishes (in bfloat16 it would)."""
        self.frozen = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queued shapes are compiled (or compiling failed); False if ``timeout`` ran out first."""
        if not self._idle.wait(timeout):
            return False
        # and until the worker thread has ended: a process that exits while a daemon thread is still inside torch's
        # C++ code (here, its thread teardown) is aborted ("terminate called without an active exception")
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        return True


def _run_child(spec: dict) -> subprocess.CompletedProcess:
    """Run ``compile_for_parent(spec)`` in a fresh interpreter, from the project root (a test replaces this one
    launch; replacing ``subprocess.run`` would also break inductor's own compiler calls)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], cwd=root,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)


class ServedNetwork(nn.Module):
    """A network as served: its inputs made contiguous in ``memory_format`` (the weights' format), and each call
    through ``compiled`` (a ``BackgroundCompiled`` of the same network) when there is one. Calls with a class label
    run eager: the graphs are compiled for the unconditional signature, which every unconditional model and a
    conditional model's ∅ branch use."""

    def __init__(self, net: nn.Module, memory_format: torch.memory_format = torch.contiguous_format,
                 compiled: BackgroundCompiled | None = None):
        super().__init__()
        self.net = net
        self.memory_format = memory_format
        self.compiled = compiled

    def forward(self, x: torch.Tensor, log_snr: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if label is not None:  # a class-conditional call: eager (the compiled graphs take no label)
            return self.net(x, log_snr, label)
        return (self.compiled or self.net)(x, log_snr)


def serve(model: DenoisingModel, *, channels_last: bool = True, background_compile: bool = False,
          precision: str = "auto", max_batch: int = 16, source: dict | None = None) -> DenoisingModel:
    """``model`` for inference, as its own class over a ``ServedNetwork`` of ``model.net`` (the same weights), in
    eval mode: the same ε̂, computed faster.

    ``channels_last``: image models (data_shape (C, H, W)) keep the weights and inputs in channels-last (NHWC)
    memory format, for oneDNN's / cuDNN's NHWC convolutions; the same values to float rounding, the weights
    converted in place. ``background_compile``: calls go through ``torch.compile``-d graphs once a background
    thread has compiled their batch shape (up to ``max_batch``), eager until then — for a long-running server,
    where the compile is paid once; a short script would exit before it pays back. ``precision``: the compiled
    graphs' (one of PRECISIONS; eager calls are always float32); "auto" considers bfloat16 only for image models
    (the U-Net's convolutions are where it is faster; a toy MLP's calls are a few small matrix products).
    ``source``: ``load_served``'s arguments for the checkpoint the network came from, if any; each batch shape is
    then compiled in a child process first."""
    device = next((p.device for p in model.net.parameters()), torch.device("cpu"))
    resolve_precision(precision, device)  # a bad value is an error whether or not the model compiles
    image = len(model.data_shape) == 3
    memory_format = torch.channels_last if channels_last and image else torch.contiguous_format
    if memory_format == torch.channels_last:
        model.net.to(memory_format=memory_format)
    compiled = None
    if background_compile:
        compiled = BackgroundCompiled(model.net, max_batch=max_batch, precision="float32" if precision == "auto" and
                                      not image else precision, source=source)
    served = type(model)(ServedNetwork(model.net, memory_format, compiled), model.data_shape, model.card)
    return served.eval().requires_grad_(False)


def load_served(name: str, device: str | torch.device = "cpu", directory=None, *, channels_last: bool = True,
                background_compile: bool = False, precision: str = "auto") -> DenoisingModel:
    """``serve`` the checkpoint ``name`` (``checkpoints.load_model``: sha256 checked, safetensors only) on
    ``device``. With ``background_compile`` each batch shape is compiled in a child process first, which loads
    the same checkpoint with the same settings."""
    resolve_precision(precision, device)
    source = {"name": name, "directory": str(checkpoint_dir(directory)), "channels_last": channels_last}
    return serve(load_model(name, device, directory), channels_last=channels_last,
                 background_compile=background_compile, precision=precision, source=source)


def compile_for_parent(spec: dict) -> None:
    """A child process's side of ``BackgroundCompiled._compile_in_child``: load the checkpoint as the parent did
    (``load_served`` with the parent's ``source``), rebuild its BackgroundCompiled (without a source: no grandchild)
    and compile the one graph ``spec`` describes, with the parent's intra-op thread count and input layout, in
    inference mode as every graph is — the same graph, so the same entries in inductor's on-disk caches."""
    torch.set_num_threads(spec["threads"])
    model = load_served(spec["name"], spec["device"], spec["directory"], channels_last=spec["channels_last"])
    compiled = BackgroundCompiled(model.net.net, max_batch=spec["max_batch"], precision=spec["precision"])
    with torch.inference_mode():
        x = torch.empty_strided(spec["shape"], spec["stride"], dtype=getattr(torch, spec["dtype"]),
                                device=spec["device"]).zero_()
        log_snr = torch.zeros(spec["log_snr_shape"], dtype=getattr(torch, spec["log_snr_dtype"]),
                              device=spec["device"])
        compiled._graph(x)(x, log_snr)
