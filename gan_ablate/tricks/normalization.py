"""Tricks that normalise the nets' weights."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_ablate.config import ConfigError, check_range
from gan_ablate.tricks.base import Trick, register

WEIGHTED_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def apply_spectral_norm(net: nn.Module, n_power_iterations: int) -> int:
    """Wrap every linear/conv weight of `net` in torch's spectral_norm parametrisation."""
    layers = [m for m in net.modules() if isinstance(m, WEIGHTED_LAYERS)]
    for m in layers:
        # ConvTranspose2d keeps output channels in dim 1
        spectral_norm(m, n_power_iterations=n_power_iterations,
                      dim=1 if isinstance(m, nn.ConvTranspose2d) else 0)
    return len(layers)


@register
class SpectralNorm(Trick):
    name = "spectral_norm"

    @dataclass
    class Params:
        on_d: bool = True
        on_g: bool = False
        n_power_iterations: int = 1

        def __post_init__(self):
            check_range("n_power_iterations", self.n_power_iterations, 1)
            if not (self.on_d or self.on_g):
                raise ConfigError("on_d and on_g are both false: nothing to normalise")

    def setup(self, gan):
        if self.params.on_d:
            apply_spectral_norm(gan.D, self.params.n_power_iterations)
        if self.params.on_g:
            apply_spectral_norm(gan.G, self.params.n_power_iterations)
