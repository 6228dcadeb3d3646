"""metrics.eval_repeats=K: the final raw and EMA G scored on K latent sets of their own, named in the record by their
seeds, reproducible from the run's seed, the headline metrics untouched."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cfg
from gan_ablate.callbacks.checkpoint import read_checkpoint
from gan_ablate.config import validate
from gan_ablate.data import build_datamodule
from gan_ablate.metrics.modes import ModeEvaluator
from gan_ablate.module import GANModule
from gan_ablate.nets.layers import sample_latent
from gan_ablate.run import train

RUN = ["trainer.max_steps=100", "metrics.every=50", "checkpoint.every=50"]


def latents(seed: int, n: int = 200, z_dim: int = 2) -> torch.Tensor:
    """The tiny ring8 runs' latent set from `seed` (model.z_dim of the mlp model, gaussian)."""
    return sample_latent(n, z_dim, "gaussian", generator=torch.Generator().manual_seed(seed))


def checkpoint_scores(ckpt: Path, cfg, z: torch.Tensor, state: str = "state_dict") -> dict:
    """The mixture metrics of a checkpoint's raw and EMA G on `z`, scored here without the evaluation callback.
    `state`: the checkpoint's nets, or a callable picking G/G_ema weights out of the checkpoint."""
    settings = validate(cfg)
    dm = build_datamodule(settings.data, settings.trainer.max_steps).prepare()
    module = GANModule(settings, dm.sample_shape, dm.n_classes)
    checkpoint = read_checkpoint(ckpt)
    if callable(state):
        for name, weights in state(checkpoint).items():
            getattr(module, name).load_state_dict(weights)
    else:
        module.load_state_dict(checkpoint[state])
    m = settings.metrics
    evaluator = ModeEvaluator(dm.modes(), settings.data.std, z, m.hq_sigmas, m.prc_neighborhood, m.prdc_nearest_k)
    with torch.no_grad():
        return {net: evaluator.score(g.eval()(z)) for net, g in (("raw", module.G), ("ema", module.G_ema.module))}


def test_repeat_latent_seeds_come_from_the_runs_seed_through_seed_sequence():
    from gan_ablate.callbacks.evaluation import REPEATS, LatentSets

    sets = LatentSets(200, 2, "gaussian", seed=4)
    seeds = [sets.seed_of(REPEATS, k) for k in range(3)]
    assert seeds == [int(np.random.SeedSequence(4, spawn_key=(REPEATS, k)).generate_state(1, np.uint64)[0])
                     for k in range(3)]
    assert len(set(seeds)) == 3 and 4 not in seeds
    assert seeds != [LatentSets(200, 2, "gaussian", seed=5).seed_of(REPEATS, k) for k in range(3)]
    assert torch.equal(sets.draw(seeds[1]), latents(seeds[1]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs with eval_repeats=3 (same seed) and one with the default, in their folders."""
    root = tmp_path_factory.mktemp("repeats")
    return {name: (train(make_cfg(*RUN, *extra), root / name).data, root / name)
            for name, extra in (("first", ["metrics.eval_repeats=3"]), ("again", ["metrics.eval_repeats=3"]),
                                ("default", []))}


@pytest.mark.slow
def test_the_record_holds_k_repeats_per_net_on_distinct_latent_sets(runs):
    record, _ = runs["first"]
    repeats = record["eval_repeats"]
    assert repeats["periodic_latent_seed"] == 0 and len(set(repeats["latent_seeds"])) == 3
    for net in ("raw", "ema"):
        assert len(repeats[net]) == 3
        values = [r["reverse_kl"] for r in repeats[net]]
        # reverse KL of 200 samples is continuous: equal values would mean one latent set scored three times
        assert len(set(values + [record["metrics"][net]["reverse_kl"]])) == 4


@pytest.mark.slow
def test_repeats_are_the_final_gs_scores_on_the_latent_sets_the_record_names(runs):
    record, run_dir = runs["first"]
    cfg = make_cfg(*RUN, "metrics.eval_repeats=3")
    for k, seed in enumerate(record["eval_repeats"]["latent_seeds"]):
        expected = checkpoint_scores(run_dir / "checkpoints" / "last.ckpt", cfg, latents(seed))
        for net in ("raw", "ema"):
            assert record["eval_repeats"][net][k] == pytest.approx(expected[net], rel=1e-9)


@pytest.mark.slow
def test_repeats_are_reproducible_and_leave_the_headline_metrics_as_they_were(runs):
    (first, _), (again, _), (default, _) = runs["first"], runs["again"], runs["default"]
    assert again["eval_repeats"] == first["eval_repeats"]
    assert first["metrics"] == default["metrics"] and first["history"] == default["history"]
    assert "eval_repeats" not in default


def test_repeats_of_an_image_run_without_metrics_are_refused(tmp_path):
    from gan_ablate.config import ConfigError

    with pytest.raises(ConfigError, match=r"metrics.eval_repeats=3 needs metrics.*metrics.extractor=domain"):
        train(make_cfg("data=digits", "metrics.extractor=none", "metrics.eval_repeats=3"), tmp_path)
    assert not (tmp_path / "result.json").exists()


@pytest.mark.slow
def test_ddp_spawn_ranks_share_the_repeats_and_the_record_gets_them(tmp_path):
    record = train(make_cfg("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn",
                            "trainer.max_steps=40", "metrics.every=20", "metrics.eval_repeats=2",
                            "metrics.select_best=true"), tmp_path).data
    assert record["status"] == "ok"
    assert [len(record["eval_repeats"][net]) for net in ("raw", "ema")] == [2, 2]
    assert record["best_selected_iteration"] in (20, 40) and set(record["best_selected"]) == {"raw", "ema"}
