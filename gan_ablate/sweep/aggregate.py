"""Aggregate result.json records per cell (a trick combination, plus whatever else the sweep varied)
over seeds, and compare each cell with its reference cell: runs that diverged or failed are outcomes
of the cell (counted, and by default scored as the worst value), each comparison is an exact
permutation test (valid for 3-10 seeds and integer metrics such as modes), and the p-values of one
table are adjusted together for multiplicity."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from gan_ablate.record import BASELINE, RunRecord

# overrides that do not define a cell: the seed, the sweeper's bookkeeping, Hydra's own
_NOT_CELL_KEYS = ("seed", "trick", "ablation.", "hydra.", "+hydra.")
# runs that ended without numbers; with "ok" they are the runs of a cell (running and skipped runs are not:
# the first have not ended, the second never trained)
FAILED = ("diverged", "failed")
ALPHA = 0.05
# up to this many distinct relabellings the permutation test enumerates them all (every split of 8 + 8
# runs, or 9 + 7); beyond, it draws this many at random (seeded: the report is reproducible)
EXACT_RELABELLINGS = 20_000
ADJUSTMENTS = {"holm": "holm", "bh": "fdr_bh", "none": None}  # --adjust -> statsmodels' multipletests method
ADJUSTMENT_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "none"}


@dataclass(frozen=True)
class Analysis:
    """How cells are compared: the report's options."""
    adjust: str = "holm"       # multiplicity adjustment over the comparisons of one table: holm | bh | none
    # worst: a diverged or failed run enters each metric as the worst value any run of the table reached;
    # exclude: metrics are summarised over the runs that finished (their rate is still reported)
    failed_as: str = "worst"
    collapsed_modes: float = 1  # a run whose generator covers at most this many modes has collapsed

    def __post_init__(self):
        if self.adjust not in ADJUSTMENTS:
            raise ValueError(f"adjust must be one of {', '.join(ADJUSTMENTS)}, not {self.adjust!r}")
        if self.failed_as not in ("worst", "exclude"):
            raise ValueError(f"failed_as must be worst or exclude, not {self.failed_as!r}")


@dataclass
class Summary:
    n: int
    mean: float
    se: float          # standard error of the mean (nan with one seed)
    ci_low: float      # 95% t-interval (nan with one seed, or no spread: a zero-width interval claims a
    ci_high: float     # certainty a handful of seeds cannot give)


def summarise(values: Sequence[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(values))
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    if min(values) == max(values):  # the mean of equal floats can leave a s.e. of 1e-18, not 0
        return Summary(n, mean, 0.0, math.nan, math.nan)
    se = float(stats.sem(values))
    low, high = stats.t.interval(1 - ALPHA, n - 1, loc=mean, scale=se)
    return Summary(n, mean, se, float(low), float(high))


@dataclass
class Outcomes:
    """How a cell's runs ended: `bad` (diverged, failed or collapsed) of `runs`, with a Wilson interval."""
    runs: int
    ok: int
    diverged: int
    failed: int
    collapsed: Optional[int]  # None: the runs measure no modes
    rate: float
    rate_low: float
    rate_high: float

    @property
    def bad(self) -> int:
        return self.diverged + self.failed + (self.collapsed or 0)


def outcomes(records: list[RunRecord], collapsed_modes: float = 1) -> Outcomes:
    """Collapsed: a finished run whose judged generator (the record's primary, raw by default) covers at
    most `collapsed_modes` modes."""
    ok = [r for r in records if r.status == "ok"]
    diverged = sum(r.status == "diverged" for r in records)
    failed = sum(r.status == "failed" for r in records)
    modes = [r.metrics[net]["modes"] for r in ok if "modes" in r.metrics.get(net := r.primary or "raw", {})]
    collapsed = sum(m <= collapsed_modes for m in modes) if modes else None
    runs = len(ok) + diverged + failed
    bad = diverged + failed + (collapsed or 0)
    if runs == 0:
        return Outcomes(0, 0, 0, 0, collapsed, math.nan, math.nan, math.nan)
    low, high = proportion_confint(bad, runs, alpha=ALPHA, method="wilson")
    return Outcomes(runs, len(ok), diverged, failed, collapsed, bad / runs, float(low), float(high))


def worst_value(values: Sequence[float], direction: int) -> Optional[float]:
    """The worst of `values` for a metric where `direction` (+1/-1) is the better side; None when the
    metric has no better side or there are no values."""
    if not direction or not values:
        return None
    return min(values) if direction > 0 else max(values)


def with_failures(values: list[float], n_failed: int, worst: Optional[float], analysis: Analysis) -> list[float]:
    """The values a metric is summarised and compared over: the finished runs', plus under
    failed_as=worst one `worst` per diverged or failed run."""
    if analysis.failed_as == "worst" and worst is not None:
        return values + [worst] * n_failed
    return values


def runs_text(n_finished: int, n_failed: int, imputed: bool) -> str:
    """Over how many runs a summary is taken, and what became of those that diverged or failed."""
    if not n_failed:
        return str(n_finished)
    if imputed:
        return f"{n_finished + n_failed} ({n_failed} as worst)"
    return f"{n_finished} of {n_finished + n_failed}"


def _mean_difference(a, b, axis):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p a permutation test of n_a against n_b runs can give (3 + 3: 0.1)."""
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of mean(a) - mean(b) under random relabelling of the runs (nan below 2 runs a side).
    Exact (every relabelling) up to EXACT_RELABELLINGS of them: no normality assumed, so it holds for
    3 seeds and for integer metrics whose cells have no spread at all."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    result = stats.permutation_test((np.asarray(a, float), np.asarray(b, float)), _mean_difference,
                                    permutation_type="independent", vectorized=True,
                                    n_resamples=EXACT_RELABELLINGS, alternative="two-sided", rng=0)
    return float(result.pvalue)


def adjust(pvalues: Sequence[float], method: str) -> list[float]:
    """`pvalues` adjusted together as one family (nan entries are no comparison and stay nan)."""
    p = np.asarray(pvalues, float)
    tested = ~np.isnan(p)
    if ADJUSTMENTS[method] is None or not tested.any():
        return p.tolist()
    p[tested] = multipletests(p[tested], alpha=ALPHA, method=ADJUSTMENTS[method])[1]
    return p.tolist()


@dataclass
class Comparison:
    n: int             # runs of the cell compared
    n_reference: int
    diff: float        # mean(cell) - mean(reference)
    p: float           # exact permutation test (nan: fewer than 2 runs a side)
    p_adjusted: float = math.nan

    def call(self, direction: int) -> str:
        """better / worse where the adjusted p is below 0.05, '' otherwise."""
        if not direction or math.isnan(self.p_adjusted) or self.p_adjusted >= ALPHA or self.diff == 0:
            return ""
        return "better" if (self.diff > 0) == (direction > 0) else "worse"

    def too_few_runs(self) -> bool:
        """No p this small n can give would be a finding, before any adjustment."""
        return math.isnan(self.p) or smallest_p(self.n, self.n_reference) >= ALPHA


def compare(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], analysis: Analysis) -> list[Comparison]:
    """Each (cell, reference) pair tested, the p-values adjusted as one family (one table's comparisons)."""
    found = [Comparison(len(a), len(b), float(np.mean(a) - np.mean(b)) if len(a) and len(b) else math.nan,
                        permutation_p(a, b)) for a, b in pairs]
    for c, p in zip(found, adjust([c.p for c in found], analysis.adjust)):
        c.p_adjusted = p
    return found


def tested(comparisons: Sequence[Comparison]) -> int:
    """The size of the family the p-values were adjusted over: the comparisons that have a p."""
    return sum(not math.isnan(c.p) for c in comparisons)


@dataclass
class Cell:
    """The runs a sweep made of one cell (design.DesignCell: the cell as its design planned it)."""
    name: str
    label: str                       # the design's name of the cell ("+ema", "-ema", "all", "baseline")
    variant: str = ""                # other overrides the sweep varied, e.g. "loss=hinge"
    reference: Optional[str] = None  # label of the cell this one is compared with
    records: list[RunRecord] = field(default_factory=list)

    def ok(self) -> list[RunRecord]:
        return [r for r in self.records if r.status == "ok"]

    def n_failed(self) -> int:
        """Runs that diverged or failed: outcomes of the cell, with no numbers of their own."""
        return sum(r.status in FAILED for r in self.records)

    def outcomes(self, collapsed_modes: float = 1) -> Outcomes:
        return outcomes(self.records, collapsed_modes)

    def set_apart(self) -> Optional[str]:
        return set_apart_reason(self.records)

    def values(self, net: str, metric: str) -> list[float]:
        return [float(r.metrics[net][metric]) for r in self.ok() if metric in r.metrics.get(net, {})]


def set_apart_reason(records: list[RunRecord]) -> Optional[str]:
    """Why a cell's numbers are no finding (None: they are one): its tricks read the class labels that
    are the modes the metrics count, a trick's mechanism was fixed after the runs, or the trick's
    schedule never acted within the runs (the current code refuses that config)."""
    from omegaconf import OmegaConf

    from gan_ablate.config import ScheduleOutsideRun, TrainConfig
    from gan_ablate.revisions import stale_tricks, uses_mode_labels
    from gan_ablate.validation import check_config

    if not records:
        return None
    if any(uses_mode_labels(r.tricks, r.dataset) if r.uses_mode_labels is None else r.uses_mode_labels
           for r in records):
        return "reads the class labels, which are the modes the metrics count"
    stale = {t: why for r in records for t, why in stale_tricks(r).items()}
    if stale:
        return "; ".join(f"measured before the fix to `{t}` ({why})" for t, why in sorted(stale.items()))
    if records[0].config:
        try:
            check_config(OmegaConf.merge(OmegaConf.structured(TrainConfig), records[0].config))
        except ScheduleOutsideRun as e:
            return f"its schedule never acted in these runs (now refused: {e})"
        except Exception:  # an older record's config the schema no longer takes: judged on its numbers
            pass
    return None


def _cell_overrides(record: RunRecord) -> list[str]:
    return [o for o in record.overrides or [] if not o.lstrip("+~").startswith(_NOT_CELL_KEYS)]


def group_cells(records: list[RunRecord]) -> dict[str, Cell]:
    """Cells keyed by name: the design's label, plus the overrides that vary across the sweep
    (an override every run shares, like trainer.max_steps=200, names no cell)."""
    per_record = [_cell_overrides(r) for r in records]
    shared = set.intersection(*(set(o) for o in per_record)) if per_record else set()
    cells: dict[str, Cell] = {}
    for r, overrides in zip(records, per_record):
        label = r.cell_name
        variant = " ".join(o for o in overrides if o not in shared)
        name = f"{label} [{variant}]" if variant else label
        cell = cells.setdefault(name, Cell(name, label, variant, r.reference))
        cell.records.append(r)
    first_job = {c.name: min((r.job_num if r.job_num is not None else math.inf) for r in c.records)
                 for c in cells.values()}
    order = {c.name: (first_job[c.name], i) for i, c in enumerate(cells.values())}
    # reference cells first, then in the sweep's job order
    return dict(sorted(cells.items(), key=lambda kv: (kv[1].variant, not is_reference(kv[1]), order[kv[0]])))


def is_reference(cell: Cell) -> bool:
    return cell.label == (cell.reference or BASELINE)


def reference_of(cell: Cell, cells: dict[str, Cell], override: Optional[str] = None) -> Optional[Cell]:
    """The cell `cell` is compared with: same variant, label = the design's reference (or
    `override`, or "baseline" for a plain sweep)."""
    label = override or cell.reference or BASELINE
    for other in cells.values():
        if other.label == label and other.variant == cell.variant:
            return other
    return None


def metric_names(records: list[RunRecord]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        for per_net in r.metrics.values():
            names.update(dict.fromkeys(k for k in per_net if k not in ("n_samples",)))
    return list(names)
