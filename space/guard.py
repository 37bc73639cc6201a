"""What a public link needs: every raw value checked before Gradio converts it (an uploaded image's file too), every
failure answered with a clear message (never a traceback, a server path or Gradio's bare "error"), and failures
logged with their context.

``GuardedBlocks`` is ``gr.Blocks`` with three overrides, so they hold for every event, UI and API alike:

- ``preprocess_data`` checks each raw value against its component before Gradio's own conversion, which reports a
  wrong type (a string for a slider, NaN for an integer field, too few values) or an unreadable image only as the
  generic "error". The message names the API parameter and says what is allowed.
- ``process_api`` logs a refused request (``gr.Error``) on one line with its endpoint and values, and strips
  server paths from the message; any other exception is logged with its traceback and the client gets only
  "ENDPOINT failed on the server (reference R)", R being the key to the log entry. For an event's ``validator``
  (``validator(check, endpoint)``), which Gradio runs when a request arrives, before it takes a place in the queue,
  the same refusal is answered as Gradio's validation result: the message is painted on the input it names and
  reaches the client at once (gradio_client: ``ValidationError``; HTTP 422 with the message per parameter).
- ``launch`` caps the size of uploaded files (``max_file_size``) unless the caller sets another cap.
"""
from __future__ import annotations

import functools
import html
import logging
import math
import os
import re
import uuid

import gradio as gr
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder, is_in_or_equal

from .imaging import MAX_UPLOAD_BYTES, check_upload

log = logging.getLogger("denoisery")

MAX_TEXT = 1000  # characters accepted in a text field or a custom-value dropdown
MAX_LAYERS = 4  # layers accepted in an image editor's value (the app's editors have one)
EDITOR_KEYS = {"background", "layers", "composite", "id"}
_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?[\\/](?:[\w.@+-]+[\\/])+[\w.@+-]*")


def _clip(value, limit: int) -> str:
    """``repr(value)`` in at most ``limit`` characters (newlines and other controls escaped by repr)."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits
        text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value, limit: int = 60) -> str:
    """``repr(value)`` fit to quote in a message to the client: at most ``limit`` characters, HTML-escaped (Gradio
    renders error messages as HTML)."""
    return html.escape(_clip(value, limit), quote=False)


def redact(message: str) -> str:
    """The message with every absolute file path replaced by "[path]"."""
    return _PATH.sub("[path]", message)


def number_rule(block) -> tuple[bool, float | None, float | None]:
    """(integer?, minimum, maximum) of a Slider or Number: a Number with precision 0 and a Slider with an integral
    step and minimum take integers only."""
    if isinstance(block, gr.Slider):
        integer = float(block.step).is_integer() and float(block.minimum).is_integer()
    else:
        integer = block.precision == 0
    return integer, block.minimum, block.maximum


def _fmt(x: float) -> str:
    """A bound as written: 4294967295 (not 4.29497e+09), 0.01, 1."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _describe_number(integer: bool, lo, hi) -> str:
    kind = "an integer" if integer else "a number"
    if lo is not None and hi is not None:
        return f"{kind} from {_fmt(lo)} to {_fmt(hi)}"
    if lo is not None:
        return f"{kind} ≥ {_fmt(lo)}"
    if hi is not None:
        return f"{kind} ≤ {_fmt(hi)}"
    return kind


def _choice_values(block) -> list:
    return [value for _, value in block.choices]


def _check_image_file(name: str, value) -> None:
    """An image file reference as received (``value``): a FileData dict whose file, when in the upload folder, passes
    the upload checks (size, format and declared pixels, header only; ``imaging.check_upload``), or gr.Error. A path
    outside the upload folder is not read here: Gradio refuses it next ("files must be uploaded to this app first")."""
    if not (isinstance(value, dict) and isinstance(value.get("path"), str) and isinstance(value.get("meta"), dict)
            and value["meta"].get("_type") == "gradio.FileData"):
        raise gr.Error(f"{name} must be an uploaded image file (gradio_client: handle_file(path)) or None; "
                       f"got {shown(value)}")
    if is_in_or_equal(os.path.abspath(value["path"]), get_upload_folder()):
        try:
            with check_upload(value["path"]):
                pass
        except ValueError as err:
            raise gr.Error(str(err)) from None
        except OSError:
            raise gr.Error(f"the uploaded file for {name} is gone: upload it again") from None


def check_value(name: str, block, value) -> None:
    """Raise ``gr.Error`` when ``value`` (as received, before Gradio's conversion) is not one ``block`` accepts."""
    if isinstance(block, (gr.Slider, gr.Number)):
        integer, lo, hi = number_rule(block)
        allowed = _describe_number(integer, lo, hi)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise gr.Error(f"{name} must be {allowed}; got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise gr.Error(f"{name} must be {allowed}; got {shown(value)}")
        if lo is not None and value < lo:
            raise gr.Error(f"{name} = {shown(value)} is below the minimum {_fmt(lo)}; allowed: {allowed}")
        if hi is not None and value > hi:
            raise gr.Error(f"{name} = {shown(value)} is above the maximum {_fmt(hi)}; allowed: {allowed}")
        if integer and value != int(value):
            raise gr.Error(f"{name} must be {allowed}; got {shown(value)}")
    elif isinstance(block, gr.CheckboxGroup):
        choices = _choice_values(block)
        if not isinstance(value, list) or any(v not in choices for v in value):
            raise gr.Error(f"{name} must be a list of names from: {', '.join(map(str, choices))}; got {shown(value)}")
    elif isinstance(block, (gr.Radio, gr.Dropdown)):
        if getattr(block, "allow_custom_value", False):  # e.g. a model name: the handler checks it against the list
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
                raise gr.Error(f"{name} must be a name (text of at most {MAX_TEXT} characters); got {shown(value)}")
        elif value not in (choices := _choice_values(block)):
            # API schemas list every choice as text, so '3' is the likely slip for a numeric choice 3
            as_text = isinstance(value, str) and any(not isinstance(c, str) and str(c) == value for c in choices)
            kind = " (numbers, not text)" if as_text else ""
            raise gr.Error(f"unknown {name} {shown(value)}; allowed{kind}: {', '.join(map(str, choices))}")
    elif isinstance(block, gr.Textbox):
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise gr.Error(f"{name} must be text of at most {MAX_TEXT} characters; got {shown(value)}")
    elif isinstance(block, gr.Image) and value is not None:
        _check_image_file(name, value)
    elif isinstance(block, gr.ImageEditor) and value is not None:  # a sketchpad or a painted mask
        files = value.get("layers") if isinstance(value, dict) else None
        if not (isinstance(files, list) and len(files) <= MAX_LAYERS and set(value) <= EDITOR_KEYS):
            raise gr.Error(f"{name} must be an image editor's value {{background, layers, composite}} with at most "
                           f"{MAX_LAYERS} layers, each an uploaded image file (gradio_client: handle_file(path)) or "
                           f"None; got {shown(value)}")
        for file in (value.get("background"), value.get("composite"), *files):
            if file is not None:
                _check_image_file(name, file)


def _refers_to_files(value) -> bool:
    """Whether a raw input refers to files: a file reference, or an image editor's value holding one."""
    if isinstance(value, dict) and "path" in value:
        return True
    if isinstance(value, dict) and isinstance(value.get("layers"), list):
        return any(_refers_to_files(v) for v in (value.get("background"), value.get("composite"), *value["layers"]))
    return False


def _summary(names: list[str], values: list) -> str:
    parts = []
    for name, value in zip(names, values):
        if isinstance(value, dict) and "path" in value:  # an uploaded file: its name, not its server path
            value = f"file {value.get('orig_name') or '?'}"
        parts.append(f"{name}={_clip(value, 40)}")
    return ", ".join(parts)


def validator(check, endpoint: str):
    """``check`` (an endpoint's checks: a function of the endpoint's parameters that raises gr.Error) as a Gradio
    ``validator=``: all inputs valid when it returns. Named ``endpoint`` for the log; a refusal is turned into
    Gradio's validation result by ``GuardedBlocks.process_api``."""
    @functools.wraps(check)  # its signature: Gradio passes the inputs_kwargs by keyword
    def validate(*args, **kwargs):
        check(*args, **kwargs)
        inputs = [v for v in (*args, *kwargs.values()) if not isinstance(v, gr.Request)]  # Gradio adds the request
        return [gr.validate(True, "") for _ in inputs]
    validate.__name__ = endpoint
    return validate


def _refused_input(names: list[str], message: str) -> int:
    """The position of the input a refusal is about: the first parameter the message names ("steps of panel 2"
    names steps_2), else the first input."""
    message = re.sub(r"\b(\w+) of panel (\d)\b", r"\1_\2", message)
    for i, name in enumerate(names):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            return i
    return 0


class GuardedBlocks(gr.Blocks):
    """``gr.Blocks`` that checks raw inputs, logs every failure with its context and never leaks internals."""

    @staticmethod
    def endpoint(block_fn) -> str:
        return block_fn.api_name or block_fn.name or "event"

    @staticmethod
    def _names(block_fn) -> list[str]:
        given = list(getattr(block_fn, "input_parameter_names", None) or [])
        names = []
        for i, block in enumerate(block_fn.inputs):
            name = given[i] if i < len(given) else None
            names.append(name or getattr(block, "label", None) or f"input {i + 1}")
        return names

    async def preprocess_data(self, block_fn, inputs, state, *args, **kwargs):
        names = self._names(block_fn)
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"{self.endpoint(block_fn)} takes {len(block_fn.inputs)} values ({', '.join(names)}); "
                           f"got {len(inputs)}")
        for i, (name, block, value) in enumerate(zip(names, block_fn.inputs, inputs)):
            if block.stateful:
                continue
            current = state[block._id] if state is not None and block._id in state else block  # per-session copy
            try:
                check_value(name, current, value)
            except gr.Error as err:
                err.input_index = i  # for a validator's answer: the input to mark
                raise
        return await super().preprocess_data(block_fn, inputs, state, *args, **kwargs)

    async def process_api(self, block_fn, inputs, *args, **kwargs):
        # a streaming request comes back here for every update, with the values it was started with
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        endpoint = self.endpoint(fn)
        try:
            return await super().process_api(block_fn, inputs, *args, **kwargs)
        except gr.Error as err:
            err.message = redact(str(err.message))
            err.print_exception = False
            log.info("%s refused: %s | %s", endpoint, err.message, _summary(self._names(fn), inputs))
            refusal = err
        except InvalidPathError:
            log.warning("%s refused a file that was not uploaded to this app | %s", endpoint,
                        _summary(self._names(fn), inputs))
            refusal = gr.Error("files must be uploaded to this app first (gradio_client: handle_file(path))",
                               print_exception=False)
            refusal.input_index = next((i for i, v in enumerate(inputs) if _refers_to_files(v)), None)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("%s failed (reference %s) | %s", endpoint, ref, _summary(self._names(fn), inputs))
            refusal = gr.Error(f"{endpoint} failed on the server (reference {ref}); the error was logged. "
                               f"Try again, or with other settings.", print_exception=False)
        if getattr(fn, "is_validator_function", False):  # answered before the request queues
            names = self._names(fn)
            bad = getattr(refusal, "input_index", None)
            bad = _refused_input(names, refusal.message) if bad is None else bad
            return {"data": [gr.validate(i != bad, refusal.message if i == bad else "") for i in range(len(names))],
                    "is_generating": False}
        raise refusal from None

    def launch(self, *args, max_file_size: int | str | None = MAX_UPLOAD_BYTES, **kwargs):
        return super().launch(*args, max_file_size=max_file_size, **kwargs)
