"""Each loss against its closed form on fixed logits."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY, make_cfg, make_module, run_train_py
from helpers import run_steps

from gan_ablate import losses
from gan_ablate.config import LossConfig, validate
from gan_ablate.losses import LOSSES, build_loss
from gan_ablate.penalties import gradient_penalty
from gan_ablate.tricks.labels import LabelSmoothing
from gan_ablate.tricks.loss_recipes import LOSS_RECIPES, build_loss_units

REAL = torch.tensor([[2.0], [-1.0], [0.5]])
FAKE = torch.tensor([[-3.0], [0.0], [1.5]])
ONES, ZEROS = torch.ones(3, 1), torch.zeros(3, 1)


def sig(x):
    return 1 / (1 + math.exp(-x))


def mean(xs):
    return sum(xs) / len(xs)


R, F = [2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]
BCE_D = mean([-math.log(sig(r)) for r in R]) + mean([-math.log(1 - sig(f)) for f in F])

CLOSED_FORMS = {
    "non_saturating": (BCE_D, mean([-math.log(sig(f)) for f in F])),
    "minimax": (BCE_D, mean([math.log(1 - sig(f)) for f in F])),
    "lsgan": (0.5 * mean([(r - 1) ** 2 for r in R]) + 0.5 * mean([f ** 2 for f in F]),
              0.5 * mean([(f - 1) ** 2 for f in F])),
    "hinge": (mean([max(0, 1 - r) for r in R]) + mean([max(0, 1 + f) for f in F]), -mean(F)),
    "wgan": (mean(F) - mean(R), -mean(F)),
    "wgan_gp": (mean(F) - mean(R), -mean(F)),
    "relativistic": (mean([-math.log(sig(r - mean(F))) for r in R]) + mean([-math.log(1 - sig(f - mean(R))) for f in F]),
                     mean([-math.log(sig(f - mean(R))) for f in F]) + mean([-math.log(1 - sig(r - mean(F))) for r in R])),
    "dragan": (BCE_D, mean([-math.log(sig(f)) for f in F])),
    # the autoencoder losses read D's outputs as energies
    "ebgan": (mean(R) + mean([max(0.0, 1.0 - f) for f in F]), mean(F)),
    "began": (mean(R), mean(F)),  # k_t's term is the recipe's equilibrium unit's
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_matches_closed_form(name):
    loss = build_loss(LossConfig(name=name))
    d_expected, g_expected = CLOSED_FORMS[name]
    assert loss.d_loss(REAL, FAKE, ONES, ZEROS).item() == pytest.approx(d_expected, rel=1e-6)
    assert loss.g_loss(FAKE, REAL).item() == pytest.approx(g_expected, rel=1e-6)


def test_every_loss_has_a_closed_form_and_a_config():
    conf = {p.stem for p in (Path(__file__).parents[1] / "gan_ablate" / "conf" / "loss").glob("*.yaml")}
    assert set(LOSSES) == set(CLOSED_FORMS) == conf


def test_each_loss_recipe_is_its_value_and_these_units_with_the_losss_parameters():
    """What each loss also does to training, first in the hook chain (before any trick's hooks)."""
    units = {}
    for name in sorted(LOSSES):
        module = make_module(f"loss={name}", "trick=instance_noise")
        *recipe, trick = module.hooks.tricks
        assert trick is module.tricks[0]
        units[name] = [(type(u).__name__, vars(u.params)) for u in recipe]
    assert set(LOSS_RECIPES) < set(LOSSES) and {n for n, u in units.items() if u} == set(LOSS_RECIPES)
    assert {n: u for n, u in units.items() if u} == {
        "wgan": [("WeightClipping", {"clip": 0.01})],
        "wgan_gp": [("GradientPenalty", {"weight": 10.0})],
        "dragan": [("DraganPenalty", {"weight": 10.0})],
        "ebgan": [("AutoencoderD", {"norm": "l2"}), ("PullingAway", {"weight": 0.1})],
        "began": [("AutoencoderD", {"norm": "l1"}), ("Equilibrium", {"gamma": 0.5, "lambda_k": 0.001})],
    }


def test_register_loss_refuses_a_taken_name_a_nameless_loss_and_what_is_no_loss_class(monkeypatch):
    monkeypatch.setattr(losses, "LOSSES", dict(LOSSES))

    class AnotherHinge(losses.Hinge):  # inherits the name
        pass

    class Nameless(losses.Loss):
        pass

    with pytest.raises(ValueError, match="^loss 'hinge' is already registered \\(by Hinge\\)$"):
        losses.register_loss(AnotherHinge)
    with pytest.raises(TypeError, match="^Nameless needs a `name`$"):
        losses.register_loss(Nameless)
    for not_a_loss in (LabelSmoothing, losses.Hinge(LossConfig()), "hinge"):
        with pytest.raises(TypeError, match="^register_loss: .* is not a subclass of Loss$"):
            losses.register_loss(not_a_loss)
    assert losses.LOSSES == LOSSES and losses.LOSSES["hinge"] is losses.Hinge

    class NewLoss(losses.Hinge):
        name = "new_loss_for_this_test"

    assert losses.register_loss(NewLoss) is NewLoss and losses.LOSSES["new_loss_for_this_test"] is NewLoss
    assert "new_loss_for_this_test" not in LOSSES


def test_bce_losses_use_the_targets():
    loss = build_loss(LossConfig(name="non_saturating"))
    soft = loss.d_loss(REAL, FAKE, 0.9 * ONES, ZEROS).item()
    expected = mean([-(0.9 * math.log(sig(r)) + 0.1 * math.log(1 - sig(r))) for r in R]) + \
        mean([-math.log(1 - sig(f)) for f in F])
    assert soft == pytest.approx(expected, rel=1e-6)


def test_lsgan_d_loss_pulls_each_batch_to_its_own_target():
    """Mao et al. 2017, eq. 9 with their a = -1 (fake), b = 1 (real) coding (sec. 3.2.1): a fake target other
    than 0 shows which side of it the fake logits sit."""
    loss = build_loss(LossConfig(name="lsgan"))
    expected = 0.5 * mean([(r - 1) ** 2 for r in R]) + 0.5 * mean([(f + 1) ** 2 for f in F])
    assert loss.d_loss(REAL, FAKE, ONES, -ONES).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    torch.manual_seed(0)
    critic = nn.Linear(5, 1, bias=True)
    with torch.no_grad():
        critic.weight.copy_(torch.randn(1, 5))
        critic.weight /= critic.weight.norm()
    real, fake = torch.randn(16, 5), torch.randn(16, 5)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.weight *= 3.0
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2


def test_wgan_clips_critic_weights_after_every_d_step():
    module = make_module("loss=wgan", "loss.clip=0.01")
    run_steps(module, 3)
    for p in module.D.parameters():
        assert p.abs().max().item() <= 0.01 + 1e-9


def test_dragan_penalty_is_zero_when_the_gradient_norm_is_one_around_the_data():
    from gan_ablate.penalties import dragan_penalty
    critic = nn.Linear(4, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    real = torch.randn(64, 4)
    assert dragan_penalty(critic, real).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.weight.mul_(3.0)
    assert dragan_penalty(critic, real).item() == pytest.approx(4.0, rel=1e-5)


def test_began_k_follows_the_equilibrium_rule_clipped_to_0_1():
    """Berthelot et al. 2017, sec. 3.4: D's loss L(x) - k_t L(G(z)), then k_t+1 = clip(k_t + lambda_k (gamma L(x)
    - L(G(z))), 0, 1); these energies push the unclipped k below 0 (twice) and above 1 (once)."""
    loss = build_loss(LossConfig(name="began"))
    (_, equilibrium) = build_loss_units(validate(make_cfg("loss=began", "loss.gamma=0.5", "loss.lambda_k=0.1")))
    k, unclipped = 0.0, []
    for real_e, fake_e in [(2.0, 0.2), (2.0, 0.5), (1.0, 3.0), (1.0, 3.0), (5.0, 0.0), (30.0, 0.0), (1.0, 3.0)]:
        real, fake = torch.tensor([[real_e]]), torch.tensor([[fake_e]])
        d = equilibrium.d_objective(loss.d_loss(real, fake, None, None), real, fake, None)
        assert d.item() == pytest.approx(real_e - k * fake_e)
        equilibrium.after_d_step(None, None)
        unclipped.append(k + 0.1 * (0.5 * real_e - fake_e))
        k = min(1.0, max(0.0, unclipped[-1]))
        assert equilibrium.k.item() == pytest.approx(k, abs=1e-6)
    assert min(unclipped) < 0.0 and max(unclipped) > 1.0


@pytest.mark.parametrize("name", ["ebgan", "began"])
def test_energy_losses_replace_d_with_an_autoencoder(name):
    from gan_ablate.tricks.loss_recipes import AutoencoderEnergy
    module = make_module(f"loss={name}")
    assert isinstance(module.D, AutoencoderEnergy)
    x = module.real_data[:8]
    energy = module.D(x)
    assert energy.shape == (8, 1) and (energy >= 0).all()
    run_steps(module, 3)


def mlp_autoencoder_energy(linears, x, norm):
    """The energy D should compute, from its four linear layers: encoder dim -> hidden -> code, LeakyReLU(0.2)
    after the hidden layer, none on the code (the PT term compares raw codes), the decoder code -> hidden -> dim
    with LeakyReLU(0.2) on its input and after its hidden layer; energy the mean L1 or L2 error per sample."""
    first, to_code, from_code, last = linears
    code = to_code(nn.functional.leaky_relu(first(x.flatten(1)), 0.2))
    reconstruction = last(nn.functional.leaky_relu(from_code(nn.functional.leaky_relu(code, 0.2)), 0.2))
    error = reconstruction - x.flatten(1)
    return code, (error.pow(2) if norm == "l2" else error.abs()).mean(dim=1, keepdim=True)


@pytest.mark.parametrize("name,norm", [("ebgan", "l2"), ("began", "l1")])  # BEGAN: L(v) = |v - D(v)|^eta, eta = 1
@pytest.mark.parametrize("overrides,sample_shape,hidden", [
    ([], (2,), 16),  # 1-D data: the MLP D's width, model.d_hidden
    (["data=digits", "model.g_channels=8"], (1, 8, 8), 256),  # images: d_hidden sizes no MLP there; a small DCGAN G
])
def test_energy_d_is_a_leaky_relu_autoencoder_and_its_energy_the_reconstruction_error(name, norm, overrides,
                                                                                        sample_shape, hidden):
    from gan_ablate.config import validate
    from gan_ablate.module import GANModule
    D = GANModule(validate(make_cfg(f"loss={name}", *overrides)), sample_shape).D
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    dim, code_width = math.prod(sample_shape), hidden // 4
    assert [(m.in_features, m.out_features) for m in linears] == [(dim, hidden), (hidden, code_width),
                                                                   (code_width, hidden), (hidden, dim)]
    x = torch.randn(8, *sample_shape, generator=torch.Generator().manual_seed(0))
    code, energy = mlp_autoencoder_energy(linears, x, norm)
    torch.testing.assert_close(D(x), energy)
    torch.testing.assert_close(D.code, code)


def test_energy_d_code_is_a_quarter_of_the_hidden_width_and_at_least_two_wide():
    """A bottleneck of hidden // 4, but never one wide: the pulling-away term compares the codes' directions,
    and one-wide codes all lie on one line, so PT = 1 whatever G generates."""
    from gan_ablate.tricks.loss_recipes import AutoencoderEnergy, pulling_away
    assert pulling_away(torch.randn(8, 1)).item() == pytest.approx(1.0)
    for hidden, code_width in [(16, 4), (40, 10), (4, 2)]:
        autoencoder = AutoencoderEnergy((2,), hidden, "l2")
        autoencoder(torch.randn(8, 2))
        assert autoencoder.code.shape == (8, code_width)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_trains_and_moves_both_nets(name):
    module = make_module(f"loss={name}")
    g0 = [p.detach().clone() for p in module.G.parameters()]
    d0 = [p.detach().clone() for p in module.D.parameters()]
    run_steps(module, 2)
    assert module.latest_scalars["loss/d"] == module.latest_scalars["loss/d"]  # not NaN
    assert any(not torch.equal(a, b) for a, b in zip(g0, module.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, module.D.parameters()))


def test_pulling_away_term_is_the_mean_squared_cosine_over_distinct_pairs():
    from gan_ablate.tricks.loss_recipes import pulling_away
    assert pulling_away(torch.eye(4) * torch.tensor([[1.0], [2.0], [3.0], [4.0]])).item() == pytest.approx(0.0)
    assert pulling_away(torch.ones(5, 3) * torch.arange(1.0, 6.0).view(5, 1)).item() == pytest.approx(1.0)
    s = torch.randn(6, 4)
    expected = mean([(torch.dot(s[i], s[j]) / (s[i].norm() * s[j].norm())).item() ** 2
                     for i in range(6) for j in range(6) if i != j])
    assert pulling_away(s).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("pt_weight", [0.1, 0.0])
def test_ebgan_g_loss_adds_the_pulling_away_term_on_the_encoders_codes_of_the_fake_batch(pt_weight):
    """Through training_step: G's loss is mean E(G(z)) + pt_weight * PT(encoder(G(z))), with the
    encoder codes recomputed here from the very fake batch G produced; pt_weight=0 leaves the energy."""
    from gan_ablate.tricks.loss_recipes import pulling_away
    module = make_module("loss=ebgan", f"loss.pt_weight={pt_weight}")
    assert module.cfg.loss.pt_weight == pt_weight
    fakes, g_losses, expected = [], [], []
    g_forward = module.G.forward
    module.G.forward = lambda z: fakes.append(g_forward(z)) or fakes[-1]
    g_step = module.generator_step

    def generator_step(*args):
        fakes.clear()
        with torch.no_grad():
            d_params = [p.clone() for p in module.D.parameters()]
        loss = g_step(*args)
        fake = fakes[-1].detach()
        with torch.no_grad():  # D did not move during G's update
            assert all(torch.equal(a, b) for a, b in zip(d_params, module.D.parameters()))
            expected.append(module.D(fake).mean() + pt_weight * pulling_away(module.D.features(fake)))
        g_losses.append(loss.detach())
        return loss

    module.generator_step = generator_step
    run_steps(module, 3)
    assert len(g_losses) == 3
    for loss, value in zip(g_losses, expected):
        assert loss.item() == pytest.approx(value.item(), rel=1e-5)
    pt = pulling_away(module.D.features(fakes[-1].detach())).item()
    assert pt > 1e-3  # the term is not vanishing on this batch: the two weights give different losses


@pytest.mark.parametrize("overrides,opt_type,lr,betas", [
    (["loss=wgan"], torch.optim.RMSprop, 5e-5, None),           # Arjovsky et al. 2017, Algorithm 1
    (["loss=wgan_gp"], torch.optim.Adam, 1e-4, (0.0, 0.9)),     # Gulrajani et al. 2017, Algorithm 1
    (["trick=wgan_gp"], torch.optim.Adam, 1e-4, (0.0, 0.9)),
])
def test_wgan_recipes_train_with_their_papers_optimisers(overrides, opt_type, lr, betas):
    module = make_module(*overrides)
    opt_g, opt_d = run_steps(module, 2)
    assert (opt_d.steps, opt_g.steps) == (10, 2)  # n_critic 5
    for opt in (opt_g.opt, opt_d.opt):
        assert type(opt) is opt_type and opt.param_groups[0]["lr"] == lr
        assert betas is None or tuple(opt.param_groups[0]["betas"]) == betas


def test_an_optimiser_chosen_on_the_command_line_wins_over_the_wgan_recipe():
    module = make_module("loss=wgan", "optim=adam")
    opt_g, opt_d = module.configure_optimizers()
    assert type(opt_d) is torch.optim.Adam and module.cfg.optim.n_critic == 1
    assert make_module("loss=wgan", "optim.d.lr=1e-3").configure_optimizers()[1].param_groups[0]["lr"] == 1e-3


@pytest.mark.slow
def test_wgan_gp_loss_refuses_a_batch_norm_critic_on_one_line(tmp_path):
    """Like trick=gradient_penalty: the per-sample penalty is meaningless when batch statistics couple
    the samples. WGAN with clipping keeps its batch-norm critic (Arjovsky et al. use DCGAN's)."""
    result = run_train_py(*TINY, "loss=wgan_gp", "norm_d=batch_norm", "trainer.max_steps=2",
                          f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gan-ablate: config error:")]
    assert len(lines) == 1 and "loss=wgan_gp conflicts with norm_d=batch_norm" in lines[0], result.stderr
    assert not (tmp_path / "run" / "result.json").exists()
    assert isinstance(make_module("loss=wgan", "norm_d=batch_norm").D, nn.Module)


def test_a_loss_refuses_a_choice_it_conflicts_with_when_the_module_is_set_up():
    """The fast counterpart of the train.py refusal above: the loss itself names the conflicting choice."""
    from gan_ablate.config import TrickConflict

    with pytest.raises(TrickConflict) as refused:
        make_module("loss=wgan_gp", "model.norm_d=batch_norm")
    assert str(refused.value) == "loss=wgan_gp conflicts with norm_d=batch_norm: they cannot run together"
    make_module("loss=wgan", "model.norm_d=batch_norm")  # clipping keeps its batch-norm critic
