"""Mixed precision: trainer.precision=bf16-mixed runs the G/D step under autocast, and the
double-backward penalties (WGAN-GP, DRAGAN) stay in full precision inside it."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from conftest import make_cfg, make_module
from gan_ablate.penalties import dragan_penalty, gradient_penalty
from gan_ablate.run import train


@pytest.mark.parametrize("data", [["data=ring8"], ["data=digits", "model.g_channels=16", "model.d_channels=16",
                                                    "metrics.extractor=none"]])
@pytest.mark.parametrize("penalty", ["gp", "dragan"])
def test_penalties_under_bf16_autocast_equal_fp32_and_are_finite(data, penalty):
    module = make_module("loss=wgan_gp", *data)
    with torch.no_grad():  # a sharper critic than at init: gradient norms far from 1
        for p in module.D.parameters():
            p.mul_(3.0)
    real = module.real_batch().x
    fake = module.G(module.sample_z(len(real))).detach()

    def compute():
        torch.manual_seed(7)
        return gradient_penalty(module.D, real, fake) if penalty == "gp" else dragan_penalty(module.D, real)

    def grads(value):  # outside autocast, as PyTorch recommends for backward
        return torch.autograd.grad(value, list(module.D.parameters()), allow_unused=True)  # last bias: unused

    full = compute()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # the critic itself does run in bf16 here: the penalty must not inherit that
        assert module.D(real).dtype == torch.bfloat16
        mixed = compute()
    assert math.isfinite(mixed.item()) and mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(full.item(), rel=1e-6)
    for a, b in zip(grads(full), grads(mixed)):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a)


@pytest.mark.slow
def test_a_bf16_mixed_wgan_gp_run_trains_under_autocast_with_finite_losses(tmp_path):
    dtypes = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: dtypes.add(out.dtype) if isinstance(module, torch.nn.Linear) else None)
    try:
        record = train(make_cfg("loss=wgan_gp", "trainer.precision=bf16-mixed", "trainer.max_steps=20",
                                "trainer.log_every_n_steps=1", "metrics.every=0"), tmp_path)
    finally:
        hook.remove()
    assert torch.bfloat16 in dtypes  # the step ran under autocast
    assert record.data["status"] == "ok"
    with open(tmp_path / "csv" / "metrics.csv") as f:
        losses = [float(r["loss/d"]) for r in csv.DictReader(f) if r.get("loss/d")]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)


@pytest.mark.slow
def test_compiled_nets_give_the_eager_losses():
    from helpers import run_steps

    losses = {}
    for compiled in (False, True):
        module = make_module(f"compile={str(compiled).lower()}", "trainer.log_every_n_steps=1",
                             "monitor.failure_watch.enabled=false")
        if compiled:
            assert module.G._compiled_call_impl is not None and module.D._compiled_call_impl is not None
        run_steps(module, 6)  # logs every iteration to module.latest_scalars
        keys = sorted(module.state_dict())
        losses[compiled] = (module.latest_scalars["loss/d"], module.latest_scalars["loss/g"], keys,
                            [p.detach().clone() for p in module.G.parameters()])
    (d0, g0, k0, w0), (d1, g1, k1, w1) = losses[False], losses[True]
    assert k0 == k1  # in-place compile: the same checkpoint keys
    assert d1 == pytest.approx(d0, rel=1e-4) and g1 == pytest.approx(g0, rel=1e-4)
    for a, b in zip(w0, w1):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
