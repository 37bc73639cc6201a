"""Validating the evaluator before it judges: known corruptions of real held-out images must come out ranked by
their damage (real < noise σ 0.1 < noise σ 0.3 < half the images replaced by noise, and a 5×5 blur worse than
σ 0.1), real images must read about 1× their own baseline, and the noise-equivalent σ's interval must hold the
noise that was added (``KNOWN_NOISE``, with ``LADDER_UNCERTAINTY``). How narrow those intervals are is the unit's
resolution at this n: on MNIST at n = 250 our classifier's features do not tell σ ≤ 0.1 from clean images. ``python -m engine validate-evaluator`` writes the
table (docs/EVALUATOR.md); the results page carries it under "How far to trust these numbers".
"""
from __future__ import annotations

import torch
from torch import nn

from .classifier import Classifier, load_classifier
from .data import load_dataset
from .evaluate import score_images


KNOWN_NOISE = {"real": 0.0, "noise 0.05": 0.05, "noise 0.1": 0.1, "noise 0.3": 0.3}  # what each row added
# The noise-equivalent σ's interval is the samples' FD interval mapped through the ladder; the ladder's own error
# (its rungs are one draw of noise on the baseline's sets) is left out of it. Measured on MNIST, n = 250: σ 0.3 on
# other held-out images read 0.324 [0.307, 0.337]. The check allows that much more.
LADDER_UNCERTAINTY = 0.03
CORRUPTIONS = ("real", "noise 0.05", "noise 0.1", "noise 0.3", "blur 5x5", "half noise")


def corrupt(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """A known damage to images in [-1, 1]: "real" (none); "noise S": + N(0, S²) per pixel on the [-1, 1] scale,
    clipped; "blur 5x5": the mean over a 5×5 window (edges replicated); "half noise": the first half of the images
    replaced by uniform noise on [-1, 1]."""
    if kind == "real":
        return images.clone()
    if kind.startswith("noise "):
        sigma = float(kind.split()[1])
        return (images + sigma * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    if kind == "blur 5x5":
        padded = nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
        return nn.functional.avg_pool2d(padded, 5, stride=1)
    if kind == "half noise":
        out = images.clone()
        half = len(images) // 2
        out[:half] = torch.rand(out[:half].shape, generator=generator) * 2 - 1
        return out
    raise ValueError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")


def validate(dataset: str, n: int = 250, seed: int = 0, *, classifier: Classifier | None = None, directory=None,
             bootstrap: int = 200) -> list[dict]:
    """Score known corruptions of real held-out images, one row per ``CORRUPTIONS`` entry: the instrument's own
    test. The last n held-out images are corrupted and scored (``score_images``) against the others as the
    baseline (disjoint n-image sets of them), so the "real" row compares disjoint real images and should read
    fd_ratio ≈ 1 (0.8–1.25), and the damaged rows should rank real < noise 0.1 < noise 0.3 < half noise, blur
    above noise 0.1. The rows carry every figure of ``score_images`` and ``corruption``."""
    classifier = classifier if classifier is not None else load_classifier(f"{dataset}-classifier", directory)
    test_x, _ = load_dataset(dataset, "test")
    if 2 * n > len(test_x):
        raise ValueError(f"n must be at most {len(test_x) // 2} (half the held-out images of {dataset}); got {n}")
    gen = torch.Generator().manual_seed(seed)
    baseline, probe = test_x[:len(test_x) - n], test_x[len(test_x) - n:]
    rows = []
    for kind in CORRUPTIONS:
        rows.append({"corruption": kind, **score_images(corrupt(probe, kind, gen), dataset, seed=seed,
                                                        classifier=classifier, heldout=baseline, bootstrap=bootstrap)})
    return rows



def _fmt_ci(value: float, ci: list[float], digits: int = 2) -> str:
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def validation_markdown(dataset: str, rows: list[dict]) -> str:
    """``validate``'s rows as a Markdown table, with the verdict of each check it is meant to pass."""
    r0 = rows[0]
    ratio = {r["corruption"]: r["fd_ratio"] for r in rows}
    order = ("real", "noise 0.1", "noise 0.3", "half noise")
    interval = {r["corruption"]: r["noise_sigma_ci"] for r in rows}
    checks = [
        ("real held-out images read 0.8–1.25× their baseline", 0.8 <= ratio["real"] <= 1.25),
        (f"noise-equivalent σ: each interval, widened by the ladder's own ±{LADDER_UNCERTAINTY:g}, holds the noise that "
         "was added (real 0; noise 0.05, 0.1, 0.3)",
         all(lo - LADDER_UNCERTAINTY <= added <= hi + LADDER_UNCERTAINTY
             for kind, added in KNOWN_NOISE.items() for lo, hi in [interval[kind]])),
        ("ranked real < noise 0.1 < noise 0.3 < half noise", all(ratio[a] < ratio[b] for a, b in zip(order, order[1:]))),
        ("blur 5×5 worse than noise 0.1", ratio["blur 5x5"] > ratio["noise 0.1"]),
    ]
    lines = [f"### {dataset}: n = {r0['n']}, seed {r0['seed']}, {r0['bootstrap']} bootstrap resamples, baseline over "
             f"{r0['heldout_sets']} disjoint held-out set(s), reference = {r0['reference_n']} training images", "",
             "| images | noise-equivalent σ [95 % CI] | FD | FD / real [95 % CI] | KID ± se | confident [95 % CI] | "
             "smallest class | NN ratio |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['corruption']} | {_fmt_ci(r['noise_sigma'], r['noise_sigma_ci'], 3)} | {r['fd']:.3g} | "
                     f"{_fmt_ci(r['fd_ratio'], r['fd_ratio_ci'])} | "
                     f"{r['kid']:.3g} ± {r['kid_std']:.2g} | {_fmt_ci(100 * r['confident'], [100 * v for v in r['confident_ci']], 1)} % | "
                     f"{100 * r['coverage_min_class']:.1f} % | {r['nn_ratio']:.2f} |")
    lines += ["", f"Real held-out baseline: FD {_fmt_ci(r0['fd_real'], r0['fd_real_ci'])}, KID {r0['kid_real']:.3g} ± "
              f"{r0['kid_real_std']:.2g}, confident {100 * r0['confident_heldout']:.1f} %. The noise ladder (σ: FD of "
              "real held-out images with that noise, the scale of the noise-equivalent σ): "
              + ", ".join(f"{sigma:g}: {fd:.3g}" for sigma, fd in r0["noise_ladder"]) + ".", ""]
    lines += [f"- {'pass' if ok else '**FAIL**'}: {text}" for text, ok in checks]
    return "\n".join(lines) + "\n"
