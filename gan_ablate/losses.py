"""GAN losses, one class each: d_loss on D's logits for a real and a fake batch, g_loss on fake logits.

A loss is a Trick too, so what a loss does besides its value (WGAN's weight clipping, WGAN-GP's
penalty) goes through the same hooks as every other trick.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.config import LossConfig, TrickConflict
from gan_ablate.penalties import dragan_penalty, gradient_penalty
from gan_ablate.tricks.base import Trick, family_choices


class Loss(Trick):
    g_uses_real = False  # True: g_loss also needs D's output on a real batch

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg

    def setup(self, gan):
        # build_tricks checks the `conflicts` of tricks only: a loss refuses its own, before training
        for choice in family_choices(gan.cfg):
            if choice in self.conflicts:
                raise TrickConflict(f"loss={self.name} conflicts with {choice}: they cannot run together")

    def d_loss(self, real_logits, fake_logits, real_t, fake_t) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits, real_logits=None) -> torch.Tensor:
        raise NotImplementedError


class NonSaturating(Loss):
    """D: binary cross-entropy on (real, real_t) and (fake, fake_t). G: maximise log D(G(z))."""
    name = "non_saturating"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return (F.binary_cross_entropy_with_logits(real_logits, real_t)
                + F.binary_cross_entropy_with_logits(fake_logits, fake_t))

    def g_loss(self, fake_logits, real_logits=None):
        return F.softplus(-fake_logits).mean()      # -log sigmoid(l)


class Minimax(NonSaturating):
    """G minimises log(1 - D(G(z))), the saturating loss of the original paper."""
    name = "minimax"

    def g_loss(self, fake_logits, real_logits=None):
        return -F.softplus(fake_logits).mean()      # log(1 - sigmoid(l))


class LeastSquares(Loss):
    name = "lsgan"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return 0.5 * ((real_logits - real_t) ** 2).mean() + 0.5 * ((fake_logits - fake_t) ** 2).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()


class Hinge(Loss):
    name = "hinge"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


class Wasserstein(Loss):
    """Critic loss with weight clipping after every D step."""
    name = "wgan"
    revision = 2
    revision_note = "before: the run's Adam, not the paper's RMSProp lr 5e-5 with n_critic 5, unless optim= was given"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()

    @torch.no_grad()
    def after_d_step(self, gan, ctx):
        c = self.cfg.clip
        params = [p for p in gan.D.parameters()]
        torch._foreach_clamp_min_(params, -c)
        torch._foreach_clamp_max_(params, c)


class WassersteinGP(Wasserstein):
    name = "wgan_gp"
    revision = 2
    revision_note = ("before: the run's Adam, not the paper's lr 1e-4, betas (0, 0.9), n_critic 5, unless optim= was "
                     "given; a batch-norm critic was accepted")
    # the penalty is per sample: batch statistics in D couple the samples (Gulrajani et al., sec. 4)
    conflicts = ("norm_d=batch_norm",)

    def after_d_step(self, gan, ctx):
        pass  # the penalty replaces clipping

    def d_penalty(self, gan, real, fake, ctx):
        return self.cfg.gp_weight * gradient_penalty(gan.D, real.x, fake)


class RelativisticAverage(Loss):
    """RaGAN (Jolicoeur-Martineau 2019): D asks whether real data is more realistic than the average
    fake (and fake less than the average real); G the reverse. G needs D's output on real data."""
    name = "relativistic"
    g_uses_real = True

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return (F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), real_t)
                + F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), fake_t))

    def g_loss(self, fake_logits, real_logits=None):
        real_logits = real_logits.detach()
        return (F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.ones_like(fake_logits))
                + F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.zeros_like(real_logits)))


class Dragan(NonSaturating):
    """DRAGAN (Kodali et al. 2017): the non-saturating loss + a gradient penalty around the data."""
    name = "dragan"
    revision = 2
    revision_note = "before: the perturbation's scale was the batch std with ddof 1, not the reference's ddof 0"

    def d_penalty(self, gan, real, fake, ctx):
        return self.cfg.gp_weight * dragan_penalty(gan.D, real.x)


class AutoencoderEnergy(nn.Module):
    """An autoencoder D whose output is each sample's reconstruction error: its energy (N, 1)."""

    def __init__(self, data_shape: tuple[int, ...], hidden: int, norm: str):
        super().__init__()
        dim = math.prod(data_shape)
        code = max(2, hidden // 4)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.LeakyReLU(0.2),
                                      nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(code, hidden), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden, dim))
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.code = self.features(x)  # the encoder's representation of the latest batch (EBGAN's PT reads it)
        error = self.decoder(self.code) - x.flatten(1)
        per_sample = error.pow(2) if self.norm == "l2" else error.abs()
        return per_sample.mean(dim=1, keepdim=True)


class _EnergyLoss(Loss):
    norm = "l2"

    def setup(self, gan):
        super().setup(gan)
        hidden = gan.cfg.model.d_hidden if len(gan.sample_shape) == 1 else 256
        self.autoencoder = AutoencoderEnergy(gan.sample_shape, hidden, self.norm)
        gan.replace_net("D", self.autoencoder)


def pulling_away(s: torch.Tensor) -> torch.Tensor:
    """EBGAN's pulling-away term (Zhao et al. 2017, eq. 6): the mean squared cosine similarity over
    the N (N - 1) pairs of distinct representations in the batch."""
    unit = F.normalize(s.flatten(1), dim=1)
    cos2 = (unit @ unit.t()).pow(2)
    n = len(s)
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


class EnergyBased(_EnergyLoss):
    """EBGAN (Zhao et al. 2017): D an autoencoder; D minimises E(x) + max(0, margin - E(G(z))),
    G minimises E(G(z)) + pt_weight * PT(S), S the encoder's representation of the generated batch
    (EBGAN-PT, sec. 2.4; weight 0.1 in its experiments). The "logits" this loss receives are energies."""
    name = "ebgan"
    revision = 2
    revision_note = "before: G's loss had no pulling-away term (EBGAN-PT, weight 0.1)"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return real_logits.mean() + F.relu(self.cfg.margin - fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return fake_logits.mean()

    def g_penalty(self, gan, fake, ctx):
        # G's update scored the fake batch last (this loss needs no real batch in G's update)
        return self.cfg.pt_weight * pulling_away(self.autoencoder.code)


class BoundaryEquilibrium(_EnergyLoss):
    """BEGAN (Berthelot et al. 2017): L1 autoencoder D; D minimises L(x) - k_t L(G(z)), G minimises
    L(G(z)); k_t+1 = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) after every D update."""
    name = "began"
    norm = "l1"

    def __init__(self, cfg: LossConfig):
        super().__init__(cfg)
        self.k = torch.zeros(())
        self.last_energies: tuple[torch.Tensor, torch.Tensor] | None = None

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        real_energy, fake_energy = real_logits.mean(), fake_logits.mean()
        self.last_energies = (real_energy.detach(), fake_energy.detach())
        return real_energy - self.k.to(real_energy.device) * fake_energy

    def g_loss(self, fake_logits, real_logits=None):
        return fake_logits.mean()

    def after_d_step(self, gan, ctx):
        real_energy, fake_energy = self.last_energies
        # a tensor update: no host sync
        self.k = (self.k.to(real_energy.device) + self.cfg.lambda_k * (self.cfg.gamma * real_energy - fake_energy)).clamp(0.0, 1.0)

    def state_dict(self):
        return {"k": self.k}

    def load_state_dict(self, state):
        self.k = state["k"]


LOSSES: dict[str, type[Loss]] = {c.name: c for c in (NonSaturating, Minimax, LeastSquares, Hinge, Wasserstein,
                                                     WassersteinGP, RelativisticAverage, Dragan, EnergyBased,
                                                     BoundaryEquilibrium)}


def build_loss(cfg: LossConfig) -> Loss:
    return LOSSES[cfg.name](cfg)
