"""The gradient penalties: the gradient_penalty trick and the WGAN-GP and DRAGAN recipes add them
(tricks/regularizers.py, tricks/loss_recipes.py); tests prove them here on their own."""
from __future__ import annotations

import torch


def unit_gradient_penalty(critic, x_hat: torch.Tensor) -> torch.Tensor:
    """E[(||grad critic(x_hat)|| - 1)^2], in full precision even inside a bf16/fp16 autocast region:
    the penalty is a small difference of gradient norms, which half precision rounds away, and its
    double backward runs through the same ops."""
    x_hat = x_hat.detach().float().requires_grad_(True)
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        (grad,) = torch.autograd.grad(critic(x_hat).float().sum(), x_hat, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): the unit-gradient penalty on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return unit_gradient_penalty(critic, alpha * real.detach() + (1 - alpha) * fake.detach())


def dragan_penalty(critic, real: torch.Tensor) -> torch.Tensor:
    """DRAGAN (Kodali et al. 2017): the unit-gradient penalty at points between real data and a
    perturbation of it, x_p = x + 0.5 std(x) U[0, 1], std(x) that of the whole batch, as in their code
    (kodalinaveen3/DRAGAN get_perturbed_batch: numpy's minibatch.std(), ddof 0)."""
    real = real.detach()
    perturbed = real + 0.5 * real.std(correction=0) * torch.rand_like(real)
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return unit_gradient_penalty(critic, real + alpha * (perturbed - real))
