"""The Trick interface, the registry, and the hook chain the training step calls.

A trick is one class: it declares its parameters (a dataclass), the tricks it cannot run with, and
overrides only the hooks it needs. GANModule calls every hook at a fixed point of the G/D step; the
active tricks (after the units of the loss's recipe, tricks/loss_recipes.py) compose in list order.
Hooks see the GAN through TrickSurface (tricks/surface.py), not the LightningModule.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_ablate.config import ConfigError, TrickConflict
from gan_ablate.tricks.surface import RealBatch, TrickSurface
from gan_ablate.registry import add_to_registry


@dataclass
class StepContext:
    """Where the training stream is: tricks read the iteration (schedules) from here."""
    iteration: int
    max_steps: int


class Trick:
    name: ClassVar[str] = ""
    conflicts: ClassVar[tuple[str, ...]] = ()
    setup_order: ClassVar[int] = 0  # lower first: tricks that rebuild the nets go before wrappers
    # True for tricks that read the data's class labels: on data whose labels are the modes a metric
    # counts (ring8, grid25, stacked MNIST) such a cell is set apart in reports
    reads_labels: ClassVar[bool] = False
    # bumped when the mechanism changes, with what changed: records keep the revision they ran with,
    # and reports set apart a cell measured before the latest fix
    revision: ClassVar[int] = 1
    revision_note: ClassVar[str] = ""

    @dataclass
    class Params:
        pass

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()

    def check_budget(self, max_steps: int) -> None:
        """At config time: raise ScheduleOutsideRun if the trick's schedule cannot act within
        `max_steps` iterations (a silent no-op would be reported as the trick's effect)."""

    # -- hooks, in the order the training step calls them ------------------------------------
    def setup(self, gan: TrickSurface) -> None:
        """Once, before the optimisers exist: wrap or re-initialise the nets (gan.replace_net swaps one)."""

    def prepare_data(self, data: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Once, on the whole training set held on the device (conditioning appends labels)."""
        return data

    def samples_per_batch(self, batch_size: int) -> int:
        """How many samples every update draws, real and fake, for data.batch_size inputs of D: more
        where a trick makes one input of D from several samples (packing)."""
        return batch_size

    def d_fake_batch(self, fake: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """The fake batch of a D update (replay buffers mix older fakes in here)."""
        return fake

    def d_input(self, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Every tensor that enters D (real and fake, in D and G updates)."""
        return x

    def d_targets(self, real_t: torch.Tensor, fake_t: torch.Tensor, ctx: StepContext):
        """D's targets for the real and the fake batch (ones and zeros by default)."""
        return real_t, fake_t

    def d_objective(self, loss: torch.Tensor, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                    ctx: StepContext) -> torch.Tensor:
        """D's whole loss from the loss's value and D's logits, for units that reweight its terms (BEGAN's k_t)."""
        return loss

    def d_penalty(self, gan: TrickSurface, real: RealBatch, fake: torch.Tensor, ctx: StepContext):
        """A term added to D's loss; `real` is the update's real batch with its labels."""
        return 0.0

    def g_penalty(self, gan: TrickSurface, fake: torch.Tensor, ctx: StepContext):
        """A term added to G's loss."""
        return 0.0

    def g_objective(self, loss: torch.Tensor, gan: TrickSurface, fake: torch.Tensor, ctx: StepContext):
        """G's whole loss, for tricks that replace the adversarial objective (feature matching)."""
        return loss

    def before_d_step(self, gan: TrickSurface, ctx: StepContext) -> None:
        """D's gradients are computed (and measured); its optimiser has not stepped yet."""

    def after_d_step(self, gan: TrickSurface, ctx: StepContext) -> None:
        """After each D optimiser step."""

    def repeat_d_step(self, d_loss: torch.Tensor, extra: int, ctx: StepContext) -> bool:
        """Asked after the scheduled D updates: True for one more D update (`extra` done so far)."""
        return False

    def before_g_step(self, gan: TrickSurface, ctx: StepContext) -> None:
        """G's gradients are computed (and measured); its optimiser has not stepped yet."""

    def after_g_step(self, gan: TrickSurface, ctx: StepContext) -> None:
        """After each G optimiser step."""

    def repeat_g_step(self, g_loss: torch.Tensor, extra: int, ctx: StepContext) -> bool:
        """Asked after the scheduled G updates: True for one more G update."""
        return False

    def after_iteration(self, gan: TrickSurface, ctx: StepContext) -> None:
        """After the EMA update, at the end of the iteration."""

    def eval_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The latent batch evaluation and sample plots use (truncation acts here)."""
        return z

    def eval_samples(self, x: torch.Tensor) -> torch.Tensor:
        """G's output as evaluation and plots see it (conditioning drops its label channels)."""
        return x

    # -- resumable state (replay buffers, schedules) -------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


TRICKS: dict[str, type[Trick]] = {}


def register(cls: type[Trick]) -> type[Trick]:
    """Add a trick class to TRICKS under its `name` (gan_ablate/registry.py's rule)."""
    return add_to_registry(TRICKS, cls, Trick, "trick", "register")


def parse_params(cls: type[Trick], raw: Any, key: str):
    """Merge the YAML/CLI values for one trick into its Params dataclass; errors name the key."""
    allowed = [f.name for f in dataclasses.fields(cls.Params)]
    raw = raw if raw is not None else {}
    if not isinstance(raw, (dict, DictConfig)):  # e.g. trick.instance_noise=3 on the command line
        raise ConfigError(f"{key}: expected its parameters as a mapping (keys of {key}: {', '.join(allowed) or 'none'}),"
                          f" got {raw!r}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls.Params), raw)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        # a mapping's bad entry has a key (anything else was refused above)
        raise ConfigError(f"{key}.{e.full_key}: {e.msg.splitlines()[0]} (keys of {key}: "
                          f"{', '.join(allowed) or 'none'})") from None
    except ConfigError as e:
        raise ConfigError(f"{key}.{e}") from None


def family_choices(settings: Any) -> list[str]:
    """The non-trick choices a trick may conflict with, as `group=option` tokens."""
    if settings is None:
        return []
    m = settings.model
    return [f"loss={settings.loss.name}", f"model={m.name}", f"norm_d={m.norm_d}", f"norm_g={m.norm_g}",
            f"d_batches={m.d_batches}", f"optim.update={settings.optim.update}"]


def check_conflicts(names: Iterable[str], choices: Iterable[str] = ()) -> None:
    names, active = list(names), set(names) | set(choices)
    for a in names:
        for b in TRICKS[a].conflicts:
            if b in active:
                what = f"trick {b!r}" if b in TRICKS else b
                raise TrickConflict(f"trick {a!r} conflicts with {what}: they cannot run together")


class HookChain:
    """Calls one hook on every trick in order; the training step talks only to this."""

    def __init__(self, tricks: list[Trick]):
        self.tricks = tricks

    def setup(self, gan):
        for t in sorted(self.tricks, key=lambda t: t.setup_order):
            t.setup(gan)

    def prepare_data(self, data, labels):
        for t in self.tricks:
            data = t.prepare_data(data, labels)
        return data

    def samples_per_batch(self, batch_size):
        for t in self.tricks:
            batch_size = t.samples_per_batch(batch_size)
        return batch_size

    def d_fake_batch(self, fake, ctx):
        for t in self.tricks:
            fake = t.d_fake_batch(fake, ctx)
        return fake

    def d_input(self, x, ctx):
        for t in self.tricks:
            x = t.d_input(x, ctx)
        return x

    def d_targets(self, real_t, fake_t, ctx):
        for t in self.tricks:
            real_t, fake_t = t.d_targets(real_t, fake_t, ctx)
        return real_t, fake_t

    def d_objective(self, loss, real_logits, fake_logits, ctx):
        for t in self.tricks:
            loss = t.d_objective(loss, real_logits, fake_logits, ctx)
        return loss

    def d_penalty(self, gan, real, fake, ctx):
        return sum((t.d_penalty(gan, real, fake, ctx) for t in self.tricks), 0.0)

    def g_penalty(self, gan, fake, ctx):
        return sum((t.g_penalty(gan, fake, ctx) for t in self.tricks), 0.0)

    def g_objective(self, loss, gan, fake, ctx):
        for t in self.tricks:
            loss = t.g_objective(loss, gan, fake, ctx)
        return loss

    def before_d_step(self, gan, ctx):
        for t in self.tricks:
            t.before_d_step(gan, ctx)

    def after_d_step(self, gan, ctx):
        for t in self.tricks:
            t.after_d_step(gan, ctx)

    def repeat_d_step(self, d_loss, extra, ctx) -> bool:
        return any(t.repeat_d_step(d_loss, extra, ctx) for t in self.tricks)

    def before_g_step(self, gan, ctx):
        for t in self.tricks:
            t.before_g_step(gan, ctx)

    def after_g_step(self, gan, ctx):
        for t in self.tricks:
            t.after_g_step(gan, ctx)

    def repeat_g_step(self, g_loss, extra, ctx) -> bool:
        return any(t.repeat_g_step(g_loss, extra, ctx) for t in self.tricks)

    def after_iteration(self, gan, ctx):
        for t in self.tricks:
            t.after_iteration(gan, ctx)

    def eval_latent(self, z):
        for t in self.tricks:
            z = t.eval_latent(z)
        return z

    def eval_samples(self, x):
        for t in self.tricks:
            x = t.eval_samples(x)
        return x

    def state_dict(self) -> dict:
        return {t.name: t.state_dict() for t in self.tricks}

    def load_state_dict(self, state: dict) -> None:
        for t in self.tricks:
            if t.name in state:
                t.load_state_dict(state[t.name])
