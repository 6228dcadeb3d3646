"""wall_time_s of a resumed run is the sum over its attempts (attempt_wall_times_s lists them), whether an
attempt was stopped by a signal (it records its time) or killed without warning (its last heartbeat counts)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import pytorch_lightning as pl

from conftest import ROOT, make_cfg
from gan_ablate.run import train

RUN = ["trainer.max_steps=1500", "checkpoint.every=20", "metrics.every=0"]


class SlowThenTerminated(pl.Callback):
    """Spends `seconds` in the attempt, then sends this process SIGTERM (as SLURM's preemption would)."""

    def __init__(self, at_iteration: int, seconds: float):
        self.at_iteration, self.seconds = at_iteration, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.at_iteration:
            time.sleep(self.seconds)
            os.kill(os.getpid(), signal.SIGTERM)


def read_record(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def assert_sum_of_attempts(record: dict, first: float, last_attempt_took: float) -> None:
    times = record["attempt_wall_times_s"]
    assert record["attempts"] == len(times) == 2
    assert times[0] == first
    assert record["wall_time_s"] == pytest.approx(sum(times), abs=2e-3)
    assert times[1] <= last_attempt_took < record["wall_time_s"]  # the first attempt counts too


def test_a_run_stopped_by_sigterm_and_restarted_counts_both_attempts(tmp_path):
    cfg = make_cfg(*RUN, "trainer.max_steps=40")
    with pytest.raises(SystemExit) as stopped:
        train(cfg, tmp_path, callbacks=[SlowThenTerminated(at_iteration=10, seconds=1.0)])
    assert stopped.value.code == 128 + signal.SIGTERM
    interrupted = read_record(tmp_path)
    assert 10 <= interrupted["interrupted_at_iteration"] < 40
    assert interrupted["attempt_wall_times_s"] == [interrupted["wall_time_s"]] and interrupted["wall_time_s"] >= 1.0

    started = time.time()
    record = train(cfg, tmp_path).data
    assert (record["status"], record["resumed_from_iteration"]) == ("ok", interrupted["interrupted_at_iteration"])
    assert_sum_of_attempts(record, interrupted["wall_time_s"], time.time() - started)


SCRIPT = """
import sys
import gan_ablate.run as run
import gan_ablate.run_folder as run_folder
from conftest import make_cfg
assert hasattr(run_folder, "HEARTBEAT_S")  # setting a name the clock no longer reads would test nothing
run_folder.HEARTBEAT_S = 0.2  # a heartbeat lands long before the run can end
run.train(make_cfg(*sys.argv[2:]), sys.argv[1])
"""


@pytest.mark.slow
def test_a_run_killed_without_warning_counts_its_attempt_up_to_its_last_heartbeat(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), *RUN], cwd=ROOT / "tests",
                            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while True:  # until it has trained a while and has a checkpoint to resume from
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:] if proc.poll() else ""
        record = read_record(tmp_path) if (tmp_path / "result.json").exists() else {}
        if record.get("attempt_wall_times_s", [0])[-1] >= 1.0 and (tmp_path / "checkpoints" / "last.ckpt").exists():
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    killed = read_record(tmp_path)
    assert killed["status"] == "running"

    started = time.time()
    record = train(make_cfg(*RUN), tmp_path).data
    assert record["status"] == "ok" and record["resumed_from_iteration"] > 0
    assert_sum_of_attempts(record, killed["attempt_wall_times_s"][-1], time.time() - started)
