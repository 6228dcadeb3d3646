"""The offline domain classifier (issue 4's `domain` extractor): accuracy, caching by data hash."""
import pytest
import torch

from gan_ablate.config import DataConfig
from gan_ablate.data import build_datamodule
from gan_ablate.metrics.domain import cache_key, load_or_train, train_classifier


def dataset(name):
    dm = build_datamodule(DataConfig(name=name), 1).prepare()
    return dm.data, dm.labels


@pytest.mark.slow
def test_digits_classifier_reaches_97_percent_held_out():
    data, labels = dataset("digits")
    _, accuracy = train_classifier(data, labels, epochs=30)
    assert accuracy >= 0.97


@pytest.mark.slow
def test_mnist_classifier_reaches_95_percent_held_out():
    data, labels = dataset("mnist")
    _, accuracy = train_classifier(data, labels, epochs=15)
    assert accuracy >= 0.95


def test_classifier_is_cached_under_a_hash_of_data_and_architecture(tmp_path):
    data, labels = dataset("digits")
    data, labels = data[:300], labels[:300]
    model, info = load_or_train(data, labels, tmp_path, "digits", epochs=1)
    assert info["extractor"].startswith("digits") is False and info["extractor"].startswith("domain:digits:")
    again, info_again = load_or_train(data, labels, tmp_path, "digits", epochs=1)
    assert info_again == info
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert cache_key(data, labels) != cache_key(data.flip(0), labels)
    assert len(list(tmp_path.iterdir())) == 1
