"""The gradient penalties: the gradient_penalty, r1 and r2 tricks and the WGAN-GP and DRAGAN recipes add
them (tricks/regularizers.py, tricks/loss_recipes.py); tests prove them here on their own."""
from __future__ import annotations

import torch


def input_gradient(critic, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(critic's outputs at x, the gradient of their sum with respect to x), differentiable again, in
    full precision even inside a bf16/fp16 autocast region: a penalty on gradients is a small quantity,
    which half precision rounds away, and its double backward runs through the same ops."""
    x = x.detach().float().requires_grad_(True)
    with torch.autocast(device_type=x.device.type, enabled=False):
        outputs = critic(x).float()
        (grad,) = torch.autograd.grad(outputs.sum(), x, create_graph=True)
        return outputs, grad


def unit_gradient_penalty(critic, x_hat: torch.Tensor) -> torch.Tensor:
    """E[(||grad critic(x_hat)|| - 1)^2]."""
    _, grad = input_gradient(critic, x_hat)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def zero_centred_gradient_penalty(critic, x: torch.Tensor) -> torch.Tensor:
    """E||grad critic(x)||^2 (Mescheder et al. 2018's R1 at real x, R2 at fake x, without gamma / 2), as
    LMescheder/GAN_stability gan_training/train.py `compute_grad2(...).mean()` takes it: the squared
    gradient summed over an input's dimensions, averaged over the critic's outputs. The critic may map
    several rows of x to one output (packing): the mean is per output, over the inputs the critic judged."""
    outputs, grad = input_gradient(critic, x)
    return grad.pow(2).sum() / outputs.numel()


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
