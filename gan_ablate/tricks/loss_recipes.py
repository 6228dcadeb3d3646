"""What a loss's recipe does to training besides its value (gan_ablate/losses.py holds the pure values):
trick-side units composed for `loss=<name>`, first in the hook chain, where the loss itself used to act.

The recipes are a mapping in code, not YAML: the units are not tricks a user picks (records, cell labels
and `trick=[...]` overrides name the tricks of a cell, never these), and their parameters are the loss's
own (cfg.loss), so `loss=wgan_gp` means the whole recipe with no second list that could disagree with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.config import LossConfig, TrainConfig, TrickConflict
from gan_ablate.losses import LOSSES
from gan_ablate.penalties import dragan_penalty
from gan_ablate.tricks.base import Trick, family_choices
from gan_ablate.tricks.regularizers import GradientPenalty


class WeightClipping(Trick):
    """WGAN (Arjovsky et al. 2017): D's weights clipped to [-clip, clip] after every D step."""
    name = "weight_clipping"

    @dataclass
    class Params:
        clip: float

    @torch.no_grad()
    def after_d_step(self, gan, ctx):
        params = list(gan.D.parameters())
        torch._foreach_clamp_min_(params, -self.params.clip)
        torch._foreach_clamp_max_(params, self.params.clip)


class DraganPenalty(Trick):
    """DRAGAN (Kodali et al. 2017): weight * the unit-gradient penalty around the real data, added to D's loss."""
    name = "dragan_penalty"

    @dataclass
    class Params:
        weight: float

    def d_penalty(self, gan, real, fake, ctx):
        return self.params.weight * dragan_penalty(gan.D, real.x)


class AutoencoderEnergy(nn.Module):
    """An autoencoder D whose output is each sample's reconstruction error: its energy (N, 1)."""

    def __init__(self, data_shape: tuple[int, ...], hidden: int, norm: str):
        super().__init__()
        dim = math.prod(data_shape)
        code = max(2, hidden // 4)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.LeakyReLU(0.2),
                                      nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(code, hidden), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden, dim))
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.code = self.features(x)  # the encoder's representation of the latest batch (EBGAN's PT reads it)
        error = self.decoder(self.code) - x.flatten(1)
        per_sample = error.pow(2) if self.norm == "l2" else error.abs()
        return per_sample.mean(dim=1, keepdim=True)


class AutoencoderD(Trick):
    """EBGAN's and BEGAN's D: an MLP autoencoder (on flattened images too) whose energy is its L2 (EBGAN)
    or L1 (BEGAN) reconstruction error; as wide as the MLP D on 1-D data, 256 on images."""
    name = "autoencoder_d"

    @dataclass
    class Params:
        norm: str  # "l2" or "l1"

    def setup(self, gan):
        hidden = gan.cfg.model.d_hidden if len(gan.sample_shape) == 1 else 256
        gan.replace_net("D", AutoencoderEnergy(gan.sample_shape, hidden, self.params.norm))


def pulling_away(s: torch.Tensor) -> torch.Tensor:
    """EBGAN's pulling-away term (Zhao et al. 2017, eq. 6): the mean squared cosine similarity over
    the N (N - 1) pairs of distinct representations in the batch."""
    unit = F.normalize(s.flatten(1), dim=1)
    cos2 = (unit @ unit.t()).pow(2)
    n = len(s)
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


class PullingAway(Trick):
    """EBGAN-PT (Zhao et al. 2017, sec. 2.4): weight * PT of the autoencoder's codes of G's batch, added to
    G's loss (weight 0.1 in its experiments)."""
    name = "pulling_away"

    @dataclass
    class Params:
        weight: float

    def g_penalty(self, gan, fake, ctx):
        # G's update scored the fake batch last (EBGAN's G update draws no real batch)
        return self.params.weight * pulling_away(gan.D.code)


class Equilibrium(Trick):
    """BEGAN's equilibrium control (Berthelot et al. 2017, sec. 3.4): D's loss L(x) - k_t L(G(z)), and
    k_t+1 = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) after every D update; k_t resumes from checkpoints."""
    name = "began"  # the key of k_t in a checkpoint's trick states, as when the loss kept it

    @dataclass
    class Params:
        gamma: float
        lambda_k: float

    def __init__(self, params: Params):
        super().__init__(params)
        self.k = torch.zeros(())
        self.last_energies: tuple[torch.Tensor, torch.Tensor] | None = None

    def d_objective(self, loss, real_logits, fake_logits, ctx):
        fake_energy = fake_logits.mean()
        self.last_energies = (real_logits.mean().detach(), fake_energy.detach())
        return loss - self.k.to(fake_energy.device) * fake_energy

    def after_d_step(self, gan, ctx):
        real_energy, fake_energy = self.last_energies
        p = self.params
        # a tensor update: no host sync
        self.k = (self.k.to(real_energy.device) + p.lambda_k * (p.gamma * real_energy - fake_energy)).clamp(0.0, 1.0)

    def state_dict(self):
        return {"k": self.k}

    def load_state_dict(self, state):
        self.k = state["k"]


# loss name -> its units, from the loss's parameters; a loss not named here is its d_loss/g_loss alone
LOSS_RECIPES: dict[str, Callable[[LossConfig], list[Trick]]] = {
    "wgan": lambda c: [WeightClipping(WeightClipping.Params(clip=c.clip))],
    "wgan_gp": lambda c: [GradientPenalty(GradientPenalty.Params(weight=c.gp_weight))],
    "dragan": lambda c: [DraganPenalty(DraganPenalty.Params(weight=c.gp_weight))],
    "ebgan": lambda c: [AutoencoderD(AutoencoderD.Params(norm="l2")),
                        PullingAway(PullingAway.Params(weight=c.pt_weight))],
    "began": lambda c: [AutoencoderD(AutoencoderD.Params(norm="l1")),
                        Equilibrium(Equilibrium.Params(gamma=c.gamma, lambda_k=c.lambda_k))],
}


def build_loss_units(settings: TrainConfig) -> list[Trick]:
    """The units of the run's loss recipe, after refusing a choice the loss conflicts with (as build_tricks
    refuses a trick's)."""
    loss = LOSSES[settings.loss.name]
    for choice in family_choices(settings):
        if choice in loss.conflicts:
            raise TrickConflict(f"loss={loss.name} conflicts with {choice}: they cannot run together")
    return LOSS_RECIPES.get(loss.name, lambda c: [])(settings.loss)
