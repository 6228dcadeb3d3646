"""Every trick module is imported here, which registers its tricks."""
from gan_ablate.tricks import (  # noqa: F401
    architecture, labels, latent, noise, normalization, presets, regularizers, replay, schedule,
)
from gan_ablate.tricks.base import TRICKS, HookChain, StepContext, Trick, build_tricks  # noqa: F401
from gan_ablate.tricks.loss_recipes import build_loss_units  # noqa: F401
