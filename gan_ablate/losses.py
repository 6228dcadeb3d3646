"""GAN losses, one class each: d_loss on D's logits for a real and a fake batch (and their targets), g_loss
on fake logits (and real ones where the loss compares them). Pure: no state, no nets, no hooks.

What a loss's recipe also does to training (WGAN's weight clipping, the WGAN-GP and DRAGAN penalties, the
autoencoder D of EBGAN and BEGAN with EBGAN's pulling-away term, BEGAN's k_t) is trick-side units that
gan_ablate/tricks/loss_recipes.py composes for `loss=<name>`.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from gan_ablate.config import LossConfig
from gan_ablate.registry import add_to_registry


class Loss:
    name: ClassVar[str] = ""
    g_uses_real: ClassVar[bool] = False  # True: g_loss also needs D's output on a real batch
    # choices the loss's recipe cannot run with (`group=option`), refused before training
    conflicts: ClassVar[tuple[str, ...]] = ()
    # bumped when the recipe's mechanism changes, with what changed (as a trick's revision: gan_ablate/record.py)
    revision: ClassVar[int] = 1
    revision_note: ClassVar[str] = ""

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def d_loss(self, real_logits, fake_logits, real_t, fake_t) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits, real_logits=None) -> torch.Tensor:
        raise NotImplementedError


LOSSES: dict[str, type[Loss]] = {}


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Add a loss class to LOSSES under its `name` (gan_ablate/registry.py's rule)."""
    return add_to_registry(LOSSES, cls, Loss, "loss", "register_loss")


@register_loss
class NonSaturating(Loss):
    """D: binary cross-entropy on (real, real_t) and (fake, fake_t). G: maximise log D(G(z))."""
    name = "non_saturating"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return (F.binary_cross_entropy_with_logits(real_logits, real_t)
                + F.binary_cross_entropy_with_logits(fake_logits, fake_t))

    def g_loss(self, fake_logits, real_logits=None):
        return F.softplus(-fake_logits).mean()      # -log sigmoid(l)


@register_loss
class Minimax(NonSaturating):
    """G minimises log(1 - D(G(z))), the saturating loss of the original paper."""
    name = "minimax"

    def g_loss(self, fake_logits, real_logits=None):
        return -F.softplus(fake_logits).mean()      # log(1 - sigmoid(l))


@register_loss
class LeastSquares(Loss):
    name = "lsgan"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return 0.5 * ((real_logits - real_t) ** 2).mean() + 0.5 * ((fake_logits - fake_t) ** 2).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()


@register_loss
class Hinge(Loss):
    name = "hinge"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


@register_loss
class Wasserstein(Loss):
    """The critic loss; its recipe clips D's weights after every D step."""
    name = "wgan"
    revision = 2
    revision_note = "before: the run's Adam, not the paper's RMSProp lr 5e-5 with n_critic 5, unless optim= was given"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


@register_loss
class WassersteinGP(Wasserstein):
    """The critic loss; its recipe adds the gradient penalty instead of clipping."""
    name = "wgan_gp"
    revision = 2
    revision_note = ("before: the run's Adam, not the paper's lr 1e-4, betas (0, 0.9), n_critic 5, unless optim= was "
                     "given; a batch-norm critic was accepted")
    # the penalty is per sample: batch statistics in D couple the samples (Gulrajani et al., sec. 4)
    conflicts = ("norm_d=batch_norm",)


@register_loss
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


@register_loss
class Dragan(NonSaturating):
    """DRAGAN (Kodali et al. 2017): the non-saturating loss; its recipe adds a gradient penalty around the data."""
    name = "dragan"
    revision = 2
    revision_note = "before: the perturbation's scale was the batch std with ddof 1, not the reference's ddof 0"


@register_loss
class EnergyBased(Loss):
    """EBGAN (Zhao et al. 2017): D minimises E(x) + max(0, margin - E(G(z))), G minimises E(G(z)); the
    "logits" are the energies of its recipe's autoencoder D, whose recipe also adds the pulling-away term
    to G's loss (EBGAN-PT, sec. 2.4)."""
    name = "ebgan"
    revision = 2
    revision_note = "before: G's loss had no pulling-away term (EBGAN-PT, weight 0.1)"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return real_logits.mean() + F.relu(self.cfg.margin - fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return fake_logits.mean()


@register_loss
class BoundaryEquilibrium(Loss):
    """BEGAN (Berthelot et al. 2017): D minimises L(x) - k_t L(G(z)), G minimises L(G(z)), L the L1
    energy of its recipe's autoencoder D. This is the loss at k_t = 0: k_t is state, so the recipe's
    equilibrium unit subtracts k_t L(G(z)) and updates k_t after every D step."""
    name = "began"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return real_logits.mean()

    def g_loss(self, fake_logits, real_logits=None):
        return fake_logits.mean()


def build_loss(cfg: LossConfig) -> Loss:
    return LOSSES[cfg.name](cfg)
