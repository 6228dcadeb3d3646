"""PacGAN mode metrics on samples whose answer is known."""
import math

import pytest
import torch

from gan_ablate.data.toy import grid_modes, ring_modes, sample_mixture
from gan_ablate.metrics.modes import ModeEvaluator, mode_metrics


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


def test_high_quality_means_strictly_closer_than_hq_sigmas_std_and_one_hq_sample_covers_a_mode():
    """PacGAN's MetricLogger (fjxmlzn/PacGAN): a sample counts when min_dis < dis_thre (3 std), and a
    mode is covered by a nonzero count. Distances 1.5 and 2.0 from modes at 0 and 10 are exact in
    binary, so the boundary 3 * 0.5 is hit exactly."""
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    on_the_boundary, inside = torch.tensor([[0.0, 1.5]]), torch.tensor([[10.0, 1.0]])
    assert mode_metrics(on_the_boundary, modes, std=0.5) == {"modes": 0, "hq": 0.0,
                                                             "reverse_kl": pytest.approx(math.log(2))}
    m = mode_metrics(torch.cat([on_the_boundary, inside]), modes, std=0.5)
    assert m["modes"] == 1 and m["hq"] == 0.5  # one HQ sample is enough to cover its mode


def test_mode_evaluator_scores_with_its_own_std_and_hq_sigmas():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    samples = torch.tensor([[0.0, 0.4], [0.0, 0.6], [10.0, 1.4], [10.0, 1.6]])
    # thresholds: 1 * 0.5 = 0.5 with hq_sigmas=1; the default 3 sigmas give 1.5
    first_neighbours = dict(prc_neighborhood=1, prdc_nearest_k=1)  # four samples have fewer than the default k
    assert ModeEvaluator(modes, 0.5, torch.zeros(1, 2), hq_sigmas=1.0, **first_neighbours).score(samples)["hq"] == 0.25
    assert ModeEvaluator(modes, 0.5, torch.zeros(1, 2), **first_neighbours).score(samples)["hq"] == 0.75


def kl_to_uniform_by_hand(counts: list[int]) -> float:
    """log K - H(p) of a histogram over K modes, written out (0 log 0 = 0)."""
    total = sum(counts)
    return math.log(len(counts)) + sum(c / total * math.log(c / total) for c in counts if c)


# on the ring (std 0.01, HQ within 0.03): 3 HQ samples at mode 0, 1 HQ at mode 1, and mode 2 nearest to 2 samples
# that are not HQ (0.05 away), so mode 2 has no HQ sample; the other 5 modes have none at all
RING = ring_modes().double()
OFF = torch.tensor([0.0, 0.05], dtype=torch.float64)
MIXED = torch.stack([RING[0], RING[0] + 0.01, RING[0] - 0.02, RING[1], RING[2] + OFF, RING[2] - OFF])


def test_pacgans_reverse_kl_counts_only_the_high_quality_samples_and_the_other_stays_on_record():
    """fjxmlzn/PacGAN extensions.py MetricLogger: detail_of_coverage counts a sample only when min_dis < 3 std;
    the paper's reverse KL is log K minus that histogram's entropy."""
    m = mode_metrics(MIXED, ring_modes(), 0.01, reverse_kl="high_quality")
    assert m["reverse_kl"] == pytest.approx(kl_to_uniform_by_hand([3, 1, 0, 0, 0, 0, 0, 0]), rel=1e-12)
    assert m["reverse_kl_nearest_mode"] == pytest.approx(kl_to_uniform_by_hand([3, 1, 2, 0, 0, 0, 0, 0]), rel=1e-12)
    assert (m["modes"], m["hq"]) == (2, 4 / 6)
    default = mode_metrics(MIXED, ring_modes(), 0.01)
    assert default == {"modes": 2, "hq": 4 / 6, "reverse_kl": m["reverse_kl_nearest_mode"]}


def test_pacgans_reverse_kl_is_zero_for_uniform_high_quality_samples_and_undefined_without_any():
    every_mode = ring_modes().repeat(3, 1)
    assert mode_metrics(every_mode, ring_modes(), 0.01, reverse_kl="high_quality")["reverse_kl"] == 0.0
    nowhere = mode_metrics(MIXED[4:], ring_modes(), 0.01, reverse_kl="high_quality")
    assert math.isnan(nowhere["reverse_kl"]) and nowhere["modes"] == 0  # the authors' 0/0: no histogram
    assert nowhere["reverse_kl_nearest_mode"] == pytest.approx(math.log(8))


def test_the_evaluation_scores_the_reverse_kl_metrics_reverse_kl_names(tmp_path):
    from conftest import make_cfg
    from gan_ablate.config import validate
    from gan_ablate.data import build_datamodule
    from gan_ablate.evaluators import build_evaluation

    settings = validate(make_cfg("metrics.reverse_kl=high_quality"))
    evaluation = build_evaluation(settings, build_datamodule(settings.data, 1).prepare(), tmp_path)
    samples = torch.cat([MIXED.float(), ring_modes().repeat(2, 1)])  # prdc needs more samples than its k
    assert evaluation.evaluator.score(samples)["reverse_kl"] == pytest.approx(
        kl_to_uniform_by_hand([5, 3, 2, 2, 2, 2, 2, 2]), rel=1e-12)


def test_an_unknown_reverse_kl_definition_is_refused_naming_the_key():
    from conftest import make_cfg
    from gan_ablate.config import ConfigError, validate

    with pytest.raises(ConfigError) as refused:
        validate(make_cfg("metrics.reverse_kl=pacgan"))
    assert str(refused.value) == "metrics.reverse_kl='pacgan' is not allowed; choose one of: nearest_mode, high_quality"
