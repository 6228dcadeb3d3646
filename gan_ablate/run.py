"""One training run: data, module, loggers, evaluation and the result record, from a validated config."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from netrc import netrc
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import TQDMProgressBar

from gan_ablate.callbacks import EvaluationCallback
from gan_ablate.config import ConfigError, TrainConfig, validate
from gan_ablate.data import build_datamodule
from gan_ablate.data.toy import MixtureDataModule
from gan_ablate.metrics.modes import ModeEvaluator
from gan_ablate.metrics.samples import ImageSampler
from gan_ablate.module import GANModule
from gan_ablate.nets.layers import sample_latent
from gan_ablate.plots import plot_images, plot_points
from gan_ablate.record import RunRecord
from gan_ablate.tricks import build_tricks

log = logging.getLogger("gan_ablate")

# Lightning's advice for map-style loaders does not apply: the data lives in one tensor already.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")  # inside Lightning, nothing to act on
# Lightning's start-up banner (accelerator availability, advertising tips) drowns the sweep's log
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)


@dataclass
class SweepInfo:
    """Where a run sits in a sweep; None fields for a single run."""
    group: Optional[str] = None
    job_num: Optional[int] = None
    extra: dict = field(default_factory=dict)


def run_name(tricks: list[str], seed: int) -> str:
    return f"{'+'.join(tricks) or 'baseline'}-s{seed}"


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


def build_loggers(settings: TrainConfig, run_dir: Path, name: str, sweep: SweepInfo, resolved: dict):
    loggers = []
    if settings.logger.csv:
        loggers.append(pl.loggers.CSVLogger(save_dir=str(run_dir), name="", version="csv"))
    if settings.logger.wandb:
        os.environ.setdefault("WANDB_SILENT", "true")
        tricks = list(settings.trick)
        wandb_logger = pl.loggers.WandbLogger(
            project=settings.logger.project, entity=settings.logger.entity, name=name,
            group=sweep.group, tags=tricks or ["baseline"], save_dir=str(run_dir),
            mode=wandb_mode(settings.logger.mode), config=resolved, reinit=True,
        )
        # Lightning always passes `anonymous`, which current wandb warns about on every run
        wandb_logger._wandb_init.pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers


def image_evaluator(settings: TrainConfig, dm, z: torch.Tensor):
    """FID/KID/IS on the chosen extractor, or only sample grids with metrics.extractor=none."""
    from gan_ablate.metrics.domain import load_or_train, weights_file
    from gan_ablate.metrics.fidelity import (DOMAIN_EXTRACTOR, INCEPTION_EXTRACTOR, ImageFidelityEvaluator,
                                             check_inception)

    m = settings.metrics
    if m.extractor == "none":
        return ImageSampler(z[:64])
    if settings.data.name == "stacked_mnist":
        from gan_ablate.data.images import MnistDataModule
        from gan_ablate.metrics.stacked import StackedMnistEvaluator

        mnist = MnistDataModule(dataclasses.replace(settings.data, name="mnist"), 1).prepare()
        classifier, info = load_or_train(mnist.data, mnist.labels, Path(m.cache_dir).expanduser() / "extractors", "mnist")
        z = sample_latent(m.stacked_samples, settings.model.z_dim, settings.model.latent,
                          generator=torch.Generator().manual_seed(settings.seed))
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
                                  m.kid_subset_size)


def build_evaluation(settings: TrainConfig, dm, run_dir: Path) -> EvaluationCallback:
    m, model = settings.metrics, settings.model
    n = m.n_samples if isinstance(dm, MixtureDataModule) else m.image_samples
    # a fixed latent batch, from the run's seed but not from the training stream
    z = sample_latent(n, model.z_dim, model.latent, generator=torch.Generator().manual_seed(settings.seed))
    if isinstance(dm, MixtureDataModule):
        modes = dm.modes()
        evaluator = ModeEvaluator(modes, settings.data.std, z, hq_sigmas=m.hq_sigmas)
        plot = lambda s, p, title: plot_points(s, p, title, modes=modes)  # noqa: E731
    else:
        evaluator = image_evaluator(settings, dm, z)
        plot = plot_images
    return EvaluationCallback(evaluator, m.every, sample_dir=run_dir / "samples", plot=plot,
                              interpolation=None if isinstance(dm, MixtureDataModule) else m.interpolation)


def train(cfg: DictConfig, run_dir: Path, sweep: SweepInfo | None = None) -> RunRecord:
    """Train one run and write its result.json. Config errors raise ConfigError before anything
    is written; failures during training are recorded (status failed) and re-raised."""
    sweep = sweep or SweepInfo()
    settings = check_config(cfg)
    run_dir = Path(run_dir)
    tricks = list(settings.trick)
    name = run_name(tricks, settings.seed)
    resolved = OmegaConf.to_container(cfg, resolve=True)

    record = RunRecord(run_dir, name=name, tricks=tricks, seed=settings.seed, data=settings.data.name,
                       loss=settings.loss.name, sweep=sweep.group, job_num=sweep.job_num, **sweep.extra,
                       config=resolved, status="running", metrics={}, history=[])
    record.write()
    start = time.time()
    loggers = []
    try:
        dm = build_datamodule(settings.data, settings.trainer.max_steps).prepare()
        pl.seed_everything(settings.seed, workers=True, verbose=False)
        module = GANModule(settings, dm.sample_shape, dm.n_classes)
        evaluation = build_evaluation(settings, dm, run_dir)
        record.update(extractor=evaluation.evaluator.extractor, extractor_id=evaluation.evaluator.extractor_id,
                      extractor_info=getattr(evaluation.evaluator, "info", None))
        loggers = build_loggers(settings, run_dir, name, sweep, resolved)
        t = settings.trainer
        trainer = pl.Trainer(
            max_epochs=1, max_steps=-1, accelerator=t.accelerator, devices=t.devices, precision=t.precision,
            logger=loggers or False, log_every_n_steps=1, enable_checkpointing=False,
            enable_progress_bar=t.enable_progress_bar, enable_model_summary=False,
            callbacks=[evaluation] + ([TQDMProgressBar(refresh_rate=t.log_every_n_steps)]
                                     if t.enable_progress_bar else []),
            default_root_dir=str(run_dir), num_sanity_val_steps=0,
        )
        log.info("%s: training %d iterations on %s", name, t.max_steps, trainer.strategy.root_device)
        trainer.fit(module, datamodule=dm)
        watch = module.failure_watch
        diverged = watch is not None and watch.diverged
        record.update(status="diverged" if diverged else "ok", metrics=evaluation.final, history=evaluation.history,
                      iterations=module.iteration, primary=settings.metrics.primary,
                      failure_flags=[vars(e) for e in watch.events] if watch else [],
                      wall_time_s=round(time.time() - start, 3))
        log.info("%s: %s", name, evaluation.final)
        return record
    except ConfigError:
        record.path.unlink(missing_ok=True)  # refused, not run: the caller reports it
        raise
    except BaseException as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}", wall_time_s=round(time.time() - start, 3))
        (run_dir / "traceback.txt").write_text(traceback.format_exc())
        raise
    finally:
        _finish_wandb(loggers)


def _finish_wandb(loggers: list[Any]) -> None:
    for logger in loggers:
        if isinstance(logger, pl.loggers.WandbLogger):
            logger.experiment.finish()
