"""MLPs for low-dimensional data (the 2-D mixtures)."""
from __future__ import annotations

import torch
from torch import nn

from gan_ablate.config import ModelConfig
from gan_ablate.nets.layers import activation


def _mlp(sizes: list[int], act: str, batch_norm: bool, bn_momentum: float, bn_from: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm and i >= bn_from:
                layers.append(nn.BatchNorm1d(b, momentum=bn_momentum))
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, out_dim: int, out_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.out_shape = tuple(out_shape or (out_dim,))
        sizes = [cfg.z_dim] + [cfg.g_hidden] * cfg.g_layers + [out_dim]
        self.net = _mlp(sizes, cfg.activation, cfg.batch_norm_g, cfg.bn_momentum, bn_from=0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__()
        sizes = [in_dim] + [cfg.d_hidden] * cfg.d_layers + [1]
        # no batch norm on D's first layer (DCGAN guideline)
        self.net = _mlp(sizes, cfg.activation, cfg.batch_norm_d, cfg.bn_momentum, bn_from=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))
