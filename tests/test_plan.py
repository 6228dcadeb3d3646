"""The seed planner (--plan), over pilot records written by hand (their spread is known), checked against
statsmodels' power solver, NumPy and the report's own permutation test."""
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from conftest import ROOT
from statsmodels.stats.power import TTestIndPower

from gan_ablate.record import RunRecord
from gan_ablate.report_cli import main
from gan_ablate.sweep.aggregate import Analysis, permutation_p
from gan_ablate.sweep.plan import (PlanError, parse_deltas, permutation_floor, plan_sweep, smallest_report_p,
                                   ttest_seeds)

# three runs whose spread about their mean is exactly 1 (sample SD, ddof=1)
UNIT_SPREAD = np.array([-1.0, 0.0, 1.0])


def pilot(cell_values: dict[str, list[float]], metric: str = "fid") -> list[RunRecord]:
    """An add_one pilot: cell label -> the metric of its runs (seeds 0..)."""
    return [RunRecord(cell=label, tricks=[] if label == "baseline" else [label.lstrip("+")], seed=seed, status="ok",
                 design="add_one", reference="baseline", metrics={"raw": {metric: float(v)}})
            for label, values in cell_values.items() for seed, v in enumerate(values)]


def pilot_with_sd(sd: float, cells: int, metric: str = "fid") -> list[RunRecord]:
    """`cells` cells (a baseline and cells - 1 compared with it), far apart, each of spread exactly `sd`."""
    labels = ["baseline"] + [f"+t{i}" for i in range(1, cells)]
    return pilot({label: 10 * i + sd * UNIT_SPREAD for i, label in enumerate(labels)}, metric)


def solver_seeds(effect_size: float, alpha: float, power: float = 0.8) -> int:
    return math.ceil(TTestIndPower().solve_power(effect_size=effect_size, alpha=alpha, power=power))


def test_seeds_per_cell_are_statsmodels_solution_for_the_pilots_sd_at_the_adjusted_alpha():
    records = pilot_with_sd(sd=2.0, cells=4)  # 3 comparisons with the baseline
    (plan,) = plan_sweep(records, parse_deltas(["1"]))
    assert (plan.sd, plan.df) == (pytest.approx(2.0), 4 * 2)
    assert plan.alpha == pytest.approx(0.05 / 3)
    assert plan.seeds == solver_seeds(0.5, 0.05 / 3) == 86 and plan.decided_by == "t-test power"
    # another power, and no adjustment
    (plan,) = plan_sweep(records, parse_deltas(["fid=1"]), Analysis(adjust="none"), power=0.9)
    assert plan.alpha == 0.05 and plan.seeds == solver_seeds(0.5, 0.05, 0.9)


def test_sd_is_pooled_within_cells_as_numpy_computes_it():
    rng = np.random.default_rng(0)
    cells = {"baseline": rng.normal(0, 1, 5), "+a": rng.normal(30, 3, 3), "+b": rng.normal(-9, 0.5, 7),
             "+c": [4.0]}  # one run: no spread of its own, so nothing to the pool
    (plan,) = plan_sweep(pilot(cells), parse_deltas(["1"]))
    spread = [np.asarray(v) for v in cells.values()]
    pooled = np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in spread) / sum(len(v) - 1 for v in spread))
    assert plan.sd == pytest.approx(pooled) and plan.df == 4 + 2 + 6
    assert plan.sd != pytest.approx(np.std(np.concatenate(spread), ddof=1))  # not the spread between the cells


@pytest.mark.parametrize("adjust", ["holm", "bh"])
def test_the_alpha_is_divided_by_the_comparisons_of_the_table(adjust):
    seeds = {}
    for cells in (3, 7):
        (plan,) = plan_sweep(pilot_with_sd(1.0, cells), parse_deltas(["0.8"]), Analysis(adjust=adjust))
        assert plan.comparisons == cells - 1 and plan.alpha == pytest.approx(0.05 / (cells - 1))
        assert plan.seeds == solver_seeds(0.8, 0.05 / (cells - 1))
        seeds[cells] = plan.seeds
    assert seeds[7] > seeds[3]


def test_a_huge_effect_still_needs_the_seeds_the_permutation_test_needs_to_reach_alpha():
    (plan,) = plan_sweep(pilot_with_sd(1.0, cells=4), parse_deltas(["10"]))  # 10 SD; alpha 0.05 / 3
    fewest = next(n for n in range(2, 9) if 2 / math.comb(2 * n, n) <= 0.05 / 3)
    assert plan.ttest == 2 and plan.seeds == fewest == 5
    assert plan.decided_by == "permutation floor (the t-test alone: 2)"
    # the floor is the report's test's: 4 seeds a side apart by any distance cannot reach alpha, 5 can
    assert permutation_p([100.0] * 3 + [101.0], [0.0, 1.0, 0.0, 1.0]) > 0.05 / 3
    assert permutation_p([100.0, 101.0] * 2 + [100.0], [0.0, 1.0] * 2 + [0.0]) <= 0.05 / 3


def test_an_effect_beyond_scipys_noncentral_t_is_planned_at_two_seeds_by_the_t_test():
    assert math.isnan(TTestIndPower().power(30, 2, 0.025))  # the far lower tail: nan, not ~0
    (plan,) = plan_sweep(pilot_with_sd(1.0, cells=3), parse_deltas(["30"]))
    assert not plan.problem and plan.ttest == 2 and plan.seeds == 5


@pytest.mark.parametrize("effect_size", [8.85, 9.06, 12.0])
def test_where_the_solver_does_not_converge_the_plan_is_the_fewest_seeds_reaching_the_power(effect_size):
    # statsmodels' root finder returns nan (8.85, 9.06) or its lower bound 2.000005 (12) for these at 0.05/7
    # (a 3-trick factorial's 7 comparisons)
    alpha = 0.05 / 7
    solved = TTestIndPower().solve_power(effect_size=effect_size, alpha=alpha, power=0.8)
    assert math.isnan(solved) or solved < 2.01
    n = ttest_seeds(effect_size, alpha)

    def power(seeds):  # scipy's noncentral t directly; the lower tail (below -t) is < 1e-9 for these effects
        df = 2 * seeds - 2
        return stats.nct.sf(stats.t.ppf(1 - alpha / 2, df), df, effect_size * math.sqrt(seeds / 2))
    assert n is not None and power(n) >= 0.8 > power(n - 1) + 1e-9


def test_cells_the_report_sets_apart_or_never_ran_are_no_comparison_of_the_plan():
    records = pilot_with_sd(1.0, cells=4, metric="modes")
    for r in records:
        r.dataset = "ring8"
        if r.cell == "+t1":
            r.tricks = ["conditional"]  # reads the labels that are ring8's modes: set apart, no p
    # a cell whose tricks conflict is recorded as skipped: it has no row in the report's tables
    records.append(RunRecord(cell="+t9", tricks=["t9"], seed=0, status="skipped", design="add_one", reference="baseline",
                        data="ring8", metrics={}))
    (plan,) = plan_sweep(records, parse_deltas(["1"]))
    assert plan.comparisons == 2 and plan.alpha == pytest.approx(0.05 / 2)


def test_past_the_exact_relabellings_the_floor_is_the_random_relabellings_one():
    # 9 + 9 seeds: C(18, 9) > 20,000, so the report draws 20,000 random relabellings: p >= 2 / 20,001
    separated = permutation_p(list(range(100, 109)), list(range(9)))
    assert smallest_report_p(9) == pytest.approx(separated) == pytest.approx(2 / 20_001)
    assert permutation_floor(0.05 / 400) == 9  # 8 + 8 give at best 2 / 12,870 = 1.55e-4 > 1.25e-4
    assert permutation_floor(0.05 / 600) is None  # no n: the random relabellings' floor is above it
    (plan,) = plan_sweep(pilot_with_sd(1.0, cells=601), parse_deltas(["1"]))
    assert plan.seeds is None and plan.problem.startswith("alpha 8.33e-05 is below the smallest p the report's test")


def _write(folder, records):
    for i, record in enumerate(records):
        record.run_dir = folder / f"run{i}"
        record.write()


def test_cli_prints_the_plan_and_writes_plan_md(tmp_path):
    records = pilot_with_sd(2.0, cells=3) + pilot_with_sd(0.5, cells=3, metric="modes")
    _write(tmp_path, records)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path), "--plan", "1",
                          "--plan", "modes=0.25"], capture_output=True, text=True, check=True, timeout=120).stdout
    fid, modes = solver_seeds(0.5, 0.025), solver_seeds(0.5, 0.025)
    assert f"| fid | raw | 2 | 6 | 1 | 0.5 | 0.025 | {fid} | 5 | {fid} | t-test power |" in out
    assert f"| modes | raw | 0.5 | 6 | 0.25 | 0.5 | 0.025 | {modes} | 5 | {modes} | t-test power |" in out
    assert "α = 0.05/2: Bonferroni" in out
    plan_md = (tmp_path / "plan.md").read_text()
    assert f"| fid | raw | 2 | 6 | 1 | 0.5 | 0.025 | {fid} | 5 | {fid} | t-test power |" in plan_md
    assert not (tmp_path / "report.md").exists()  # the plan instead of the report


def refusal(tmp_path, capsys, records, *args) -> tuple[str, str]:
    """The CLI's exit message (None: it planned) and what it printed to stderr."""
    _write(tmp_path, records)
    try:
        main([str(tmp_path), *args])
        code = None
    except SystemExit as e:
        code = str(e.code)
    return code, capsys.readouterr().err


def test_a_metric_the_sweep_lacks_is_named_and_nothing_written(tmp_path, capsys):
    code, _ = refusal(tmp_path, capsys, pilot_with_sd(1.0, 3), "--plan", "modes=1")
    assert code == "gan-ablate-report: --plan modes=...: no metric 'modes' in the sweep's records (its metrics: fid)"
    assert not (tmp_path / "plan.md").exists()


def test_runs_without_spread_get_a_line_and_no_seed_count(tmp_path, capsys):
    code, err = refusal(tmp_path, capsys, pilot({"baseline": [6, 6, 6], "+a": [8, 8, 8]}, "modes"), "--plan", "1")
    assert code is None
    assert err == ("gan-ablate-report: --plan modes (raw G): SD 0: every cell's runs gave the same value, so the "
                   "pilot shows no noise to plan against (the permutation floor alone: 4 seeds per cell)\n")
    assert "| modes | raw | 0 | 4 | 1 | – | 0.05 | – | 4 | – | SD 0:" in (tmp_path / "plan.md").read_text()


def test_a_pilot_of_one_run_per_cell_gets_a_line(tmp_path, capsys):
    code, err = refusal(tmp_path, capsys, pilot({"baseline": [6], "+a": [8]}), "--plan", "1")
    assert code is None
    assert err == ("gan-ablate-report: --plan fid (raw G): no cell has 2 finished runs: no spread to pool (pilot "
                   "with ablation.seeds=2 or more)\n")


@pytest.mark.parametrize("args, message", [
    (["--plan", "-1"], "--plan -1: the difference to detect must be a positive number"),
    (["--plan", "fid=abc"], "--plan fid=abc: the difference to detect must be a positive number"),
    (["--plan", "1", "--plan", "2"], "--plan 2: a bare DELTA is already given (1)"),
    (["--plan", "1", "--power", "80"], "--power 80: the power must be between 0 and 1"),
])
def test_bad_plan_arguments_are_refused_in_one_line(tmp_path, capsys, args, message):
    code, _ = refusal(tmp_path, capsys, pilot_with_sd(1.0, 3), *args)
    assert code.startswith(f"gan-ablate-report: {message}") and "\n" not in code


def test_a_sweep_with_no_comparison_is_refused(tmp_path, capsys):
    code, _ = refusal(tmp_path, capsys, pilot({"baseline": [1, 2, 3]}), "--plan", "1")
    assert code.startswith("gan-ablate-report: the sweep compares no cells (1 cell(s)")


def test_parse_deltas_per_metric_overrides_the_bare_number():
    deltas = parse_deltas(["0.05", "modes=1"])
    assert (deltas.of("modes"), deltas.of("hq")) == (1.0, 0.05)
    assert parse_deltas(["modes=1"]).metrics(["modes", "hq"]) == ["modes"]
    with pytest.raises(PlanError):
        parse_deltas(["modes=0"])
