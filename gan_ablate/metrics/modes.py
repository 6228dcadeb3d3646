"""Mode metrics for 2-D mixtures, the PacGAN protocol (Lin et al. 2018, sec. 5.1).

A sample is high quality (HQ) when it lies less than `hq_sigmas` standard deviations from its nearest
mode (strictly less: `min_dis < dis_thre` in PacGAN's MetricLogger, fjxmlzn/PacGAN); a mode is covered
when at least one HQ sample is nearest to it. Reverse KL is KL(generated || real) between mode
histograms: every sample is assigned to its nearest mode and the real histogram is uniform over the modes.
"""
from __future__ import annotations


import torch


def mode_metrics(samples: torch.Tensor, modes: torch.Tensor, std: float, hq_sigmas: float = 3.0) -> dict:
    samples, modes = samples.double(), modes.double().to(samples.device)
    dist, nearest = torch.cdist(samples, modes).min(dim=1)
    hq = dist < hq_sigmas * std
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
    """Scores generated points on the mixture's modes; `z` is the fixed latent batch to evaluate on."""

    extractor = extractor_id = "mode_metrics"

    def __init__(self, modes: torch.Tensor, std: float, z: torch.Tensor, hq_sigmas: float = 3.0):
        self.modes, self.std, self.z, self.hq_sigmas = modes, std, z, hq_sigmas

    def score(self, samples: torch.Tensor) -> dict:
        return mode_metrics(samples.flatten(1), self.modes, self.std, self.hq_sigmas)
