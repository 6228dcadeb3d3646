"""A NaN/Inf loss or gradient norm stops the run within monitor.check_every iterations, seen by a check that
stays on the device (tests/test_host_sync.py counts its host reads), and the record says where and why."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from conftest import ROOT, TINY, make_cfg, make_module, run_train_py
from gan_ablate.callbacks.checkpoint import read_checkpoint
from gan_ablate.callbacks.failure_watch import FailureWatchCallback, NonFiniteCheck
from gan_ablate.config import validate
from gan_ablate.data import build_datamodule
from gan_ablate.module import GANModule
from gan_ablate.run import train


def finite_values(loss_d: float = 1.0) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(loss_d if name == "loss/d" else 1.0) for name in NonFiniteCheck.NAMES}


def test_the_check_keeps_the_first_non_finite_iteration_until_the_host_reads_it():
    check = NonFiniteCheck(every=4)
    stopped_after = None
    for it in range(12):
        check.update(it, finite_values(math.inf if it >= 3 else 1.0))  # Inf from iteration 3 on
        if check.due(it) and check.read() is not None:
            stopped_after = it
            break
    assert stopped_after == 3 and check.found == (3, "loss/d not finite")
    check = NonFiniteCheck(every=5)
    for it in range(10):
        check.update(it, {**finite_values(), "grad_norm/g": torch.tensor(math.nan if it >= 3 else 1.0)})
    assert check.found is None  # nothing is known before a read...
    assert check.read() == (3, "grad_norm/g not finite")  # ...and a read sees the first one, not the latest


def test_the_check_survives_a_checkpoint_as_plain_ints(tmp_path):
    watch = FailureWatchCallback.from_config(validate(make_cfg("monitor.check_every=10")).monitor)
    for it in range(5):
        watch.check.update(it, finite_values(math.nan if it >= 2 else 1.0))
    # before any read: the device state itself is saved
    torch.save({"callbacks": {watch.state_key: watch.state_dict()}}, tmp_path / "c.ckpt")
    state = read_checkpoint(tmp_path / "c.ckpt")["callbacks"][watch.state_key]  # weights_only=True
    assert all(type(v) is int for v in state["non_finite"]["first_bad"])
    resumed = FailureWatchCallback.from_config(validate(make_cfg("monitor.check_every=10")).monitor)
    resumed.load_state_dict(state)
    resumed.check.update(7, finite_values(math.nan))  # later NaNs do not move the first one
    assert resumed.check.read() == (2, "loss/d not finite")
    assert resumed.divergence() == {"diverged_at_iteration": 2, "reason": "loss/d not finite"}


def inf_d_loss_from(iteration: int, monkeypatch) -> None:
    """D's loss, as training_step sees it, turns Inf at `iteration` (the nets stay as they are)."""
    step = GANModule.discriminator_step

    def patched(self, opt, ctx, *args):
        loss = step(self, opt, ctx, *args)
        return loss * math.inf if ctx.iteration >= iteration else loss
    monkeypatch.setattr(GANModule, "discriminator_step", patched)


@pytest.mark.parametrize("check_every", [1, 5])
def test_a_run_whose_loss_turns_inf_stops_within_check_every_iterations(tmp_path, monkeypatch, check_every):
    inf_d_loss_from(3, monkeypatch)
    # logged only at iteration 0: the failure watch alone would let it run all 200 iterations
    cfg = make_cfg(f"monitor.check_every={check_every}", "trainer.log_every_n_steps=1000", "trainer.max_steps=200",
                   "metrics.every=0")
    record = train(cfg, tmp_path / str(check_every)).data
    assert record["status"] == "diverged"
    assert (record["diverged_at_iteration"], record["reason"]) == (3, "loss/d not finite")
    # read after iterations 4 (check_every 1) or 5 (5): the run stops there
    assert record["iterations"] == (4 if check_every == 1 else 5)
    assert record["failure_flags"] == [{"iteration": 3, "flag": "non_finite", "detail": "loss/d not finite"}]


@pytest.mark.parametrize("watched", [True, False])
def test_the_callback_is_what_stops_a_run_and_its_state_resumes_through_lightnings_checkpoint(tmp_path, monkeypatch,
                                                                                              watched):
    """The module alone trains on through an Inf; FailureWatchCallback in the Trainer stops it. Its state goes
    into Lightning's checkpoint under its state_key and comes back on a fit resumed from it."""
    inf_d_loss_from(3, monkeypatch)
    settings = validate(make_cfg("monitor.check_every=1", "trainer.max_steps=12", "trainer.log_every_n_steps=1000"))

    def fit(ckpt_path=None):
        module = GANModule(settings, (2,))
        watch = FailureWatchCallback.from_config(settings.monitor)
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[watch] if watched else [],
                             default_root_dir=str(tmp_path))
        trainer.fit(module, datamodule=build_datamodule(settings.data, settings.trainer.max_steps).prepare(),
                    ckpt_path=ckpt_path, weights_only=True)
        return module, watch, trainer

    module, watch, trainer = fit()
    assert module.iteration == (4 if watched else 12)
    if not watched:
        return
    assert watch.divergence() == {"diverged_at_iteration": 3, "reason": "loss/d not finite"}
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    _, resumed, _ = fit(str(tmp_path / "c.ckpt"))
    assert resumed.failure_flags() == watch.failure_flags() == [
        {"iteration": 3, "flag": "non_finite", "detail": "loss/d not finite"}]


def test_with_the_check_off_the_failure_watch_still_stops_on_a_logged_inf(tmp_path, monkeypatch):
    inf_d_loss_from(3, monkeypatch)
    cfg = make_cfg("monitor.check_every=0", "trainer.log_every_n_steps=20", "trainer.max_steps=200",
                   "metrics.every=0")
    record = train(cfg, tmp_path).data
    assert (record["status"], record["iterations"], record["diverged_at_iteration"]) == ("diverged", 21, 20)


@pytest.mark.slow
def test_a_sweep_of_diverging_runs_records_each_one_where_it_diverged(tmp_path):
    sweep = run_train_py("-m", *TINY, "seed=0,1", "optim.d.lr=1000", "optim.g.lr=1000", "trainer.max_steps=300",
                         f"hydra.sweep.dir={tmp_path}")
    assert sweep.returncode == 0, sweep.stderr[-3000:]  # diverged is a result, not a failed job
    for job in ("0", "1"):
        record = json.loads((tmp_path / job / "result.json").read_text())
        assert record["status"] == "diverged" and record["reason"].endswith("not finite")
        assert record["diverged_at_iteration"] < record["iterations"] <= record["diverged_at_iteration"] + 10
    report = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path)],
                            capture_output=True, text=True, check=True).stdout
    for job in ("0", "1"):
        record = json.loads((tmp_path / job / "result.json").read_text())
        assert (f"| baseline | {job} | diverged | {record['reason']} (first at iteration "
                f"{record['diverged_at_iteration']}, stopped at {record['iterations']}) | {job} |") in report
