"""Which tricks help, as factorial effects: a linear model over the tricks of a factorial, fractional or
screening sweep (or a plain multirun whose cells are sets of tricks), fit by ordinary least squares
(statsmodels OLS) with the runs as observations, so the seeds of a cell are its replicates.

Factors: the tricks that are on in some cells and off in others (tricks every cell shares are the
baseline, not factors). Coding: each factor is -1 (off) / +1 (on), the DOE convention, and an
interaction's column is the product of its factors' columns. The model is the intercept, every main
effect, every estimable two-way interaction and, where the sweep has more than one variant (other
overrides it varied, e.g. loss=hinge,wgan_gp), the variant as an additive block (indicator columns).
The effect reported is the difference between the mean at +1 and the mean at -1 of its column, which
under this coding is 2 x the OLS coefficient; its 95% interval and p are the coefficient's (t
distribution on the residual degrees of freedom), scaled by 2. The p-values of one table (one metric
of one generator) are adjusted over its terms with the report's adjustment.

Aliasing is read from the design matrix itself, over the distinct trick combinations fitted: terms
whose columns are equal or negated are one alias set, fitted once (main effects represent their set)
and named together ("a:b = c:d", "a = -b:c"); a set that equals the intercept column is not estimable.
Where a two-way interaction's column is neither orthogonal to nor equal to another term's (partial
confounding: Plackett-Burman designs, or a factorial with a cell missing), the interactions are left out
and only main effects are fitted, as DOE practice does for screening designs.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import statsmodels.api as sm

from gan_ablate.record import RunRecord
from gan_ablate.sweep.aggregate import ALPHA, Cell, adjust

# designs whose cells vary tricks independently enough to estimate effects, and grid (a plain multirun,
# e.g. trick=[],[ema],[ema,spectral_norm]: whatever its cells make estimable is fitted); add_one,
# leave_one_out and explicit answer their question by comparing each cell with the reference cell
EFFECT_DESIGNS = ("factorial", "fractional", "screening", "grid")
MEAN = "mean"  # the intercept's name in alias sets


@dataclass
class Term:
    name: str                     # "spectral_norm" or "label_smoothing:spectral_norm"
    aliases: list[str]            # the other terms of its alias set, signed: ["-a:b"]
    effect: float                 # mean at +1 minus mean at -1 = 2 x coefficient
    ci_low: float = math.nan      # 95% interval of the effect (nan: no residual degrees of freedom or spread)
    ci_high: float = math.nan
    p: float = math.nan           # t-test of coefficient = 0
    p_adjusted: float = math.nan  # over the terms of the table

    @property
    def is_interaction(self) -> bool:
        return ":" in self.name


@dataclass
class Effects:
    factors: list[str]
    terms: list[Term]
    n_runs: int
    df_resid: int
    blocks: list[str]                # the variants fitted as a block ([] where the sweep has one)
    interactions_left_out: str = ""  # why two-way interactions were not fitted ("" where they were)
    not_estimable: list[str] = field(default_factory=list)  # terms aliased with the intercept
    no_intervals: str = ""           # why there are no intervals ("" where there are)
    not_fitted: str = ""             # why no term was fitted ("" where they were)

    def term(self, name: str) -> Optional[Term]:
        """The fitted term `name`, or the one it is aliased with (a term and its alias share one estimate)."""
        bare = name.lstrip("-")
        return next((t for t in self.terms if t.name == bare or bare in (a.lstrip("-") for a in t.aliases)), None)


def applies(records: list[RunRecord]) -> bool:
    designs = {r.design for r in records}
    return designs <= set(EFFECT_DESIGNS) | {None}


def _tricks(cell: Cell) -> list[str]:
    return cell.records[0].tricks


def factors_of(cells: list[Cell]) -> list[str]:
    """Tricks on in some of `cells` and off in others, in the design's order (each cell lists its tricks
    in that order; a fraction may have no cell with all of them)."""
    on = [set(_tricks(c)) for c in cells]
    common = set.intersection(*on) if on else set()
    factors = list(dict.fromkeys(t for c in cells for t in _tricks(c) if t not in common))
    before = {(a, b) for c in cells for a, b in itertools.combinations(_tricks(c), 2)}
    return sorted(factors, key=functools.cmp_to_key(lambda a, b: ((b, a) in before) - ((a, b) in before)))


def _coded(cells: list[Cell], factors: list[str]) -> np.ndarray:
    """One row per cell, one -1/+1 column per factor."""
    return np.array([[1.0 if f in _tricks(c) else -1.0 for f in factors] for c in cells])


def _term_columns(levels: np.ndarray, factors: list[str]) -> dict[str, np.ndarray]:
    """The intercept, then the main effects, then the two-way interactions, as columns over `levels`' rows."""
    columns = {MEAN: np.ones(len(levels))}
    columns.update({f: levels[:, i] for i, f in enumerate(factors)})
    columns.update({f"{a}:{b}": levels[:, i] * levels[:, j]
                    for (i, a), (j, b) in itertools.combinations(enumerate(factors), 2)})
    return columns


def alias_sets(columns: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Terms grouped by identical or negated columns: {representative: [its aliases, "-name" where
    negated]}, the representative being the first of its set in `columns`' order."""
    sets: dict[str, list[str]] = {}
    for name, column in columns.items():
        for representative in sets:
            if np.array_equal(column, columns[representative]):
                sets[representative].append(name)
                break
            if np.array_equal(column, -columns[representative]):
                sets[representative].append(f"-{name}")
                break
        else:
            sets[name] = []
    return sets


def _partially_confounded(columns: dict[str, np.ndarray], kept: list[str]) -> bool:
    """Whether an interaction among `kept` is correlated with another kept term without being its alias."""
    for a, b in itertools.combinations(kept, 2):
        if (":" in a or ":" in b) and columns[a] @ columns[b] != 0:
            return True
    return False


def _rank_deficient(design: pd.DataFrame) -> bool:
    return np.linalg.matrix_rank(design.to_numpy()) < design.shape[1]


def fit_effects(cells: list[Cell], samples: dict[str, list[float]], adjust_method: str) -> Optional[Effects]:
    """The effects of the tricks that vary over `cells`, fit to `samples` (each cell's values of one metric,
    as the report's metric table has them: failures imputed or left out), p adjusted with
    `adjust_method` (holm | bh | none). None where no trick varies; no terms, and `not_fitted` saying
    why, where the cells cannot separate them."""
    cells = [c for c in cells if samples.get(c.name)]
    factors = factors_of(cells)
    if not factors:
        return None
    design_cells = np.unique(_coded(cells, factors), axis=0)
    columns = _term_columns(design_cells, factors)
    sets = alias_sets(columns)
    not_estimable = sets.pop(MEAN)
    kept = list(sets)
    left_out = ""
    if not any(":" in name for name in kept):
        left_out = "every two-way interaction is aliased with a main effect or the mean" if len(factors) > 1 else ""
    elif _partially_confounded(columns, [MEAN] + kept):
        left_out = ("two-way interactions are partially confounded with other terms in these cells (their columns "
                    "are neither orthogonal to them nor the same): main effects only")
        kept = [name for name in kept if ":" not in name]
        not_estimable = [name for name in not_estimable if ":" not in name.lstrip("-")]
        sets = {name: [a for a in sets[name] if ":" not in a.lstrip("-")] for name in kept}

    runs = [(cell, value) for cell in cells for value in samples[cell.name]]
    levels = _coded([cell for cell, _ in runs], factors)
    run_columns = _term_columns(levels, factors)
    design = pd.DataFrame({MEAN: run_columns[MEAN], **{name: run_columns[name] for name in kept}})
    tricks_dependent = _rank_deficient(design)
    blocks = sorted({c.variant for c in cells})
    if len(blocks) > 1:
        variant = pd.Series([cell.variant for cell, _ in runs], dtype="category")
        design = pd.concat([design, pd.get_dummies(variant, prefix="block", drop_first=True, dtype=float)], axis=1)
    else:
        blocks = []
    y = np.array([value for _, value in runs], float)
    effects = Effects(factors, [], len(y), 0, blocks, left_out, [name.lstrip("-") for name in not_estimable])
    if tricks_dependent:
        effects.not_fitted = "the tricks' columns are linearly dependent over these cells: no effect can be told apart"
    elif _rank_deficient(design):
        effects.not_fitted = ("the variant is confounded with the tricks (not every variant ran the same trick "
                              "combinations): no effect can be told from the block")
    if effects.not_fitted:
        return effects
    result = sm.OLS(y, design).fit()
    effects.df_resid = int(round(result.df_resid))
    # least squares leaves ~1e-16 where cell means cancel exactly: residuals and effects that small are 0
    negligible = 1e-12 * max(1.0, float(np.abs(y).max()))
    if effects.df_resid == 0:
        effects.no_intervals = "0 residual degrees of freedom (one run per cell and a saturated model): add seeds"
    elif np.abs(result.resid).max() < negligible:
        effects.no_intervals = "the model fits every run exactly (no residual spread)"
    intervals = None if effects.no_intervals else result.conf_int(alpha=ALPHA)
    for name in kept:
        effect = 2 * float(result.params[name])
        term = Term(name, sets[name], 0.0 if abs(effect) < negligible else effect)
        if intervals is not None:
            term.ci_low, term.ci_high = (2 * float(v) for v in intervals.loc[name])
            term.p = float(result.pvalues[name])
        effects.terms.append(term)
    for term, p in zip(effects.terms, adjust([t.p for t in effects.terms], adjust_method)):
        term.p_adjusted = p
    return effects
