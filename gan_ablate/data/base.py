"""Data held as one tensor: the training step slices it with indices drawn from (seed, iteration), or
(data.batches=epochs) from (seed, epoch) and the number of batches drawn.

No per-sample loader work happens during training. Lightning's loop still wants a dataloader: it
yields iteration numbers only, so Lightning knows the run's length and shows a progress bar.
"""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from gan_ablate.config import DataConfig

# tags that keep the seeds derived from one run seed apart: the per-run points and the epochs' permutations
# share no random numbers with each other, nor with the nets' initialisation from the run seed itself
POINTS_STREAM, PERMUTATION_STREAM = 1, 2


def derived_seed(*keys: int) -> int:
    """A well-mixed 64-bit seed for a tuple of non-negative integers (numpy's SeedSequence): distinct tuples
    give unrelated generators."""
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0])


class IterationNumbers(Dataset):
    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> int:
        return self.start + i


class TensorDataModule(pl.LightningDataModule):
    """Subclasses implement `load()` -> (data, labels or None), data already scaled for training."""

    def __init__(self, cfg: DataConfig, max_steps: int, run_seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.max_steps = max_steps
        self.run_seed = run_seed  # the training seed: data.points=per_seed draws the data from it
        self.first_iteration = 0
        self.data: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def load(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def points_seed(self) -> int:
        """The seed the data set is drawn from: data_seed for every run, or (data.points=per_seed) one derived from
        the run's seed and data_seed. PacGAN's code draws a new set per run (fjxmlzn/PacGAN pacgan/datasets.py
        GaussianPackingMixture, seeded by a per-run fuel seed); its rows are then a with-replacement resample of
        those points (`ids = np.random.randint(...)`, one per pack column), here the points themselves: each row
        has the same distribution, the resample only adds duplicates."""
        if self.cfg.points == "fixed":
            return self.cfg.data_seed
        if self.run_seed is None:
            raise ValueError("data.points=per_seed draws the data from the run's seed: "
                             "build_datamodule(..., run_seed=)")
        return derived_seed(POINTS_STREAM, self.run_seed, self.cfg.data_seed)

    def prepare(self) -> "TensorDataModule":
        """Load eagerly, so a bad path fails before the Trainer starts."""
        if self.data is None:
            self.data, self.labels = self.load()
        return self

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    @property
    def n_classes(self) -> int | None:
        labels = self.prepare().labels
        return None if labels is None else int(labels.max()) + 1

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.prepare().data.shape[1:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(IterationNumbers(self.first_iteration, self.max_steps), batch_size=None,
                          shuffle=False, num_workers=0)


class NothingToCheckpoint:
    """A real-batch stream that keeps nothing in the checkpoint (TensorBatches: its draws follow from the
    iteration's seeded RNG alone)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TensorBatches(NothingToCheckpoint):
    """Real batches sliced from the data tensor at indices drawn from torch's (per-iteration seeded)
    RNG, on the data's device: no loader work, and addressable by (seed, iteration)."""

    def __init__(self, data: torch.Tensor, batch_size: int):
        self.data, self.batch_size = data, batch_size
        self.last_index: torch.Tensor | None = None  # rows of the latest batch (its labels, for ACGAN)

    def __call__(self) -> torch.Tensor:
        self.last_index = torch.randint(self.data.shape[0], (self.batch_size,), device=self.data.device)
        return self.data[self.last_index]


class LoaderBatches(NothingToCheckpoint):
    """The uncached path (data.cache=false): a shuffling DataLoader collating samples one by one. Its
    iterator is not checkpointed: a resumed run starts a new pass (data.batches=epochs resumes exactly)."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int):
        from torch.utils.data import TensorDataset

        self.device = data.device
        rows = torch.arange(len(data))
        self.loader = DataLoader(TensorDataset(data.cpu(), rows), batch_size=batch_size, shuffle=True,
                                 drop_last=True, generator=torch.Generator().manual_seed(seed))
        self.iterator = iter(self.loader)
        self.last_index: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        try:
            batch, index = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            batch, index = next(self.iterator)
        self.last_index = index.to(self.device)
        return batch.to(self.device, non_blocking=True)


class EpochBatches:
    """Epoch-wise shuffled batches (data.batches=epochs), as PacGAN's 2-D code draws them: fuel's
    ShuffledScheme (fjxmlzn/PacGAN synthetic_data_experiments/PacGAN/pacgan/streams.py) gives each epoch a fresh
    permutation of the rows and takes the batches from it in order, so an epoch visits every row once.

    The rows form one endless stream, epoch after epoch. The permutation of epoch e comes from (seed, e) alone and
    the only state is how many batches this rank has drawn (`state_dict`, kept in the checkpoint): a resumed run
    draws what an uninterrupted one does. Where batch_size divides the set (the presets: 100 of 100k) this is the
    authors' scheme exactly; elsewhere the epoch's last batch is filled up from the next epoch's permutation, where
    fuel would give a short one, so every step sees a full batch. Under DDP the W ranks share the stream and rank r
    takes the r-th of every W consecutive batches: together they draw what one device with a batch W times as
    large does, and each epoch still visits every row once."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.data, self.batch_size, self.seed, self.rank, self.world = data, batch_size, seed, rank, world
        self.drawn = 0
        self.epoch, self.order = -1, torch.empty(0, dtype=torch.long)  # the latest epoch's permutation
        self.last_index: torch.Tensor | None = None  # rows of the latest batch (its labels, for ACGAN)

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self.epoch:  # epochs only move forward: one cached permutation is enough
            draw = torch.Generator().manual_seed(derived_seed(PERMUTATION_STREAM, self.seed, epoch))
            self.epoch, self.order = epoch, torch.randperm(len(self.data), generator=draw).to(self.data.device)
        return self.order

    def __call__(self) -> torch.Tensor:
        n = len(self.data)
        start = (self.drawn * self.world + self.rank) * self.batch_size  # where this batch starts in the stream
        first, last = start // n, (start + self.batch_size - 1) // n  # the epochs it spans
        order = (self.permutation(first) if first == last
                 else torch.cat([self.permutation(e) for e in range(first, last + 1)]))
        self.drawn += 1
        self.last_index = order[start - first * n:start - first * n + self.batch_size]
        return self.data[self.last_index]

    def state_dict(self) -> dict:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.drawn = state.get("drawn", 0)


def real_batches(data: torch.Tensor, cfg: DataConfig, batch_size: int, seed: int, rank: int = 0, world: int = 1):
    """The real-batch stream data.batches and data.cache ask for, of `batch_size` rows (data.batch_size, or m times
    it when a trick packs m samples per input of D)."""
    if cfg.batches == "epochs":
        return EpochBatches(data, batch_size, seed, rank, world)
    return TensorBatches(data, batch_size) if cfg.cache else LoaderBatches(data, batch_size, seed)
