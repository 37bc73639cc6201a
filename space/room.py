"""What every tab builder returns to ``ui.py`` (a ``Room``), and how a tab whose result is instant shows it when
it is opened (``show_when_opened``).

Each tab module (space/tabs/) has one builder, ``build(app: AppContext, opened: gr.State) -> Room``, called inside
the app's ``gr.Tabs``: it lays the tab out, wires its events (its endpoints are its handlers, beside the layout) and
returns what the page needs from it. ``opened`` is the page's record of the link it was opened with ({"tab", "model"}
of the link or example filled in; {} for none), which a tab reads to decide whether to make its result at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from .links import Link


@dataclass
class Room:
    """A built tab: its id (a link's ``tab=``), the settings its link carries (``link``; None: it has none), what it
    does once a link or an example has filled them in (``follow(filled)``: chain its run after that event; None:
    nothing), its handlers (the object whose methods are its endpoints) and what to do when a page closes
    (``closed(request)``: forget the page's session; None: nothing)."""
    tab: str
    link: Link | None = None
    follow: Callable | None = None
    handlers: object = None
    closed: Callable | None = None


def show_when_opened(tab: gr.Tab, tab_id: str, handler, inputs: list, outputs: list, opened: gr.State,
                     concurrency_id: str) -> Callable:
    """Show a tab's default result (``handler`` on its current ``inputs``) the first time the tab is opened in a
    page, by a click or by a link naming it (the returned ``follow``), as Generate opens with its own. Meant for
    instant results: a refusal (no model, no dataset) leaves the tab empty until its button is pressed."""
    shown = gr.State(False)

    def once(tab_opened: bool, already: bool, *values):
        if already or not tab_opened:
            return gr.skip(), *(gr.skip() for _ in outputs)
        try:
            return True, *handler(*values)
        except gr.Error:
            return gr.skip(), *(gr.skip() for _ in outputs)

    def clicked(already: bool, *values):
        return once(True, already, *values)

    def linked(link: dict, already: bool, *values):
        return once(link.get("tab") == tab_id, already, *values)

    event = dict(outputs=[shown, *outputs], api_visibility="private", concurrency_id=concurrency_id)
    tab.select(clicked, inputs=[shown, *inputs], **event)

    def follow(filled) -> None:
        filled.then(linked, inputs=[opened, shown, *inputs], **event)
    return follow
