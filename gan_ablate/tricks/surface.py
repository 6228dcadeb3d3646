"""What a trick's hooks may use of the GAN being trained: the nets, the config, the data's shape and
classes, real batches with their labels, the device, D as the step applies it, and one way to replace a net.

GANModule implements this; tricks are typed against it, not against the LightningModule, so a trick
cannot come to depend on the module's other attributes (tests/test_trick_surface.py checks that every
`gan.<name>` in tricks/ is named here). A leaf module: it imports nothing that imports tricks.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from gan_ablate.config import TrainConfig


class RealBatch(NamedTuple):
    """A batch of real samples (as prepare_data left them) and the class labels of those rows."""
    x: torch.Tensor
    labels: torch.Tensor | None  # None: the data is unlabelled


@runtime_checkable
class TrickSurface(Protocol):
    # read-only here: a trick that swaps a net says so through replace_net
    @property
    def G(self) -> nn.Module: ...

    @property
    def D(self) -> nn.Module: ...

    @property
    def cfg(self) -> TrainConfig: ...

    @property
    def sample_shape(self) -> tuple[int, ...]: ...

    @property
    def n_classes(self) -> int | None: ...

    @property
    def device(self) -> torch.device: ...

    def real_batch(self) -> RealBatch:
        """A fresh real batch with its labels, drawn from the iteration's seeded stream."""

    def discriminate(self, x: torch.Tensor, ctx) -> torch.Tensor:
        """D's outputs for x as the training step takes them: x through every trick's d_input, then D
        (`ctx`: the step's StepContext); differentiable in x, for penalties on D's input gradient."""

    def replace_net(self, which: Literal["G", "D"], net: nn.Module) -> None:
        """Put `net` in place of G or D; only in `setup`, before the EMA copy and the optimisers see the nets."""
