"""The report's pictures (PNG, matplotlib's Agg backend: no screen needed)."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gan_ablate.record import METRIC_DIRECTIONS, RunRecord  # noqa: E402
from gan_ablate.sweep.aggregate import ALPHA, Cell, summarise  # noqa: E402
from gan_ablate.sweep.effects import Effects  # noqa: E402

NET_COLOURS = {"raw": "tab:blue", "ema": "tab:orange"}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _direction_text(metric: str) -> str:
    return {1: " (higher is better)", -1: " (lower is better)"}.get(METRIC_DIRECTIONS.get(metric, 0), "")


def _save(fig, path: Path, rect=(0, 0, 1, 1)) -> str:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


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
    ax.set_xlabel(metric + _direction_text(metric))
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / f"metric_{_safe(metric)}.png")


def _run_log(record: RunRecord) -> Optional[pd.DataFrame]:
    path = Path(record.run_dir) / "csv" / "metrics.csv"
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
    return _save(fig, out / f"curves_{_safe(title)}.png")


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
                for h in r.history:
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
    return _save(fig, out / "curves_evaluation.png")


def _last_sample_image(cell: Cell) -> Optional[Path]:
    for r in sorted(cell.records, key=lambda r: r.seed or 0):
        images = sorted((Path(r.run_dir) / "samples").glob("samples_*.png"))
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
    return _save(fig, out / "samples_last.png")


def _found(term) -> bool:
    return term.p_adjusted < ALPHA  # nan (no p) compares False


def effect_plot(fits: dict[str, Effects], metric: str, out: Path) -> str:
    """A forest plot per generator, one above the other: each fitted term's effect with its 95% interval,
    largest |effect| on top; terms whose adjusted p < 0.05 in colour."""
    heights = [0.38 * len(fit.terms) + 1.2 for fit in fits.values()]
    fig, axes = plt.subplots(len(fits), 1, figsize=(9, sum(heights) + 0.4), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (net, fit) in zip(axes[:, 0], fits.items()):
        ranked = sorted(fit.terms, key=lambda t: -abs(t.effect))
        for y, term in enumerate(ranked):
            colour = NET_COLOURS[net] if _found(term) else "0.45"
            if not math.isnan(term.ci_low):
                ax.errorbar(term.effect, y, xerr=[[term.effect - term.ci_low], [term.ci_high - term.effect]],
                            fmt="o", color=colour, capsize=3)
            else:
                ax.plot(term.effect, y, "o", color=colour)
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_yticks(range(len(ranked)), [" = ".join([t.name] + t.aliases) for t in ranked], fontsize=8)
        ax.set_ylim(len(ranked) - 0.5, -0.5)
        ax.set_title(f"{net} G: " + (f"no intervals: {fit.no_intervals}" if fit.no_intervals
                                     else f"95% CI (t, {fit.df_resid} df); coloured: adjusted p < {ALPHA}"), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"effect on {metric}{_direction_text(metric)}: mean with the trick minus mean without")
    return _save(fig, out / f"effects_{_safe(metric)}.png")


def interaction_map(fits: dict[str, Effects], metric: str, out: Path) -> Optional[str]:
    """Per generator, trick x trick: below the diagonal each two-way interaction's effect (colour and number;
    '*': adjusted p < 0.05), on the diagonal the trick's main effect (grey). Pairs the design cannot tell
    apart are hatched and tagged with a letter their alias set is listed under in the caption ('-': negated,
    so the pair's cell shows the estimate with its sign); 'n.e.' marks a pair aliased with the mean. None
    where no interaction was fitted."""
    fits = {net: fit for net, fit in fits.items() if any(t.is_interaction for t in fit.terms)}
    if not fits:
        return None
    size = max(len(fit.factors) for fit in fits.values())
    scale = max(abs(t.effect) for fit in fits.values() for t in fit.terms if t.is_interaction) or 1.0
    fig, axes = plt.subplots(1, len(fits), figsize=(1.3 * size * len(fits) + 2.5, 1.3 * size + 2.2), squeeze=False)
    aliased = []  # the alias sets of interactions, tagged A, B, ... in the order met
    for ax, (net, fit) in zip(axes[0], fits.items()):
        n = len(fit.factors)
        grid = np.full((n, n), np.nan)
        for i, j in itertools.combinations(range(n), 2):
            name = f"{fit.factors[i]}:{fit.factors[j]}"
            term = fit.term(name)
            if term is None:  # aliased with the mean
                ax.text(i, j, "n.e.", ha="center", va="center", fontsize=8, color="0.3")
                continue
            grid[j, i] = -term.effect if f"-{name}" in term.aliases else term.effect
            label = f"{grid[j, i]:+.3g}" + ("*" if _found(term) else "")
            if term.aliases:
                alias_set = " = ".join([term.name] + term.aliases)
                if alias_set not in aliased:
                    aliased.append(alias_set)
                label += f"\n({chr(ord('A') + aliased.index(alias_set))})"
                ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.6"))
            ax.text(i, j, label, ha="center", va="center", fontsize=8,
                    color="white" if abs(grid[j, i]) > 0.6 * scale else "black")
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-scale, vmax=scale)
        for k, factor in enumerate(fit.factors):
            main = fit.term(factor)
            ax.add_patch(plt.Rectangle((k - 0.5, k - 0.5), 1, 1, color="0.9"))
            ax.text(k, k, f"main\n{main.effect:+.3g}" + ("*" if _found(main) else ""), ha="center", va="center",
                    fontsize=8, color="0.25")
        ax.set_xticks(range(n), fit.factors, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(n), fit.factors, fontsize=8)
        ax.set_title(f"{net} G", fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8, label=f"interaction effect on {metric}")
    fig.suptitle(f"two-way interactions on {metric}{_direction_text(metric)}; *: adjusted p < {ALPHA}", fontsize=9)
    if aliased:
        fig.text(0.01, 0.01, "hatched, aliased (one estimate, shown with each pair's sign):\n"
                 + "\n".join(f"({chr(ord('A') + k)}) {a}" for k, a in enumerate(aliased)), fontsize=8, va="bottom")
    # room below the maps for the caption's lines
    return _save(fig, out / f"interactions_{_safe(metric)}.png", rect=(0, 0.04 * len(aliased), 1, 1))
