from __future__ import annotations

from torch import nn


def activation(name: str) -> nn.Module:
    # LeakyReLU by default: sparse gradients hurt GAN training (ganhacks #5)
    return nn.LeakyReLU(0.2) if name == "leaky_relu" else nn.ReLU()
