"""Generators and discriminators, built from the model config and the data's shape."""
from __future__ import annotations

import math

from torch import nn

from gan_ablate.config import ConfigError, ModelConfig
from gan_ablate.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_ablate.nets.mlp import MLPDiscriminator, MLPGenerator


def build_nets(cfg: ModelConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """(G, D) for data of shape `data_shape` (one sample: (2,) for points, (C, H, W) for images)."""
    if cfg.name == "mlp":
        dim = math.prod(data_shape)
        return MLPGenerator(cfg, dim, data_shape), MLPDiscriminator(cfg, dim)
    if len(data_shape) != 3:
        raise ConfigError(f"model=dcgan needs image data, got samples of shape {data_shape}; use model=mlp")
    channels, size, _ = data_shape
    return DCGANGenerator(cfg, channels, size), DCGANDiscriminator(cfg, channels, size)
