"""No host sync in the G/D step or the logging path between log steps (DESIGN: asynchronous on a GPU).

On the CPU a sync cannot be observed, so the test counts what would cause one: every Python-level
conversion of a tensor to a number (item, tolist, bool, float, int, numpy) made by gan_ablate's code
(torch's own, such as Adam reading its step counter, which PyTorch keeps on the host, are not ours to
count). On a log step the step copies all its scalars to the host once, together, and every
monitor.check_every iterations the failure watch (a callback, fed what the step returns) reads its non-finite
check once."""
from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import make_module
from gan_ablate.callbacks.failure_watch import FailureWatchCallback, NonFiniteCheck
from gan_ablate.tricks import TRICKS
from helpers import attach_optimizers

CONVERSIONS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")
# tricks whose algorithm decides on the host from a loss value, by design
DECIDES_ON_HOST = {"loss_balancing": "repeats a net's update while its loss is above the other's"}


class SyncCounter:
    def __init__(self, monkeypatch):
        self.count = 0
        for name in CONVERSIONS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                if sys._getframe(1).f_globals.get("__name__", "").startswith("gan_ablate"):
                    self.count += 1
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)


def syncs_per_iteration(module, monkeypatch, iterations: int) -> list[int]:
    """Of the step and of the failure watch that Lightning calls with what the step returns."""
    attach_optimizers(module)
    watch = FailureWatchCallback.from_config(module.cfg.monitor)
    trainer = SimpleNamespace(loggers=[], should_stop=False)
    counter = SyncCounter(monkeypatch)
    counts = []
    for _ in range(iterations):
        before = counter.count
        watch.on_train_batch_end(trainer, module, module.training_step(None, module.iteration), None, 0)
        counts.append(counter.count - before)
    return counts


@pytest.mark.parametrize("trick", [None] + sorted(t for t in TRICKS if t not in DECIDES_ON_HOST))
def test_no_host_conversion_between_log_steps(trick, monkeypatch):
    overrides = ["trainer.log_every_n_steps=4", "monitor.grad_norm_every=4"] + ([f"trick=[{trick}]"] if trick else [])
    try:
        module = make_module(*overrides)
    except Exception as e:  # a trick that needs image data or labels
        pytest.skip(f"{trick} does not run on ring8: {e}")
    counts = syncs_per_iteration(module, monkeypatch, 8)
    assert counts[1:4] == [0, 0, 0] and counts[5:8] == [0, 0, 0], counts
    assert counts[0] == counts[4] == 1  # the log step: one copy of every scalar (losses, grad norms)


@pytest.mark.parametrize("check_every", [1, 5, 0])
def test_the_non_finite_check_reads_the_device_once_every_check_every_iterations(check_every, monkeypatch):
    module = make_module("trainer.log_every_n_steps=1000", "monitor.grad_norm_every=0",
                         f"monitor.check_every={check_every}")
    counts = syncs_per_iteration(module, monkeypatch, 15)
    reads = [int(check_every > 0 and (it + 1) % check_every == 0) for it in range(15)]
    assert counts == [reads[0] + 1] + reads[1:], counts  # + iteration 0's log step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_non_finite_check_does_not_synchronise_a_gpu():
    """On a GPU, an iteration of the check launches kernels and waits for none (torch raises if it would)."""
    check = NonFiniteCheck(every=10)
    values = {name: torch.tensor(float(i), device="cuda") for i, name in enumerate(NonFiniteCheck.NAMES)}
    check.update(0, values)  # the first update moves the check to the GPU (once)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for it in range(1, 5):
            check.update(it, {**values, "loss/g": values["loss/g"] / 0})
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert check.read() == (1, "loss/g not finite")


def test_adam_steps_stop_probing_for_gpus_on_a_machine_without_one(monkeypatch):
    """With Lightning imported (PYTORCH_NVML_BASED_CUDA_CHECK=1) every Adam step loads NVML to count GPUs
    until CUDA is initialised; train() tells torch once that there are none."""
    from gan_ablate.trainer import skip_gpu_probes

    if torch.cuda.is_available():
        pytest.skip("a GPU machine: CUDA gets initialised and torch caches the count")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    probes = []
    probe = torch.cuda._raw_device_count_nvml
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: probes.append(1) or probe())
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    adam = torch.optim.Adam([param])
    adam.step()
    assert probes, "torch no longer probes NVML per Adam step: skip_gpu_probes can go"
    try:
        skip_gpu_probes()
        probes.clear()
        adam.step()
        assert probes == []
    finally:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
