"""Tricks on the order of updates: loss balancing and checkpoint swapping."""
from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass

from gan_ablate.config import ScheduleOutsideRun, check_choice, check_range
from gan_ablate.tricks.base import Trick, register

log = logging.getLogger("gan_ablate")


@register
class LossBalancing(Trick):
    """ganhacks #12's discouraged heuristic, kept so it can be ablated: after the scheduled updates,
    "while lossD > A: train D" and "while lossG > B: train G", at most max_extra times each."""
    name = "loss_balancing"
    # extra updates of one net: under simultaneous updates an iteration is one update of both
    conflicts = ("optim.update=simultaneous",)

    @dataclass
    class Params:
        d_threshold: float = 1.5
        g_threshold: float = 2.0
        max_extra: int = 5

        def __post_init__(self):
            check_range("max_extra", self.max_extra, 0)

    def repeat_d_step(self, d_loss, extra, ctx):
        # .item() syncs with the device: the price of a loss-driven schedule
        return extra < self.params.max_extra and d_loss.item() > self.params.d_threshold

    def repeat_g_step(self, g_loss, extra, ctx):
        return extra < self.params.max_extra and g_loss.item() > self.params.g_threshold


@register
class CheckpointSwap(Trick):
    """Keep snapshots of D (or G) and now and then train against an old one for a few iterations,
    then put the current one back (Pfau & Vinyals 2016; ganhacks #9)."""
    name = "checkpoint_swap"

    @dataclass
    class Params:
        net: str = "d"
        snapshot_every: int = 200
        keep: int = 5
        swap_every: int = 500
        duration: int = 10

        def __post_init__(self):
            check_choice("net", self.net, ("d", "g"))
            for key in ("snapshot_every", "keep", "swap_every", "duration"):
                check_range(key, getattr(self, key), 1)

    def __init__(self, params=None):
        super().__init__(params)
        self.snapshots: list[dict] = []
        self.parked: dict | None = None      # the current weights while an old snapshot trains
        self.swap_ends_at = -1

    def first_swap(self) -> int:
        """The iteration that starts the first swap: the first multiple of swap_every at which two
        snapshots exist (one to swap in, the newest being the current net's past)."""
        p = self.params
        return math.ceil(2 * p.snapshot_every / p.swap_every) * p.swap_every

    def check_budget(self, max_steps):
        first = self.first_swap()
        if first >= max_steps:  # the old net must train at least one iteration
            p = self.params
            raise ScheduleOutsideRun(
                f"trick.checkpoint_swap would first swap after iteration {first} (snapshot_every={p.snapshot_every}, "
                f"swap_every={p.swap_every}), not within trainer.max_steps={max_steps}: lower "
                "trick.checkpoint_swap.snapshot_every/swap_every or train longer")

    def _net(self, gan):
        return gan.D if self.params.net == "d" else gan.G

    def after_iteration(self, gan, ctx):
        done = ctx.iteration + 1
        net, p = self._net(gan), self.params
        if self.parked is not None and done >= self.swap_ends_at:
            net.load_state_dict(self.parked)
            self.parked = None
        if self.parked is None and done % p.snapshot_every == 0:
            self.snapshots = (self.snapshots + [copy.deepcopy(net.state_dict())])[-p.keep:]
        if self.parked is None and done % p.swap_every == 0 and len(self.snapshots) > 1:
            self.parked = copy.deepcopy(net.state_dict())
            # torch's RNG is seeded per iteration; random.Random keeps the choice addressable too
            old = random.Random(done).randrange(len(self.snapshots) - 1)
            net.load_state_dict(self.snapshots[old])
            self.swap_ends_at = done + p.duration
            log.info("checkpoint_swap: iteration %d, %s swapped for its snapshot %d of %d until iteration %d",
                     done, p.net.upper(), old + 1, len(self.snapshots), self.swap_ends_at)

    def state_dict(self):
        return {"snapshots": self.snapshots, "parked": self.parked, "swap_ends_at": self.swap_ends_at}

    def load_state_dict(self, state):
        self.snapshots, self.parked, self.swap_ends_at = state["snapshots"], state["parked"], state["swap_ends_at"]
