"""The ablation sweeper (hydra_plugins/gan_ablate_sweepers): designs, skipped conflicts, failures."""
from __future__ import annotations

import math

import pytest

from conftest import image_folders, not_inception_weights, run_train_py
from gan_ablate.config import ConfigError
from gan_ablate.record import load_records
from gan_ablate.sweep.design import design_cells

FAST = ["logger=csv", "trainer.enable_progress_bar=false", "model.g_hidden=16", "model.d_hidden=16",
        "data.n_points=2000", "data.batch_size=32", "metrics.n_samples=200", "checkpoint.every=0"]


def labels(cells):
    return [(c.label, list(c.tricks)) for c in cells]


def test_add_one_and_leave_one_out_cells():
    assert labels(design_cells("add_one", ["a", "b"], baseline=["ema"])) == [
        ("baseline", ["ema"]), ("+a", ["ema", "a"]), ("+b", ["ema", "b"])]
    assert labels(design_cells("leave_one_out", ["a", "b", "c"])) == [
        ("all", ["a", "b", "c"]), ("-a", ["b", "c"]), ("-b", ["a", "c"]), ("-c", ["a", "b"])]


def test_factorial_is_every_subset_and_refused_above_max_cells_unless_forced():
    cells = design_cells("factorial", ["a", "b", "c"])
    assert len(cells) == 8 and cells[0].label == "baseline"
    assert {c.tricks for c in cells} == {(), ("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")}
    with pytest.raises(ConfigError, match="ablation.max_cells=4.*ablation.force=true"):
        design_cells("factorial", ["a", "b", "c"], max_cells=4)
    assert len(design_cells("factorial", ["a", "b", "c"], max_cells=4, force=True)) == 8


def test_explicit_cells_and_bad_designs():
    assert labels(design_cells("explicit", [], baseline=["ema"], explicit=[[], ["a", "b"]])) == [
        ("baseline", ["ema"]), ("a+b", ["ema", "a", "b"])]
    with pytest.raises(ConfigError, match="ablation.cells"):
        design_cells("explicit", ["a"])
    with pytest.raises(ConfigError, match="needs ablation.tricks"):
        design_cells("add_one", [])
    with pytest.raises(ConfigError, match="ablation.design='bogus' is not allowed; choose one of: add_one"):
        design_cells("bogus", ["a"])
    with pytest.raises(ConfigError, match="names a trick twice"):
        design_cells("add_one", ["a", "a"])


@pytest.mark.slow
def test_leave_one_out_sweep_runs_every_cell_and_seed_and_reports_them(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train_py("-m", "hydra/sweeper=ablation", "ablation.tricks=[label_smoothing,instance_noise,spectral_norm]",
                          "ablation.design=leave_one_out", "ablation.seeds=2", "trainer.max_steps=30", *FAST,
                          f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = load_records(sweep)
    assert len(records) == 8
    got = sorted((r.cell, tuple(r.tricks), r.seed) for r in records)
    want = sorted((c, t, s) for c, t in [("all", ("label_smoothing", "instance_noise", "spectral_norm")),
                                         ("-label_smoothing", ("instance_noise", "spectral_norm")),
                                         ("-instance_noise", ("label_smoothing", "spectral_norm")),
                                         ("-spectral_norm", ("label_smoothing", "instance_noise"))] for s in (0, 1))
    assert got == want
    for r in records:  # every job knows its sweep, design, cell and seed, in its record and its config
        assert r.status == "ok" and r.design == "leave_one_out" and r.reference == "all"
        assert r.sweep == str(sweep) and r.config["ablation"]["cell"] == r.cell
        assert r.config["seed"] == r.seed

    report = run_report(sweep)
    table = report.split("## modes (raw G)")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| cell")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["all", "-label_smoothing", "-instance_noise", "-spectral_norm"]
    # columns: cell | runs | mean | s.e. | 95% CI | Δ vs reference | p | adjusted p | call
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    assert cells[0][5] == "reference"
    assert all(not math.isnan(float(c[5])) and 0 <= float(c[6]) <= float(c[7]) <= 1 for c in cells[1:])  # Δ, p <= adjusted p
    assert (sweep / "report" / "metric_modes.png").exists() and (sweep / "report" / "samples_last.png").exists()


def run_report(sweep) -> str:
    import subprocess
    import sys

    from conftest import ROOT
    subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(sweep)], check=True, capture_output=True)
    return (sweep / "report.md").read_text()


@pytest.mark.slow
def test_conflicting_cells_are_recorded_skipped_and_not_launched(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train_py("-m", "hydra/sweeper=ablation", "ablation.tricks=[label_smoothing,one_sided_label_smoothing]",
                          "ablation.design=factorial", "ablation.seeds=2", "trainer.max_steps=5", *FAST,
                          f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = load_records(sweep)
    skipped = [r for r in records if r.status == "skipped"]
    assert len(records) == 8 and len(skipped) == 2
    assert {r.cell for r in skipped} == {"label_smoothing+one_sided_label_smoothing"}
    assert all("conflicts with" in r.reason for r in skipped)
    assert all("/skipped/" in str(r.run_dir) for r in skipped)  # never given a job folder: not launched
    assert sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit()) == list(range(6))
    assert "label_smoothing+one_sided_label_smoothing | 0 | skipped | trick" in run_report(sweep)


@pytest.mark.slow
def test_a_raising_cell_is_recorded_failed_the_others_land_and_the_exit_code_says_so(tmp_path):
    good, _ = image_folders(tmp_path)
    sweep = tmp_path / "sweep"
    # the user's own sweep (metrics.extractor; inception's weights are broken: it raises) times the design's cells
    result = run_train_py("-m", "hydra/sweeper=ablation", "ablation.tricks=[instance_noise]", "ablation.seeds=1",
                          "data=image_folder", f"data.root={good}", "data.image_size=8", "data.channels=1",
                          "model.z_dim=8", "data.batch_size=4", "model.g_channels=8", "model.d_channels=8",
                          "metrics.extractor=none,inception",
                          f"metrics.inception_weights={not_inception_weights(tmp_path)}",
                          "trainer.max_steps=3", *FAST, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 1 and "2 job(s) failed" in result.stderr
    records = load_records(sweep)
    assert sorted(r.status for r in records) == ["failed", "failed", "ok", "ok"]
    for r in records:
        if r.status == "failed":
            assert "UnpicklingError" in r.error and "metrics.extractor=inception" in r.overrides
            assert "Traceback" in (sweep / str(r.job_num) / "traceback.txt").read_text()
    report = run_report(sweep)
    assert report.count("| failed | UnpicklingError") == 2


@pytest.mark.slow
def test_sweeper_refuses_trick_and_seed_overrides_and_bad_designs(tmp_path):
    result = run_train_py("-m", "hydra/sweeper=ablation", "ablation.tricks=[ema]", "seed=0,1",
                          f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("gan-ablate: config error: seed: the ablation sweeper")
    result = run_train_py("-m", "hydra/sweeper=ablation", "ablation.tricks=[ema]", "ablation.design=bogus",
                          f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2 and "ablation.design='bogus' is not allowed" in result.stderr
    result = run_train_py("-m", "hydra/sweeper=ablation", "ablation.tricks=[ema]", "ablation.seeds=0",
                          f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2 and "ablation.seeds=0" in result.stderr
    assert not list(tmp_path.rglob("result.json"))  # refused before any job


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_other_processes_and_still_reports_failures(tmp_path):
    good, _ = image_folders(tmp_path)
    sweep = tmp_path / "sweep"
    result = run_train_py("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data=image_folder",
                          f"data.root={good}", "data.image_size=8", "data.channels=1", "model.z_dim=8",
                          "data.batch_size=4", "model.g_channels=8", "model.d_channels=8", "trainer.max_steps=3",
                          "metrics.extractor=none,inception", f"metrics.inception_weights={not_inception_weights(tmp_path)}",
                          *FAST, f"hydra.sweep.dir={sweep}")
    # the failure happened in a joblib worker: the sweeper learns it from the job's returned status
    assert result.returncode == 1 and "1 job(s) failed" in result.stderr
    assert sorted(r.status for r in load_records(sweep)) == ["failed", "ok"]
    assert "Launching jobs, sweep output dir" in result.stdout + result.stderr  # joblib's own log line
