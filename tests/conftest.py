import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Each test worker (pytest-xdist: pyproject.toml) its own Gradio cache folder, set before any test imports gradio:
# otherwise two workers' apps write one folder, identical results of two tests meet at one hashed path there, and a
# load test measures the other worker's files too.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _gradio = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(_gradio, os.environ["PYTEST_XDIST_WORKER"])

import torch  # noqa: E402

# The tests use tiny tensors: one intra-op thread is faster, and far faster when another process holds the
# other core (two threads on a busy 2-core machine measured ~100x slower).
torch.set_num_threads(1)
