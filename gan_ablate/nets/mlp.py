"""MLPs for low-dimensional data (the 2-D mixtures), and the original GAN's maxout nets."""
from __future__ import annotations

import torch
from torch import nn

from gan_ablate.config import ModelConfig
from gan_ablate.nets.layers import Maxout, activation, hidden_extras, norm_layer


def _width(base: int, mult: float) -> int:
    return max(1, int(round(base * mult)))


class MLPGenerator(nn.Module):
    """z -> hidden layers -> a point (linear output: the mixtures are not bounded to [-1, 1]), or a
    flattened image squashed to model.output's range (tanh: [-1, 1], sigmoid: [0, 1]).

    With skip_z, z is split into one chunk per layer and each hidden layer also reads its chunk."""

    def __init__(self, cfg: ModelConfig, out_dim: int, out_shape: tuple[int, ...]):
        super().__init__()
        self.z_dim, self.out_shape, self.skip_z = cfg.z_dim, tuple(out_shape), cfg.skip_z
        hidden = _width(cfg.g_hidden, cfg.g_width)
        n_in = cfg.g_layers + 1
        chunks = [len(c) for c in torch.arange(cfg.z_dim).tensor_split(n_in)] if cfg.skip_z else [cfg.z_dim] + [0] * cfg.g_layers
        self.chunk_sizes = chunks
        self.blocks = nn.ModuleList()
        width_in = chunks[0]
        for i in range(cfg.g_layers):
            norm = norm_layer(cfg, cfg.norm_g, hidden, conv=False)
            layers: list[nn.Module] = [nn.Linear(width_in, hidden, bias=norm is None or cfg.bias_before_norm)]
            layers += [norm] if norm is not None else []
            layers += [activation(cfg.activation), *hidden_extras(cfg, "g")]
            self.blocks.append(nn.Sequential(*layers))
            width_in = hidden + chunks[i + 1]
        self.out = nn.Linear(width_in, out_dim)
        # points are unbounded (linear output); images get model.output's range, as the conv generators do
        images = len(self.out_shape) == 3
        self.output_activation = (nn.Tanh() if cfg.output == "tanh" else nn.Sigmoid()) if images else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = z.split(self.chunk_sizes, dim=1)
        h = parts[0]
        for block, extra in zip(self.blocks, parts[1:]):
            h = torch.cat([block(h), extra], dim=1) if extra.shape[1] else block(h)
        return self.output_activation(self.out(h)).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """point -> hidden layers (`features`) -> one logit (`head`); maxout units for gan2014."""

    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__()
        hidden = _width(cfg.d_hidden, cfg.d_width)
        layers: list[nn.Module] = []
        width_in = in_dim
        for i in range(cfg.d_layers):
            if cfg.name == "gan2014":
                layers.append(Maxout(width_in, hidden, cfg.maxout_pieces))
            else:
                # no normalisation on D's first layer (DCGAN)
                norm = norm_layer(cfg, cfg.norm_d, hidden, conv=False) if i > 0 else None
                layers.append(nn.Linear(width_in, hidden, bias=norm is None or cfg.bias_before_norm))
                layers += [norm] if norm is not None else []
                layers.append(activation(cfg.activation))
            layers += hidden_extras(cfg, "d")
            width_in = hidden
        self.features = nn.Sequential(*layers)
        self.features_dim = width_in
        self.head = nn.Linear(width_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))
