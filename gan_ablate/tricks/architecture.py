"""Tricks that change a net's structure: minibatch discrimination, several generators, VAE-GAN."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.config import check_choice, check_range
from gan_ablate.nets.layers import init_weights
from gan_ablate.tricks.base import Trick, register
from gan_ablate.tricks.labels import d_features


class MinibatchDiscriminationLayer(nn.Module):
    """Salimans et al. 2016, sec. 3.2, as openai/improved-gan builds it (mnist_svhn_cifar10/nn.py
    MinibatchLayer): M = f T (N x B x C), T weight-normalised per (kernel, dimension) column;
    o(x_i)_b = sum_{j != i} exp(-||M_ib - M_jb||_1) + bias_b (the self-distance term excluded, the bias
    initialised to -1); the output is [f, o]. o_b - bias_b is at most N - 1, reached when every sample
    of the batch is identical. improved-gan's data-dependent initialisation pass (which rescales T and
    sets the bias from a first batch) is not reproduced, as no net here has one: T's columns start as
    random directions of norm exp(0) = 1, the bias at -1, as that pass finds them."""

    def __init__(self, in_features: int, kernels: int, kernel_dim: int):
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.theta = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.05)
        self.log_weight_scale = nn.Parameter(torch.zeros(kernels * kernel_dim))
        self.bias = nn.Parameter(torch.full((kernels,), -1.0))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        weight = self.theta * (self.log_weight_scale.exp() / self.theta.norm(dim=0))
        m = (f @ weight).view(-1, self.kernels, self.kernel_dim).transpose(0, 1)  # (B, N, C)
        l1 = torch.cdist(m, m, p=1.0)                                             # (B, N, N), no N*N*B*C temporary
        others = 1.0 - torch.eye(len(f), device=f.device, dtype=f.dtype)          # each sample's own term left out
        return torch.cat([f, (torch.exp(-l1) * others).sum(dim=2).t() + self.bias], dim=1)


@register
class MinibatchDiscrimination(Trick):
    """D's head also sees how close each sample's features are to the rest of its batch."""
    name = "minibatch_discrimination"
    revision = 2
    revision_note = "before: each sample's own distance counted, no bias, 32 kernels x 8 dims"
    # per-sample gradient penalties assume D scores samples independently (modification log 000)
    conflicts = ("wgan_gp", "gradient_penalty", "loss=wgan_gp", "loss=ebgan", "loss=began", "norm_d=virtual_batch_norm",
                 "norm_d=reference_batch_norm")

    @dataclass
    class Params:
        kernels: int = 100  # improved-gan's CIFAR-10 D (train_cifar_minibatch_discrimination.py)
        kernel_dim: int = 5

        def __post_init__(self):
            check_range("kernels", self.kernels, 1)
            check_range("kernel_dim", self.kernel_dim, 1)

    def setup(self, gan):
        d = gan.D  # never a WithReferenceBatch: this trick refuses the reference-batch norms
        in_features = d.features_dim
        d.head = nn.Sequential(MinibatchDiscriminationLayer(in_features, self.params.kernels, self.params.kernel_dim),
                               nn.Linear(in_features + self.params.kernels, 1))


class MultiGenerator(nn.Module):
    """k generators; each sample comes from one picked uniformly at random."""

    def __init__(self, generators: list[nn.Module]):
        super().__init__()
        self.generators = nn.ModuleList(generators)
        self.z_dim = getattr(generators[0], "z_dim", None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        which = torch.randint(len(self.generators), (z.shape[0],), device=z.device)
        outs = torch.stack([g(z) for g in self.generators])        # (k, N, ...)
        index = which.view(1, -1, *([1] * (outs.dim() - 2))).expand(1, *outs.shape[1:])
        return outs.gather(0, index)[0]


def fresh_copy(net: nn.Module, init: str, seed: int) -> nn.Module:
    """A copy of `net` with new weights drawn from `seed` by the scheme that initialised `net`
    (PyTorch's defaults, then model.init's scheme, as build_nets does)."""
    copy_ = copy.deepcopy(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in copy_.modules():
            if hasattr(m, "reset_parameters") and m is not copy_:
                m.reset_parameters()
        init_weights(copy_, init)
    return copy_


@register
class MultiGeneratorTrick(Trick):
    """A mixture of k generators (MGAN, Hoang et al. 2018; "How to improve GAN"); the k - 1 extra
    generators are initialised like G (model.init), each from its own seed drawn from the run's seed."""
    name = "multi_generator"
    revision = 2
    revision_note = "before: the extra generators ignored model.init and drew from the global RNG"

    @dataclass
    class Params:
        k: int = 3

        def __post_init__(self):
            check_range("k", self.k, 2)

    def setup(self, gan):
        seeds = torch.randint(2**62, (self.params.k - 1,), generator=torch.Generator().manual_seed(gan.cfg.seed))
        gan.replace_net("G", MultiGenerator([gan.G] + [fresh_copy(gan.G, gan.cfg.model.init, int(s)) for s in seeds]))


class VAEGANGenerator(nn.Module):
    """G as the decoder of a VAE: an encoder maps data to q(z|x); forward(z) is plain G."""

    def __init__(self, decoder: nn.Module, data_shape: tuple[int, ...], z_dim: int, hidden: int):
        super().__init__()
        self.decoder, self.z_dim = decoder, z_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(data_shape), hidden), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden, 2 * z_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


@register
class VAEGAN(Trick):
    """The VAE/GAN hybrid (Larsen et al. 2016; ganhacks #8): G is also the decoder of a VAE whose encoder
    maps real x to q(z|x); G's loss adds kl_weight * KL(q(z|x) || p(z)) + recon_weight * the
    reconstruction error of G(z ~ q(z|x)), measured as the paper's Dis_l likelihood (sec. 2.1): the
    squared distance between D's features (the layers before its head) of x and of its reconstruction
    (recon_space=d_features; D is not trained on it), or in pixels (recon_space=pixels, a plain VAE's).
    The paper's extra GAN term on the reconstructions is not added."""
    name = "vae_gan"
    revision = 2
    revision_note = "before: the reconstruction was measured in pixel space, not in D's features"

    @dataclass
    class Params:
        kl_weight: float = 1.0
        recon_weight: float = 1.0
        hidden: int = 128
        recon_space: str = "d_features"

        def __post_init__(self):
            check_choice("recon_space", self.recon_space, ("d_features", "pixels"))

    def setup(self, gan):
        gan.replace_net("G", VAEGANGenerator(gan.G, gan.sample_shape, gan.cfg.model.z_dim, self.params.hidden))

    def g_penalty(self, gan, fake, ctx):
        x = gan.real_batch().x
        mu, logvar = gan.G.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return (self.params.kl_weight * kl_to_standard_normal(mu, logvar)
                + self.params.recon_weight * self.reconstruction_error(gan.D, gan.G(z), x))

    def reconstruction_error(self, D: nn.Module, x_tilde: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.params.recon_space == "pixels":
            return F.mse_loss(x_tilde, x)
        with torch.no_grad():
            target = d_features(D, x)
        return F.mse_loss(d_features(D, x_tilde), target)
