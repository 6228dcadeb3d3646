"""PacGAN's data protocol (fjxmlzn/PacGAN synthetic_data_experiments/): a new data set per run seed
(data.points=per_seed) and epoch-wise shuffled batches (data.batches=epochs), resumable exactly."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import make_cfg, make_module
from gan_ablate.config import ConfigError, DataConfig, validate
from gan_ablate.data import build_datamodule
from gan_ablate.data.base import EpochBatches, TensorBatches
from gan_ablate.data.toy import ring_modes
from helpers import run_steps


def points(run_seed, **kw):
    return build_datamodule(DataConfig(**{"name": "ring8", "n_points": 300, **kw}), 10, run_seed).prepare().data


def test_per_seed_data_is_the_runs_own_and_fixed_data_is_every_runs():
    assert torch.equal(points(3, points="per_seed"), points(3, points="per_seed"))
    assert not torch.equal(points(3, points="per_seed"), points(4, points="per_seed"))
    assert not torch.equal(points(3, points="per_seed"), points(3, points="per_seed", data_seed=1))
    # fixed: one draw from data_seed whatever the run's seed, and not the per-seed draw of any run
    assert torch.equal(points(3), points(4))
    assert not torch.equal(points(0), points(0, points="per_seed"))
    with pytest.raises(ValueError, match="run_seed"):
        points(None, points="per_seed")


def test_per_seed_stacked_mnist_draws_its_triples_from_the_run_seed():
    def stacked(run_seed):
        cfg = DataConfig(name="stacked_mnist", n_points=50, channels=3, points="per_seed")
        return build_datamodule(cfg, 10, run_seed).prepare().labels

    assert torch.equal(stacked(1), stacked(1)) and not torch.equal(stacked(1), stacked(2))


def test_a_run_draws_its_data_from_its_own_seed(tmp_path, monkeypatch):
    """train() hands the run's seed to the data module: two seeds, two data sets, each the one its seed gives."""
    import gan_ablate.run

    built = []

    def spy(*args):
        built.append(build_datamodule(*args))
        return built[-1]

    monkeypatch.setattr(gan_ablate.run, "build_datamodule", spy)
    for seed in (1, 2):
        gan_ablate.run.train(make_cfg("data.points=per_seed", f"seed={seed}", "trainer.max_steps=1",
                                      "metrics.every=0", "checkpoint.every=0"), tmp_path / str(seed))
    assert not torch.equal(built[0].data, built[1].data)
    assert torch.equal(built[1].data, points(2, points="per_seed", n_points=2000))


def rows(batches, n):
    """The rows of the next n batches of `batches`, stored in a data tensor whose row i holds i."""
    return [batches().long().flatten() for _ in range(n)]


def test_an_epoch_visits_every_row_once_and_the_next_epoch_is_another_permutation():
    data = torch.arange(12.0)[:, None]
    batches = EpochBatches(data, 4, seed=0)
    first, second = torch.cat(rows(batches, 3)), torch.cat(rows(batches, 3))
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(12))
    assert not torch.equal(first, second) and not torch.equal(first, torch.arange(12))
    # the permutations come from (seed, epoch): the same for the same seed, other for another
    assert torch.equal(torch.cat(rows(EpochBatches(data, 4, seed=0), 3)), first)
    assert not torch.equal(torch.cat(rows(EpochBatches(data, 4, seed=1), 3)), first)


def test_a_batch_over_an_epochs_end_is_filled_up_from_the_next_epochs_permutation():
    """10 rows in batches of 4: the stream of epoch 0's permutation, then epoch 1's, cut into batches of 4."""
    data = torch.arange(10.0)[:, None]
    batches = rows(EpochBatches(data, 4, seed=5), 5)
    assert all(len(b) == 4 for b in batches)
    stream = torch.cat(batches)
    assert sorted(stream[:10].tolist()) == sorted(stream[10:].tolist()) == list(range(10))
    big = torch.cat(rows(EpochBatches(data, 25, seed=5), 1))  # a batch larger than the set spans three epochs
    assert len(big) == 25 and torch.equal(big[:20], stream) and len(set(big[20:].tolist())) == 5


def test_ddp_ranks_share_the_stream_each_taking_its_turn():
    """W ranks together draw what one device with a batch W times as large does: rank r the r-th part of each."""
    data = torch.arange(16.0)[:, None]
    single = rows(EpochBatches(data, 4, seed=2), 4)
    ranks = [rows(EpochBatches(data, 2, seed=2, rank=r, world=2), 4) for r in (0, 1)]
    for k in range(4):
        assert torch.equal(torch.cat([ranks[0][k], ranks[1][k]]), single[k])
    assert sorted(torch.cat(ranks[0] + ranks[1]).tolist()) == list(range(16))  # one epoch between them


def test_the_default_draws_with_replacement_and_epochs_is_what_the_module_uses():
    assert isinstance(make_module().draw_real, TensorBatches)
    assert isinstance(make_module("data.batches=epochs").draw_real, EpochBatches)


def test_a_checkpoint_without_real_batch_state_resumes_the_epoch_stream_from_its_start():
    """A checkpoint written before the stream kept state (no "real_batches") resumes it from nothing, not None."""
    first = make_module("data.batches=epochs", "data.n_points=200", "data.batch_size=32")
    resumed = make_module("data.batches=epochs", "data.n_points=200", "data.batch_size=32")
    resumed.on_load_checkpoint({"gan_ablate": {"iteration": 3, "tricks": {}}})
    resumed._trainer = SimpleNamespace(datamodule=SimpleNamespace(data=first.real_data, labels=first.real_labels),
                                       loggers=[], global_rank=0, should_stop=False)
    resumed.on_fit_start()
    assert resumed.draw_real.drawn == 0 and torch.equal(resumed.real_batch().x, first.real_batch().x)


def test_a_resumed_run_draws_the_batches_an_uninterrupted_one_does_with_their_labels():
    """Through training_step (2 D updates per iteration: the stream's position is not the iteration), a module
    saved after 3 iterations and restored as Lightning does (on_load_checkpoint, then on_fit_start attaches the
    data) draws at iterations 3-5 what an uninterrupted run draws there; each batch's labels are its rows' modes."""
    overrides = ("data.batches=epochs", "data.n_points=200", "data.batch_size=32", "optim.n_critic=2")

    def recording(module):
        drawn, real_batch = [], module.real_batch

        def record():
            real = real_batch()
            drawn.append(real)
            return real
        module.real_batch = record
        return drawn

    uninterrupted = make_module(*overrides)
    expected = recording(uninterrupted)
    run_steps(uninterrupted, 6)

    first = make_module(*overrides)
    run_steps(first, 3)
    checkpoint: dict = {}
    first.on_save_checkpoint(checkpoint)
    resumed = make_module(*overrides)
    data = SimpleNamespace(data=first.real_data, labels=first.real_labels)
    resumed.on_load_checkpoint(checkpoint)
    resumed._trainer = SimpleNamespace(datamodule=data, loggers=[], global_rank=0, should_stop=False)
    resumed.on_fit_start()
    got = recording(resumed)
    run_steps(resumed, 3)
    assert resumed.iteration == 6 and len(got) == len(expected) // 2 == 6
    for real, want in zip(got, expected[6:]):
        assert torch.equal(real.x, want.x) and torch.equal(real.labels, want.labels)
    assert not torch.equal(expected[0].x, expected[6].x)  # the stream moved on: a restart at 0 would differ
    x = torch.cat([r.x for r in expected])
    labels = torch.cat([r.labels for r in expected])
    assert (x - ring_modes()[labels]).norm(dim=1).max() < 0.1


@pytest.mark.parametrize("overrides, message", [
    (["data.points=each_run"], "data.points='each_run' is not allowed; choose one of: fixed, per_seed"),
    (["data.batches=shuffled"], "data.batches='shuffled' is not allowed; choose one of: replacement, epochs"),
    (["data=digits", "data.points=per_seed"],
     "data.points=per_seed draws the samples of ring8, grid25, stacked_mnist anew per run; data=digits is a fixed "
     "set: leave data.points=fixed"),
    (["data.batches=epochs", "dataset_cache=dataloader"],
     "data.batches=epochs slices the cached tensor (data.cache=true); data.cache=false draws through a shuffling "
     "DataLoader of its own"),
])
def test_bad_data_protocol_values_are_refused_in_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as refused:
        validate(make_cfg(*overrides))
    assert str(refused.value) == message


@pytest.mark.parametrize("preset", ["pacgan_ring", "pacgan_grid", "pacgan_ring_short", "pacgan_grid_short"])
def test_pacgan_presets_draw_the_authors_data_and_record_their_reverse_kl(preset):
    s = validate(make_cfg(f"experiment={preset}", tiny=False))
    assert (s.data.points, s.data.batches, s.data.n_points, s.data.batch_size) == ("per_seed", "epochs", 100_000, 100)
    assert s.metrics.reverse_kl == "high_quality"


@pytest.mark.parametrize("preset", ["stacked_mnist_pacgan", "stacked_mnist_pacgan_short"])
def test_the_stacked_mnist_preset_draws_its_set_per_seed_as_the_authors_code_does(preset):
    s = validate(make_cfg(f"experiment={preset}", tiny=False))
    assert (s.data.points, s.data.batches) == ("per_seed", "replacement")
