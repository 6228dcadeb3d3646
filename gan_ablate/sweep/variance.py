"""Evaluation noise vs training noise: how much of a metric's spread comes from training (the run's seed) and how
much from evaluating it (the latent set scored), from records with eval_repeats (metrics.eval_repeats >= 2).

Within a cell, a one-way random-effects model: the j-th evaluation of run i is y_ij = mu + a_i + e_ij, with
a_i ~ (0, s2_between) the run's training and e_ij ~ (0, s2_within) the latent set. The components are the ANOVA
(method-of-moments) estimators of Searle, Casella & McCulloch (1992), Variance Components, ch. 3 (the 1-way
classification, unbalanced data):

    s2_within = MSW,   s2_between = max(0, (MSB - MSW) / n0),   n0 = (N - sum_i n_i^2 / N) / (a - 1)

(a runs, n_i evaluations of run i, N in all). Several cells are pooled as fixed blocks: a trick's effect is no
training noise. MSB is then the runs-within-cells mean square (the F-test of value ~ C(run), runs nested in cells,
against value ~ C(cell)), MSW the residual one of value ~ C(run), and n0 = sum_c (N_c - sum_i n_ci^2 / N_c) /
sum_c (a_c - 1), by the same expectation argument per cell. The sums of squares are statsmodels' (anova_lm of the
two least-squares fits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from gan_ablate.record import RunRecord


@dataclass(frozen=True)
class NoiseSplit:
    cells: int
    runs: int
    evaluations: int
    within_var: float   # evaluation noise: between latent sets, one G
    between_var: float  # training noise: between runs (seeds) of one cell, each measured once

    @property
    def within_sd(self) -> float:
        return math.sqrt(self.within_var)

    @property
    def between_sd(self) -> float:
        return math.sqrt(self.between_var)

    @property
    def training_share(self) -> float:
        """Of one evaluation's variance around its cell's mean, the part that comes from training (nan: none)."""
        total = self.within_var + self.between_var
        return self.between_var / total if total > 0 else math.nan


def split_noise(cells: Mapping[str, Sequence[Sequence[float]]]) -> NoiseSplit | None:
    """cell -> runs -> the run's evaluations. None where the data cannot separate the two: no cell with two runs,
    or no run evaluated twice."""
    rows = [(cell, f"{cell}/{i}", float(v)) for cell, runs in cells.items()
            for i, values in enumerate(runs) for v in values]
    sizes = [[len(values) for values in runs if len(values)] for runs in cells.values()]
    df_between = sum(len(n) - 1 for n in sizes if n)
    df_within = sum(k - 1 for n in sizes for k in n)
    if df_between < 1 or df_within < 1:
        return None
    data = pd.DataFrame(rows, columns=["cell", "run", "value"])
    cells_only = smf.ols("value ~ C(cell)" if data["cell"].nunique() > 1 else "value ~ 1", data).fit()
    table = anova_lm(cells_only, smf.ols("value ~ C(run)", data).fit())
    # least squares leaves rounding of the order of eps * sum(y^2) where a spread is exactly zero (equal integer
    # metrics such as modes): below that a sum of squares is zero
    rounding = 64 * np.finfo(float).eps * float((data["value"] ** 2).sum())
    ms_between, ms_within = (ss / df if ss > rounding else 0.0 for ss, df in
                             ((table["ss_diff"].iloc[1], df_between), (table["ssr"].iloc[1], df_within)))
    n0 = sum(sum(n) - sum(k * k for k in n) / sum(n) for n in sizes if n) / df_between
    between = max(0.0, (ms_between - ms_within) / n0)
    return NoiseSplit(sum(1 for n in sizes if n), sum(len(n) for n in sizes), int(sum(map(sum, sizes))),
                      float(ms_within), float(between))


def repeated_values(cells: Mapping[str, Sequence[RunRecord]], net: str, metric: str) -> dict[str, list[list[float]]]:
    """cell -> one list of eval_repeats values per finished run that has them (cell: its records)."""
    found: dict[str, list[list[float]]] = {}
    for name, records in cells.items():
        for r in records:
            values = [float(rep[metric]) for rep in (r.eval_repeats or {}).get(net) or [] if metric in rep]
            if r.status == "ok" and values and np.all(np.isfinite(values)):
                found.setdefault(name, []).append(values)
    return found
