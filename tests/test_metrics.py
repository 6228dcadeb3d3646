"""PacGAN mode metrics on samples whose answer is known."""
import math

import pytest
import torch

from gan_ablate.data.toy import grid_modes, ring_modes, sample_mixture
from gan_ablate.metrics.modes import mode_metrics


def test_real_data_covers_every_mode_with_high_quality():
    g = torch.Generator().manual_seed(0)
    for modes, std in [(ring_modes(), 0.01), (grid_modes(), 0.05)]:
        x, _ = sample_mixture(modes, std, 2500, g)
        m = mode_metrics(x, modes, std)
        assert m["modes"] == len(modes)
        # P(||e|| <= 3 sigma) for a 2-D isotropic Gaussian is 1 - exp(-9/2) = 0.9889
        assert m["hq"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
        assert m["reverse_kl"] < 0.02


def test_collapsed_generator_covers_one_mode_with_reverse_kl_log_k():
    modes = ring_modes()
    x = modes[3].repeat(2500, 1)
    m = mode_metrics(x, modes, 0.01)
    assert m == {"modes": 1, "hq": 1.0, "reverse_kl": pytest.approx(math.log(8))}


def test_samples_between_modes_are_not_high_quality():
    modes = ring_modes()
    midpoints = (modes + modes.roll(1, 0)) / 2
    m = mode_metrics(midpoints.repeat(10, 1), modes, 0.01)
    assert m["modes"] == 0 and m["hq"] == 0.0


def test_reverse_kl_of_an_even_subset_is_log_of_the_ratio():
    modes = grid_modes()
    x = modes[:12].repeat(10, 1)  # 12 of 25 modes, evenly
    m = mode_metrics(x, modes, 0.05)
    assert m["modes"] == 12 and m["reverse_kl"] == pytest.approx(math.log(25 / 12))
