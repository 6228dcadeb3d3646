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


# Soft or flipped targets only mean something for losses that regress D's output to targets.
TARGETLESS_LOSSES = ("loss=wgan", "loss=wgan_gp", "loss=hinge", "loss=ebgan", "loss=began")
LabelSmoothing.conflicts = TARGETLESS_LOSSES


@register
class OneSidedLabelSmoothing(Trick):
    """Real target `real` (0.9), fake target stays 0 (Salimans et al. 2016, sec. 3.4)."""
    name = "one_sided_label_smoothing"
    conflicts = TARGETLESS_LOSSES + ("label_smoothing",)

    @dataclass
    class Params:
        real: float = 0.9

        def __post_init__(self):
            if not 0.0 < self.real <= 1.0:
                raise ConfigError(f"real={self.real} must lie in (0, 1]")

    def d_targets(self, real_t, fake_t, ctx):
        return torch.full_like(real_t, self.params.real), fake_t


@register
class NoisyLabels(Trick):
    """Each D target is flipped (t -> 1 - t) with probability p (ganhacks #7)."""
    name = "noisy_labels"
    conflicts = TARGETLESS_LOSSES

    @dataclass
    class Params:
        p: float = 0.05

        def __post_init__(self):
            if not 0.0 <= self.p <= 1.0:
                raise ConfigError(f"p={self.p} must lie in [0, 1]")

    def d_targets(self, real_t, fake_t, ctx):
        def flip(t):
            return torch.where(torch.rand_like(t) < self.params.p, 1.0 - t, t)
        return flip(real_t), flip(fake_t)
