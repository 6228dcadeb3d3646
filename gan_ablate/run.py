"""One training run: data, module, loggers, evaluation and the result record, from a validated config."""
from __future__ import annotations

import errno
import logging
import os
import signal
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from gan_ablate.callbacks import EvaluationCallback
from gan_ablate.callbacks.checkpoint import (LAST, AtomicCheckpointIO, CheckpointOnSignal, IterationCheckpoint,
                                             KeepLogsInStep, UnusableCheckpoint, has_checkpoint, kept_csv_rows,
                                             read_checkpoint, resumable_checkpoint)
from gan_ablate.callbacks.selection import BestSelection
from gan_ablate.config import ConfigError
from gan_ablate.data import build_datamodule
from gan_ablate.distributed import RunFolderDDPStrategy
from gan_ablate.evaluators import build_evaluation, build_selection
from gan_ablate.module import GANModule
from gan_ablate.record import RunRecord, loss_revision, run_name, trick_revisions, uses_mode_labels
from gan_ablate.run_folder import AttemptClock, config_fingerprint, previous_attempt, stop_on_full_disk
from gan_ablate.run_loggers import build_loggers, finish_wandb, put_back_rows, summarise_in_wandb
from gan_ablate.validation import check_config

log = logging.getLogger("gan_ablate")

# Lightning's advice for map-style loaders does not apply: the data lives in one tensor already.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
# Resuming mid-epoch is exact here: Lightning's batches are only iteration numbers, and every random
# draw is addressed by (seed, iteration) (tests/test_resume.py); the CSV rows are restored by hand.
warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")
warnings.filterwarnings("ignore", ".*Experiment logs directory .* exists and is not empty.*")
# on a SLURM node, jobs run through submitit (not srun), which Lightning cannot know
warnings.filterwarnings("ignore", ".*The `srun` command is available on your system but is not used.*")
# Lightning's start-up banner (accelerator availability, advertising tips) drowns the sweep's log
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)


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


def build_strategy(t, run_dir: Path):
    """Lightning's strategy for trainer.strategy; several devices mean DDP unless ddp_spawn is asked."""
    several = t.num_nodes > 1 or t.devices not in (1, "1")  # "auto", -1 or a list may mean several
    if t.strategy == "ddp_spawn":
        return "ddp_spawn"
    if t.strategy == "ddp" or several:
        return RunFolderDDPStrategy(run_dir)
    return "auto"


def skip_gpu_probes() -> None:
    """On a machine without a GPU, tell torch so once (CUDA_VISIBLE_DEVICES="", which hides nothing here).

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, after which every Adam step (its CUDA-graph
    health check asks torch.cuda.is_available()) loads the NVML library again to count GPUs until CUDA
    is initialised, which on a CPU run it never is: +0.11 ms per Adam step measured here, two per iteration."""
    if "CUDA_VISIBLE_DEVICES" not in os.environ and not torch.cuda.is_available():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def train(cfg: DictConfig, run_dir: Path, sweep: SweepInfo | None = None,
          callbacks: Optional[list[pl.Callback]] = None, accepted: Optional[Callable[[], None]] = None) -> RunRecord:
    """Train one run and write its result.json. Config errors raise ConfigError before anything
    is written; failures during training are recorded (status failed) and re-raised.

    Started again in the same folder, a run resumes from checkpoints/last.ckpt (and a finished
    one returns its record without training again) unless checkpoint.resume=false. A checkpoint
    that cannot resume it is refused (UnusableCheckpoint) with only the record changed, to failed.
    `accepted` is called once the start is accepted, before the run writes anything else."""
    sweep = sweep or SweepInfo()
    settings = check_config(cfg)
    skip_gpu_probes()
    run_dir = Path(run_dir)
    # under DDP every rank runs this function; rank 0 alone writes the record and logs
    main_rank = rank_zero_only.rank == 0
    tricks = list(settings.trick)
    name = run_name(tricks, settings.seed)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    last_ckpt = run_dir / "checkpoints" / LAST
    previous = previous_attempt(run_dir, resolved) if settings.checkpoint.resume else None
    if previous and previous.get("status") in ("ok", "diverged"):
        log.info("%s: already finished in %s (status %s)", name, run_dir, previous["status"])
        return RunRecord(run_dir, **previous)
    resume = settings.checkpoint.resume and has_checkpoint(last_ckpt.parent)
    fingerprint = config_fingerprint(resolved)

    record = RunRecord(run_dir, name=name, tricks=tricks, seed=settings.seed, data=settings.data.name,
                       loss=settings.loss.name, loss_revision=loss_revision(settings.loss.name),
                       uses_mode_labels=uses_mode_labels(tricks, settings.data.name),
                       trick_revisions=trick_revisions(tricks), **sweep.fields(),
                       config=resolved, status="running", metrics={}, history=[],
                       attempts=(previous or {}).get("attempts", 0) + 1)
    record.writable = main_rank
    try:
        resume_from, checkpoint = resumable_checkpoint(last_ckpt.parent, fingerprint) if resume else (None, {})
    except UnusableCheckpoint as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}")  # never left `running`
        raise
    if resume:
        record.data["resumed_from_iteration"] = checkpoint["gan_ablate"]["iteration"]
    clock = AttemptClock(record, (previous or {}).get("attempt_wall_times_s", []))
    record.data.update(clock.times())
    loggers = []
    try:
        # the data and the nets first: bad input found there (a missing data.root, unreadable images, a
        # loss that refuses the critic's normalisation) refuses the start before it writes anything
        dm = build_datamodule(settings.data, settings.trainer.max_steps).prepare()
        pl.seed_everything(settings.seed, workers=True, verbose=False)
        module = GANModule(settings, dm.sample_shape, dm.n_classes)
        if accepted:
            accepted()
        record.write()
        if resume and resume_from != last_ckpt and main_rank:
            # torn or missing: gone before the next save would keep it as the previous checkpoint in place of
            # the one this run resumes from
            last_ckpt.unlink(missing_ok=True)
        evaluation = build_evaluation(settings, dm, run_dir, scoring=main_rank)
        selection = build_selection(settings, dm, evaluation)
        record.update(extractor=evaluation.evaluator.extractor, extractor_id=evaluation.evaluator.extractor_id,
                      extractor_info=getattr(evaluation.evaluator, "info", None),
                      fid_reference=getattr(evaluation.evaluator, "reference", None))
        kept_rows = kept_csv_rows(run_dir / "csv" / "metrics.csv", checkpoint) if resume else []
        loggers = build_loggers(settings, run_dir, name, sweep, resolved) if main_rank else []
        put_back_rows(loggers, kept_rows)
        saver = IterationCheckpoint(last_ckpt.parent, settings.checkpoint.every, fingerprint)
        on_signal = CheckpointOnSignal(saver)
        t = settings.trainer
        trainer = pl.Trainer(
            max_epochs=1, max_steps=-1, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
            strategy=build_strategy(t, run_dir), precision=t.precision,
            logger=loggers or False, log_every_n_steps=1, enable_model_summary=False,
            enable_progress_bar=t.enable_progress_bar and main_rank,
            callbacks=[evaluation, *([selection] if selection else []), KeepLogsInStep(), on_signal, saver, clock,
                       *(callbacks or [])]
            + ([TQDMProgressBar(refresh_rate=t.log_every_n_steps)] if t.enable_progress_bar and main_rank else []),
            default_root_dir=str(run_dir), num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the "batches" are iteration numbers: every rank runs all of them
        )
        log.info("%s: %s %d iterations on %s", name,
                 f"resuming at iteration {checkpoint['gan_ablate']['iteration']} of" if resume else "training",
                 t.max_steps, describe_devices(trainer))
        if resume and checkpoint["gan_ablate"]["iteration"] >= t.max_steps:
            # stopped after its final checkpoint but before its record: nothing is left to train
            restore_final_state(checkpoint, module, evaluation, selection)
        else:
            trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume else None, weights_only=True)
            if settings.trainer.strategy == "ddp_spawn":  # trained in child processes
                restore_final_state(read_checkpoint(last_ckpt), module, evaluation, selection)
        if not main_rank:
            return record
        if on_signal.received is not None:
            record.update(interrupted_at_iteration=module.iteration, **clock.times(),
                          note=f"stopped by {signal.Signals(on_signal.received).name} with a checkpoint; "
                               "starting the run again resumes it")
        else:
            watch = module.failure_watch
            divergence = module.divergence()  # diverged_at_iteration and reason, if it did
            record.update(status="diverged" if divergence else "ok", metrics=evaluation.final,
                          history=evaluation.history, iterations=module.iteration, primary=settings.metrics.primary,
                          failure_flags=[vars(e) for e in watch.events] if watch else [], **divergence,
                          **({"eval_repeats": evaluation.repeated} if evaluation.repeated else {}),
                          **({"final": evaluation.final, **selection.record()} if selection else {}),
                          **clock.times())
            summarise_in_wandb(loggers, record.data)
            log.info("%s: %s", name, evaluation.final)
    except ConfigError:
        if not previous and main_rank:
            record.path.unlink(missing_ok=True)  # refused, not run: the caller reports it
        raise
    except BaseException as e:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            stop_on_full_disk(record, e, clock.times())
        record.update(status="failed", error=f"{type(e).__name__}: {e}", **clock.times())
        if main_rank:
            (run_dir / "traceback.txt").write_text(traceback.format_exc())
        raise
    finally:
        finish_wandb(loggers)
    if on_signal.received is not None:
        on_signal.hand_back()  # requeue and exit
    return record


def describe_devices(trainer: pl.Trainer) -> str:
    n = trainer.world_size
    return str(trainer.strategy.root_device) + (f" x {n} processes" if n > 1 else "")


def restore_final_state(checkpoint: dict, module: GANModule, evaluation: EvaluationCallback,
                        selection: Optional[BestSelection] = None) -> None:
    """What the record needs (iteration, evaluation history and repeats, the selected G's held-out metrics, failure
    watch) from the final checkpoint: after ddp_spawn, whose child processes trained (Lightning brings back only
    rank 0's weights), and for a run stopped between its final checkpoint and its record."""
    module.on_load_checkpoint(checkpoint)
    for callback in (evaluation, selection):
        if callback is not None:
            callback.load_state_dict(checkpoint["callbacks"][callback.state_key])
    evaluation.final = {k: v for k, v in evaluation.history[-1].items() if k != "iteration"}
