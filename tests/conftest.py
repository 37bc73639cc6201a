import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

# The tests use tiny tensors: one intra-op thread is faster, and far faster when another process holds the
# other core (two threads on a busy 2-core machine measured ~100x slower).
torch.set_num_threads(1)
