"""FID / IS / KID, precision / recall / density / coverage through torch-fidelity, with the domain classifier
registered as a feature extractor.

torch-fidelity builds extractors itself from a name and `feature_extractor_weights_path`; the domain
extractor reads the classifier cached by gan_ablate.metrics.domain from that path (and its info.json).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_featuresdict_to_statistics_cached, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_featuresdict_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import (create_feature_extractor, extract_featuresdict_from_input_id_cached,
                                  get_cacheable_input_name, resolve_feature_layer_for_metric)

from gan_ablate.metrics.domain import DomainClassifier
from gan_ablate.metrics.prdc_metrics import PRC_NEIGHBORHOOD, PRDC_NEAREST_K, precision_recall_density_coverage

DOMAIN_EXTRACTOR = "gan-ablate-domain"
INCEPTION_EXTRACTOR = "inception-v3-compat"
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


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


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (or [0, 1]) floats -> uint8 RGB, what torch-fidelity's Inception expects."""
    x = images.detach().cpu()
    x = (x + 1) / 2 if x.min() < 0 else x
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


# torch-fidelity's registered reference sets, by our data name: with the Inception extractor, FID/KID are
# measured against the whole registered set (features cached by torch-fidelity), as papers report them.
REGISTERED_REFERENCES = {"cifar10": "cifar10-train"}
REGISTERED_REFERENCES_SIZE = {"cifar10-train": 50_000}


def registered_reference(data_name: str, root: str | None, extractor: str) -> tuple[str, Path] | None:
    """(torch-fidelity's data set name, the folder it reads) where FID/KID use a registered reference."""
    if extractor != INCEPTION_EXTRACTOR or data_name not in REGISTERED_REFERENCES or root is None:
        return None
    return REGISTERED_REFERENCES[data_name], Path(root).expanduser()


def fidelity_metrics(fake: torch.Tensor, real: torch.Tensor | None, weights_path: Path | None,
                     real_cache_name: str | None = None, cache_root: Path | None = None, kid_subsets: int = 100,
                     kid_subset_size: int = 1000, isc_splits: int = 10, extractor: str = DOMAIN_EXTRACTOR,
                     registered: tuple[str, Path] | None = None, cuda: bool = False,
                     prc_neighborhood: int = PRC_NEIGHBORHOOD, prdc_nearest_k: int = PRDC_NEAREST_K) -> dict:
    """FID, KID (mean and std over subsets), IS, and precision, recall, density and coverage of `fake` against
    `real`, all on the features of one extractor.

    With `real_cache_name`, torch-fidelity stores the real set's features under that name in
    `cache_root` and reads them back on later calls instead of recomputing them. With
    `registered=(name, root)` the reference is torch-fidelity's registered data set `name` read from
    `root` (never downloaded here), cached the same way. Precision, recall, density and coverage compare
    the generated samples with as many reference samples, the first ones (the papers' protocol; prdc's
    real-to-real distances of a 50,000-image reference alone would take 10 GB)."""
    if extractor == INCEPTION_EXTRACTOR:
        fake = to_uint8_rgb(fake)
        real = None if real is None else to_uint8_rgb(real)
    n_real = REGISTERED_REFERENCES_SIZE.get(registered[0], kid_subset_size) if registered else len(real)
    kwargs = dict(
        input1=Samples(fake), cuda=cuda, feature_extractor=extractor, kid_subsets=kid_subsets,
        kid_subset_size=min(kid_subset_size, len(fake), n_real),
        isc_splits=isc_splits, verbose=False, save_cpu_ram=True, rng_seed=2020,
    )
    if weights_path is not None:
        kwargs["feature_extractor_weights_path"] = str(weights_path)
    if registered is not None:
        name, root = registered
        kwargs.update(input2=name, datasets_root=str(Path(root).expanduser()), datasets_download=False,
                      cache=True, cache_root=str(cache_root))
    elif real_cache_name is not None:
        kwargs.update(input2=Samples(real), input2_cache_name=real_cache_name, cache=True, cache_root=str(cache_root))
    else:
        kwargs.update(input2=Samples(real), cache=False)
    # torch-fidelity's calculate_metrics step by step (its calculate_metrics_one_feature_extractor), so that
    # the features it extracts once give density and coverage too, which it does not compute
    layers = {metric: resolve_feature_layer_for_metric(metric, **kwargs) for metric in ("isc", "fid", "kid", "prc")}
    network = create_feature_extractor(extractor, sorted(set(layers.values())), **kwargs)
    fake_features, real_features = (extract_featuresdict_from_input_id_cached(i, network, **kwargs) for i in (1, 2))
    fid_statistics = [fid_featuresdict_to_statistics_cached(features, get_cacheable_input_name(i, **kwargs), network,
                                                            layers["fid"], **kwargs)
                      for i, features in ((1, fake_features), (2, real_features))]
    m = {**isc_featuresdict_to_metric(fake_features, layers["isc"], **kwargs),
         **fid_statistics_to_metric(*fid_statistics, verbose=False),
         **kid_featuresdict_to_metric(fake_features, real_features, layers["kid"], **kwargs)}
    real_prc, fake_prc = real_features[layers["prc"]][: len(fake)], fake_features[layers["prc"]]
    manifold = precision_recall_density_coverage(real_prc, fake_prc, prc_neighborhood, prdc_nearest_k)
    return {"fid": m["frechet_inception_distance"], "kid": m["kernel_inception_distance_mean"],
            "kid_std": m["kernel_inception_distance_std"], "is": m["inception_score_mean"],
            "is_std": m["inception_score_std"], **manifold}


def check_inception(weights: str | None) -> None:
    """Fail before training when the Inception network cannot be had, saying how to provide it."""
    from gan_ablate.config import ConfigError

    if weights is not None and not Path(weights).expanduser().is_file():
        raise ConfigError(f"metrics.inception_weights={weights!r} is not a file; give the path of torch-fidelity's "
                          f"{INCEPTION_WEIGHTS_FILE}, or use metrics.extractor=domain")
    if weights is None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        try:
            FeatureExtractorInceptionV3(INCEPTION_EXTRACTOR, ["2048"])
        except Exception as e:  # no network, no cached download
            raise ConfigError(f"metrics.extractor=inception: the Inception weights could not be downloaded "
                              f"({type(e).__name__}); fetch {INCEPTION_WEIGHTS_FILE} where there is internet and "
                              "pass metrics.inception_weights=PATH, or use metrics.extractor=domain") from None


class ImageFidelityEvaluator:
    """FID/KID/IS, precision/recall/density/coverage of generated images against the training set, real
    features computed once and cached."""

    def __init__(self, z: torch.Tensor, real: torch.Tensor, extractor: str, weights_path: Path | None,
                 info: dict, cache_root: Path, kid_subset_size: int, registered: tuple[str, Path] | None = None,
                 prc_neighborhood: int = PRC_NEIGHBORHOOD, prdc_nearest_k: int = PRDC_NEAREST_K):
        self.z, self.real, self.torch_fidelity_name = z, real[: len(z)].cpu(), extractor
        self.registered = registered  # (torch-fidelity's data set name, its root): the reference instead of `real`
        self.weights_path, self.info, self.cache_root = weights_path, info, Path(cache_root).expanduser()
        self.kid_subset_size = kid_subset_size
        self.prc_neighborhood, self.prdc_nearest_k = prc_neighborhood, prdc_nearest_k
        self.extractor = "inception" if extractor == INCEPTION_EXTRACTOR else "domain"
        self.extractor_id = info["extractor"]  # the exact network: two ids never share a table
        self.cache_name = f"{self.extractor_id}-{len(self.real)}".replace(":", "_").replace("/", "_")

    def score(self, samples: torch.Tensor) -> dict:
        m = fidelity_metrics(samples.cpu(), self.real, self.weights_path, real_cache_name=self.cache_name,
                             cache_root=self.cache_root, kid_subset_size=self.kid_subset_size,
                             extractor=self.torch_fidelity_name, registered=self.registered,
                             cuda=samples.is_cuda, prc_neighborhood=self.prc_neighborhood,
                             prdc_nearest_k=self.prdc_nearest_k)
        return {**m, "n_samples": len(samples)}

    @property
    def reference(self) -> str:
        """What FID/KID compare with, for the record."""
        if self.registered:
            return f"{self.registered[0]} (torch-fidelity, {REGISTERED_REFERENCES_SIZE[self.registered[0]]} images)"
        return f"the first {len(self.real)} training images"
