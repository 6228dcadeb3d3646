"""DCGAN nets (Radford et al. 2016), sized from the image: any size s0 * 2^k with 3 <= s0 <= 7."""
from __future__ import annotations

import torch
from torch import nn

from gan_ablate.config import ConfigError, ModelConfig
from gan_ablate.nets.layers import activation


def stages(image_size: int) -> tuple[int, int]:
    """(s0, k): the smallest feature map and the number of 2x up/down-sampling stages."""
    size, k = image_size, 0
    while size % 2 == 0 and size // 2 >= 3:
        size //= 2
        k += 1
    if k == 0:
        raise ConfigError(f"data.image_size={image_size} cannot be reached by DCGAN's 2x stages from a "
                         "map of 3..7 pixels; use a size like 8, 16, 28, 32 or 64")
    return size, k


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, channels: int, image_size: int):
        super().__init__()
        self.z_dim = cfg.z_dim
        s0, k = stages(image_size)
        width = cfg.g_channels * 2 ** (k - 1)
        self.s0, self.width = s0, width
        self.project = nn.Linear(cfg.z_dim, width * s0 * s0)
        blocks: list[nn.Module] = []
        if cfg.batch_norm_g:
            blocks.append(nn.BatchNorm2d(width, momentum=cfg.bn_momentum))
        blocks.append(activation(cfg.activation))
        for i in range(k):
            last = i == k - 1
            out = channels if last else width // 2
            blocks.append(nn.ConvTranspose2d(width, out, 4, 2, 1))
            if not last:
                if cfg.batch_norm_g:
                    blocks.append(nn.BatchNorm2d(out, momentum=cfg.bn_momentum))
                blocks.append(activation(cfg.activation))
            width = out
        blocks.append(nn.Tanh())  # images live in [-1, 1] (ganhacks #1)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.project(z).view(-1, self.width, self.s0, self.s0))


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, channels: int, image_size: int):
        super().__init__()
        s0, k = stages(image_size)
        layers: list[nn.Module] = []
        width_in, width = channels, cfg.d_channels
        for i in range(k):
            layers.append(nn.Conv2d(width_in, width, 4, 2, 1))
            if cfg.batch_norm_d and i > 0:  # no batch norm on D's first layer
                layers.append(nn.BatchNorm2d(width, momentum=cfg.bn_momentum))
            layers.append(activation(cfg.activation))
            width_in, width = width, width * 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width_in * s0 * s0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))
