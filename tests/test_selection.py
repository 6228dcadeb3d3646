"""metrics.select_best: the G of the best periodic evaluation (on the selection latents) is kept, and result.json
reports it measured on held-out latents; the choice survives a resume. The metric's trajectory is forced (a mode
evaluator whose chosen metric reads from a table by iteration), the held-out numbers checked against the chosen
iteration's G computed again, independently."""
from __future__ import annotations

import copy
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from conftest import make_cfg, make_module
from gan_ablate.callbacks.evaluation import EvaluatedModule, EvaluationCallback, LatentSets
from gan_ablate.callbacks.selection import BestSelection
from gan_ablate.config import ConfigError
from gan_ablate.metrics.modes import ModeEvaluator
from gan_ablate.run import train
from test_eval_repeats import checkpoint_scores, latents

RUN = ["trainer.max_steps=600", "metrics.every=100", "checkpoint.every=50", "metrics.select_best=true"]
# the selection set's values, by iteration: lower reverse KL is better (best 300); higher hq (best 200, tied at 400)
TRAJECTORIES = {"reverse_kl": {100: 5.0, 200: 3.0, 300: 1.0, 400: 4.0, 500: 2.0, 600: 6.0},
                "hq": {100: 0.5, 200: 0.9, 300: 0.7, 400: 0.9, 500: 0.2, 600: 0.1}}
HELD_OUT_SEED = int(np.random.SeedSequence(0, spawn_key=(2, 0)).generate_state(1, np.uint64)[0])


class ForcedModes(ModeEvaluator):
    """Mode metrics with `metric` replaced by `value` while a Force callback says so (the periodic evaluations)."""
    metric: str = "reverse_kl"
    value: float | None = None

    def score(self, samples):
        found = super().score(samples)
        return found if ForcedModes.value is None else {**found, ForcedModes.metric: ForcedModes.value}


class Force(pl.Callback):
    """Forces the metric of the evaluation at the end of each iteration (callbacks passed to train() come after the
    evaluation and the selection), and nothing after training (the held-out evaluation); with `stop_at`, sends
    this process SIGUSR1 there: the run checkpoints and stops as under SLURM."""

    def __init__(self, metric: str, stop_at: int | None = None):
        ForcedModes.metric, self.trajectory, self.stop_at = metric, TRAJECTORIES[metric], stop_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        ForcedModes.value = self.trajectory.get(pl_module.iteration + 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        ForcedModes.value = None
        if pl_module.iteration == self.stop_at:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setattr("gan_ablate.evaluators.ModeEvaluator", ForcedModes)
    yield
    ForcedModes.value = None


def selection_run(run_dir, metric: str, stop_at: int | None = None) -> dict:
    return train(make_cfg(*RUN, f"metrics.select_metric={metric}"), run_dir, callbacks=[Force(metric, stop_at)]).data


@pytest.mark.slow
@pytest.mark.parametrize("metric, chosen", [("reverse_kl", 300), ("hq", 200)])
def test_the_best_evaluation_on_the_selection_set_is_chosen_and_reported_on_held_out_latents(
        tmp_path, forced, metric, chosen):
    record = selection_run(tmp_path / "run", metric)
    assert [h["raw"][metric] for h in record["history"]] == list(TRAJECTORIES[metric].values())
    assert record["best_selected_iteration"] == chosen
    on = record["best_selected_on"]
    assert (on["net"], on["metric"], on["selection_value"]) == ("raw", metric, TRAJECTORIES[metric][chosen])
    assert (on["selection_latent_seed"], on["held_out_latent_seed"]) == (0, HELD_OUT_SEED)
    assert record["final"] == record["metrics"]  # the final G, on the selection set as before

    # the chosen iteration's G again: a run stopped there (every draw is addressed by seed and iteration)
    reference_cfg = make_cfg(*RUN[1:3], f"trainer.max_steps={chosen}")
    train(reference_cfg, tmp_path / "reference")
    ckpt = tmp_path / "reference" / "checkpoints" / "last.ckpt"
    on_selection_set = checkpoint_scores(ckpt, reference_cfg, latents(0))
    assert on_selection_set["raw"]["modes"] == record["history"][chosen // 100 - 1]["raw"]["modes"]
    held_out = checkpoint_scores(ckpt, reference_cfg, latents(HELD_OUT_SEED))
    for net in ("raw", "ema"):
        assert record["best_selected"][net] == pytest.approx(held_out[net], rel=1e-9)
        # measured on the selection latents it would read this: a continuous metric, so never by chance
        assert record["best_selected"][net]["reverse_kl"] != pytest.approx(on_selection_set[net]["reverse_kl"])


@pytest.mark.slow
def test_a_resumed_run_keeps_the_choice_it_made_before_it_stopped(tmp_path, forced):
    uninterrupted = selection_run(tmp_path / "uninterrupted", "reverse_kl")
    with pytest.raises(SystemExit):
        selection_run(tmp_path / "resumed", "reverse_kl", stop_at=350)  # checkpointed after the best, at 300
    resumed = selection_run(tmp_path / "resumed", "reverse_kl")
    assert resumed["resumed_from_iteration"] == 351
    # the evaluations after the restart (400, 500, 600) are all worse than 300's: its G must come from the checkpoint
    assert resumed["best_selected_iteration"] == uninterrupted["best_selected_iteration"] == 300
    assert resumed["best_selected"] == uninterrupted["best_selected"]
    assert resumed["best_selected_on"] == uninterrupted["best_selected_on"]


def test_a_metric_the_data_does_not_measure_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics.select_metric=fid is not measured on data=ring8; choose one of: "
                                          r"reverse_kl, modes, hq"):
        train(make_cfg("metrics.select_best=true", "metrics.select_metric=fid"), tmp_path)
    assert not (tmp_path / "result.json").exists()


class OnlyTheSurface:
    """EvaluatedModule's members and nothing else (no G, EMA, hooks): the callbacks must need no more. Its
    eval_latent and generate act, so that skipping either changes the scores."""
    __slots__ = ("iteration", "global_rank", "device", "loggers", "raw", "average")

    def __init__(self):
        self.iteration, self.global_rank, self.device, self.loggers = 0, 0, torch.device("cpu"), []
        self.raw = nn.Linear(2, 3)
        self.average = copy.deepcopy(self.raw)

    def generators(self):
        return {"raw": self.raw, "ema": self.average}

    def eval_latent(self, z):
        return z.clamp(-0.5, 0.5)

    def generate(self, net, z):
        return net(z)[:, :2]

    def generator_modules(self):
        return {"G": self.raw, "G_ema": self.average}


class MeanScore:
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    extractor = extractor_id = None

    def score(self, samples):
        return {"mean": samples.mean().item()}


def expected_score(net, z):
    with torch.no_grad():
        return net(z.clamp(-0.5, 0.5))[:, :2].mean().item()


def test_evaluation_and_selection_see_the_module_only_through_the_evaluated_module_surface():
    assert isinstance(make_module(), EvaluatedModule)
    module, scorer = OnlyTheSurface(), MeanScore()
    evaluation = EvaluationCallback(scorer, every=1, latent_sets=LatentSets(64, 2, "gaussian", seed=0))
    selection = BestSelection(evaluation, "ema", "mean", direction=+1)
    chosen = None
    for it, shift in ((1, 5.0), (2, -5.0)):  # the EMA G of iteration 1 scores higher
        module.iteration = it
        with torch.no_grad():
            module.average.bias.add_(shift)
        chosen = chosen or copy.deepcopy(module.average)
        for callback in (evaluation, selection):
            callback.on_train_batch_end(None, module, {}, None, 0)
    assert evaluation.history[0]["ema"]["mean"] == pytest.approx(expected_score(chosen, scorer.z))
    assert evaluation.history[1]["raw"]["mean"] == pytest.approx(expected_score(module.raw, scorer.z))
    own = copy.deepcopy(module.average.state_dict())
    for callback in (evaluation, selection):
        callback.on_train_end(SimpleNamespace(callbacks=[]), module)
    assert selection.best["iteration"] == 1 and set(selection.best["weights"]) == {"G", "G_ema"}
    held_out = evaluation.latent_sets.draw(selection.held_out_seed)
    assert selection.held_out["ema"]["mean"] == pytest.approx(expected_score(chosen, held_out))
    assert all(torch.equal(v, own[k]) for k, v in module.average.state_dict().items())  # its own weights again
