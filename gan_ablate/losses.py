"""GAN losses, one class each: d_loss on D's logits for a real and a fake batch, g_loss on fake logits.

A loss is a Trick too, so what a loss does besides its value (WGAN's weight clipping, WGAN-GP's
penalty) goes through the same hooks as every other trick.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gan_ablate.config import LossConfig
from gan_ablate.penalties import gradient_penalty
from gan_ablate.tricks.base import Trick


class Loss(Trick):
    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg

    def d_loss(self, real_logits, fake_logits, real_t, fake_t) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits) -> torch.Tensor:
        raise NotImplementedError


class NonSaturating(Loss):
    """D: binary cross-entropy on (real, real_t) and (fake, fake_t). G: maximise log D(G(z))."""
    name = "non_saturating"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return (F.binary_cross_entropy_with_logits(real_logits, real_t)
                + F.binary_cross_entropy_with_logits(fake_logits, fake_t))

    def g_loss(self, fake_logits):
        return F.softplus(-fake_logits).mean()      # -log sigmoid(l)


class Minimax(NonSaturating):
    """G minimises log(1 - D(G(z))), the saturating loss of the original paper."""
    name = "minimax"

    def g_loss(self, fake_logits):
        return -F.softplus(fake_logits).mean()      # log(1 - sigmoid(l))


class LeastSquares(Loss):
    name = "lsgan"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return 0.5 * ((real_logits - real_t) ** 2).mean() + 0.5 * ((fake_logits - fake_t) ** 2).mean()

    def g_loss(self, fake_logits):
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()


class Hinge(Loss):
    name = "hinge"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


class Wasserstein(Loss):
    """Critic loss with weight clipping after every D step."""
    name = "wgan"

    def d_loss(self, real_logits, fake_logits, real_t, fake_t):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()

    @torch.no_grad()
    def after_d_step(self, gan, ctx):
        c = self.cfg.clip
        params = [p for p in gan.D.parameters()]
        torch._foreach_clamp_min_(params, -c)
        torch._foreach_clamp_max_(params, c)


class WassersteinGP(Wasserstein):
    name = "wgan_gp"

    def after_d_step(self, gan, ctx):
        pass  # the penalty replaces clipping

    def d_penalty(self, gan, real, fake, ctx):
        return self.cfg.gp_weight * gradient_penalty(gan.D, real, fake)


LOSSES: dict[str, type[Loss]] = {c.name: c for c in (NonSaturating, Minimax, LeastSquares, Hinge,
                                                     Wasserstein, WassersteinGP)}


def build_loss(cfg: LossConfig) -> Loss:
    return LOSSES[cfg.name](cfg)
