"""Checkpoints that let a run be killed at any point and started again as if never stopped.

- IterationCheckpoint: Lightning's ModelCheckpoint keeping one `last.ckpt`, every N *iterations*
  (Lightning's step counter counts optimizer steps: n_critic + g_steps of them per iteration),
  stamped with the checkpoint format and the fingerprint of the config that wrote it.
- AtomicCheckpointIO: Lightning's CheckpointIO writing each checkpoint whole (a temporary file beside
  it, fsync, rename) and keeping the one it replaces as `last.previous.ckpt`.
- resumable_checkpoint: reads last.ckpt once (the previous one when last.ckpt is torn or missing) and
  refuses (UnusableCheckpoint) one that cannot resume this run: unreadable, of another format
  version, or written under another config.
- KeepLogsInStep: flushes the loggers into the checkpoint's moment and records how many CSV rows
  were on disk, so a resumed run drops the rows written after it and logs them again, exactly once.
- CheckpointOnSignal: SIGUSR1/SIGUSR2 (SLURM's warning before the time limit) and SIGTERM
  (preemption, scancel, kill) end the current iteration, write last.ckpt and stop training; the
  run then hands the signal to whoever was listening before (submitit requeues the job) or asks
  SLURM to requeue it itself.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import signal
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from gan_ablate.atomic import write_atomically
from gan_ablate.config import ConfigError

log = logging.getLogger("gan_ablate")
LAST = "last.ckpt"
PREVIOUS = "last.previous.ckpt"
# Raised whenever what a checkpoint holds changes meaning, so that an older checkpoint is refused rather
# than misread. Checkpoints from before the stamp carry none and are refused the same way.
CHECKPOINT_FORMAT = 1
STAMP = "gan_ablate_stamp"  # {"format": CHECKPOINT_FORMAT, "config": the fingerprint of the run's config}


class UnusableCheckpoint(ConfigError):
    """The run folder's last.ckpt cannot resume this run; the message names the file and the ways out."""

    def __init__(self, path: Path, problem: str):
        self.problem = problem
        super().__init__(f"{path} {problem}; train this run from scratch there (replacing it) with "
                         "checkpoint.resume=false, or give it another folder with hydra.run.dir=...")


class IterationCheckpoint(ModelCheckpoint):
    def __init__(self, dirpath: Path, every: int, fingerprint: str):
        super().__init__(dirpath=str(dirpath), save_last=True, save_top_k=0, enable_version_counter=False)
        self.every_iterations = every
        self.fingerprint = fingerprint

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[STAMP] = {"format": CHECKPOINT_FORMAT, "config": self.fingerprint}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_iterations and pl_module.iteration % self.every_iterations == 0:
            self.save_now(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save_now(trainer)  # the final nets, for whoever wants to sample from them later

    def save_now(self, trainer: pl.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's own save (TorchCheckpointIO) renames a file written in the system's temporary folder,
    often another disk, where the rename is a copy that a kill leaves torn; and it keeps nothing of the
    checkpoint it replaces. Here the checkpoint is written beside its place and on the disk before it
    takes it, and the one it replaces stays as `last.previous.ckpt` (not Lightning's save_top_k=2 with
    save_last="link", whose last.ckpt is a link Lightning deletes and then creates again)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        buffer = io.BytesIO()
        # in memory first (as Lightning does): torch's own file writer reports a full disk as a RuntimeError
        # without its errno, where Python's write raises OSError(ENOSPC)
        torch.save(checkpoint, buffer)
        write_atomically(Path(path), lambda tmp: Path(tmp).write_bytes(buffer.getvalue()),
                         keep_previous=Path(path).with_name(PREVIOUS))


def csv_file(trainer: pl.Trainer) -> Path | None:
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.CSVLogger):
            return Path(logger.experiment.metrics_file_path)
    return None


def count_rows(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


class KeepLogsInStep(pl.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.global_rank != 0:  # only rank 0 logs (and writes the checkpoint)
            return
        for logger in trainer.loggers:
            logger.save()
        checkpoint["gan_ablate_logs"] = {"csv_rows": count_rows(csv_file(trainer))}


def kept_csv_rows(path: Path, checkpoint: dict) -> list[dict]:
    """The CSV rows a checkpoint had on disk (the rest were logged after it and will be again)."""
    if not path.exists():
        return []
    n = checkpoint.get("gan_ablate_logs", {}).get("csv_rows", 0)
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for _, row in zip(range(n), csv.DictReader(f))]


def read_checkpoint(path: Path) -> dict:
    """Loads only tensors and plain containers (weights_only): a checkpoint cannot run code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the "pickle protocol" of some damaged files
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise UnusableCheckpoint(path, "is missing") from e
    except Exception as e:  # damaged files raise anything: UnpicklingError, OSError, EOFError, KeyError, ...
        raise UnusableCheckpoint(path, f"cannot be read ({type(e).__name__}: corrupt or truncated)") from e


def has_checkpoint(folder: Path) -> bool:
    return (folder / LAST).exists() or (folder / PREVIOUS).exists()


def resumable_checkpoint(folder: Path, fingerprint: str) -> tuple[Path, dict]:
    """The folder's newest readable checkpoint and its path, if written by this run (same checkpoint format,
    same config): last.ckpt, or, when a kill tore it (or came between the renames), the previous one."""
    last, previous = folder / LAST, folder / PREVIOUS
    try:
        path, checkpoint = last, read_checkpoint(last)
    except UnusableCheckpoint as torn:
        if not previous.exists():
            raise
        try:
            path, checkpoint = previous, read_checkpoint(previous)
        except UnusableCheckpoint as also:
            raise UnusableCheckpoint(last, f"{torn.problem} and the previous checkpoint {previous.name} "
                                           f"{also.problem}") from also
        log.warning("%s %s: resuming from the previous checkpoint, %s", last, torn.problem, previous)
    check_stamp(path, checkpoint, fingerprint)
    return path, checkpoint


def check_stamp(path: Path, checkpoint: dict, fingerprint: str) -> None:
    stamp = checkpoint.get(STAMP) if isinstance(checkpoint, dict) else None
    if not isinstance(stamp, dict):
        raise UnusableCheckpoint(path, f"has no format version (written by a gan-ablate older than checkpoint "
                                       f"format {CHECKPOINT_FORMAT}, or not by gan-ablate), so it cannot be trusted "
                                       "to resume this run")
    if stamp.get("format") != CHECKPOINT_FORMAT:
        raise UnusableCheckpoint(path, f"is of checkpoint format {stamp.get('format')!r}; this gan-ablate reads "
                                       f"format {CHECKPOINT_FORMAT} only")
    if stamp.get("config") != fingerprint:
        raise UnusableCheckpoint(path, f"was written by a run with another config (fingerprint "
                                       f"{stamp.get('config')}, this run's {fingerprint})")


class CheckpointOnSignal(pl.Callback):
    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)

    def __init__(self, checkpoint: IterationCheckpoint):
        self.checkpoint = checkpoint
        self.received: int | None = None
        # who listened before the run (submitit's handlers in a SLURM job): they get the signal back
        self.previous = {s: signal.getsignal(s) for s in self.SIGNALS}
        self._during_fit: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
            for s in self.SIGNALS:
                self._during_fit[s] = signal.signal(s, self._note)

    def _note(self, signum, frame) -> None:
        log.warning("%s received: checkpointing at the end of this iteration", signal.Signals(signum).name)
        if self.received is None or signum != signal.SIGTERM:  # SLURM preempts with SIGTERM, then USR: requeue
            self.received = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received is not None and not trainer.should_stop:
            self.checkpoint.save_now(trainer)
            log.warning("checkpoint written at iteration %d: %s", pl_module.iteration, self.checkpoint.last_model_path)
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        for s, handler in self._during_fit.items():
            signal.signal(s, handler)
        self._during_fit = {}

    def hand_back(self) -> None:
        """After the run has recorded where it stopped: requeue (SLURM) and exit."""
        signum = self.received
        previous = self.previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)  # submitit: requeues (counting max_num_timeout) and exits
        job = slurm_job_id()
        if job and signum != signal.SIGTERM:  # on SIGTERM (preemption) SLURM requeues by itself
            log.warning("requeueing SLURM job %s", job)
            subprocess.run(["scontrol", "requeue", job], check=False)
        raise SystemExit(128 + signum)


def slurm_job_id() -> str | None:
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")
