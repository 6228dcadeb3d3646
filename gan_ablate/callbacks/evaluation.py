"""Evaluates the raw and the EMA generator every N iterations and at the end of training."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from gan_ablate.callbacks.checkpoint import CheckpointOnSignal
from gan_ablate.distributed import gather_shards, shard
from gan_ablate.interpolation import interpolation_grid


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
                 plot: Callable | None = None, interpolation: str | None = None):
        self.evaluator, self.every = evaluator, every
        self.sample_dir, self.plot = sample_dir, plot
        self.interpolation = interpolation  # slerp/lerp: an interpolation grid with the final samples
        self.history: list[dict] = []
        self.final: dict = {}
        self._last_iteration = -1

    # in the checkpoint: a resumed run's history has every evaluation exactly once
    def state_dict(self) -> dict:
        return {"history": self.history, "last_iteration": self._last_iteration}

    def load_state_dict(self, state: dict) -> None:
        self.history, self._last_iteration = list(state["history"]), state["last_iteration"]

    def evaluate(self, pl_module) -> dict:
        # fork_rng: evaluation draws nothing from the training stream
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
            samples = {}
            for name, net in (("raw", pl_module.G), ("ema", pl_module.ema_generator())):
                z = pl_module.hooks.eval_latent(self.evaluator.z.to(pl_module.device))
                with eval_mode(net), torch.no_grad():
                    # in chunks: stacked MNIST evaluates 26,000 samples; under DDP each rank makes its share
                    local = pl_module.hooks.eval_samples(torch.cat([net(c) for c in shard(z).split(2048)]))
                samples[name] = gather_shards(local, len(z))
            scoring = pl_module.global_rank == 0
            result = {name: self.evaluator.score(s) for name, s in samples.items()} if scoring else {}
        it = pl_module.iteration
        self._last_iteration = it
        if not scoring:
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

    def log_grid(self, pl_module, iteration: int) -> None:
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
        if pl_module.global_rank != 0:
            return
        self.final = {k: v for k, v in self.history[-1].items() if k != "iteration"}
        if self.interpolation and self.plot is not None and self.sample_dir is not None:
            self.plot_interpolation(pl_module)

    def plot_interpolation(self, pl_module) -> Path:
        z = interpolation_grid(self.evaluator.z[:16].to(pl_module.device), self.interpolation)
        samples = {}
        with torch.random.fork_rng(devices=[]):
            for name, net in (("raw", pl_module.G), ("ema", pl_module.ema_generator())):
                with eval_mode(net), torch.no_grad():
                    # in chunks: stacked MNIST evaluates 26,000 samples
                    samples[name] = pl_module.hooks.eval_samples(torch.cat([net(c) for c in z.split(2048)])).cpu()
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        path = self.sample_dir / f"{self.interpolation}_{pl_module.iteration:07d}.png"
        self.plot(samples, path, title=f"{self.interpolation} interpolation, iteration {pl_module.iteration}")
        return path
