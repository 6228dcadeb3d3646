"""The cells of an ablation design: which trick combinations a sweep trains (before seeds).

    add_one        baseline, then baseline + each trick alone          reference: baseline
    leave_one_out  baseline + all tricks, then all minus each trick    reference: all
    factorial      baseline + every subset of the tricks (2^n cells)   reference: baseline
    explicit       baseline + each listed combination                  reference: the first listed
    fractional     a two-level fraction of resolution ablation.resolution (pyDOE3's fracfact_opt, or fracfact_by_res
                   where its search is too large)                   reference: baseline if in it, else all tricks on
    screening      Plackett-Burman (pyDOE3's pbdesign)                 reference: all tricks on

In the two-level designs (factorial, fractional, screening) a trick's level is -1 (off) or +1 (on). Every design
pyDOE3 builds here holds the all-on row (fracfact's generators are plain products of +1s, pbdesign's Hadamard
matrix has a row of ones), so the reference is the baseline where the design holds it and all tricks on otherwise.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from pyDOE3 import alias_vector_indices, fracfact, fracfact_aliasing, fracfact_by_res, fracfact_opt, pbdesign

from gan_ablate.config import DESIGNS, ConfigError
from gan_ablate.record import BASELINE, cell_label

DEFAULT_RESOLUTION = 4
# fracfact_opt scores every choice of generators with fracfact_aliasing over all 2^n effects: up to this many
# choices x effects (8 tricks at resolution IV: 330 x 256, ~2.5 s) it searches; past it, fracfact_by_res
OPT_SEARCH_LIMIT = 100_000
# fracfact_aliasing enumerates all 2^n effects: 15 tricks take 5-14 s (2 busy cores), 16 take ~27 s
MAX_FRACTIONAL_TRICKS = 15
# Plackett-Burman designs keep main effects orthogonal to each other only: two-way interactions are (partially)
# aliased with them
SCREENING_RESOLUTION = 3


@dataclass(frozen=True)
class DesignCell:
    """A cell as a design plans it, before any run (aggregate.Cell: the runs a sweep made of one)."""
    label: str               # how reports name it: "baseline", "+ema", "all", "-ema", "ema+spectral_norm"
    tricks: tuple[str, ...]  # the full trick list of its runs, baseline tricks first


def _combined(baseline: list[str], extra) -> tuple[str, ...]:
    return tuple(baseline) + tuple(t for t in extra if t not in baseline)


def design_cells(design: str, tricks: list[str], baseline: list[str] | None = None,
                 explicit: list[list[str]] | None = None, max_cells: int = 64, force: bool = False,
                 resolution: Optional[int] = None) -> list[DesignCell]:
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
        return [DesignCell(cell_label(c), _combined(baseline, c)) for c in explicit]
    if not tricks:
        raise ConfigError(f"ablation.design={design} needs ablation.tricks, e.g. ablation.tricks=[label_smoothing,ema]")
    if design == "add_one":
        return [DesignCell(BASELINE, tuple(baseline))] + [DesignCell(f"+{t}", _combined(baseline, [t]))
                                                          for t in tricks]
    if design == "leave_one_out":
        return [DesignCell("all", _combined(baseline, tricks))] + [
            DesignCell(f"-{t}", _combined(baseline, [u for u in tricks if u != t])) for t in tricks]
    if design == "factorial":
        _check_size(design, tricks, 2 ** len(tricks), max_cells, force)
        subsets = [s for k in range(len(tricks) + 1) for s in itertools.combinations(tricks, k)]
        return [DesignCell(cell_label(s), _combined(baseline, s)) for s in subsets]
    matrix = two_level_design(design, tuple(tricks), resolution).matrix
    _check_size(design, tricks, len(matrix), max_cells, force)
    on = [tuple(t for t, level in zip(tricks, row) if level > 0) for row in matrix]
    # the reference first: the baseline, or all tricks on where the design does not hold the baseline
    on.sort(key=lambda subset: (len(subset) > 0, len(subset) < len(tricks)))
    return [DesignCell(cell_label(s), _combined(baseline, s)) for s in on]


def _check_size(design: str, tricks: list[str], n_cells: int, max_cells: int, force: bool) -> None:
    if n_cells > max_cells and not force:
        raise ConfigError(f"ablation.design={design} over {len(tricks)} tricks is {n_cells} cells, above "
                          f"ablation.max_cells={max_cells}; raise ablation.max_cells or set ablation.force=true")


@dataclass(frozen=True)
class TwoLevelDesign:
    """pyDOE3's design matrix (a row per cell, a column per trick: -1 off, +1 on) and what it confounds."""
    matrix: np.ndarray
    resolution: int
    generators: tuple[str, ...]  # fractional: "<trick> = <trick>:<trick>:..." for each trick set by the others
    aliases: tuple[str, ...]


@functools.lru_cache(maxsize=8)  # the sweeper asks for the cells and then for the aliases: search once
def two_level_design(design: str, tricks: tuple[str, ...], resolution: Optional[int] = None) -> TwoLevelDesign:
    """The fractional or screening design over `tricks`; ConfigError (naming the ablation.* key) where pyDOE3
    builds none, or none smaller than the factorial."""
    n = len(tricks)
    if design == "screening":
        try:
            matrix = pbdesign(n)
        except AssertionError:  # pbdesign's check that its run count is 2^k, 12 * 2^k or 20 * 2^k
            raise ConfigError(f"ablation.design=screening over {n} tricks: pyDOE3's pbdesign builds no Plackett-Burman "
                              f"design of {4 * (n // 4 + 1)} runs (it builds 2^k, 12*2^k and 20*2^k); "
                              "add or drop ablation.tricks") from None
        if len(matrix) >= 2 ** n:
            raise ConfigError(f"ablation.design=screening over {n} tricks is {len(matrix)} cells, no fewer than the "
                              f"factorial's {2 ** n}: use ablation.design=factorial or more ablation.tricks")
        return TwoLevelDesign(_read_only(matrix), SCREENING_RESOLUTION, (), _partial_aliases(matrix, tricks))
    resolution = DEFAULT_RESOLUTION if resolution is None else resolution
    if n < resolution:  # the shortest fraction, the half with I = every trick, has resolution n
        raise ConfigError(f"ablation.design=fractional at ablation.resolution={resolution} needs at least "
                          f"{resolution} ablation.tricks (here {n}): fewer are the factorial, ablation.design=factorial")
    if n > MAX_FRACTIONAL_TRICKS:
        raise ConfigError(f"ablation.design=fractional takes at most {MAX_FRACTIONAL_TRICKS} ablation.tricks (here {n}): "
                          "pyDOE3's alias map enumerates all 2^n effects; use ablation.design=screening")
    matrix = _fraction(n, resolution)
    alias_map, alias_vector = fracfact_aliasing(matrix)
    reached = _resolution(alias_vector, n)
    if reached < resolution:
        raise ConfigError(f"ablation.resolution={resolution} over {n} ablation.tricks: pyDOE3 builds no such fraction "
                          f"(fracfact_by_res gives resolution {reached}); choose ablation.resolution below {resolution}, "
                          "fewer tricks, or ablation.design=screening")
    base = int(math.log2(len(matrix)))
    return TwoLevelDesign(_read_only(matrix), reached, _generators(matrix, base, tricks),
                          tuple(_named_aliases(alias_map, tricks)))


def alias_structure(design: str, tricks: list[str], resolution: Optional[int] = None) -> list[str]:
    """Which main effects and two-way interactions the design confounds, in trick names.

    fractional: pyDOE3's fracfact_aliasing groups, cut to effects of order <= 2 (those the report's linear
    model estimates), e.g. "label_smoothing:ema = spectral_norm:r1"; a main effect or interaction in no group is
    clear of the others. screening: Plackett-Burman aliasing is partial, which fracfact_aliasing (equal
    columns only) does not see: every main effect's correlation with a two-way interaction, e.g.
    "ema ~ r1:spectral_norm (-0.33)". factorial: nothing is aliased."""
    if design == "factorial":
        return []
    return list(two_level_design(design, tuple(tricks), resolution).aliases)


def design_description(design: str, tricks: list[str], baseline: list[str], cells: list[DesignCell],
                       resolution: Optional[int] = None) -> dict:
    """What a sweep's design.json holds: the cells with each trick's level (-1 off, +1 on), and for the two-level
    designs their resolution, generators and aliases (None where the design is not a two-level one)."""
    two_level = two_level_design(design, tuple(tricks), resolution) if design in ("fractional", "screening") else None
    return {"design": design, "tricks": list(tricks), "baseline": list(baseline),
            "resolution": two_level.resolution if two_level else None,
            "generators": list(two_level.generators) if design == "fractional" else None,
            "cells": [{"label": c.label, "tricks": list(c.tricks), "levels": [1 if t in c.tricks else -1 for t in tricks]}
                      for c in cells],
            "aliases": alias_structure(design, tricks, resolution) if design in ("factorial", "fractional", "screening")
            else None}


def _fraction(n: int, resolution: int) -> np.ndarray:
    """The two-level fraction of n >= `resolution` factors and resolution >= `resolution` with the fewest runs
    pyDOE3 finds: fracfact_opt's minimum-aberration choice of generators (it ranks main-main, then main-two-way
    aliasing first) where its exhaustive search is small, else fracfact_by_res, whose resolution the caller
    checks: past its three-letter generators it can fall below the one asked for. (fracfact_by_res builds
    something for every n > resolution; at n = resolution fracfact_opt's half fraction comes first.)"""
    for base in range(n.bit_length(), n):  # 2^base runs, fewest first; base = n would be the factorial
        if math.comb(2 ** base - 1 - base, n - base) * 2 ** n > OPT_SEARCH_LIMIT:
            break
        try:
            generators, _, alias_vector = fracfact_opt(n, n - base)
        except ValueError:  # "Too many erased factors": it builds no saturated fraction (7 factors in 8 runs)
            continue
        if _resolution(alias_vector, n) >= resolution:
            return fracfact(generators)
    return fracfact_by_res(n, resolution)


def _resolution(alias_vector: np.ndarray, n: int) -> int:
    """The length of the shortest word of the defining relation: the fewest factors in two aliased effects
    (fracfact_aliasing counts aliasings between effects of i and j factors at [i - 1, j - 1])."""
    rows, cols = alias_vector_indices(n)
    return min(int(r + c + 2) for r, c, count in zip(rows, cols, alias_vector) if count)


def _generators(matrix: np.ndarray, base: int, tricks: tuple[str, ...]) -> tuple[str, ...]:
    """fracfact puts the `base` factors of the full factorial first; every other column is a product of them."""
    subsets = [s for k in range(2, base + 1) for s in itertools.combinations(range(base), k)]
    return tuple(f"{tricks[j]} = " + ":".join(tricks[i] for i in next(
        s for s in subsets if np.array_equal(matrix[:, list(s)].prod(axis=1), matrix[:, j])))
        for j in range(base, matrix.shape[1]))


def _named_aliases(alias_map: list[str], tricks: tuple[str, ...]) -> list[str]:
    """fracfact_aliasing's groups ("ab = cd = abe = ...", letter i the i-th factor) in trick names, cut to
    effects of order <= 2; the groups left with one effect confound nothing among those."""
    named = []
    for group in alias_map:
        effects = [e for e in group.split(" = ") if len(e) <= 2]
        if len(effects) > 1:
            named.append(" = ".join(":".join(tricks[ord(letter) - ord("a")] for letter in e) for e in effects))
    return named


def _partial_aliases(matrix: np.ndarray, tricks: tuple[str, ...]) -> tuple[str, ...]:
    """Each main effect's non-zero correlation with a two-way interaction of two other tricks (columns of +-1
    with as many of each: the correlation is their mean product)."""
    n_runs = len(matrix)
    return tuple(f"{tricks[i]} ~ {tricks[j]}:{tricks[k]} ({r:+.2f})"
                 for i in range(len(tricks)) for j, k in itertools.combinations(range(len(tricks)), 2)
                 if i not in (j, k) and (r := matrix[:, i] @ (matrix[:, j] * matrix[:, k]) / n_runs))


def _read_only(matrix: np.ndarray) -> np.ndarray:
    matrix.flags.writeable = False  # shared by lru_cache between callers
    return matrix
