"""Saving samples as a picture: an image grid, or a scatter plot for 2-D points."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import save_image  # noqa: E402


def save_samples(x: torch.Tensor, path, title: str = "") -> None:
    """(N, 2) points → scatter plot over [−4, 4]²; (N, C, H, W) images in [−1, 1] → a near-square grid."""
    x = x.detach().float().cpu()
    if x.dim() == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:, 0], x[:, 1], s=1)
        ax.set(xlim=(-4, 4), ylim=(-4, 4), title=title)
        fig.savefig(path, dpi=80)
        plt.close(fig)
    else:
        save_image((x.clamp(-1, 1) + 1) / 2, path, nrow=max(1, int(round(len(x) ** 0.5))))
