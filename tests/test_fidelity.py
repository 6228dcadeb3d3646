"""FID/KID/IS through torch-fidelity on the domain features, checked against independent computations."""
import numpy as np
import pytest
import torch
from scipy import linalg

from gan_ablate.config import DataConfig
from gan_ablate.data import build_datamodule
from gan_ablate.metrics.domain import load_or_train, weights_file
from gan_ablate.metrics.fidelity import fidelity_metrics


@pytest.fixture(scope="module")
def digits_extractor(tmp_path_factory):
    dm = build_datamodule(DataConfig(name="digits"), 1).prepare()
    cache = tmp_path_factory.mktemp("extractors")
    model, info = load_or_train(dm.data, dm.labels, cache, "digits", epochs=10)
    return dm.data, model, weights_file(cache, "digits", dm.data, dm.labels), cache


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def unbiased_poly_mmd(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    m = len(a)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def test_fid_of_a_set_against_itself_is_zero(digits_extractor):
    data, _, weights, _ = digits_extractor
    m = fidelity_metrics(data[:600], data[:600], weights, kid_subsets=2, kid_subset_size=300)
    assert abs(m["fid"]) < 1e-3


def test_fid_and_kid_equal_an_independent_computation_on_the_same_features(digits_extractor):
    data, model, weights, _ = digits_extractor
    real, fake = data[:700], (data[700:1400] + 0.3 * torch.randn(700, 1, 8, 8)).clamp(-1, 1)
    m = fidelity_metrics(fake, real, weights, kid_subsets=1, kid_subset_size=700)
    with torch.no_grad():
        f_real = model(real)[0].double().numpy()
        f_fake = model(fake)[0].double().numpy()
    assert m["fid"] > 1.0
    assert m["fid"] == pytest.approx(frechet(f_fake, f_real), rel=1e-4)
    assert m["kid"] == pytest.approx(unbiased_poly_mmd(f_fake, f_real), rel=1e-4)


def test_fid_matches_torchmetrics_with_the_same_feature_module(digits_extractor):
    from torchmetrics.image.fid import FrechetInceptionDistance
    data, model, weights, _ = digits_extractor

    class Features(torch.nn.Module):
        num_features = 128

        def forward(self, x):
            return model(x)[0]
    real, fake = data[:600], (data[600:1200] + 0.3 * torch.randn(600, 1, 8, 8)).clamp(-1, 1)
    tm = FrechetInceptionDistance(feature=Features(), reset_real_features=False)
    tm.set_dtype(torch.float64)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    ours = fidelity_metrics(fake, real, weights, kid_subsets=1, kid_subset_size=600)["fid"]
    assert ours == pytest.approx(tm.compute().item(), rel=1e-4)


def test_real_statistics_are_cached(digits_extractor, tmp_path):
    data, _, weights, _ = digits_extractor
    fake = (data[:400] * 0.5).clone()
    first = fidelity_metrics(fake, data[400:1000], weights, real_cache_name="digits-real-test", cache_root=tmp_path,
                             kid_subsets=2, kid_subset_size=200)
    assert any(tmp_path.rglob("*digits-real-test*"))
    # the real set passed the second time is ignored: its cached features are used
    second = fidelity_metrics(fake, data[:10], weights, real_cache_name="digits-real-test", cache_root=tmp_path,
                              kid_subsets=2, kid_subset_size=10)
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-6)


class _Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_a_registered_reference_set_is_read_from_its_root_and_gives_the_explicit_sets_fid(digits_extractor, tmp_path,
                                                                                         monkeypatch):
    """data=cifar10 with Inception compares with torch-fidelity's registered cifar10-train; the same
    mechanism on a registered stand-in: read from the root given, never downloaded, same FID."""
    from torch_fidelity.registry import DATASETS_REGISTRY, register_dataset

    from gan_ablate.metrics import fidelity

    data, _, weights, _ = digits_extractor
    roots = []
    if "gan-ablate-test-digits" not in DATASETS_REGISTRY:
        register_dataset("gan-ablate-test-digits",
                         lambda root, download: roots.append((root, download)) or _Images(data[400:1000]))
    monkeypatch.setitem(fidelity.REGISTERED_REFERENCES_SIZE, "gan-ablate-test-digits", 600)
    fake = data[:500]
    registered = fidelity_metrics(fake, None, weights, kid_subsets=1, kid_subset_size=400, cache_root=tmp_path,
                                  registered=("gan-ablate-test-digits", tmp_path / "datasets"))
    explicit = fidelity_metrics(fake, data[400:1000], weights, kid_subsets=1, kid_subset_size=400)
    assert registered["fid"] == pytest.approx(explicit["fid"], rel=1e-4)
    assert roots == [(str(tmp_path / "datasets"), False)]


def test_cifar10_with_inception_uses_torch_fidelitys_cifar10_train():
    from gan_ablate.metrics.fidelity import DOMAIN_EXTRACTOR, INCEPTION_EXTRACTOR, registered_reference

    assert registered_reference("cifar10", "~/c10", INCEPTION_EXTRACTOR)[0] == "cifar10-train"
    assert registered_reference("cifar10", "~/c10", INCEPTION_EXTRACTOR)[1].is_absolute()
    assert registered_reference("cifar10", "~/c10", DOMAIN_EXTRACTOR) is None  # the domain net has no such stats
    assert registered_reference("mnist", None, INCEPTION_EXTRACTOR) is None
