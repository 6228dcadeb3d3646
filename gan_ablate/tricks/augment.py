"""Tricks that augment what D sees: DiffAugment on every D input, and consistency of D under augmentation.
Both act on images (N x C x H x W, channels first, as the framework's image data and G's samples are)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gan_ablate.config import ConfigError, check_range
from gan_ablate.tricks.base import Trick, register


def refuse_points(trick: str, gan) -> None:
    """Augmentations of images have no meaning on 2-D points: one ConfigError line, before training."""
    if len(gan.sample_shape) == 3:
        return
    # here, not at the top: the data modules import Lightning, and validation.py imports the tricks light
    from gan_ablate.data import DATAMODULES
    from gan_ablate.data.toy import MixtureDataModule

    images = [name for name, module in DATAMODULES.items() if module is not MixtureDataModule]
    raise ConfigError(f"data={gan.cfg.data.name}: trick={trick} needs image data (this is 2-D points); "
                      f"allowed: data={', '.join(images)}")


# -- DiffAugment's ops (mit-han-lab/data-efficient-gans DiffAugment_pytorch.py); one random draw per sample --

def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    """x + b, b ~ U(-0.5, 0.5)."""
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's distance from its mean over the channels, scaled by s ~ U(0, 2)."""
    x_mean = x.mean(dim=1, keepdim=True)
    return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + x_mean


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    """Each value's distance from the sample's mean, scaled by c ~ U(0.5, 1.5)."""
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + x_mean


def shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, reach: int, padding: str) -> torch.Tensor:
    """out[n, :, i, j] = x[n, :, i + dx[n], j + dy[n]], filled from outside the image by `padding` ("constant":
    zeros, "reflect"); |dx|, |dy| <= reach. The grid gather both references use: differentiable in x."""
    n, _, h, w = x.shape
    batch, rows, cols = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                       torch.arange(w, device=x.device), indexing="ij")
    padded = F.pad(x, [reach, reach, reach, reach], mode=padding)
    gathered = padded.permute(0, 2, 3, 1)[batch, rows + dx.view(n, 1, 1) + reach, cols + dy.view(n, 1, 1) + reach]
    return gathered.permute(0, 3, 1, 2).contiguous()


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Content moved by up to round(ratio * side) pixels along each axis, zero fill."""
    reach_x, reach_y = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    dx = torch.randint(-reach_x, reach_x + 1, size=[x.size(0), 1, 1], device=x.device)
    dy = torch.randint(-reach_y, reach_y + 1, size=[x.size(0), 1, 1], device=x.device)
    return shift(x, dx, dy, max(reach_x, reach_y), "constant")


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """A box of round(ratio * side) pixels a side, centred anywhere in the image (clipped at its edges), zeroed."""
    size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    offset_x = torch.randint(0, x.size(2) + (1 - size[0] % 2), size=[x.size(0), 1, 1], device=x.device)
    offset_y = torch.randint(0, x.size(3) + (1 - size[1] % 2), size=[x.size(0), 1, 1], device=x.device)
    batch, rows, cols = torch.meshgrid(torch.arange(x.size(0), device=x.device),
                                       torch.arange(size[0], device=x.device),
                                       torch.arange(size[1], device=x.device), indexing="ij")
    rows = torch.clamp(rows + offset_x - size[0] // 2, min=0, max=x.size(2) - 1)
    cols = torch.clamp(cols + offset_y - size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)


POLICIES = ("color", "translation", "cutout")


@register
class DiffAugment(Trick):
    """Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
    Training"), ported from mit-han-lab/data-efficient-gans DiffAugment_pytorch.py: every tensor entering D,
    real and fake, in D's and G's updates, goes through the policy's ops in order (color: brightness,
    saturation, contrast; translation; cutout), each drawing per sample; G is trained through them. The
    default policy is the reference's default ('color,translation,cutout': its README and
    DiffAugment-stylegan2-pytorch/train.py); its CIFAR experiments use 'translation,cutout' (BigGAN,
    DiffAugment-biggan-cifar/scripts) and 'color,cutout' (StyleGAN2, DiffAugment-stylegan2/run_cifar.py)."""
    name = "diffaugment"
    # colour shifts, translation and cutout would rewrite the label channels D reads with `conditional`
    conflicts = ("conditional",)

    @dataclass
    class Params:
        policy: str = "color,translation,cutout"  # comma-separated, applied in this order
        translation_ratio: float = 0.125
        cutout_ratio: float = 0.5

        def __post_init__(self):
            ops = self.policy.split(",")
            if not all(op in POLICIES for op in ops):
                raise ConfigError(f"policy={self.policy!r} is not allowed; a comma-separated list of: "
                                  f"{', '.join(POLICIES)}")
            check_range("translation_ratio", self.translation_ratio, 0, 1, low_open=True)
            check_range("cutout_ratio", self.cutout_ratio, 0, 1, low_open=True)

    def setup(self, gan):
        refuse_points(self.name, gan)

    def d_input(self, x, ctx):
        for op in self.params.policy.split(","):
            if op == "color":
                x = rand_contrast(rand_saturation(rand_brightness(x)))
            elif op == "translation":
                x = rand_translation(x, self.params.translation_ratio)
            else:
                x = rand_cutout(x, self.params.cutout_ratio)
        return x


def flip_and_translate(x: torch.Tensor, flip: bool, translation: float) -> torch.Tensor:
    """CR-GAN's and bCR's T (PyTorch-StudioGAN src/utils/cr.py apply_cr_aug): a horizontal flip with
    probability 1/2, then a shift by up to int(translation * side) pixels along each axis, reflect-padded."""
    n = x.size(0)
    if flip:
        x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(3), x)
    if translation > 0:
        reach_x, reach_y = int(x.size(2) * translation), int(x.size(3) * translation)
        dx = torch.randint(-reach_x, reach_x + 1, size=[n, 1, 1], device=x.device)
        dy = torch.randint(-reach_y, reach_y + 1, size=[n, 1, 1], device=x.device)
        x = shift(x, dx, dy, max(reach_x, reach_y), "reflect")
    return x


@register
class Consistency(Trick):
    """Balanced consistency regularisation, bCR (Zhao, Singh, Lee, Zhang, Odena, Zhang, "Improved Consistency
    Regularization for GANs", AAAI 2021, Algorithm 1): D's loss adds
    lambda_real * mean (D(x) - D(T(x)))^2 + lambda_fake * mean (D(G(z)) - D(T(G(z))))^2; G's loss is unchanged.
    As PyTorch-StudioGAN src/worker.py (apply_bcr) takes it: D's outputs on the plain and the augmented batch
    both carry gradient (neither is detached, as in the CR of mit-han-lab/data-efficient-gans
    DiffAugment-biggan-cifar/train_fns.py too), one draw of T per sample; T is flip + translation (1/8 of the
    side), its cr.py. D(x) is taken on the batch as sampled, before other tricks' d_input (the paper's x)."""
    name = "consistency"

    @dataclass
    class Params:
        lambda_real: float = 10.0
        lambda_fake: float = 10.0
        flip: bool = True
        translation: float = 0.125  # the largest shift, as a fraction of the side (0: no shift)

        def __post_init__(self):
            check_range("lambda_real", self.lambda_real, 0)
            check_range("lambda_fake", self.lambda_fake, 0)
            check_range("translation", self.translation, 0, 1, high_open=True)  # reflect padding needs < side
            if not self.flip and self.translation == 0:
                raise ConfigError("flip=false and translation=0: T is the identity, nothing to be consistent under")

    def setup(self, gan):
        refuse_points(self.name, gan)

    def gap(self, D, x: torch.Tensor) -> torch.Tensor:
        """mean (D(x) - D(T(x)))^2 over the batch."""
        return (D(x) - D(flip_and_translate(x, self.params.flip, self.params.translation))).pow(2).mean()

    def d_penalty(self, gan, real, fake, ctx):
        return self.params.lambda_real * self.gap(gan.D, real.x) + self.params.lambda_fake * self.gap(gan.D, fake)
