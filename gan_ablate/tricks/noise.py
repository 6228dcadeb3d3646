"""Tricks that add noise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from gan_ablate.config import check_range
from gan_ablate.tricks.base import Trick, register


@register
class InstanceNoise(Trick):
    """Gaussian noise on every D input, so real and fake distributions overlap early in training."""
    name = "instance_noise"

    @dataclass
    class Params:
        std: float = 0.1
        decay_steps: Optional[int] = None   # None: decay to 0 over the whole run

        def __post_init__(self):
            check_range("std", self.std, 0)
            check_range("decay_steps", self.decay_steps, 1, nullable=True)

    def std_at(self, iteration: int, max_steps: int) -> float:
        horizon = self.params.decay_steps or max_steps
        return self.params.std * max(0.0, 1.0 - iteration / horizon)

    def d_input(self, x, ctx):
        std = self.std_at(ctx.iteration, ctx.max_steps)
        if std == 0.0:
            return x
        return x + std * torch.randn_like(x)
