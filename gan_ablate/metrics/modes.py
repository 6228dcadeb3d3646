"""Mode metrics for 2-D mixtures, the PacGAN protocol (Lin et al. 2018, sec. 5.1).

A sample is high quality (HQ) when it lies less than `hq_sigmas` standard deviations from its nearest
mode (strictly less: `min_dis < dis_thre` in PacGAN's MetricLogger, fjxmlzn/PacGAN); a mode is covered
when at least one HQ sample is nearest to it. Reverse KL is KL(generated || real) between mode
histograms: every sample is assigned to its nearest mode and the real histogram is uniform over the modes.
Precision, recall, density and coverage (gan_ablate/metrics/prdc_metrics.py) compare the points with as many
points drawn from the mixture.
"""
from __future__ import annotations


import torch

from gan_ablate.data.toy import sample_mixture
from gan_ablate.metrics.prdc_metrics import PRC_NEIGHBORHOOD, PRDC_NEAREST_K, precision_recall_density_coverage

REAL_SEED = 0  # one fixed draw of the mixture: every evaluation of every run compares with the same real points


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

    def __init__(self, modes: torch.Tensor, std: float, z: torch.Tensor, hq_sigmas: float = 3.0,
                 prc_neighborhood: int = PRC_NEIGHBORHOOD, prdc_nearest_k: int = PRDC_NEAREST_K):
        self.modes, self.std, self.z, self.hq_sigmas = modes, std, z, hq_sigmas
        self.prc_neighborhood, self.prdc_nearest_k = prc_neighborhood, prdc_nearest_k

    def score(self, samples: torch.Tensor) -> dict:
        points = samples.flatten(1)
        real, _ = sample_mixture(self.modes, self.std, len(points), torch.Generator().manual_seed(REAL_SEED))
        return {**mode_metrics(points, self.modes, self.std, self.hq_sigmas),
                **precision_recall_density_coverage(real, points, self.prc_neighborhood, self.prdc_nearest_k)}
