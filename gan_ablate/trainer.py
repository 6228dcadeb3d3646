"""The Lightning Trainer of a run: its devices and strategy, and Lightning's warnings that do not apply here."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar

from gan_ablate.callbacks.checkpoint import AtomicCheckpointIO
from gan_ablate.config import TrainerConfig
from gan_ablate.distributed import RunFolderDDPStrategy

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


def lightning_trainer(t: TrainerConfig, run_dir: Path, main_rank: bool, loggers: list,
                      callbacks: list[pl.Callback]) -> pl.Trainer:
    """One epoch of trainer.max_steps iterations (the data module's "batches"), with `callbacks` in their order and,
    on rank 0 only, the progress bar."""
    return pl.Trainer(
        max_epochs=1, max_steps=-1, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=build_strategy(t, run_dir), precision=t.precision,
        logger=loggers or False, log_every_n_steps=1, enable_model_summary=False,
        enable_progress_bar=t.enable_progress_bar and main_rank,
        callbacks=callbacks
        + ([TQDMProgressBar(refresh_rate=t.log_every_n_steps)] if t.enable_progress_bar and main_rank else []),
        default_root_dir=str(run_dir), num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the "batches" are iteration numbers: every rank runs all of them
    )


def build_strategy(t: TrainerConfig, run_dir: Path):
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


def describe_devices(trainer: pl.Trainer) -> str:
    n = trainer.world_size
    return str(trainer.strategy.root_device) + (f" x {n} processes" if n > 1 else "")
