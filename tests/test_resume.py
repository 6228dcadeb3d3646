"""Checkpoints and resumption: a run killed at any point and started again ends exactly like a run
never stopped, with every logged row once; SIGTERM/SIGUSR1 write a checkpoint before stopping."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, make_cfg, run_train_py
from gan_ablate.callbacks.checkpoint import kept_csv_rows, read_checkpoint
from gan_ablate.run import train
from gan_ablate.run_folder import config_change

# stateful tricks, so the checkpoint must carry more than the nets: a replay buffer, historical
# averages, the failure watch; EMA G is always there
RUN = TINY + ["trainer.max_steps=900", "checkpoint.every=50", "metrics.every=300", "trainer.log_every_n_steps=1",
              "trick=[experience_replay,historical_averaging,instance_noise]", "optim.n_critic=2"]


def last_iteration(run_dir: Path) -> int:
    try:
        return read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["gan_ablate"]["iteration"]
    except Exception:  # not written yet, or being written
        return -1


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *RUN, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, at_least: int) -> int:
    deadline = time.time() + 300
    while time.time() < deadline:
        it = last_iteration(run_dir)
        if it >= at_least:
            return it
        assert proc.poll() is None, f"the run ended before its checkpoint at {at_least}:\n{proc.stdout.read()[-3000:]}"
        time.sleep(0.02)
    raise AssertionError("no checkpoint within 300 s")


def csv_steps(run_dir: Path, column: str) -> list[int]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get(column)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def assert_same_run(resumed: Path, reference: Path) -> None:
    got, want = (json.loads((d / "result.json").read_text()) for d in (resumed, reference))
    assert got["status"] == want["status"] == "ok"
    assert got["iterations"] == want["iterations"] == 900
    assert got["metrics"] == want["metrics"]      # exactly: same randomness, same state
    assert got["history"] == want["history"]      # every evaluation once, none lost
    assert got["attempts"] == 2 and got["resumed_from_iteration"] > 0
    for column in ("loss/d", "eval/raw/modes"):
        assert csv_steps(resumed, column) == csv_steps(reference, column)
    assert csv_steps(resumed, "loss/d") == list(range(900))  # one row per iteration, none twice
    assert csv_steps(resumed, "eval/raw/modes") == [300, 600, 900]


@pytest.mark.slow
def test_sigkill_mid_training_then_restart_equals_uninterrupted_run(tmp_path, uninterrupted):
    run_dir = tmp_path / "killed"
    proc = start(run_dir)
    at = wait_for_checkpoint(proc, run_dir, 350)  # past the first evaluation, so history must survive
    time.sleep(0.3)  # let it run past the checkpoint: rows after it exist and must not be duplicated
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "running" and at < 900

    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming at iteration" in result.stdout + result.stderr
    assert_same_run(run_dir, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_at_once_and_the_restart_finishes_the_run(tmp_path, uninterrupted, signum):
    run_dir = tmp_path / signal.Signals(signum).name
    proc = start(run_dir)
    wait_for_checkpoint(proc, run_dir, 100)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, out[-3000:]
    record = json.loads((run_dir / "result.json").read_text())
    stopped = record["interrupted_at_iteration"]
    assert record["status"] == "running" and f"stopped by {signal.Signals(signum).name}" in record["note"]
    assert last_iteration(run_dir) == stopped  # written on the signal, not at the last multiple of 50

    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at iteration {stopped} of" in result.stdout + result.stderr
    assert_same_run(run_dir, uninterrupted)


def test_checkpoints_count_iterations_not_optimizer_steps_and_load_weights_only(tmp_path):
    # n_critic=3: Lightning's global step moves 4 per iteration; checkpoints still land every 5 iterations
    cfg = make_cfg("trainer.max_steps=12", "checkpoint.every=5", "optim.n_critic=3", "trick=[experience_replay]",
                   "metrics.every=0")
    train(cfg, tmp_path)
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # weights_only=True: no pickled objects
    assert ckpt["gan_ablate"]["iteration"] == 12
    assert ckpt["global_step"] == 12 * 4
    buffer = ckpt["gan_ablate"]["tricks"]["experience_replay"]
    assert buffer["filled"] > 0 and buffer["data"].shape[0] >= buffer["filled"]
    assert [e["iteration"] for e in ckpt["callbacks"][next(k for k in ckpt["callbacks"] if "Evaluation" in k)]
            ["history"]] == [12]


def test_a_finished_run_started_again_returns_its_record_without_training(tmp_path):
    cfg = make_cfg("trainer.max_steps=5", "metrics.every=0")
    first = train(cfg, tmp_path)
    mtime = (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    again = train(cfg, tmp_path)
    assert again.data["metrics"] == first.data["metrics"] and again.data["status"] == "ok"
    assert (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_a_folder_holding_another_run_is_refused_naming_the_key(tmp_path):
    run_train_py(*TINY, "trainer.max_steps=5", "metrics.every=0", f"hydra.run.dir={tmp_path}")
    result = run_train_py(*TINY, "trainer.max_steps=6", "metrics.every=0", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("gan-ablate: config error:")
    assert "trainer.max_steps differs" in result.stderr
    # a changed logger or checkpoint setting is not a different run
    assert config_change({"logger": {"wandb": True}, "seed": 0}, {"logger": {"wandb": False}, "seed": 0}) is None
    assert config_change({"seed": 0}, {"seed": 1}) == "seed"
    # nor is the sweep's bookkeeping: the same cell in a sweep started again with one trick fewer under study
    assert config_change({"ablation": {"tricks": ["a", "b"]}, "trick": {"a": {}}},
                         {"ablation": {"tricks": ["a"]}, "trick": {"a": {}}}) is None


@pytest.mark.slow
def test_a_sweep_job_whose_folder_holds_another_run_fails_and_keeps_that_record(tmp_path):
    run_train_py(*TINY, "trainer.max_steps=5", "metrics.every=0", f"hydra.run.dir={tmp_path}/0")
    before = (tmp_path / "0" / "result.json").read_text()
    sweep = run_train_py("-m", *TINY, "trainer.max_steps=6", "metrics.every=0", "seed=0", f"hydra.sweep.dir={tmp_path}")
    assert sweep.returncode == 1 and "1 job(s) failed" in sweep.stderr
    assert (tmp_path / "0" / "result.json").read_text() == before  # the other run's record is untouched


def test_a_run_stopped_after_its_final_checkpoint_writes_its_record_from_it_without_training(tmp_path):
    # a gradient-norm flag at iteration 0: the failure watch's state must come back from the checkpoint too
    cfg = make_cfg("trainer.max_steps=6", "metrics.every=3", "trick=[experience_replay]",
                   "monitor.failure_watch.grad_norm_max=1e-9")
    first = train(cfg, tmp_path).data
    record = tmp_path / "result.json"
    # as if killed between the final checkpoint and the record
    record.write_text(json.dumps({**first, "status": "running", "metrics": {}, "history": []}))
    mtime = (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    again = train(cfg, tmp_path).data
    assert (again["status"], again["iterations"], again["resumed_from_iteration"]) == ("ok", 6, 6)
    assert again["metrics"] == first["metrics"] and again["history"] == first["history"]
    assert again["failure_flags"] == first["failure_flags"] and first["failure_flags"][0]["flag"] == "grad_norm_high"
    assert (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns == mtime  # nothing trained or saved


def test_kept_csv_rows_are_those_on_disk_at_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("loss/d,step\n0.5,0\n0.4,1\n0.3,2\n")
    assert kept_csv_rows(path, {"gan_ablate_logs": {"csv_rows": 2}}) == [{"loss/d": "0.5", "step": "0"},
                                                                         {"loss/d": "0.4", "step": "1"}]
    assert kept_csv_rows(tmp_path / "missing.csv", {}) == []
