"""One training run from a validated config: train() runs the steps of an Attempt in the run folder, by the rules of
validation, run_folder (resuming, wall time, full disk), evaluators, run_loggers and trainer (Lightning's)."""
from __future__ import annotations

import errno
import logging
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from gan_ablate.callbacks.checkpoint import (LAST, CheckpointOnSignal, IterationCheckpoint, KeepLogsInStep,
                                             UnusableCheckpoint, has_checkpoint, kept_csv_rows, read_checkpoint,
                                             resumable_checkpoint)
from gan_ablate.callbacks.failure_watch import FailureWatchCallback
from gan_ablate.config import ConfigError, TrainConfig
from gan_ablate.data import build_datamodule
from gan_ablate.evaluators import build_evaluation, build_selection
from gan_ablate.module import GANModule
from gan_ablate.record import RunRecord, run_name
from gan_ablate.revisions import loss_revision, trick_revisions, uses_mode_labels
from gan_ablate.run_folder import (AttemptClock, config_fingerprint, previous_attempt, restore_final_state,
                                   stop_on_full_disk)
from gan_ablate.run_loggers import build_loggers, finish_wandb, put_back_rows, summarise_in_wandb
from gan_ablate.trainer import describe_devices, lightning_trainer, skip_gpu_probes
from gan_ablate.validation import check_config

log = logging.getLogger("gan_ablate")


@dataclass
class SweepInfo:
    """Where a run sits in a sweep; None fields for a single run."""
    group: Optional[str] = None      # the sweep folder: W&B group and the sweep's id
    job_num: Optional[int] = None
    design: Optional[str] = None     # grid (plain -m) or an ablation design
    cell: Optional[str] = None
    reference: Optional[str] = None  # the cell the others are compared with
    overrides: list = field(default_factory=list)

    def fields(self) -> dict:
        """The fields result.json carries (a single run has none of them)."""
        return {} if self.group is None else {
            "sweep": self.group, "job_num": self.job_num, "design": self.design, "cell": self.cell,
            "reference": self.reference, "overrides": self.overrides}


def train(cfg: DictConfig, run_dir: Path, sweep: SweepInfo | None = None,
          callbacks: Optional[list[pl.Callback]] = None, accepted: Optional[Callable[[], None]] = None) -> RunRecord:
    """Train one run and write its result.json. Config errors raise ConfigError before anything
    is written; failures during training are recorded (status failed) and re-raised.

    Started again in the same folder, a run resumes from checkpoints/last.ckpt (and a finished
    one returns its record without training again) unless checkpoint.resume=false. A checkpoint
    that cannot resume it is refused (UnusableCheckpoint) with only the record changed, to failed.
    `accepted` is called once the start is accepted, before the run writes anything else."""
    settings = check_config(cfg)
    skip_gpu_probes()
    run = Attempt(settings, OmegaConf.to_container(cfg, resolve=True), Path(run_dir), sweep or SweepInfo())
    if (run.previous or {}).get("status") in ("ok", "diverged"):
        log.info("%s: already finished in %s (status %s)", run.name, run.run_dir, run.previous["status"])
        return RunRecord(run.run_dir, **run.previous)
    record = run.start_record()
    try:
        run.prepare(accepted)
        run.fit_or_restore(run.trainer(callbacks or []))
        if not run.main_rank:
            return record
        run.finish_record()
    except ConfigError:
        if not run.previous and run.main_rank:
            record.path.unlink(missing_ok=True)  # refused, not run: the caller reports it
        raise
    except BaseException as e:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            stop_on_full_disk(record, e, run.clock.times())
        record.update(status="failed", error=f"{type(e).__name__}: {e}", **run.clock.times())
        if run.main_rank:
            (run.run_dir / "traceback.txt").write_text(traceback.format_exc())
        raise
    finally:
        finish_wandb(run.loggers)
    if run.on_signal.received is not None:
        run.on_signal.hand_back()  # requeue and exit
    return record


class Attempt:
    """One start of a run in its folder; train() runs its steps in order, each keeping what the next needs. Under
    DDP every rank makes one; rank 0 alone writes the record and logs."""

    def __init__(self, settings: TrainConfig, resolved: dict, run_dir: Path, sweep: SweepInfo):
        self.settings, self.resolved, self.run_dir, self.sweep = settings, resolved, run_dir, sweep
        self.main_rank = rank_zero_only.rank == 0
        self.tricks = list(settings.trick)
        self.name = run_name(self.tricks, settings.seed)
        self.last_ckpt = run_dir / "checkpoints" / LAST
        self.previous = previous_attempt(run_dir, resolved) if settings.checkpoint.resume else None
        self.resume = settings.checkpoint.resume and has_checkpoint(self.last_ckpt.parent)
        self.fingerprint = config_fingerprint(resolved)
        self.loggers: list = []

    def start_record(self) -> RunRecord:
        """The attempt's record, in memory until the start is accepted, and the checkpoint it resumes from: one that
        cannot resume this run is refused, with the record failed."""
        settings, run_dir, name, tricks, sweep = self.settings, self.run_dir, self.name, self.tricks, self.sweep
        resolved, previous = self.resolved, self.previous
        record = RunRecord(run_dir, name=name, tricks=tricks, seed=settings.seed, data=settings.data.name,
                           loss=settings.loss.name, loss_revision=loss_revision(settings.loss.name),
                           uses_mode_labels=uses_mode_labels(tricks, settings.data.name),
                           trick_revisions=trick_revisions(tricks), **sweep.fields(),
                           config=resolved, status="running", metrics={}, history=[],
                           attempts=(previous or {}).get("attempts", 0) + 1)
        record.writable = self.main_rank
        try:
            self.resume_from, self.checkpoint = (resumable_checkpoint(self.last_ckpt.parent, self.fingerprint)
                                                 if self.resume else (None, {}))
        except UnusableCheckpoint as e:
            record.update(status="failed", error=f"{type(e).__name__}: {e}")  # never left `running`
            raise
        if self.resume:
            record.data["resumed_from_iteration"] = self.checkpoint["gan_ablate"]["iteration"]
        self.clock = AttemptClock(record, (previous or {}).get("attempt_wall_times_s", []))
        record.data.update(self.clock.times())
        self.record = record
        return record

    def prepare(self, accepted: Optional[Callable[[], None]]) -> None:
        """The data and the nets; then, the start accepted and the record written, the evaluation and the loggers."""
        settings, run_dir, record = self.settings, self.run_dir, self.record
        # the data and the nets first: bad input found there (a missing data.root, unreadable images, a
        # loss that refuses the critic's normalisation) refuses the start before it writes anything
        self.dm = build_datamodule(settings.data, settings.trainer.max_steps, settings.seed).prepare()
        pl.seed_everything(settings.seed, workers=True, verbose=False)
        self.module = GANModule(settings, self.dm.sample_shape, self.dm.n_classes)
        if accepted:
            accepted()
        record.write()
        if self.resume and self.resume_from != self.last_ckpt and self.main_rank:
            # torn or missing: gone before the next save would keep it as the previous checkpoint in place of
            # the one this run resumes from
            self.last_ckpt.unlink(missing_ok=True)
        self.evaluation = evaluation = build_evaluation(settings, self.dm, run_dir, scoring=self.main_rank)
        self.selection = build_selection(settings, self.dm, evaluation)
        self.watch = FailureWatchCallback.from_config(settings.monitor)
        record.update(extractor=evaluation.evaluator.extractor, extractor_id=evaluation.evaluator.extractor_id,
                      extractor_info=getattr(evaluation.evaluator, "info", None),
                      fid_reference=getattr(evaluation.evaluator, "reference", None))
        kept_rows = kept_csv_rows(run_dir / "csv" / "metrics.csv", self.checkpoint) if self.resume else []
        self.loggers = build_loggers(settings, run_dir, self.name, self.sweep, self.resolved) if self.main_rank else []
        put_back_rows(self.loggers, kept_rows)

    def trainer(self, callbacks: list[pl.Callback]) -> pl.Trainer:
        """Lightning's Trainer with the run's callbacks (evaluation, checkpoints, clock), then `callbacks`."""
        saver = IterationCheckpoint(self.last_ckpt.parent, self.settings.checkpoint.every, self.fingerprint)
        self.on_signal = CheckpointOnSignal(saver)
        selection = [self.selection] if self.selection else []
        ours = [self.watch, self.evaluation, *selection, KeepLogsInStep(), self.on_signal, saver, self.clock]
        return lightning_trainer(self.settings.trainer, self.run_dir, self.main_rank, self.loggers, ours + callbacks)

    def fit_or_restore(self, trainer: pl.Trainer) -> None:
        """Trains the run from its start or its checkpoint; one whose checkpoint is its last needs only restoring."""
        t, resume, checkpoint = self.settings.trainer, self.resume, self.checkpoint
        module, evaluation, selection, watch = self.module, self.evaluation, self.selection, self.watch
        log.info("%s: %s %d iterations on %s", self.name,
                 f"resuming at iteration {checkpoint['gan_ablate']['iteration']} of" if resume else "training",
                 t.max_steps, describe_devices(trainer))
        if resume and checkpoint["gan_ablate"]["iteration"] >= t.max_steps:
            # stopped after its final checkpoint but before its record: nothing is left to train
            restore_final_state(checkpoint, module, evaluation, selection, watch)
        else:
            trainer.fit(module, datamodule=self.dm, ckpt_path=str(self.resume_from) if resume else None, weights_only=True)
            if t.strategy == "ddp_spawn":  # trained in child processes
                restore_final_state(read_checkpoint(self.last_ckpt), module, evaluation, selection, watch)

    def finish_record(self) -> None:
        """How the attempt ended: stopped by a signal (with a checkpoint to resume from), or the run done."""
        record, module, clock, settings = self.record, self.module, self.clock, self.settings
        evaluation, selection = self.evaluation, self.selection
        if self.on_signal.received is not None:
            record.update(interrupted_at_iteration=module.iteration, **clock.times(),
                          note=f"stopped by {signal.Signals(self.on_signal.received).name} with a checkpoint; "
                               "starting the run again resumes it")
        else:
            divergence = self.watch.divergence()  # diverged_at_iteration and reason, if it did
            record.update(status="diverged" if divergence else "ok", metrics=evaluation.final,
                          history=evaluation.history, iterations=module.iteration, primary=settings.metrics.primary,
                          failure_flags=self.watch.failure_flags(), **divergence,
                          **({"eval_repeats": evaluation.repeated} if evaluation.repeated else {}),
                          **({"final": evaluation.final, **selection.record()} if selection else {}),
                          **clock.times())
            summarise_in_wandb(self.loggers, record.data)
            log.info("%s: %s", self.name, evaluation.final)

