"""The gradient penalties (gan_ablate/penalties.py) and the regularisers that act on both nets, proved with
a critic whose gradient depends on where it is taken: a penalty evaluated at the wrong points, with the
wrong norm or reduction, detached from D, or added to the wrong net's loss fails here (issue 13)."""
import pytest
import torch
from conftest import make_module
from helpers import attach_optimizers, run_steps
from test_tricks import biggan_ortho_gradient

import gan_ablate.penalties
import gan_ablate.tricks.loss_recipes
import gan_ablate.tricks.regularizers
from gan_ablate.nets.layers import AlwaysDropout
from gan_ablate.penalties import dragan_penalty, gradient_penalty, unit_gradient_penalty


class QuadraticCritic(torch.nn.Module):
    """critic(x) = 0.5 * sum(w * x^2) per sample: its gradient at x is w * x, so the gradient norm, and
    the penalty, differ from point to point; w is a parameter the penalty's gradient must reach."""

    def __init__(self, sample_shape, w=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(sample_shape) if w is None else w)
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return 0.5 * (self.w * x * x).flatten(1).sum(dim=1, keepdim=True)


def expected_penalty(w, points):
    """(||w * x|| - 1)^2 averaged over the batch, the L2 norm over all of a sample's dimensions."""
    norms = (w * points).flatten(1).pow(2).sum(dim=1).sqrt()
    return ((norms - 1.0) ** 2).mean()


def per_sample(draws, like):
    return draws.view(-1, *([1] * (like.dim() - 1)))


def batches(shape, seed=0):
    """Real samples near the origin, each feature at its own scale (a per-feature std is not the batch's),
    and fake samples far out: the penalty differs between the two."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.1, 1.0, int(torch.tensor(shape[1:]).prod())).view(shape[1:])
    return scale * torch.randn(shape, generator=g), 3.0 + torch.randn(shape, generator=g)


@pytest.mark.parametrize("shape", [(256, 2), (64, 3, 4, 4)])
def test_gradient_penalty_is_taken_at_per_sample_interpolates_of_real_and_fake(shape):
    """WGAN-GP (Gulrajani et al. 2017, Algorithm 1): x_hat = eps x + (1 - eps) x~, eps ~ U[0, 1] per
    sample; the value reproduces the function's own draw (one torch.rand of shape (batch, 1, ...)).
    Either orientation of eps is the same distribution (their code: real + eps (fake - real))."""
    real, fake = batches(shape)
    critic = QuadraticCritic(shape[1:])
    torch.manual_seed(7)
    value = gradient_penalty(critic, real, fake)
    torch.manual_seed(7)
    alpha = per_sample(torch.rand(shape[0]), real)
    candidates = [expected_penalty(critic.w.detach(), a * real + (1 - a) * fake) for a in (alpha, 1 - alpha)]
    assert min(abs(value.item() - c.item()) / c.item() for c in candidates) < 1e-5, (value, candidates)

    (points,) = critic.inputs
    # each point lies on its own segment real_i -> fake_i, at a position drawn per sample from U[0, 1]
    t = ((points - real) * (fake - real)).flatten(1).sum(1) / (fake - real).flatten(1).pow(2).sum(1)
    torch.testing.assert_close(points, real + per_sample(t, real) * (fake - real), rtol=1e-5, atol=1e-5)
    assert t.min() >= 0 and t.max() <= 1
    assert t.std() > 0.2 and 0.35 < t.mean() < 0.65  # not one eps for the batch, not an end point


@pytest.mark.parametrize("shape", [(32, 2), (4, 3, 2, 2)])  # few entries: ddof 0 vs 1 shows
def test_dragan_penalty_is_taken_between_the_data_and_its_perturbation_by_half_the_batch_std(shape):
    """Kodali et al.'s code (kodalinaveen3/DRAGAN, DRAGAN.ipynb): X_p = X + 0.5 * X.std() *
    np.random.random(X.shape), the std of the whole minibatch (numpy: ddof 0) and uniform noise per
    entry; interpolates = X + alpha * (X_p - X), alpha ~ U[0, 1] of shape [mb_size, 1]. The function
    draws the noise, then alpha."""
    real, _ = batches(shape)
    critic = QuadraticCritic(shape[1:])
    torch.manual_seed(11)
    value = dragan_penalty(critic, real)
    torch.manual_seed(11)
    noise = torch.rand(shape)
    alpha = per_sample(torch.rand(shape[0]), real)
    perturbed = real + 0.5 * real.std(correction=0) * noise
    expected = expected_penalty(critic.w.detach(), real + alpha * (perturbed - real))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)

    (points,) = critic.inputs
    offset = points - real
    assert (offset >= 0).all()  # noise in [0, 1): every entry moves up, by at most 0.5 std of the batch
    assert offset.max() <= 0.5 * real.std(correction=0) + 1e-6


@pytest.mark.parametrize("shape", [(8, 5), (8, 3, 4, 4)])
def test_unit_gradient_penalty_is_the_batch_mean_of_the_squared_l2_norm_deviation(shape):
    """(||g|| - 1)^2 with ||g|| the L2 norm of the whole flattened sample gradient, averaged (not
    summed) over the batch; w makes the gradient's entries unequal so L1 or per-channel norms differ."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    w = torch.linspace(0.2, 1.5, x[0].numel()).view(shape[1:])
    critic = QuadraticCritic(shape[1:], w.clone())
    value = unit_gradient_penalty(critic, x)
    norms = torch.stack([(w * sample).flatten().dot((w * sample).flatten()).sqrt() for sample in x])
    assert value.item() == pytest.approx(sum((n.item() - 1.0) ** 2 for n in norms) / len(x), rel=1e-5)


def test_unit_gradient_penalty_gradient_reaches_the_critics_parameters():
    """create_graph: d/dw of mean((||w x|| - 1)^2) = mean(2 (||w x|| - 1) w x^2 / ||w x||), the
    gradient that trains D toward unit gradient norm; a detached penalty gives D nothing."""
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(5))
    w = torch.tensor([0.5, 1.0, 2.0])
    critic = QuadraticCritic((3,), w.clone())
    unit_gradient_penalty(critic, x).backward()
    norms = (w * x).norm(dim=1, keepdim=True)
    expected = (2 * (norms - 1) * w * x * x / norms).mean(dim=0)
    torch.testing.assert_close(critic.w.grad, expected, rtol=1e-5, atol=1e-7)
    assert expected.abs().min() > 1e-2


# -- wiring through GANModule.training_step --------------------------------------------------------

PENALTY_OPTIONS = {  # option -> (where the penalty function is looked up, its name, the weight's key)
    "loss=wgan_gp": (gan_ablate.tricks.regularizers, "gradient_penalty", "loss.gp_weight"),
    "loss=dragan": (gan_ablate.tricks.loss_recipes, "dragan_penalty", "loss.gp_weight"),
    "trick=gradient_penalty": (gan_ablate.tricks.regularizers, "gradient_penalty", "trick.gradient_penalty.weight"),
}


def spied_d_update(monkeypatch, option, weight):
    """One training_step with the penalty function spied on: what it was called with, what it returned
    and the gradient of that value w.r.t. D's parameters, and which update was running; the batches the
    first D update fed to D, its loss, and D's gradients when D's optimiser first stepped."""
    where, name, key = PENALTY_OPTIONS[option]
    module = make_module(option, f"{key}={weight}")
    seen = {"calls": [], "d_inputs": [], "d_losses": [], "d_grads": []}
    original = getattr(gan_ablate.penalties, name)  # not `where`'s: that may be an earlier call's spy

    def spy(critic, real, *rest):
        value = original(critic, real, *rest)
        grads = torch.autograd.grad(value, list(module.D.parameters()), retain_graph=True,
                                    materialize_grads=True)  # D's last bias: no part in the input gradient
        seen["calls"].append({"critic": critic, "real": real, "rest": rest, "value": value.detach(),
                              "grads": grads, "update": seen["update"]})
        return value

    monkeypatch.setattr(where, name, spy)
    d_forward = module.D.forward
    module.D.forward = lambda x: seen["d_inputs"].append(x.detach().clone()) or d_forward(x)
    for update in ("discriminator_step", "generator_step"):
        def run(*args, update=update, step=getattr(module, update)):
            seen["update"] = f"{update} {len(seen['d_losses'])}"
            loss = step(*args)
            if update == "discriminator_step":
                seen["d_losses"].append(loss.detach())
            return loss
        setattr(module, update, run)
    opt_g, opt_d = attach_optimizers(module)
    step_d = opt_d.step
    opt_d.step = lambda: seen["d_grads"].append([p.grad.clone() for p in module.D.parameters()]) or step_d()
    run_steps(module, 1)
    return module, seen


@pytest.mark.parametrize("option", PENALTY_OPTIONS)
def test_penalty_options_add_weight_times_the_penalty_to_ds_loss_in_ds_update(monkeypatch, option):
    """The penalty is taken once per D update (n_critic of them), inside it, on the D net and the real
    (and fake) batches that update fed to D; D's loss with weight 10 exceeds D's loss with weight 0 from
    the same seed by 10 x the penalty, and so do D's gradients by 10 x the penalty's gradient."""
    module, with_penalty = spied_d_update(monkeypatch, option, 10.0)
    _, without = spied_d_update(monkeypatch, option, 0.0)
    n_critic = module.cfg.optim.n_critic
    assert [c["update"] for c in with_penalty["calls"]] == [f"discriminator_step {k}" for k in range(n_critic)]
    call = with_penalty["calls"][0]
    assert call["critic"] is module.D
    real_seen, fake_seen = with_penalty["d_inputs"][:2]  # D(real), D(fake): model.d_batches=separate
    assert torch.equal(call["real"], real_seen)
    if option != "loss=dragan":
        assert torch.equal(call["rest"][0], fake_seen)
    assert call["value"].item() > 1e-3
    assert torch.equal(call["value"], without["calls"][0]["value"])  # same seed, same nets, same draws
    difference = (with_penalty["d_losses"][0] - without["d_losses"][0]).item()
    assert difference == pytest.approx(10.0 * call["value"].item(), rel=1e-4)
    for g10, g0, penalty_grad in zip(with_penalty["d_grads"][0], without["d_grads"][0], call["grads"]):
        torch.testing.assert_close(g10 - g0, 10.0 * penalty_grad, rtol=1e-4, atol=1e-6)
    assert max(g.abs().max().item() for g in call["grads"]) > 1e-4


# -- regularisers that act on both nets --------------------------------------------------------------

def stepped_gradients(module, iterations: int) -> list[dict]:
    """training_step `iterations` times; for every optimiser step: the net ("d"/"g"), the iteration, the
    parameters it stepped from, the gradients it stepped with, what they add to the gradient of the
    adversarial loss alone (module.loss's d_loss / g_loss), and what the net's loss adds to that loss."""
    records = []
    opt_g, opt_d = attach_optimizers(module)
    for net_name, opt, loss_name, step_name in (("d", opt_d, "d_loss", "discriminator_step"),
                                                 ("g", opt_g, "g_loss", "generator_step")):
        net = module.D if net_name == "d" else module.G

        def adversarial(*args, net=net, net_name=net_name, original=getattr(module.loss, loss_name)):
            loss = original(*args)
            grads = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, materialize_grads=True)
            records.append({"net": net_name, "iteration": module.iteration, "adversarial": loss.detach(),
                            "adversarial_grads": grads})
            return loss

        def step(net=net, original=opt.step):
            record = records[-1]
            record["params"] = [p.detach().clone() for p in net.parameters()]
            record["grads"] = [p.grad.clone() for p in net.parameters()]
            record["added"] = [g - a for g, a in zip(record["grads"], record["adversarial_grads"])]
            return original()

        def update(*args, original=getattr(module, step_name)):
            loss = original(*args)
            records[-1]["added_to_loss"] = (loss - records[-1]["adversarial"]).item()
            return loss

        setattr(module.loss, loss_name, adversarial)
        opt.step = step
        setattr(module, step_name, update)
    run_steps(module, iterations)
    return records


def test_grad_clip_clips_each_nets_stepped_gradient_to_its_own_max_norm():
    """What each optimiser steps with has total norm max_norm of its own net (the raw norms are far
    larger): a clip skipped for one net, or one net's gradient clipped to the other's norm, fails."""
    module = make_module("trick=grad_clip", "trick.grad_clip.max_norm_d=1e-3", "trick.grad_clip.max_norm_g=2.5e-4",
                         "optim.n_critic=2")
    records = stepped_gradients(module, 3)
    for net, max_norm in (("d", 1e-3), ("g", 2.5e-4)):
        stepped = [r for r in records if r["net"] == net]
        assert len(stepped) == (6 if net == "d" else 3)
        for r in stepped:
            assert torch.nn.utils.get_total_norm(r["grads"]).item() == pytest.approx(max_norm, rel=1e-4)
            assert torch.nn.utils.get_total_norm(r["adversarial_grads"]).item() > 4 * max_norm


def test_historical_averaging_adds_each_nets_distance_to_its_own_past_mean_to_its_loss():
    """Salimans et al. 2016 sec. 3.3, each player's cost gets ||theta - (1/t) sum_i theta[i]||^2: in
    every update, D's (G's) loss exceeds the adversarial loss by weight * ||theta - mean||^2 over D's
    (G's) parameters, mean over their values at the end of every earlier iteration, and the stepped
    gradient by its gradient, 2 weight (theta - mean); nothing before any history exists."""
    weight = 50.0  # its term well above float32 rounding of the adversarial loss
    module = make_module("trick=historical_averaging", f"trick.historical_averaging.weight={weight}")
    history = {"d": [], "g": []}
    records = []
    for _ in range(4):
        records += stepped_gradients(module, 1)
        history["d"].append([p.detach().clone() for p in module.D.parameters()])
        history["g"].append([p.detach().clone() for p in module.G.parameters()])
    for r in records:
        past = history[r["net"]][:r["iteration"]]
        if not past:
            assert r["added_to_loss"] == 0.0 and all(a.abs().max() < 1e-7 for a in r["added"])
            continue
        mean = [torch.stack(values).mean(0) for values in zip(*past)]
        distance = sum(((p - m) ** 2).sum() for p, m in zip(r["params"], mean)).item()
        assert distance > 1e-6 or len(past) == 1  # iteration 1 starts where the mean of iteration 0 is
        assert r["added_to_loss"] == pytest.approx(weight * distance, rel=1e-3)
        expected = [2 * weight * (p - m) for p, m in zip(r["params"], mean)]
        for added, e in zip(r["added"], expected):
            torch.testing.assert_close(added, e, rtol=1e-3, atol=1e-5)  # the trick's running mean rounds
        assert len(past) == 1 or max(e.abs().max().item() for e in expected) > 1e-3
    assert {r["net"] for r in records if r["iteration"] > 0} == {"d", "g"}


def test_orthogonal_reg_adds_the_ortho_gradient_of_its_own_strength_to_each_net_through_training_step():
    """BigGAN's G_ortho (beta) and D_ortho (d_beta), different here: what each optimiser steps with is
    the adversarial gradient + ortho(W, its net's strength) on every parameter with two axes or more."""
    module = make_module("trick=orthogonal_reg", "trick.orthogonal_reg.beta=0.3", "trick.orthogonal_reg.d_beta=0.2")
    records = stepped_gradients(module, 2)
    assert {r["net"] for r in records} == {"d", "g"}
    for r in records:
        strength = {"d": 0.2, "g": 0.3}[r["net"]]
        assert r["added_to_loss"] == 0.0  # a gradient, not a loss term, as BigGAN's code adds it
        for added, p in zip(r["added"], r["params"]):
            expected = biggan_ortho_gradient(p, strength) if p.dim() >= 2 else torch.zeros_like(p)
            torch.testing.assert_close(added, expected, rtol=1e-4, atol=1e-6)
        assert max(a.abs().max().item() for a in r["added"]) > 1e-3


def normalised_layers(net):
    return [m for m in net.modules() if hasattr(m, "parametrizations")]


@pytest.mark.parametrize("on_d,on_g", [(True, False), (False, True), (True, True)])
def test_spectral_norm_normalises_the_nets_its_parameters_name_and_only_those(on_d, on_g):
    """on_d (default true) and on_g (default false) each wrap every linear layer of their net, whose
    weights keep largest singular value 1 through training; the other net is left alone."""
    module = make_module("trick=spectral_norm", f"trick.spectral_norm.on_d={on_d}",
                         f"trick.spectral_norm.on_g={on_g}")
    run_steps(module, 20)
    for net, on in ((module.D, on_d), (module.G, on_g)):
        linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        assert normalised_layers(net) == (linear if on else [])
        for m in normalised_layers(net):
            assert torch.linalg.matrix_norm(m.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("trick,in_d,in_g", [("d_dropout", 0.3, 0.0), ("g_dropout", 0.0, 0.3)])
def test_dropout_presets_put_dropout_of_their_p_in_their_net_only(trick, in_d, in_g):
    """After every hidden layer (3 in the MLPs): nn.Dropout in D, AlwaysDropout (on when sampling) in G."""
    module = make_module(f"trick={trick}", f"trick.{trick}.p=0.3")
    for net, p, kind in ((module.D, in_d, torch.nn.Dropout), (module.G, in_g, AlwaysDropout)):
        dropouts = [m for m in net.modules() if isinstance(m, (torch.nn.Dropout, AlwaysDropout))]
        assert [(type(m), m.p) for m in dropouts] == ([(kind, p)] * 3 if p else [])
