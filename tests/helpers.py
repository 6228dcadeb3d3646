"""Drive GANModule.training_step outside a Trainer, with plain torch optimisers."""
from __future__ import annotations

from types import SimpleNamespace

import torch


class CountingOptimizer:
    """Wraps an optimiser and counts step() calls."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt, self.steps = opt, 0

    def step(self, closure=None):
        self.steps += 1
        return self.opt.step()

    def zero_grad(self, set_to_none=True):
        self.opt.zero_grad(set_to_none=set_to_none)

    @property
    def param_groups(self):
        return self.opt.param_groups


def attach_optimizers(module):
    opt_g, opt_d = module.configure_optimizers()
    module._test_opts = (CountingOptimizer(opt_g), CountingOptimizer(opt_d))
    module.optimizers = lambda: module._test_opts
    module.manual_backward = lambda loss: loss.backward()
    return module._test_opts


def run_steps(module, n: int):
    if not hasattr(module, "_test_opts"):
        attach_optimizers(module)
    for _ in range(n):
        module.training_step(None, module.iteration)
    return module._test_opts



def track_update(module) -> list[str]:
    """A one-item list holding the update training_step is in: "d" (discriminator_step), "g"
    (generator_step) or "between"."""
    phase = ["between"]
    for net, step in (("d", "discriminator_step"), ("g", "generator_step")):
        def in_phase(*args, _net=net, _step=getattr(module, step), **kwargs):
            phase[0] = _net
            try:
                return _step(*args, **kwargs)
            finally:
                phase[0] = "between"
        setattr(module, step, in_phase)
    return phase

class RecordingLogger:
    """A logger that keeps what it is sent; `mode` is its W&B experiment's mode (None: no experiment)."""

    def __init__(self, mode=None):
        self.metrics, self.alerts = [], []
        if mode is not None:
            self.experiment = SimpleNamespace(settings=SimpleNamespace(mode=mode),
                                              alert=lambda **kw: self.alerts.append(kw))

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))


def with_loggers(module, *loggers):
    """Attach a stand-in for the Trainer: its loggers, rank 0, and the should_stop flag."""
    module._trainer = SimpleNamespace(loggers=list(loggers), global_rank=0, should_stop=False)
    return module
