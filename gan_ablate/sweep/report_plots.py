"""The report's pictures (PNG, matplotlib's Agg backend: no screen needed)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from gan_ablate.record import METRIC_DIRECTIONS  # noqa: E402
from gan_ablate.sweep.aggregate import Cell, summarise  # noqa: E402

NET_COLOURS = {"raw": "tab:blue", "ema": "tab:orange"}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def metric_per_cell(cells: dict[str, Cell], metric: str, out: Path) -> str:
    names = list(cells)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    for k, net in enumerate(("raw", "ema")):
        offset = -0.15 if k == 0 else 0.15
        for i, name in enumerate(names):
            values = cells[name].values(net, metric)
            if not values:
                continue
            s = summarise(values)
            y = i + offset
            ax.scatter(values, [y] * len(values), s=12, color=NET_COLOURS[net], alpha=0.4)
            if not math.isnan(s.ci_low):
                ax.errorbar(s.mean, y, xerr=[[s.mean - s.ci_low], [s.ci_high - s.mean]], fmt="o",
                            color=NET_COLOURS[net], capsize=3)
            else:
                ax.plot(s.mean, y, "o", color=NET_COLOURS[net])
        ax.plot([], [], "o", color=NET_COLOURS[net], label=f"{net} G")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    direction = {1: " (higher is better)", -1: " (lower is better)"}.get(METRIC_DIRECTIONS.get(metric, 0), "")
    ax.set_xlabel(metric + direction)
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / f"metric_{_safe(metric)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _run_log(record: dict) -> Optional[pd.DataFrame]:
    path = Path(record["run_dir"]) / "csv" / "metrics.csv"
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):  # being written
        return None


def _mean_curve(cell: Cell, key: str) -> Optional[pd.Series]:
    series = []
    for r in cell.records:
        frame = _run_log(r)
        if frame is not None and key in frame:
            series.append(frame[["step", key]].dropna().groupby("step")[key].mean())
    if not series:
        return None
    curve = pd.concat(series, axis=1).mean(axis=1).sort_index()
    window = max(1, len(curve) // 50)
    return curve.rolling(window, min_periods=1).mean()


def training_curves(cells: dict[str, Cell], keys: tuple[str, ...], title: str, out: Path) -> Optional[str]:
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 3.6), squeeze=False)
    drawn = False
    for ax, key in zip(axes[0], keys):
        for name, cell in cells.items():
            curve = _mean_curve(cell, key)
            if curve is not None:
                ax.plot(curve.index, curve.values, label=name, linewidth=1)
                drawn = True
        ax.set_title(key)
        ax.set_xlabel("iteration")
        if key.startswith("grad_norm"):
            ax.set_yscale("log")
    if not drawn:
        plt.close(fig)
        return None
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out / f"curves_{_safe(title)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def evaluation_curves(cells: dict[str, Cell], metrics: list[str], out: Path, net: str = "raw") -> Optional[str]:
    """From each record's evaluation history (FID, modes, ...), mean over seeds per iteration."""
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    drawn = False
    for ax, metric in zip(axes[0], metrics):
        for name, cell in cells.items():
            points: dict[int, list[float]] = {}
            for r in cell.records:
                for h in r.get("history") or []:
                    if metric in h.get(net, {}):
                        points.setdefault(h["iteration"], []).append(float(h[net][metric]))
            if points:
                its = sorted(points)
                ax.plot(its, [sum(points[i]) / len(points[i]) for i in its], marker=".", label=name, linewidth=1)
                drawn = True
        ax.set_title(f"{metric} ({net} G)")
        ax.set_xlabel("iteration")
    if not drawn:
        plt.close(fig)
        return None
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out / "curves_evaluation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _last_sample_image(cell: Cell) -> Optional[Path]:
    for r in sorted(cell.records, key=lambda r: r.get("seed", 0)):
        images = sorted((Path(r["run_dir"]) / "samples").glob("samples_*.png"))
        if images:
            return images[-1]
    return None


def last_samples(cells: dict[str, Cell], out: Path) -> Optional[str]:
    images = {name: _last_sample_image(cell) for name, cell in cells.items()}
    images = {k: v for k, v in images.items() if v is not None}
    if not images:
        return None
    cols = min(3, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, images.items()):
        ax.imshow(plt.imread(path))
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    path = out / "samples_last.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
