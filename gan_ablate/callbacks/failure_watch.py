"""Track failures early (ganhacks #12, talk notes 001#10): flags raised from the logged scalars.

- d_loss_zero: D's loss below `d_loss_floor` for `window` logged values in a row (D wins outright).
- grad_norm_high: a gradient norm above `grad_norm_max` ("over 100, things are screwing up").
- g_loss_falling_while_d_wins: G's loss fell at every one of the last `window` logged values while
  D's loss stayed under `d_winning` (G fooling D with garbage).
- non_finite: a NaN or Inf loss or norm; the run stops with status `diverged`.
The watch reads only values already copied to the host for logging: it adds no device sync.

Logged values come every trainer.log_every_n_steps iterations, too late for a run gone NaN (each NaN
iteration is also several times slower). NonFiniteCheck therefore sees the losses and gradient norms of
every iteration on the device, and the host reads its verdict every monitor.check_every iterations.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.distributed as dist

from gan_ablate.distributed import world_size

NOT_SEEN = torch.iinfo(torch.int64).max  # no non-finite value yet (the identity of a min over ranks)


@dataclass
class FailureEvent:
    iteration: int
    flag: str
    detail: str


@dataclass
class FailureWatch:
    d_loss_floor: float = 1e-3
    grad_norm_max: float = 100.0
    d_winning: float = 0.5
    window: int = 10
    events: list[FailureEvent] = field(default_factory=list)

    def __post_init__(self):
        self._d = deque(maxlen=self.window)
        self._g = deque(maxlen=self.window + 1)
        self._raised: set[str] = set()
        self.diverged = False

    def _raise(self, iteration: int, flag: str, detail: str) -> FailureEvent | None:
        if flag in self._raised:  # each flag once per run: a record of when it started
            return None
        self._raised.add(flag)
        event = FailureEvent(iteration, flag, detail)
        self.events.append(event)
        return event

    def update(self, iteration: int, scalars: dict[str, float]) -> list[FailureEvent]:
        bad = [k for k, v in scalars.items() if not math.isfinite(v)]
        new = self.note_non_finite(iteration, f"{', '.join(bad)} not finite") if bad else []
        for key, value in scalars.items():
            if key.startswith("grad_norm/") and math.isfinite(value) and value > self.grad_norm_max:
                new.append(self._raise(iteration, "grad_norm_high", f"{key}={value:.3g} > {self.grad_norm_max}"))
        d, g = scalars.get("loss/d"), scalars.get("loss/g")
        if d is not None:
            self._d.append(d)
            if len(self._d) == self.window and all(abs(v) < self.d_loss_floor for v in self._d):
                new.append(self._raise(iteration, "d_loss_zero",
                                       f"|loss/d| < {self.d_loss_floor} for {self.window} logged values"))
        if g is not None and d is not None:
            self._g.append(g)
            falling = len(self._g) == self._g.maxlen and all(b < a for a, b in zip(self._g, list(self._g)[1:]))
            if falling and all(v < self.d_winning for v in self._d):
                new.append(self._raise(iteration, "g_loss_falling_while_d_wins",
                                       f"loss/g fell {self.window} times in a row while loss/d < {self.d_winning}"))
        return [e for e in new if e is not None]

    def note_non_finite(self, iteration: int, detail: str) -> list[FailureEvent]:
        """A NaN or Inf seen at `iteration`, in the logged values or by NonFiniteCheck."""
        self.diverged = True
        event = self._raise(iteration, "non_finite", detail)
        return [event] if event else []

    def state_dict(self) -> dict:
        """Plain lists and numbers, so checkpoints load with weights_only=True."""
        return {"d": list(self._d), "g": list(self._g), "raised": sorted(self._raised), "diverged": self.diverged,
                "events": [[e.iteration, e.flag, e.detail] for e in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self._d.extend(state["d"])
        self._g.extend(state["g"])
        self._raised, self.diverged = set(state["raised"]), state["diverged"]
        self.events = [FailureEvent(*e) for e in state["events"]]


class NonFiniteCheck:
    """The first iteration at which each of NAMES was NaN or Inf, kept in a tensor on the training device.

    update() runs every iteration with device kernels only (a Python int enters as a kernel argument, never
    as a tensor to copy), so the step stays asynchronous on a GPU; read() copies the tensor to the host,
    one sync, every `every` iterations. Under DDP read() takes the minimum over the ranks, so all of them
    stop at the same iteration."""
    NAMES = ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g")

    def __init__(self, every: int):
        self.every = every
        self.first_bad = torch.full((len(self.NAMES),), NOT_SEEN)
        self.found: Optional[tuple[int, str]] = None  # (first iteration, "loss/d not finite") once read

    def update(self, iteration: int, values: dict[str, torch.Tensor]) -> None:
        stacked = torch.stack([values[name].detach().float() for name in self.NAMES])
        if self.first_bad.device != stacked.device:  # once: to the training device
            self.first_bad = self.first_bad.to(stacked.device)
        newly_bad = torch.isfinite(stacked).logical_not_().logical_and_(self.first_bad == NOT_SEEN)
        self.first_bad.masked_fill_(newly_bad, iteration)

    def due(self, iteration: int) -> bool:
        """Whether the host reads the check after `iteration` (0-based)."""
        return (iteration + 1) % self.every == 0

    def read(self) -> Optional[tuple[int, str]]:
        if world_size() > 1:  # in place: rank 0's checkpoint then holds what every rank saw
            dist.all_reduce(self.first_bad, op=dist.ReduceOp.MIN)
        self._set(self.first_bad.tolist())
        return self.found

    def _set(self, first_bad: list[int]) -> None:
        earliest = min(first_bad)
        if earliest != NOT_SEEN:
            names = [name for name, it in zip(self.NAMES, first_bad) if it == earliest]
            self.found = (earliest, f"{', '.join(names)} not finite")

    def state_dict(self) -> dict:
        """Plain ints, so checkpoints load with weights_only=True."""
        return {"first_bad": self.first_bad.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.first_bad = torch.tensor(state["first_bad"], device=self.first_bad.device)
        self._set(state["first_bad"])
