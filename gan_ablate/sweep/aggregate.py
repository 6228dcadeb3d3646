"""Aggregate result.json records per cell (a trick combination) over seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats


@dataclass
class Summary:
    n: int
    mean: float
    se: float          # standard error of the mean (nan with one seed)
    ci_low: float      # 95% t-interval
    ci_high: float


def summarise(values: list[float]) -> Summary:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    se = sd / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * se
    return Summary(n, mean, se, mean - half, mean + half)


def cell_name(tricks: list[str]) -> str:
    return "+".join(tricks) or "baseline"


@dataclass
class Cell:
    name: str
    records: list[dict] = field(default_factory=list)

    def ok(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "ok"]

    def values(self, net: str, metric: str) -> list[float]:
        return [float(r["metrics"][net][metric]) for r in self.ok()
                if metric in r.get("metrics", {}).get(net, {})]


def group_cells(records: list[dict]) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for r in records:
        name = cell_name(r.get("tricks", []))
        cells.setdefault(name, Cell(name)).records.append(r)
    # baseline first, then by name
    return dict(sorted(cells.items(), key=lambda kv: (kv[0] != "baseline", kv[0])))


def metric_names(records: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        for per_net in r.get("metrics", {}).values():
            names.update(dict.fromkeys(per_net))
    return list(names)
