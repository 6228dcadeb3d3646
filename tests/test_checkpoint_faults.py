"""Faults while a run writes its files (issue 17). A checkpoint is written whole and the previous one is kept, so a
torn or missing last.ckpt gives way to the previous checkpoint and the run still ends exactly like one never
stopped. A full disk while writing a checkpoint, the CSV or the record stops the run on one line naming the file and
the space left, leaves the previous checkpoint and the record whole, and the run started again once there is space
ends like one never stopped."""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

import gan_ablate.run_folder
from conftest import ROOT, TINY, make_cfg, run_train_py
from gan_ablate.callbacks.checkpoint import LAST, PREVIOUS, AtomicCheckpointIO, read_checkpoint
from gan_ablate.run import train
from gan_ablate.run_folder import DiskFull
from test_resume import (RUN, assert_same_run, csv_steps, last_iteration, start, uninterrupted,  # noqa: F401
                         wait_for_checkpoint)

SHORT = ["trainer.max_steps=150", "checkpoint.every=50", "metrics.every=75", "trick=[experience_replay]",
         "trainer.log_every_n_steps=1"]


@pytest.mark.slow
def test_a_torn_last_checkpoint_gives_way_to_the_previous_one_and_the_run_ends_as_if_never_stopped(
        tmp_path, uninterrupted):
    run_dir = tmp_path / "torn"
    proc = start(run_dir)
    wait_for_checkpoint(proc, run_dir, 350)
    proc.send_signal(signal.SIGTERM)  # stops the run with a checkpoint: an unfinished run, its record `running`
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    last = run_dir / "checkpoints" / LAST
    kept = read_checkpoint(last.with_name(PREVIOUS))["gan_ablate"]["iteration"]
    assert 0 < kept < last_iteration(run_dir)
    last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])

    result = run_train_py(*RUN, f"hydra.run.dir={run_dir}", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    warnings = [line for line in out.splitlines() if "previous checkpoint" in line]
    assert len(warnings) == 1 and f"{last} cannot be read" in warnings[0], out[-3000:]
    assert f"resuming at iteration {kept} of" in out
    assert_same_run(run_dir, uninterrupted)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return train(make_cfg(*SHORT), tmp_path_factory.mktemp("reference")).data


def assert_ends_like(run_dir: Path, reference: dict, resumed_from: int) -> None:
    record = train(make_cfg(*SHORT), run_dir).data
    assert (record["status"], record["iterations"], record["resumed_from_iteration"]) == ("ok", 150, resumed_from)
    assert record["metrics"] == reference["metrics"] and record["history"] == reference["history"]
    assert csv_steps(run_dir, "loss/d") == list(range(150))  # every row once
    # the damaged last.ckpt was not kept as the previous checkpoint: the one resumed from was
    assert read_checkpoint(run_dir / "checkpoints" / PREVIOUS)["gan_ablate"]["iteration"] == resumed_from


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_the_previous_checkpoint_resumes_a_run_whose_last_one_is_torn_or_missing(tmp_path, reference, damage):
    train(make_cfg(*SHORT), tmp_path)
    record = json.loads((tmp_path / "result.json").read_text())
    (tmp_path / "result.json").write_text(json.dumps({**record, "status": "running"}))  # as if killed before it
    last = tmp_path / "checkpoints" / LAST
    if damage == "missing":  # killed between the two renames of a checkpoint write
        last.unlink()
    else:
        last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])
    assert_ends_like(tmp_path, reference, resumed_from=100)


def test_a_checkpoint_is_on_the_disk_beside_its_place_before_it_takes_it_and_the_one_it_replaces_is_kept(
        tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or
                        fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(a), str(b))) or replace(a, b))
    last = tmp_path / LAST
    AtomicCheckpointIO().save_checkpoint({"iteration": 1}, last)
    events.clear()
    AtomicCheckpointIO().save_checkpoint({"iteration": 2}, last)
    (_, written), keep, take, (_, folder) = events
    assert Path(written).parent == tmp_path and keep == ("replace", str(last), str(tmp_path / PREVIOUS))
    assert take == ("replace", written, str(last)) and folder == str(tmp_path)  # the renames made durable too
    assert read_checkpoint(last) == {"iteration": 2} and read_checkpoint(tmp_path / PREVIOUS) == {"iteration": 1}
    assert {p.name for p in tmp_path.iterdir()} == {LAST, PREVIOUS}


class NoSpace:
    """A file on a full disk: opened (and emptied, for "w") as usual, but nothing can be written into it."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as Python's write raises it: naming no file

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


class FullDisk(pl.Callback):
    """From `iteration` on, files below `folder` whose name holds `name` are on a full disk (as train() starts the
    next time, the space has been freed)."""

    def __init__(self, monkeypatch, folder: Path, name: str, iteration: int):
        self.folder, self.name, self.iteration, self.full = folder, name, iteration, False
        real_open = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            opened = real_open(file, mode, *args, **kwargs)
            if self.full and set(mode) & set("wax+") and isinstance(file, (str, os.PathLike)):
                path = Path(file).resolve()
                if self.name in path.name and self.folder.resolve() in path.parents:
                    return NoSpace(opened)
            return opened

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)  # pathlib's

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.full = self.full or pl_module.iteration == self.iteration


@pytest.mark.parametrize("where, written", [("checkpoints", LAST), ("csv", "metrics.csv"), ("", "result.json")],
                         ids=["checkpoint", "csv", "record"])
def test_a_full_disk_stops_the_run_on_one_line_keeping_checkpoint_and_record_and_a_restart_resumes(
        tmp_path, monkeypatch, reference, where, written):
    monkeypatch.setattr(gan_ablate.run_folder, "HEARTBEAT_S", 0.0)  # the record is written every iteration
    disk = FullDisk(monkeypatch, tmp_path / where, written, iteration=110)  # after 2 checkpoints
    with pytest.raises(DiskFull) as stopped:
        train(make_cfg(*SHORT), tmp_path, callbacks=[disk])
    line = str(stopped.value)
    assert "\n" not in line and f"writing {tmp_path / where / written} (" in line and " MiB free there)" in line
    record = json.loads((tmp_path / "result.json").read_text())
    if written == "result.json":  # no room for it to say failed: it stays as it was, whole
        assert record["status"] == "running"
    else:
        assert record["status"] == "failed" and record["error"] == line
    assert read_checkpoint(tmp_path / "checkpoints" / LAST)["gan_ablate"]["iteration"] == 100  # the last good
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {LAST, PREVIOUS}  # no temporary file left
    assert not (tmp_path / "traceback.txt").exists()

    monkeypatch.undo()  # space freed
    assert_ends_like(tmp_path, reference, resumed_from=100)


@pytest.mark.slow
def test_train_py_stopped_by_a_full_disk_says_so_on_one_line_and_exits_1(tmp_path):
    """train.py, its checkpoint writes failing with ENOSPC (a hook that wraps `open` before the run starts)."""
    hook = f"""
import builtins, io, runpy, sys
sys.path[:0] = [{str(ROOT / "tests")!r}]
from test_checkpoint_faults import NoSpace
real_open = builtins.open
def open_(file, mode="r", *args, **kwargs):
    opened = real_open(file, mode, *args, **kwargs)
    return NoSpace(opened) if "w" in mode and ".last.ckpt." in str(file) else opened
builtins.open = io.open = open_
sys.argv[0] = {str(ROOT / "train.py")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", hook, *TINY, "trainer.max_steps=20", "checkpoint.every=10",
                             "metrics.every=0", f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gan-ablate: no space left on the disk writing "
                                                   f"{tmp_path / 'checkpoints' / LAST} ("), result.stderr
    assert json.loads((tmp_path / "result.json").read_text())["error"] == lines[0].removeprefix("gan-ablate: ")
