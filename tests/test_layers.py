"""The shared layers against their reference formulas (gan_ablate/nets/layers.py)."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gan_ablate.config import ConfigError
from gan_ablate.nets.layers import (AlwaysDropout, GaussianNoise, Maxout, ReferenceBatchNorm, WithReferenceBatch,
                                    activation, hidden_extras, make_norm, sample_latent, uses_reference_batch)


def test_activations_leaky_relu_has_slope_0_2_and_relu_zeroes_negatives():
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(activation("leaky_relu")(x), torch.tensor([-0.2, 2.0]))  # DCGAN's slope
    torch.testing.assert_close(activation("relu")(x), torch.tensor([0.0, 2.0]))


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_latents_come_from_the_given_generator_with_shape_n_by_z_dim(kind):
    """The EMA's standing statistics draw their latents from a generator of their own: the draws
    must come from it (the same seed, the same z) and leave the global stream alone."""
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = sample_latent(5, 3, kind, generator=torch.Generator().manual_seed(7))
    b = sample_latent(5, 3, kind, generator=torch.Generator().manual_seed(7))
    assert a.shape == (5, 3) and torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_uniform_latents_fill_minus_one_to_one_and_gaussian_ones_leave_it():
    g = torch.Generator().manual_seed(0)
    u = sample_latent(20_000, 2, "uniform", generator=g)
    assert -1.0 <= u.min() < -0.99 and 0.99 < u.max() < 1.0
    assert sample_latent(20_000, 2, "gaussian", generator=g).abs().max() > 3.0


def rbn_reference(h, n_ref, virtual, weight, bias, eps=1e-5):
    """Salimans et al. 2016 sec. 3.5 computed sample by sample: the statistics (per channel, over batch
    and spatial positions, biased variance) of the reference rows, joined with the sample itself when
    virtual; the reference rows get the reference statistics alone."""
    dims = (0, *range(2, h.dim()))
    ref = h[:n_ref]
    out = []
    for i in range(h.shape[0]):
        joined = torch.cat([ref, h[i:i + 1]]) if virtual and i >= n_ref else ref
        mean, var = joined.mean(dim=dims, keepdim=True), joined.var(dim=dims, unbiased=False, keepdim=True)
        out.append((h[i:i + 1] - mean) / torch.sqrt(var + eps))
    shape = (1, -1) + (1,) * (h.dim() - 2)
    return torch.cat(out) * weight.view(shape) + bias.view(shape)


@pytest.mark.parametrize("virtual", [True, False])
@pytest.mark.parametrize("shape", [(7, 3), (7, 3, 2, 2)])
def test_reference_batch_norm_matches_the_per_sample_reference_formula(virtual, shape):
    torch.manual_seed(0)
    # per-channel offsets and scales below 1, so that means, variances and eps all show
    h = torch.randn(*shape) * 0.3 + torch.tensor([1.0, -2.0, 0.5]).view(1, 3, *(1,) * (len(shape) - 2))
    layer = ReferenceBatchNorm(3, virtual=virtual)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.3, 0.7]))
    layer.n_ref = 4
    expected = rbn_reference(h, 4, virtual, layer.weight.detach(), layer.bias.detach())
    torch.testing.assert_close(layer(h), expected, rtol=1e-5, atol=1e-5)


def test_reference_batch_norm_starts_as_identity_affine_and_refuses_to_run_unwrapped():
    layer = ReferenceBatchNorm(2, virtual=True)
    assert torch.equal(layer.weight, torch.ones(2)) and torch.equal(layer.bias, torch.zeros(2))
    h = torch.tensor([[0.0, 1.0], [5.0, 3.0]])
    with pytest.raises(RuntimeError, match="^ReferenceBatchNorm needs its net wrapped in WithReferenceBatch$"):
        layer(h)
    layer.n_ref = 1  # a reference batch of one row is a reference batch
    torch.testing.assert_close(layer(h), rbn_reference(h, 1, True, torch.ones(2), torch.zeros(2)))


def test_with_reference_batch_runs_the_reference_beside_the_input_and_returns_the_input_rows():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), ReferenceBatchNorm(3, virtual=True))
    reference = torch.randn(5, 2)  # 5 rows of 2 features: the row count is what counts
    wrapped = WithReferenceBatch(net, reference, reference_size=5, from_data=False)
    x = torch.randn(4, 2)
    out = wrapped(x)
    assert net[1].n_ref == 5
    torch.testing.assert_close(out, net(torch.cat([reference, x]))[5:])
    assert set(wrapped.state_dict()) >= {"reference"}  # the reference batch travels with checkpoints
    assert wrapped.reference_size == 5 and wrapped.net is net


def test_with_reference_batch_passes_extra_inputs_and_exposes_the_nets_attributes():
    class Conditional(nn.Module):
        z_dim = 2

        def __init__(self):
            super().__init__()
            self.norm = ReferenceBatchNorm(2, virtual=False)

        def forward(self, z, scale):
            return self.norm(z) * scale

    wrapped = WithReferenceBatch(Conditional(), torch.randn(3, 2), reference_size=3, from_data=False)
    z = torch.randn(2, 2)
    torch.testing.assert_close(wrapped(z, 3.0), 3.0 * wrapped(z, 1.0))
    assert wrapped.z_dim == 2
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute


def test_with_reference_batch_casts_the_reference_to_the_inputs_dtype():
    """A net run in bf16 (trainer precision bf16-true) gets bf16 inputs: the float32 reference must follow."""
    net = nn.Linear(2, 2).to(torch.bfloat16)
    wrapped = WithReferenceBatch(net, torch.randn(3, 2), reference_size=3, from_data=False)
    assert wrapped(torch.randn(4, 2, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_ds_reference_batch_is_the_first_rows_of_the_data_fixed_once():
    d = WithReferenceBatch(nn.Identity(), None, reference_size=3, from_data=True)
    assert d.reference.numel() == 0
    data = torch.arange(20.0).view(10, 2)
    d.set_reference(data)
    torch.testing.assert_close(d.reference, data[:3])
    d.set_reference(data + 100)  # a second attach (resume, a new data module) keeps the first batch
    torch.testing.assert_close(d.reference, data[:3])
    # G's reference batch is its own latents, given at construction: data never replaces it
    z_ref = torch.randn(3, 2)
    g = WithReferenceBatch(nn.Identity(), z_ref, reference_size=3, from_data=False)
    g.set_reference(data)
    assert torch.equal(g.reference, z_ref)


@pytest.mark.parametrize("kind,conv,layer,normalised_dims", [
    ("batch_norm", False, nn.BatchNorm1d, (0,)), ("batch_norm", True, nn.BatchNorm2d, (0, 2, 3)),
    ("layer_norm", False, nn.LayerNorm, (1,)), ("layer_norm", True, nn.GroupNorm, (1, 2, 3)),
    ("instance_norm", True, nn.InstanceNorm2d, (2, 3))])
def test_make_norm_normalises_over_the_dimensions_its_kind_names(kind, conv, layer, normalised_dims):
    """batch norm: over the batch (and positions); layer norm: over one sample's features (C, H, W of a
    conv map as one group, GroupNorm(1)); instance norm: over one sample's positions, per channel. Each
    starts as the plain (x - mean) / sqrt(var + eps) with a learnable affine."""
    norm = make_norm(kind, 4, conv, momentum=0.3).train()
    assert type(norm) is layer and norm.weight.shape[0] == 4 and norm.bias.requires_grad
    torch.manual_seed(0)
    # channels on different scales: normalising the wrong group of values shows
    scales = torch.tensor([0.5, 1.0, 3.0, 8.0]).view(1, 4, *((1, 1) if conv else ()))
    x = torch.randn((6, 4, 3, 3) if conv else (6, 4)) * scales + 5.0
    mean = x.mean(dim=normalised_dims, keepdim=True)
    var = x.var(dim=normalised_dims, unbiased=False, keepdim=True)
    torch.testing.assert_close(norm(x), (x - mean) / torch.sqrt(var + norm.eps), atol=1e-5, rtol=1e-5)
    if kind == "batch_norm":
        assert norm.momentum == 0.3


def test_make_norm_none_reference_kinds_and_the_mlp_instance_norm_refusal():
    assert make_norm("none", 4, False, 0.1) is None
    for kind, virtual in (("virtual_batch_norm", True), ("reference_batch_norm", False)):
        norm = make_norm(kind, 4, True, 0.1)
        assert isinstance(norm, ReferenceBatchNorm) and norm.virtual is virtual and norm.weight.shape == (4,)
        assert uses_reference_batch(kind)
    assert not any(uses_reference_batch(k) for k in ("none", "batch_norm", "layer_norm", "instance_norm"))
    refusal = r"^model\.norm_g/norm_d=instance_norm needs conv feature maps .* an MLP is layer_norm$"
    with pytest.raises(ConfigError, match=refusal):
        make_norm("instance_norm", 4, False, 0.1)


def test_maxout_keeps_the_largest_of_its_pieces_for_any_leading_shape():
    layer = Maxout(3, 2, pieces=4)
    assert layer.linear.out_features == 8 and layer.linear.in_features == 3
    x = torch.randn(2, 5, 3)
    pieces = layer.linear(x).view(2, 5, 2, 4)
    torch.testing.assert_close(layer(x), pieces.max(dim=-1).values)


def test_always_dropout_drops_a_fraction_p_and_rescales_in_eval_mode_too():
    layer = AlwaysDropout(0.25).eval()
    torch.manual_seed(0)
    out = layer(torch.ones(40_000))
    kept = out[out != 0]
    assert (out == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.75))  # inverted dropout: the mean is kept


def test_gaussian_noise_adds_n_0_std_squared_in_training_only():
    layer = GaussianNoise(0.5)
    x = torch.full((40_000,), 3.0)
    torch.manual_seed(0)
    noise = layer.train()(x) - x
    assert noise.mean().item() == pytest.approx(0.0, abs=0.01) and noise.std().item() == pytest.approx(0.5, rel=0.02)
    assert torch.equal(layer.eval()(x), x)


def test_hidden_extras_put_noise_and_sampling_dropout_in_g_and_dropout_in_d():
    cfg = SimpleNamespace(g_layer_noise=0.5, g_dropout=0.4, d_dropout=0.3)
    g, d = hidden_extras(cfg, "g"), hidden_extras(cfg, "d")
    assert [type(m) for m in g] == [GaussianNoise, AlwaysDropout] and (g[0].std, g[1].p) == (0.5, 0.4)
    assert [(type(m), m.p) for m in d] == [(nn.Dropout, 0.3)]
    off = SimpleNamespace(g_layer_noise=0.0, g_dropout=0.0, d_dropout=0.0)
    assert hidden_extras(off, "g") == [] and hidden_extras(off, "d") == []
