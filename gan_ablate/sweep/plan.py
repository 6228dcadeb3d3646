"""How many seeds per cell a sweep needs, from a pilot sweep of the same design: per metric and generator
the pooled within-cell standard deviation of the pilot's runs, and the seeds per cell at which the
report's comparison of a cell with its reference detects a difference DELTA with the asked power, at
the significance level its multiplicity adjustment leaves to one comparison. Two bounds, the larger
decides: statsmodels' power solver for the two-sample t-test (the report's permutation test of the
difference of means has, for normal data, about the t-test's power), and the permutation floor: with
n seeds a side no relabelling of the runs gives a p below 2 / C(2n, n), whatever the difference."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from statsmodels.stats.power import TTestIndPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from gan_ablate.record import RunRecord
from gan_ablate.sweep.aggregate import (ADJUSTMENT_NAMES, ALPHA, EXACT_RELABELLINGS, Analysis, Cell, group_cells,
                                       metric_names, reference_of, smallest_p)

POWER = 0.8
# the t-test the solver plans for needs 2 runs a side (its pooled variance has 2n - 2 degrees of freedom)
FEWEST_SEEDS = 2
MOST_SEEDS = 1000  # where the solver fails and counting up stops: a plan past it is not a plan
# past EXACT_RELABELLINGS scipy draws random relabellings and counts the observed one among them
RESAMPLED_SMALLEST_P = 2 / (EXACT_RELABELLINGS + 1)


class PlanError(ValueError):
    """A --plan request the sweep cannot answer (its message is one line for the user)."""


@dataclass(frozen=True)
class Deltas:
    """The differences to detect, in each metric's units: `every` for all metrics (None: only the named)."""
    every: Optional[float] = None
    per_metric: tuple[tuple[str, float], ...] = ()

    def of(self, metric: str) -> Optional[float]:
        return dict(self.per_metric).get(metric, self.every)

    def metrics(self, found: Sequence[str]) -> list[str]:
        """The metrics to plan, in the sweep's order; a named metric the sweep lacks is refused."""
        missing = [m for m, _ in self.per_metric if m not in found]
        if missing:
            raise PlanError(f"--plan {missing[0]}=...: no metric {missing[0]!r} in the sweep's records "
                            f"(its metrics: {', '.join(found) or 'none'})")
        return [m for m in found if self.of(m) is not None]


def parse_deltas(specs: Sequence[str]) -> Deltas:
    """`--plan 0.05` (every metric), `--plan modes=1` (one metric; overrides the bare number)."""
    every, per_metric = None, {}
    for spec in specs:
        metric, _, text = spec.rpartition("=")
        try:
            delta = float(text)
        except ValueError:
            delta = math.nan
        if not (delta > 0 and math.isfinite(delta)):
            raise PlanError(f"--plan {spec}: the difference to detect must be a positive number in the metric's "
                            "units (DELTA for every metric, or METRIC=DELTA)")
        if not metric:
            if every is not None:
                raise PlanError(f"--plan {spec}: a bare DELTA is already given ({every:g}); name the metric for "
                                "another (METRIC=DELTA)")
            every = delta
        else:
            per_metric[metric] = delta
    return Deltas(every, tuple(per_metric.items()))


def pooled_sd(samples: Sequence[Sequence[float]]) -> tuple[float, int]:
    """sqrt(Σ (n_i - 1) s_i² / Σ (n_i - 1)) over the cells with 2 or more runs, and its degrees of freedom
    Σ (n_i - 1): each cell's spread about its own mean, so what the tricks change is not counted as noise."""
    spread = [s for s in samples if len(s) >= 2]
    df = sum(len(s) - 1 for s in spread)
    if df == 0:
        return math.nan, 0
    # a cell of equal floats: exactly no spread (np.var can leave 1e-34 where every value is 1/9)
    squares = sum((len(s) - 1) * float(np.var(s, ddof=1)) for s in spread if min(s) != max(s))
    return math.sqrt(squares / df), df


def adjusted_alpha(comparisons: int, adjust: str, alpha: float = ALPHA) -> float:
    """The level one comparison of a table of `comparisons` must reach: alpha / m under holm (Bonferroni,
    Holm's first step: the smallest p must clear it; Holm's later steps only relax) and under bh (its
    threshold for the smallest p, which is all BH grants when one difference of the m is real; with k real
    it grants k alpha / m); alpha itself under none."""
    return alpha if adjust == "none" else alpha / comparisons


def ttest_power(effect_size: float, seeds: int, alpha: float) -> float:
    """statsmodels' power of the two-sided two-sample t-test with `seeds` runs a side."""
    solver = TTestIndPower()
    power = solver.power(effect_size, seeds, alpha, alternative="two-sided")
    if math.isnan(power):
        # scipy's noncentral t gives nan for the far lower tail of a large effect; the upper tail alone
        # (one-sided at alpha/2) is the two-sided power less that tail, so a lower bound of it
        power = solver.power(effect_size, seeds, alpha / 2, alternative="larger")
    return power


def ttest_seeds(effect_size: float, alpha: float, power: float = POWER) -> Optional[int]:
    """Seeds per cell for a two-sided two-sample t-test to reach `power` at `alpha`: statsmodels' solver,
    rounded up and checked (None: none up to MOST_SEEDS). Its search starts at 2 runs a side, so an effect
    that 2 already detect is answered here."""
    if ttest_power(effect_size, FEWEST_SEEDS, alpha) >= power:
        return FEWEST_SEEDS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # its nan is handled below
        seeds = TTestIndPower().solve_power(effect_size=effect_size, alpha=alpha, power=power, ratio=1.0,
                                            alternative="two-sided")
    # the solver's answer is checked: for a large effect at a small alpha it returns nan or stops at its lower
    # bound (2.000005 for Δ/SD = 12 at 0.05/7, where 2 seeds give power 0.64): the fewest seeds reaching it
    n = FEWEST_SEEDS + 1 if math.isnan(seeds) else max(FEWEST_SEEDS + 1, math.ceil(seeds))
    while n > FEWEST_SEEDS + 1 and ttest_power(effect_size, n - 1, alpha) >= power:
        n -= 1
    while ttest_power(effect_size, n, alpha) < power:
        if n == MOST_SEEDS:
            return None
        n += 1
    return n


def smallest_report_p(n: int) -> float:
    """The smallest two-sided p the report's permutation test gives with n seeds a side: exact up to
    EXACT_RELABELLINGS relabellings (2 / C(2n, n)); beyond, scipy counts the observed split among its random
    ones, so never below RESAMPLED_SMALLEST_P."""
    if math.comb(2 * n, n) <= EXACT_RELABELLINGS:
        return smallest_p(n, n)
    return RESAMPLED_SMALLEST_P


def permutation_floor(alpha: float) -> Optional[int]:
    """The fewest seeds a side at which the report's test can give p <= alpha at all (None: at no n)."""
    n = FEWEST_SEEDS
    while math.comb(2 * n, n) <= EXACT_RELABELLINGS:
        if smallest_report_p(n) <= alpha:
            return n
        n += 1
    return n if smallest_report_p(n) <= alpha else None


@dataclass
class Plan:
    metric: str
    net: str
    sd: float
    df: int
    delta: float
    comparisons: int
    alpha: float
    ttest: Optional[int] = None   # seeds per cell the t-test plan needs
    floor: Optional[int] = None   # seeds per cell the permutation test needs to reach alpha at all
    problem: str = ""             # why there is no plan (one line)

    @property
    def seeds(self) -> Optional[int]:
        return None if self.problem else max(self.ttest, self.floor)

    @property
    def decided_by(self) -> str:
        if self.problem:
            return self.problem
        if self.floor > self.ttest:
            return f"permutation floor (the t-test alone: {self.ttest})"
        return "t-test power"


def compared_cells(cells: dict[str, Cell], reference: Optional[str] = None) -> int:
    """The comparisons of one report table of this design: every cell with runs that ended, a reference
    other than itself, and not set apart (the report gives those no p)."""
    return sum(1 for cell in cells.values()
               if cell.outcomes().runs and (ref := reference_of(cell, cells, reference)) is not None
               and ref is not cell and not cell.set_apart())


def plan_one(metric: str, net: str, cells: dict[str, Cell], delta: float, comparisons: int, analysis: Analysis,
             power: float) -> Plan:
    samples = [cell.values(net, metric) for cell in cells.values()]
    sd, df = pooled_sd(samples)
    alpha = adjusted_alpha(comparisons, analysis.adjust)
    plan = Plan(metric, net, sd, df, delta, comparisons, alpha, floor=permutation_floor(alpha))
    if df == 0:
        plan.problem = "no cell has 2 finished runs: no spread to pool (pilot with ablation.seeds=2 or more)"
    elif sd == 0:
        plan.problem = (f"SD 0: every cell's runs gave the same value, so the pilot shows no noise to plan "
                        f"against (the permutation floor alone: {plan.floor} seeds per cell)")
    elif plan.floor is None:
        plan.problem = (f"alpha {alpha:.3g} is below the smallest p the report's test can give "
                        f"({RESAMPLED_SMALLEST_P:.3g}, with {EXACT_RELABELLINGS:,} random relabellings)")
    else:
        plan.ttest = ttest_seeds(delta / sd, alpha, power)
        if plan.ttest is None:
            plan.problem = f"statsmodels' power solver found no seeds per cell for Δ/SD = {delta / sd:.3g}"
    return plan


def plan_sweep(records: list[RunRecord], deltas: Deltas, analysis: Analysis = Analysis(), power: float = POWER,
               reference: Optional[str] = None) -> list[Plan]:
    """A plan per planned metric and generator (the primary first, as the report's tables)."""
    if not 0 < power < 1:
        raise PlanError(f"--power {power:g}: the power must be between 0 and 1 (e.g. 0.8)")
    cells = group_cells(records)
    metrics = deltas.metrics(metric_names(records))
    comparisons = compared_cells(cells, reference)
    if not comparisons:
        raise PlanError(f"the sweep compares no cells ({len(cells)} cell(s), none with a reference other than "
                        "itself): a pilot needs the design's cells (e.g. hydra/sweeper=ablation)")
    primary = next((r.primary for r in records if r.primary), "raw")
    nets = [primary] + [n for n in ("raw", "ema") if n != primary]
    return [plan_one(m, net, cells, deltas.of(m), comparisons, analysis, power)
            for m in metrics for net in nets if any(cell.values(net, m) for cell in cells.values())]


def alpha_text(analysis: Analysis, comparisons: int) -> str:
    if analysis.adjust == "holm":
        return (f"α = {ALPHA}/{comparisons}: Bonferroni over the {comparisons} comparisons of each table, the first "
                "step of Holm (the smallest p must clear it; Holm's later steps only relax it), so the plan is "
                "conservative")
    if analysis.adjust == "bh":
        return (f"α = {ALPHA}/{comparisons}: Benjamini-Hochberg's threshold for the smallest of the {comparisons} "
                "p-values of each table, all it grants when one difference is real (with k real, k·α/m): the "
                "conservative plan")
    return f"α = {ALPHA}: not adjusted for the {comparisons} comparisons of each table (--adjust none)"


def plan_report(plans: list[Plan], records: list[RunRecord], source: str, analysis: Analysis, power: float):
    """The plan as a Report: one table, the notes that say how it was made."""
    from gan_ablate.sweep.report import Report, Table, fmt

    n_cells = len(group_cells(records))
    rows = [[p.metric, p.net, fmt(p.sd), str(p.df), f"{p.delta:g}", fmt(p.delta / p.sd) if p.sd else "–",
             f"{p.alpha:.3g}", str(p.ttest or "–"), str(p.floor or "–"), str(p.seeds or "–"), p.decided_by]
            for p in plans]
    table = Table(f"Seeds per cell for {power:g} power",
                  ["metric", "G", "SD", "df", "Δ", "Δ/SD", f"α ({ADJUSTMENT_NAMES[analysis.adjust]})",
                   "t-test", "permutation floor", "seeds per cell", "decided by"], rows,
                  "SD: pooled within-cell standard deviation of the finished runs, sqrt(Σ(n_i−1)s_i² / Σ(n_i−1)) "
                  "over the cells with 2 or more (it assumes the cells share one run-to-run spread; diverged and "
                  "failed runs are not in it: the report counts them); df = Σ(n_i−1), and with few df the SD itself "
                  "is uncertain; Δ: the difference to detect, in the metric's units; t-test: seeds per cell for a "
                  f"two-sided two-sample t-test to detect Δ with power {power:g} at α (statsmodels TTestIndPower); "
                  "permutation floor: the fewest seeds a side at which the report's permutation test can give p ≤ α "
                  f"at all (2 of the C(2n, n) relabellings; past {EXACT_RELABELLINGS:,} of them, 2 of the "
                  f"{EXACT_RELABELLINGS:,} random ones plus the observed); seeds per cell: the larger")
    comparisons = plans[0].comparisons if plans else 0
    return Report(f"Seed plan: {source}",
                  f"from a pilot of {len(records)} runs in {n_cells} cells; planned for its design's "
                  f"{comparisons} comparisons per table",
                  [table], notes=[alpha_text(analysis, comparisons)])
