"""Every trick module is imported here, which registers its tricks."""
from gan_ablate.tricks import labels, noise, normalization, presets, regularizers, replay  # noqa: F401
from gan_ablate.tricks.base import TRICKS, HookChain, StepContext, Trick, build_tricks  # noqa: F401
