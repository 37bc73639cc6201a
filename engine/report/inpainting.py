"""Inpainting harmonisation: does RePaint's resampling fit the completion to the known pixels better than simple
replacement? Measured on held-out digits with the evaluator.

For each mask (1 = known pixel) the same n held-out test images, the same seeds and the same 50 DDPM steps are
completed twice with ``editing.inpaint``: **replacement** (``resamples=1``: after each step the known pixels are
replaced by the original noised to that level, Song et al. 2021's conditional sampling) and **RePaint** (Lugmayr et
al. 2022: every ``jump_length`` steps the state goes back up ``jump_length`` levels and is denoised again,
``resamples`` times in all). Each set of completed images is scored with

  fd, fd_ratio  ``evaluate.score_images`` with the n originals as the held-out set: FD of the completed images to
             the training split, over the originals' own FD (1 = as far from the training data as the originals),
             KID and the confident share likewise, with 95 % bootstrap intervals
  seam       mean |x_p − x_q| over 4-neighbour pixel pairs that straddle the mask's edge (p known, q filled), in grey
             levels of 255, beside the originals' value on the same pairs: a completion that ignores its
             surroundings leaves a step there. This reads the filled region where it meets the known one, which is
             what harmonising means; an FD of the filled region alone is not measured, because the classifier's
             features are of whole images and a region cut out of a digit is not an image it has seen
  class_kept share of completed images the classifier assigns the original's true label, beside the originals'
             own accuracy: a completion that harmonises keeps the digit it completes

The seam and class intervals are percentile bootstraps over the n images (``BOOTSTRAP`` resamples from ``seed``).
Two methods are called different on a figure only where their intervals do not overlap.

``python -m engine inpaint-study`` runs it (about 7 minutes on one CPU core at n = 200), writes
``results/inpainting.json`` and the figure ``results/inpainting.png`` (per mask: original / masked / replacement /
RePaint), and the results page (``run.run_report``) shows the section whenever that file is present. It lives
with the page rather than in bench/: it measures quality, not speed, and the page must keep it when regenerated.
"""
from __future__ import annotations

import datetime
import time
from pathlib import Path

import torch

from .. import checkpoints, evaluate
from ..classifier import load_classifier, top_class
from ..data import load_dataset
from ..editing import inpaint, inpaint_nfe
from .cache import EVALUATOR_VERSION, load_cache, write_cache

SETTING = {"schedule": "linear", "steps": 50, "jump_length": 10}
METHODS = {"replacement": 1, "RePaint": 5}  # name: resamples
MASKS = ("bottom half", "centre square", "left half")
BOOTSTRAP = 200
BATCH = 100


def mask_for(name: str, size: int) -> torch.Tensor:
    """(1, 1, size, size): 1 where the pixel is known, 0 where it is filled."""
    m = torch.ones(1, 1, size, size)
    h, q = size // 2, size // 4
    if name == "bottom half":
        m[..., h:, :] = 0
    elif name == "centre square":
        m[..., q:size - q, q:size - q] = 0
    elif name == "left half":
        m[..., :, :h] = 0
    else:
        raise ValueError(f"unknown mask {name!r}; allowed: {', '.join(MASKS)}")
    return m


def seam(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: mean |x_p − x_q| (grey levels of 255, images in [−1, 1]) over the 4-neighbour pairs (p, q) with one
    pixel known and the other filled."""
    diffs, edges = [], []
    for dim in (-1, -2):
        n = images.shape[dim] - 1
        a, b = images.narrow(dim, 0, n), images.narrow(dim, 1, n)
        ma, mb = mask.narrow(dim, 0, n), mask.narrow(dim, 1, n)
        edge = (ma != mb).expand_as(a)
        diffs.append(((a - b).abs() * edge).flatten(1).sum(1))
        edges.append(edge.flatten(1).sum(1))
    return 127.5 * sum(diffs) / sum(edges)


def _mean_ci(values: torch.Tensor, gen: torch.Generator) -> tuple[float, list[float]]:
    return evaluate.bootstrap_mean(values, gen, BOOTSTRAP)


def complete(model, originals: torch.Tensor, mask: torch.Tensor, resamples: int, seed: int) -> torch.Tensor:
    """``originals`` inpainted where ``mask`` is 0, in batches of BATCH (the k-th from seed + k)."""
    out = []
    for k, x0 in enumerate(originals.split(BATCH)):
        for step in inpaint(model, x0, mask, seed=seed + k, resamples=resamples, **SETTING):
            pass
        out.append(step.x_t.cpu().clamp(-1, 1))
    return torch.cat(out)


def study(model_name: str = "mnist-ddpm", *, n: int = 200, seed: int = 0, out="docs", directory=None) -> dict:
    """Run the study (module docstring) and write ``OUT/results/inpainting.json`` and ``inpainting.png``; returns
    the records."""
    model = checkpoints.load_model(model_name, "cpu", directory)
    dataset = model.card["data"]["dataset"]
    clf_name = f"{dataset}-classifier"
    clf = load_classifier(clf_name, directory)
    test_x, test_y = load_dataset(dataset, "test")
    if not 4 <= n <= len(test_x):
        raise ValueError(f"n must be between 4 and {len(test_x)} (the held-out images of {dataset}); got {n}")
    originals, labels = test_x[:n], test_y[:n]
    gen = torch.Generator().manual_seed(seed)
    real_class, real_class_ci = _mean_ci((top_class(clf, originals)[0] == labels).double(), gen)
    records, shown = [], {}
    for mask_name in MASKS:
        mask = mask_for(mask_name, originals.shape[-1])
        real_seam = seam(originals, mask)
        shown[mask_name] = {"original": originals[:8], "masked": originals[:8] * mask + (mask - 1)}
        for method, resamples in METHODS.items():
            t0 = time.perf_counter()
            completed = complete(model, originals, mask, resamples, seed)
            seconds = time.perf_counter() - t0
            shown[mask_name][method] = completed[:8]
            scores = evaluate.score_images(completed, dataset, seed=seed, classifier=clf, heldout=originals)
            s, s_ci = _mean_ci(seam(completed, mask), gen)
            kept, kept_ci = _mean_ci((top_class(clf, completed)[0] == labels).double(), gen)
            records.append({
                "mask": mask_name, "method": method, "resamples": resamples, **SETTING,
                "nfe": inpaint_nfe(SETTING["steps"], SETTING["jump_length"], resamples), "n": n, "seed": seed,
                **{k: scores[k] for k in ("fd", "fd_ci", "fd_real", "fd_ratio", "fd_ratio_ci", "kid", "kid_std",
                                          "confident", "confident_ci", "confident_heldout")},
                "seam": s, "seam_ci": s_ci, "seam_real": float(real_seam.mean()),
                "class_kept": kept, "class_kept_ci": kept_ci, "class_real": real_class, "class_real_ci": real_class_ci,
                "seconds": seconds,
            })
    results = Path(out) / "results"
    results.mkdir(parents=True, exist_ok=True)
    plot(shown, results / "inpainting.png")
    command = f"python -m engine inpaint-study --model {model_name} --n {n} --seed {seed} --out {out}"
    write_cache(results / "inpainting.json", {"study": {
        "model": model_name, "sha256": model.card["sha256"], "classifier_sha256": clf.card["sha256"],
        "evaluator": EVALUATOR_VERSION, "command": command, "date": datetime.date.today().isoformat(),
        "records": records}})
    return {"records": records, "command": command}


def plot(shown: dict, path: Path) -> None:
    """One block per mask: rows original / masked (filled region black) / replacement / RePaint, 8 digits each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ["original", "masked", *METHODS]
    fig, axes = plt.subplots(len(shown) * len(rows), 8, figsize=(8 * 0.9, len(shown) * len(rows) * 0.9 + 0.4))
    for b, (mask_name, images) in enumerate(shown.items()):
        for r, row in enumerate(rows):
            for c in range(8):
                ax = axes[b * len(rows) + r, c]
                ax.imshow(images[row][c, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"{mask_name}\n{row}" if r == 0 else row, fontsize=7, rotation=0, ha="right",
                                  va="center")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ci(x: float, ci: list[float], spec: str = ".2f") -> str:
    return f"{x:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def _apart(a: list[float], b: list[float]) -> bool:
    return a[1] < b[0] or b[1] < a[0]


def _compare(name: str, figure: str, rep: dict, rpl: dict, target: float | None = None) -> str:
    """Which method is better on ``figure`` where the two intervals are apart, else "indistinguishable". Better:
    nearer ``target`` (the originals' value) where one is given, else higher (the class kept)."""
    if not _apart(rep[figure + "_ci"], rpl[figure + "_ci"]):
        return f"{name}: indistinguishable at this n (intervals overlap)"
    if target is None:
        rep_better = rep[figure] > rpl[figure]
    else:
        rep_better = abs(rep[figure] - target) < abs(rpl[figure] - target)
    return f"{name}: {'RePaint' if rep_better else 'replacement'} better"


def section(results_dir: Path) -> list[str]:
    """The page's "Inpainting" section from ``results_dir/inpainting.json``; no lines when the study has not run."""
    study = load_cache(Path(results_dir) / "inpainting.json").get("study")
    if not study:
        return []
    records = study["records"]
    r0 = records[0]
    lines = [
        "", "## Inpainting: RePaint against simple replacement", "",
        f"Generated by `{study['command']}` on {study['date']} (engine/report/inpainting.py gives the method); "
        f"{study['model']} (weights `{study['sha256'][:12]}…`), {r0['n']} held-out digits per mask, the same seeds "
        f"for both methods, DDPM {r0['steps']} steps, {r0['schedule']} schedule; RePaint with jump length "
        f"{r0['jump_length']} and {METHODS['RePaint']} resamples. FD / originals: the completed images' FD to the "
        "training split over the originals' own (1 = as real as the originals). Seam: mean |difference| of "
        "neighbouring pixels across the mask's edge, grey levels (originals beside it). Class kept: the classifier "
        "gives the original's label. Intervals are 95 % bootstrap; a method is called better only where its "
        "interval clears the other's, and better means nearer the originals' value (more of them, for the class kept).", "",
        "| mask | method | NFE | FD / originals | KID ± se | seam (originals) | class kept (originals) | confident | seconds |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in records:
        lines.append(
            f"| {r['mask']} | {r['method']} | {r['nfe']} | {_ci(r['fd_ratio'], r['fd_ratio_ci'])}× | "
            f"{r['kid']:.3g} ± {r['kid_std']:.2g} | {_ci(r['seam'], r['seam_ci'], '.1f')} ({r['seam_real']:.1f}) | "
            f"{_ci(100 * r['class_kept'], [100 * v for v in r['class_kept_ci']], '.1f')} % "
            f"({100 * r['class_real']:.1f} %) | {100 * r['confident']:.1f} % | {r['seconds']:.0f} |")
    lines += ["", "Per mask:", ""]
    for mask in dict.fromkeys(r["mask"] for r in records):
        rep, rpl = (next(r for r in records if r["mask"] == mask and r["method"] == m) for m in ("RePaint", "replacement"))
        verdicts = [_compare("FD / originals", "fd_ratio", rep, rpl, target=1.0),
                    _compare("seam", "seam", rep, rpl, target=rep["seam_real"]),
                    _compare("class kept", "class_kept", rep, rpl)]
        lines.append(f"- **{mask}** — " + "; ".join(verdicts) + f" (RePaint costs {rep['nfe'] / rpl['nfe']:.1f}× "
                     "the network evaluations).")
    lines += ["", "![inpainting: original, masked, replacement, RePaint](results/inpainting.png)", ""]
    return lines
