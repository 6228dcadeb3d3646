"""Showing D older fakes: experience replay (Pfau & Vinyals 2016) and G history (Shrivastava et al. 2017)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_ablate.config import check_range
from gan_ablate.tricks.base import Trick, register


class FakeBuffer:
    """A fixed-size buffer of generated samples, filled first, then overwritten at random places."""

    def __init__(self, size: int):
        self.size = size
        self.data: torch.Tensor | None = None
        self.filled = 0

    def add(self, fake: torch.Tensor) -> None:
        fake = fake.detach()
        if self.data is None:
            self.data = fake.new_empty((self.size, *fake.shape[1:]))
        n = min(len(fake), self.size)
        if self.filled < self.size:
            take = min(n, self.size - self.filled)
            self.data[self.filled:self.filled + take] = fake[:take]
            self.filled += take
        else:
            self.data[torch.randperm(self.size, device=fake.device)[:n]] = fake[:n]

    def sample(self, n: int) -> torch.Tensor:
        return self.data[torch.randint(self.filled, (n,), device=self.data.device)]

    def state_dict(self) -> dict:
        return {"data": self.data, "filled": self.filled}

    def load_state_dict(self, state: dict) -> None:
        self.data, self.filled = state["data"], state["filled"]


class _ReplayTrick(Trick):
    """Replace a fraction of D's fake batch with samples from a buffer of past fakes."""

    def __init__(self, params=None):
        super().__init__(params)
        self.buffer = FakeBuffer(self.params.buffer_size)

    def replay_fraction(self) -> float:
        raise NotImplementedError

    def added_per_step(self, batch: int) -> int:
        """How many of the current fakes (the first ones) enter the buffer after each D batch."""
        return batch

    def d_fake_batch(self, fake, ctx):
        n_old = int(round(self.replay_fraction() * len(fake))) if self.buffer.filled else 0
        mixed = torch.cat([fake[: len(fake) - n_old], self.buffer.sample(n_old)]) if n_old else fake
        self.buffer.add(fake[: self.added_per_step(len(fake))])
        return mixed

    def state_dict(self):
        return self.buffer.state_dict()

    def load_state_dict(self, state):
        self.buffer.load_state_dict(state)


@register
class ExperienceReplay(_ReplayTrick):
    """A `fraction` of every D fake batch comes from a replay buffer of past generations."""
    name = "experience_replay"

    @dataclass
    class Params:
        buffer_size: int = 10_000
        fraction: float = 0.25

        def __post_init__(self):
            check_range("buffer_size", self.buffer_size, 1)
            check_range("fraction", self.fraction, 0, 1)

    def replay_fraction(self):
        return self.params.fraction


@register
class GHistory(_ReplayTrick):
    """SimGAN's history of refined images (Shrivastava et al. 2017, sec. 2.3): half of each D fake
    batch (b/2) is drawn from a buffer of earlier generated samples; after each D update, b/2 samples
    in the buffer (at random places once it is full) are replaced by the current batch's b/2 new ones."""
    name = "g_history"
    revision = 2
    revision_note = "before: the whole batch, not half of it, went into the buffer each D update"
    conflicts = ("experience_replay",)

    @dataclass
    class Params:
        buffer_size: int = 6400

        def __post_init__(self):
            check_range("buffer_size", self.buffer_size, 1)

    def replay_fraction(self):
        return 0.5

    def added_per_step(self, batch):
        return batch - int(round(0.5 * batch))  # the current samples D saw
