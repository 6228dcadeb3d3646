"""Aggregate result.json records per cell (a trick combination, plus whatever else the sweep varied)
over seeds, and compare each cell with its reference cell."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from scipy import stats

# overrides that do not define a cell: the seed, the sweeper's bookkeeping, Hydra's own
_NOT_CELL_KEYS = ("seed", "trick", "ablation.", "hydra.", "+hydra.")


@dataclass
class Summary:
    n: int
    mean: float
    se: float          # standard error of the mean (nan with one seed)
    ci_low: float      # 95% t-interval
    ci_high: float


def summarise(values: list[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(values) / n
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    se = sd / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * se
    return Summary(n, mean, se, mean - half, mean + half)


def difference(cell: list[float], reference: list[float]) -> Summary:
    """mean(cell) - mean(reference) with a 95% Welch t-interval (seeds differ between cells)."""
    a, b = summarise(cell), summarise(reference)
    if a.n == 0 or b.n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Summary(min(a.n, b.n), diff, math.nan, math.nan, math.nan)
    va, vb = a.se ** 2, b.se ** 2
    se = math.sqrt(va + vb)
    if se == 0:
        return Summary(min(a.n, b.n), diff, 0.0, diff, diff)
    dof = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    half = stats.t.ppf(0.975, dof) * se
    return Summary(min(a.n, b.n), diff, se, diff - half, diff + half)


def cell_name(tricks: list[str]) -> str:
    return "+".join(tricks) or "baseline"


@dataclass
class Cell:
    name: str
    label: str                       # the design's name of the cell ("+ema", "-ema", "all", "baseline")
    variant: str = ""                # other overrides the sweep varied, e.g. "loss=hinge"
    reference: Optional[str] = None  # label of the cell this one is compared with
    records: list[dict] = field(default_factory=list)

    def ok(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "ok"]

    def set_apart(self) -> Optional[str]:
        return set_apart_reason(self.records)

    def values(self, net: str, metric: str) -> list[float]:
        return [float(r["metrics"][net][metric]) for r in self.ok()
                if metric in r.get("metrics", {}).get(net, {})]


def set_apart_reason(records: list[dict]) -> Optional[str]:
    """Why a cell's numbers are no finding (None: they are one): its tricks read the class labels that
    are the modes the metrics count, a trick's mechanism was fixed after the runs, or the trick's
    schedule never acted within the runs (the current code refuses that config)."""
    from omegaconf import OmegaConf

    from gan_ablate.config import ScheduleOutsideRun, TrainConfig
    from gan_ablate.record import stale_tricks, uses_mode_labels
    from gan_ablate.run import check_config

    if not records:
        return None
    if any(r.get("uses_mode_labels", uses_mode_labels(r.get("tricks") or [], r.get("data"))) for r in records):
        return "reads the class labels, which are the modes the metrics count"
    stale = {t: why for r in records for t, why in stale_tricks(r).items()}
    if stale:
        return "; ".join(f"measured before the fix to `{t}` ({why})" for t, why in sorted(stale.items()))
    if records[0].get("config"):
        try:
            check_config(OmegaConf.merge(OmegaConf.structured(TrainConfig), records[0]["config"]))
        except ScheduleOutsideRun as e:
            return f"its schedule never acted in these runs (now refused: {e})"
        except Exception:  # an older record's config the schema no longer takes: judged on its numbers
            pass
    return None


def _cell_overrides(record: dict) -> list[str]:
    return [o for o in record.get("overrides") or [] if not o.lstrip("+~").startswith(_NOT_CELL_KEYS)]


def group_cells(records: list[dict]) -> dict[str, Cell]:
    """Cells keyed by name: the design's label, plus the overrides that vary across the sweep
    (an override every run shares, like trainer.max_steps=200, names no cell)."""
    per_record = [_cell_overrides(r) for r in records]
    shared = set.intersection(*(set(o) for o in per_record)) if per_record else set()
    cells: dict[str, Cell] = {}
    for r, overrides in zip(records, per_record):
        label = r.get("cell") or cell_name(r.get("tricks", []))
        variant = " ".join(o for o in overrides if o not in shared)
        name = f"{label} [{variant}]" if variant else label
        cell = cells.setdefault(name, Cell(name, label, variant, r.get("reference")))
        cell.records.append(r)
    first_job = {c.name: min((r.get("job_num") if r.get("job_num") is not None else math.inf) for r in c.records)
                 for c in cells.values()}
    order = {c.name: (first_job[c.name], i) for i, c in enumerate(cells.values())}
    # reference cells first, then in the sweep's job order
    return dict(sorted(cells.items(), key=lambda kv: (kv[1].variant, not is_reference(kv[1]), order[kv[0]])))


def is_reference(cell: Cell) -> bool:
    return cell.label == (cell.reference or "baseline")


def reference_of(cell: Cell, cells: dict[str, Cell], override: Optional[str] = None) -> Optional[Cell]:
    """The cell `cell` is compared with: same variant, label = the design's reference (or
    `override`, or "baseline" for a plain sweep)."""
    label = override or cell.reference or "baseline"
    for other in cells.values():
        if other.label == label and other.variant == cell.variant:
            return other
    return None


def metric_names(records: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        for per_net in r.get("metrics", {}).values():
            names.update(dict.fromkeys(k for k in per_net if k not in ("n_samples",)))
    return list(names)
