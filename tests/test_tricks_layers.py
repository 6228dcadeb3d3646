"""Mechanism tests of the layers and nets the structural tricks build, and of their boundaries."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import image_folders, make_cfg, make_module

from gan_ablate.config import ConfigError, validate
from gan_ablate.data import build_datamodule
from gan_ablate.evaluators import evaluation_latent
from gan_ablate.tricks import StepContext
from gan_ablate.tricks.architecture import MinibatchDiscriminationLayer, MultiGeneratorTrick
from gan_ablate.tricks.labels import NoisyLabels
from gan_ablate.tricks.latent import truncate
from gan_ablate.tricks.noise import InstanceNoise
from gan_ablate.tricks.surface import RealBatch


def test_minibatch_discrimination_theta_starts_as_improved_gans_normal_0_05():
    """openai/improved-gan's MinibatchLayer draws theta from lasagne.init.Normal(0.05). The forward pass
    normalises theta's columns, so its scale only sets how far an optimiser step turns them (the
    gradient of a weight-normalised column is 1/||theta|| times smaller): the init scale is the step size."""
    theta = MinibatchDiscriminationLayer(64, kernels=100, kernel_dim=5).theta
    assert theta.mean().item() == pytest.approx(0.0, abs=0.002)
    assert theta.std().item() == pytest.approx(0.05, rel=0.02)


def test_minibatch_discrimination_d_keeps_one_logit_per_sample():
    """The layer's [f, o] goes through a final linear layer to D's single logit, as in improved-gan's D."""
    module = make_module("trick=minibatch_discrimination")
    x = module.real_batch().x
    assert module.D(x).shape == make_module().D(x).shape == (len(x), 1)


@pytest.mark.parametrize("trick", ["multi_generator", "conditional", "acgan", "vae_gan"])
def test_a_wrapped_generator_says_which_z_it_reads_as_a_plain_one_does(trick):
    """G.z_dim is the width of the z that G reads (model.z_dim), whichever trick wraps G: code that
    samples a generator reads it there."""
    module = make_module(f"trick={trick}", "model.z_dim=3")
    assert module.G.z_dim == make_module("model.z_dim=3").G.z_dim == 3
    assert len(module.G(torch.randn(4, module.G.z_dim))) == 4


def test_multi_generator_distinct_run_seeds_give_distinct_extra_generators():
    """The extra generators' seeds are drawn from the run's seed over a range (2^62) wide enough that 50
    runs never share one: the runs of a seed sweep each get extra generators of their own."""
    G = torch.nn.Sequential(torch.nn.Linear(2, 2))
    first_extra = []
    for seed in range(50):
        gan = SimpleNamespace(G=G, cfg=SimpleNamespace(seed=seed, model=SimpleNamespace(init="default")))
        gan.replace_net = lambda which, net, gan=gan: setattr(gan, which, net)
        MultiGeneratorTrick(MultiGeneratorTrick.Params(k=2)).setup(gan)
        first_extra.append(tuple(gan.G.generators[1][0].weight.flatten().tolist()))
    assert len(set(first_extra)) == 50


def _kl_of_encoder(G, x):
    """KL(q(z|x) || N(0, I)) by torch.distributions, summed over z's dimensions, averaged over the batch."""
    mu, logvar = G.encode(x)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(dim=1).mean()


def test_vae_gan_encoder_is_an_mlp_on_flattened_images():
    """q(z|x) of an image batch: flatten, linear, LeakyReLU(0.2) (the slope of the project's Ds), linear
    to 2 * z_dim outputs, the first half mu, the second log sigma^2; recomputed here from its layers."""
    module = make_module("data=digits", "model=mlp", "trick=vae_gan", "model.z_dim=3")
    x = module.real_data[:5]
    first, last = [m for m in module.G.encoder.modules() if isinstance(m, torch.nn.Linear)]
    out = F.linear(F.leaky_relu(F.linear(x.flatten(1), first.weight, first.bias), 0.2), last.weight, last.bias)
    mu, logvar = module.G.encode(x)
    torch.testing.assert_close(mu, out[:, :3])
    torch.testing.assert_close(logvar, out[:, 3:])


def test_vae_gan_g_penalty_weights_the_kl_term():
    """recon_weight=0: G's extra term is kl_weight * KL(q(z|x) || p(z)) of the real batch."""
    module = make_module("trick=vae_gan", "trick.vae_gan.kl_weight=0.5", "trick.vae_gan.recon_weight=0")
    (trick,) = module.tricks
    x = module.real_data[:32]
    module.real_batch = lambda: RealBatch(x, None)
    kl = _kl_of_encoder(module.G, x)
    assert kl.item() > 0.01
    torch.testing.assert_close(trick.g_penalty(module, None, StepContext(0, 100)), 0.5 * kl)


def test_noisy_labels_p_0_never_flips_even_on_a_draw_of_exactly_0():
    """p is the flip probability: U < p, with U ~ U[0, 1), flips with probability p exactly, and p=0
    never flips. torch.rand can return 0.0 (a multiple of 2^-24): seed 146's stream does among its
    first 32768 draws (checked here), the one draw on which U <= p would flip a target at p=0."""
    real_t, fake_t = torch.ones(32768, 1), torch.zeros(32768, 1)
    torch.manual_seed(146)
    assert (torch.rand_like(real_t) == 0.0).any()
    trick = NoisyLabels(NoisyLabels.Params(p=0.0))
    torch.manual_seed(146)
    real, fake = trick.d_targets(real_t, fake_t, StepContext(0, 100))
    assert torch.equal(real, real_t) and torch.equal(fake, fake_t)


@pytest.mark.parametrize("trick", ["conditional", "acgan"])
def test_label_tricks_on_unlabelled_data_are_refused_saying_which_data_has_labels(trick, tmp_path):
    good, _ = image_folders(tmp_path)
    with pytest.raises(ConfigError) as refused:
        make_module("data=image_folder", f"data.root={good}", "data.image_size=8", "data.channels=1",
                    f"trick={trick}")
    assert str(refused.value) == f"trick={trick} needs labelled data (data=digits, mnist, ring8 or grid25)"


@pytest.mark.parametrize("trick", ["conditional", "acgan"])
def test_label_tricks_rebuild_the_nets_from_the_runs_seed(trick):
    """The nets they rebuild (G; conditional's D too) are initialised from the run's seed, as build_nets'
    nets are: the same seed gives the same weights, another seed other weights, every one of them."""
    def weights(seed):
        torch.manual_seed(seed)  # as run.py seeds the process before it builds the module (AC-GAN's aux head)
        module = make_module(f"trick={trick}", f"seed={seed}")
        return [p.detach() for net in (module.G, module.D) for p in net.parameters()]

    once, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(a, b) for a, b in zip(once, again))
    assert not any(torch.equal(a, c) for a, c in zip(once, other))


def test_truncation_keeps_components_on_the_threshold():
    """z follows the prior truncated to the closed interval [-t, t]: a component at +-t is kept, and a
    resampled component landing on t is accepted (a draw that lands on t, then at 0)."""
    draws = iter([0.5, 0.0])

    def draw(n):
        return torch.full((n,), next(draws))

    z = torch.tensor([[0.5, -0.5, 2.0]])
    torch.testing.assert_close(truncate(z, 0.5, draw), torch.tensor([[0.5, -0.5, 0.5]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_truncation_resamples_the_evaluation_latents_from_a_stream_of_its_own(seed):
    """The same evaluation z is truncated the same way every evaluation, whatever the training stream
    did in between, and leaves that stream alone; the resampled components are fresh draws, not copies
    of the evaluation z's own components (evaluators.evaluation_latent draws z from the run's seed)."""
    settings = validate(make_cfg("trick=truncation", f"seed={seed}"))
    z = evaluation_latent(settings, build_datamodule(settings.data, settings.trainer.max_steps).prepare())
    module = make_module("trick=truncation", f"seed={seed}")
    training_stream = torch.get_rng_state()
    first = module.hooks.eval_latent(z)
    assert torch.equal(torch.get_rng_state(), training_stream)
    torch.rand(100)
    assert torch.equal(module.hooks.eval_latent(z), first)
    resampled = first[z.abs() > module.tricks[0].params.threshold]
    assert len(resampled) > 100 and not torch.isin(resampled, z).any()


def test_instance_noise_adds_the_scheduled_std_times_a_standard_normal_draw():
    """x + std_t * n, n ~ N(0, I) from the step's stream, at std_t = 1 (std=1 at iteration 0) as at a
    decayed std_t = 0.5, recomputed here from the same stream."""
    trick = InstanceNoise(InstanceNoise.Params(std=1.0))
    x = torch.randn(16, 2)
    for iteration, std in [(0, 1.0), (50, 0.5)]:
        torch.manual_seed(4)
        noisy = trick.d_input(x, StepContext(iteration, 100))
        torch.manual_seed(4)
        torch.testing.assert_close(noisy, x + std * torch.randn_like(x))


def _output_channels_first(m):
    """A layer's weight as the matrix that maps its input to one output channel per row (Miyato et al.
    2018 normalise this one): ConvTranspose2d stores its output channels in dim 1."""
    w = m.weight.detach()
    return w.transpose(0, 1).flatten(1) if isinstance(m, torch.nn.ConvTranspose2d) else w.flatten(1)


def test_spectral_norm_normalises_every_layer_of_both_nets_along_its_output_channels():
    """on_g and on_d on DCGAN (Linear, Conv2d in D, ConvTranspose2d in G): every weight, as the matrix
    from its input to its output channels, has largest singular value 1. n_power_iterations=50
    power-method steps per forward pass make the estimate exact to 1e-3 after one pass (the weights read
    here), which torch's default of 1 step does not."""
    module = make_module("data=digits", "trick=spectral_norm", "trick.spectral_norm.on_g=true",
                         "trick.spectral_norm.n_power_iterations=50", "model.g_channels=8", "model.d_channels=8")
    layer_kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    kinds = set()
    for net in (module.G, module.D):
        for m in net.modules():
            if isinstance(m, layer_kinds):
                kinds.add(next(kind for kind in layer_kinds if isinstance(m, kind)))
                sigma = torch.linalg.matrix_norm(_output_channels_first(m), ord=2).item()
                assert sigma == pytest.approx(1.0, abs=1e-3), m
    assert kinds == set(layer_kinds)


@pytest.mark.parametrize("data", ["ring8", "digits"])
def test_conditional_evaluates_gs_samples_without_the_label_channels_d_reads(data):
    """G's samples carry the one-hot label channels into D; the metrics see the data's channels only."""
    module = make_module(f"data={data}", "trick=conditional", "model.g_channels=8", "model.d_channels=8")
    with torch.no_grad():
        samples = module.G(torch.randn(16, module.cfg.model.z_dim))
    channels = module.sample_shape[0]
    assert samples.shape[1] == channels + module.n_classes
    evaluated = module.hooks.eval_samples(samples)
    assert evaluated.shape[1:] == tuple(module.sample_shape)
    torch.testing.assert_close(evaluated, samples[:, :channels])
