"""Refused starts (issue 12): a checkpoint that cannot resume the run (unreadable, of another format
version, written under another config) and a folder holding another run are refused before training,
on one line, exit 2, and leave the folder as it was (but for the record of a run whose checkpoint is
unusable, which becomes failed with the reason)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import TINY, run_train_py
from gan_ablate.callbacks.checkpoint import PREVIOUS, STAMP
from gan_ablate.run_folder import config_fingerprint

RUN = [*TINY, "trainer.max_steps=20", "metrics.every=0", "checkpoint.every=10"]
CKPT = Path("checkpoints") / "last.ckpt"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished")
    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def snapshot(folder: Path, but: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file below `folder` (.hydra/ and the log file included) and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in but}


def unfinished_copy(finished: Path, run_dir: Path) -> Path:
    """The finished run as if killed before its record said so: starting it again resumes last.ckpt."""
    shutil.copytree(finished, run_dir)
    record = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").write_text(json.dumps({**record, "status": "running"}))
    return run_dir


def assert_refused(result, run_dir: Path, before: dict[str, str], problem: str) -> None:
    """Exit 2, one line naming the file, the problem and both ways out; record failed with that reason;
    nothing else in the folder changed."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(run_dir / CKPT) in lines[0] and problem in lines[0]
    assert "checkpoint.resume=false" in lines[0] and "hydra.run.dir=" in lines[0]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "failed" and problem in record["error"] and str(run_dir / CKPT) in record["error"]
    assert snapshot(run_dir, but=("result.json",)) == before  # no traceback.txt, csv, .hydra or log line


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["random_bytes", "truncated_to_half", "empty"])
def test_unreadable_checkpoints_are_refused_on_one_line_and_the_record_says_failed(tmp_path, finished, damage):
    run_dir = unfinished_copy(finished, tmp_path / damage)
    for ckpt in (run_dir / CKPT, run_dir / CKPT.with_name(PREVIOUS)):  # with one readable, the run resumes from it
        written = ckpt.read_bytes()
        ckpt.write_bytes({"random_bytes": os.urandom(len(written)), "truncated_to_half": written[:len(written) // 2],
                          "empty": b""}[damage])
    before = snapshot(run_dir, but=("result.json",))
    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert_refused(result, run_dir, before, "cannot be read")
    assert f"and the previous checkpoint {PREVIOUS} cannot be read" in result.stderr


@pytest.mark.slow
# more iterations than the checkpoint's, so that a resumed run would train on from it
@pytest.mark.parametrize("other", [["seed=7", "optim.d.lr=1e-3", "trainer.max_steps=40"], ["model.g_hidden=32"]],
                         ids=["same_shapes", "other_shapes"])
def test_a_checkpoint_of_another_config_is_refused_even_without_a_record(tmp_path, finished, other):
    run_dir = tmp_path / "fresh"
    (run_dir / CKPT).parent.mkdir(parents=True)
    shutil.copy(finished / CKPT, run_dir / CKPT)
    before = snapshot(run_dir)
    result = run_train_py(*RUN, *other, f"hydra.run.dir={run_dir}")
    assert_refused(result, run_dir, before, "written by a run with another config")
    record = json.loads((run_dir / "result.json").read_text())
    assert record["config"]["seed"] == (7 if "seed=7" in other else 0)  # this start's record, not the other run's


@pytest.mark.slow
@pytest.mark.parametrize("stamp", [{"format": 0}, None], ids=["other_version", "no_version"])
def test_a_checkpoint_of_another_format_version_is_refused(tmp_path, finished, stamp):
    run_dir = unfinished_copy(finished, tmp_path / "run")
    checkpoint = torch.load(run_dir / CKPT, weights_only=True)
    if stamp is None:  # as written before checkpoints were stamped
        checkpoint.pop(STAMP, None)
    else:
        checkpoint[STAMP] = {**checkpoint.get(STAMP, {}), **stamp}
    torch.save(checkpoint, run_dir / CKPT)
    before = snapshot(run_dir, but=("result.json",))
    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}")
    assert_refused(result, run_dir, before, "has no format version" if stamp is None else "checkpoint format 0")


@pytest.mark.slow
def test_a_refused_start_leaves_the_folder_of_the_run_it_refused_byte_identical(tmp_path, finished):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log"} <= set(before)
    result = run_train_py(*RUN, "trainer.max_steps=21", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "trainer.max_steps differs" in result.stderr
    assert snapshot(run_dir) == before

    # the same in a sweep, whose job refuses that folder and goes on
    sweep = run_train_py("-m", *RUN, "trainer.max_steps=21", "seed=0", f"hydra.sweep.dir={tmp_path}",
                         "hydra.sweep.subdir=run")
    assert sweep.returncode == 1 and "job 0 refused" in sweep.stderr, sweep.stderr
    assert snapshot(run_dir) == before


def test_the_fingerprint_ignores_what_may_change_between_attempts_only():
    config = {"seed": 0, "optim": {"d": {"lr": 2e-4}}, "logger": {"wandb": True}, "checkpoint": {"every": 500},
              "trainer": {"max_steps": 20, "enable_progress_bar": True}}
    same_run = {**config, "logger": {"wandb": False}, "checkpoint": {"every": 10},
                "trainer": {"max_steps": 20, "enable_progress_bar": False}}
    assert config_fingerprint(same_run) == config_fingerprint(config)
    assert config_fingerprint({**config, "optim": {"d": {"lr": 1e-3}}}) != config_fingerprint(config)
    assert config_fingerprint({**config, "seed": 7}) != config_fingerprint(config)
