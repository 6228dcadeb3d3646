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

FailureWatchCallback is the Lightning callback that runs both on what each training step returns, reports
the flags (a warning, a failure/<flag> metric, a W&B alert on online runs) and stops a diverged run.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from gan_ablate.distributed import world_size

if TYPE_CHECKING:
    from gan_ablate.config import MonitorConfig

log = logging.getLogger("gan_ablate")

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


class FailureWatchCallback(pl.Callback):
    """Watches the values GANModule.training_step returns each iteration: {"iteration", "measured" (its losses and
    gradient norms, device tensors), "logged" (the host values it logged, on log steps only)}. The device check is
    updated every iteration with kernels only and read every `check.every` iterations; the failure watch reads the
    logged values. A non-finite value stops the run when `stop_on_non_finite`.

    Before the checkpoint callbacks (Lightning runs those last), so a checkpoint holds this iteration's watch."""

    def __init__(self, watch: FailureWatch | None, check: NonFiniteCheck | None, stop_on_non_finite: bool):
        self.watch, self.check, self.stop_on_non_finite = watch, check, stop_on_non_finite

    @classmethod
    def from_config(cls, monitor: MonitorConfig) -> FailureWatchCallback:
        fw = monitor.failure_watch
        watch = FailureWatch(fw.d_loss_floor, fw.grad_norm_max, fw.d_winning, fw.window) if fw.enabled else None
        return cls(watch, NonFiniteCheck(monitor.check_every) if monitor.check_every else None, fw.stop_on_non_finite)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        iteration = outputs["iteration"]
        if self.check is not None:
            self.check.update(iteration, outputs["measured"])
            if self.check.due(iteration):
                self.read_check(trainer)
        if "logged" in outputs:
            if self.watch is not None:
                self.report(trainer, self.watch.update(iteration, outputs["logged"]))
            self.stop_if_diverged(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.check is not None:  # what the iterations since the last read saw
            self.read_check(trainer)

    def read_check(self, trainer) -> None:
        """Read the device-side check (one host sync): a NaN/Inf loss or gradient norm stops the run."""
        found = self.check.read()
        if found is not None and self.watch is not None:
            self.report(trainer, self.watch.note_non_finite(*found))
        self.stop_if_diverged(trainer)

    def divergence(self) -> dict:
        """Where and why the run diverged, for its record; empty if it did not. The device check sees
        every iteration, so its iteration comes first; the failure watch only logged ones."""
        if self.check is not None and self.check.found is not None:
            iteration, reason = self.check.found
            return {"diverged_at_iteration": iteration, "reason": reason}
        events = self.watch.events if self.watch else []
        return next(({"diverged_at_iteration": e.iteration, "reason": e.detail}
                     for e in events if e.flag == "non_finite"), {})

    def failure_flags(self) -> list[dict]:
        """The record's failure_flags: each flag raised, with its first iteration and what it saw."""
        return [vars(e) for e in self.watch.events] if self.watch else []

    def stop_if_diverged(self, trainer) -> None:
        if self.stop_on_non_finite and self.divergence():
            trainer.should_stop = True

    @staticmethod
    def report(trainer, events: list[FailureEvent]) -> None:
        for event in events:
            log.warning("failure watch, iteration %d: %s (%s)", event.iteration, event.flag, event.detail)
            for logger in trainer.loggers:
                logger.log_metrics({f"failure/{event.flag}": 1.0}, step=event.iteration)
                experiment = getattr(logger, "experiment", None)
                online = getattr(getattr(experiment, "settings", None), "mode", "") == "online"
                if hasattr(experiment, "alert") and online:
                    experiment.alert(title=f"gan-ablate: {event.flag}",
                                     text=f"iteration {event.iteration}: {event.detail}")

    # in the checkpoint (Lightning's callback state): a resumed run raises each flag once and keeps the first
    # non-finite iteration
    def state_dict(self) -> dict:
        return {"watch": self.watch.state_dict() if self.watch else None,
                "non_finite": self.check.state_dict() if self.check else None}

    def load_state_dict(self, state: dict) -> None:
        if self.watch is not None and state.get("watch"):
            self.watch.load_state_dict(state["watch"])
        if self.check is not None and state.get("non_finite"):
            self.check.load_state_dict(state["non_finite"])

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """A checkpoint written while the module kept the watch holds its state under gan_ablate/: read there, so
        that a run resumed across the change keeps its flags (Lightning calls load_state_dict only on a key)."""
        if self.state_key not in checkpoint.get("callbacks", {}):
            legacy = checkpoint.get("gan_ablate", {})
            self.load_state_dict({"watch": legacy.get("failure_watch"), "non_finite": legacy.get("non_finite")})
