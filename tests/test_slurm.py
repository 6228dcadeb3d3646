"""Sweeps on a real SLURM cluster (scripts/slurm_local_cluster.sh), through hydra/launcher=slurm.

Run by `make test-slurm` (which starts and stops the local cluster); skipped elsewhere."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from gan_ablate.record import load_record, load_records

pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(os.environ.get("GAN_ABLATE_SLURM_TEST") != "1",
                                 reason="needs the local SLURM cluster: make test-slurm")]

FAST = ["logger=csv", "trainer.enable_progress_bar=false", "model.g_hidden=16", "model.d_hidden=16",
        "data.n_points=2000", "data.batch_size=32", "metrics.n_samples=200",
        "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]


def sweep(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", *FAST, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"})


def squeue() -> list[tuple[str, str, str]]:
    """(job id, state, reason) of every job in the queue."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r"], capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("|")) for line in out.split()]


def wait(condition, what: str, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; queue: {squeue()}")


def test_ablation_sweep_on_slurm_lands_every_cell_and_a_cancelled_job_is_reported_failed(tmp_path):
    out = tmp_path / "sweep"
    # 2 tricks, add_one: baseline, +label_smoothing, +instance_noise; x 2 seeds = 6 array jobs, one at a time
    proc = sweep("hydra/sweeper=ablation", "ablation.tricks=[label_smoothing,instance_noise]", "ablation.seeds=2",
                 "trainer.max_steps=300", "hydra.launcher.array_parallelism=1", f"hydra.sweep.dir={out}")
    jobs = wait(lambda: [j for j in squeue() if "_" in j[0]], "the job array")
    victim = f"{jobs[0][0].split('_')[0]}_2"
    # cancelled while it runs (a pending array task cancelled never reaches SLURM's accounting)
    wait(lambda: (victim, "RUNNING") in [j[:2] for j in squeue()], f"job {victim} to start")
    subprocess.run(["scancel", victim], check=True)
    output, _ = proc.communicate(timeout=600)

    assert proc.returncode == 1, output[-3000:]
    assert "1 job(s) failed" in output
    records = {int(r.run_dir.name): r for r in load_records(out)}
    assert sorted(records) == list(range(6))
    for num, r in records.items():
        if num == 2:
            assert r.status == "failed" and f"SLURM job {victim} ended" in r.error and "CANCELLED" in r.error
            assert r.cell == "+label_smoothing" and r.seed == 0
        else:
            assert r.status == "ok" and r.design == "add_one", r
            assert r.metrics["raw"]["modes"] >= 0
    report = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(out)], capture_output=True,
                            text=True, check=True).stdout
    assert f"| +label_smoothing | 0 | failed | SLURM job {victim} ended" in report


def test_a_job_signalled_before_its_time_limit_checkpoints_is_requeued_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    proc = sweep("seed=0", "trainer.max_steps=2500", "checkpoint.every=50", "metrics.every=500",
                 "trainer.log_every_n_steps=1", f"hydra.sweep.dir={out}")
    ckpt = out / "0" / "checkpoints" / "last.ckpt"
    wait(ckpt.exists, "the first checkpoint")
    job = wait(lambda: [j[0] for j in squeue() if j[1] == "RUNNING"], "the running job")[0]
    # what SLURM sends signal_delay_s before the time limit (submitit asks for USR2)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait(lambda: any(j[0] == job and j[1] == "PENDING" for j in squeue()), "the requeued job")
    # SLURM holds a requeued job ~2 minutes before it is eligible; the test need not wait for that
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    output, _ = proc.communicate(timeout=600)

    assert proc.returncode == 0, output[-3000:]
    r = load_record(out / "0" / "result.json")
    assert r.status == "ok" and r.iterations == 2500
    assert r.attempts == 2 and 0 < r.resumed_from_iteration < 2500
    with open(out / "0" / "csv" / "metrics.csv") as f:
        import csv
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("loss/d")]
    assert steps == list(range(2500))


def test_a_two_task_job_trains_as_two_ddp_ranks_with_one_record(tmp_path):
    """hydra/launcher=slurm_ddp: one task per device, Lightning's SLURM environment makes each a rank
    (two CPU tasks with gloo here, one GPU each on a cluster)."""
    out = tmp_path / "sweep"
    proc = sweep("hydra/launcher=slurm_ddp", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
                 "hydra.launcher.mem_gb=1", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=60",
                 "metrics.every=30", "seed=0", f"hydra.sweep.dir={out}")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    records = load_records(out)
    assert len(records) == 1 and records[0].status == "ok" and records[0].iterations == 60, records
    log = "\n".join(p.read_text() for p in out.rglob("*_log.err")) + "\n".join(p.read_text() for p in out.rglob("*_log.out"))
    assert "MEMBER: 2/2" in log, log[-3000:]  # rank 1 joined the process group from the second task
