"""Track failures early (ganhacks #12, talk notes 001#10): flags raised from the logged scalars.

- d_loss_zero: D's loss below `d_loss_floor` for `window` logged values in a row (D wins outright).
- grad_norm_high: a gradient norm above `grad_norm_max` ("over 100, things are screwing up").
- g_loss_falling_while_d_wins: G's loss fell at every one of the last `window` logged values while
  D's loss stayed under `d_winning` (G fooling D with garbage).
- non_finite: a NaN or Inf loss or norm; the run stops with status `diverged`.
The watch reads only values already copied to the host for logging: it adds no device sync.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


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
        new = []
        bad = [k for k, v in scalars.items() if not math.isfinite(v)]
        if bad:
            self.diverged = True
            new.append(self._raise(iteration, "non_finite", f"{', '.join(bad)} not finite"))
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

    def state_dict(self) -> dict:
        """Plain lists and numbers, so checkpoints load with weights_only=True."""
        return {"d": list(self._d), "g": list(self._g), "raised": sorted(self._raised), "diverged": self.diverged,
                "events": [[e.iteration, e.flag, e.detail] for e in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self._d.extend(state["d"])
        self._g.extend(state["g"])
        self._raised, self.diverged = set(state["raised"]), state["diverged"]
        self.events = [FailureEvent(*e) for e in state["events"]]
