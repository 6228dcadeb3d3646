"""Generators and discriminators, built from the model config and the data's shape."""
from __future__ import annotations

import math

import torch
from torch import nn

from gan_ablate.config import ConfigError, ModelConfig
from gan_ablate.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_ablate.nets.layers import WithReferenceBatch, init_weights, sample_latent, uses_reference_batch
from gan_ablate.nets.mlp import MLPDiscriminator, MLPGenerator
from gan_ablate.nets.sndcgan import SNDCGANDiscriminator, SNDCGANGenerator


def build_nets(cfg: ModelConfig, data_shape: tuple[int, ...], seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(G, D) for data of shape `data_shape` (one sample: (2,) for points, (C, H, W) for images),
    initialised from `seed` alone, whatever the global RNG's state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_nets(cfg, data_shape, seed)


def _build_nets(cfg: ModelConfig, data_shape: tuple[int, ...], seed: int) -> tuple[nn.Module, nn.Module]:
    if cfg.name in ("mlp", "gan2014"):
        G, D = MLPGenerator(cfg, math.prod(data_shape), data_shape), MLPDiscriminator(cfg, math.prod(data_shape))
    elif len(data_shape) != 3:
        raise ConfigError(f"model={cfg.name} needs image data, got samples of shape {data_shape}; use model=mlp")
    elif cfg.name == "sndcgan":
        channels, size, _ = data_shape
        G, D = SNDCGANGenerator(cfg, channels, size), SNDCGANDiscriminator(cfg, channels, size)
    else:
        channels, size, _ = data_shape
        G, D = DCGANGenerator(cfg, channels, size), DCGANDiscriminator(cfg, channels, size)
    init_weights(G, cfg.init)
    init_weights(D, cfg.init)
    if uses_reference_batch(cfg.norm_g):
        z_ref = sample_latent(cfg.reference_batch_size, cfg.z_dim, cfg.latent,
                              generator=torch.Generator().manual_seed(seed))
        G = WithReferenceBatch(G, z_ref, cfg.reference_batch_size, from_data=False)
    if uses_reference_batch(cfg.norm_d):
        D = WithReferenceBatch(D, None, cfg.reference_batch_size, from_data=True)
    return G, D
