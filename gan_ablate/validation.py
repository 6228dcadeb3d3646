"""Config validation: everything that can be refused before a run starts. Light to import (no Lightning
trainer, data or loggers), so that the sweeper checks each cell without loading the training code."""
from __future__ import annotations

from omegaconf import DictConfig

from gan_ablate.config import TrainConfig, validate
from gan_ablate.tricks import build_tricks


def check_config(cfg: DictConfig) -> TrainConfig:
    """Everything that can be refused before training: values, trick names, parameters, conflicts."""
    settings = validate(cfg)
    build_tricks(settings.trick, settings)
    return settings
