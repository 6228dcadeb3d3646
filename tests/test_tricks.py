"""Each trick's mechanism (TRICKS.md, "proof" column)."""
import pytest
import torch
from conftest import make_module
from helpers import run_steps

from gan_ablate.config import ConfigError
from gan_ablate.tricks import StepContext, build_tricks
from gan_ablate.tricks.labels import LabelSmoothing
from gan_ablate.tricks.noise import InstanceNoise


def ctx(iteration=0, max_steps=100):
    return StepContext(iteration=iteration, max_steps=max_steps)


def test_label_smoothing_targets_lie_in_their_ranges_and_fill_them():
    (trick,) = build_tricks({"label_smoothing": {}})
    real_t, fake_t = trick.d_targets(torch.ones(10_000, 1), torch.zeros(10_000, 1), ctx())
    assert 0.7 <= real_t.min() and real_t.max() <= 1.2
    assert 0.0 <= fake_t.min() and fake_t.max() <= 0.3
    # uniform, not constant: the spread fills the interval
    assert real_t.max() - real_t.min() > 0.45 and fake_t.max() - fake_t.min() > 0.25
    assert real_t.mean().item() == pytest.approx(0.95, abs=0.01)


def test_label_smoothing_targets_reach_the_d_loss():
    """The training step hands the smoothed targets to the loss; without the trick, hard 1/0."""
    for trick, real_range, fake_range in [("trick=label_smoothing", (0.7, 1.2), (0.0, 0.3)),
                                          ("trick=[]", (1.0, 1.0), (0.0, 0.0))]:
        module = make_module(trick)
        seen = []
        d_loss = module.loss.d_loss
        module.loss.d_loss = lambda r, f, rt, ft: seen.append((rt, ft)) or d_loss(r, f, rt, ft)
        run_steps(module, 2)
        for real_t, fake_t in seen:
            assert real_range[0] <= real_t.min() and real_t.max() <= real_range[1]
            assert fake_range[0] <= fake_t.min() and fake_t.max() <= fake_range[1]
        assert len(seen) == 2


def test_instance_noise_std_follows_the_linear_schedule():
    trick = InstanceNoise(InstanceNoise.Params(std=0.2, decay_steps=None))
    for it, expected in [(0, 0.2), (25, 0.15), (50, 0.1), (100, 0.0), (150, 0.0)]:
        assert trick.std_at(it, 100) == pytest.approx(expected)
    trick = InstanceNoise(InstanceNoise.Params(std=0.2, decay_steps=10))
    assert trick.std_at(5, 100) == pytest.approx(0.1)


@pytest.mark.parametrize("iteration,expected_std", [(0, 0.2), (50, 0.1), (100, 0.0)])
def test_instance_noise_added_to_d_inputs_has_the_scheduled_std(iteration, expected_std):
    trick = InstanceNoise(InstanceNoise.Params(std=0.2))
    x = torch.zeros(200_000, 2)
    noisy = trick.d_input(x, ctx(iteration, 100))
    assert noisy.std().item() == pytest.approx(expected_std, abs=2e-3)


def test_spectral_norm_keeps_largest_singular_value_near_one_after_training():
    module = make_module("trick=spectral_norm", "model.d_hidden=32")
    layers = [m for m in module.D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 4  # every linear layer of the 3-hidden-layer MLP critic
    run_steps(module, 50)

    def sigma(w):
        return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()

    normalised = [sigma(m.weight) for m in layers]  # the weights the forward pass uses
    raw = [sigma(m.parametrizations.weight.original) for m in layers]
    assert normalised == pytest.approx([1.0] * 4, abs=0.05)
    assert max(abs(s - 1) for s in raw) > 0.3  # without SN these weights are far from unit norm


def test_spectral_norm_on_dcgan_wraps_convs_of_d_only_by_default():
    module = make_module("data=digits", "trick=spectral_norm")
    d_wrapped = [m for m in module.D.modules() if hasattr(m, "parametrizations")]
    g_wrapped = [m for m in module.G.modules() if hasattr(m, "parametrizations")]
    assert len(d_wrapped) >= 2 and not g_wrapped


def test_unknown_trick_parameter_is_refused_with_the_key():
    with pytest.raises(ConfigError, match=r"trick\.instance_noise.*(stdd|std)"):
        build_tricks({"instance_noise": {"stdd": 0.3}})
    with pytest.raises(ConfigError, match=r"trick\.instance_noise.*std"):
        build_tricks({"instance_noise": {"std": -1.0}})


def test_unknown_trick_is_refused_with_the_list_of_tricks():
    with pytest.raises(ConfigError, match=r"no_such_trick.*instance_noise.*label_smoothing.*spectral_norm"):
        build_tricks({"no_such_trick": {}})


def test_tricks_compose_in_list_order():
    tricks = build_tricks({"label_smoothing": {}, "instance_noise": {"std": 0.5}})
    assert [t.name for t in tricks] == ["label_smoothing", "instance_noise"]
    assert isinstance(tricks[0], LabelSmoothing)
