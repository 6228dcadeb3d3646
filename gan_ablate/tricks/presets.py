"""Tricks that are choices of values elsewhere in the config.

Each one's YAML (package _global_) sets those values, through interpolations of the trick's own
parameters so that `trick.ttur.lr_d=3e-4` works like any other trick parameter. The class only
registers the name, its parameters and its conflicts: it acts through no hook.
"""
from __future__ import annotations

from dataclasses import dataclass

from gan_ablate.config import EmaConfig, check_range
from gan_ablate.tricks.base import Trick, register


@register
class NCritic(Trick):
    """k D updates per G update (ganhacks #15; WGAN): sets optim.n_critic."""
    name = "n_critic"

    @dataclass
    class Params:
        steps: int = 5

        def __post_init__(self):
            check_range("steps", self.steps, 1)


@register
class GSteps(Trick):
    """k G updates per D update (the simple-GAN write-up): sets optim.g_steps."""
    name = "g_steps"

    @dataclass
    class Params:
        steps: int = 2

        def __post_init__(self):
            check_range("steps", self.steps, 1)


@register
class TTUR(Trick):
    """Two time-scale update rule (Heusel et al. 2017): separate G and D learning rates."""
    name = "ttur"

    @dataclass
    class Params:
        lr_g: float = 1e-4
        lr_d: float = 4e-4

        def __post_init__(self):
            check_range("lr_g", self.lr_g, 0, low_open=True)
            check_range("lr_d", self.lr_d, 0, low_open=True)


@register
class EMA(Trick):
    """Evaluate with the EMA of G's weights first (Yazici et al. 2019): sets ema.* and metrics.primary.

    The EMA copy is always kept and always evaluated next to the raw G; this trick makes it the
    generator the report compares, with the decay and cadence from the notes. How the average is
    taken (BigGAN's start, the warm-up decay, batch-norm statistics): GANModule.update_ema, ema.*."""
    name = "ema"
    revision = 2
    revision_note = "before: a constant decay 0.999 from iteration 0, so the untrained G dominated short runs"

    @dataclass
    class Params:  # config.EMA_TRICK_KEYS, with EmaConfig's defaults: ema.yaml hands them on to ema.*
        decay: float = EmaConfig.decay
        every: int = EmaConfig.every
        start: int = EmaConfig.start


@register
class LargeBatch(Trick):
    """A larger batch (BigGAN, sec. 4): sets data.batch_size."""
    name = "large_batch"

    @dataclass
    class Params:
        batch_size: int = 1024

        def __post_init__(self):
            check_range("batch_size", self.batch_size, 1)


@register
class WGANGP(Trick):
    """The WGAN-GP recipe (Gulrajani et al. 2017): critic loss + gradient penalty, n_critic 5,
    no batch norm in the critic (layer norm where a normalisation is wanted)."""
    name = "wgan_gp"
    revision = 2
    revision_note = "before: the run's Adam (not the paper's lr 1e-4, betas (0, 0.9))"

    @dataclass
    class Params:
        gp_weight: float = 10.0
        n_critic: int = 5

        def __post_init__(self):
            check_range("n_critic", self.n_critic, 1)
            check_range("gp_weight", self.gp_weight, 0)


@register
class Capacity(Trick):
    """Width multipliers for G and D separately (BigGAN's capacity study): sets model.g_width/d_width."""
    name = "capacity"

    @dataclass
    class Params:
        g: float = 1.0
        d: float = 2.0

        def __post_init__(self):
            check_range("g", self.g, 0, low_open=True)
            check_range("d", self.d, 0, low_open=True)


@register
class DDropout(Trick):
    """Dropout after every hidden layer of D (Goodfellow et al. 2014): sets model.d_dropout."""
    name = "d_dropout"

    @dataclass
    class Params:
        p: float = 0.5


@register
class GDropout(Trick):
    """Dropout 0.5 in G, kept on at sampling time too (pix2pix; ganhacks #18): sets model.g_dropout."""
    name = "g_dropout"

    @dataclass
    class Params:
        p: float = 0.5


@register
class LayerNoise(Trick):
    """Gaussian noise after every G layer in training (EBGAN; ganhacks #14): sets model.g_layer_noise."""
    name = "layer_noise"

    @dataclass
    class Params:
        std: float = 0.1


@register
class SkipZ(Trick):
    """z split into chunks fed to every G block (BigGAN's skip-z): sets model.skip_z."""
    name = "skip_z"
