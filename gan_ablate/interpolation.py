"""Latent interpolation: along great circles (slerp; White 2016, ganhacks #3) or straight lines."""
from __future__ import annotations

import torch


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of z0 and z1 at fractions t (shape (T,)) -> (T, N, d).

    The direction moves along the great circle; the norm moves linearly from |z0| to |z1|."""
    n0, n1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)
    u0, u1 = z0 / n0, z1 / n1
    omega = torch.acos((u0 * u1).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    t = t.view(-1, 1, 1)
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.view(-1, 1, 1)
    return (1 - t) * z0 + t * z1


def interpolation_grid(z: torch.Tensor, kind: str, rows: int = 8, steps: int = 8) -> torch.Tensor:
    """(rows * steps, d) latent vectors: each row walks from z[i] to z[rows + i]."""
    path = slerp if kind == "slerp" else lerp
    t = torch.linspace(0, 1, steps, device=z.device)
    return path(z[:rows], z[rows:2 * rows], t).transpose(0, 1).reshape(rows * steps, -1)
