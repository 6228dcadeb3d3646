"""FID / IS / KID through torch-fidelity, with the domain classifier registered as a feature extractor.

torch-fidelity builds extractors itself from a name and `feature_extractor_weights_path`; the domain
extractor reads the classifier cached by gan_ablate.metrics.domain from that path (and its info.json).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from gan_ablate.metrics.domain import DomainClassifier

DOMAIN_EXTRACTOR = "gan-ablate-domain"


class DomainFeatureExtractor(FeatureExtractorBase):
    """Penultimate features of the domain classifier for FID/KID, its logits for IS."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError("the domain extractor needs feature_extractor_weights_path (a cached classifier.pt)")
        weights = Path(feature_extractor_weights_path)
        info = json.loads((weights.parent / "info.json").read_text())
        self.model = DomainClassifier(info["channels"], info["n_classes"])
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model.eval()

    @staticmethod
    def get_provided_features_list():
        return "features", "logits_unbiased"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        features, logits = self.model(x.float())
        out = {"features": features, "logits_unbiased": logits}
        return tuple(out[name] for name in self.features_list)


if DOMAIN_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(DOMAIN_EXTRACTOR, DomainFeatureExtractor)


class Samples(Dataset):
    """A tensor of images as the Dataset torch-fidelity reads."""

    def __init__(self, images: torch.Tensor):
        self.images = images.detach().cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def fidelity_metrics(fake: torch.Tensor, real: torch.Tensor, weights_path: Path, real_cache_name: str | None = None,
                     cache_root: Path | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                     isc_splits: int = 10) -> dict:
    """FID, KID (mean and std over subsets) and IS of `fake` against `real`, on the domain features.

    With `real_cache_name`, torch-fidelity stores the real set's features under that name in
    `cache_root` and reads them back on later calls instead of recomputing them."""
    kwargs = dict(
        input1=Samples(fake), input2=Samples(real), cuda=False, fid=True, kid=True, isc=True,
        feature_extractor=DOMAIN_EXTRACTOR, feature_extractor_weights_path=str(weights_path),
        kid_subsets=kid_subsets, kid_subset_size=min(kid_subset_size, len(fake), len(real)),
        isc_splits=isc_splits, verbose=False, save_cpu_ram=True, rng_seed=2020,
    )
    if real_cache_name is not None:
        kwargs.update(input2_cache_name=real_cache_name, cache=True, cache_root=str(cache_root))
    else:
        kwargs.update(cache=False)
    m = torch_fidelity.calculate_metrics(**kwargs)
    return {"fid": m["frechet_inception_distance"], "kid": m["kernel_inception_distance_mean"],
            "kid_std": m["kernel_inception_distance_std"], "is": m["inception_score_mean"],
            "is_std": m["inception_score_std"]}
