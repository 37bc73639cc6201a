"""The forward (noising) process q(x_t | x_0), and safe conversion of arbitrary images to a model's data shape.

For a schedule with cumulative signal level ᾱ_t = Π_{s≤t} (1 − β_s) the forward process has the closed form

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),   i.e.   x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,   ε ~ N(0, I),

so x_t at any t is drawn in one step, without running the chain. ``noise_images`` uses ONE ε per image for all
the chosen t (drawn from ``seed``), so a row of the grid shows the same noise growing as the signal fades, and
different schedules shown with the same seed differ only in ᾱ_t. In the VE view the same sample is
x̃_t = x_t / √ᾱ_t = x_0 + σ_t ε with σ_t² = (1 − ᾱ_t)/ᾱ_t; the signal-to-noise ratio is SNR_t = ᾱ_t / (1 − ᾱ_t).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .schedules import Schedule, get_schedule

MAX_UPLOAD_PIXELS = 4096 * 4096  # larger uploads are refused before any decoding work


def _schedule(schedule: str | Schedule) -> Schedule:
    return schedule if isinstance(schedule, Schedule) else get_schedule(schedule)


def check_timesteps(ts, T: int) -> list[int]:
    """The t values as ints in 0…T−1; ValueError otherwise."""
    out = []
    for t in ts:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < T:
            raise ValueError(f"every t must be an integer from 0 to {T - 1} (the schedule's T − 1); got {t!r}")
        out.append(int(t))
    if not out:
        raise ValueError("choose at least one t")
    return out


def noise_images(x0: torch.Tensor, schedule: str | Schedule, ts, seed: int) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε for each t in ``ts``.

    ``x0`` has shape (N, *data_shape); the result has shape (len(ts), N, *data_shape). ε (one per image, shared by
    every t) comes from a CPU ``torch.Generator`` seeded with ``seed``, so results are reproducible.
    """
    sched = _schedule(schedule)
    ts = check_timesteps(ts, sched.T)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"seed must be an integer from 0 to {2**32 - 1}; got {seed!r}")
    x0 = torch.as_tensor(x0, dtype=torch.float32)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    a = sched.alphas_cumprod[ts].reshape(-1, *([1] * x0.dim()))  # float64: √(1−ᾱ) stays exact near ᾱ = 1
    return (a.sqrt() * x0.double().unsqueeze(0) + (1 - a).sqrt() * eps.double().unsqueeze(0)).float()


def signal_stats(schedule: str | Schedule, ts) -> list[dict]:
    """For each t: ᾱ_t, the VE noise level σ_t = √((1−ᾱ_t)/ᾱ_t) and the log-SNR λ_t = log(ᾱ_t/(1−ᾱ_t))."""
    sched = _schedule(schedule)
    out = []
    for t in check_timesteps(ts, sched.T):
        a = float(sched.alphas_cumprod[t])
        out.append({"t": t, "alpha_bar": a, "sigma": math.sqrt((1 - a) / a), "log_snr": math.log(a) - math.log1p(-a)})
    return out


def image_to_tensor(image, data_shape: tuple[int, ...], max_pixels: int = MAX_UPLOAD_PIXELS) -> torch.Tensor:
    """Convert a PIL image (any size, any mode) to a (1, C, H, W) tensor in [−1, 1] for a model's ``data_shape``.

    Every Pillow mode is accepted: 16- and 32-bit integer grey ("I;16*", "I") is scaled from 0…65535 to 0…255
    (p // 257; "I" values outside 0…65535 are clipped), float grey ("F") is clipped to 0…255, premultiplied alpha
    ("La", "RGBa") is un-premultiplied, alpha (also a palette's transparency) is composited on white, and
    everything else (1-bit, palette, CMYK, YCbCr, LAB, HSV…) is converted to RGB by Pillow. The result goes to
    grey ("L") for C = 1; the image is centre-cropped to the target aspect ratio and resized with a Lanczos filter.
    Pixels p ∈ {0…255} map to x = 2p/255 − 1, like the datasets. Images with more than ``max_pixels`` pixels are
    refused with ValueError, as is a mode Pillow cannot convert.
    """
    from PIL import Image, ImageOps

    if not isinstance(image, Image.Image):
        raise ValueError(f"expected an image; got {type(image).__name__}")
    if len(data_shape) != 3 or data_shape[0] not in (1, 3):
        raise ValueError(f"the model's data shape {tuple(data_shape)} is not an image (C, H, W) with C = 1 or 3")
    c, h, w = (int(d) for d in data_shape)
    if image.width * image.height > max_pixels:
        raise ValueError(f"image is {image.width}×{image.height}; at most {max_pixels:,} pixels are accepted")
    if image.width < 1 or image.height < 1:
        raise ValueError("image is empty")
    img = image
    if img.mode.startswith("I"):  # "I;16", "I;16B", "I;16L", "I;16N", "I": 16 (or 32) bits per pixel
        wide = np.asarray(img, dtype=np.int64)
        img = Image.fromarray((np.clip(wide, 0, 65535) // 257).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0, 255).astype(np.uint8), "L")
    elif img.mode in ("La", "RGBa"):
        img = img.convert("LA" if img.mode == "La" else "RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    try:
        img = img.convert("RGB")
    except ValueError as err:  # a mode Pillow has no conversion for
        raise ValueError(f"images in colour mode {image.mode} are not supported ({err})") from None
    if c == 1:
        img = img.convert("L")
    img = ImageOps.fit(img, (w, h), method=Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32)
    if c == 1:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(arr * (2.0 / 255.0) - 1.0).unsqueeze(0).contiguous()
