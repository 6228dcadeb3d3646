"""Tricks on the latent vectors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gan_ablate.config import TrickConflict, check_range
from gan_ablate.nets.layers import sample_latent
from gan_ablate.tricks.base import Trick, register

# The seed of the stream that resamples evaluation latents: no run's (runs use small seeds; an ablation's count
# from 0), and torch's CPU generator reads only a seed's low 32 bits. The evaluation z is drawn from the run's
# seed (evaluators.evaluation_latent): resampled from that same stream, the replaced components would be copies of z's
# own, shared between samples.
RESAMPLE_SEED = 2**32 - 1


def truncate(z: torch.Tensor, threshold: float, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """Resample every component of z whose magnitude exceeds `threshold` from the prior (`draw(n)`:
    n fresh components) until none does (BigGAN's truncation trick)."""
    z = z.clone()
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = draw(int(outside.sum())).to(z.device, z.dtype)
        outside = z.abs() > threshold
    return z


@register
class Truncation(Trick):
    """Evaluate on truncated z (Brock et al. 2019, sec. 3.1): components beyond the threshold resampled
    from the run's prior, N(0, 1) or U(-1, 1) (model.latent), so that z follows the prior truncated to
    [-threshold, threshold]. Under U(-1, 1) a threshold of 1 or more would change nothing: refused."""
    name = "truncation"
    revision = 2
    revision_note = "before: resampled from N(0, 1) whatever the run's prior"

    @dataclass
    class Params:
        threshold: float = 1.0

        def __post_init__(self):
            check_range("threshold", self.threshold, 0, low_open=True)

    def setup(self, gan):
        self.latent = gan.cfg.model.latent
        if self.latent == "uniform" and self.params.threshold >= 1.0:
            raise TrickConflict(f"trick.truncation.threshold={self.params.threshold} truncates nothing of "
                                "latent=uniform_z's U(-1, 1): choose a threshold below 1")

    def eval_latent(self, z):
        generator = torch.Generator().manual_seed(RESAMPLE_SEED)
        return truncate(z, self.params.threshold,
                        lambda n: sample_latent(n, 1, self.latent, generator=generator).flatten())
