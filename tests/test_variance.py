"""The split of a metric's variance into training (between seeds) and evaluation (between latent sets) noise:
equal to a direct NumPy method-of-moments computation, recovering planted components, and in the report."""
from __future__ import annotations

import numpy as np
import pytest

from gan_ablate.record import RunRecord
from gan_ablate.sweep.report import report_of
from gan_ablate.sweep.variance import split_noise


def numpy_moments(cells: dict[str, list[list[float]]]) -> tuple[float, float]:
    """(within, between) variance by hand: sums of squares about run means and, per cell, run means about the
    cell mean; E[MSB] = s2_w + n0 s2_b with n0 = sum_c (N_c - sum_i n_i^2 / N_c) / sum_c (a_c - 1)."""
    ss_within = ss_between = df_within = df_between = n0_sum = 0.0
    for runs in cells.values():
        runs = [np.asarray(r, float) for r in runs]
        n = np.array([len(r) for r in runs], float)
        cell_mean = np.concatenate(runs).mean()
        ss_within += sum(((r - r.mean()) ** 2).sum() for r in runs)
        ss_between += sum(len(r) * (r.mean() - cell_mean) ** 2 for r in runs)
        df_within += (n - 1).sum()
        df_between += len(runs) - 1
        n0_sum += n.sum() - (n ** 2).sum() / n.sum()
    ms_within, ms_between = ss_within / df_within, ss_between / df_between
    return ms_within, max(0.0, (ms_between - ms_within) / (n0_sum / df_between))


def planted(rng, cells: int, runs: int, repeats, between_sd: float, within_sd: float) -> dict:
    """Cell c's runs: mean 10 c (a fixed effect, no noise), a run effect N(0, between_sd^2), evaluations about it
    N(0, within_sd^2); `repeats` a number or a callable giving each run's number of evaluations."""
    count = repeats if callable(repeats) else (lambda: repeats)
    return {f"cell{c}": [list(10 * c + rng.normal(0, between_sd) + rng.normal(0, within_sd, size=count()))
                         for _ in range(runs)] for c in range(cells)}


def test_split_equals_a_direct_numpy_method_of_moments_on_unbalanced_cells():
    rng = np.random.default_rng(1)
    data = planted(rng, cells=3, runs=5, repeats=lambda: int(rng.integers(1, 6)), between_sd=1.5, within_sd=0.7)
    found = split_noise(data)
    within, between = numpy_moments(data)
    assert between > 0  # the check compares the formula, not its truncation at zero
    assert found.within_var == pytest.approx(within, rel=1e-9)
    assert found.between_var == pytest.approx(between, rel=1e-9)
    assert (found.cells, found.runs, found.evaluations) == (3, 15, sum(len(r) for rs in data.values() for r in rs))


def test_planted_between_and_within_variances_are_recovered():
    # 3 cells x 150 runs x 4 evaluations: s.e. of the between variance ~ sqrt(2 / 447) (4 + 0.25 / 4) = 0.27,
    # of the within variance ~ 0.25 sqrt(2 / 1350) = 0.01
    found = split_noise(planted(np.random.default_rng(7), cells=3, runs=150, repeats=4, between_sd=2.0, within_sd=0.5))
    assert found.between_var == pytest.approx(4.0, abs=3 * 0.27)
    assert found.within_var == pytest.approx(0.25, abs=3 * 0.01)
    assert found.training_share == pytest.approx(4.0 / 4.25, abs=0.02)


def test_equal_values_have_no_spread_and_no_share():
    found = split_noise({"a": [[3, 3], [3, 3]], "b": [[5, 5], [5, 5, 5]]})
    assert (found.within_var, found.between_var) == (0.0, 0.0)  # not least-squares rounding
    assert np.isnan(found.training_share)


def test_without_two_runs_or_two_evaluations_nothing_is_split():
    assert split_noise({"a": [[1.0, 2.0, 3.0]]}) is None        # one run: no training noise to see
    assert split_noise({"a": [[1.0], [2.0], [4.0]]}) is None    # one evaluation each: no evaluation noise


def record(cell: str, seed: int, values: list[float], status: str = "ok", repeated: bool = True) -> RunRecord:
    repeats = [{"fid": v} for v in values]
    return RunRecord(cell=cell, tricks=[] if cell == "baseline" else [cell], seed=seed, status=status,
                     metrics={"raw": {"fid": values[0]}, "ema": {"fid": values[0]}},
                     eval_repeats={"raw": repeats, "ema": repeats} if repeated else None)


def test_the_report_shows_the_split_of_the_finished_runs_repeats():
    data = planted(np.random.default_rng(3), cells=2, runs=4, repeats=3, between_sd=1.0, within_sd=0.3)
    records = [record(cell, seed, values) for cell, runs in zip(("baseline", "ema"), data.values())
               for seed, values in enumerate(runs)]
    records.append(record("ema", 9, [1e6, -1e6, 0.0], status="diverged"))  # no numbers of a finished run
    table = next(t for t in report_of(records, "synthetic").tables if t.title == "Evaluation noise vs training noise")
    within, between = numpy_moments(data)
    rows = {(row[0], row[1]): row for row in table.rows}
    assert set(rows) == {("fid", "raw"), ("fid", "ema")}
    assert rows["fid", "raw"][2:5] == ["2", "8", "24"]
    assert float(rows["fid", "raw"][5]) == pytest.approx(np.sqrt(within), rel=1e-2)
    assert float(rows["fid", "raw"][6]) == pytest.approx(np.sqrt(between), rel=1e-2)
    assert float(rows["fid", "raw"][7]) == pytest.approx(between / (between + within), rel=1e-2)


def test_records_without_repeats_make_no_noise_table():
    records = [record("baseline", s, [float(s)], repeated=False) for s in range(3)]
    assert all(t.title != "Evaluation noise vs training noise" for t in report_of(records, "synthetic").tables)
