"""Stacked MNIST: data, the 1,000-mode metric, and the metric on real stacked data."""
import math

import pytest
import torch

from gan_ablate.config import DataConfig
from gan_ablate.data import build_datamodule
from gan_ablate.metrics.domain import load_or_train
from gan_ablate.metrics.stacked import mode_coverage, stacked_modes


@pytest.mark.slow
def test_stacked_data_is_three_digits_with_their_mode():
    dm = build_datamodule(DataConfig(name="stacked_mnist", n_points=500, channels=3), 1).prepare()
    mnist = build_datamodule(DataConfig(name="mnist"), 1).prepare()
    assert dm.data.shape == (500, 3, 28, 28) and 0 <= dm.labels.min() and dm.labels.max() < 1000
    # every channel is one of the MNIST digits, and the mode is its label triple
    x, mode = dm.data[0], dm.labels[0].item()
    digits = []
    for c in range(3):
        match = (mnist.data[:, 0] == x[c]).flatten(1).all(1).nonzero()
        digits.append(mnist.labels[match[0, 0]].item())
    assert mode == 100 * digits[0] + 10 * digits[1] + digits[2]


def test_mode_coverage_closed_forms():
    assert mode_coverage(torch.arange(1000).repeat(3)) == {"modes": 1000, "kl": pytest.approx(0.0, abs=1e-12)}
    assert mode_coverage(torch.full((500,), 7)) == {"modes": 1, "kl": pytest.approx(math.log(1000))}
    assert mode_coverage(torch.arange(10).repeat(5))["kl"] == pytest.approx(math.log(100))


@pytest.mark.slow
def test_real_stacked_mnist_covers_at_least_990_modes(tmp_path):
    mnist = build_datamodule(DataConfig(name="mnist"), 1).prepare()
    classifier, info = load_or_train(mnist.data, mnist.labels, tmp_path, "mnist")
    stacked = build_datamodule(DataConfig(name="stacked_mnist", n_points=26_000, channels=3), 1).prepare()
    modes = stacked_modes(stacked.data, classifier)
    assert (modes == stacked.labels).float().mean() > 0.9  # three channels right
    coverage = mode_coverage(modes)
    assert coverage["modes"] >= 990
    assert coverage["kl"] < 0.1
