"""Mechanism tests of the tricks that change nets, latents, objectives or the update schedule."""
import re

import pytest
import torch
from conftest import make_cfg, make_module
from helpers import run_steps

from gan_ablate.config import validate
from gan_ablate.tricks import StepContext, build_tricks
from gan_ablate.tricks.architecture import MinibatchDiscriminationLayer, MultiGenerator, kl_to_standard_normal
from gan_ablate.tricks.latent import truncate
from gan_ablate.tricks.surface import RealBatch


def ctx(iteration=0, max_steps=100):
    return StepContext(iteration=iteration, max_steps=max_steps)


def test_minibatch_features_peak_for_identical_samples_and_shape():
    layer = MinibatchDiscriminationLayer(6, kernels=4, kernel_dim=3)
    f = torch.randn(1, 6).repeat(10, 1)
    out = layer(f)
    assert out.shape == (10, 6 + 4)
    torch.testing.assert_close(out[:, 6:], torch.full((10, 4), 10.0 - 1 - 1))  # the maximum, N - 1, + bias -1
    spread = layer(torch.randn(10, 6) * 5)[:, 6:]
    assert (spread < 9.0 - 1).all() and (spread >= -1.0 - 1e-6).all()
    module = make_module("trick=minibatch_discrimination")
    assert isinstance(module.D.head[0], MinibatchDiscriminationLayer)
    run_steps(module, 2)


def test_minibatch_features_leave_out_each_samples_own_distance_and_add_the_bias():
    """improved-gan's MinibatchLayer: o_i = sum_{j != i} exp(-||M_i - M_j||_1) + b, computed here
    independently on a batch with two identical samples and one far away."""
    layer = MinibatchDiscriminationLayer(4, kernels=3, kernel_dim=2)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        layer.log_weight_scale.uniform_(-1, 1)
    f = torch.tensor([[1.0, 2.0, 0.0, -1.0], [1.0, 2.0, 0.0, -1.0], [1.3, 1.5, 0.2, -0.6]])
    weight = layer.theta * layer.log_weight_scale.exp() / layer.theta.norm(dim=0)
    m = (f @ weight).view(3, 3, 2)
    expected = torch.stack([sum(torch.exp(-(m[i] - m[j]).abs().sum(-1)) for j in range(3) if j != i)
                            for i in range(3)]) + layer.bias
    torch.testing.assert_close(layer(f)[:, 4:], expected)
    assert layer(f[:1])[:, 4:].tolist() == [[0.5, -1.0, 2.0]]  # alone in its batch: the bias only
    (trick,) = build_tricks({"minibatch_discrimination": {}})
    assert (trick.params.kernels, trick.params.kernel_dim) == (100, 5)  # improved-gan's CIFAR-10 D


def test_multi_generator_gives_every_generator_gradient():
    module = make_module("trick=multi_generator", "trick.multi_generator.k=3")
    assert isinstance(module.G, MultiGenerator) and len(module.G.generators) == 3
    first = [p.detach().clone() for p in module.G.generators[1].parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(first, module.G.generators[0].parameters()))  # re-initialised
    torch.manual_seed(0)
    module.G(torch.randn(64, 2)).pow(2).sum().backward()
    for g in module.G.generators:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    run_steps(module, 2)


def _linear_weights(net):
    return [m.weight.detach() for m in net.modules() if isinstance(m, torch.nn.Linear)]


def test_multi_generator_extra_generators_follow_model_init_from_the_runs_seed():
    """model.init=orthogonal: every extra G's weight matrices have orthonormal rows (or columns), as G's
    do, and differ from G's and from each other; the same seed gives the same extra generators."""
    module = make_module("trick=multi_generator", "init=orthogonal_init", "model.g_hidden=16")
    generators = module.G.generators
    for g in generators:
        for w in _linear_weights(g):
            gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
            torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert all(not torch.allclose(x, y) for x, y in zip(_linear_weights(generators[a]), _linear_weights(generators[b])))
    again = make_module("trick=multi_generator", "init=orthogonal_init", "model.g_hidden=16")
    other_seed = make_module("trick=multi_generator", "init=orthogonal_init", "model.g_hidden=16", "seed=1")
    for x, y, z in zip(_linear_weights(generators[2]), _linear_weights(again.G.generators[2]),
                       _linear_weights(other_seed.G.generators[2])):
        assert torch.equal(x, y) and not torch.allclose(x, z)
    dcgan = make_module("trick=multi_generator", "init=dcgan_init", "model.g_hidden=64")
    extra = torch.cat([w.flatten() for w in _linear_weights(dcgan.G.generators[1])])
    assert extra.std().item() == pytest.approx(0.02, rel=0.1) and abs(extra.mean().item()) < 0.003  # N(0, 0.02)


def test_vae_gan_kl_term_has_its_closed_form():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0_0]])
    expected = 0.5 * ((1.0 + 1.0 - 1 - 0.0) + (torch.e ** 2 + 0.0 - 1 - 2.0))
    assert kl_to_standard_normal(mu, logvar).item() == pytest.approx(float(expected), rel=1e-6)
    assert kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    module = make_module("trick=vae_gan")
    enc_before = [p.detach().clone() for p in module.G.encoder.parameters()]
    run_steps(module, 3)
    assert any(not torch.equal(a, b) for a, b in zip(enc_before, module.G.encoder.parameters()))  # trained with G


@pytest.mark.parametrize("space", ["d_features", "pixels"])
def test_vae_gan_reconstruction_is_measured_in_ds_features_by_default(space):
    """Larsen et al.'s Dis_l: ||f_D(x) - f_D(G(z ~ q(z|x)))||^2, recomputed here; changing D changes it.
    The pixel variant is ||x - G(z)||^2 and does not depend on D. Each G update computes it."""
    overrides = ["trick=vae_gan", "trick.vae_gan.kl_weight=0"] + ([] if space == "d_features" else
                                                                  ["trick.vae_gan.recon_space=pixels"])
    module = make_module(*overrides)
    (trick,) = module.tricks
    assert trick.params.recon_space == space
    x = module.real_data[:32]
    module.real_batch = lambda: RealBatch(x, None)

    def term():
        torch.manual_seed(5)
        return trick.g_penalty(module, None, ctx()).item()

    before = term()
    torch.manual_seed(5)
    mu, logvar = module.G.encode(x)
    x_tilde = module.G(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
    if space == "d_features":
        expected = (module.D.features(x_tilde) - module.D.features(x)).pow(2).mean()
    else:
        expected = (x_tilde - x).pow(2).mean()
    assert before == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        for p in module.D.parameters():
            p.mul_(1.5)
    assert (term() != pytest.approx(before, rel=1e-3)) if space == "d_features" else term() == before
    seen = []
    error = trick.reconstruction_error
    trick.reconstruction_error = lambda D, x_tilde, x: seen.append(D) or error(D, x_tilde, x)
    run_steps(module, 2)
    assert seen == [module.D, module.D]


def test_truncation_leaves_no_component_beyond_the_threshold():
    z = torch.randn(5000, 8) * 3
    generator = torch.Generator().manual_seed(1)
    t = truncate(z, 0.5, lambda n: torch.randn(n, generator=generator))
    assert t.abs().max().item() <= 0.5
    inside = z.abs() <= 0.5
    assert torch.equal(t[inside], z[inside])  # only the outside components were resampled
    module = make_module("trick=truncation", "trick.truncation.threshold=1.0")
    assert module.hooks.eval_latent(z).abs().max() <= 1.0


def test_truncation_resamples_from_the_runs_prior():
    """latent=uniform_z: the resampled components are U(-t, t) (flat), not a truncated N(0, 1), whose
    density at 0 is 1.13 times that at t = 0.5; a threshold that truncates nothing of U(-1, 1) is refused."""
    from gan_ablate.config import TrickConflict
    module = make_module("latent=uniform_z", "trick=truncation", "trick.truncation.threshold=0.5")
    z = torch.rand(1000, 200) * 2 - 1
    t = module.hooks.eval_latent(z)
    inside = z.abs() <= 0.5
    assert t.abs().max().item() <= 0.5 and torch.equal(t[inside], z[inside])
    resampled = t[~inside].abs()
    near_zero, near_edge = (resampled < 0.1).sum().item(), (resampled > 0.4).sum().item()
    assert near_zero / near_edge == pytest.approx(1.0, abs=0.05)
    gaussian = make_module("trick=truncation", "trick.truncation.threshold=0.5").hooks.eval_latent(z)[~inside].abs()
    assert (gaussian < 0.1).sum().item() / (gaussian > 0.4).sum().item() == pytest.approx(1.13, abs=0.05)
    with pytest.raises(TrickConflict, match=re.escape("trick.truncation.threshold=1.0 truncates nothing of "
                                                      "latent=uniform_z's U(-1, 1): choose a threshold below 1")):
        make_module("latent=uniform_z", "trick=truncation")


def test_feature_matching_is_zero_when_batches_are_equal():
    module = make_module("trick=feature_matching")
    (trick,) = module.tricks
    x = module.real_data[:32]
    module.real_batch = lambda: RealBatch(x, None)  # the real batch G is matched against
    value = trick.g_objective(torch.tensor(5.0), module, x.clone(), ctx())
    assert value.item() == pytest.approx(0.0, abs=1e-10)
    value = trick.g_objective(torch.tensor(5.0), module, x + 1.0, ctx())
    assert value.item() > 1e-4
    module.tricks[0].params.keep_adversarial = True
    assert trick.g_objective(torch.tensor(5.0), module, x.clone(), ctx()).item() == pytest.approx(5.0)


def test_loss_balancing_adds_updates_only_over_the_threshold():
    for threshold, expect_extra in [(1e9, False), (-1e9, True)]:
        module = make_module("trick=loss_balancing", f"trick.loss_balancing.d_threshold={threshold}",
                             f"trick.loss_balancing.g_threshold={threshold}", "trick.loss_balancing.max_extra=3")
        opt_g, opt_d = run_steps(module, 2)
        assert (opt_d.steps, opt_g.steps) == ((8, 8) if expect_extra else (2, 2))


def test_checkpoint_swap_trains_an_old_d_then_restores_the_current_one():
    module = make_module("trick=checkpoint_swap", "trick.checkpoint_swap.snapshot_every=2",
                         "trick.checkpoint_swap.swap_every=6", "trick.checkpoint_swap.duration=2")
    (trick,) = module.tricks
    run_steps(module, 6)  # iterations 0..5: snapshots after 2, 4 and 6 iterations, then the swap
    assert trick.parked is not None and trick.swap_ends_at == 8
    current = {k: v.clone() for k, v in trick.parked.items()}
    swapped_in = module.D.state_dict()
    assert any(all(torch.equal(swapped_in[k], snap[k]) for k in snap) for snap in trick.snapshots[:-1])
    assert not all(torch.equal(swapped_in[k], current[k]) for k in current)
    run_steps(module, 1)  # the old D trains for a while...
    assert trick.parked is not None
    run_steps(module, 1)  # ...and after `duration` iterations the current D is back, exactly
    assert trick.parked is None
    restored = module.D.state_dict()
    assert all(torch.equal(restored[k], current[k]) for k in current)


def test_presets_set_the_core_values_from_their_parameters():
    s = validate(make_cfg("trick=[ttur,n_critic,g_steps,large_batch,capacity,ema]", "trick.ttur.lr_d=3e-4",
                          tiny=False))
    assert (s.optim.g.lr, s.optim.d.lr) == (1e-4, 3e-4)
    assert (s.optim.n_critic, s.optim.g_steps, s.data.batch_size) == (5, 2, 1024)
    assert (s.model.g_width, s.model.d_width, s.metrics.primary) == (1.0, 2.0, "ema")
    s = validate(make_cfg("data=mnist", "trick=wgan_gp"))
    assert (s.loss.name, s.optim.n_critic, s.model.norm_d) == ("wgan_gp", 5, "none")
    s = validate(make_cfg("trick=[d_dropout,g_dropout,layer_noise,skip_z]"))
    assert (s.model.d_dropout, s.model.g_dropout, s.model.g_layer_noise, s.model.skip_z) == (0.5, 0.5, 0.1, True)


def test_n_critic_and_ttur_presets_reach_the_optimisers():
    module = make_module("trick=[n_critic,ttur]")
    opt_g, opt_d = run_steps(module, 3)
    assert (opt_d.steps, opt_g.steps) == (15, 3)
    assert opt_g.param_groups[0]["lr"] == 1e-4 and opt_d.param_groups[0]["lr"] == 4e-4


def test_sgd_d_option():
    module = make_module("optim=sgd_d")
    opt_g, opt_d = module.configure_optimizers()
    assert type(opt_g).__name__ == "Adam" and type(opt_d).__name__ == "SGD"


def test_minibatch_discrimination_refused_with_wgan_gp():
    from gan_ablate.config import ConfigError
    from gan_ablate.validation import check_config
    with pytest.raises(ConfigError, match="minibatch_discrimination.*conflicts with trick 'wgan_gp'"):
        check_config(make_cfg("trick=[minibatch_discrimination,wgan_gp]"))


@pytest.mark.slow
def test_conditional_generator_follows_the_asked_class():
    """Classifier: the nearest ring mode of a sample generated for class y is mode y."""
    from gan_ablate.data.toy import ring_modes
    module = make_module("trick=conditional", "model.g_hidden=64", "model.d_hidden=64", "data.batch_size=64",
                         "model.z_dim=4")
    assert module.real_data.shape[1] == 2 + 8  # the label travels with every real sample
    run_steps(module, 800)
    module.G.eval()
    y = torch.arange(8).repeat(50)
    with torch.no_grad():
        x = module.hooks.eval_samples(module.G(torch.randn(400, 4), y))
    assert x.shape == (400, 2)
    accuracy = (torch.cdist(x, ring_modes()).argmin(dim=1) == y).float().mean().item()
    assert accuracy > 0.8  # chance: 1/8


def test_conditional_images_carry_label_channels_into_d():
    module = make_module("data=digits", "trick=conditional", "model.g_channels=8", "model.d_channels=8")
    assert module.real_data.shape[1:] == (11, 8, 8)
    fake = module.G(torch.randn(4, 100), torch.tensor([0, 3, 3, 9]))
    assert fake.shape == (4, 11, 8, 8)
    assert torch.equal(fake[:, 1:].amax(dim=(2, 3)).argmax(dim=1), torch.tensor([0, 3, 3, 9]))
    run_steps(module, 2)


def test_acgan_auxiliary_loss_decreases():
    module = make_module("trick=acgan", "model.g_hidden=64", "model.d_hidden=64", "data.batch_size=64")
    (trick,) = module.tricks
    aux = []
    penalty = trick.d_penalty

    def recording(*args):
        value = penalty(*args)
        aux.append(trick.last_aux_loss.item())
        return value
    trick.d_penalty = recording
    run_steps(module, 150)
    assert sum(aux[:10]) / 10 > 2 * 1.9  # about 2 log(8) at first: real and fake terms
    assert sum(aux[-10:]) / 10 < 0.75 * sum(aux[:10]) / 10


def _aux_ce(module, x, labels):
    """An independent cross-entropy of D's auxiliary head: log-softmax by hand, features by D's layers."""
    d = module.D
    logits = d.aux_head(d.features(x))
    return -(logits.log_softmax(dim=1)[torch.arange(len(labels)), labels]).mean()


def test_acgan_generator_is_class_conditional():
    module = make_module("trick=acgan", "model.g_hidden=32", "model.d_hidden=32")
    z = torch.randn(6, module.cfg.model.z_dim)
    a, b = module.G(z, torch.zeros(6, dtype=torch.long)), module.G(z, torch.full((6,), 5))
    assert a.shape == (6, 2) and not torch.allclose(a, b)  # the label changes the sample, which carries no label
    assert torch.equal(module.G.last_labels, torch.full((6,), 5))


def test_acgan_d_classifies_real_and_fake_and_g_is_pushed_to_its_class():
    """D's term: CE on the real batch with its labels + CE on the fake batch with the labels G drew; G's
    term: CE on its own samples. Each compared with an independent computation, each non-zero."""
    module = make_module("trick=acgan", "model.g_hidden=32", "model.d_hidden=32", "trick.acgan.weight=0.5")
    (trick,) = module.tricks
    real = module.real_batch()
    fake = module.G(module.sample_z(len(real.x)))
    fake_labels = module.G.last_labels
    want_d = 0.5 * (_aux_ce(module, real.x, real.labels) + _aux_ce(module, fake, fake_labels))
    torch.testing.assert_close(trick.d_penalty(module, real, fake, ctx()), want_d)
    torch.testing.assert_close(trick.g_penalty(module, fake, ctx()), 0.5 * _aux_ce(module, fake, fake_labels))
    assert _aux_ce(module, fake, fake_labels) > 0.1 and _aux_ce(module, real.x, real.labels) > 0.1
    # the fake term is not the real term again: other samples, other labels
    assert not torch.allclose(want_d, _aux_ce(module, real.x, real.labels))


def test_acgan_training_step_uses_the_aux_head_in_both_updates():
    """Through training_step: the auxiliary head reads real and fake in D's update and fake in G's, and
    G's weights get the class loss's gradient (the one-hot columns of G's first layer move)."""
    module = make_module("trick=acgan", "model.g_hidden=32", "model.d_hidden=32")
    calls = []
    module.D.aux_head.register_forward_hook(lambda m, inputs, out: calls.append(torch.is_grad_enabled()))
    first = module.G.inner.blocks[0][0]
    k, z_dim = module.n_classes, module.cfg.model.z_dim
    before = first.weight[:, z_dim:z_dim + k].detach().clone()
    run_steps(module, 1)
    assert len(calls) == 3  # D update: real, fake; G update: fake
    assert not torch.allclose(first.weight[:, z_dim:z_dim + k], before)


def test_acgan_with_virtual_batch_norm_at_batch_32_classifies_through_the_reference_batch():
    """norm_d=virtual_batch_norm: the auxiliary head's input for a sample is the same whatever its
    batch-mates (D's reference batch is used), and a training step runs at batch 32."""
    module = make_module("trick=acgan", "norm_d=virtual_batch_norm", "data.batch_size=32", "model.g_hidden=32",
                         "model.d_hidden=32")
    from gan_ablate.tricks.labels import d_features

    x = module.real_batch().x
    alone = d_features(module.D, x[:1])
    with_mates = d_features(module.D, torch.cat([x[:1], 3 * torch.randn(31, 2)]))[:1]
    torch.testing.assert_close(alone, with_mates)
    run_steps(module, 2)


def test_checkpoint_swap_first_swap_is_where_the_schedule_puts_it_and_a_run_too_short_for_it_is_refused():
    """snapshot_every=3, swap_every=4: two snapshots exist after 6 iterations, so the first swap starts
    after iteration 8. A run of 8 iterations would never train against an old D: refused at config
    time; a run of 9 swaps."""
    from gan_ablate.config import ScheduleOutsideRun
    from gan_ablate.validation import check_config

    params = ("trick=checkpoint_swap", "trick.checkpoint_swap.snapshot_every=3", "trick.checkpoint_swap.swap_every=4")
    with pytest.raises(ScheduleOutsideRun, match="first swap after iteration 8.*trainer.max_steps=8"):
        check_config(make_cfg(*params, "trainer.max_steps=8"))
    check_config(make_cfg(*params, "trainer.max_steps=9"))
    module = make_module(*params, "trainer.max_steps=9")
    (trick,) = module.tricks
    run_steps(module, 7)
    assert trick.parked is None
    run_steps(module, 1)
    assert trick.parked is not None and trick.first_swap() == 8


@pytest.mark.slow
def test_checkpoint_swap_on_the_short_grid_preset_is_refused_on_one_line(tmp_path):
    """Its defaults (first swap after 500 iterations) on pacgan_grid_short's 500: a results row that
    would be the baseline's under another name."""
    from conftest import run_train_py

    result = run_train_py("experiment=pacgan_grid_short", "trick=checkpoint_swap", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "trainer.max_steps=500" in result.stderr
    assert not (tmp_path / "result.json").exists()
