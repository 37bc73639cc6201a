"""Launch the Denoisery app: ``python app.py [--host 127.0.0.1] [--port 7860] [--share] [--no-compile]
[--precision auto|float32|bfloat16] [--threads 1]``.

On Hugging Face Spaces this file is the ``app_file``; there the defaults apply (host/port from the environment).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from engine.serving import PRECISIONS  # noqa: E402
from space import CSS, build_demo  # noqa: E402
from space.models import ModelStore  # noqa: E402
from space.tabs.generate import warm_up  # noqa: E402

log = logging.getLogger("denoisery")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Denoisery web app")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="ask Gradio for a public *.gradio.live link")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (default: $ENGINE_CHECKPOINTS or checkpoints/)")
    p.add_argument("--no-compile", action="store_true",
                   help="keep the networks eager (default: torch.compile them in a background thread, eager until ready)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the compiled networks' arithmetic: auto (default) is bfloat16 autocast where the CPU or GPU "
                        "runs it natively, else float32; float32 gives the same pictures as a script's eager model")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per request's model work (default 1: requests side by side on separate cores, "
                        "and no slow-down when another process keeps a core busy; see README, Performance)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be a whole number of at least 1; got {args.threads}")
    torch.set_num_threads(args.threads)  # before any model work: the engine threads and compiled graphs use it
    # the app's log to stderr with a time stamp: refused requests (INFO), damaged checkpoints and failed requests
    # (ERROR, with the traceback and the reference the client was given); other libraries' warnings only
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    store = ModelStore(args.checkpoints, background_compile=not args.no_compile, precision=args.precision)
    demo = build_demo(store=store)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS, prevent_thread_lock=True)
    # the page is served: now import matplotlib, draw the default schedule plot (left out of the start-up, ~1 s), queue
    # the default model's compile and make the default settings' result that every page opens with
    threading.Thread(target=warm_up, kwargs={"store": store, "handlers": demo.rooms["generate"].handlers}, name="warm-up",
                     daemon=True).start()
    if args.share and not getattr(demo, "share_url", None):
        log.warning("--share: no public link was made (no internet connection, or the share server refused); "
                    "still serving locally at %s", demo.local_url)
    elif args.share:
        log.info("public link: %s", demo.share_url)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
