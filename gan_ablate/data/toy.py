"""The 2-D Gaussian mixtures of the PacGAN protocol (Lin et al. 2018, sec. 5.1)."""
from __future__ import annotations

import math

import torch

from gan_ablate.data.base import TensorDataModule


def ring_modes(n: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1).float()


def grid_modes(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    v = torch.tensor(values)
    return torch.cartesian_prod(v, v).float()


def sample_mixture(modes: torch.Tensor, std: float, n: int, generator: torch.Generator):
    """n points from an equal-weight mixture of isotropic Gaussians; returns (points, mode index)."""
    which = torch.randint(len(modes), (n,), generator=generator)
    points = modes[which] + std * torch.randn(n, modes.shape[1], generator=generator)
    return points, which


class MixtureDataModule(TensorDataModule):
    def modes(self) -> torch.Tensor:
        return ring_modes() if self.cfg.name == "ring8" else grid_modes()

    def load(self):
        g = torch.Generator().manual_seed(self.points_seed())
        return sample_mixture(self.modes(), self.cfg.std, self.cfg.n_points, g)
