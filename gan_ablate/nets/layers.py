"""Layers the nets share: activations, normalisations (incl. virtual/reference batch norm), maxout,
noise and dropout that stays on at sampling time, latent sampling, weight initialisation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.config import ConfigError


def activation(name: str) -> nn.Module:
    # LeakyReLU by default: sparse gradients hurt GAN training (ganhacks #5)
    return nn.LeakyReLU(0.2) if name == "leaky_relu" else nn.ReLU()


def sample_latent(n: int, z_dim: int, kind: str, device=None, generator: torch.Generator | None = None):
    """z ~ N(0, I) ("spherical", ganhacks #3) or U(-1, 1)^d."""
    if kind == "gaussian":
        return torch.randn(n, z_dim, device=device, generator=generator)
    return torch.rand(n, z_dim, device=device, generator=generator) * 2.0 - 1.0


class ReferenceBatchNorm(nn.Module):
    """Batch norm whose statistics come from a fixed reference batch instead of the current batch.

    The reference batch travels as the first `n_ref` rows of the input (see WithReferenceBatch).
    virtual=True (Salimans et al. 2016, sec. 3.5): each sample is normalised with the statistics of
    the reference batch joined with that sample alone; virtual=False: with the reference batch's alone.
    Either way a sample's output does not depend on the other samples of its batch.
    """

    def __init__(self, features: int, virtual: bool, eps: float = 1e-5):
        super().__init__()
        self.virtual, self.eps = virtual, eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.n_ref = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r = self.n_ref
        if r < 1:
            raise RuntimeError("ReferenceBatchNorm needs its net wrapped in WithReferenceBatch")
        spatial = tuple(range(2, h.dim()))
        sample_mean = h.mean(dim=spatial) if spatial else h          # (N, C)
        sample_sq = (h * h).mean(dim=spatial) if spatial else h * h
        ref_mean, ref_sq = sample_mean[:r].mean(0, keepdim=True), sample_sq[:r].mean(0, keepdim=True)
        if self.virtual:
            mean = (r * ref_mean + sample_mean) / (r + 1)
            sq = (r * ref_sq + sample_sq) / (r + 1)
            # the reference rows themselves are normalised with the reference statistics
            mean = torch.cat([ref_mean.expand(r, -1), mean[r:]])
            sq = torch.cat([ref_sq.expand(r, -1), sq[r:]])
        else:
            mean, sq = ref_mean, ref_sq
        var = (sq - mean * mean).clamp_min(0.0)
        shape = (mean.shape[0], -1) + (1,) * len(spatial)
        out = (h - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return out * self.weight.view(1, -1, *(1,) * len(spatial)) + self.bias.view(1, -1, *(1,) * len(spatial))


class WithReferenceBatch(nn.Module):
    """Runs a fixed reference batch through `net` with every input, for ReferenceBatchNorm layers."""

    def __init__(self, net: nn.Module, reference: torch.Tensor | None, reference_size: int, from_data: bool):
        super().__init__()
        self.net, self.from_data = net, from_data
        self.register_buffer("reference", reference if reference is not None else torch.empty(0))
        self.reference_size = reference_size

    def set_reference(self, data: torch.Tensor) -> None:
        """For D: a fixed batch of real data, drawn once from the data's own order."""
        if self.from_data and self.reference.numel() == 0:
            self.reference = data[: self.reference_size].detach().clone()

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        return self.through(self.net, x, *args)

    def through(self, fn, x: torch.Tensor, *args) -> torch.Tensor:
        """`fn` (the net, or a part of it from its input on, such as its `features`) on x with the
        reference batch beside it: what a sample gives does not depend on its batch-mates."""
        r = self.reference.shape[0]
        for m in self.net.modules():
            if isinstance(m, ReferenceBatchNorm):
                m.n_ref = r
        return fn(torch.cat([self.reference.to(x.dtype), x]), *args)[r:]

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.net, name)  # z_dim, features, head, ... of the wrapped net


class RunningStdev:
    """For torch's batch norms: running statistics kept as blocks keeps them (blocks/bricks/bn.py, updated
    as fjxmlzn/PacGAN's pacgan_task.py does): the moving average of the batch mean and of the batch
    standard deviation sqrt(biased variance + eps), which eval mode divides by as it is. torch's average
    the unbiased variance instead and divide by sqrt(running_var + eps). Kept in torch's buffers:
    running_var holds stdev^2 - eps, so that eval mode's sqrt(running_var + eps) is the running stdev
    (1 at the start, blocks' population_stdev). Standing statistics (momentum None) stay torch's."""

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        self.running_var.sub_(self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.momentum is None:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
        with torch.no_grad():
            stdev = torch.lerp((self.running_var + self.eps).sqrt(), (var + self.eps).sqrt(), self.momentum)
            self.running_var.copy_(stdev.square() - self.eps)
            self.running_mean.lerp_(mean, self.momentum)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class StdevBatchNorm1d(RunningStdev, nn.BatchNorm1d):
    pass


class StdevBatchNorm2d(RunningStdev, nn.BatchNorm2d):
    pass


def make_norm(kind: str, features: int, conv: bool, momentum: float, eps: float = 1e-5,
              running: str = "variance") -> nn.Module | None:
    """The normalisation layer of `kind`; momentum, eps and the running statistic (variance: torch's,
    stdev: blocks', RunningStdev) are batch norm's (model.bn_momentum, model.bn_eps, model.bn_running)."""
    if kind == "none":
        return None
    if kind == "batch_norm":
        if running == "stdev":
            return (StdevBatchNorm2d if conv else StdevBatchNorm1d)(features, eps=eps, momentum=momentum)
        return (nn.BatchNorm2d if conv else nn.BatchNorm1d)(features, eps=eps, momentum=momentum)
    if kind == "layer_norm":
        return nn.GroupNorm(1, features) if conv else nn.LayerNorm(features)  # GroupNorm(1): LN over C,H,W
    if kind == "instance_norm":
        if not conv:
            raise ConfigError("model.norm_g/norm_d=instance_norm needs conv feature maps (model=dcgan); "
                              "per-sample feature normalisation of an MLP is layer_norm")
        return nn.InstanceNorm2d(features, affine=True)
    return ReferenceBatchNorm(features, virtual=kind == "virtual_batch_norm")


def norm_layer(cfg, kind: str, features: int, conv: bool) -> nn.Module | None:
    """make_norm with the model config's batch-norm settings."""
    return make_norm(kind, features, conv, momentum=cfg.bn_momentum, eps=cfg.bn_eps, running=cfg.bn_running)


def uses_reference_batch(kind: str) -> bool:
    return kind in ("virtual_batch_norm", "reference_batch_norm")


class Maxout(nn.Module):
    """A linear layer with `pieces` outputs per unit, keeping the largest (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(*x.shape[:-1], self.out_features, self.pieces).amax(dim=-1)


class AlwaysDropout(nn.Module):
    """Dropout that stays on in eval mode, as noise for G at sampling time (pix2pix; ganhacks #18)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True)


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode (EBGAN's noise after every G layer; ganhacks #14)."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x) if self.training else x


def hidden_extras(cfg, net: str) -> list[nn.Module]:
    """What follows every hidden activation of G or D: layer noise and dropout."""
    extras: list[nn.Module] = []
    if net == "g" and cfg.g_layer_noise > 0:
        extras.append(GaussianNoise(cfg.g_layer_noise))
    if net == "g" and cfg.g_dropout > 0:
        extras.append(AlwaysDropout(cfg.g_dropout))
    if net == "d" and cfg.d_dropout > 0:
        extras.append(nn.Dropout(cfg.d_dropout))
    return extras


WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
NORMS_WITH_AFFINE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d,
                     ReferenceBatchNorm)


@torch.no_grad()
def init_weights(net: nn.Module, kind: str) -> None:
    """orthogonal: W^T W = I (or W W^T = I) per layer, conv kernels flattened (Saxe et al. 2014);
    dcgan: weights N(0, 0.02), norm gains N(1, 0.02), biases 0 (Radford et al. 2016);
    pacgan: weights N(0, 0.02), biases 0, norms left at gain 1 and shift 0, as blocks' IsotropicGaussian(0.02)
    and Constant(0) in fjxmlzn/PacGAN synthetic_data_experiments/*/pacgan_task.py: blocks' BatchNormalization
    is not Initializable, keeps its own scale_init Constant(1) and shift_init Constant(0) (blocks/bricks/bn.py),
    which are torch's initial values for an affine norm."""
    if kind == "default":
        return
    for m in net.modules():
        if isinstance(m, WEIGHTED):
            if kind == "orthogonal":
                nn.init.orthogonal_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORMS_WITH_AFFINE) and getattr(m, "weight", None) is not None and kind == "dcgan":
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
