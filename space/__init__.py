"""The Gradio interface of Denoisery. ``build_demo(checkpoint_dir=None)`` returns the Blocks app (space/ui.py), its
tabs in space/tabs/; all diffusion maths lives in ``engine``."""
from .ui import CSS, build_demo

__all__ = ["CSS", "build_demo"]
