"""The evaluator's reference: feature statistics of a dataset's whole training split under one classifier
(``reference_statistics``: computed once, cached in memory and, for a classifier loaded from a checkpoint, in a file
beside it), and torchmetrics' Fréchet distance fed with features the classifier computed beforehand
(``empty_fd_metric``, ``frechet_distance``). ``engine.evaluate`` scores images against it; its docstring gives every
figure.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from .checkpoints import checkpoint_dir
from .classifier import Classifier, classifier_features
from .data import load_dataset

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance


class Passthrough(nn.Module):
    """The ``feature`` module handed to torchmetrics. The classifier's features are computed once, batched, by
    ``classifier_features``, and passed through here: the bootstrap scores hundreds of resamples of the same
    features, and running the classifier again for each would cost more than the statistics themselves."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim  # torchmetrics reads this instead of probing the module with a random image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


LOCAL = {"sync_on_compute": False}
"""torchmetrics' keyword that keeps a metric to this process. By default ``compute()`` sums the states of every
rank when a process group is up, so under ``torchrun -m engine report`` each rank's FD and KID mixed in the other
rank's features: the cells the two ranks scored in the same round read the same FD, and the held-out baseline on
the tiny digits fixture read 1.568 instead of 1.605 (and a rank that computes while the other does not would wait
for it). Here every rank scores its own images (report/ranks.py)."""


def empty_fd_metric(dim: int) -> FrechetInceptionDistance:
    """torchmetrics' FID over ``dim``-d features: float64 sums of f and f fᵀ, then ‖μ_r − μ_g‖² + Tr Σ_r + Tr Σ_g
    − 2 Σ √eig(Σ_r Σ_g). That trace of the matrix square root from eigenvalues is exact for a product of two
    covariances (its eigenvalues are real and ≥ 0); scipy's ``sqrtm`` of the same product, which this module used
    before, was off by 0.8 % on synthetic 128-d features (500 against 4,500: 9.40 against 9.48, the eigenvalue
    form agreeing with the symmetric √Σ_r Σ_g √Σ_r to 4 digits). ``reset_real_features=False``: the reference survives ``reset()``."""
    from torchmetrics.image.fid import FrechetInceptionDistance  # here: torchmetrics imports matplotlib, which
    # the app's cold start leaves for later (tests/test_app.py)

    return FrechetInceptionDistance(feature=Passthrough(dim), reset_real_features=False, **LOCAL)


@dataclass
class Reference:
    """Feature statistics of a dataset's whole training split under one classifier: ``total`` = Σ f and
    ``outer`` = Σ f fᵀ (float64, torchmetrics' FID state), ``count`` images, and ``sample``: up to
    ``REFERENCE_SAMPLE`` of the features (a seeded draw, float32), which KID's kernel needs one by one."""

    total: torch.Tensor
    outer: torch.Tensor
    count: int
    sample: torch.Tensor

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """μ_ref, Σ_ref (unbiased, as torchmetrics') and Σ_ref^{1/2}, computed once."""
        if not hasattr(self, "_moments"):
            mu = self.total / self.count
            sigma = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
            values, vectors = torch.linalg.eigh(sigma)
            self._moments = mu, sigma, (vectors * values.clamp(min=0).sqrt()) @ vectors.T
        return self._moments

    def fd_metric(self) -> FrechetInceptionDistance:
        metric = empty_fd_metric(len(self.total))
        metric.real_features_sum.copy_(self.total)
        metric.real_features_cov_sum.copy_(self.outer)
        metric.real_features_num_samples.fill_(self.count)
        return metric


REFERENCE_SAMPLE = 2000
_REFERENCES: dict[tuple[str, str], Reference] = {}


def classifier_identity(classifier: Classifier) -> str:
    """The sha256 of the classifier's weights: its card's (the file's bytes) when it was loaded from a checkpoint,
    else a hash of its parameters in memory (a classifier trained in this process)."""
    card = getattr(classifier, "card", None)
    if card and card.get("sha256"):
        return card["sha256"]
    digest = hashlib.sha256()
    for key, value in classifier.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return "memory-" + digest.hexdigest()


def _reference_path(classifier: Classifier) -> Path | None:
    source = getattr(classifier, "source", None)  # (name, directory) set by load_classifier
    if source is None:
        return None
    name, directory = source
    return checkpoint_dir(directory) / f"{name}.reference.safetensors"


def reference_statistics(classifier: Classifier, dataset: str) -> Reference:
    """The training split's feature statistics under ``classifier``, computed once and cached in memory and, for
    a classifier loaded from a checkpoint, in ``NAME.reference.safetensors`` next to it. The file records the
    classifier's sha256 and is recomputed (and rewritten) when it does not match: new weights, new reference.

    Why the whole training split: FD between two n-image sets carries a finite-sample bias of order Tr Σ / n on
    *each* side (the covariance estimates' noise), which at n = 500 was as large as the differences it was meant
    to show; against the whole split the reference's share of that bias is gone (4,500 MNIST or 60,000
    Fashion-MNIST images), and what remains is the same for the samples and for the n held-out images that give
    ``fd_real``, so their ratio reads ≈ 1 for real data."""
    sha = classifier_identity(classifier)
    key = (sha, dataset)
    if key in _REFERENCES:
        return _REFERENCES[key]
    path = _reference_path(classifier)
    ref = _read_reference(path, sha, dataset) if path is not None else None
    if ref is None:
        train_x, _ = load_dataset(dataset, "train")
        f = classifier_features(classifier, train_x).double()
        pick = torch.randperm(len(f), generator=torch.Generator().manual_seed(0))[:REFERENCE_SAMPLE]
        ref = Reference(f.sum(0), f.T @ f, len(f), f[pick].float().contiguous())
        if path is not None:
            _write_reference(path, ref, sha, dataset)
    _REFERENCES[key] = ref
    return ref


def _read_reference(path: Path, sha: str, dataset: str) -> Reference | None:
    try:
        data = path.read_bytes()
        meta = _metadata(data)
        if meta.get("classifier_sha256") != sha or meta.get("dataset") != dataset:
            return None
        t = load_safetensors(data)
        ref = Reference(t["total"], t["outer"], int(meta["count"]), t["sample"])
        return ref if len(ref.sample) == min(ref.count, REFERENCE_SAMPLE) else None
    except (OSError, ValueError, KeyError, RuntimeError):  # absent, unreadable or malformed: computed again
        return None


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's header (8-byte little-endian length, then JSON)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__", {})


def _write_reference(path: Path, ref: Reference, sha: str, dataset: str) -> None:
    data = save_safetensors({"total": ref.total, "outer": ref.outer, "sample": ref.sample},
                            metadata={"classifier_sha256": sha, "dataset": dataset, "count": str(ref.count)})
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:  # a read-only checkpoint folder: the reference stays in memory only
        pass


def frechet_distance(f1: np.ndarray | torch.Tensor, f2: np.ndarray | torch.Tensor) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}) of Gaussians fitted to two feature sets (torchmetrics' FID on
    the given features; see ``empty_fd_metric``)."""
    f1, f2 = (torch.as_tensor(f, dtype=torch.float64) for f in (f1, f2))
    metric = empty_fd_metric(f1.shape[1])
    metric.update(f1, real=True)
    metric.update(f2, real=False)
    return float(metric.compute())
