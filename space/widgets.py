"""The controls several tabs share, each built in one place: Run/Stop/status (and the result link), Stop's wiring,
the streamed outputs, model and class pickers, seeds, sketchpads and the image source (dataset, upload or sketch)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .context import AppContext
from .settings import (DATASETS, IMAGE_SOURCES, MAX_GUIDANCE, MAX_INDEX, MAX_PANELS, MAX_SEED, NO_CLASS, RANDOM_CLASS,
                       SKETCH_CANVAS)

SKETCH_BRUSH = gr.Brush(default_size=12, colors=["#ffffff"], color_mode="fixed")  # ~2.4 px wide at 28×28


@dataclass
class RunControls:
    """A tab's Run and Stop buttons, its status box and (for a tab whose results have links) the result link."""
    run: gr.Button
    stop: gr.Button
    status: gr.Textbox
    link: gr.Textbox | None


def run_controls(action: str, prefix: str, link: bool = True) -> RunControls:
    """Run and Stop buttons, the status and the result link (elem_ids PREFIX-run, -stop, -status, -link)."""
    with gr.Row():
        run = gr.Button(action, variant="primary", elem_id=f"{prefix}-run")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
    status = gr.Textbox(label="status", interactive=False, elem_id=f"{prefix}-status")
    shown = gr.Textbox(label="link to this result", interactive=False, buttons=["copy"],
                       elem_id=f"{prefix}-link") if link else None
    return RunControls(run, stop, status, shown)


def stops(stop: gr.Button, *events) -> None:
    """Stop ends each of ``events`` (a run started by the button, or by a link): Gradio closes the handler's
    generator at its next step and frees the worker."""
    stop.click(None, cancels=list(events), api_visibility="private")


def streamed_result(prefix: str, image_label: str, plot_label: str, gallery_label: str,
                    image_id: str | None = None) -> tuple:
    """A streamed tab's outputs: the live image beside the schedule plot, the snapshot gallery, the GIF and the PNG
    (elem_ids PREFIX-image or ``image_id``, -plot, -gallery, -gif, -png)."""
    with gr.Row():
        image = gr.Image(label=image_label, format="png", type="pil", interactive=False, height=300,
                         elem_id=image_id or f"{prefix}-image")
        plot = gr.Plot(label=plot_label, elem_id=f"{prefix}-plot")
    gallery = gr.Gallery(label=gallery_label, columns=6, height=360, format="png", object_fit="contain",
                         elem_id=f"{prefix}-gallery")
    with gr.Row():
        gif = gr.File(label="trajectory (GIF)", elem_id=f"{prefix}-gif")
        png = gr.File(label="image (PNG with settings)", elem_id=f"{prefix}-png")
    return image, plot, gallery, gif, png


def seed_number(value: int = 0, label: str = "seed", **kwargs) -> gr.Number:
    """A seed field: an integer from 0 to MAX_SEED."""
    return gr.Number(value, precision=0, minimum=0, maximum=MAX_SEED, label=label, **kwargs)


def model_picker(models: list[str], value: str | None, elem_id: str | None = None, label: str = "model") -> gr.Dropdown:
    """A model picker over ``models``. It takes any name (allow_custom_value), so that a name the page does not
    list reaches the handler, which answers with the models available."""
    return gr.Dropdown(models, value=value, label=label, elem_id=elem_id, allow_custom_value=True)


def model_update(models: list[str], value: str | None) -> dict:
    """A model picker's update: the models offered now, and the chosen one."""
    return gr.update(choices=models, value=value)


def class_choices(classes: list[str], random_classes: bool = True) -> list[tuple[str, int]]:
    """The class picker's (shown name, value) pairs: "random" (RANDOM_CLASS, when ``random_classes``: the pickers
    of runs from noise, where it is the default), the null class (NO_CLASS) and then each class with its index."""
    drawn = [("random: each image's class drawn from the seed (the model's p(x) at w = 1)", RANDOM_CLASS)
             ] if random_classes else []
    return [*drawn, ("none: the null class ∅ alone (the unconditional branch)", NO_CLASS)] + [
        (f"{i}: {c}" if c != str(i) else c, i) for i, c in enumerate(classes)]


def default_class(random_classes: bool = True) -> int:
    """What a class picker starts at: random classes where a run starts from noise (a conditional model's good
    unconditional mode, Σ_c p(c) p(x | c)), else the null class (an edit starts from an image)."""
    return RANDOM_CLASS if random_classes else NO_CLASS


def model_classes(app: AppContext, model) -> list[str]:
    """The classes of ``model`` if it is an offered image model ([] otherwise, or when it is unconditional)."""
    return app.store.classes(model) if model in app.store.image_models() else []


def class_picker(app: AppContext, model, prefix: str, random_classes: bool = True) -> gr.Dropdown:
    """A class picker, shown for a conditional model. Its own choices are every index of the widest conditional
    model (what a request may send; the handler checks it against the chosen model); the page shows the chosen
    model's names (``class_updates``)."""
    widest = max((len(app.store.classes(m)) for m in app.store.image_models()), default=0)
    info = "a class-conditional model samples the class you pick" + (
        "; random: each image's class drawn from the seed, which at w = 1 samples the whole data distribution"
        if random_classes else "")
    return gr.Dropdown(class_choices([str(i) for i in range(widest)], random_classes), value=default_class(random_classes),
                       label="class",
                       visible=bool(model_classes(app, model)), info=info, elem_id=f"{prefix}-class")


def guidance_slider(app: AppContext, model, elem_id: str | None = None, label: str = "guidance scale w",
                    info: str | None = "0 = the null class ∅ alone (the model's unconditional branch), "
                                       "1 = plain conditional, > 1 = guided (needs a class)") -> gr.Slider:
    """A guidance-scale slider w (classifier-free guidance), shown for a conditional model."""
    return gr.Slider(0, MAX_GUIDANCE, value=1.0, step=0.5, label=label, visible=bool(model_classes(app, model)),
                     info=info, elem_id=elem_id)


def class_updates(app: AppContext, model, sliders: int, label: int | None = None, w=(1.0,) * MAX_PANELS,
                  random_classes: bool = True) -> list:
    """The class picker and ``sliders`` guidance sliders for ``model``: shown with its classes when it is
    conditional (at ``label``, by default ``default_class``, and the scales ``w``; "random" among them where
    ``random_classes``), hidden at the default and w = 1 otherwise."""
    classes = model_classes(app, model)
    label = default_class(random_classes) if label is None else label
    if not (0 <= label < len(classes) or (classes and label in (NO_CLASS, default_class(random_classes)))):
        label, w = default_class(random_classes), (1.0,) * sliders
    return ([gr.update(choices=class_choices(classes, random_classes), value=label, visible=bool(classes))]
            + [gr.update(value=w[k], visible=bool(classes)) for k in range(sliders)])


def follow_model(app: AppContext, model: gr.Dropdown, picker: gr.Dropdown, sliders: list[gr.Slider],
                 random_classes: bool = True) -> None:
    """The user's choice of model shows its class picker and guidance sliders (a conditional model), or resets them
    to "none" and hides them (another model)."""
    model.input(lambda m: class_updates(app, m, len(sliders), random_classes=random_classes), model,
                [picker, *sliders], api_visibility="private", queue=False)


def sketchpad(canvas, brush: gr.Brush, label: str, elem_id: str, visible: bool = True) -> gr.Sketchpad:
    """A fixed-size drawing canvas (``canvas``: its blank picture, black), white strokes, one layer."""
    return gr.Sketchpad(value=canvas, type="pil", image_mode="L", label=label, brush=brush,
                        eraser=gr.Eraser(default_size=16), layers=False, transforms=(), canvas_size=canvas.size,
                        fixed_canvas=True, visible=visible, elem_id=elem_id)


@dataclass
class ImageSource:
    """Where a tab's image comes from: the ``source`` radio, a dataset image (``dataset`` and ``index`` in
    ``dataset_row``), an ``upload`` or a ``sketch``; only the chosen one's fields are shown."""
    source: gr.Radio
    dataset_row: gr.Row
    dataset: gr.Dropdown
    index: gr.Number
    upload: gr.Image
    sketch: gr.Sketchpad

    @property
    def values(self) -> list:
        """The inputs the source's checks take, in their order: source, dataset, index, upload, sketch."""
        return [self.source, self.dataset, self.index, self.upload, self.sketch]

    def shown_for(self, source: str, dataset_too: bool = False) -> list:
        """Updates of [dataset_row, upload, sketch]: the fields of ``source`` shown (and the dataset's when
        ``dataset_too``), the others hidden."""
        return [gr.update(visible=source == "dataset" or dataset_too), gr.update(visible=source == "upload"),
                gr.update(visible=source == "sketch")]


def image_source(prefix: str, label: str, info: str | None = None) -> ImageSource:
    """The image-source picker (elem_ids PREFIX-source, -dataset, -index, -upload, -sketch), at "dataset"."""
    source = gr.Radio(IMAGE_SOURCES, value="dataset", label=label, elem_id=f"{prefix}-source", info=info)
    with gr.Row() as dataset_row:
        dataset = gr.Dropdown(DATASETS, value="mnist", label="dataset", elem_id=f"{prefix}-dataset")
        index = gr.Number(0, precision=0, minimum=0, maximum=MAX_INDEX, label="image index (test split)",
                          elem_id=f"{prefix}-index")
    upload = gr.Image(label="upload (converted to the model's shape)", type="filepath", image_mode=None,
                      sources=["upload"], height=160, visible=False, elem_id=f"{prefix}-upload")
    sketch = sketchpad(SKETCH_CANVAS, SKETCH_BRUSH, "sketch (white on black, like the digits)", f"{prefix}-sketch",
                       visible=False)
    return ImageSource(source, dataset_row, dataset, index, upload, sketch)
