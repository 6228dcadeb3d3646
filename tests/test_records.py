"""result.json has a declared schema (record.RunRecord): every key a writer puts in a record is a declared field and
every declared field is written by some writer; each record carries its schema_version; a record of a newer layout is
refused with one line naming its file, and a record written before versions existed is read as version 1."""
from __future__ import annotations

import json
import os
import signal
from dataclasses import fields
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
from conftest import TINY, make_cfg, run_train_py
from test_divergence import inf_d_loss_from

from gan_ablate.record import (KEY, RESULT_FILE, SCHEMA_VERSION, NewerRecord, RunRecord, cell_label, load_record,
                               load_records)
from gan_ablate.report_cli import main as report_main
from gan_ablate.run import SweepInfo, train
from gan_ablate.sweep.wandb_source import record_of

DECLARED = {KEY[f.name] for f in fields(RunRecord)}
# a record as train() wrote them before records had a schema_version (keys and values of a real ok run)
PRE_SCHEMA = {"name": "ema-s0", "tricks": ["ema"], "seed": 0, "data": "ring8", "loss": "standard", "loss_revision": 1,
              "uses_mode_labels": False, "trick_revisions": {"ema": 1}, "config": {"seed": 0}, "status": "ok",
              "metrics": {"raw": {"modes": 8}}, "history": [{"iteration": 10, "raw": {"modes": 8}}], "attempts": 1,
              "attempt_wall_times_s": [1.5], "wall_time_s": 1.5, "extractor": "mode_metrics",
              "extractor_id": "mode_metrics", "extractor_info": None, "fid_reference": None, "iterations": 10,
              "primary": "raw", "failure_flags": []}


class RaiseAt(pl.Callback):
    """Raises at `iteration`: a run that fails while training."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.iteration:
            raise RuntimeError("broke on purpose")


class TerminateAt(pl.Callback):
    """Sends this process SIGTERM at `iteration`, as SLURM's preemption would: the run checkpoints and stops."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.iteration:
            os.kill(os.getpid(), signal.SIGTERM)


def written_keys(path) -> list[str]:
    return list(json.loads(path.read_text()))


@pytest.mark.slow
def test_every_key_the_writers_write_is_declared_and_every_declared_field_is_written(tmp_path, monkeypatch):
    run = ["trainer.max_steps=20", "metrics.every=10", "checkpoint.every=5"]
    sweep = SweepInfo(group=str(tmp_path), job_num=0, design="add_one", cell="baseline", reference="baseline",
                      overrides=["seed=0"])
    train(make_cfg(*run, "metrics.eval_repeats=2", "metrics.select_best=true"), tmp_path / "ok", sweep)
    with pytest.raises(SystemExit):
        train(make_cfg(*run), tmp_path / "interrupted", callbacks=[TerminateAt(7)])
    interrupted = written_keys(tmp_path / "interrupted" / RESULT_FILE)
    train(make_cfg(*run), tmp_path / "interrupted")  # resumed
    with pytest.raises(RuntimeError, match="broke on purpose"):
        train(make_cfg(*run), tmp_path / "failed", callbacks=[RaiseAt(3)])
    with monkeypatch.context() as patch:
        inf_d_loss_from(3, patch)
        train(make_cfg(*run), tmp_path / "diverged")
    skipped = run_train_py("-m", *TINY, "trick=[label_smoothing,one_sided_label_smoothing]",
                           f"hydra.sweep.dir={tmp_path / 'skipped'}", timeout=120)
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    slurm = RunRecord.failed_job(tmp_path / "slurm", ["trick=[ema]", "seed=1", "ablation.cell=+ema"],
                                 "SLURM job 7_0 ended CANCELLED", slurm_job_id="7_0")
    from_wandb = record_of(SimpleNamespace(name="ema-s0", id="abc", group="g", state="finished", config={},
                                           summary={"status": "ok", "final/raw/fid": 3.0}))

    records = {path.parent.name: written_keys(path) for path in tmp_path.rglob(RESULT_FILE)}
    records |= {"interrupted (before its resume)": interrupted, "wandb": list(from_wandb.data)}
    statuses = {json.loads(p.read_text())["status"] for p in tmp_path.rglob(RESULT_FILE)}
    assert statuses == {"ok", "failed", "diverged", "skipped"} and slurm.status == "failed"
    for name, keys in records.items():
        assert keys[0] == "schema_version", name
        assert set(keys) <= DECLARED, (name, set(keys) - DECLARED)
    never_written = DECLARED - {key for keys in records.values() for key in keys}
    assert not never_written, f"declared but no writer writes them: {never_written}"


def test_a_record_is_written_with_its_schema_version_and_read_back_typed(tmp_path):
    RunRecord(tmp_path, name="baseline-s0", tricks=[], seed=0, data="ring8", status="running").update(status="ok")
    written = json.loads((tmp_path / RESULT_FILE).read_text())
    assert written == {"schema_version": SCHEMA_VERSION, "name": "baseline-s0", "tricks": [], "seed": 0,
                       "data": "ring8", "status": "ok"}
    record = load_record(tmp_path / RESULT_FILE)
    assert (record.dataset, record.status, record.run_dir, record.metrics) == ("ring8", "ok", tmp_path, {})


def test_a_record_of_a_newer_schema_is_refused_with_one_line_naming_its_file(tmp_path):
    path = tmp_path / "0" / RESULT_FILE
    path.parent.mkdir()
    path.write_text(json.dumps({**PRE_SCHEMA, "schema_version": SCHEMA_VERSION + 1, "field_of_the_future": 1}))
    with pytest.raises(NewerRecord, match=f"^{path}: schema_version {SCHEMA_VERSION + 1} is newer"):
        load_records(tmp_path)
    with pytest.raises(SystemExit) as refused:
        report_main([str(tmp_path), "--no-plots"])
    message = str(refused.value.code)
    assert str(path) in message and "newer" in message and "\n" not in message


def test_a_record_written_before_schema_versions_is_read_as_version_1_and_rewritten_unchanged(tmp_path):
    (tmp_path / RESULT_FILE).write_text(json.dumps(PRE_SCHEMA, indent=2))
    record = load_record(tmp_path / RESULT_FILE)
    assert record.schema_version == 1
    assert (record.tricks, record.dataset, record.metrics, record.extractor_info) == (["ema"], "ring8",
                                                                                     {"raw": {"modes": 8}}, None)
    record.write()  # as the SLURM launcher rewrites a record it finds: every key and value kept, in order
    assert json.loads((tmp_path / RESULT_FILE).read_text()) == {"schema_version": 1, **PRE_SCHEMA}
    assert written_keys(tmp_path / RESULT_FILE) == ["schema_version", *PRE_SCHEMA]


def test_a_writer_cannot_write_an_undeclared_key(tmp_path):
    with pytest.raises(TypeError, match="no field 'stauts'"):
        RunRecord(tmp_path, stauts="ok")
    record = RunRecord(tmp_path, status="running")
    with pytest.raises(TypeError, match="no field 'wall_time'"):
        record.update(wall_time=1.0)
    with pytest.raises(TypeError, match="no field 'resumed_from'"):
        record.data["resumed_from"] = 3
    record.data["resumed_from_iteration"] = 3  # the dict view run.py builds the record through writes the field
    assert record.resumed_from_iteration == 3 and "resumed_from_iteration" in record.data
    assert not (tmp_path / RESULT_FILE).exists()  # nothing was written by the refused writes


def test_one_rule_names_a_cell():
    assert cell_label([]) == "baseline" and cell_label(["ema", "ttur"]) == "ema+ttur"
    assert RunRecord(tricks=["ema"]).cell_name == "ema" and RunRecord(tricks=["ema"], cell="+ema").cell_name == "+ema"
