"""Data-parallel training over processes (`trainer.devices=N trainer.strategy=ddp|ddp_spawn`).

Lightning's DDP wraps the whole LightningModule in one DistributedDataParallel, whose reducer expects
every parameter to receive a gradient in each backward pass. A GAN's D update leaves G without
gradients and its G update reaches D's, so that reducer waits for gradients that never come or
raises (Lightning issues #20328, #20685, #20866). GANModule therefore keeps the reducer switched off
(Lightning's `block_backward_sync`) and averages the gradients of the net about to step with one
all-reduce per update: the arithmetic DDP does, at the one point where a GAN knows which net that is.

Everything here is a no-op in a single process.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def _average_in_place(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks, with one all-reduce for all of them."""
    if not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= world_size()
    for t, chunk in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(chunk.view_as(t))


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Every rank ends with the mean gradient. Ranks run the same code, so the same parameters have
    gradients on all of them; if not, the all-reduce sizes differ and torch.distributed says so."""
    if world_size() > 1:
        _average_in_place([p.grad for p in params if p.grad is not None])


def average_buffers(*modules: nn.Module) -> None:
    """Batch-norm running statistics (and any float buffer) averaged over the ranks, so the nets
    that evaluate and that are checkpointed are the same on every rank."""
    if world_size() > 1:
        with torch.no_grad():
            _average_in_place([b for m in modules for b in m.buffers() if b.is_floating_point()])


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """A rank-independent value: decisions taken on it (an extra D update, stopping) match on all ranks."""
    if world_size() == 1:
        return value
    value = value.detach().clone().float()
    dist.all_reduce(value)
    return value / world_size()


def shard(rows: torch.Tensor) -> torch.Tensor:
    """This rank's equal share of `rows` (the last share padded with the first rows)."""
    n = world_size()
    if n == 1:
        return rows
    size = math.ceil(len(rows) / n)
    padded = torch.cat([rows, rows[: size * n - len(rows)]])
    return padded[rank() * size:(rank() + 1) * size]


def gather_shards(local: torch.Tensor, total: int) -> torch.Tensor:
    """The shards of every rank, in rank order, trimmed to the `total` rows `shard` split."""
    if world_size() == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts)[:total]


class _RunFolderLauncher(_SubprocessScriptLauncher):
    """Starts ranks 1..N-1 as `python -m gan_ablate.ddp_worker RUN_DIR`. Lightning's launcher runs the
    command line again instead, which under Hydra makes a new run folder per rank, and under `-m`
    a whole new sweep per rank."""

    ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")

    def __init__(self, run_dir: Path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_dir = Path(run_dir)
        self.saved_env: dict[str, str | None] = {}

    def restore_env(self) -> None:
        """The next run of a multirun in this process must start its own ranks again: with
        LOCAL_RANK left set, Lightning would take this process for one started by a cluster."""
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved_env = {}

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        env = self.cluster_environment
        self.saved_env = {key: os.environ.get(key) for key in self.ENV}
        os.environ.update(MASTER_ADDR=env.main_address, MASTER_PORT=str(env.main_port),
                          NODE_RANK=str(env.node_rank()), LOCAL_RANK=str(env.local_rank()),
                          WORLD_SIZE=str(self.num_processes * self.num_nodes))
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen([sys.executable, "-m", "gan_ablate.ddp_worker", str(self.run_dir)],
                                               env=child_env))


class RunFolderDDPStrategy(DDPStrategy):
    """`trainer.strategy=ddp`: Lightning's DDP, with the other ranks started on this run's folder."""

    def __init__(self, run_dir: Path, **kwargs):
        super().__init__(start_method="popen", **kwargs)
        self.run_dir = run_dir

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            self._launcher = _RunFolderLauncher(self.run_dir, self.cluster_environment, self.num_processes,
                                                self.num_nodes)

    def teardown(self) -> None:
        super().teardown()
        if isinstance(self._launcher, _RunFolderLauncher) and self._launcher.procs:
            for proc in self._launcher.procs:
                proc.wait()
            # the ranks this run started are gone: the next run in this process builds a new group
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            self._launcher.restore_env()
