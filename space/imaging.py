"""Turning model tensors into pictures and files: grids, upscaling, GIFs and PNGs that carry their settings.

No diffusion maths here: tensors in [−1, 1] (N, C, H, W) come from the engine and leave as PIL images.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from engine.forward import MAX_UPLOAD_PIXELS

PNG_KEY = "denoisery"
MASK_COVERAGE = 0.3  # a model pixel is to be filled when the brush covers this much of its area
DISPLAY_SIZE = 256  # the live image and gallery entries are upscaled (nearest) to about this many pixels
MAX_UPLOAD_BYTES = 10 * 2**20  # an uploaded file larger than this is refused unread
# formats decoded by Pillow itself; the others it can open (EPS through Ghostscript, for one) are refused
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
_READABLE = f"an image in one of the formats {', '.join(UPLOAD_FORMATS)}"


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [−1, 1] → (N, H, W, C) uint8 with p = round((x + 1)/2 · 255), clipped."""
    x = x.detach().float().cpu().clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid(x: torch.Tensor, pad: int = 1, cols: int | None = None) -> Image.Image:
    """The batch laid out as a near-square grid, or in rows of ``cols`` (native resolution, ``pad`` px of mid-grey
    between tiles)."""
    return _grid(to_uint8(x), pad, cols)


def grids(xs: list[torch.Tensor], pad: int = 1, cols: int | None = None) -> list[Image.Image]:
    """``[grid(x) for x in xs]`` for batches of one shape, converted to uint8 in one go (one tensor pass instead
    of one per batch: a trajectory's GIF frames)."""
    if not xs:
        return []
    stacked = torch.stack(xs)  # (F, N, C, H, W)
    arr = to_uint8(stacked.flatten(0, 1))  # (F·N, H, W, C)
    return [_grid(a, pad, cols) for a in arr.reshape(stacked.shape[0], stacked.shape[1], *arr.shape[1:])]


def _grid(arr: np.ndarray, pad: int = 1, cols: int | None = None) -> Image.Image:
    n, h, w, c = arr.shape
    cols = min(cols, n) if cols else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), 128, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        out[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = arr[k]
    return Image.fromarray(out[..., 0] if c == 1 else out, "L" if c == 1 else "RGB")


def upscale(img: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """Nearest-neighbour upscale by an integer factor so the longer side is about ``size`` (pixels stay crisp)."""
    f = max(1, size // max(img.size))
    return img.resize((img.width * f, img.height * f), Image.Resampling.NEAREST) if f > 1 else img


def display(x: torch.Tensor, size: int = DISPLAY_SIZE, cols: int | None = None) -> Image.Image:
    return upscale(grid(x, cols=cols), size)


def mask_from_layers(layers: list[Image.Image], shape: tuple[int, int],
                     coverage: float = MASK_COVERAGE) -> torch.Tensor:
    """The inpainting mask (1, 1, H, W) for ``shape`` (H, W) from an image editor's painted layers: 0 (to fill)
    where the paint (any layer's alpha) covers at least ``coverage`` of a pixel's area after resizing to H × W,
    1 (known) elsewhere. No layer or no paint: every pixel known."""
    h, w = shape
    paint = np.zeros((h, w), dtype=np.float32)
    for layer in layers:
        alpha = layer.convert("RGBA").getchannel("A").resize((w, h), Image.Resampling.BOX)
        paint = np.maximum(paint, np.asarray(alpha, dtype=np.float32) / 255.0)
    return torch.from_numpy((paint < coverage).astype(np.float32))[None, None]


def save_png(img: Image.Image, path: str) -> str:
    """``img`` written to ``path`` as PNG at zlib level 1 (the live frames and gallery snapshots: nearest-upscaled
    pixels compress about as well at level 1 as at the default 6, in a third of the time). Returns ``path``."""
    img.save(path, "png", compress_level=1)
    return path


def png_with_settings(img: Image.Image, settings: dict, directory: str | None = None, stem: str = "sample") -> str:
    """Save ``img`` as PNG with every setting in its text chunks: one JSON chunk ``denoisery`` and one
    chunk per key. Returns the path."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, json.dumps(settings, sort_keys=True))
    for k, v in settings.items():
        info.add_text(str(k), json.dumps(v) if not isinstance(v, str) else v)
    path = os.path.join(directory or tempfile.mkdtemp(prefix="denoisery-"), f"{stem}.png")
    img.save(path, pnginfo=info)
    return path


def gif(frames: list[Image.Image], directory: str | None = None, stem: str = "trajectory",
        frame_ms: int = 80, last_ms: int = 1500) -> str:
    """An animated GIF of ``frames`` (the last frame held longer); returns the path."""
    if not frames:
        raise ValueError("no frames")
    # RGB frames get an adaptive palette; greyscale ones the grey palette up front (the same GIF, ~10% faster:
    # Pillow would otherwise rebuild that palette in Python for every frame)
    frames = [f.convert("P", palette=Image.Palette.ADAPTIVE) if f.mode == "RGB" else
              f.convert("P") if f.mode == "L" else f for f in frames]
    durations = [frame_ms] * (len(frames) - 1) + [last_ms]
    path = os.path.join(directory or tempfile.mkdtemp(prefix="denoisery-"), f"{stem}.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return path


def check_upload(path: str | os.PathLike, max_bytes: int = MAX_UPLOAD_BYTES,
                 max_pixels: int = MAX_UPLOAD_PIXELS) -> Image.Image:
    """The uploaded file opened lazily (its header read, no pixel decoded), or ValueError saying why not.

    Checked in this order, each before the work the next needs: the file's size (at most ``max_bytes``), its
    format (one of ``UPLOAD_FORMATS``, recognised from the content, not the name), and the pixel count its header
    declares (at most ``max_pixels``; a decompression bomb is refused here, before decoding).
    """
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"the upload is {size / 2**20:.1f} MiB; at most {max_bytes / 2**20:.0f} MiB are accepted")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=UPLOAD_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(f"the upload declares too many pixels; at most {max_pixels:,} are accepted") from None
        except Exception:  # Pillow's decoders raise many types for hostile bytes; all mean "not readable"
            raise ValueError(f"the upload is not {_READABLE}") from None
    if image.width * image.height > max_pixels:
        image.close()
        raise ValueError(f"the upload is {image.width}×{image.height} pixels; at most {max_pixels:,} are accepted")
    return image


def open_upload(path: str | os.PathLike, max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_UPLOAD_PIXELS) -> Image.Image:
    """An uploaded file as a decoded PIL image (first frame, EXIF orientation applied), or ValueError saying why
    not: ``check_upload``'s checks, then the decoding itself (a truncated or corrupt file ends here)."""
    image = check_upload(path, max_bytes, max_pixels)
    try:
        with image:
            image.load()
            return ImageOps.exif_transpose(image)
    except Exception:
        raise ValueError(f"the upload could not be decoded: the file is damaged or truncated ({_READABLE})") from None
