"""A sweep SIGKILLed at random moments, some of them inside a checkpoint write, and restarted each time in the
same folder, ends exactly like a sweep never stopped: same records, every CSV row once."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, run_train_py
from test_resume import csv_steps, last_iteration

SEEDS, ITERATIONS, EVERY = 3, 300, 25
SWEEP = ["-m", *TINY, f"trainer.max_steps={ITERATIONS}", f"checkpoint.every={EVERY}", "metrics.every=100",
         "trainer.log_every_n_steps=1", "seed=" + ",".join(map(str, range(SEEDS)))]
KILLS = 5
TIMEOUT_S = 120

# train.py, but SIGKILLed inside its `argv[1]`-th write over a checkpoint: `write` half-way through the bytes of the
# temporary file, `renames` between moving last.ckpt aside and putting the new one in its place (no last.ckpt)
TORN = """
import os, signal, sys
import gan_ablate.atomic as atomic
import gan_ablate.callbacks.checkpoint as checkpoint
from gan_ablate.cli import main

kill_in_write, moment = int(sys.argv[1]), sys.argv[2]
writes, write_atomically, replace = 0, atomic.write_atomically, os.replace


def killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)


def replace_then_die(src, dst):
    replace(src, dst)
    os.replace = killed


def dying_write(path, write, keep_previous=None):
    global writes
    writes += os.path.exists(path)  # writes that replace a checkpoint
    if writes < kill_in_write:
        return write_atomically(path, write, keep_previous)

    def torn(tmp):
        write(tmp)
        if moment == "write":
            os.truncate(tmp, os.path.getsize(tmp) // 2)
            killed()
        os.replace = replace_then_die

    write_atomically(path, torn, keep_previous)


checkpoint.write_atomically = dying_write
sys.argv = ["train.py", *sys.argv[3:]]
main()
"""


def progress(sweep_dir: Path) -> int:
    """Iterations checkpointed so far, over all the sweep's jobs."""
    return sum(max(last_iteration(sweep_dir / str(job)), 0) for job in range(SEEDS))


def read_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def start(sweep_dir: Path, stderr: Path, *torn: str) -> subprocess.Popen:
    """The sweep's stderr goes to a file: a pipe nobody reads until the kill could fill up and stall it."""
    command = ["-c", TORN, *torn] if torn else [str(ROOT / "train.py")]
    with open(stderr, "w") as err:
        return subprocess.Popen([sys.executable, *command, *SWEEP, f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=err)


def mid_run(sweep_dir: Path) -> bool:
    """A job has checkpointed and has at least two checkpoints to go: a kill now cuts it short. Between jobs (one
    finished, the next not yet counting its attempt) a kill would cut nothing, and the attempts would not add up."""
    return any(0 < last_iteration(sweep_dir / str(job)) <= ITERATIONS - 2 * EVERY for job in range(SEEDS))


def kill_when(proc: subprocess.Popen, sweep_dir: Path, at_least: int, then_s: float) -> None:
    deadline = time.time() + TIMEOUT_S
    while progress(sweep_dir) < at_least or not mid_run(sweep_dir):
        assert proc.poll() is None, f"the sweep ended before {at_least} iterations"
        assert time.time() < deadline, f"no {at_least} iterations within {TIMEOUT_S} s"
        time.sleep(0.05)
    time.sleep(then_s)  # past the checkpoint, so that rows written after it must not come back twice
    assert proc.poll() is None, "the sweep ended before its kill"
    proc.kill()


@pytest.mark.slow
def test_a_sweep_killed_at_random_moments_and_restarted_equals_an_uninterrupted_one(tmp_path):
    reference = tmp_path / "uninterrupted"
    result = run_train_py(*SWEEP, f"hydra.sweep.dir={reference}", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]

    rng = random.Random(17)
    targets = sorted(rng.sample(range(2 * EVERY, SEEDS * ITERATIONS - 6 * EVERY), KILLS))
    torn_kills = dict(zip(rng.sample(range(KILLS), 2), ["write", "renames"]))
    chaos = tmp_path / "chaos"
    for kill, target in enumerate(targets):
        stderr = tmp_path / f"attempt{kill}.stderr"
        torn = (str(rng.randint(1, 4)), torn_kills[kill]) if kill in torn_kills else ()
        at_least = max(target, progress(chaos) + EVERY)  # a checkpoint past the last kill's: each lands mid-run
        proc = start(chaos, stderr, *torn)
        try:
            if not torn:
                kill_when(proc, chaos, at_least, rng.uniform(0, 0.3))
            proc.wait(timeout=TIMEOUT_S)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL, stderr.read_text()[-3000:]
    assert list(chaos.glob("*/checkpoints/.last.ckpt.*.tmp")), "no kill landed inside a checkpoint write"

    result = run_train_py(*SWEEP, f"hydra.sweep.dir={chaos}", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    # the kill between the renames left no last.ckpt: the next start resumed from the one before
    assert any("resuming from the previous checkpoint" in log.read_text() for log in chaos.glob("*/train.log"))
    attempts = 0
    for job in range(SEEDS):
        got, want = read_record(chaos / str(job)), read_record(reference / str(job))
        assert got["status"] == want["status"] == "ok"
        assert got["iterations"] == want["iterations"] == ITERATIONS
        assert got["metrics"] == want["metrics"]  # exactly: same randomness, same state
        assert got["history"] == want["history"]  # every evaluation once, none lost
        assert csv_steps(chaos / str(job), "loss/d") == list(range(ITERATIONS))  # every row once
        assert csv_steps(chaos / str(job), "eval/raw/modes") == csv_steps(reference / str(job), "eval/raw/modes")
        attempts += got["attempts"]
    assert attempts >= SEEDS + KILLS  # each kill cut a job short
