"""Result links: the query string of a page's URL carries a tab's settings, so that opening it restores them (and,
for a result that can be made again, makes it again).

Each tab *declares* the settings its link carries (a ``Link``: query key → the component holding it). What a link
may say is read from the component itself — a slider's or number's bounds and whether it takes integers, a
dropdown's or radio's choices, a free-text model name — the same rules the guard applies to API requests
(``guard.number_rule``), so no bound is written twice. Restoring a link fills each declared component with the
link's value or its initial one, plus the updates that follow from them (``Link.derive``: a model picker's choices,
the class picker, the shown panels). One query string serves every tab: a key is read by each tab declaring it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlencode

import gradio as gr

from .checks import picker_value
from .guard import number_rule
from .settings import TABS

MAX_NAME = 64  # characters of a model name kept from a link


def _checked(block, raw):
    """A link's text ``raw`` as the value ``block`` takes, or None when it takes no such value."""
    if isinstance(block, (gr.Slider, gr.Number)):
        integer, lo, hi = number_rule(block)
        try:
            v = float(raw)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            return None
        if integer:
            return int(v) if v == int(v) else None
        return v
    if getattr(block, "allow_custom_value", False):  # a model name: checked against the models when filled in
        return str(raw)[:MAX_NAME]
    return next((value for _, value in block.choices if str(value) == raw), None)


@dataclass
class Link:
    """The settings a tab's link carries: ``fields`` maps each query key to the component that holds it; ``derive``
    turns the link's checked settings into the updates that follow from them ({component: update}, applied after
    the fields' values)."""
    fields: dict[str, gr.components.Component]
    derive: Callable[[dict], dict] = field(default=lambda settings: {})

    @property
    def outputs(self) -> list:
        """Every component a restored link may update: the fields, then those ``derive`` updates."""
        fields = list(self.fields.values())
        return fields + [block for block in self.derive({}) if block not in fields]

    def parse(self, query: dict) -> dict:
        """The link's checked settings: each declared key the query gives a value its component takes (others,
        and bad values, are dropped: the component keeps its initial value)."""
        out = {}
        for key, block in self.fields.items():
            if key in query and (value := _checked(block, query[key])) is not None:
                out[key] = value
        return out

    def fill(self, query: dict) -> dict:
        """{component: value} restoring ``query``: each field at the link's value or its initial one, then the
        derived updates."""
        settings = self.parse(query)
        out = {block: settings.get(key, block.value) for key, block in self.fields.items()}
        out.update(self.derive(settings))
        return out


def link_tab(query: dict) -> str:
    """The tab a link opens (Generate when it names none, or one that does not exist)."""
    return query.get("tab") if query.get("tab") in TABS else "generate"


def query_string(params: dict) -> str:
    return "?" + urlencode({k: v for k, v in params.items() if v is not None})


def base_url(request: gr.Request | None) -> str:
    """The page's URL without its query string: the browser's Referer when there is one, else the server root."""
    if request is None:
        return ""
    try:
        ref = request.headers.get("referer")
        if ref:
            return ref.split("?", 1)[0].split("#", 1)[0]
        return str(request.request.base_url)
    except Exception:
        return ""


def class_settings(settings: dict, conditional: bool = False) -> tuple[dict, str]:
    """A run's settings for its link and PNG, and the file name's class part. A run of an unconditional model says
    nothing of classes, so its link reads as before classes existed; a conditional model's names its class (the
    picker's value: RANDOM_CLASS for random classes, NO_CLASS for the null class, which a link must say since a
    run from noise defaults to random classes) and w."""
    if settings["label"] is None and not conditional:
        return {k: v for k, v in settings.items() if k not in ("label", "guidance_scale")}, ""
    return ({**settings, "label": picker_value(settings["label"])},
            f"_class{'null' if settings['label'] is None else settings['label']}_w{settings['guidance_scale']:g}")
