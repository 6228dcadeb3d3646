"""Tricks on D's targets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.config import ConfigError, check_range
from gan_ablate.nets.layers import WithReferenceBatch
from gan_ablate.tricks.base import Trick, register


@register
class LabelSmoothing(Trick):
    """Soft labels: each real target ~ U(real_low, real_high), each fake target ~ U(fake_low, fake_high)."""
    name = "label_smoothing"

    @dataclass
    class Params:
        real_low: float = 0.7
        real_high: float = 1.2
        fake_low: float = 0.0
        fake_high: float = 0.3

        def __post_init__(self):
            if not (self.real_low <= self.real_high and self.fake_low <= self.fake_high):
                raise ConfigError("real_low/fake_low must not exceed real_high/fake_high")

    def d_targets(self, real_t, fake_t, ctx):
        p = self.params
        real_t = torch.empty_like(real_t).uniform_(p.real_low, p.real_high)
        fake_t = torch.empty_like(fake_t).uniform_(p.fake_low, p.fake_high)
        return real_t, fake_t


# Soft or flipped targets only mean something for losses that regress D's output to targets.
TARGETLESS_LOSSES = ("loss=wgan", "loss=wgan_gp", "loss=hinge", "loss=ebgan", "loss=began")
LabelSmoothing.conflicts = TARGETLESS_LOSSES


@register
class OneSidedLabelSmoothing(Trick):
    """Real target `real` (0.9), fake target stays 0 (Salimans et al. 2016, sec. 3.4)."""
    name = "one_sided_label_smoothing"
    conflicts = TARGETLESS_LOSSES + ("label_smoothing",)

    @dataclass
    class Params:
        real: float = 0.9

        def __post_init__(self):
            check_range("real", self.real, 0, 1, low_open=True)

    def d_targets(self, real_t, fake_t, ctx):
        return torch.full_like(real_t, self.params.real), fake_t


@register
class NoisyLabels(Trick):
    """Each D target is flipped (t -> 1 - t) with probability p (ganhacks #7)."""
    name = "noisy_labels"
    conflicts = TARGETLESS_LOSSES

    @dataclass
    class Params:
        p: float = 0.05

        def __post_init__(self):
            check_range("p", self.p, 0, 1)

    def d_targets(self, real_t, fake_t, ctx):
        def flip(t):
            return torch.where(torch.rand_like(t) < self.params.p, 1.0 - t, t)
        return flip(real_t), flip(fake_t)


def attach_labels(x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Labels as extra features (points) or extra constant channels (images; ganhacks #17)."""
    if x.dim() == 2:
        return torch.cat([x, onehot], dim=1)
    return torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)


class ConditionalGenerator(nn.Module):
    """G(z, y): the one-hot label joins z; the output carries the label like the real data does."""

    def __init__(self, inner: nn.Module, n_classes: int, z_dim: int):
        super().__init__()
        self.inner, self.n_classes, self.z_dim = inner, n_classes, z_dim

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:  # labels drawn uniformly, from the iteration's seeded stream
            y = torch.randint(self.n_classes, (z.shape[0],), device=z.device)
        onehot = F.one_hot(y, self.n_classes).to(z.dtype)
        return attach_labels(self.inner(torch.cat([z, onehot], dim=1)), onehot)


@register
class Conditional(Trick):
    """Class-conditional G and D (Mirza & Osindero 2014; ganhacks #13, #17): G reads a one-hot label
    with z; D reads the label as extra features/channels of real and fake samples alike."""
    name = "conditional"
    reads_labels = True
    setup_order = -1  # rebuilds both nets: before anything wraps them
    conflicts = ("loss=ebgan", "loss=began", "vae_gan")

    @dataclass
    class Params:
        pass

    def setup(self, gan):
        from gan_ablate.nets import build_nets

        if gan.n_classes is None:
            raise ConfigError("trick=conditional needs labelled data (data=digits, mnist, ring8 or grid25)")
        k, model = gan.n_classes, gan.cfg.model
        shape = gan.sample_shape
        with_labels = (shape[0] + k, *shape[1:])
        inner, _ = build_nets(dataclasses.replace(model, z_dim=model.z_dim + k), shape, seed=gan.cfg.seed)
        _, labelled_d = build_nets(model, with_labels, seed=gan.cfg.seed)
        gan.replace_net("D", labelled_d)
        gan.replace_net("G", ConditionalGenerator(inner, k, model.z_dim))
        self.data_channels = shape[0]

    def prepare_data(self, data, labels):
        return attach_labels(data, F.one_hot(labels, int(labels.max()) + 1).to(data.dtype))

    def eval_samples(self, x):
        return x[:, : self.data_channels]


class LabelledGenerator(nn.Module):
    """G(z, y) whose samples do not carry their label (AC-GAN's G): the one-hot label joins z, and the
    labels of the latest batch are kept for the auxiliary losses."""

    def __init__(self, inner: nn.Module, n_classes: int, z_dim: int):
        super().__init__()
        self.inner, self.n_classes, self.z_dim = inner, n_classes, z_dim
        self.last_labels: torch.Tensor | None = None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:  # labels drawn uniformly, from the iteration's seeded stream
            y = torch.randint(self.n_classes, (z.shape[0],), device=z.device)
        self.last_labels = y
        return self.inner(torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], dim=1))


def d_features(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """D's features of x (the layers before its head), with D's reference batch when it has one."""
    if isinstance(D, WithReferenceBatch):
        return D.through(D.net.features, x)
    return D.features(x)


@register
class ACGAN(Trick):
    """Auxiliary classifier GAN (Odena, Olah, Shlens 2017, sec. 3): G(z, c) is class-conditional; D has
    an auxiliary head on its features that predicts the class of real AND generated samples, and
    D's loss adds L_C = CE(real, its labels) + CE(fake, the labels G drew); G's loss adds CE(fake, the
    labels G drew) (G maximises L_C - L_S). `weight` scales L_C in both (1: the paper's sum).
    The same scheme as eriklindernoren/PyTorch-GAN `implementations/acgan/acgan.py` (which averages the
    terms instead of summing them). D's features go through its reference batch under virtual/reference
    batch norm, as its logits do."""
    name = "acgan"
    reads_labels = True
    revision = 2
    revision_note = "before: D classified real samples only and G was unconditional, with no auxiliary term"
    setup_order = -1  # rebuilds G: before anything wraps it
    # conditional rebuilds G too; replay tricks mix older fakes, whose labels are gone, into D's batch;
    # multi_generator and vae_gan wrap G, whose labels AC-GAN reads
    conflicts = ("loss=ebgan", "loss=began", "conditional", "experience_replay", "g_history", "multi_generator",
                 "vae_gan")

    @dataclass
    class Params:
        weight: float = 1.0

    def setup(self, gan):
        from gan_ablate.nets import build_nets

        if gan.n_classes is None:
            raise ConfigError("trick=acgan needs labelled data (data=digits, mnist, ring8 or grid25)")
        k, model = gan.n_classes, gan.cfg.model
        inner, _ = build_nets(dataclasses.replace(model, z_dim=model.z_dim + k), gan.sample_shape, seed=gan.cfg.seed)
        gan.replace_net("G", LabelledGenerator(inner, k, model.z_dim))
        gan.D.aux_head = nn.Linear(gan.D.features_dim, k)  # part of D (on WithReferenceBatch too): D's optimiser trains it
        self.last_aux_loss: torch.Tensor | None = None

    def class_loss(self, gan, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(gan.D.aux_head(d_features(gan.D, x)), labels)  # WithReferenceBatch passes aux_head on

    def d_penalty(self, gan, real, fake, ctx):
        self.last_aux_loss = (self.class_loss(gan, real.x, real.labels)
                              + self.class_loss(gan, fake, gan.G.last_labels))
        return self.params.weight * self.last_aux_loss

    def g_penalty(self, gan, fake, ctx):
        return self.params.weight * self.class_loss(gan, fake, gan.G.last_labels)
