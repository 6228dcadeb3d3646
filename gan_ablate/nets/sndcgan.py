"""SNDCGAN: the "standard CNN" of Miyato et al. 2018 (SN-GAN, table 3) as Kurach et al. 2019 use it for
CIFAR-10, following google/compare_gan `compare_gan/architectures/sndcgan.py` (the code behind their
28.66 / 25.27 FID).

G: z -> linear to 4x4x512 -> BN -> ReLU -> reshape -> three 4x4 stride-2 transposed convs halving the
channels (BN, ReLU) -> 3x3 conv -> tanh.
D: seven convs with LeakyReLU 0.1, then linear. Channels per `model.sndcgan_d_channels`:
compare_gan (default) 64 (3x3), 128 (4x4/2), 128 (3x3), 256 (4x4/2), 256 (3x3), 512 (4x4/2), 512 (3x3);
miyato (SN-GAN table 3) 64, 64, 128, 128, 256, 256, 512 with the same kernels and strides.
Normalisation follows norm_g / norm_d (the study's no-normalisation baseline is norm_d=none; spectral
norm comes from trick=spectral_norm)."""
from __future__ import annotations

import torch
from torch import nn

from gan_ablate.config import ConfigError, ModelConfig
from gan_ablate.nets.layers import hidden_extras, norm_layer


def _check(cfg: ModelConfig, image_size: int) -> None:
    if image_size != 32:
        raise ConfigError(f"model=sndcgan is defined for 32x32 images, got data.image_size={image_size}; use model=dcgan")
    if cfg.skip_z or cfg.upsample != "conv_transpose" or cfg.downsample != "strided":
        raise ConfigError("model=sndcgan has the paper's fixed layers: model.skip_z, model.upsample and "
                          "model.downsample apply to model=dcgan only")


def _width(base: int, multiplier: float) -> int:
    return max(1, int(round(base * multiplier)))


class SNDCGANGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, channels: int, image_size: int):
        super().__init__()
        _check(cfg, image_size)
        widths = [_width(c, cfg.g_width) for c in (512, 256, 128, 64)]
        self.width = widths[0]
        # compare_gan's g_fc1 -> g_bn1 -> relu: the projection is a layer of its own, not a linear map
        # composed with the first transposed conv. Its batch norm is over the 4*4*512 features, as there;
        # instance norm needs feature maps, so it comes after the reshape.
        self.norm_after_reshape = cfg.norm_g == "instance_norm"
        self.project = nn.Linear(cfg.z_dim, widths[0] * 4 * 4)
        norm = norm_layer(cfg, cfg.norm_g, widths[0] if self.norm_after_reshape else widths[0] * 4 * 4,
                          conv=self.norm_after_reshape)
        self.project_norm = norm if norm is not None else nn.Identity()
        self.project_extras = nn.Sequential(*hidden_extras(cfg, "g"))  # g_dropout / layer noise: every G layer
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            norm = norm_layer(cfg, cfg.norm_g, c_out, conv=True)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), *([norm] if norm is not None else []), nn.ReLU(),
                       *hidden_extras(cfg, "g")]
        layers += [nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh() if cfg.output == "tanh" else nn.Sigmoid()]
        self.blocks = nn.Sequential(*layers)

    def forward(self, z):
        h = self.project(z)
        if self.norm_after_reshape:
            h = self.project_norm(h.view(-1, self.width, 4, 4))
        else:
            h = self.project_norm(h).view(-1, self.width, 4, 4)
        return self.blocks(self.project_extras(torch.relu(h)))


class SNDCGANDiscriminator(nn.Module):
    # (out channels, kernel, stride) of the seven convolutions
    LAYERS = {"compare_gan": ((64, 3, 1), (128, 4, 2), (128, 3, 1), (256, 4, 2), (256, 3, 1), (512, 4, 2), (512, 3, 1)),
              "miyato": ((64, 3, 1), (64, 4, 2), (128, 3, 1), (128, 4, 2), (256, 3, 1), (256, 4, 2), (512, 3, 1))}

    def __init__(self, cfg: ModelConfig, channels: int, image_size: int):
        super().__init__()
        _check(cfg, image_size)
        layers: list[nn.Module] = []
        c_in = channels
        for i, (c, k, s) in enumerate(self.LAYERS[cfg.sndcgan_d_channels]):
            c_out = _width(c, cfg.d_width)
            norm = norm_layer(cfg, cfg.norm_d, c_out, conv=True) if i > 0 else None
            layers += [nn.Conv2d(c_in, c_out, k, s, 1), *([norm] if norm is not None else []), nn.LeakyReLU(0.1),
                       *hidden_extras(cfg, "d")]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.features_dim = c_in * 4 * 4
        self.head = nn.Linear(self.features_dim, 1)

    def forward(self, x):
        return self.head(self.features(x))
