"""LightningDataModules for every data set; `build_datamodule` picks one from data.name."""
from __future__ import annotations

from gan_ablate.config import DataConfig
from gan_ablate.data.base import TensorDataModule
from gan_ablate.data.images import (Cifar10DataModule, DigitsDataModule, ImageFolderDataModule, MnistDataModule,
                                    StackedMnistDataModule)
from gan_ablate.data.toy import MixtureDataModule

DATAMODULES: dict[str, type[TensorDataModule]] = {
    "ring8": MixtureDataModule,
    "grid25": MixtureDataModule,
    "digits": DigitsDataModule,
    "mnist": MnistDataModule,
    "stacked_mnist": StackedMnistDataModule,
    "cifar10": Cifar10DataModule,
    "image_folder": ImageFolderDataModule,
}


def build_datamodule(cfg: DataConfig, max_steps: int, run_seed: int | None = None) -> TensorDataModule:
    """run_seed: the training seed, which data.points=per_seed draws the data from."""
    return DATAMODULES[cfg.name](cfg, max_steps, run_seed)
