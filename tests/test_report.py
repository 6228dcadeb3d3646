"""Sweep aggregation and the report, over records written by hand (the numbers are known)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from scipy import stats
from test_statistics import exact_two_sided_p

from gan_ablate.record import RunRecord, cell_label, load_records
from gan_ablate.sweep.aggregate import group_cells, reference_of, summarise


def test_summary_matches_scipy():
    values = [6.0, 7.0, 8.0, 5.0]
    s = summarise(values)
    assert s.mean == pytest.approx(6.5)
    assert s.se == pytest.approx(stats.sem(values))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(summarise([3.0]).se)


def test_no_spread_gives_no_interval_even_where_float_error_leaves_a_tiny_standard_error():
    assert stats.sem([1 / 9] * 5) > 0  # the mean of five 1/9 is not exactly 1/9
    for values in ([6, 6, 6], [1 / 9] * 5):
        s = summarise(values)
        assert s.se == 0 and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def _write(folder, folder_name, **record):
    (folder / folder_name).mkdir(parents=True)
    (folder / folder_name / "result.json").write_text(json.dumps(record))


def test_cells_are_told_apart_by_the_overrides_that_vary_not_those_all_runs_share(tmp_path):
    for loss in ("hinge", "wgan_gp"):
        for tricks in ([], ["ema"]):
            _write(tmp_path, f"{loss}{len(tricks)}", tricks=tricks, seed=0, status="ok",
                   overrides=[f"loss={loss}", "trainer.max_steps=200", f"trick=[{','.join(tricks)}]", "seed=0"],
                   metrics={"raw": {"fid": 1.0}})
    cells = group_cells(load_records(tmp_path))
    assert set(cells) == {"baseline [loss=hinge]", "ema [loss=hinge]", "baseline [loss=wgan_gp]", "ema [loss=wgan_gp]"}
    # each cell is compared with the baseline of its own variant
    assert reference_of(cells["ema [loss=wgan_gp]"], cells).name == "baseline [loss=wgan_gp]"


def test_design_reference_cell_is_used_and_can_be_overridden(tmp_path):
    for label, tricks in (("all", ["a", "b"]), ("-a", ["b"]), ("-b", ["a"])):
        _write(tmp_path, label, tricks=tricks, seed=0, status="ok", cell=label, reference="all", design="leave_one_out",
               metrics={"raw": {"modes": 1}})
    cells = group_cells(load_records(tmp_path))
    assert list(cells)[0] == "all"  # the reference first
    assert reference_of(cells["-a"], cells).name == "all"
    assert reference_of(cells["-a"], cells, override="-b").name == "-b"


@pytest.mark.slow
def test_report_tables_differences_failures_and_plots(tmp_path):
    for seed, modes in enumerate([6, 8, 7]):
        _write(tmp_path, f"b{seed}", tricks=[], seed=seed, status="ok", extractor="mode_metrics",
               metrics={"raw": {"modes": modes}, "ema": {"modes": modes + 1}},
               history=[{"iteration": 10, "raw": {"modes": modes - 1}}, {"iteration": 20, "raw": {"modes": modes}}])
        _write(tmp_path, f"s{seed}", tricks=["spectral_norm"], seed=seed, status="ok", extractor="mode_metrics",
               metrics={"raw": {"modes": 8 + seed * 0.1}, "ema": {"modes": 2}})
        (tmp_path / f"s{seed}" / "csv").mkdir()
        (tmp_path / f"s{seed}" / "csv" / "metrics.csv").write_text(
            "loss/d,loss/g,step\n" + "".join(f"{1 / (i + 1)},{i / 10},{i}\n" for i in range(30)))
    _write(tmp_path, "x", name="label_smoothing-s0", tricks=["label_smoothing"], seed=0, status="failed",
           error="RuntimeError: boom", metrics={})
    _write(tmp_path, "d", name="spectral_norm-s4", tricks=["spectral_norm"], seed=4, status="diverged",
           reason="loss/d not finite", diverged_at_iteration=3, iterations=10, metrics={"raw": {"modes": 0}})
    _write(tmp_path, "o", name="spectral_norm-s5", tricks=["spectral_norm"], seed=5, status="diverged", metrics={},
           failure_flags=[{"iteration": 50, "flag": "non_finite", "detail": "grad_norm/d not finite"}])
    _write(tmp_path, "r", name="spectral_norm-s3", tricks=["spectral_norm"], seed=3, status="running", metrics={})
    cells = group_cells(load_records(tmp_path))
    assert list(cells) == ["baseline", "spectral_norm", "label_smoothing"]
    assert cells["spectral_norm"].values("raw", "modes") == pytest.approx([8.0, 8.1, 8.2])  # not the running one

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "| baseline | 3 | 7 | 0.577 | [4.52, 9.48] | reference |  |  |  |" in out
    # the two diverged runs count as the table's worst value (6 raw modes, 2 EMA modes); the running one not at all
    raw = [8.0, 8.1, 8.2, 6.0, 6.0]
    low, high = stats.t.interval(0.95, len(raw) - 1, loc=np.mean(raw), scale=stats.sem(raw))
    p = exact_two_sided_p(raw, [6.0, 8.0, 7.0])  # one comparison with a p in the table: Holm leaves it
    assert (f"| spectral_norm | 5 (2 as worst) | {np.mean(raw):.3g} | {stats.sem(raw):.3g} | [{low:.3g}, {high:.3g}] "
            f"| {np.mean(raw) - 7:.3g} | {p:.3g} | {p:.3g} |  |") in out
    # EMA modes fell in all 5 runs, below all 3 of the baseline's: 2 of the 56 relabellings are as extreme
    assert "| spectral_norm | 5 (2 as worst) | 2 | 0 | – | -6 | 0.0357 | 0.0357 | worse |" in out
    assert "| label_smoothing | 1 (1 as worst) |" in out  # its one run failed: a row, but no test
    assert "| spectral_norm | 5 | 3 | 2 | 0 | 0 | 2/5 = 0.4 [0.118, 0.769] |" in out  # outcomes: Wilson
    assert "| label_smoothing-s0 | 0 | failed | RuntimeError: boom | x |" in out
    assert "| spectral_norm-s3 | 3 | running |" in out
    assert "| spectral_norm-s4 | 4 | diverged | loss/d not finite (first at iteration 3, stopped at 10) | d |" in out
    assert "| spectral_norm-s5 | 5 | diverged | grad_norm/d not finite | o |" in out  # a record from before
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    for image in ("metric_modes.png", "curves_losses.png", "curves_evaluation.png"):
        assert (tmp_path / "report" / image).stat().st_size > 5000
        assert f"(report/{image})" in md and f"src='report/{image}'" in html
    assert "<td>RuntimeError: boom</td>" in html
    assert not (tmp_path / "report" / "curves_gradient_norms.png").exists()  # no run logged them


def test_report_of_an_empty_folder_says_so(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "no result.json" in result.stderr


def test_a_cell_that_reads_the_mode_labels_is_set_apart_without_a_verdict(tmp_path):
    """conditional on ring8 knows each sample's mode: far better modes, and no 'better' for it; the
    report says why, and a trick fixed since its runs (ema at revision 1) is set apart too."""
    from gan_ablate.sweep.report import report_of

    records = []
    for cell, tricks, modes in (("baseline", [], [2, 3, 4, 3, 2]), ("+conditional", ["conditional"], [8, 8, 8]),
                                ("+ema", ["ema"], [8, 8, 7]), ("+ttur", ["ttur"], [8, 8, 7, 8, 7])):
        records += [RunRecord(cell=cell, tricks=tricks, seed=s, data="ring8", status="ok", design="add_one",
                              reference="baseline", metrics={"raw": {"modes": m}}) for s, m in enumerate(modes)]
    report = report_of(records, "test")
    (modes,) = [t for t in report.tables if t.title == "modes (raw G)"]
    verdicts = {row[0]: row[-1] for row in modes.rows}
    assert verdicts["+ttur"] == "better"
    assert verdicts["+conditional"].startswith("set apart") and verdicts["+ema"].startswith("set apart")
    (apart,) = [t for t in report.tables if t.title == "Cells set apart"]
    why = dict(apart.rows)
    assert "labels" in why["+conditional"] and "`ema`" in why["+ema"] and "+ttur" not in why


def _factorial(tmp_path, tricks, modes_of, seeds=3, **extra):
    """A 2x2 factorial sweep's records over `tricks`; modes_of(on_a, on_b, seed) gives each run's modes."""
    for on_a in (False, True):
        for on_b in (False, True):
            cell = [t for t, on in zip(tricks, (on_a, on_b)) if on]
            label = cell_label(cell)
            for seed in range(seeds):
                modes = modes_of(on_a, on_b, seed)
                _write(tmp_path, f"{label}-{seed}", tricks=cell, cell=label, reference="baseline", design="factorial",
                       seed=seed, status="ok", metrics={"raw": {"modes": modes}, "ema": {"modes": modes + 1}},
                       **extra)


def test_a_factorial_report_has_effects_tables_an_effect_plot_and_an_interaction_map(tmp_path):
    from gan_ablate.sweep.report import write_report

    # cell means 4, 6 (label smoothing), 3 (instance noise), 6 (both); seeds -0.1, 0, +0.1 around them
    means = {(False, False): 4, (True, False): 6, (False, True): 3, (True, True): 6}
    _factorial(tmp_path, ["label_smoothing", "instance_noise"], lambda ls, noise, seed: means[ls, noise] + (seed - 1) / 10)
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    # effect = mean on minus mean off: (6+6)/2-(4+3)/2, (3+6)/2-(4+6)/2, product +1 (4+6)/2 minus -1 (6+3)/2;
    # 95% interval: t on 12-4 df times 2 x the coefficient's s.e. (pooled s = 0.1, 12 runs)
    half = stats.t.ppf(0.975, 8) * 2 * 0.1 / math.sqrt(12)
    for term, effect in (("label_smoothing", 2.5), ("instance_noise", -0.5), ("label_smoothing:instance_noise", 0.5)):
        assert f"| {term} | {effect:.3g} | [{effect - half:.3g}, {effect + half:.3g}] |" in md
    assert "## Effects on modes (raw G)" in md and "## Effects on modes (ema G)" in md
    assert "coding: each trick -1 (off) / +1 (on)" in md and "adjusted p: Holm over the 3 terms of this table" in md
    for image in ("effects_modes.png", "interactions_modes.png"):
        assert (tmp_path / "report" / image).stat().st_size > 5000
        assert f"(report/{image})" in md and f"src='report/{image}'" in html
    assert "<h2>Effects on modes (raw G)</h2>" in html


def test_effects_leave_out_cells_set_apart_and_add_one_sweeps(tmp_path):
    from gan_ablate.sweep.report import report_of

    # conditional reads ring8's labels, the modes: its cells are no evidence, so only label_smoothing is a factor
    _factorial(tmp_path, ["conditional", "label_smoothing"], lambda c, ls, seed: 3 + 5 * c + ls + seed, data="ring8")
    report = report_of(load_records(tmp_path), "test")
    (effects,) = [t for t in report.tables if t.title == "Effects on modes (raw G)"]
    assert [row[0] for row in effects.rows] == ["label_smoothing"] and effects.rows[0][1] == "1"
    assert "cells set apart, left out of the fit: conditional, conditional+label_smoothing" in effects.note
    records = load_records(tmp_path)
    for r in records:
        r.design = "add_one"
    assert not [t for t in report_of(records, "test").tables if t.title.startswith("Effects")]


def test_the_reverse_kl_tables_name_the_definition_their_runs_recorded(tmp_path):
    """metrics.reverse_kl has two definitions: a table of reverse_kl says which its runs' config chose (records from
    before the option: the nearest-mode one), and that two are mixed where they are."""
    from gan_ablate.sweep.report import metric_table

    for seed in range(2):
        _write(tmp_path / "pacgan", f"b{seed}", tricks=[], seed=seed, status="ok",
               config={"metrics": {"reverse_kl": "high_quality"}}, metrics={"raw": {"reverse_kl": 0.1, "modes": 8}})
        _write(tmp_path / "before", f"b{seed}", tricks=[], seed=seed, status="ok", metrics={"raw": {"reverse_kl": 0.1}})
    _write(tmp_path / "pacgan", "mixed", tricks=[], seed=9, status="ok", metrics={"raw": {"reverse_kl": 0.1}})

    def title(folder, metric="reverse_kl"):
        return metric_table(metric, "raw", group_cells(load_records(folder))).title

    assert title(tmp_path / "before") == "reverse_kl [every sample, at its nearest mode] (raw G)"
    assert title(tmp_path / "pacgan") == ("reverse_kl [the high-quality samples only, PacGAN's / every sample, at its "
                                          "nearest mode: MIXED, not comparable] (raw G)")
    (tmp_path / "pacgan" / "mixed" / "result.json").unlink()
    assert title(tmp_path / "pacgan") == "reverse_kl [the high-quality samples only, PacGAN's] (raw G)"
    assert title(tmp_path / "pacgan", "modes") == "modes (raw G)"
