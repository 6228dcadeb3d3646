"""metrics.select_best: keep the G of the best periodic evaluation, and report it measured on other latents.

The best of many noisy evaluations, reported on the latents it was chosen on, is biased in its favour (the
winner's curse). The choice here is made on the periodic evaluation's latent set (the selection set, drawn from
the run's seed); the chosen G's numbers in result.json (`best_selected`) are measured at the end of training on a
held-out set drawn from a seed of its own (LatentSets, purpose HELD_OUT).

Not Lightning's ModelCheckpoint(monitor=..., save_top_k=1): the evaluation logs to the loggers, not through
self.log into callback_metrics, and a second checkpoint file would go through AtomicCheckpointIO, which moves any
file it replaces to last.previous.ckpt, the checkpoint a resumed run falls back on. The chosen G's weights (raw and
EMA) travel instead in this callback's state, inside last.ckpt: a resumed run keeps the choice made up to its
checkpoint, exactly.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import pytorch_lightning as pl

from gan_ablate.callbacks.evaluation import HELD_OUT, EvaluatedModule, EvaluationCallback, stopped_by_signal


def cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@contextmanager
def weights_of(pl_module: EvaluatedModule, weights: dict):
    """The module's G and G_ema hold `weights` inside the block, their own again afterwards."""
    nets = pl_module.generator_modules()
    own = {name: cpu_copy(nets[name].state_dict()) for name in weights}
    try:
        for name, state in weights.items():
            nets[name].load_state_dict(state)
        yield
    finally:
        for name, state in own.items():
            nets[name].load_state_dict(state)


class BestSelection(pl.Callback):
    """Chooses by `metric` of the `net` G (raw or ema: metrics.primary), `direction` +1 higher is better, -1
    lower; on ties the earliest evaluation is kept. Comes after `evaluation` in the trainer's callbacks."""

    def __init__(self, evaluation: EvaluationCallback, net: str, metric: str, direction: int):
        self.evaluation, self.net, self.metric, self.direction = evaluation, net, metric, direction
        self.held_out_seed = evaluation.latent_sets.seed_of(HELD_OUT)
        self.best: dict | None = None  # {"iteration", "value" (on the selection set), "weights": {net: state}}
        self.held_out: dict = {}  # the chosen G's metrics on the held-out set, after training (rank 0)

    def state_dict(self) -> dict:
        return {"best": self.best, "held_out": self.held_out}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.held_out = state["best"], state["held_out"]

    def consider(self, pl_module: EvaluatedModule) -> None:
        """Keeps this iteration's G if its evaluation (if it had one) beats the best so far."""
        latest = self.evaluation.latest
        if latest.get("iteration") != pl_module.iteration:
            return
        value = latest[self.net][self.metric]
        if math.isnan(value):  # a diverged G is never the best
            return
        if self.best is None or value * self.direction > self.best["value"] * self.direction:
            self.best = {"iteration": pl_module.iteration, "value": value,
                         "weights": {name: cpu_copy(net.state_dict())
                                     for name, net in pl_module.generator_modules().items()}}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.consider(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if stopped_by_signal(trainer):  # the run goes on after a restart: the held-out evaluation comes then
            return
        self.consider(pl_module)  # the final evaluation is a candidate too
        if self.best is None:  # every evaluation was NaN
            return
        held_out = self.evaluation.latent_sets.draw(self.held_out_seed)
        with weights_of(pl_module, self.best["weights"]):
            self.held_out = self.evaluation.score(pl_module, held_out)[1]

    def record(self) -> dict:
        """result.json's fields: the chosen G's held-out metrics, its iteration, and what it was chosen on."""
        if self.best is None:
            return {"best_selected": None, "best_selected_iteration": None}
        return {"best_selected": self.held_out, "best_selected_iteration": self.best["iteration"],
                "best_selected_on": {"net": self.net, "metric": self.metric,
                                     "direction": "max" if self.direction > 0 else "min",
                                     "selection_value": self.best["value"],
                                     "selection_latent_seed": self.evaluation.latent_sets.seed,
                                     "held_out_latent_seed": self.held_out_seed}}
