"""The trick catalogue: every trick module is imported here, which registers its tricks, so build_tricks,
which reads the registry, lives here too (tricks/base.py, which every trick module imports, cannot
import them back)."""
from __future__ import annotations

from typing import Any

from gan_ablate.config import ConfigError
from gan_ablate.tricks import (  # noqa: F401
    architecture, labels, latent, noise, normalization, packing, presets, regularizers, replay, schedule,
)
from gan_ablate.tricks import augment  # noqa: F401
from gan_ablate.tricks.base import (  # noqa: F401
    TRICKS, HookChain, StepContext, Trick, check_conflicts, family_choices, parse_params,
)
from gan_ablate.tricks.loss_recipes import build_loss_units  # noqa: F401


def build_tricks(trick_cfg: dict[str, Any], settings: Any = None) -> list[Trick]:
    """Instantiate the active tricks in order, refusing unknown names and declared conflicts
    (with each other, and with the loss or normalisation chosen in `settings`)."""
    names = list(trick_cfg)
    for name in names:
        if name not in TRICKS:
            raise ConfigError(f"trick={name!r} is not a known trick; available: {', '.join(sorted(TRICKS))}")
    check_conflicts(names, family_choices(settings))
    tricks = [TRICKS[n](parse_params(TRICKS[n], trick_cfg[n], f"trick.{n}")) for n in names]
    if settings is not None:
        for t in tricks:
            t.check_budget(settings.trainer.max_steps)
    return tricks
