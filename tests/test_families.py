"""Family groups (one option each of norm_g/norm_d, latent, init, activation, up/downsample, ...)."""
import math

import pytest
import torch
from conftest import make_cfg, make_module
from torch import nn

from gan_ablate.config import ConfigError, validate
from gan_ablate.data import build_datamodule
from gan_ablate.interpolation import interpolation_grid, lerp, slerp
from gan_ablate.nets import build_nets
from gan_ablate.nets.layers import Maxout, ReferenceBatchNorm, WithReferenceBatch, sample_latent
from gan_ablate.validation import check_config


def nets(*overrides, shape=(1, 28, 28)):
    settings = validate(make_cfg(*overrides))
    return build_nets(settings.model, shape)


def layer_types(net):
    return {type(m) for m in net.modules()}


@pytest.mark.parametrize("option,layer", [("batch_norm", nn.BatchNorm2d), ("layer_norm", nn.GroupNorm),
                                          ("instance_norm", nn.InstanceNorm2d),
                                          ("virtual_batch_norm", ReferenceBatchNorm),
                                          ("reference_batch_norm", ReferenceBatchNorm)])
def test_norm_options_put_their_layer_in_the_chosen_net(option, layer):
    G, D = nets("data=mnist", f"norm_d={option}", "norm_g=none")
    assert layer in layer_types(D) and layer not in layer_types(G)
    G, D = nets("data=mnist", f"norm_g={option}", "norm_d=none")
    assert layer in layer_types(G) and layer not in layer_types(D)


def test_batch_norm_momentum_is_applied():
    G, D = nets("data=mnist", "model.bn_momentum=0.3")
    bns = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.3 for m in bns)
    x = torch.randn(16, 1, 28, 28) + 5.0
    first_bn = next(m for m in D.modules() if isinstance(m, nn.BatchNorm2d))
    D.train()
    before = first_bn.running_mean.clone()
    D(x)
    assert not torch.equal(before, first_bn.running_mean)


def test_mlp_layer_norm_and_no_norm_on_ds_first_layer():
    G, D = nets("norm_d=layer_norm", "norm_g=layer_norm", shape=(2,))
    assert sum(isinstance(m, nn.LayerNorm) for m in D.modules()) == 2  # 3 hidden layers, not the first
    assert sum(isinstance(m, nn.LayerNorm) for m in G.modules()) == 3
    with pytest.raises(ConfigError, match="instance_norm needs conv"):
        nets("norm_d=instance_norm", shape=(2,))


def test_instance_norm_uses_per_sample_statistics():
    norm = nn.InstanceNorm2d(3, affine=True)
    x = torch.randn(4, 3, 8, 8) * torch.tensor([1.0, 5.0, 0.1, 2.0]).view(4, 1, 1, 1) + 3.0
    out = norm(x)
    torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1:2], norm(x[1:2]))  # the same with or without batch-mates


@pytest.mark.parametrize("option", ["virtual_batch_norm", "reference_batch_norm"])
@pytest.mark.parametrize("data,shape", [("ring8", (2,)), ("mnist", (1, 28, 28))])
def test_reference_batch_norms_make_outputs_independent_of_batch_mates(option, data, shape):
    module = make_module(f"data={data}", f"norm_d={option}", f"norm_g={option}",
                         *(["model.g_channels=8", "model.d_channels=8"] if data == "mnist" else []))
    assert isinstance(module.G, WithReferenceBatch) and isinstance(module.D, WithReferenceBatch)
    assert module.D.reference.shape[0] == 64  # a fixed batch of real data
    module.train()
    z = torch.randn(6, module.cfg.model.z_dim)
    alone = module.G(z[:1])
    with_others = module.G(torch.cat([z[:1], 50 * torch.randn(5, z.shape[1])]))
    torch.testing.assert_close(alone, with_others[:1], atol=1e-5, rtol=1e-4)
    x = module.real_data[:6]
    torch.testing.assert_close(module.D(x[:2]), module.D(torch.cat([x[:2], x[2:] * 7]))[:2], atol=1e-5, rtol=1e-4)
    # a plain batch norm, for contrast, does depend on the batch-mates
    bn = nn.BatchNorm1d(2).train()
    y = torch.randn(6, 2)
    assert not torch.allclose(bn(y[:2]), bn(torch.cat([y[:2], y[2:] * 7]))[:2])


def test_virtual_batch_norm_joins_the_sample_with_the_reference():
    vbn, rbn = ReferenceBatchNorm(1, virtual=True), ReferenceBatchNorm(1, virtual=False)
    ref, x = torch.tensor([[0.0], [2.0]]), torch.tensor([[5.0]])
    for layer in (vbn, rbn):
        layer.n_ref = 2
    h = torch.cat([ref, x])
    # virtual: mean of {0, 2, 5} = 7/3, E[h^2] = 29/3; reference: mean 1, variance 1
    mean, var = 7 / 3, 29 / 3 - (7 / 3) ** 2
    assert vbn(h)[2].item() == pytest.approx((5 - mean) / math.sqrt(var + 1e-5), rel=1e-5)
    assert rbn(h)[2].item() == pytest.approx((5 - 1) / math.sqrt(1 + 1e-5), rel=1e-5)


def test_latent_distributions_have_their_moments():
    torch.manual_seed(0)
    g = sample_latent(200_000, 4, "gaussian")
    u = sample_latent(200_000, 4, "uniform")
    assert g.mean().item() == pytest.approx(0, abs=0.01) and g.var().item() == pytest.approx(1, abs=0.01)
    assert u.mean().item() == pytest.approx(0, abs=0.01) and u.var().item() == pytest.approx(1 / 3, abs=0.01)
    assert u.abs().max().item() <= 1.0
    assert validate(make_cfg("latent=uniform_z")).model.latent == "uniform"


def test_orthogonal_init_preserves_norms():
    G, D = nets("init=orthogonal_init", "model.g_hidden=32", shape=(2,))
    square = [m for m in G.modules() if isinstance(m, nn.Linear) and m.in_features == m.out_features == 32]
    assert square
    x = torch.randn(100, 32)
    for layer in square:
        torch.testing.assert_close((x @ layer.weight.t()).norm(dim=1), x.norm(dim=1), rtol=1e-5, atol=1e-5)
    convs = [m for m in nets("data=mnist", "init=orthogonal_init")[1].modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        w = conv.weight.flatten(1)  # (out, in*k*k): orthonormal rows, or columns when taller than wide
        gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)


def test_dcgan_init_moments():
    torch.manual_seed(0)
    G, D = nets("data=mnist", "init=dcgan_init", "model.g_channels=64")
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert w.mean().item() == pytest.approx(0, abs=0.002) and w.std().item() == pytest.approx(0.02, rel=0.05)
    gains = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert gains.mean().item() == pytest.approx(1, abs=0.01) and gains.std().item() == pytest.approx(0.02, rel=0.2)
    assert all((m.bias == 0).all() for m in G.modules() if isinstance(m, nn.BatchNorm2d))


def test_activation_option():
    assert nn.LeakyReLU in layer_types(nets("activation=leaky_relu", shape=(2,))[1])
    G, D = nets("activation=relu", shape=(2,))
    assert nn.ReLU in layer_types(D) and nn.LeakyReLU not in layer_types(G)


@pytest.mark.parametrize("size", [8, 28, 32])
@pytest.mark.parametrize("up", ["conv_transpose", "pixel_shuffle", "nearest"])
@pytest.mark.parametrize("down", ["strided", "avg_pool", "max_pool"])
def test_up_and_downsampling_options_keep_the_shapes(size, up, down):
    G, D = nets("data=mnist", f"upsample={up}", f"downsample={down}", "model.g_channels=4",
                "model.d_channels=4", shape=(3, size, size))
    x = G(torch.randn(2, 100))
    assert x.shape == (2, 3, size, size) and D(x).shape == (2, 1)
    pool = {"avg_pool": nn.AvgPool2d, "max_pool": nn.MaxPool2d, "strided": nn.Conv2d}[down]
    assert pool in layer_types(D)
    assert {"conv_transpose": nn.ConvTranspose2d, "pixel_shuffle": nn.PixelShuffle, "nearest": nn.Upsample}[up] in layer_types(G)


def test_separate_batches_and_mixed_batch_give_different_batch_statistics():
    stats = {}
    for option in ("separate", "mixed"):
        module = make_module(f"separate_batches={option}", "norm_d=batch_norm", "seed=5")
        torch.manual_seed(0)
        real, fake = torch.randn(32, 2) + 3.0, torch.randn(32, 2) - 3.0
        module.D.train()
        real_logits, _ = module.d_logits(real, fake)
        bn = next(m for m in module.D.modules() if isinstance(m, nn.BatchNorm1d))
        stats[option] = (real_logits.detach(), bn.running_mean.clone())
    assert not torch.allclose(stats["separate"][0], stats["mixed"][0])
    assert not torch.allclose(stats["separate"][1], stats["mixed"][1])


def test_maxout_outputs_the_max_over_pieces():
    layer = Maxout(3, 2, pieces=4)
    x = torch.randn(5, 3)
    pieces = layer.linear(x).view(5, 2, 4)
    torch.testing.assert_close(layer(x), pieces.max(dim=-1).values)
    G, D = nets("model=gan2014", shape=(2,))
    assert Maxout in layer_types(D) and nn.Dropout in layer_types(D)


def test_normalize_inputs_ranges_match_the_generator_output():
    for option, low in (("tanh", -1.0), ("sigmoid", 0.0)):
        settings = validate(make_cfg("data=digits", f"normalize_inputs={option}"))
        data = build_datamodule(settings.data, 1).prepare().data
        assert data.min().item() == low and data.max().item() == 1.0
        G, _ = build_nets(settings.model, (1, 8, 8))
        out = G(torch.randn(64, settings.model.z_dim) * 10)
        assert low <= out.min().item() and out.max().item() <= 1.0 and out.min().item() < low + 0.5


def test_dataset_cache_off_draws_batches_through_a_dataloader():
    module = make_module("dataset_cache=dataloader")
    batches = [module.real_batch().x for _ in range(3)]
    assert all(b.shape == (32, 2) for b in batches)
    rows = {tuple(r.tolist()) for r in module.real_data}
    assert all(tuple(r.tolist()) in rows for r in batches[0])
    assert type(module.draw_real).__name__ == "LoaderBatches"
    assert type(make_module().draw_real).__name__ == "TensorBatches"


def test_slerp_stays_on_the_arc_and_lerp_cuts_through():
    torch.manual_seed(0)
    z0, z1 = torch.randn(4, 16), torch.randn(4, 16)
    z0, z1 = z0 / z0.norm(dim=1, keepdim=True) * 4, z1 / z1.norm(dim=1, keepdim=True) * 4
    t = torch.linspace(0, 1, 9)
    path = slerp(z0, z1, t)
    torch.testing.assert_close(path.norm(dim=-1), torch.full((9, 4), 4.0))
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1, atol=1e-5, rtol=1e-5)
    assert (lerp(z0, z1, t)[4].norm(dim=-1) < 3.9).all()
    assert interpolation_grid(torch.randn(16, 5), "slerp").shape == (64, 5)


def test_skip_z_feeds_a_chunk_of_z_to_every_block():
    G, _ = nets("data=mnist", "model.skip_z=true", "model.g_channels=4")
    assert sum(G.chunk_sizes) == 100 and len(G.chunk_sizes) == 3 and min(G.chunk_sizes) > 0
    z = torch.randn(2, 100)
    G.eval()
    changed = z.clone()
    changed[:, -1] += 3.0  # only the last chunk: it enters at the last block
    assert not torch.allclose(G(z), G(changed))


def test_capacity_multipliers_scale_parameter_counts():
    def count(net):
        return sum(p.numel() for p in net.parameters())
    G1, D1 = nets(shape=(2,))
    G2, D2 = nets("model.d_width=2.0", shape=(2,))
    assert count(G1) == count(G2) and count(D2) > 3 * count(D1)


def test_dropout_in_g_stays_on_when_sampling():
    G, D = nets("model.g_dropout=0.5", "model.d_dropout=0.3", shape=(2,))
    G.eval()
    z = torch.randn(1, 2).repeat(2, 1)
    out = G(z)
    assert not torch.allclose(out[0], out[1])
    assert nn.Dropout in layer_types(D)


def test_layer_noise_only_in_training():
    G, _ = nets("model.g_layer_noise=0.5", shape=(2,))
    z = torch.randn(1, 2).repeat(2, 1)
    G.train()
    out = G(z)
    assert not torch.allclose(out[0], out[1])
    G.eval()
    out = G(z)
    torch.testing.assert_close(out[0], out[1])


def test_model_dcgan_on_points_is_refused():
    with pytest.raises(ConfigError, match="model=dcgan needs image data"):
        make_module("model=dcgan")
    assert check_config(make_cfg("model=gan2014"))


@pytest.mark.parametrize("model", ["mlp", "gan2014"])
@pytest.mark.parametrize("output,low,high", [("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0)])
def test_mlp_generators_on_images_keep_model_output_range(model, output, low, high):
    """On images the MLP generators end in model.output's squashing (a linear output ranged -2.2..1.3 on
    digits); on 2-D points the output stays linear."""
    import torch

    from gan_ablate.nets import build_nets

    s = validate(make_cfg(f"model={model}", f"model.output={output}"))
    G, _ = build_nets(s.model, (1, 8, 8))
    for p in G.parameters():
        torch.nn.init.normal_(p, std=3.0)  # a linear output would leave the range by far
    x = G(torch.randn(256, s.model.z_dim))
    assert x.shape == (256, 1, 8, 8) and low <= x.min() and x.max() <= high and x.max() - x.min() > 0.5 * (high - low)
    G_points, _ = build_nets(s.model, (2,))
    for p in G_points.parameters():
        torch.nn.init.normal_(p, std=3.0)
    assert G_points(torch.randn(256, s.model.z_dim)).abs().max() > 1.0
