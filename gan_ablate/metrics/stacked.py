"""Mode metrics for stacked MNIST: each channel is classified as a digit, the triple is the mode."""
from __future__ import annotations

import torch

from gan_ablate.metrics.domain import DomainClassifier

N_MODES = 1000


@torch.no_grad()
def stacked_modes(images: torch.Tensor, classifier: DomainClassifier, batch: int = 1000) -> torch.Tensor:
    """The mode (100 a + 10 b + c) of every 3-channel image, channels classified one by one."""
    classifier.eval()
    modes = []
    for chunk in images.split(batch):
        digits = torch.stack([classifier(chunk[:, c:c + 1].float())[1].argmax(1) for c in range(3)], dim=1)
        modes.append(digits @ torch.tensor([100, 10, 1], device=digits.device))
    return torch.cat(modes)


def mode_coverage(modes: torch.Tensor) -> dict:
    """Modes covered (>= 1 sample) and KL(generated histogram || uniform over the 1,000 modes)."""
    p = torch.bincount(modes.cpu(), minlength=N_MODES).double() / len(modes)
    nz = p > 0
    return {"modes": int(nz.sum()), "kl": float((p[nz] * (p[nz] * N_MODES).log()).sum())}


class StackedMnistEvaluator:
    def __init__(self, z: torch.Tensor, classifier: DomainClassifier, info: dict):
        self.z, self.classifier, self.info = z, classifier, info
        self.extractor = "domain"
        self.extractor_id = f"stacked-modes/{info['extractor']}"

    def score(self, samples: torch.Tensor) -> dict:
        return {**mode_coverage(stacked_modes(samples.cpu(), self.classifier)), "n_samples": len(samples)}
