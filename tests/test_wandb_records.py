"""What reaches W&B (offline run files, read back without W&B's servers): every evaluation and sample
grid, on the `iteration` axis, with the summaries README.md documents; and a run killed or stopped by a
signal and started again is one W&B run whose history holds every CSV row exactly once."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, TINY, run_train_py
from test_resume import wait_for_checkpoint
from gan_ablate.loggers import RunWandbLogger
from gan_ablate.record import FINAL_METRICS
from gan_ablate.run_loggers import summarise_in_wandb, wandb_run_id
from gan_ablate.wandb_offline import find_run_files, read_history, read_records, read_summary

# W&B on (logger=wandb, offline in the suite); every iteration logged, so a lost or doubled row shows
RUN = [a for a in TINY if a != "logger=csv"] + [
    "logger=wandb", "trainer.max_steps=300", "checkpoint.every=50", "metrics.every=100", "trainer.log_every_n_steps=1"]
EVALUATED = [100, 200, 300]


def wandb_values(run_dir: Path) -> dict[tuple[int, str], list]:
    """(iteration, key) -> every value the run's W&B files (one per start) hold for it, oldest first."""
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    values = defaultdict(list)
    for path in find_run_files(run_dir, run_id):
        for row in read_history(path):
            for key, value in row.items():
                if key != "iteration" and not key.startswith("_"):
                    values[row["iteration"], key].append(value)
    return values


def csv_values(run_dir: Path) -> dict[tuple[int, str], float]:
    values = {}
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value != "":
                    assert (int(row["step"]), key) not in values
                    values[int(row["step"]), key] = float(value)
    return values


def assert_wandb_holds_the_csv_once(run_dir: Path) -> None:
    logged, expected = wandb_values(run_dir), csv_values(run_dir)
    assert len(expected) > 2 * 300  # both losses at every iteration, gradient norms, evaluations
    missing = sorted(entry for entry in expected if entry not in logged)
    assert not missing, f"{len(missing)} CSV values not in W&B, e.g. {missing[:5]}"
    doubled = sorted(entry for entry, values in logged.items() if len(values) > 1)
    assert not doubled, f"{len(doubled)} values logged to W&B more than once, e.g. {doubled[:5]}"
    assert {entry: values[0] for entry, values in logged.items() if entry[1] != "samples"} == expected


def assert_every_evaluation_in_wandb(run_dir: Path, iterations: list[int]) -> None:
    """result.json's history, value for value, at its iterations, and a sample grid with each."""
    record = json.loads((run_dir / "result.json").read_text())
    assert [entry["iteration"] for entry in record["history"]] == iterations
    logged = wandb_values(run_dir)
    for entry in record["history"]:
        for net in ("raw", "ema"):
            for metric, value in entry[net].items():
                assert logged[entry["iteration"], f"eval/{net}/{metric}"] == [value]
        assert [image["_type"] for image in logged[entry["iteration"], "samples"]] == ["images/separated"]
    assert sorted(it for it, key in logged if key.startswith(("eval/", "samples"))) == sorted(
        [it for it in iterations for _ in range(15)])  # 2 x 7 metrics and a grid: no evaluation not in the record
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [f"samples_{it:07d}.png" for it in iterations]


@pytest.mark.slow
def test_a_sweep_logs_every_evaluation_on_the_iteration_axis_with_its_summaries(tmp_path):
    # the acceptance command (W&B offline is the default logger)
    result = run_train_py("-m", "seed=0,1", "trainer.max_steps=100", "metrics.every=50",
                          "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for run_dir in (tmp_path / "0", tmp_path / "1"):
        assert_every_evaluation_in_wandb(run_dir, [50, 100])
        [path] = find_run_files(run_dir)
        rows = read_history(path)
        # the x-axis is the training iteration, as in result.json and the CSV; Lightning's axis is gone
        assert all("iteration" in row and "trainer/global_step" not in row for row in rows)
        with open(run_dir / "csv" / "metrics.csv", newline="") as f:
            loss_steps = [int(row["step"]) for row in csv.DictReader(f) if row["loss/d"]]
        assert [row["iteration"] for row in rows if "loss/d" in row] == loss_steps == [0, 50]
        axes = {r.metric.glob_name: r.metric.step_metric for r in read_records(path)
                if r.WhichOneof("record_type") == "metric" and r.metric.glob_name}
        assert axes == {"*": "iteration"}
        record, summary = json.loads((run_dir / "result.json").read_text()), read_summary(path)
        for net in ("raw", "ema"):
            for metric in record["metrics"][net]:
                assert metric in FINAL_METRICS  # mode metrics: the summary keeps the last evaluation's
                assert summary[f"eval/{net}/{metric}"] == {"last": record["history"][-1][net][metric]}
                assert summary[f"final/{net}/{metric}"] == record["metrics"][net][metric]


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *RUN, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(run_dir: Path) -> dict:
    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming at iteration" in result.stdout + result.stderr
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_wandb_holds_the_csv_once(run_dir)
    return json.loads((run_dir / "result.json").read_text())


@pytest.mark.slow
def test_a_run_killed_and_resumed_is_one_wandb_run_holding_every_csv_row_once(tmp_path, uninterrupted):
    run_dir = tmp_path / "killed"
    proc = start(run_dir)
    # at the checkpoint just after an evaluation: W&B lags some iterations, and loses that evaluation's rows and grid
    wait_for_checkpoint(proc, run_dir, 200)
    proc.send_signal(signal.SIGKILL)  # the rows logged since are in W&B's files or not: either way once
    proc.wait()

    record = finish(run_dir)
    assert len(find_run_files(run_dir)) == 2 and record["history"] == uninterrupted["history"]
    assert_wandb_holds_the_csv_once(run_dir)
    assert_every_evaluation_in_wandb(run_dir, EVALUATED)


@pytest.mark.slow
def test_a_signal_stop_evaluates_nothing_the_finished_run_would_not(tmp_path, uninterrupted):
    run_dir = tmp_path / "stopped"
    proc = start(run_dir)
    wait_for_checkpoint(proc, run_dir, 120)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    stopped = json.loads((run_dir / "result.json").read_text())["interrupted_at_iteration"]
    assert stopped < 300
    # no grid, no evaluation at the stop: only the scheduled ones so far
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        f"samples_{it:07d}.png" for it in EVALUATED if it <= stopped]
    assert sorted({it for it, key in wandb_values(run_dir) if key.startswith("eval/")}) == [
        it for it in EVALUATED if it <= stopped]

    record = finish(run_dir)
    assert record["history"] == uninterrupted["history"] and record["metrics"] == uninterrupted["metrics"]
    assert_every_evaluation_in_wandb(run_dir, EVALUATED)
    assert_wandb_holds_the_csv_once(run_dir)


def test_summaries_aggregate_the_whole_history_not_only_the_latest_start(tmp_path):
    # a resumed run's W&B file aggregates only its own rows: here the best FID (1.0) came before the restart
    experiment = SimpleNamespace(summary={})
    logger = RunWandbLogger(tmp_path, "abc", experiment=experiment)
    history = [{"iteration": 100, "raw": {"fid": 3.0, "is": 2.0, "modes": 5}},
               {"iteration": 200, "raw": {"fid": 1.0, "is": 1.5, "modes": 7}},
               {"iteration": 300, "raw": {"fid": 2.0, "is": 2.5, "modes": 6}}]
    summarise_in_wandb([logger], {"status": "ok", "metrics": {"raw": {"fid": 2.0, "is": 2.5, "modes": 6}},
                                  "history": history})
    assert experiment.summary == {"status": "ok", "eval/raw/fid": {"min": 1.0}, "eval/raw/is": {"max": 2.5},
                                  "eval/raw/modes": {"last": 6}, "final/raw/fid": 2.0, "final/raw/is": 2.5,
                                  "final/raw/modes": 6}


def test_an_image_runs_summary_holds_every_metric_including_those_without_a_direction(tmp_path):
    # an image run also records kid_std, is_std and the sample count: they have no best, so the summary shows their
    # last value (a missing direction once failed the whole summary, and W&B held no final metric of image runs)
    experiment = SimpleNamespace(summary={})
    logger = RunWandbLogger(tmp_path, "abc", experiment=experiment)
    final = {"fid": 9.0, "kid": 0.5, "kid_std": 0.1, "is": 2.0, "is_std": 0.2, "n_samples": 2000}
    history = [{"iteration": 100, "raw": {**final, "fid": 7.0, "kid_std": 0.3}}, {"iteration": 200, "raw": final}]
    summarise_in_wandb([logger], {"status": "ok", "metrics": {"raw": final}, "history": history})
    assert not logger.failed
    assert {k: v for k, v in experiment.summary.items() if k.startswith("final/")} == {
        f"final/raw/{metric}": value for metric, value in final.items()}
    assert experiment.summary["eval/raw/fid"] == {"min": 7.0}
    assert experiment.summary["eval/raw/kid_std"] == {"last": 0.1}
    assert experiment.summary["eval/raw/n_samples"] == {"last": 2000}


def test_a_run_started_over_is_a_new_wandb_run_and_a_resumed_one_the_same(tmp_path):
    # a new run would otherwise meet the old one's rows in its W&B files, and RunWandbLogger logs none of those
    first = wandb_run_id(tmp_path, resume=True)
    assert wandb_run_id(tmp_path, resume=True) == first
    started_over = wandb_run_id(tmp_path, resume=False)
    assert started_over != first and wandb_run_id(tmp_path, resume=True) == started_over
