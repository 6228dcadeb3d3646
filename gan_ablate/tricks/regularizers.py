"""Penalties added to a loss, and gradient clipping."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.config import ScheduleOutsideRun, check_range
from gan_ablate.penalties import gradient_penalty, zero_centred_gradient_penalty
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


class _ZeroCentredPenalty(Trick):
    """(gamma / 2) E||grad_x D(x)||^2 added to D's loss (Mescheder et al. 2018, eq. 9 and 10; LMescheder/
    GAN_stability gan_training/train.py: compute_grad2 and the reg_type branches), with StyleGAN2's lazy
    regularisation (NVlabs/stylegan2 training/loss.py D_logistic_r1 / D_logistic_r2: gamma * 0.5 * the
    per-sample squared gradient; training/training_loop.py: taken when the update counter is a multiple of
    D_reg_interval, the first update included, and scaled by the interval). Defaults: StyleGAN2's gamma = 10
    (run_training.py `D_loss.gamma = 10`) and D_reg_interval = 16. GAN_stability's default, reg_param 10
    with no 1/2 at every update, is gamma = 20, interval = 1 here.

    The interval counts D updates (n_critic per iteration, and any a trick repeats), and resumes from
    checkpoints. StyleGAN2 takes the lazy penalty as a separate optimiser step, with Adam's lr and betas
    adjusted by interval / (interval + 1); here it is added to the loss of that D update, and the optimiser
    is the run's. D's outputs are taken as the step takes them (gan.discriminate: through every trick's
    d_input, so under packing per pack), and the gradient is with respect to the samples before those hooks,
    as NVlabs/stylegan2-ada-pytorch training/loss.py takes R1 at `real_img_tmp` through its augmentation
    (its training_loop.py: the same interval, 16, and gain). With a D that couples samples (batch norm, minibatch
    discrimination) the gradient of the summed outputs includes those couplings, as in the references' code
    (StyleGAN2's D has its minibatch standard deviation layer)."""

    @dataclass
    class Params:
        gamma: float = 10.0
        interval: int = 16

        def __post_init__(self):
            check_range("gamma", self.gamma, 0)
            check_range("interval", self.interval, 1)

    def __init__(self, params=None):
        super().__init__(params)
        self.d_updates = 0  # D updates done so far

    def points(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Where the penalty is taken."""
        raise NotImplementedError

    def d_penalty(self, gan, real, fake, ctx):
        p = self.params
        if self.d_updates % p.interval:
            return 0.0
        critic = functools.partial(gan.discriminate, ctx=ctx)
        return p.interval * 0.5 * p.gamma * zero_centred_gradient_penalty(critic, self.points(real.x, fake))

    def after_d_step(self, gan, ctx):
        self.d_updates += 1

    def state_dict(self):
        return {"d_updates": self.d_updates}

    def load_state_dict(self, state):
        self.d_updates = state["d_updates"]


@register
class R1(_ZeroCentredPenalty):
    """R1: the zero-centred gradient penalty at the real batch of each regularised D update."""
    name = "r1"

    def points(self, real, fake):
        return real


@register
class R2(_ZeroCentredPenalty):
    """R2: the zero-centred gradient penalty at the fake batch of each regularised D update (what D is
    trained on as fake there: G's samples, with a replay trick's older ones mixed in)."""
    name = "r2"

    def points(self, real, fake):
        return fake


@register
class LeCam(Trick):
    """The LeCam regulariser (Tseng et al. 2021), as google/lecam-gan's PyTorch code applies it
    (biggan_cifar/losses.py `lecam_reg`, third_party/train_fns.py, third_party/utils.py `ema_losses`):
    D's loss adds weight * (mean(relu(D(x) - alpha_F)^2) + mean(relu(alpha_R - D(G(z)))^2)), alpha_R and
    alpha_F the EMAs of the batch means of D's outputs on real and fake. In every D update the EMAs take that
    update's outputs first (detached; decay 0 before iteration `start`, i.e. the current means), then the
    term uses them, from the iteration after `start` on. Defaults: weight 0.3 (`--LC 0.3` in every
    biggan_cifar/scripts/lc-*.sh), decay 0.9 (ema_losses' default), start 1000 (biggan_cifar/train.py
    `ema_losses(start_itr=1000)`). The reference starts its EMAs at 1000, overwritten before use unless
    start is 0; here the first update takes the current means. Each rank keeps its own EMAs."""
    name = "lecam"
    # D's output there is an energy, low on real data: the anchors' order is reversed
    conflicts = ("loss=ebgan", "loss=began")

    @dataclass
    class Params:
        weight: float = 0.3
        decay: float = 0.9
        start: int = 1000

        def __post_init__(self):
            check_range("weight", self.weight, 0)
            check_range("decay", self.decay, 0, 1, high_open=True)
            check_range("start", self.start, 0)

    def __init__(self, params=None):
        super().__init__(params)
        self.real_anchor: torch.Tensor | None = None  # alpha_R
        self.fake_anchor: torch.Tensor | None = None  # alpha_F

    def check_budget(self, max_steps):
        start = self.params.start
        if start >= max_steps - 1:  # the term acts from iteration start + 1, the last is max_steps - 1
            raise ScheduleOutsideRun(
                f"trick.lecam would first act at iteration {start + 1} (start={start}), not within "
                f"trainer.max_steps={max_steps}: lower trick.lecam.start or train longer")

    def d_objective(self, loss, real_logits, fake_logits, ctx):
        p = self.params
        real_mean, fake_mean = real_logits.detach().float().mean(), fake_logits.detach().float().mean()
        if self.real_anchor is None or ctx.iteration < p.start:
            self.real_anchor, self.fake_anchor = real_mean, fake_mean
        else:
            self.real_anchor = p.decay * self.real_anchor.to(real_mean.device) + (1 - p.decay) * real_mean
            self.fake_anchor = p.decay * self.fake_anchor.to(fake_mean.device) + (1 - p.decay) * fake_mean
        if ctx.iteration <= p.start:
            return loss
        reg = (F.relu(real_logits - self.fake_anchor).pow(2).mean()
               + F.relu(self.real_anchor - fake_logits).pow(2).mean())
        return loss + p.weight * reg

    def state_dict(self):
        return {"real_anchor": self.real_anchor, "fake_anchor": self.fake_anchor}

    def load_state_dict(self, state):
        self.real_anchor, self.fake_anchor = state["real_anchor"], state["fake_anchor"]
