"""Evaluates the raw and the EMA generator every N iterations and at the end of training.

Latent sets. The periodic evaluations (result.json's `history`, and its headline `metrics`: the last of them) all
score the evaluator's fixed `z`, drawn from the run's seed (evaluators.evaluation_latent). With metrics.eval_repeats=K
(K >= 2) the final raw and EMA G are also scored on K further sets of the same size (`eval_repeats`: evaluation
noise, to set against the training noise between seeds); each further set comes from its own seed (LatentSets).

The callbacks here and in selection.py see the module being trained only through EvaluatedModule.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from gan_ablate.callbacks.checkpoint import CheckpointOnSignal
from gan_ablate.distributed import gather_shards, shard, world_size
from gan_ablate.interpolation import interpolation_grid
from gan_ablate.nets.layers import sample_latent

REPEATS, HELD_OUT = 1, 2  # SeedSequence spawn keys: one family of latent sets per purpose


@dataclass(frozen=True)
class LatentSets:
    """Latent sets besides the periodic one, `n` rows each, set (purpose, index) drawn from the seed
    NumPy's SeedSequence(run seed, spawn_key=(purpose, index)) gives: reproducible from the run's seed, and
    independent of one another and of the periodic set (drawn from the run's seed itself). A dataclass, not a
    closure: ddp_spawn pickles the callbacks."""
    n: int
    z_dim: int
    kind: str  # gaussian | uniform, as model.latent
    seed: int

    def seed_of(self, purpose: int, index: int = 0) -> int:
        return int(np.random.SeedSequence(self.seed, spawn_key=(purpose, index)).generate_state(1, np.uint64)[0])

    def draw(self, seed: int) -> torch.Tensor:
        return sample_latent(self.n, self.z_dim, self.kind, generator=torch.Generator().manual_seed(seed))


@runtime_checkable
class EvaluatedModule(Protocol):
    """What evaluation and checkpoint selection use of the module being trained (GANModule implements it)."""
    iteration: int  # iterations done
    global_rank: int
    device: torch.device
    loggers: list

    def generators(self) -> dict[str, nn.Module]:
        """The nets evaluation scores: {"raw": G, "ema": the EMA G}, or metrics.primary's only
        (metrics.generators=primary)."""

    def eval_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Latent batch `z` on the training device, as the tricks set it for evaluation (truncation acts here)."""

    def generate(self, net: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """The samples `net` (one of generators()) makes of `z`, as evaluation sees them (conditioning drops its
        label channels)."""

    def generator_modules(self) -> dict[str, nn.Module]:
        """The modules whose weights are a checkpoint of G: {"G": the raw G, "G_ema": its running average}."""


def from_rank_zero(value):
    """Rank 0's `value` on every rank (only rank 0 scores; every rank must take the same decisions on it)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class eval_mode:
    """Puts a net in eval mode inside the block and restores its previous mode afterwards."""

    def __init__(self, net: nn.Module):
        self.net, self.was_training = net, net.training

    def __enter__(self):
        self.net.eval()
        return self.net

    def __exit__(self, *exc):
        self.net.train(self.was_training)


class LatentOnly:
    """The evaluator of a rank other than 0: it generates its share of the samples, rank 0 scores them."""

    extractor = extractor_id = info = None

    def __init__(self, z: torch.Tensor):
        self.z = z


def stopped_by_signal(trainer) -> bool:
    return any(isinstance(c, CheckpointOnSignal) and c.received is not None for c in trainer.callbacks)


class EvaluationCallback(pl.Callback):
    def __init__(self, evaluator, every: int, sample_dir: Path | None = None,
                 plot: Callable | None = None, interpolation: str | None = None,
                 latent_sets: LatentSets | None = None, repeats: int = 1):
        self.evaluator, self.every = evaluator, every
        self.sample_dir, self.plot = sample_dir, plot
        self.interpolation = interpolation  # slerp/lerp: an interpolation grid with the final samples
        self.latent_sets, self.repeats = latent_sets, repeats
        self.history: list[dict] = []
        self.final: dict = {}
        self.repeated: dict = {}  # result.json's eval_repeats (repeats >= 2), after training
        self.latest: dict = {}  # the latest evaluation, on every rank: checkpoint selection reads it
        self._last_iteration = -1

    # in the checkpoint: a resumed run's history has every evaluation exactly once; a ddp_spawn run's parent process
    # reads the repeats its children made from the final checkpoint
    def state_dict(self) -> dict:
        return {"history": self.history, "last_iteration": self._last_iteration, "repeated": self.repeated}

    def load_state_dict(self, state: dict) -> None:
        self.history, self._last_iteration = list(state["history"]), state["last_iteration"]
        self.repeated = state["repeated"]

    def generate(self, pl_module: EvaluatedModule, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The raw and the EMA G's samples of latent batch `z`, every rank making its share."""
        samples = {}
        for name, net in pl_module.generators().items():
            z_net = pl_module.eval_latent(z)
            with eval_mode(net), torch.no_grad():
                # in chunks: stacked MNIST evaluates 26,000 samples; under DDP each rank makes its share
                local = torch.cat([pl_module.generate(net, c) for c in shard(z_net).split(2048)])
            samples[name] = gather_shards(local, len(z_net))
        return samples

    def score(self, pl_module: EvaluatedModule, z: torch.Tensor) -> tuple[dict, dict]:
        """(samples, {net: metrics}) of latent batch `z`; the metrics on rank 0 only (the others: {})."""
        # fork_rng: evaluation draws nothing from the training stream
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
            samples = self.generate(pl_module, z)
            scoring = pl_module.global_rank == 0
            return samples, {name: self.evaluator.score(s) for name, s in samples.items()} if scoring else {}

    def evaluate(self, pl_module: EvaluatedModule) -> dict:
        samples, result = self.score(pl_module, self.evaluator.z)
        it = pl_module.iteration
        self._last_iteration = it
        self.latest = {"iteration": it, **from_rank_zero(result)}
        if pl_module.global_rank != 0:
            return result
        self.history.append({"iteration": it, **result})
        flat = {f"eval/{net}/{k}": float(v) for net, r in result.items() for k, v in r.items()}
        for logger in pl_module.loggers:
            logger.log_metrics(flat, step=it)
        if self.plot is not None and self.sample_dir is not None:
            self.sample_dir.mkdir(parents=True, exist_ok=True)
            self.plot({k: v.cpu() for k, v in samples.items()}, self.grid(it), title=f"iteration {it}")
            self.log_grid(pl_module, it)
        return result

    def grid(self, iteration: int) -> Path:
        return self.sample_dir / f"samples_{iteration:07d}.png"

    def log_grid(self, pl_module: EvaluatedModule, iteration: int) -> None:
        for logger in pl_module.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("samples", [str(self.grid(iteration))], step=iteration)

    def on_train_start(self, trainer, pl_module) -> None:
        # a resumed run's earlier grids again: W&B loses those it had not written when a run is killed
        # (gan_ablate/loggers.py logs none it holds already)
        if self.sample_dir is not None:
            for entry in self.history:
                if self.grid(entry["iteration"]).exists():
                    self.log_grid(pl_module, entry["iteration"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and pl_module.iteration % self.every == 0:
            self.evaluate(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if stopped_by_signal(trainer):  # the run goes on after a restart: its final evaluation comes then
            return
        if self._last_iteration != pl_module.iteration:
            self.evaluate(pl_module)
        if self.repeats > 1:
            self.repeated = self.evaluate_repeats(pl_module)
        if pl_module.global_rank != 0:
            return
        self.final = {k: v for k, v in self.history[-1].items() if k != "iteration"}
        if self.interpolation and self.plot is not None and self.sample_dir is not None:
            self.plot_interpolation(pl_module)

    def evaluate_repeats(self, pl_module: EvaluatedModule) -> dict:
        """The final scored G(s) on `repeats` latent sets of their own: result.json's eval_repeats."""
        seeds = [self.latent_sets.seed_of(REPEATS, k) for k in range(self.repeats)]
        scores = [self.score(pl_module, self.latent_sets.draw(seed))[1] for seed in seeds]
        if pl_module.global_rank != 0:
            return {}
        return {"latent_seeds": seeds, "periodic_latent_seed": self.latent_sets.seed,
                **{net: [s[net] for s in scores] for net in scores[0]}}

    def plot_interpolation(self, pl_module: EvaluatedModule) -> Path:
        z = interpolation_grid(self.evaluator.z[:16].to(pl_module.device), self.interpolation)
        samples = {}
        with torch.random.fork_rng(devices=[]):
            for name, net in pl_module.generators().items():
                with eval_mode(net), torch.no_grad():
                    # in chunks: stacked MNIST evaluates 26,000 samples
                    samples[name] = torch.cat([pl_module.generate(net, c) for c in z.split(2048)]).cpu()
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        path = self.sample_dir / f"{self.interpolation}_{pl_module.iteration:07d}.png"
        self.plot(samples, path, title=f"{self.interpolation} interpolation, iteration {pl_module.iteration}")
        return path
