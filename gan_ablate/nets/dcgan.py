"""DCGAN nets (Radford et al. 2016), sized from the image: any size s0 * 2^k with 3 <= s0 <= 7."""
from __future__ import annotations

import torch
from torch import nn

from gan_ablate.config import ConfigError, ModelConfig
from gan_ablate.nets.layers import activation, hidden_extras, norm_layer


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


def upsample(kind: str, c_in: int, c_out: int) -> nn.Module:
    if kind == "conv_transpose":
        return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    if kind == "pixel_shuffle":  # sub-pixel convolution (Shi et al. 2016)
        return nn.Sequential(nn.Conv2d(c_in, c_out * 4, 3, 1, 1), nn.PixelShuffle(2))
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1))


def downsample(kind: str, c_in: int, c_out: int) -> nn.Module:
    if kind == "strided":
        return nn.Conv2d(c_in, c_out, 4, 2, 1)
    pool = nn.AvgPool2d(2) if kind == "avg_pool" else nn.MaxPool2d(2)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), pool)


class DCGANGenerator(nn.Module):
    """With skip_z, z is split into one chunk per block; each block also reads its chunk as channels."""

    def __init__(self, cfg: ModelConfig, channels: int, image_size: int):
        super().__init__()
        self.z_dim, self.skip_z = cfg.z_dim, cfg.skip_z
        s0, k = stages(image_size)
        width = max(1, int(round(cfg.g_channels * cfg.g_width))) * 2 ** (k - 1)
        chunks = [len(c) for c in torch.arange(cfg.z_dim).tensor_split(k + 1)] if cfg.skip_z else [cfg.z_dim] + [0] * k
        self.s0, self.width, self.chunk_sizes = s0, width, chunks
        self.project = nn.Linear(chunks[0], width * s0 * s0)
        first: list[nn.Module] = []
        norm = norm_layer(cfg, cfg.norm_g, width, conv=True)
        first += [norm] if norm is not None else []
        self.first = nn.Sequential(*first, activation(cfg.activation), *hidden_extras(cfg, "g"))
        self.blocks = nn.ModuleList()
        for i in range(k):
            last = i == k - 1
            out = channels if last else width // 2
            layers: list[nn.Module] = [upsample(cfg.upsample, width + chunks[i + 1], out)]
            if not last:
                norm = norm_layer(cfg, cfg.norm_g, out, conv=True)
                layers += [norm] if norm is not None else []
                layers += [activation(cfg.activation), *hidden_extras(cfg, "g")]
            else:  # images live in [-1, 1] (tanh) or [0, 1] (sigmoid) (ganhacks #1)
                layers.append(nn.Tanh() if cfg.output == "tanh" else nn.Sigmoid())
            self.blocks.append(nn.Sequential(*layers))
            width = out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = z.split(self.chunk_sizes, dim=1)
        h = self.first(self.project(parts[0]).view(-1, self.width, self.s0, self.s0))
        for block, extra in zip(self.blocks, parts[1:]):
            if extra.shape[1]:
                h = torch.cat([h, extra[:, :, None, None].expand(-1, -1, *h.shape[2:])], dim=1)
            h = block(h)
        return h


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, channels: int, image_size: int):
        super().__init__()
        s0, k = stages(image_size)
        layers: list[nn.Module] = []
        width_in, width = channels, max(1, int(round(cfg.d_channels * cfg.d_width)))
        for i in range(k):
            layers.append(downsample(cfg.downsample, width_in, width))
            norm = norm_layer(cfg, cfg.norm_d, width, conv=True) if i > 0 else None
            layers += [norm] if norm is not None else []  # no normalisation on D's first layer
            layers += [activation(cfg.activation), *hidden_extras(cfg, "d")]
            width_in, width = width, width * 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.features_dim = width_in * s0 * s0
        self.head = nn.Linear(self.features_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
