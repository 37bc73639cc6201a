"""The image a tab works on, from one of three sources: a dataset's test image, an upload or a sketch (Edit and
Likelihood; Forward takes a dataset image or an upload). One home for each check: the source's settings
(``source_settings``), whether a sketch holds a drawing (``sketch_picture``) and the conversion to the model's shape
(``engine.forward.image_to_tensor``)."""
from __future__ import annotations

import logging

import gradio as gr
import torch

from engine import data as engine_data
from engine import forward as engine_forward

from . import imaging
from .checks import as_int, choice, engine_error
from .settings import DATASETS, IMAGE_SOURCES, MAX_INDEX

log = logging.getLogger("denoisery")


def sketch_picture(sketch):
    """The drawing of a sketchpad's value ({background, layers, composite}), or None when nothing is drawn (no
    composite, or one with no pixel brighter than the black canvas)."""
    picture = sketch.get("composite") if isinstance(sketch, dict) else None
    return picture if picture is not None and picture.getbbox() else None


def source_settings(source, dataset, index, upload, sketch) -> dict:
    """The checked {source, and for a dataset image: index, dataset}, or gr.Error when the chosen upload or sketch
    has not been given yet (a sketch's strokes are checked when it is read: ``source_image``)."""
    s = {"source": choice("source", source, IMAGE_SOURCES)}
    if s["source"] == "dataset":
        s["index"] = as_int("index", index, 0, MAX_INDEX)
        s["dataset"] = choice("dataset", dataset, DATASETS)
    elif (upload if s["source"] == "upload" else sketch) is None:
        todo = "upload an image" if s["source"] == "upload" else "draw on the sketch canvas"
        raise gr.Error(f"source is {s['source']}: {todo} first, or choose another source")
    return s


def test_split(dataset: str) -> torch.Tensor:
    """The dataset's test images, or gr.Error saying it is not installed (the log has why)."""
    try:
        images, _ = engine_data.load_dataset(dataset, "test")
    except (FileNotFoundError, ValueError) as err:
        log.error("dataset %s could not be loaded: %s", dataset, err)
        raise gr.Error(f"the dataset {dataset} is not installed on this server; choose another") from None
    return images


def dataset_image(dataset: str, index, name: str, shape: tuple | None = None) -> torch.Tensor:
    """Image ``index`` of the dataset's test split as (1, C, H, W), converted to ``shape`` when given and the
    dataset's differs; gr.Error when the index is out of range (``name``: the parameter)."""
    images = test_split(dataset)
    index = as_int(name, index, 0, len(images) - 1)
    x = images[index: index + 1]
    return x if shape is None or tuple(x.shape[1:]) == shape else engine_forward.image_to_tensor(imaging.grid(x), shape)


def upload_image(upload, shape: tuple) -> torch.Tensor:
    """An uploaded file (its path) as (1, *shape), decoded within the app's byte and pixel caps; gr.Error if not."""
    try:
        return engine_forward.image_to_tensor(imaging.open_upload(upload), shape)
    except ValueError as err:
        raise engine_error(err) from None


def source_image(s: dict, shape: tuple, upload, sketch) -> tuple[torch.Tensor, str]:
    """The image of checked source settings ``s`` (``source_settings``) as (1, *shape), and a description of it."""
    if s["source"] == "dataset":
        return dataset_image(s["dataset"], s["index"], "index", shape), f"{s['dataset']} test #{s['index']}"
    if s["source"] == "upload":
        return upload_image(upload, shape), "upload"
    picture = sketch_picture(sketch)
    if picture is None:
        raise gr.Error("the sketch is empty: draw on the canvas first (white strokes on black)")
    return engine_forward.image_to_tensor(picture, shape), "sketch"
