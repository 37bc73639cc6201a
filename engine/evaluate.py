"""Evaluation of image models with a small classifier of our own, trained on the same data.

For n generated images and n held-out real images (features f = the classifier's penultimate layer):
  FD        Fréchet distance between Gaussians fitted to the features:
            ‖μ_g − μ_r‖² + Tr(Σ_g + Σ_r − 2 (Σ_g Σ_r)^{1/2})   (Heusel et al. 2017, on our features instead of Inception)
  baseline  the same FD between n training images and the n held-out images: what "as good as real" reads at this n
  confident share of samples whose top class probability exceeds 0.9, with the same share for the n held-out real
            images (``confident_heldout``) as its baseline
  coverage  the smallest class's share of the predicted labels (1/10 when perfectly balanced)
  memorisation  median distance from each sample to its nearest training image, against the same for held-out
            real images (a ratio well below 1 means samples copy the training set)
For 2-D toys: sliced Wasserstein distance to fresh samples of the true distribution, with a fresh real sample's
distance as the baseline.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy import linalg
from torch import nn

from .checkpoints import load_into, load_weights, save_model
from .data import load_dataset, toy_sample
from .generate import generate


class Classifier(nn.Module):
    """A small CNN: two conv blocks (32, 64 channels, each conv-GN-SiLU-maxpool), a 128-unit feature layer, logits."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, feature_dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.GroupNorm(8, 64), nn.SiLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, feature_dim), nn.SiLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Wrapped(nn.Module):
    """Lets ``save_model`` write a classifier: it saves ``.net`` with a card."""

    def __init__(self, net: nn.Module, card: dict, shape):
        super().__init__()
        self.net, self.card, self.data_shape = net, card, tuple(shape)


def train_classifier(dataset: str = "mnist", name: str | None = None, epochs: int = 30, seed: int = 0, directory=None) -> dict:
    """Train the evaluator's classifier on the dataset's training split; export it as ``NAME`` (kind "classifier").

    AdamW with a cosine-decayed learning rate: without the decay the classifier stays unsure of many real digits
    (8 constant-rate epochs: 97% held-out accuracy but only 89% of held-out images above 0.9 confidence), and the
    confident-share figure then measures the classifier rather than the generator."""
    name = name or f"{dataset}-classifier"
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = load_dataset(dataset, "train")
    xt, yt = load_dataset(dataset, "test")
    net = Classifier(x.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    batches = -(-len(x) // 128)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * batches)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(128):
            xb = x[idx]
            # light augmentation (random shifts of up to 1/14 of the side: 2 pixels at 28×28) so the features do
            # not key on exact pixels
            r = x.shape[-1] // 14
            dx, dy = torch.randint(-r, r + 1, (2,), generator=gen).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            decay.step()
    net.eval()
    with torch.no_grad():
        probs = net(xt).softmax(1)
    acc = (probs.argmax(1) == yt).float().mean().item()
    confident = (probs.max(1).values > 0.9).float().mean().item()
    card = {
        "kind": "classifier", "arch": {"type": "classifier", "config": {"in_channels": x.shape[1]}},
        "objective": "cross-entropy", "data": {"dataset": dataset, "split": "train", "n": len(x)},
        "metrics": {"held_out_accuracy": round(acc, 4), "held_out_confident": round(confident, 4)},
        "training": {"epochs": epochs, "seed": seed, "wall_time_s": round(time.perf_counter() - t0, 1)},
    }
    save_model(_Wrapped(net, card, x.shape[1:]), name, directory, card)
    return card


def load_classifier(name: str, directory=None) -> Classifier:
    card, state = load_weights(name, directory)
    net = Classifier(card["arch"]["config"]["in_channels"])
    load_into(net, state, name, directory)
    return net.eval().requires_grad_(False)


def top_class(classifier: Classifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(label, probability) of the classifier's top class for each image: a quick quality figure for one sample."""
    with torch.no_grad():
        probs = classifier(images.float().cpu().clamp(-1, 1)).softmax(1)
    p, label = probs.max(1)
    return label, p


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}) of Gaussians fitted to two feature sets."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _median_nn_distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    d = torch.cdist(x.flatten(1), ref.flatten(1))
    return float(d.min(dim=1).values.median())


def evaluate_images(model, classifier: Classifier, dataset: str, *, sampler: str, schedule: str, steps: int,
                    n: int = 500, seed: int = 0, spacing: str = "leading", batch: int = 250, **options) -> dict:
    """Generate n images and score them against n held-out real images (see the module docstring)."""
    train_x, _ = load_dataset(dataset, "train")
    test_x, _ = load_dataset(dataset, "test")
    if n > len(test_x):
        raise ValueError(f"n must be at most {len(test_x)} (the held-out images of {dataset}); got {n}")
    t0 = time.perf_counter()
    chunks, nfe = [], 0
    for k, start in enumerate(range(0, n, batch)):
        size = min(batch, n - start)
        for step in generate(model, schedule=schedule, sampler=sampler, steps=steps, seed=seed + k, n=size,
                             spacing=spacing, **options):
            pass
        chunks.append(step.x_t.cpu().clamp(-1, 1))
        nfe = step.nfe
    seconds = time.perf_counter() - t0
    fake = torch.cat(chunks)
    real = test_x[:n]
    ref = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:n]]
    with torch.no_grad():
        f_fake, f_real, f_ref = (classifier.features(v).numpy().astype(np.float64) for v in (fake, real, ref))
        probs = classifier.head(torch.from_numpy(f_fake).float()).softmax(1)
        probs_real = classifier.head(torch.from_numpy(f_real).float()).softmax(1)
    labels = probs.argmax(1)
    shares = torch.bincount(labels, minlength=probs.shape[1]).float() / n
    return {
        "sampler": sampler, "schedule": schedule, "steps": steps, "spacing": spacing, "n": n, "seed": seed,
        "options": options,
        "fd": frechet_distance(f_fake, f_real),
        "fd_baseline": frechet_distance(f_ref, f_real),
        "confident": float((probs.max(1).values > 0.9).float().mean()),
        "confident_heldout": float((probs_real.max(1).values > 0.9).float().mean()),
        "coverage_min_class": float(shares.min()),
        "nn_distance_samples": _median_nn_distance(fake, train_x),
        "nn_distance_heldout": _median_nn_distance(real, train_x),
        "nfe": nfe,
        "seconds": seconds,
    }


_KEY_FIELDS = ("sampler", "schedule", "steps", "spacing", "n", "seed", "options")


def metrics_key(result: dict) -> str:
    """"ddim/linear/50/leading/n=500/seed=0" (+ "/eta=0.5" for options given): a result's entry in a card's metrics."""
    parts = [result["sampler"], result["schedule"], str(result["steps"])]
    if "spacing" in result:
        parts.append(result["spacing"])
    parts += [f"n={result['n']}", f"seed={result['seed']}"]
    parts += [f"{k}={v}" for k, v in sorted(result.get("options", {}).items())]
    return "/".join(parts)


def card_figures(result: dict) -> dict:
    """The figures of a result, without the settings its metrics key already names."""
    return {k: v for k, v in result.items() if k not in _KEY_FIELDS}


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Mean over random directions θ of the 1-D Wasserstein-1 distance between the projections a·θ and b·θ."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(a.shape[1], projections, generator=gen, dtype=torch.float64)
    theta /= theta.norm(dim=0, keepdim=True)
    pa, pb = (a.double() @ theta).sort(0).values, (b.double() @ theta).sort(0).values
    return float((pa - pb).abs().mean())


def evaluate_toy(model, toy: str, *, sampler: str, schedule: str, steps: int, n: int = 2000, seed: int = 0, **options) -> dict:
    t0 = time.perf_counter()
    for step in generate(model, schedule=schedule, sampler=sampler, steps=steps, seed=seed, n=n, **options):
        pass
    seconds = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(10_000 + seed)
    truth, fresh = toy_sample(toy, n, gen), toy_sample(toy, n, gen)
    return {
        "sampler": sampler, "schedule": schedule, "steps": steps, "n": n, "seed": seed, "options": options,
        "swd": sliced_wasserstein(step.x_t.cpu(), truth), "swd_baseline": sliced_wasserstein(fresh, truth),
        "nfe": step.nfe, "seconds": seconds,
    }
