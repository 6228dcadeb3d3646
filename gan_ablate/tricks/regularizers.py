"""Penalties added to a loss, and gradient clipping."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gan_ablate.config import check_range
from gan_ablate.penalties import gradient_penalty
from gan_ablate.tricks.base import Trick, register


@register
class GradientPenalty(Trick):
    """The WGAN-GP penalty, weight * E[(||grad D(x_hat)|| - 1)^2], added to D's loss with any loss."""
    name = "gradient_penalty"
    # the penalty is per sample: batch statistics in D couple the samples (Gulrajani et al., sec. 4)
    conflicts = ("norm_d=batch_norm", "loss=wgan_gp", "loss=wgan")

    @dataclass
    class Params:
        weight: float = 10.0

        def __post_init__(self):
            check_range("weight", self.weight, 0)

    def d_penalty(self, gan, real, fake, ctx):
        return self.params.weight * gradient_penalty(gan.D, real.x, fake)


@register
class GradClip(Trick):
    """Clip the total gradient norm of D and of G before each optimiser step."""
    name = "grad_clip"

    @dataclass
    class Params:
        max_norm_d: float = 10.0
        max_norm_g: float = 10.0

        def __post_init__(self):
            check_range("max_norm_d", self.max_norm_d, 0, low_open=True)
            check_range("max_norm_g", self.max_norm_g, 0, low_open=True)

    def before_d_step(self, gan, ctx):
        nn.utils.clip_grad_norm_(gan.D.parameters(), self.params.max_norm_d)

    def before_g_step(self, gan, ctx):
        nn.utils.clip_grad_norm_(gan.G.parameters(), self.params.max_norm_g)


@torch.no_grad()
def add_orthogonality_gradient(net: nn.Module, strength: float) -> None:
    """BigGAN's `ortho` (ajbrock/BigGAN-PyTorch utils.py): strength * 2 (W W^T * (1 - I)) W added to
    the gradient of every parameter with two axes or more, i.e. the gradient of
    strength/2 * ||W W^T (1 - I)||_F^2 (half the paper's eq. 3 written as a loss)."""
    for p in net.parameters():
        if p.dim() < 2:
            continue
        w = p.view(p.shape[0], -1)
        off_diagonal = (w @ w.t()).fill_diagonal_(0.0)
        grad = (2.0 * strength * off_diagonal @ w).view_as(p)
        if p.grad is None:
            p.grad = grad
        else:
            p.grad += grad


@register
class OrthogonalReg(Trick):
    """BigGAN's modified orthogonal regularisation (Brock et al. 2019, sec. 3.1), as its code applies
    it (ajbrock/BigGAN-PyTorch utils.py `ortho`, called in train_fns.py after the loss's backward pass
    and before the optimiser step): beta * 2 (W W^T * (1 - I)) W added to the gradient of every G
    parameter with two axes or more; d_beta does the same for D (BigGAN's D_ortho, off by default)."""
    name = "orthogonal_reg"
    revision = 2
    revision_note = "before: the gradient of beta * ||W W^T * (1 - I)||^2 through the loss, twice BigGAN's ortho"

    @dataclass
    class Params:
        beta: float = 1e-4
        d_beta: float = 0.0

        def __post_init__(self):
            check_range("beta", self.beta, 0)
            check_range("d_beta", self.d_beta, 0)

    def before_d_step(self, gan, ctx):
        if self.params.d_beta > 0:
            add_orthogonality_gradient(gan.D, self.params.d_beta)

    def before_g_step(self, gan, ctx):
        add_orthogonality_gradient(gan.G, self.params.beta)


class _RunningMean:
    """The mean of every value a parameter list has taken so far (Salimans et al. 2016, sec. 3.3)."""

    def __init__(self):
        self.mean: list[torch.Tensor] | None = None
        self.count = 0

    def update(self, params: list[torch.Tensor]) -> None:
        self.count += 1
        if self.mean is None:
            self.mean = [p.detach().clone() for p in params]
        else:
            torch._foreach_lerp_(self.mean, [p.detach() for p in params], 1.0 / self.count)

    def distance(self, params: list[torch.Tensor]) -> torch.Tensor:
        if self.mean is None:
            return params[0].new_zeros(())
        return sum(((p - m) ** 2).sum() for p, m in zip(params, self.mean))


@register
class HistoricalAveraging(Trick):
    """weight * ||theta - mean of past theta||^2 added to each net's loss."""
    name = "historical_averaging"

    @dataclass
    class Params:
        weight: float = 1e-3

        def __post_init__(self):
            check_range("weight", self.weight, 0)

    def __init__(self, params=None):
        super().__init__(params)
        self.d_history, self.g_history = _RunningMean(), _RunningMean()

    def d_penalty(self, gan, real, fake, ctx):
        return self.params.weight * self.d_history.distance(list(gan.D.parameters()))

    def g_penalty(self, gan, fake, ctx):
        return self.params.weight * self.g_history.distance(list(gan.G.parameters()))

    def after_iteration(self, gan, ctx):
        self.d_history.update(list(gan.D.parameters()))
        self.g_history.update(list(gan.G.parameters()))

    def state_dict(self):
        return {net: {"mean": h.mean, "count": h.count} for net, h in (("d", self.d_history), ("g", self.g_history))}

    def load_state_dict(self, state):
        for net, h in (("d", self.d_history), ("g", self.g_history)):
            h.mean, h.count = state[net]["mean"], state[net]["count"]


@register
class FeatureMatching(Trick):
    """G matches the mean of D's last hidden features on real data (Salimans et al. 2016, sec. 3.1):
    G's loss becomes ||E f(x) - E f(G(z))||^2 (plus the adversarial loss with keep_adversarial)."""
    name = "feature_matching"
    conflicts = ("norm_d=virtual_batch_norm", "norm_d=reference_batch_norm")

    @dataclass
    class Params:
        keep_adversarial: bool = False

    def g_objective(self, loss, gan, fake, ctx):
        features = getattr(gan.D, "features")
        with torch.no_grad():
            real_mean = features(gan.real_batch().x).mean(dim=0)
        matching = (real_mean - features(fake).mean(dim=0)).pow(2).sum()
        return matching + loss if self.params.keep_adversarial else matching
