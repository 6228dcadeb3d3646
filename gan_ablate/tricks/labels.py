"""Tricks on D's targets."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_ablate.config import ConfigError
from gan_ablate.tricks.base import Trick, register


@register
class LabelSmoothing(Trick):
    """Soft labels: each real target ~ U(real_low, real_high), each fake target ~ U(fake_low, fake_high)."""
    name = "label_smoothing"

    @dataclass
    class Params:
        real_low: float = 0.7
        real_high: float = 1.2
        fake_low: float = 0.0
        fake_high: float = 0.3

        def __post_init__(self):
            if not (self.real_low <= self.real_high and self.fake_low <= self.fake_high):
                raise ConfigError("real_low/fake_low must not exceed real_high/fake_high")

    def d_targets(self, real_t, fake_t, ctx):
        p = self.params
        real_t = torch.empty_like(real_t).uniform_(p.real_low, p.real_high)
        fake_t = torch.empty_like(fake_t).uniform_(p.fake_low, p.fake_high)
        return real_t, fake_t
