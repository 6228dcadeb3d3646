"""The report's statistics against independent computations: failure rates and their Wilson intervals
(statsmodels' proportion_confint), the exact permutation test (a brute-force enumeration of every
relabelling, here), and the multiplicity adjustment of each table (statsmodels' multipletests on the
p-values the report prints). Records are written by hand: no training."""
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from gan_ablate.record import RunRecord
from gan_ablate.sweep.aggregate import Analysis, permutation_p, smallest_p
from gan_ablate.sweep.report import report_of, to_html, to_markdown


def exact_two_sided_p(a: list[float], b: list[float]) -> float:
    """Every way to split the pooled runs into groups of len(a) and len(b): the share of splits whose
    mean difference is at least as extreme as the observed one on each side, the smaller side doubled."""
    pooled = np.array(a + b, float)
    observed = np.mean(a) - np.mean(b)
    diffs = []
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        mask = np.zeros(len(pooled), bool)
        mask[list(chosen)] = True
        diffs.append(pooled[mask].mean() - pooled[~mask].mean())
    diffs = np.array(diffs)
    tolerance = 1e-9 * max(1.0, abs(observed))  # means of integers differ from each other by float error only
    upper, lower = np.mean(diffs >= observed - tolerance), np.mean(diffs <= observed + tolerance)
    return min(1.0, 2 * min(upper, lower))


# the example: a trick that collapses on 2 of 5 seeds (label_smoothing, modes <= 1), one whose
# survivors are all better but which diverged on 2 of 5 (instance_noise), one with no spread at all
MODES = {
    "baseline": [6, 7, 8, 7, 6],
    "+spectral_norm": [8, 8, 8, 8, 8],
    "+instance_noise": [8, 8, 8, "diverged", "diverged"],
    "+label_smoothing": [1, 6, 7, 1, 7],
    "+ttur": [5, 6, 7, "failed", 7],
}


def records_of(modes: dict[str, list]) -> list[RunRecord]:
    """One record per entry: a number is a finished run with that many modes, a string the status of a
    run that ended without numbers."""
    records = []
    for cell, outcomes in modes.items():
        for seed, m in enumerate(outcomes):
            record = dict(cell=cell, tricks=[cell.strip("+")] if cell != "baseline" else [], seed=seed, data="ring8",
                          design="add_one", reference="baseline", job_num=len(records))
            if isinstance(m, str):
                record.update(status=m, metrics={}, reason="loss/d not finite")
            else:
                record.update(status="ok", metrics={"raw": {"modes": m}})
            records.append(RunRecord(**record))
    return records


def table(report, title: str) -> dict[str, dict[str, str]]:
    """The rows of the report's table `title`, by cell, each as {column header: text}."""
    (found,) = [t for t in report.tables if t.title == title]
    return {row[0]: dict(zip(found.header, row)) for row in found.rows}


def number(text: str) -> float:
    return math.nan if text in ("", "–") else float(text)


@pytest.mark.parametrize("a,b", [
    ([8, 8, 8], [6, 6, 6]),                    # no spread in either cell: 3 + 3 runs cannot go below 0.1
    ([8, 8, 8, 8, 8], [6, 7, 8, 7, 6]),        # integer metric with ties across the cells
    ([1, 6, 7, 1, 7, 3], [6, 7, 8, 7]),        # unequal sizes
    ([0.31, 0.42, 0.27, 0.55, 0.38, 0.49, 0.33, 0.41, 0.36], [0.29, 0.25, 0.33, 0.21, 0.36, 0.3, 0.27]),  # 11,440
])
def test_permutation_p_is_the_share_of_all_relabellings_at_least_as_extreme(a, b):
    assert permutation_p(a, b) == pytest.approx(exact_two_sided_p(a, b), abs=1e-12)


def test_smallest_attainable_p_is_two_relabellings_out_of_all():
    assert smallest_p(3, 3) == pytest.approx(exact_two_sided_p([8, 8, 8], [6, 6, 6])) == pytest.approx(0.1)
    assert smallest_p(5, 3) == pytest.approx(exact_two_sided_p([9, 9, 9, 9, 9], [1, 2, 3]))
    assert math.isnan(permutation_p([1.0], [2.0, 3.0]))  # one run: nothing to relabel


def test_failure_rates_count_every_run_that_ended_with_wilson_intervals():
    running = RunRecord(**{**records_of({"+ttur": [7]})[0].data, "seed": 9, "status": "running"})
    report = report_of(records_of(MODES) + [running], "test")
    rows = table(report, "Outcomes per cell")
    # diverged, failed and collapsed (modes <= 1) runs are failures; the running one is not a run yet
    expected = {"baseline": (0, 5), "+spectral_norm": (0, 5), "+instance_noise": (2, 5), "+label_smoothing": (2, 5),
                "+ttur": (1, 5)}
    for cell, (bad, runs) in expected.items():
        low, high = proportion_confint(bad, runs, alpha=0.05, method="wilson")
        assert rows[cell]["runs"] == str(runs)
        assert rows[cell]["failure rate [95% Wilson]"] == f"{bad}/{runs} = {bad / runs:.3g} [{low:.3g}, {high:.3g}]"
    assert rows["+instance_noise"]["diverged"] == "2" and rows["+ttur"]["failed"] == "1"
    assert rows["+label_smoothing"]["collapsed (modes ≤ 1)"] == "2"


def test_the_collapse_threshold_is_the_reports_option():
    rows = table(report_of(records_of(MODES), "test", analysis=Analysis(collapsed_modes=6)), "Outcomes per cell")
    assert rows["+label_smoothing"]["collapsed (modes ≤ 6)"] == "3"  # 1, 6, 1
    assert rows["baseline"]["collapsed (modes ≤ 6)"] == "2"


def test_failed_runs_count_as_the_worst_value_by_default_and_the_summary_says_over_how_many():
    """instance_noise's 3 survivors all beat every baseline run; its 2 diverged seeds must not vanish."""
    modes = {"baseline": [5, 5, 6, 6, 5], "+instance_noise": [8, 8, 8, "diverged", "diverged"]}
    worst = table(report_of(records_of(modes), "test"), "modes (raw G)")["+instance_noise"]
    assert worst["runs"] == "5 (2 as worst)"
    assert number(worst["mean"]) == pytest.approx(np.mean([8, 8, 8, 5, 5]))  # 5: the worst run of the table
    assert number(worst["p"]) == pytest.approx(exact_two_sided_p([8, 8, 8, 5, 5], [5, 5, 6, 6, 5]), rel=5e-3)
    assert worst["call"] == ""

    excluded = table(report_of(records_of(modes), "test", analysis=Analysis(failed_as="exclude")), "modes (raw G)")
    survivors = excluded["+instance_noise"]
    assert survivors["runs"] == "3 of 5" and number(survivors["mean"]) == 8
    assert number(survivors["p"]) == pytest.approx(exact_two_sided_p([8, 8, 8], [5, 5, 6, 6, 5]), rel=5e-3)
    assert survivors["call"] == "better"  # the survivors alone: what dropping failed runs used to claim


@pytest.mark.parametrize("adjust,method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_calls_are_adjusted_over_the_comparisons_of_their_table(adjust, method):
    report = report_of(records_of(MODES), "test", analysis=Analysis(adjust=adjust))
    (modes,) = [t for t in report.tables if t.title == "modes (raw G)"]
    rows = table(report, "modes (raw G)")
    compared = [c for c in rows if c != "baseline"]
    p = np.array([number(rows[c]["p"]) for c in compared])
    adjusted = [number(rows[c][modes.header[-2]]) for c in compared]
    assert adjusted == pytest.approx(multipletests(p, alpha=0.05, method=method)[1], rel=1e-2)
    for cell, p_adjusted in zip(compared, adjusted):
        assert (rows[cell]["call"] in ("better", "worse")) == (p_adjusted < 0.05), cell
    # the table names the family it adjusted: every comparison it shows a p for
    assert f"over the {len(compared)} comparisons of this table" in modes.note
    # spectral_norm's 5 runs above the baseline's mean: p < 0.05 alone, not once the table's other 3 count
    assert number(rows["+spectral_norm"]["p"]) < 0.05 and rows["+spectral_norm"]["call"] == ""


def test_without_adjustment_the_report_says_so_and_calls_on_the_raw_p():
    report = report_of(records_of(MODES), "test", analysis=Analysis(adjust="none"))
    rows = table(report, "modes (raw G)")
    assert rows["+spectral_norm"]["adjusted p (none)"] == rows["+spectral_norm"]["p"]
    assert rows["+spectral_norm"]["call"] == "better"
    assert any("not adjusted" in n for n in report.notes)


def test_no_spread_over_three_seeds_is_no_finding():
    """`make demo`'s case: both cells constant over 3 seeds used to give '-2 [-2, -2] worse'."""
    report = report_of(records_of({"baseline": [8, 8, 8], "+spectral_norm": [6, 6, 6]}), "test")
    row = table(report, "modes (raw G)")["+spectral_norm"]
    assert row["call"] == "n too small" and number(row["p"]) == pytest.approx(0.1)
    assert row["95% CI"] == "–"  # a zero-width interval is not printed as if it were one
    md = to_markdown(report)
    assert "[-2, -2]" not in md and "| worse |" not in md


def test_markdown_and_html_carry_the_adjusted_p_and_the_choices_made():
    report = report_of(records_of(MODES), "test")
    md, html = to_markdown(report), to_html(report)
    for text in (md, html):
        assert "adjusted p (Holm)" in text and "Holm over the 4 comparisons of this table" in text
        assert "failure rate [95% Wilson]" in text and "--failed-as worst" in text


def test_the_command_line_options_reach_the_report(tmp_path):
    for i, record in enumerate(records_of(MODES)):
        (tmp_path / str(i)).mkdir()
        record.run_dir = tmp_path / str(i)
        record.write()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path), "--no-plots", "--adjust", "bh",
                    "--failed-as", "exclude", "--collapsed-modes", "6"], capture_output=True, text=True, check=True)
    md = (tmp_path / "report.md").read_text()
    assert "adjusted p (Benjamini-Hochberg)" in md and "--failed-as exclude" in md
    assert "| +instance_noise | 3 of 5 |" in md and "collapsed (modes ≤ 6)" in md
