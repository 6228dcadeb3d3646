"""Data held as one tensor: the training step slices it with indices drawn from (seed, iteration).

No per-sample loader work happens during training. Lightning's loop still wants a dataloader: it
yields iteration numbers only, so Lightning knows the run's length and shows a progress bar.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from gan_ablate.config import DataConfig


class IterationNumbers(Dataset):
    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> int:
        return self.start + i


class TensorDataModule(pl.LightningDataModule):
    """Subclasses implement `load()` -> (data, labels or None), data already scaled for training."""

    def __init__(self, cfg: DataConfig, max_steps: int):
        super().__init__()
        self.cfg = cfg
        self.max_steps = max_steps
        self.first_iteration = 0
        self.data: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def load(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

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


class TensorBatches:
    """Real batches sliced from the data tensor at indices drawn from torch's (per-iteration seeded)
    RNG, on the data's device: no loader work, and addressable by (seed, iteration)."""

    def __init__(self, data: torch.Tensor, batch_size: int):
        self.data, self.batch_size = data, batch_size
        self.last_index: torch.Tensor | None = None  # rows of the latest batch (its labels, for ACGAN)

    def __call__(self) -> torch.Tensor:
        self.last_index = torch.randint(self.data.shape[0], (self.batch_size,), device=self.data.device)
        return self.data[self.last_index]


class LoaderBatches:
    """The uncached path (data.cache=false): a shuffling DataLoader collating samples one by one."""

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
