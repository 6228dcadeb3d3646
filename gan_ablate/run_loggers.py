"""A run's loggers: the CSV file and the W&B run (its mode, its id kept in the run folder across resumptions, its
summary columns)."""
from __future__ import annotations

import os
import secrets
from netrc import netrc
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl

from gan_ablate.config import TrainConfig
from gan_ablate.loggers import RunWandbLogger
from gan_ablate.record import BASELINE, FINAL_METRICS, METRIC_DIRECTIONS, cell_label


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


class CSVLogger(pl.loggers.CSVLogger):
    """Lightning's, naming its file in the error of a write that fails (the csv module's writes name none), so
    that a full disk is reported with the file it could not write."""

    def save(self) -> None:
        try:
            super().save()
        except OSError as e:
            e.filename = e.filename or self.experiment.metrics_file_path
            raise


def build_loggers(settings: TrainConfig, run_dir: Path, name: str, sweep, resolved: dict) -> list:
    """The CSV logger and the W&B run that logger.* asks for; `sweep` (a SweepInfo) names the W&B group and cell."""
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
            group=sweep.group, tags=(tricks or [BASELINE]) + ([f"design:{sweep.design}"] if sweep.design else []),
            mode=wandb_mode(settings.logger.mode), reinit=True,
            settings=wandb.Settings(init_timeout=settings.logger.init_timeout_s),
            config={**resolved, "cell": sweep.cell or cell_label(tricks), "design": sweep.design,
                    "sweep": sweep.group},
            resume="allow",
        )
        # Lightning always passes `anonymous`, which current wandb warns about on every run
        wandb_logger._wandb_init.pop("anonymous", None)
        define_summaries(wandb_logger.experiment)
        loggers.append(wandb_logger)
    return loggers


def put_back_rows(loggers: list, rows: list[dict]) -> None:
    """The rows a resumed run's checkpoint saw: a new CSV logger empties its file, and W&B lost those logged after
    its last sync when the run was killed."""
    for logger in loggers:
        if isinstance(logger, pl.loggers.CSVLogger):
            logger.experiment.metrics.extend(rows)
        elif isinstance(logger, RunWandbLogger):
            logger.replay(rows)


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


def finish_wandb(loggers: list[Any]) -> None:
    for logger in loggers:
        if isinstance(logger, RunWandbLogger):
            logger.unless_failed("finishing", lambda: logger.experiment.finish())
