"""Evaluation of image models with a small classifier of our own, trained on the same data.

``score_images(images, dataset)`` scores any n images against the dataset (its docstring gives every figure);
``evaluate_images`` samples a model, then scores; ``validation.validate`` scores known corruptions of real images, the
instrument's own test. In short, with features f = the classifier's feature layer:

  FD        Fréchet distance of a Gaussian fitted to the n images' features to one fitted to the *whole* training
            split's (cached per classifier, ``reference.reference_statistics``): ‖μ_g − μ_ref‖² + Tr(Σ_g + Σ_ref −
            2 (Σ_g Σ_ref)^{1/2}) (Heusel et al. 2017, on our features instead of Inception's), torchmetrics'
            ``FrechetInceptionDistance`` with our features
  fd_real   the same for n held-out real images (the mean over disjoint n-image sets): FD has a finite-sample
            bias, so "as good as real" reads fd_real at this n, not 0; fd_ratio = fd / fd_real ≈ 1 for real data
  KID       the unbiased squared MMD with a cubic polynomial kernel (Bińkowski et al. 2018), torchmetrics'
            ``KernelInceptionDistance``: ≈ 0 for real data at any n, with its standard error
  confident share of images whose top class probability exceeds 0.9, beside the held-out images' share
  coverage  the smallest class's share of the predicted labels (1/10 when perfectly balanced)
  memorisation  median distance from each image to its nearest training image, against the same for held-out
            real images (a ratio well below 1 means samples copy the training set)
Every figure has a 95 % bootstrap interval; an fd_ratio below 1 whose interval reaches 1 reads "as real", not
"better". On MNIST the test split holds 500 images, so at n = 500 the baseline is one set and the interval is
wide (mnist-ddpm ddim-50: 0.91 [0.41, 2.30]); Fashion-MNIST's 10,000 give 20 sets.

Why the first version misled (samples read 0.84–1.1× a real-vs-real baseline, "better than real"): FD between
two 500-image sets is dominated by the bias of both sets' covariance estimates, and a single 500-image baseline
varies by ±20 % (Fashion-MNIST: 4.74 ± 1.00 over 20 sets; the set it used read 7.14). What remains: the shipped
classifiers' feature layer is not very sensitive (MNIST, n = 250: noise σ 0.1 reads 1.36× real; see
``Classifier`` for a more sensitive kind and why it is not shipped); docs/EVALUATOR.md has the validation.

For 2-D toys: sliced Wasserstein distance to fresh samples of the true distribution, with a fresh real sample's
distance as the baseline.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from .classifier import Classifier, classifier_features, load_classifier
from .data import load_dataset, toy_sample
from .generate import generate, model_device
from .reference import LOCAL, Passthrough, Reference, classifier_identity, reference_statistics
from .reference import frechet_distance  # noqa: F401  (re-exported: evaluate.frechet_distance)
from .samplers import SAMPLERS
from .serving import resolve_precision, serve

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance


def _nn_distances(x: torch.Tensor, ref: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Euclidean distance (pixel space) from each image of ``x`` to its nearest image in ``ref``."""
    return torch.cat([torch.cdist(x[i:i + batch].flatten(1), ref.flatten(1)).min(dim=1).values
                      for i in range(0, len(x), batch)])


# ---------------------------------------------------------------------------------------- scoring ---

def _test_split(dataset: str, n: int) -> torch.Tensor:
    test_x, _ = load_dataset(dataset, "test")
    if n > len(test_x):
        raise ValueError(f"n must be at most {len(test_x)} (the held-out images of {dataset}); got {n}")
    return test_x


def _interval(values: torch.Tensor, level: float = 0.95) -> list[float]:
    """The percentile bootstrap interval [q_(1−level)/2, q_(1+level)/2] of the resampled values."""
    q = torch.quantile(values.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return [float(q[0]), float(q[1])]


def bootstrap_mean(values: torch.Tensor, gen: torch.Generator, bootstrap: int) -> tuple[float, list[float]]:
    """(mean, 95 % percentile-bootstrap interval of the mean) of per-image ``values``: ``bootstrap`` resamples of
    the n values with replacement, drawn from ``gen``."""
    values = values.double()
    draws = torch.randint(len(values), (bootstrap, len(values)), generator=gen)
    return float(values.mean()), _interval(values[draws].mean(1))


def _resampled_fd(metric: FrechetInceptionDistance, ref: Reference, f: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """FD against the reference for ``f`` itself (first, torchmetrics), then for each resample ``f[draws[b]]``
    re-centred on it: fd*_b − (mean_b fd*_b − fd). A resample with replacement holds about 63 % distinct images,
    so its covariance is noisier and its FD higher by about the estimator's own finite-sample bias (the
    bootstrap's view of that bias); left in, it moved the held-out images' FD (mostly bias) up far more,
    relatively, than a damaged set's (mostly signal), and the ratio's percentile interval missed its own estimate
    (noise σ 0.3 on MNIST, n = 250: ratio 5.07, interval [2.04, 4.67]). Re-centred, the resamples keep their
    spread and the bias of an n-image estimate, the same as the point estimates'.

    The resamples are computed here in a batch (``_fd_batch``), not by torchmetrics: its general eigenvalue
    solver took 11 ms a resample on this machine's loaded CPU, 2.2 s of the 2.8 s a 20-image score took."""
    metric.reset()
    metric.update(f, real=False)
    point = float(metric.compute())
    if len(draws) == 0:
        return torch.tensor([point], dtype=torch.float64)
    resampled = torch.cat([_fd_batch(ref, f.double(), chunk) for chunk in draws.split(50)])
    return torch.cat([torch.tensor([point], dtype=torch.float64), resampled - (resampled.mean() - point)])


def _fd_batch(ref: Reference, f: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """FD to the reference of each resample f[draws[b]], all at once: with S = Σ_ref^{1/2} (symmetric),
    Tr (Σ_g Σ_ref)^{1/2} = Σ √eig(S Σ_g S), a symmetric eigenvalue problem (``eigvalsh``), the same trace as
    torchmetrics' Σ √eig(Σ_ref Σ_g) (``test_resampled_fd_matches_torchmetrics``).

    With fewer images than features (n < d), S Σ_g S = Mᵀ M for M = C S / √(n − 1) (C the centred features) has
    rank below n, and its nonzero eigenvalues are those of the n × n matrix M Mᵀ: that one is solved instead (at
    n = 10, d = 128 it took the tiny report of tests/test_report.py from 14 s of eigenvalue problems to well under
    one). From n = d on, the d × d form as before."""
    mu_r, sigma_r, sqrt_r = ref.moments()
    x = f[draws]  # (B, n, d)
    n, d = x.shape[1:]
    mu = x.mean(1)
    centred = x - mu[:, None]
    if n < d:
        m = centred @ sqrt_r
        root = torch.linalg.eigvalsh(m @ m.transpose(1, 2) / (n - 1)).clamp(min=0).sqrt().sum(-1)
        trace = (centred ** 2).sum((1, 2)) / (n - 1)
    else:
        sigma = centred.transpose(1, 2) @ centred / (n - 1)
        root = torch.linalg.eigvalsh(sqrt_r @ sigma @ sqrt_r).clamp(min=0).sqrt().sum(-1)
        trace = sigma.diagonal(dim1=1, dim2=2).sum(-1)
    return ((mu - mu_r) ** 2).sum(-1) + trace + sigma_r.trace() - 2 * root


def _kid(ref: Reference, f: torch.Tensor, m: int, seed: int, subsets: int) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): the unbiased MMD² with the kernel k(x, y) = (xᵀy / d + 1)³, torchmetrics'
    ``KernelInceptionDistance``, averaged over ``subsets`` draws of m = n/2 of the features ``f`` and m reference
    features. Returns (mean, standard error at n): the subsets' spread is that of an estimate from m = n/2
    images, and the variance of this U-statistic falls as 1/m, so the error of an estimate from n is that
    spread / √2. The draws come from ``seed`` (torchmetrics draws from torch's global generator: it is forked,
    seeded and restored around the call)."""
    from torchmetrics.image.kid import KernelInceptionDistance  # here, as in reference.empty_fd_metric

    m = min(m, len(ref.sample))
    with warnings.catch_warnings():  # its note that it keeps every feature: here at most REFERENCE_SAMPLE + 2 n
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=Passthrough(f.shape[1]), subsets=subsets, subset_size=m, **LOCAL)
    metric.update(ref.sample.double(), real=True)
    metric.update(f.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) / math.sqrt(2)


def _figures(classifier: Classifier, ref: Reference, sets: list[torch.Tensor], train_x: torch.Tensor,
             gen: torch.Generator, bootstrap: int, seed: int, kid_subsets: int) -> dict[str, tuple]:
    """{figure: (point, resamples)} over one or more disjoint n-image sets, each figure the mean over the sets
    (and each resample the mean of one resample of every set, drawn from ``gen``), "nn_distance" of the first
    set only; "kid": (kid, standard error) of all the sets' images together."""
    metric = ref.fd_metric()
    per_set, features = [], []
    for i, x in enumerate(sets):
        n = len(x)
        draws = torch.randint(n, (bootstrap, n), generator=gen)
        f = classifier_features(classifier, x)
        features.append(f)
        with torch.no_grad():
            probs = classifier.head(f).softmax(1)
        confident = (probs.max(1).values > 0.9).double()
        classes = nn.functional.one_hot(probs.argmax(1), probs.shape[1]).double()
        per_set.append({
            "fd": _resampled_fd(metric, ref, f, draws),
            "confident": torch.cat([confident.mean()[None], confident[draws].mean(1)]),
            "coverage_min_class": torch.cat([classes.mean(0).min()[None], classes[draws].mean(1).min(1).values]),
        })
        if i == 0:  # the nearest-neighbour search over the training split is the costly part: the first set's
            nn_dist = _nn_distances(x, train_x).double()
            per_set[0]["nn_distance"] = torch.cat([nn_dist.median()[None], nn_dist[draws].median(1).values])
    out = {}
    for key in per_set[0]:
        mean = torch.stack([s[key] for s in per_set if key in s]).mean(0)
        out[key] = (float(mean[0]), mean[1:])
    out["kid"] = _kid(ref, torch.cat(features), len(sets[0]) // 2, seed, kid_subsets)
    return out


MAX_HELDOUT_SETS = 20
_HELDOUT: dict[tuple, dict] = {}


def _heldout_sets(heldout: torch.Tensor, n: int) -> tuple[list[torch.Tensor], str]:
    """Up to MAX_HELDOUT_SETS disjoint n-image sets of ``heldout`` (the first K·n images) and the sha256 of those
    images: the memo key of what is computed on them, since every cell of a results page scores against the same
    held-out images."""
    k = min(len(heldout) // n, MAX_HELDOUT_SETS)
    return list(heldout[:k * n].split(n)), hashlib.sha256(heldout[:k * n].numpy().tobytes()).hexdigest()


def _heldout_figures(classifier, ref, sets, digest, train_x, seed, bootstrap, kid_subsets) -> dict:
    """``_figures`` of the held-out ``sets`` (``_heldout_sets``, whose images ``digest`` names); memoised."""
    key = (classifier_identity(classifier), digest, len(sets[0]), seed, bootstrap, kid_subsets)
    if key not in _HELDOUT:
        gen = torch.Generator().manual_seed(seed + 1)  # not the samples' draws
        _HELDOUT[key] = _figures(classifier, ref, sets, train_x, gen, bootstrap, seed, kid_subsets)
    return _HELDOUT[key]


# σ of the noise-equivalent scale's rungs: fine up to 0.2, where the bars lie, then coarse, so that a model far off
# is placed on measured rungs too (FD grows faster than linearly in σ: an extended segment would overstate it)
NOISE_LADDER = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


def _noise_ladder(classifier, ref, sets, digest, seed) -> list[list[float]]:
    """[[σ, FD], …] over ``NOISE_LADDER``: the FD of real held-out n-image sets with N(0, σ²) per pixel added (on
    the [−1, 1] scale, clipped, as ``validation.corrupt``), the mean over the same K disjoint sets as ``fd_real``,
    so the σ = 0 rung is ``fd_real``. Every rung adds σ times the same draw (from ``seed``), so the rungs differ
    only in σ. Memoised with the held-out figures."""
    n = len(sets[0])
    key = ("ladder", classifier_identity(classifier), digest, n, seed)
    if key not in _HELDOUT:
        gen = torch.Generator().manual_seed(seed + 2)  # neither the samples' draws nor the held-out bootstrap's
        noise = [torch.randn(x.shape, generator=gen) for x in sets]
        metric, point_only = ref.fd_metric(), torch.empty((0, n), dtype=torch.long)

        def fd(x: torch.Tensor) -> float:  # the point estimate as every other FD here (torchmetrics)
            return float(_resampled_fd(metric, ref, classifier_features(classifier, x), point_only)[0])
        _HELDOUT[key] = [[sigma, sum(fd((x + sigma * z).clamp(-1, 1)) for x, z in zip(sets, noise)) / len(sets)]
                         for sigma in NOISE_LADDER]
    return _HELDOUT[key]


def noise_ladder(dataset: str, n: int, *, seed: int = 0, classifier: Classifier | None = None, directory=None,
                 heldout: torch.Tensor | None = None) -> list[list[float]]:
    """The [σ, FD] rungs (``_noise_ladder``) that ``score_images`` places n images on: the same held-out sets,
    classifier and seed, memoised, so a figure scored before ``noise_sigma`` existed is placed on exactly the
    ladder a fresh score would use (``with_noise_sigma``)."""
    classifier = classifier if classifier is not None else load_classifier(f"{dataset}-classifier", directory)
    heldout = _test_split(dataset, n) if heldout is None else heldout.float().cpu().clamp(-1, 1)
    sets, digest = _heldout_sets(heldout, n)
    return _noise_ladder(classifier, reference_statistics(classifier, dataset), sets, digest, seed)


def with_noise_sigma(record: dict, ladder: list[list[float]] | None = None) -> dict:
    """``record`` (a dict with "fd" and "fd_ratio_ci") with its noise-equivalent σ, its interval and the ``ladder``
    (default: the record's own "noise_ladder") added: σ = ``noise_equivalent_sigma`` of FD; the interval maps the
    ends of fd_ratio_ci times the clean rung (fd_real). The ratio's resamples divide by resampled real sets, so the
    interval carries the real baseline's own spread, which on MNIST's single 500-image held-out set is most of it
    (FD 6.11 [2.56, 11.07]); mapping fd_ci alone left that out and read mnist-cond's w = 1 as σ 0 [0, 0]."""
    ladder = record["noise_ladder"] if ladder is None else ladder
    clean = ladder[0][1]
    return {**record, "noise_sigma": noise_equivalent_sigma(record["fd"], ladder),
            "noise_sigma_ci": [noise_equivalent_sigma(v * clean, ladder) for v in record["fd_ratio_ci"]],
            "noise_ladder": ladder}


def noise_equivalent_sigma(fd: float, ladder: list[list[float]]) -> float:
    """The σ of Gaussian noise on real held-out images that scores ``fd``: linear between the ``ladder``'s rungs
    (its FDs made non-decreasing, so a rung that reads below the one before it is not a step back), 0 at or below
    the clean rung, and beyond the last rung its last segment extended. Unlike FD / real, it reads the same
    whatever feature network measures it, and it can be pictured."""
    sigmas = [r[0] for r in ladder]
    fds = [max(r[1] for r in ladder[:i + 1]) for i in range(len(ladder))]
    if fd <= fds[0]:
        return 0.0
    for (s0, f0), (s1, f1) in zip(zip(sigmas, fds), zip(sigmas[1:], fds[1:])):
        if fd <= f1 and f1 > f0:
            return s0 + (s1 - s0) * (fd - f0) / (f1 - f0)
    (s0, f0), (s1, f1) = (sigmas[-2], fds[-2]), (sigmas[-1], fds[-1])
    return s1 + (s1 - s0) * (fd - f1) / max(f1 - f0, 1e-12)


def score_images(images: torch.Tensor, dataset: str, *, seed: int = 0, classifier: Classifier | None = None,
                 directory=None, heldout: torch.Tensor | None = None, bootstrap: int = 200,
                 kid_subsets: int = 100) -> dict:
    """Score n images (N, C, H, W) in [-1, 1] against ``dataset``'s real data, every figure beside the same
    figure for n real held-out images and with a 95 % bootstrap interval.

    Features f are the classifier's penultimate layer (default classifier: ``DATASET-classifier`` in
    ``directory``). With μ_ref, Σ_ref those of the whole training split (``reference_statistics``):

      fd        ‖μ_g − μ_ref‖² + Tr(Σ_g + Σ_ref − 2 (Σ_g Σ_ref)^{1/2})  (Heusel et al. 2017 on our features)
      fd_real   the same for n held-out images: what "as good as real" reads at this n, bias included; the mean
                over K = ``heldout_sets`` disjoint n-image sets of ``heldout`` (default: the test split; K ≤ 20).
                One set is not enough: on Fashion-MNIST at n = 500 the 20 sets' FD was 4.74 ± 1.00 (sd), and
                the first set alone read 7.14, which made samples look better than real
      fd_ratio  fd / fd_real (≈ 1 for real data)
      kid       KID against the training split (``_kid``), unbiased, so ≈ 0 for real data at any n; ``kid_std``
                its standard error; ``kid_real`` / ``kid_real_std`` the same for the held-out images
      confident share of images whose top class probability exceeds 0.9 (``confident_heldout`` for real ones)
      coverage_min_class  the smallest class's share of the predicted labels (1/10 when balanced)
      nn_distance_samples median pixel distance from each image to its nearest training image; against
                ``nn_distance_heldout`` (``nn_ratio``): well below 1 means copies of the training set
      noise_sigma  the noise-equivalent σ, the headline figure: the σ of Gaussian noise on real held-out images
                that scores the same FD (``noise_equivalent_sigma`` on ``noise_ladder``, the [σ, FD] rungs of
                ``_noise_ladder``); ≈ 0 for real images, ≈ 0.05 for real images with σ = 0.05 noise. Its
                interval ``noise_sigma_ci`` maps fd_ratio_ci's ends (times fd_real) through the same ladder
                (``with_noise_sigma``: so that it carries the real baseline's spread)

    Intervals ``X_ci`` = [lo, hi]: the percentile bootstrap (Efron & Tibshirani 1993), ``bootstrap`` resamples
    with replacement of the n images and, independently, of each held-out set, drawn from ``seed``; a ratio's
    interval is the percentiles of the resamples' ratios. FD's resamples are re-centred (``_resampled_fd``). The
    intervals are wide on the safe side for FD near real data: on Fashion-MNIST (n = 500) one set's bootstrap sd
    was 2.1 where the 20 disjoint real sets varied by 1.0 (the bootstrap of a near-degenerate quadratic statistic
    overstates its spread). The reference's own uncertainty is left out: it is common to every score, so it
    cannot reorder them."""
    classifier = classifier if classifier is not None else load_classifier(f"{dataset}-classifier", directory)
    images = images.float().cpu().clamp(-1, 1)
    n = len(images)
    if n < 4:
        raise ValueError(f"score_images needs at least 4 images; got {n}")
    heldout = _test_split(dataset, n) if heldout is None else heldout.float().cpu().clamp(-1, 1)
    if len(heldout) < n:
        raise ValueError(f"heldout must hold at least as many images as images ({n}); got {len(heldout)}")
    ref = reference_statistics(classifier, dataset)
    train_x, _ = load_dataset(dataset, "train")
    gen = torch.Generator().manual_seed(seed)
    samples = _figures(classifier, ref, [images], train_x, gen, bootstrap, seed, kid_subsets)
    sets, digest = _heldout_sets(heldout, n)
    real = _heldout_figures(classifier, ref, sets, digest, train_x, seed, bootstrap, kid_subsets)
    names = {"fd": ("fd", "fd_real"), "confident": ("confident", "confident_heldout"),
             "coverage_min_class": ("coverage_min_class", "coverage_min_class_heldout"),
             "nn_distance": ("nn_distance_samples", "nn_distance_heldout")}
    out: dict = {}
    for key, pair in names.items():
        for name, figures in zip(pair, (samples, real)):
            out[name], out[name + "_ci"] = figures[key][0], _interval(figures[key][1])
    for ratio, key in (("fd_ratio", "fd"), ("nn_ratio", "nn_distance")):
        out[ratio] = samples[key][0] / real[key][0]
        out[ratio + "_ci"] = _interval(samples[key][1] / real[key][1])
    (out["kid"], out["kid_std"]), (out["kid_real"], out["kid_real_std"]) = samples["kid"], real["kid"]
    out = with_noise_sigma(out, _noise_ladder(classifier, ref, sets, digest, seed))
    out.update(n=n, seed=seed, bootstrap=bootstrap, heldout_sets=len(sets), reference_n=ref.count)
    return out


COMPILE_FROM = {"bfloat16": 20_000, "float32": 200_000}
"""Images × network evaluations per image (n · NFE) from which ``evaluate_images`` samples through the compiled
graph, by the graph's arithmetic: below it the compile costs more than it saves. Measured with mnist-ddpm at batch
250 on a 2-core AVX-512-BF16 CPU (docs/PERFORMANCE.md, section 6): a cold compile took 26 s (5 s with inductor's
disk cache warm); a network call took 0.67 s eager, 0.37 s through the bfloat16 graph (1.2 ms saved per
image-evaluation: the compile pays from ~22,000) and 0.62 s through the float32 graph (0.2 ms: from ~130,000)."""
COMPILE_CHOICES = ("auto", "always", "never")


def compiled_for_run(model, *, batches, precision: str = "float32", **run):
    """``model`` served through compiled graphs (``serving.serve``) for a batch
    job: every batch size in ``batches`` is compiled now, by a two-step run of the job's own sampler settings
    (``run``: schedule, sampler, spacing, options) so that the graphs' input shapes are the job's, and then the
    graphs are frozen, so that no call of the job waits for a compile or changes arithmetic halfway. Returns
    (model, how): ``how`` names the path, "compiled float32" / "compiled bfloat16" / "eager float32" (the compile
    failed here: no C++ compiler, an unsupported platform; the job then runs the network as it came)."""
    served = serve(model, background_compile=True, precision=precision, max_batch=max(batches))
    graphs = served.net.compiled
    for b in sorted(set(batches)):
        for _ in generate(served, seed=0, n=b, steps=2, **run):
            pass
    graphs.wait()
    graphs.freeze()
    if graphs.failed is not None:
        return model, "eager float32"
    return served, f"compiled {graphs.precision}"


def evaluate_images(model, classifier: Classifier, dataset: str, *, sampler: str, schedule: str, steps: int,
                    n: int = 500, seed: int = 0, spacing: str = "leading", batch: int = 250, compile: str = "auto",
                    precision: str = "auto", label: int | str | None = None, **options) -> dict:
    """Generate n images (batches of ``batch``, the k-th from seed + k) and score them with ``score_images``.
    The result adds the settings, ``nfe``, ``seconds`` (sampling wall time, the compile included),
    ``fd_baseline`` (= ``fd_real``, the name the results page reads) and ``network`` (the path that ran it).
    ``label`` asks a class-conditional model for a class (or "random" classes, ``generate``); the result then
    names it.

    ``compile``: "auto" samples through compiled graphs (``compiled_for_run``, with ``precision``) when n · NFE ≥
    ``COMPILE_FROM`` for the graph's arithmetic, "always" / "never" regardless. In float32 the compiled graph
    computes the same function as the eager network, to float rounding. ``precision`` "auto" (serving's: bfloat16
    where the hardware runs it natively, from batch 2) changes the samples by bfloat16's rounding, a change of the
    figures measured far inside their intervals: mnist-ddpm ddim 50, n = 500, FD 5.245 against float32's 5.216
    [2.945, 8.121] (docs/PERFORMANCE.md, section 6; section 1: within 0.3 % for ddim cosine 50 and dpm-solver++
    20). ``network`` in the result says which arithmetic ran."""
    _test_split(dataset, n)  # a bad n fails before any sampling
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}; got {compile!r}")
    t0 = time.perf_counter()
    run = dict(schedule=schedule, sampler=sampler, spacing=spacing, label=label, **options)
    sizes = [min(batch, n - start) for start in range(0, n, batch)]
    nfe_per_image = SAMPLERS[sampler].nfe(steps, options)
    network = "eager float32"
    arithmetic = resolve_precision(precision, model_device(model))
    if compile == "always" or (compile == "auto" and n * nfe_per_image >= COMPILE_FROM[arithmetic]):
        model, network = compiled_for_run(model, batches=sizes, precision=precision, **run)
    chunks, nfe = [], 0
    for k, size in enumerate(sizes):
        for step in generate(model, steps=steps, seed=seed + k, n=size, **run):
            pass
        chunks.append(step.x_t.cpu().clamp(-1, 1))
        nfe = step.nfe
    seconds = time.perf_counter() - t0
    scores = score_images(torch.cat(chunks), dataset, seed=seed, classifier=classifier)
    return {"sampler": sampler, "schedule": schedule, "steps": steps, "spacing": spacing, "n": n, "seed": seed,
            "options": options, **({} if label is None else {"label": label}), **scores,
            "fd_baseline": scores["fd_real"], "nfe": nfe, "seconds": seconds, "network": network}


_KEY_FIELDS = ("sampler", "schedule", "steps", "spacing", "label", "n", "seed", "options")


def metrics_key(result: dict) -> str:
    """"ddim/linear/50/leading/n=500/seed=0" (+ "/label=random" for a label, "/eta=0.5" for options given): a
    result's entry in a card's metrics."""
    parts = [result["sampler"], result["schedule"], str(result["steps"])]
    if "spacing" in result:
        parts.append(result["spacing"])
    if "label" in result:
        parts.append(f"label={result['label']}")
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
