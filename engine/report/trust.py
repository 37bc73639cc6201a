"""The results page's "How far to trust these numbers": the evaluator's validation on known damage to real held-out
images, and its weak spots computed from those rows."""
from __future__ import annotations

from ..validation import validation_markdown
from .text import interval, overlap, pct, ratio_text, spoken_list


def _separable(rows: list[dict]) -> list[str]:
    """The corruptions whose FD interval overlaps the real row's: damage the instrument cannot tell from real
    images at this n (compared by FD, as settings are: ``findings.leaders``)."""
    real = rows[0]
    return [r["corruption"] for r in rows[1:] if overlap(r["fd_ci"], real["fd_ci"])]


def _fd(r: dict) -> str:
    return f"FD {interval(r['fd'], r['fd_ci'])} ({ratio_text(r)} real)"


def trust_lines(validation: dict) -> list[str]:
    """The page's "How far to trust these numbers": the evaluator's validation on known damage to real held-out
    images (``validation.validate`` and ``validation.validation_markdown``, one table per dataset with its verdicts),
    then its weak spots, each computed from those rows: the damage it cannot separate from real images at that n,
    the confident share's failure as a quality figure (images that are half noise read as confident as real ones),
    and a baseline of a single held-out set."""
    lines = ["## How far to trust these numbers", "",
             "Before it judges the models, the evaluator is tested on known damage to real held-out images: real "
             "images should read 0.8–1.25× real, the damage should rank real < noise σ 0.1 < noise σ 0.3 < half "
             "noise (half the images replaced by uniform noise), a 5×5 blur should read worse than noise σ 0.1, and "
             "the noise-equivalent σ (the σ of noise on real images that scores the same) should read the noise "
             "that was added. "
             "The damaged images are scored against the other held-out images as the baseline, exactly as a model's "
             "samples are (`engine.validation.validate`; cached in `results/validation.json`).", ""]
    if not validation:
        return lines + ["No dataset was validated: no model on this page was evaluated.", ""]
    for dataset, rows in validation.items():
        lines.append(validation_markdown(dataset, rows))
    lines += ["Weak spots:", ""]
    for dataset, rows in validation.items():
        n = rows[0]["n"]
        by = {r["corruption"]: r for r in rows}
        mild = _separable(rows)
        if mild:
            lines.append(f"- {dataset}, n = {n}: {spoken_list(mild)} {'is' if len(mild) == 1 else 'are'} not separable from "
                         f"real images (the FD intervals overlap: real {_fd(by['real'])}, "
                         + ", ".join(f"{k} {_fd(by[k])}" for k in mild) + "). A model whose samples carry damage "
                         "this mild can read as real here.")
        else:
            lines.append(f"- {dataset}, n = {n}: every damage's FD interval clears real images' ({_fd(by['real'])}).")
        if by["real"]["heldout_sets"] == 1:
            lines.append(f"- {dataset}: the real baseline is a single held-out set (the test split holds too few "
                         "images for more), so every FD / real interval carries that one set's spread and is wide.")
        half, real = by.get("half noise"), by["real"]
        if half is not None and half["confident_ci"][1] >= real["confident"]:
            lines.append(f"- {dataset}: the confident share is not a quality figure: images that are half uniform "
                         f"noise read {pct(half['confident'])} confident against {pct(real['confident'])} for "
                         "real ones (the classifier is sure of many noise images); it is a check that samples are "
                         "legible, to read beside FD, never instead of it.")
    lines += ["- The bootstrap intervals of FD near real data are wide on the safe side: for one held-out set the "
              "bootstrap overstates the spread that disjoint real sets show (engine/evaluate.py, `score_images`), "
              "so \"indistinguishable\" on this page may hide a real difference, but a resolved difference is real.",
              "- The features are our own small classifier's, not Inception's: figures here compare settings and "
              "models of this repository and are not comparable with published FIDs.", ""]
    return lines
