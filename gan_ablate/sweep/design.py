"""The cells of an ablation design: which trick combinations a sweep trains (before seeds).

    add_one        baseline, then baseline + each trick alone          reference: baseline
    leave_one_out  baseline + all tricks, then all minus each trick    reference: all
    factorial      baseline + every subset of the tricks (2^n cells)   reference: baseline
    explicit       baseline + each listed combination                  reference: the first listed
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from gan_ablate.config import DESIGNS, ConfigError


@dataclass(frozen=True)
class Cell:
    label: str               # how reports name it: "baseline", "+ema", "all", "-ema", "ema+spectral_norm"
    tricks: tuple[str, ...]  # the full trick list of its runs, baseline tricks first


def _combined(baseline: list[str], extra) -> tuple[str, ...]:
    return tuple(baseline) + tuple(t for t in extra if t not in baseline)


def design_cells(design: str, tricks: list[str], baseline: list[str] | None = None,
                 explicit: list[list[str]] | None = None, max_cells: int = 64, force: bool = False) -> list[Cell]:
    """The cells of one design, the reference cell first. Raises ConfigError for an empty or
    oversized design, naming the ablation.* key to change."""
    baseline = list(baseline or [])
    if design not in DESIGNS:
        raise ConfigError(f"ablation.design={design!r} is not allowed; choose one of: {', '.join(DESIGNS)}")
    if len(set(tricks)) != len(tricks):
        raise ConfigError(f"ablation.tricks={tricks} names a trick twice")
    if design == "explicit":
        if not explicit:
            raise ConfigError("ablation.design=explicit needs ablation.cells, e.g. 'ablation.cells=[[],[ema],[ema,spectral_norm]]'")
        return [Cell("+".join(c) or "baseline", _combined(baseline, c)) for c in explicit]
    if not tricks:
        raise ConfigError(f"ablation.design={design} needs ablation.tricks, e.g. ablation.tricks=[label_smoothing,ema]")
    if design == "add_one":
        return [Cell("baseline", tuple(baseline))] + [Cell(f"+{t}", _combined(baseline, [t])) for t in tricks]
    if design == "leave_one_out":
        return [Cell("all", _combined(baseline, tricks))] + [
            Cell(f"-{t}", _combined(baseline, [u for u in tricks if u != t])) for t in tricks]
    n_cells = 2 ** len(tricks)
    if n_cells > max_cells and not force:
        raise ConfigError(f"ablation.design=factorial over {len(tricks)} tricks is {n_cells} cells, above "
                          f"ablation.max_cells={max_cells}; raise ablation.max_cells or set ablation.force=true")
    subsets = [s for k in range(len(tricks) + 1) for s in itertools.combinations(tricks, k)]
    return [Cell("+".join(s) or "baseline", _combined(baseline, s)) for s in subsets]
