"""Mode metrics for 2-D mixtures, the PacGAN protocol (Lin et al. 2018, sec. 5.1).

A sample is high quality (HQ) when it lies less than `hq_sigmas` standard deviations from its nearest
mode (strictly less: `min_dis < dis_thre` in PacGAN's MetricLogger, fjxmlzn/PacGAN
synthetic_data_experiments/PacGAN/pacgan/extensions.py); a mode is covered when at least one HQ sample is
nearest to it. Reverse KL is KL(p || uniform) of a histogram p over the modes, in one of two definitions
(metrics.reverse_kl, gan_ablate/metrics/directions.py):
- nearest_mode: every sample counts for its nearest mode, HQ or not (this framework's first definition);
- high_quality: only the HQ samples count (the authors' MetricLogger keeps only them in `detail_of_coverage`,
  and the paper's reverse KL is log K minus its `entropy of coverage`). With no HQ sample the histogram is empty
  and the value undefined: nan, as the authors' 0/0 gives.
The one chosen is recorded as `reverse_kl`; choosing high_quality also records the other as
`reverse_kl_nearest_mode`. Precision, recall, density and coverage (gan_ablate/metrics/prdc_metrics.py)
compare the points with as many points drawn from the mixture.
"""
from __future__ import annotations

import math

import torch

from gan_ablate.data.toy import sample_mixture
from gan_ablate.metrics.prdc_metrics import PRC_NEIGHBORHOOD, PRDC_NEAREST_K, precision_recall_density_coverage

REAL_SEED = 0  # one fixed draw of the mixture: every evaluation of every run compares with the same real points


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || uniform) of the histogram `counts` over K modes, log K - H(p); empty modes add nothing (0 log 0 = 0,
    as scipy.stats.entropy counts them); nan for an empty histogram."""
    total = counts.sum()
    if total == 0:
        return math.nan
    p = counts.double() / total
    nz = p > 0
    return float((p[nz] * (p[nz] * len(counts)).log()).sum())


def mode_metrics(samples: torch.Tensor, modes: torch.Tensor, std: float, hq_sigmas: float = 3.0,
                 reverse_kl: str = "nearest_mode") -> dict:
    samples, modes = samples.double(), modes.double().to(samples.device)
    dist, nearest = torch.cdist(samples, modes).min(dim=1)
    hq = dist < hq_sigmas * std
    n_modes = modes.shape[0]
    hq_counts = torch.bincount(nearest[hq], minlength=n_modes)
    histograms = {"nearest_mode": torch.bincount(nearest, minlength=n_modes), "high_quality": hq_counts}
    metrics = {"modes": int((hq_counts > 0).sum()), "hq": float(hq.double().mean()),
               "reverse_kl": kl_to_uniform(histograms[reverse_kl])}
    if reverse_kl != "nearest_mode":  # the first definition stays on record beside the one chosen
        metrics["reverse_kl_nearest_mode"] = kl_to_uniform(histograms["nearest_mode"])
    return metrics


class ModeEvaluator:
    """Scores generated points on the mixture's modes; `z` is the fixed latent batch to evaluate on."""

    extractor = extractor_id = "mode_metrics"

    def __init__(self, modes: torch.Tensor, std: float, z: torch.Tensor, hq_sigmas: float = 3.0,
                 prc_neighborhood: int = PRC_NEIGHBORHOOD, prdc_nearest_k: int = PRDC_NEAREST_K,
                 reverse_kl: str = "nearest_mode"):
        self.modes, self.std, self.z, self.hq_sigmas, self.reverse_kl = modes, std, z, hq_sigmas, reverse_kl
        self.prc_neighborhood, self.prdc_nearest_k = prc_neighborhood, prdc_nearest_k

    def score(self, samples: torch.Tensor) -> dict:
        points = samples.flatten(1)
        real, _ = sample_mixture(self.modes, self.std, len(points), torch.Generator().manual_seed(REAL_SEED))
        return {**mode_metrics(points, self.modes, self.std, self.hq_sigmas, self.reverse_kl),
                **precision_recall_density_coverage(real, points, self.prc_neighborhood, self.prdc_nearest_k)}
