"""Mode metrics for 2-D mixtures, the PacGAN protocol (Lin et al. 2018, sec. 5.1).

A sample is high quality (HQ) when it lies within `hq_sigmas` standard deviations of its nearest
mode; a mode is covered when at least one HQ sample is nearest to it. Reverse KL is
KL(generated || real) between mode histograms: every sample is assigned to its nearest mode and the
real histogram is uniform over the modes.
"""
from __future__ import annotations


import torch
from torch import nn


def mode_metrics(samples: torch.Tensor, modes: torch.Tensor, std: float, hq_sigmas: float = 3.0) -> dict:
    samples, modes = samples.double(), modes.double().to(samples.device)
    dist, nearest = torch.cdist(samples, modes).min(dim=1)
    hq = dist <= hq_sigmas * std
    n_modes = modes.shape[0]
    hq_counts = torch.bincount(nearest[hq], minlength=n_modes)
    p = torch.bincount(nearest, minlength=n_modes).double() / samples.shape[0]
    nz = p > 0
    reverse_kl = (p[nz] * (p[nz] * n_modes).log()).sum()
    return {
        "modes": int((hq_counts > 0).sum()),
        "hq": float(hq.double().mean()),
        "reverse_kl": float(reverse_kl),
    }


class ModeEvaluator:
    """Evaluates a generator on a fixed set of latent vectors (drawn once from the run's seed)."""

    extractor = "mode_metrics"

    def __init__(self, modes: torch.Tensor, std: float, n_samples: int, z_dim: int, seed: int,
                 hq_sigmas: float = 3.0):
        self.modes, self.std, self.hq_sigmas = modes, std, hq_sigmas
        self.z = torch.randn(n_samples, z_dim, generator=torch.Generator().manual_seed(seed))
        self.n_modes = modes.shape[0]

    @torch.no_grad()
    def samples(self, generator: nn.Module, device: torch.device) -> torch.Tensor:
        return generator(self.z.to(device)).flatten(1)

    def score(self, samples: torch.Tensor) -> dict:
        return mode_metrics(samples, self.modes, self.std, self.hq_sigmas)
