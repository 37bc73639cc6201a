"""How the results page writes its numbers and names its cells (one format for the tables, the sentences and the bars)."""
from __future__ import annotations

from ..models import RANDOM_LABEL


def label(r: dict) -> str:
    """A cell's name on the page: "sampler · schedule · steps steps" (from a record or a Cell's fields), with
    "· random classes" for a conditional model's."""
    classes = " · random classes" if r.get("label") == RANDOM_LABEL else ""
    return f"{r['sampler']} · {r['schedule']} · {r['steps']} steps{classes}"


def num(x: float) -> str:
    """A figure such as an FD: three significant digits, whole numbers from 100 on."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def secs(s: float) -> str:
    return f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def pct(x: float) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return f"{100 * x:.1f} %"


def interval(x: float, ci, digits: int = 2) -> str:
    """A figure with its 95 % interval: "1.23 [0.80, 2.10]"."""
    return f"{x:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def overlap(a, b) -> bool:
    """Whether two intervals [lo, hi] share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def ratio_text(r: dict) -> str:
    """"1.23 [0.80, 2.10]×": a cell's FD / real with its 95 % interval."""
    return interval(r["fd_ratio"], r["fd_ratio_ci"]) + "×"


def sigma_text(r: dict) -> str:
    """"σ 0.035 [0.000, 0.065]": a record's noise-equivalent σ with its 95 % interval, the page's headline figure."""
    return "σ " + interval(r["noise_sigma"], r["noise_sigma_ci"], 3)


def named(r: dict) -> str:
    return f"{label(r)} ({ratio_text(r)})"


def kid_text(r: dict, real: bool = False) -> str:
    """KID ± its standard error (×1 as the evaluator reports it), of the samples or of the held-out images."""
    kid, se = (r["kid_real"], r["kid_real_std"]) if real else (r["kid"], r["kid_std"])
    return f"{num(kid)} ± {se:.2g}"


def spoken_list(items) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [str(x) for x in items]
    return " and ".join(filter(None, (", ".join(items[:-1]), items[-1])))
