"""One training run: data, module, loggers, evaluation and the result record, from a validated config."""
from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import time
import traceback
import warnings
from dataclasses import dataclass, field
from netrc import netrc
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from gan_ablate.callbacks import EvaluationCallback
from gan_ablate.callbacks.evaluation import LatentOnly, LatentSets
from gan_ablate.callbacks.checkpoint import (LAST, AtomicCheckpointIO, CheckpointOnSignal, IterationCheckpoint,
                                             KeepLogsInStep, UnusableCheckpoint, has_checkpoint, kept_csv_rows,
                                             read_checkpoint, resumable_checkpoint)
from gan_ablate.callbacks.selection import BestSelection
from gan_ablate.config import ConfigError, TrainConfig, validate
from gan_ablate.data import build_datamodule
from gan_ablate.data.toy import MixtureDataModule
from gan_ablate.distributed import RunFolderDDPStrategy
from gan_ablate.loggers import RunWandbLogger
from gan_ablate.metrics.modes import ModeEvaluator
from gan_ablate.metrics.samples import ImageSampler
from gan_ablate.module import GANModule
from gan_ablate.nets.layers import sample_latent
from gan_ablate.plots import plot_images, plot_points
from gan_ablate.record import FINAL_METRICS, METRIC_DIRECTIONS, RunRecord, run_name
from gan_ablate.revisions import loss_revision, trick_revisions, uses_mode_labels
from gan_ablate.tricks import build_tricks

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


def wandb_mode(configured: Optional[str]) -> str:
    """Offline unless the user asked otherwise or has W&B credentials set up."""
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc().authenticators("api.wandb.ai"):
            return "online"
    except Exception:  # no ~/.netrc, or one netrc cannot parse
        pass
    return "offline"


def check_config(cfg: DictConfig) -> TrainConfig:
    """Everything that can be refused before training: values, trick names, parameters, conflicts."""
    settings = validate(cfg)
    build_tricks(settings.trick, settings)
    return settings


class CSVLogger(pl.loggers.CSVLogger):
    """Lightning's, naming its file in the error of a write that fails (the csv module's writes name none), so
    that a full disk is reported with the file it could not write."""

    def save(self) -> None:
        try:
            super().save()
        except OSError as e:
            e.filename = e.filename or self.experiment.metrics_file_path
            raise


def build_loggers(settings: TrainConfig, run_dir: Path, name: str, sweep: SweepInfo, resolved: dict):
    loggers = []
    if settings.logger.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="", version="csv"))
    if settings.logger.wandb:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        tricks = list(settings.trick)
        # group = the sweep; the cell and seed in the config, so W&B's grouped tables split by them
        wandb_logger = RunWandbLogger(
            run_dir, wandb_run_id(run_dir, settings.checkpoint.resume),
            project=settings.logger.project, entity=settings.logger.entity, name=name,
            group=sweep.group, tags=(tricks or ["baseline"]) + ([f"design:{sweep.design}"] if sweep.design else []),
            mode=wandb_mode(settings.logger.mode), reinit=True,
            settings=wandb.Settings(init_timeout=settings.logger.init_timeout_s),
            config={**resolved, "cell": sweep.cell or name.rsplit("-s", 1)[0], "design": sweep.design,
                    "sweep": sweep.group},
            resume="allow",
        )
        # Lightning always passes `anonymous`, which current wandb warns about on every run
        wandb_logger._wandb_init.pop("anonymous", None)
        define_summaries(wandb_logger.experiment)
        loggers.append(wandb_logger)
    return loggers


def wandb_run_id(run_dir: Path, resume: bool) -> str:
    """One W&B run per run folder: a resumed run (after SIGKILL or a SLURM requeue) continues it. One
    started over (checkpoint.resume=false) is a new W&B run: the old one's rows are another training's."""
    path = Path(run_dir) / "wandb_run_id"
    if not resume or not path.exists():
        path.write_text(secrets.token_hex(6))  # W&B ids: lower-case letters and digits
    return path.read_text().strip()


def summary_rule(metric: str) -> str:
    """What a run's row in W&B's tables shows of an evaluation metric: the best FID/KID/IS, the final mode metrics,
    and the last value of what has no better direction (a spread such as kid_std, a sample count)."""
    if metric in FINAL_METRICS or metric not in METRIC_DIRECTIONS:
        return "last"
    return "min" if METRIC_DIRECTIONS[metric] < 0 else "max"


def define_summaries(experiment) -> None:
    """W&B keeps each evaluation metric's summary_rule aggregate (of the rows since the run's latest start)."""
    for net in ("raw", "ema"):
        for metric in METRIC_DIRECTIONS:
            experiment.define_metric(f"eval/{net}/{metric}", summary=summary_rule(metric))


def evaluation_latent(settings: TrainConfig, dm) -> torch.Tensor:
    """The fixed latent batch every evaluation of the run uses: from the run's seed, not from the
    training stream, and the same on every rank (each generates its share of it)."""
    m, model = settings.metrics, settings.model
    if isinstance(dm, MixtureDataModule):
        n = m.n_samples
    elif settings.data.name == "stacked_mnist" and m.extractor != "none":
        n = m.stacked_samples
    else:
        n = m.image_samples
    z = sample_latent(n, model.z_dim, model.latent, generator=torch.Generator().manual_seed(settings.seed))
    return z[:64] if m.extractor == "none" and not isinstance(dm, MixtureDataModule) else z


def image_evaluator(settings: TrainConfig, dm, z: torch.Tensor):
    """FID/KID/IS on the chosen extractor, or only sample grids with metrics.extractor=none."""
    from gan_ablate.metrics.domain import load_or_train, weights_file
    from gan_ablate.metrics.fidelity import (DOMAIN_EXTRACTOR, INCEPTION_EXTRACTOR, ImageFidelityEvaluator,
                                             check_inception, registered_reference)

    m = settings.metrics
    if m.extractor == "none":
        return ImageSampler(z)
    if settings.data.name == "stacked_mnist":
        from gan_ablate.data.images import MnistDataModule
        from gan_ablate.metrics.stacked import StackedMnistEvaluator

        mnist = MnistDataModule(dataclasses.replace(settings.data, name="mnist"), 1).prepare()
        classifier, info = load_or_train(mnist.data, mnist.labels, Path(m.cache_dir).expanduser() / "extractors", "mnist")
        return StackedMnistEvaluator(z, classifier, info)
    if m.extractor == "inception":
        check_inception(m.inception_weights)
        info = {"extractor": INCEPTION_EXTRACTOR}
        weights = None if m.inception_weights is None else Path(m.inception_weights).expanduser()
        name = INCEPTION_EXTRACTOR
    else:
        if dm.labels is None:
            raise ConfigError(f"metrics.extractor=domain needs labelled data; data={settings.data.name} has none: "
                              "use metrics.extractor=inception or metrics.extractor=none")
        cache = Path(m.cache_dir).expanduser() / "extractors"
        _, info = load_or_train(dm.data, dm.labels, cache, settings.data.name)
        log.info("domain classifier %s: held-out accuracy %.4f", info["extractor"], info["test_accuracy"])
        weights, name = weights_file(cache, settings.data.name, dm.data, dm.labels), DOMAIN_EXTRACTOR
    return ImageFidelityEvaluator(z, dm.data, name, weights, info, Path(m.cache_dir) / "real-stats",
                                  m.kid_subset_size,
                                  registered=registered_reference(settings.data.name, settings.data.root, name),
                                  prc_neighborhood=m.prc_neighborhood, prdc_nearest_k=m.prdc_nearest_k)


def build_evaluation(settings: TrainConfig, dm, run_dir: Path, scoring: bool = True) -> EvaluationCallback:
    """The evaluation callback; with scoring=False (ranks other than 0) it only generates samples."""
    m = settings.metrics
    z = evaluation_latent(settings, dm)
    if m.extractor == "none" and not isinstance(dm, MixtureDataModule) and (m.eval_repeats > 1 or m.select_best):
        asked = f"metrics.eval_repeats={m.eval_repeats}" if m.eval_repeats > 1 else "metrics.select_best=true"
        raise ConfigError(f"{asked} needs metrics, and metrics.extractor=none measures none on images: "
                          "use metrics.extractor=domain or inception")
    more = dict(latent_sets=LatentSets(len(z), settings.model.z_dim, settings.model.latent, settings.seed),
                repeats=m.eval_repeats)
    if not scoring:
        return EvaluationCallback(LatentOnly(z), m.every, **more)
    if isinstance(dm, MixtureDataModule):
        modes = dm.modes()
        evaluator = ModeEvaluator(modes, settings.data.std, z, hq_sigmas=m.hq_sigmas,
                                  prc_neighborhood=m.prc_neighborhood, prdc_nearest_k=m.prdc_nearest_k)
        plot = functools.partial(plot_points, modes=modes)  # a partial, not a lambda: ddp_spawn pickles it
    else:
        evaluator = image_evaluator(settings, dm, z)
        plot = plot_images
    return EvaluationCallback(evaluator, m.every, sample_dir=run_dir / "samples", plot=plot,
                              interpolation=None if isinstance(dm, MixtureDataModule) else m.interpolation, **more)


# what metrics.select_best chooses by, per kind of data: the metrics its evaluation gives, the default first (a
# continuous one: modes are integers, many evaluations tie)
FIDELITY_DIVERSITY = ("precision", "recall", "density", "coverage")
SELECTABLE = {"mixture": ("reverse_kl", "modes", "hq", *FIDELITY_DIVERSITY), "stacked_mnist": ("kl", "modes"),
              "images": ("fid", "kid", "is", *FIDELITY_DIVERSITY)}


def build_selection(settings: TrainConfig, dm, evaluation: EvaluationCallback) -> Optional[BestSelection]:
    """metrics.select_best's callback (None without it), choosing by metrics.select_metric of metrics.primary's G."""
    m = settings.metrics
    if not m.select_best:
        return None
    kind = ("mixture" if isinstance(dm, MixtureDataModule)
            else "stacked_mnist" if settings.data.name == "stacked_mnist" else "images")
    metric = m.select_metric or SELECTABLE[kind][0]
    if metric not in SELECTABLE[kind]:
        raise ConfigError(f"metrics.select_metric={metric} is not measured on data={settings.data.name}; "
                          f"choose one of: {', '.join(SELECTABLE[kind])}")
    return BestSelection(evaluation, m.primary, metric, METRIC_DIRECTIONS[metric])


def build_strategy(t, run_dir: Path):
    """Lightning's strategy for trainer.strategy; several devices mean DDP unless ddp_spawn is asked."""
    several = t.num_nodes > 1 or t.devices not in (1, "1")  # "auto", -1 or a list may mean several
    if t.strategy == "ddp_spawn":
        return "ddp_spawn"
    if t.strategy == "ddp" or several:
        return RunFolderDDPStrategy(run_dir)
    return "auto"


# keys that may change between the first start of a run and its resumption (`ablation`: the sweep's
# bookkeeping, e.g. the list of tricks under study when a sweep is started again with one trick fewer)
RESUMABLE_CHANGES = ("checkpoint", "logger", "trainer.enable_progress_bar", "ablation")


class FolderHoldsAnotherRun(ConfigError):
    """The run folder holds a run with another config: refused, and that run's record is kept."""


def run_identity(resolved: dict, prefix: str = "") -> dict:
    """The resolved config less RESUMABLE_CHANGES: what makes a run this run."""
    return {key: run_identity(value, f"{prefix}{key}.") if isinstance(value, dict) else value
            for key, value in resolved.items() if f"{prefix}{key}" not in RESUMABLE_CHANGES}


def config_fingerprint(resolved: dict) -> str:
    """Stamped into the run's checkpoints, so that a checkpoint is resumed only by the run that wrote it."""
    return hashlib.sha256(json.dumps(run_identity(resolved), sort_keys=True).encode()).hexdigest()[:16]


def config_change(before: dict, now: dict) -> Optional[str]:
    """The first key (dotted) whose value differs, ignoring RESUMABLE_CHANGES; None when equal."""
    return first_difference(run_identity(before), run_identity(now))


def first_difference(before: dict, now: dict, prefix: str = "") -> Optional[str]:
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}"
    return None


def previous_attempt(run_dir: Path, resolved: dict) -> Optional[dict]:
    """The run folder's record from an earlier start of this same run (None: a fresh folder).
    Refuses a folder that holds a different run."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    changed = config_change(previous.get("config") or {}, resolved)
    if changed:
        raise FolderHoldsAnotherRun(f"{run_dir} holds a run whose {changed} differs from this one's; "
                          "give this run another folder (hydra.run.dir=...) or delete that one")
    return previous


def skip_gpu_probes() -> None:
    """On a machine without a GPU, tell torch so once (CUDA_VISIBLE_DEVICES="", which hides nothing here).

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, after which every Adam step (its CUDA-graph
    health check asks torch.cuda.is_available()) loads the NVML library again to count GPUs until CUDA
    is initialised, which on a CPU run it never is: +0.11 ms per Adam step measured here, two per iteration."""
    if "CUDA_VISIBLE_DEVICES" not in os.environ and not torch.cuda.is_available():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


# how often a running attempt rewrites its time into result.json
HEARTBEAT_S = 10.0


class AttemptClock(pl.Callback):
    """The wall time of a run over all its attempts (each start in its folder): `attempt_wall_times_s`
    lists them, `wall_time_s` is their sum. A running attempt rewrites its time into the record every
    HEARTBEAT_S seconds, so one killed without warning (SIGKILL, a lost node) still counts, up to its
    last beat."""

    def __init__(self, record: RunRecord, earlier: list[float]):
        self.record, self.earlier = record, list(earlier)
        self.start = self.beat = time.time()

    def times(self) -> dict:
        attempts = [*self.earlier, round(time.time() - self.start, 3)]
        return {"attempt_wall_times_s": attempts, "wall_time_s": round(sum(attempts), 3)}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.time() - self.beat >= HEARTBEAT_S:
            self.beat = time.time()
            self.record.update(**self.times())


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
        for logger in loggers:  # a new CSV logger empties the file: put back the rows the checkpoint saw
            if isinstance(logger, pl.loggers.CSVLogger):
                logger.experiment.metrics.extend(kept_rows)
            elif isinstance(logger, RunWandbLogger):  # those W&B lost when the run was killed
                logger.replay(kept_rows)
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
        _finish_wandb(loggers)
    if on_signal.received is not None:
        on_signal.hand_back()  # requeue and exit
    return record


class DiskFull(Exception):
    """A write found its disk full: the message names the file and the space left there, and the way on."""

    def __init__(self, error: OSError, run_dir: Path):
        path = Path(error.filename or run_dir)
        folder = next(p for p in (path, *path.parents) if p.exists())
        free = shutil.disk_usage(folder).free
        super().__init__(f"no space left on the disk writing {path} ({free / 2**20:,.1f} MiB free there); free some "
                         "space and start the run again: it resumes from its last checkpoint")


def stop_on_full_disk(record: RunRecord, error: OSError, times: dict) -> NoReturn:
    """The record says failed, with DiskFull's line, if the disk takes that much; else it stays as it was, whole
    (written atomically). No traceback.txt: the line says it all, and the disk is full."""
    full = DiskFull(error, record.path.parent)
    try:
        record.update(status="failed", error=str(full), **times)
    except OSError:
        pass
    raise full from error


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


def summarise_in_wandb(loggers: list[Any], record: dict) -> None:
    """The status, final/<G>/<metric> and eval/<G>/<metric> (its summary_rule over the whole history) in
    each W&B run's summary: one column each in W&B's tables. W&B's own aggregate covers only the rows
    logged since the run's latest start, and a resumed run's earlier evaluations are in earlier files."""
    for logger in loggers:
        if isinstance(logger, RunWandbLogger):
            logger.unless_failed("writing the summary", lambda: write_summary(logger.experiment.summary, record))


def write_summary(summary, record: dict) -> None:
    aggregate = {"min": min, "max": max, "last": lambda values: values[-1]}
    summary["status"] = record["status"]
    for key in ("reason", "diverged_at_iteration"):  # a diverged run says why and where
        if key in record:
            summary[key] = record[key]
    for net, values in record["metrics"].items():
        for metric, value in values.items():
            summary[f"final/{net}/{metric}"] = value
            rule = summary_rule(metric)
            history = [h[net][metric] for h in record["history"] if metric in h.get(net, {})]
            summary[f"eval/{net}/{metric}"] = {rule: aggregate[rule](history)}


def _finish_wandb(loggers: list[Any]) -> None:
    for logger in loggers:
        if isinstance(logger, RunWandbLogger):
            logger.unless_failed("finishing", lambda: logger.experiment.finish())
