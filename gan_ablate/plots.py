"""Pictures of samples: scatter plots for 2-D data, image grids for images (raw G beside EMA G)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402


def plot_points(samples: dict[str, torch.Tensor], path: Path, title: str = "",
                modes: torch.Tensor | None = None) -> None:
    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4), squeeze=False)
    lim = 1.5 if modes is None else float(modes.abs().max()) * 1.5
    for ax, (name, pts) in zip(axes[0], samples.items()):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
        if modes is not None:
            ax.scatter(modes[:, 0], modes[:, 1], s=30, c="red", marker="x")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=f"{name} G")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_images(samples: dict[str, torch.Tensor], path: Path, title: str = "", nrow: int = 8) -> None:
    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4.3), squeeze=False)
    for ax, (name, images) in zip(axes[0], samples.items()):
        grid = make_grid(images[: nrow * nrow].clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1))
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_axis_off()
        ax.set_title(f"{name} G")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
