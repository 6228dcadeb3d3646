"""Tricks on the latent vectors."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_ablate.config import ConfigError
from gan_ablate.tricks.base import Trick, register


def truncate(z: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """Resample every component of z whose magnitude exceeds `threshold` (BigGAN's truncation trick)."""
    z = z.clone()
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator).to(z.device, z.dtype)
        outside = z.abs() > threshold
    return z


@register
class Truncation(Trick):
    """Evaluate on truncated z: components beyond the threshold resampled (Brock et al. 2019)."""
    name = "truncation"

    @dataclass
    class Params:
        threshold: float = 1.0

        def __post_init__(self):
            if self.threshold <= 0:
                raise ConfigError(f"threshold={self.threshold} must be > 0")

    def eval_latent(self, z):
        return truncate(z, self.params.threshold, torch.Generator().manual_seed(0))
