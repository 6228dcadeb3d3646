"""PacGAN's packing (Lin, Khetan, Fanti, Oh, NeurIPS 2018): D judges m samples of one kind at once."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_ablate.config import check_range
from gan_ablate.nets import build_nets
from gan_ablate.tricks.base import Trick, register


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """m * B samples -> B packs: pack i joins samples i, B + i, ..., (m - 1) B + i along the feature axis
    (points) or the channel axis (images), in that order, as the authors concatenate their m generator
    batches (fjxmlzn/PacGAN, `tensor.concatenate(x_tildes, axis=1)` in pacgan/bricks.py PacGAN.compute_losses;
    `tf.concat(self.G_sep, 3)` in stacked_MNIST_experiments/VEEGAN_experiment/model.py)."""
    return x.unflatten(0, (m, -1)).transpose(0, 1).flatten(1, 2)


@register
class Packing(Trick):
    """PacGAN (Lin et al. 2018), as fjxmlzn/PacGAN packs (synthetic_data_experiments/PacGAN/pacgan/bricks.py,
    streams.py, datasets.py; stacked_MNIST_experiments/VEEGAN_experiment/model.py): D is rebuilt from the same
    model config for inputs m times as wide (m * features for points, m * channels for images), and every
    input of D, in D's update and in G's, is a pack of m samples of one kind, real or fake, never both.

    data.batch_size counts D's inputs, as the authors' batch_size counts packs: every update draws m times as
    many real samples and m times as many latents (samples_per_batch), and G is applied to all m * B at
    once (the authors call G once per pack slot, so a batch-normalised G here takes its statistics over
    m * B samples, not per slot of B; the running mean it keeps is their averaged update). Real slots are
    independent draws, as their packed data sets draw each slot on its own. Tricks listed after `pac` see
    packed inputs in their d_input."""
    name = "pac"
    setup_order = -1  # rebuilds D: before anything wraps or normalises it
    # each reads D per sample: labels per sample (conditional, acgan), D's features or energy of single
    # samples (feature_matching, vae_gan, EBGAN/BEGAN's autoencoder D), penalties taken on unpacked
    # samples with D itself (gradient_penalty, WGAN-GP's and DRAGAN's, consistency's D(x) - D(T(x))), a
    # reference batch of single samples; diffaugment's one draw per D input would become one draw per pack
    # when listed after `pac` (its colour op would mix the pack's samples), so which runs is order-dependent
    conflicts = ("conditional", "acgan", "feature_matching", "vae_gan", "gradient_penalty", "loss=wgan_gp",
                 "loss=dragan", "loss=ebgan", "loss=began", "norm_d=virtual_batch_norm",
                 "norm_d=reference_batch_norm", "consistency", "diffaugment")

    @dataclass
    class Params:
        m: int = 2  # the paper's title and headline rows (PacGAN2, PacDCGAN2); its code sweeps 2, 3, 4

        def __post_init__(self):
            check_range("m", self.m, 2)

    def setup(self, gan):
        width, *rest = gan.sample_shape
        _, packed_d = build_nets(gan.cfg.model, (self.params.m * width, *rest), seed=gan.cfg.seed)
        gan.replace_net("D", packed_d)

    def samples_per_batch(self, batch_size):
        return self.params.m * batch_size

    def d_input(self, x, ctx):
        return pack(x, self.params.m)
