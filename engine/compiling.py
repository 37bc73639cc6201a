"""torch.compile for a long-running server, without the wait: compile in a background thread, run eager until then.

``torch.compile`` made the mnist U-Net 1.43× faster at batch 1 on a 2-core CPU (docs/PERFORMANCE.md, Levers), but
its first call per input shape costs ~3 s with inductor's disk cache warm and ~30 s with it empty, and every new
process pays it again. A Generate run is 20–1000 network calls (0.1–6 s), so compiling in the request path would
make the first request of every shape far slower than eager. ``BackgroundCompiled`` instead answers every call
at once: a call whose shape has a finished compiled graph runs it; any other call runs the eager network and, the
first time its shape is seen, queues that shape for compilation on a daemon thread (one at a time; it ends when
the queue is empty). Once the graph is ready, later calls of that shape use it. The compiled graph computes the
same function (its outputs differ from eager by float rounding, ~4e-6 per call measured), so a run's samples do not
depend on whether the graph was ready.

Compiling still shares the machine with the requests. Its thread runs at a lower CPU priority (nice +10, Linux), and
while it compiles the interpreter switches threads every 0.1 ms instead of 5 ms: dynamo and inductor are mostly
Python, and a request, which needs the GIL back after every torch operator, waited up to 5 ms each time. Measured
through the app on the 2-core machine (one core busy with other work, inductor's cache empty): 100-step DDIM
requests during the first minute's compile took 0.8–1.5 s against 0.6–0.8 s with the app's --no-compile (with
the 5 ms interval: 10× slower), and 0.55 s once compiled.

Only batches up to ``max_batch`` are compiled: that is where the speed-up was measured (batch 16: 1.09×), and
dynamo keeps a bounded number of graphs per function. If compiling fails (no C++ compiler, an unsupported
platform), the failure is logged once and every later call stays eager.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque

import torch
from torch import nn

log = logging.getLogger(__name__)
COMPILE_NICENESS = 10  # added to the compile thread's nice value: it takes the CPU time requests leave idle
COMPILE_SWITCH_INTERVAL_S = 1e-4  # sys.setswitchinterval while compiling (default 5e-3): requests get the GIL back
_ONE_COMPILE_AT_A_TIME = threading.Lock()  # across models: the switch interval is the process's


def _mode_key() -> tuple[bool, bool]:
    """The autograd modes a compiled graph is guarded on: a call in another mode would recompile in the caller."""
    return torch.is_grad_enabled(), torch.is_inference_mode_enabled()


class BackgroundCompiled:
    """Calls ``net(x, log_snr)`` through a ``torch.compile``-d copy once the copy is ready for that input shape.

    ``wait()`` blocks until every queued shape has been compiled (benchmarks and tests use it to time or check the
    warm state). The wrapped network's parameters are shared, not copied."""

    def __init__(self, net: nn.Module, max_batch: int = 16):
        self.net = net
        self.max_batch = max_batch
        self.compiled = torch.compile(net, dynamic=False)
        self.ready: set[tuple] = set()
        self.queued: set[tuple] = set()
        self.failed: BaseException | None = None
        self._lock = threading.Lock()
        self._jobs: deque = deque()
        self._idle = threading.Event()  # clear while a worker thread runs; it ends when the queue is empty
        self._idle.set()

    @staticmethod
    def key(x: torch.Tensor, log_snr: torch.Tensor) -> tuple:
        return (tuple(x.shape), tuple(x.stride()), x.dtype, x.device, tuple(log_snr.shape), log_snr.dtype,
                *_mode_key())

    def __call__(self, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        key = self.key(x, log_snr)
        if key in self.ready:
            return self.compiled(x, log_snr)
        if self.failed is None and x.shape[0] <= self.max_batch:
            with self._lock:
                if key not in self.queued:
                    self.queued.add(key)
                    self._jobs.append((key, torch.zeros_like(x), log_snr.detach().clone()))
                    if self._idle.is_set():
                        self._idle.clear()
                        threading.Thread(target=self._work, name="engine-compile", daemon=True).start()
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
                grad, inference = key[-2], key[-1]
                with _ONE_COMPILE_AT_A_TIME:
                    interval = sys.getswitchinterval()
                    sys.setswitchinterval(COMPILE_SWITCH_INTERVAL_S)
                    try:
                        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                            self.compiled(x, log_snr)
                        self.ready.add(key)
                    except Exception as err:  # noqa: BLE001 - any failure means: stay eager
                        self.failed = err
                        log.warning("torch.compile is unavailable here (%s: %s); the network stays eager",
                                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                    finally:
                        sys.setswitchinterval(interval)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queued shapes are compiled (or compiling failed); False if ``timeout`` ran out first."""
        return self._idle.wait(timeout)
