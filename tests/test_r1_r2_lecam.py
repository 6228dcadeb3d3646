"""The zero-centred gradient penalties (trick=r1 / r2) and the LeCam regulariser (trick=lecam), in
gan_ablate/tricks/regularizers.py: each equals an independent closed form on a non-linear critic or on fixed
outputs, is taken where its paper takes it, reaches D's loss (and only D's) through training_step on its
schedule, and resumes from a checkpoint where it stopped."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import make_cfg, make_module
from helpers import run_steps

import gan_ablate.tricks.regularizers
from gan_ablate.config import ConfigError, ScheduleOutsideRun, TrickConflict
from gan_ablate.penalties import zero_centred_gradient_penalty
from gan_ablate.tricks.base import StepContext
from gan_ablate.tricks.regularizers import R1, R2, LeCam
from gan_ablate.tricks.surface import RealBatch
from gan_ablate.validation import check_config


def cubic_sine_critic(x: torch.Tensor) -> torch.Tensor:
    """D(x) = sum_j (x_j^3 + sin x_j) per sample: grad_j = 3 x_j^2 + cos x_j, different at every point."""
    return (x.pow(3) + x.sin()).flatten(1).sum(dim=1, keepdim=True)


def closed_form(x: torch.Tensor) -> torch.Tensor:
    """E_i ||grad D(x_i)||^2 for cubic_sine_critic, from its analytic gradient."""
    return (3 * x.pow(2) + x.cos()).flatten(1).pow(2).sum(dim=1).mean()


def ctx(iteration: int = 0) -> StepContext:
    return StepContext(iteration=iteration, max_steps=100)


@pytest.mark.parametrize("shape", [(7, 2), (5, 2, 3, 3)], ids=["points", "images"])
def test_zero_centred_penalty_is_the_mean_over_samples_of_the_squared_input_gradient(shape):
    x = torch.randn(*shape)
    torch.testing.assert_close(zero_centred_gradient_penalty(cubic_sine_critic, x), closed_form(x))


def stub_gan(critic, step_ctx):
    """D as the training step takes it, through the tricks' d_input, which may read the step's context (instance
    noise anneals by iteration): the penalty must hand that context on."""
    def discriminate(x, ctx):
        assert ctx is step_ctx, "the penalty took D's outputs without the step's context"
        return critic(x)
    return SimpleNamespace(discriminate=discriminate)


@pytest.mark.parametrize("cls,at", [(R1, "real"), (R2, "fake")])
def test_r1_is_taken_at_the_real_batch_and_r2_at_the_fake_batch_with_gamma_over_2(cls, at):
    real, fake = torch.randn(6, 2), 2.0 + torch.randn(6, 2)
    trick = cls(cls.Params(gamma=3.0, interval=1))
    step_ctx = ctx(7)
    value = trick.d_penalty(stub_gan(cubic_sine_critic, step_ctx), RealBatch(real, None), fake, step_ctx)
    expected = {"real": closed_form(real), "fake": closed_form(fake)}
    torch.testing.assert_close(value, 1.5 * expected[at])
    other = "fake" if at == "real" else "real"
    assert abs(value.item() - 1.5 * expected[other].item()) > 1.0  # where it is taken shows


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_the_penalty_gradient_reaches_ds_parameters_as_plain_autograd_gives_it(name):
    """On the module's own D (an MLP of leaky-ReLU units): D's parameter gradients of the trick's penalty
    equal those of (gamma / 2) * interval * E||grad_x D(x)||^2 written with plain autograd."""
    module = make_module(f"trick={name}", f"trick.{name}.gamma=4.0", f"trick.{name}.interval=3")
    (trick,) = module.tricks
    real, fake = module.real_batch(), module.G(module.sample_z(32)).detach()
    params = list(module.D.parameters())
    got = torch.autograd.grad(trick.d_penalty(module, real, fake, ctx()), params, materialize_grads=True)
    x = (real.x if name == "r1" else fake).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(module.D(x).sum(), x, create_graph=True)
    expected = torch.autograd.grad(2.0 * 3 * grad.pow(2).sum(dim=1).mean(), params, materialize_grads=True)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
    assert max(g.abs().max().item() for g in got) > 1e-4


def test_under_packing_r1_is_taken_on_ds_packed_inputs_and_averaged_over_packs():
    """With trick=pac, D's outputs are taken as the step takes them (through d_input): the penalty is the
    mean over D's inputs (packs) of the squared gradient with respect to the pack."""
    m = 2
    module = make_module("trick=[pac,r1]", f"trick.pac.m={m}", "trick.r1.interval=1")
    _, trick = module.tricks
    real = module.real_batch()
    value = trick.d_penalty(module, real, None, ctx())
    packs = torch.cat(real.x.chunk(m), dim=1).requires_grad_(True)
    (grad,) = torch.autograd.grad(module.D(packs).sum(), packs)
    assert len(packs) == len(real.x) // m
    torch.testing.assert_close(value, 5.0 * grad.pow(2).sum(dim=1).mean())


def d_update_losses(module, updates: int) -> list[float]:
    """D's loss of every D update over training_step calls, until `updates` D updates are done."""
    losses = []
    step = module.discriminator_step

    def recorded(*args, **kwargs):
        loss = step(*args, **kwargs)
        losses.append(loss.item())
        return loss
    module.discriminator_step = recorded
    while len(losses) < updates:
        run_steps(module, 1)
    return losses


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_the_penalty_reaches_ds_loss_every_interval_d_updates_scaled_by_the_interval(name, monkeypatch):
    """n_critic=3, interval=2: over three iterations (nine D updates) the penalty enters D's loss at D updates
    0, 2, 4, 6, 8 (counted over D updates, not iterations), as interval * gamma / 2 * the penalty. The penalty
    is replaced by a constant with no gradient, so the runs with and without the trick train alike."""
    monkeypatch.setattr(gan_ablate.tricks.regularizers, "zero_centred_gradient_penalty",
                        lambda critic, x: torch.tensor(0.25))
    with_trick = d_update_losses(make_module("optim.n_critic=3", f"trick={name}", f"trick.{name}.gamma=3.0",
                                             f"trick.{name}.interval=2"), 9)
    without = d_update_losses(make_module("optim.n_critic=3"), 9)
    added = [a - b for a, b in zip(with_trick, without)]
    expected = [2 * 1.5 * 0.25 if update % 2 == 0 else 0.0 for update in range(9)]
    assert added == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_resume_continues_the_d_update_count(name):
    module = make_module("optim.n_critic=2", f"trick={name}")
    run_steps(module, 3)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["gan_ablate"]["tricks"][name] == {"d_updates": 6}
    resumed = make_module("optim.n_critic=2", f"trick={name}")
    resumed.on_load_checkpoint(checkpoint)
    (trick,) = resumed.tricks
    assert trick.d_updates == 6


@pytest.mark.parametrize("override,message", [
    ("trick.r1.gamma=-1.0", r"^trick\.r1\.gamma=-1\.0 is out of range; it must lie in \[0, inf\]$"),
    ("trick.r1.interval=0", r"^trick\.r1\.interval=0 is out of range; it must lie in \[1, inf\]$"),
])
def test_a_negative_gamma_or_an_interval_below_one_is_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        check_config(make_cfg("trick=r1", override))


def test_gamma_0_and_interval_1_are_allowed():
    assert check_config(make_cfg("trick=r1", "trick.r1.gamma=0.0", "trick.r1.interval=1")).trick["r1"]["gamma"] == 0.0


# -- LeCam -----------------------------------------------------------------------------------------------

def lecam_closed_form(weight, real, fake, real_anchor, fake_anchor):
    """weight * (mean relu(D(x) - alpha_F)^2 + mean relu(alpha_R - D(G(z)))^2), from the values alone."""
    first = sum(max(r - fake_anchor, 0.0) ** 2 for r in real) / len(real)
    second = sum(max(real_anchor - f, 0.0) ** 2 for f in fake) / len(fake)
    return weight * (first + second)


def test_lecam_term_equals_the_closed_form_against_anchors_updated_by_this_updates_outputs_first():
    trick = LeCam(LeCam.Params(weight=0.5, decay=0.75, start=3))
    trick.real_anchor, trick.fake_anchor = torch.tensor(0.4), torch.tensor(-0.2)
    real, fake = [1.0, -0.5, 0.3, 2.0], [-1.0, 0.8, 0.1, -0.3]
    loss = trick.d_objective(torch.tensor(2.0), torch.tensor(real).view(-1, 1), torch.tensor(fake).view(-1, 1),
                             ctx(iteration=4))
    real_anchor = 0.75 * 0.4 + 0.25 * sum(real) / 4
    fake_anchor = 0.75 * -0.2 + 0.25 * sum(fake) / 4
    assert trick.real_anchor.item() == pytest.approx(real_anchor)
    assert trick.fake_anchor.item() == pytest.approx(fake_anchor)
    expected = lecam_closed_form(0.5, real, fake, real_anchor, fake_anchor)
    assert 0 < expected < lecam_closed_form(0.5, real, fake, real_anchor, -10.0)  # some terms clipped, not all
    assert loss.item() == pytest.approx(2.0 + expected)


def test_lecam_anchors_follow_the_current_means_before_start_and_the_ema_from_it_and_act_after_it():
    """google/lecam-gan ema_losses: decay 0 while the iteration is below start_itr, then `decay`; the term
    joins D's loss from the iteration after start on (`itr > start_itr`)."""
    trick = LeCam(LeCam.Params(weight=1.0, decay=0.9, start=2))
    real_anchor = fake_anchor = None
    for iteration in range(5):
        for _ in range(2):  # two D updates per iteration: each moves the EMAs
            real, fake = torch.randn(8, 1) + 1.0, torch.randn(8, 1) - 1.0
            loss = trick.d_objective(torch.tensor(0.0), real, fake, ctx(iteration))
            decay = 0.9 if iteration >= 2 else 0.0
            real_anchor = real.mean().item() if real_anchor is None else decay * real_anchor + (1 - decay) * real.mean().item()
            fake_anchor = fake.mean().item() if fake_anchor is None else decay * fake_anchor + (1 - decay) * fake.mean().item()
            assert trick.real_anchor.item() == pytest.approx(real_anchor, rel=1e-5, abs=1e-6)
            assert trick.fake_anchor.item() == pytest.approx(fake_anchor, rel=1e-5, abs=1e-6)
            expected = lecam_closed_form(1.0, real.flatten().tolist(), fake.flatten().tolist(), real_anchor,
                                         fake_anchor) if iteration > 2 else 0.0
            assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
            assert iteration <= 2 or expected > 0


def test_lecam_anchors_are_detached_from_ds_outputs():
    trick = LeCam(LeCam.Params(start=0))
    real, fake = torch.randn(4, 1, requires_grad=True), torch.randn(4, 1, requires_grad=True)
    trick.d_objective(torch.tensor(0.0), real, fake, ctx(0))
    assert not trick.real_anchor.requires_grad and not trick.fake_anchor.requires_grad


def test_lecam_reaches_ds_loss_in_training_step_and_not_gs():
    """start=0: iteration 0 sets the anchors, iteration 1's D update adds weight * the term to D's loss (from
    the logits that update fed its loss); G's loss is its adversarial loss alone."""
    module = make_module("trick=lecam", "trick.lecam.start=0", "trick.lecam.weight=2.0")
    records = []
    for loss_name in ("d_loss", "g_loss"):
        original = getattr(module.loss, loss_name)

        def recorded(*args, _original=original, _name=loss_name):
            loss = _original(*args)
            records.append({"loss": _name, "logits": [a.detach().clone() for a in args[:2] if a is not None],
                            "value": loss.item()})
            return loss
        setattr(module.loss, loss_name, recorded)
    totals = []
    for step in ("discriminator_step", "generator_step"):
        def total(*args, _step=getattr(module, step), **kwargs):
            loss = _step(*args, **kwargs)
            totals.append(loss.item())
            return loss
        setattr(module, step, total)
    run_steps(module, 2)
    (d0, g0, d1, g1) = records
    assert [r["loss"] for r in records] == ["d_loss", "g_loss", "d_loss", "g_loss"]
    real0, fake0 = d0["logits"]
    real1, fake1 = d1["logits"]
    real_anchor = 0.9 * real0.mean().item() + 0.1 * real1.mean().item()
    fake_anchor = 0.9 * fake0.mean().item() + 0.1 * fake1.mean().item()
    term = lecam_closed_form(2.0, real1.flatten().tolist(), fake1.flatten().tolist(), real_anchor, fake_anchor)
    assert term > 1e-4
    assert totals[0] == pytest.approx(d0["value"], abs=1e-6)  # iteration 0: anchors only
    assert totals[2] == pytest.approx(d1["value"] + term, rel=1e-5)
    assert totals[1] == pytest.approx(g0["value"]) and totals[3] == pytest.approx(g1["value"])


def test_lecam_resumes_with_its_anchors():
    def fed(trick, seed):
        draw = torch.Generator().manual_seed(seed)
        real, fake = torch.randn(8, 1, generator=draw), torch.randn(8, 1, generator=draw)
        return trick.d_objective(torch.tensor(0.0), real, fake, ctx(5)).item()
    original = LeCam(LeCam.Params(start=1))
    fed(original, 0)
    resumed, forgetful = LeCam(LeCam.Params(start=1)), LeCam(LeCam.Params(start=1))
    resumed.load_state_dict(original.state_dict())
    assert fed(resumed, 1) == fed(original, 1)
    assert fed(forgetful, 1) != fed(original, 1)


@pytest.mark.parametrize("overrides,error,message", [
    (["trick.lecam.decay=1.0"], ConfigError, r"^trick\.lecam\.decay=1\.0 is out of range; it must lie in \[0, 1\)$"),
    (["trick.lecam.weight=-0.1"], ConfigError, r"^trick\.lecam\.weight=-0\.1 is out of range"),
    (["trick.lecam.start=-1"], ConfigError, r"^trick\.lecam\.start=-1 is out of range"),
    (["loss=ebgan"], TrickConflict, "^trick 'lecam' conflicts with loss=ebgan: they cannot run together$"),
    (["trainer.max_steps=1001"], ScheduleOutsideRun,
     r"^trick\.lecam would first act at iteration 1001 \(start=1000\), not within trainer\.max_steps=1001: "
     r"lower trick\.lecam\.start or train longer$"),
])
def test_lecam_refusals_name_the_key_on_one_line(overrides, error, message):
    with pytest.raises(error, match=message):
        check_config(make_cfg("trick=lecam", *overrides))


def test_lecam_acts_in_the_last_iteration_of_a_run_just_long_enough():
    check_config(make_cfg("trick=lecam", "trainer.max_steps=1002"))

