"""Each trick's mechanism (TRICKS.md, "proof" column)."""
import logging
import random
import re

import pytest
import torch
from conftest import make_module
from helpers import attach_optimizers, run_steps

from gan_ablate.config import ConfigError, ScheduleOutsideRun, TrickConflict
from gan_ablate.tricks import TRICKS, HookChain, StepContext, Trick, base, build_tricks
from gan_ablate.tricks.base import check_conflicts
from gan_ablate.tricks.labels import LabelSmoothing
from gan_ablate.tricks.noise import InstanceNoise
from gan_ablate.tricks.replay import FakeBuffer
from gan_ablate.tricks.schedule import CheckpointSwap, LossBalancing
from gan_ablate.tricks.surface import RealBatch


def ctx(iteration=0, max_steps=100):
    return StepContext(iteration=iteration, max_steps=max_steps)


def test_label_smoothing_targets_lie_in_their_ranges_and_fill_them():
    (trick,) = build_tricks({"label_smoothing": {}})
    real_t, fake_t = trick.d_targets(torch.ones(10_000, 1), torch.zeros(10_000, 1), ctx())
    assert 0.7 <= real_t.min() and real_t.max() <= 1.2
    assert 0.0 <= fake_t.min() and fake_t.max() <= 0.3
    # uniform, not constant: the spread fills the interval
    assert real_t.max() - real_t.min() > 0.45 and fake_t.max() - fake_t.min() > 0.25
    assert real_t.mean().item() == pytest.approx(0.95, abs=0.01)


def test_label_smoothing_targets_reach_the_d_loss():
    """The training step hands the smoothed targets to the loss; without the trick, hard 1/0."""
    for trick, real_range, fake_range in [("trick=label_smoothing", (0.7, 1.2), (0.0, 0.3)),
                                          ("trick=[]", (1.0, 1.0), (0.0, 0.0))]:
        module = make_module(trick)
        seen = []
        d_loss = module.loss.d_loss
        module.loss.d_loss = lambda r, f, rt, ft: seen.append((rt, ft)) or d_loss(r, f, rt, ft)
        run_steps(module, 2)
        for real_t, fake_t in seen:
            assert real_range[0] <= real_t.min() and real_t.max() <= real_range[1]
            assert fake_range[0] <= fake_t.min() and fake_t.max() <= fake_range[1]
        assert len(seen) == 2


def test_instance_noise_std_follows_the_linear_schedule():
    trick = InstanceNoise(InstanceNoise.Params(std=0.2, decay_steps=None))
    for it, expected in [(0, 0.2), (25, 0.15), (50, 0.1), (100, 0.0), (150, 0.0)]:
        assert trick.std_at(it, 100) == pytest.approx(expected)
    trick = InstanceNoise(InstanceNoise.Params(std=0.2, decay_steps=10))
    assert trick.std_at(5, 100) == pytest.approx(0.1)


@pytest.mark.parametrize("iteration,expected_std", [(0, 0.2), (50, 0.1), (100, 0.0)])
def test_instance_noise_added_to_d_inputs_has_the_scheduled_std(iteration, expected_std):
    trick = InstanceNoise(InstanceNoise.Params(std=0.2))
    x = torch.zeros(200_000, 2)
    noisy = trick.d_input(x, ctx(iteration, 100))
    assert noisy.std().item() == pytest.approx(expected_std, abs=2e-3)


def test_spectral_norm_keeps_largest_singular_value_near_one_after_training():
    module = make_module("trick=spectral_norm", "model.d_hidden=32")
    layers = [m for m in module.D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 4  # every linear layer of the 3-hidden-layer MLP critic
    run_steps(module, 50)

    def sigma(w):
        return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()

    normalised = [sigma(m.weight) for m in layers]  # the weights the forward pass uses
    raw = [sigma(m.parametrizations.weight.original) for m in layers]
    assert normalised == pytest.approx([1.0] * 4, abs=0.05)
    assert max(abs(s - 1) for s in raw) > 0.3  # without SN these weights are far from unit norm


def test_spectral_norm_on_dcgan_wraps_convs_of_d_only_by_default():
    module = make_module("data=digits", "trick=spectral_norm")
    d_wrapped = [m for m in module.D.modules() if hasattr(m, "parametrizations")]
    g_wrapped = [m for m in module.G.modules() if hasattr(m, "parametrizations")]
    assert len(d_wrapped) >= 2 and not g_wrapped


def test_tricks_compose_in_list_order():
    tricks = build_tricks({"label_smoothing": {}, "instance_noise": {"std": 0.5}})
    assert [t.name for t in tricks] == ["label_smoothing", "instance_noise"]
    assert isinstance(tricks[0], LabelSmoothing)


class _Nets:
    """The slice of GANModule that penalty and clipping hooks use."""

    def __init__(self, D=None, G=None):
        self.D, self.G = D, G


def test_one_sided_label_smoothing_sets_real_targets_only():
    (trick,) = build_tricks({"one_sided_label_smoothing": {}})
    real_t, fake_t = trick.d_targets(torch.ones(8, 1), torch.zeros(8, 1), ctx())
    assert torch.equal(real_t, torch.full((8, 1), 0.9)) and torch.equal(fake_t, torch.zeros(8, 1))


def test_noisy_labels_flip_at_rate_p():
    (trick,) = build_tricks({"noisy_labels": {"p": 0.1}})
    torch.manual_seed(0)
    real_t, fake_t = trick.d_targets(torch.ones(100_000, 1), torch.zeros(100_000, 1), ctx())
    assert set(real_t.unique().tolist()) == {0.0, 1.0}
    assert (real_t == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (fake_t == 1).float().mean().item() == pytest.approx(0.1, abs=0.005)


def test_gradient_penalty_trick_is_zero_for_a_unit_norm_linear_critic():
    (trick,) = build_tricks({"gradient_penalty": {"weight": 10.0}})
    critic = torch.nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.0, 0.8]]))
    real, fake = torch.randn(32, 3), torch.randn(32, 3)
    assert trick.d_penalty(_Nets(D=critic), RealBatch(real, None), fake, ctx()).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.weight.mul_(2.0)
    assert trick.d_penalty(_Nets(D=critic), RealBatch(real, None), fake, ctx()).item() == pytest.approx(10.0, rel=1e-5)


def test_grad_clip_bounds_the_post_clip_norm_in_training():
    module = make_module("trick=grad_clip", "trick.grad_clip.max_norm_d=1e-3", "trick.grad_clip.max_norm_g=2e-3",
                         "monitor.grad_norm_every=1", "trainer.log_every_n_steps=1")
    seen = {}
    for net, hook in (("d", "before_d_step"), ("g", "before_g_step")):
        original = getattr(module.tricks[0], hook)

        def clipped(gan, c, net=net, original=original):
            original(gan, c)
            params = (gan.D if net == "d" else gan.G).parameters()
            seen.setdefault(net, []).append(torch.nn.utils.get_total_norm([p.grad for p in params]).item())
        setattr(module.tricks[0], hook, clipped)
    run_steps(module, 3)
    assert max(seen["d"]) <= 1e-3 * (1 + 1e-5) and max(seen["g"]) <= 2e-3 * (1 + 1e-5)
    assert module.latest_scalars["grad_norm/d"] > 1e-2  # logged before clipping, and clipping did act


def test_orthogonal_reg_is_zero_for_orthogonal_weights_only():
    from gan_ablate.tricks.regularizers import add_orthogonality_gradient
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 4))
    add_orthogonality_gradient(net, 0.5)
    assert all(layer.weight.grad.abs().max() > 1e-3 for layer in net)
    net.zero_grad(set_to_none=True)
    for layer in net:
        torch.nn.init.orthogonal_(layer.weight)
    with torch.no_grad():
        net[1].weight.mul_(2.0)  # still orthogonal rows, not orthonormal: off-diagonals stay 0
    add_orthogonality_gradient(net, 0.5)
    assert all(layer.weight.grad.abs().max() < 1e-5 for layer in net)
    assert all(layer.bias.grad is None for layer in net)  # one axis: left alone, as BigGAN's ortho does


def biggan_ortho_gradient(w: torch.Tensor, strength: float) -> torch.Tensor:
    """ajbrock/BigGAN-PyTorch utils.py `ortho`, written out for one parameter."""
    flat = w.reshape(w.shape[0], -1)
    return (strength * 2 * ((flat @ flat.t()) * (1.0 - torch.eye(flat.shape[0]))) @ flat).reshape(w.shape)


def test_orthogonal_reg_adds_biggans_ortho_gradient_to_g_before_its_step():
    """Through training_step: what reaches G's optimiser step is G's loss gradient + BigGAN's ortho
    gradient (strength beta) on every parameter with two axes or more; D's gradients are untouched
    unless d_beta is set."""
    module = make_module("trick=orthogonal_reg", "trick.orthogonal_reg.beta=0.3", "model.g_hidden=8")
    (trick,) = module.tricks
    loss_grads, at_step = {}, {}
    original = trick.before_g_step

    def record_loss_grads(gan, c):
        loss_grads.update({n: p.grad.clone() for n, p in gan.G.named_parameters()})
        original(gan, c)

    trick.before_g_step = record_loss_grads
    opt_g, opt_d = attach_optimizers(module)
    step = opt_g.step
    opt_g.step = lambda: at_step.update({n: (p.detach().clone(), p.grad.clone())
                                         for n, p in module.G.named_parameters()}) or step()
    d_step = opt_d.step
    d_grads = []
    opt_d.step = lambda: d_grads.append([p.grad.clone() for p in module.D.parameters()]) or d_step()
    d_hooks = trick.before_d_step
    trick.before_d_step = lambda gan, c: (d_grads.append([p.grad.clone() for p in gan.D.parameters()]),
                                          d_hooks(gan, c))
    run_steps(module, 1)
    matrices = [n for n, p in module.G.named_parameters() if p.dim() >= 2]
    assert len(matrices) >= 2
    for name, (w, grad) in at_step.items():
        added = biggan_ortho_gradient(w, 0.3) if w.dim() >= 2 else torch.zeros_like(w)
        torch.testing.assert_close(grad - loss_grads[name], added, rtol=1e-5, atol=1e-7)
        assert w.dim() < 2 or added.abs().max() > 1e-4
    for before, after in zip(*d_grads):
        assert torch.equal(before, after)


def test_orthogonal_reg_d_beta_adds_the_same_gradient_to_d():
    (trick,) = build_tricks({"orthogonal_reg": {"beta": 0.0, "d_beta": 0.2}})
    d = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.Flatten(), torch.nn.Linear(5, 1))
    for p in d.parameters():
        p.grad = torch.zeros_like(p)
    trick.before_d_step(_Nets(D=d), ctx())
    for p in d.parameters():
        expected = biggan_ortho_gradient(p.detach(), 0.2) if p.dim() >= 2 else torch.zeros_like(p)
        torch.testing.assert_close(p.grad, expected)


@pytest.mark.parametrize("net", ["D", "G"])
def test_historical_averaging_penalty_is_zero_at_the_running_mean(net):
    (trick,) = build_tricks({"historical_averaging": {"weight": 2.0}})
    nets = _Nets(D=torch.nn.Linear(2, 1, bias=False), G=torch.nn.Linear(2, 1, bias=False))
    layer = getattr(nets, net)

    def penalty():
        return trick.d_penalty(nets, None, None, ctx()) if net == "D" else trick.g_penalty(nets, None, ctx())

    assert penalty().item() == 0.0  # no history yet
    values = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 7.0]])]
    for v in values:
        with torch.no_grad():
            layer.weight.copy_(v)
        trick.after_iteration(nets, ctx())
    mean = torch.stack(values).mean(0)
    with torch.no_grad():
        layer.weight.copy_(mean)
    assert penalty().item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        layer.weight.add_(torch.tensor([[1.0, -2.0]]))
    assert penalty().item() == pytest.approx(2.0 * 5.0)


@pytest.mark.parametrize("name,params,fraction,added", [
    ("experience_replay", {"fraction": 0.25, "buffer_size": 64}, 0.25, 32),
    ("g_history", {"buffer_size": 64}, 0.5, 16)])  # SimGAN: b/2 new samples into the buffer per step
def test_replay_buffers_feed_the_stated_fraction_of_old_fakes(name, params, fraction, added):
    (trick,) = build_tricks({name: params})
    first = torch.full((32, 2), -1.0)
    assert torch.equal(trick.d_fake_batch(first, ctx()), first)  # nothing to replay yet
    assert trick.buffer.filled == added
    new = torch.arange(32.0).repeat(2, 1).t()
    mixed = trick.d_fake_batch(new, ctx())
    assert mixed.shape == new.shape
    assert (mixed == -1.0).all(dim=1).sum().item() == int(fraction * 32)  # old fakes, from the buffer
    assert trick.buffer.filled == 2 * added and (trick.buffer.data[added:2 * added] == new[:added]).all()


def test_g_history_replaces_half_a_batch_of_its_full_buffer_per_d_update():
    """Through training_step (n_critic 2, batch 32, buffer 48): each D update puts exactly b/2 = 16 of
    its current fakes, the ones D saw, into the buffer: first filling it, then at random places."""
    module = make_module("trick=g_history", "trick.g_history.buffer_size=48", "optim.n_critic=2")
    (trick,) = module.tricks
    shown, writes = [], []
    d_fake_batch = trick.d_fake_batch

    def record(fake, c):
        before = None if trick.buffer.data is None else trick.buffer.data.clone()
        mixed = d_fake_batch(fake, c)
        shown.append(mixed)
        writes.append((before, trick.buffer.data.clone(), fake[:16]))
        return mixed

    trick.d_fake_batch = record
    run_steps(module, 3)
    assert len(writes) == 6 and [len(m) for m in shown] == [32] * 6
    assert trick.buffer.filled == 48
    for before, after, current in writes[3:]:  # full buffer: 16 rows replaced, by the current fakes
        changed = (before != after).any(dim=1)
        assert changed.sum().item() == 16
        assert set(map(tuple, after[changed].tolist())) == set(map(tuple, current.tolist()))


@pytest.mark.parametrize("tricks,extra,names", [
    ("trick=[label_smoothing,one_sided_label_smoothing]", [], ("one_sided_label_smoothing", "label_smoothing")),
    ("trick=label_smoothing", ["loss=hinge"], ("label_smoothing", "loss=hinge")),
    ("trick=noisy_labels", ["loss=wgan"], ("noisy_labels", "loss=wgan")),
    ("trick=gradient_penalty", ["data=digits"], ("gradient_penalty", "norm_d=batch_norm")),
    ("trick=[experience_replay,g_history]", [], ("g_history", "experience_replay")),
])
def test_conflicts_are_refused_naming_both(tricks, extra, names):
    from conftest import make_cfg
    from gan_ablate.validation import check_config
    with pytest.raises(ConfigError, match=rf"{names[0]}.*conflicts with.*{names[1]}"):
        check_config(make_cfg(tricks, *extra))


class _Recorder(Trick):
    """A trick that notes every hook call and leaves its mark on what it passes on (its name appended),
    so that a chain of them shows what each trick received and in which order."""

    def __init__(self, name: str, setup_order: int = 0, penalty: float = 0.0, repeats: int = 0):
        super().__init__()
        self.name, self.setup_order, self.penalty, self.repeats = name, setup_order, penalty, repeats
        self.calls: list[tuple] = []

    def _note(self, *call):
        self.calls.append(call)

    def setup(self, gan):
        self._note("setup", gan)
        gan.set_up.append(self.name)

    def prepare_data(self, data, labels):
        self._note("prepare_data", data, labels)
        return data + [self.name]

    def d_fake_batch(self, fake, c):
        self._note("d_fake_batch", fake, c)
        return fake + [self.name]

    def d_input(self, x, c):
        self._note("d_input", x, c)
        return x + [self.name]

    def d_targets(self, real_t, fake_t, c):
        self._note("d_targets", real_t, fake_t, c)
        return real_t + [self.name], fake_t + [self.name]

    def d_objective(self, loss, real_logits, fake_logits, c):
        self._note("d_objective", loss, real_logits, fake_logits, c)
        return loss + [self.name]

    def d_penalty(self, gan, real, fake, c):
        self._note("d_penalty", gan, real, fake, c)
        return self.penalty

    def g_penalty(self, gan, fake, c):
        self._note("g_penalty", gan, fake, c)
        return 2 * self.penalty

    def g_objective(self, loss, gan, fake, c):
        self._note("g_objective", loss, gan, fake, c)
        return loss + [self.name]

    def _observer(hook):  # the hooks that only act on the nets: noted with their arguments
        def observe(self, gan, c):
            self._note(hook, gan, c)
        return observe

    before_d_step, after_d_step = _observer("before_d_step"), _observer("after_d_step")
    before_g_step, after_g_step = _observer("before_g_step"), _observer("after_g_step")
    after_iteration = _observer("after_iteration")

    def repeat_d_step(self, d_loss, extra, c):
        self._note("repeat_d_step", d_loss, extra, c)
        return extra < self.repeats

    def repeat_g_step(self, g_loss, extra, c):
        self._note("repeat_g_step", g_loss, extra, c)
        return extra < self.repeats

    def eval_latent(self, z):
        return z + [self.name]

    def eval_samples(self, x):
        return x + [self.name]

    def state_dict(self):
        return {"of": self.name}

    def load_state_dict(self, state):
        self._note("load_state_dict", state)


def test_the_hook_chain_passes_each_tricks_output_on_in_list_order_and_every_trick_the_steps_arguments():
    """A plain Trick in the chain does nothing (no penalty, no extra update, no state); the others see
    the training step's own objects (gan, context) and what the trick before them returned."""
    first, plain, second = _Recorder("first", setup_order=1, penalty=0.5), Trick(), _Recorder("second", repeats=1)
    chain = HookChain([first, plain, second])
    gan, c = _Nets(), ctx(iteration=7)
    gan.set_up = []

    chain.setup(gan)
    assert gan.set_up == ["second", "first"]  # by setup_order: tricks that rebuild the nets before wrappers
    assert first.calls.pop() == ("setup", gan) and second.calls.pop() == ("setup", gan)

    assert chain.prepare_data(["data"], "labels") == ["data", "first", "second"]
    assert chain.d_fake_batch(["fake"], c) == ["fake", "first", "second"]
    assert chain.d_input(["x"], c) == ["x", "first", "second"]
    assert chain.d_targets(["real_t"], ["fake_t"], c) == (["real_t", "first", "second"], ["fake_t", "first", "second"])
    assert chain.g_objective(["loss"], gan, "fake", c) == ["loss", "first", "second"]
    assert chain.d_objective(["loss"], "real_logits", "fake_logits", c) == ["loss", "first", "second"]
    assert chain.eval_latent(["z"]) == ["z", "first", "second"]
    assert chain.eval_samples(["x"]) == ["x", "first", "second"]
    assert chain.d_penalty(gan, "real", "fake", c) == 0.5 and chain.g_penalty(gan, "fake", c) == 1.0
    for hook in ("before_d_step", "after_d_step", "before_g_step", "after_g_step", "after_iteration"):
        getattr(chain, hook)(gan, c)
    assert chain.repeat_d_step("d_loss", 0, c) and not chain.repeat_d_step("d_loss", 1, c)
    assert chain.repeat_g_step("g_loss", 0, c) and not chain.repeat_g_step("g_loss", 1, c)

    def seen_by(upstream):
        return [("prepare_data", ["data", *upstream], "labels"), ("d_fake_batch", ["fake", *upstream], c),
                ("d_input", ["x", *upstream], c), ("d_targets", ["real_t", *upstream], ["fake_t", *upstream], c),
                ("g_objective", ["loss", *upstream], gan, "fake", c),
                ("d_objective", ["loss", *upstream], "real_logits", "fake_logits", c),
                ("d_penalty", gan, "real", "fake", c), ("g_penalty", gan, "fake", c),
                ("before_d_step", gan, c), ("after_d_step", gan, c), ("before_g_step", gan, c),
                ("after_g_step", gan, c), ("after_iteration", gan, c),
                ("repeat_d_step", "d_loss", 0, c), ("repeat_d_step", "d_loss", 1, c),
                ("repeat_g_step", "g_loss", 0, c), ("repeat_g_step", "g_loss", 1, c)]

    assert first.calls == seen_by([])
    assert second.calls == seen_by(["first"])

    assert chain.state_dict() == {"first": {"of": "first"}, "": {}, "second": {"of": "second"}}
    first.calls.clear()
    second.calls.clear()
    chain.load_state_dict({"second": {"of": "saved"}})  # a trick the checkpoint has no state for keeps its own
    assert first.calls == [] and second.calls == [("load_state_dict", {"of": "saved"})]
    assert plain.params == Trick.Params()


def test_register_refuses_a_trick_without_a_name_and_registers_one_with(monkeypatch):
    monkeypatch.setattr(base, "TRICKS", dict(TRICKS))  # leave the real registry as it was

    class Nameless(Trick):
        pass

    with pytest.raises(TypeError, match="^Nameless needs a `name`$"):
        base.register(Nameless)

    class Named(Trick):
        name = "named_for_this_test"

    assert base.register(Named) is Named and base.TRICKS["named_for_this_test"] is Named
    assert "named_for_this_test" not in TRICKS


def test_register_refuses_a_second_trick_under_a_taken_name_and_keeps_the_first(monkeypatch):
    monkeypatch.setattr(base, "TRICKS", dict(TRICKS))

    class AnotherLabelSmoothing(LabelSmoothing):  # inherits the name
        pass

    with pytest.raises(ValueError, match="^trick 'label_smoothing' is already registered \\(by LabelSmoothing\\)$"):
        base.register(AnotherLabelSmoothing)
    assert base.TRICKS["label_smoothing"] is LabelSmoothing


@pytest.mark.parametrize("not_a_trick", [InstanceNoise.Params, InstanceNoise(), "instance_noise"])
def test_register_refuses_what_is_not_a_trick_class(monkeypatch, not_a_trick):
    monkeypatch.setattr(base, "TRICKS", {})
    with pytest.raises(TypeError, match="^register: .* is not a subclass of Trick$"):
        base.register(not_a_trick)
    assert base.TRICKS == {}


@pytest.mark.parametrize("trick,raw,message", [
    # the bad key, OmegaConf's first line, and the keys the trick has
    ("instance_noise", {"stdd": 0.3},
     "trick.instance_noise.stdd: Key 'stdd' not in 'Params' (keys of trick.instance_noise: std, decay_steps)"),
    ("instance_noise", {"std": "much"}, "trick.instance_noise.std: Value 'much' of type 'str' could not be "
                                        "converted to Float (keys of trick.instance_noise: std, decay_steps)"),
    # not a mapping (trick.instance_noise=3 on the command line reached OmegaConf's multi-line ValueError)
    ("instance_noise", [0.3], "trick.instance_noise: expected its parameters as a mapping (keys of "
                              "trick.instance_noise: std, decay_steps), got [0.3]"),
    ("instance_noise", 3, "trick.instance_noise: expected its parameters as a mapping (keys of "
                          "trick.instance_noise: std, decay_steps), got 3"),
    ("skip_z", {"z": 1}, "trick.skip_z.z: Key 'z' not in 'Params' (keys of trick.skip_z: none)"),
    ("skip_z", 3, "trick.skip_z: expected its parameters as a mapping (keys of trick.skip_z: none), got 3"),
    # a value its Params refuses: config.check_range's message (the config's own), under the trick's key
    ("instance_noise", {"std": -1.0}, "trick.instance_noise.std=-1.0 is out of range; it must lie in [0, inf]"),
    ("instance_noise", {"decay_steps": 0},
     "trick.instance_noise.decay_steps=0 is out of range; it must lie in [1, inf] or be null"),
    ("historical_averaging", {"weight": -1.0},
     "trick.historical_averaging.weight=-1.0 is out of range; it must lie in [0, inf]"),
    ("n_critic", {"steps": 0}, "trick.n_critic.steps=0 is out of range; it must lie in [1, inf]"),
    # of two values checked together before, the one that is wrong
    ("ttur", {"lr_d": 0.0}, "trick.ttur.lr_d=0.0 is out of range; it must lie in (0, inf]"),
    ("grad_clip", {"max_norm_g": -1.0}, "trick.grad_clip.max_norm_g=-1.0 is out of range; it must lie in (0, inf]"),
    ("experience_replay", {"fraction": 1.5},
     "trick.experience_replay.fraction=1.5 is out of range; it must lie in [0, 1]"),
    ("checkpoint_swap", {"keep": 0}, "trick.checkpoint_swap.keep=0 is out of range; it must lie in [1, inf]"),
    ("checkpoint_swap", {"net": "x"}, "trick.checkpoint_swap.net='x' is not allowed; choose one of: d, g"),
    ("one_sided_label_smoothing", {"real": 0.0},
     "trick.one_sided_label_smoothing.real=0.0 is out of range; it must lie in (0, 1]"),
])
def test_bad_trick_parameters_are_refused_with_one_line_naming_the_key(trick, raw, message):
    with pytest.raises(ConfigError) as refused:
        build_tricks({trick: raw})
    assert str(refused.value) == message


def test_a_trick_given_no_parameters_runs_with_its_defaults_and_a_minimum_is_allowed():
    (trick,) = build_tricks({"loss_balancing": None})
    assert trick.params == LossBalancing.Params()
    assert build_tricks({"n_critic": {"steps": 1}})[0].params.steps == 1


def test_an_unknown_trick_is_refused_listing_every_known_one():
    with pytest.raises(ConfigError) as refused:
        build_tricks({"no_such_trick": {}})
    assert str(refused.value) == f"trick='no_such_trick' is not a known trick; available: {', '.join(sorted(TRICKS))}"


@pytest.mark.parametrize("tricks,choices,message", [
    (["experience_replay", "g_history"], [], "trick 'g_history' conflicts with trick 'experience_replay'"),
    (["gradient_penalty"], ["loss=wgan_gp"], "trick 'gradient_penalty' conflicts with loss=wgan_gp"),
])
def test_a_conflict_is_refused_naming_a_trick_as_a_trick_and_a_choice_as_its_setting(tricks, choices, message):
    with pytest.raises(TrickConflict, match=f"^{message}: they cannot run together$"):
        check_conflicts(tricks, choices)


@pytest.mark.parametrize("hook,threshold", [("repeat_d_step", "d_threshold"), ("repeat_g_step", "g_threshold")])
def test_loss_balancing_trains_again_only_while_the_loss_is_over_its_threshold(hook, threshold):
    """ganhacks #12: "while lossD > A: train D" -- a loss equal to A is not over it."""
    (trick,) = build_tricks({"loss_balancing": {threshold: 1.5, "max_extra": 2}})
    repeat = getattr(trick, hook)
    assert not repeat(torch.tensor(1.5), 0, ctx())
    assert repeat(torch.tensor(1.5001), 0, ctx()) and repeat(torch.tensor(1.5001), 1, ctx())
    assert not repeat(torch.tensor(1.5001), 2, ctx())  # max_extra extra updates at the most


def test_fake_buffer_fills_in_order_then_overwrites_random_places():
    buffer = FakeBuffer(10)
    first, second, third = (torch.arange(6.0).unsqueeze(1) + 100 * k for k in range(3))
    buffer.add(first)
    assert buffer.filled == 6 and set(buffer.sample(200).flatten().tolist()) == set(first.flatten().tolist())
    buffer.add(second)  # four rows were left: the first four of the batch fill them
    assert buffer.filled == 10 and torch.equal(buffer.data, torch.cat([first, second[:4]]))
    before = buffer.data.clone()
    buffer.add(third)
    replaced = (buffer.data != before).flatten()
    assert replaced.sum().item() == 6 and set(buffer.data[replaced].flatten().tolist()) == set(third.flatten().tolist())


@pytest.mark.parametrize("batch", [7, 8])
def test_g_history_puts_into_its_buffer_the_current_fakes_d_saw(batch):
    """SimGAN's b/2 replayed, b/2 current; with an odd batch, round(b/2) of them replayed and the rest
    current: those, the current fakes of D's batch, go into the buffer."""
    (trick,) = build_tricks({"g_history": {"buffer_size": 64}})
    trick.d_fake_batch(torch.full((batch, 2), -1.0), ctx())
    filled = trick.buffer.filled
    fake = torch.arange(float(batch)).repeat(2, 1).t()
    mixed = trick.d_fake_batch(fake, ctx())
    current = mixed[(mixed != -1.0).all(dim=1)]
    assert len(current) == batch - round(batch / 2)
    assert torch.equal(trick.buffer.data[filled:trick.buffer.filled], current)


def test_orthogonal_reg_leaves_d_alone_by_default():
    """BigGAN's D_ortho is off unless asked for (d_beta 0): D's gradients, even missing ones, stay as they are."""
    (trick,) = build_tricks({"orthogonal_reg": {}})
    d = torch.nn.Linear(3, 3)
    trick.before_d_step(_Nets(D=d), ctx())
    assert d.weight.grad is None and d.bias.grad is None


SWAP_LOG = re.compile(r"checkpoint_swap: iteration (\d+), ([DG]) swapped for its snapshot (\d+) of (\d+) "
                      r"until iteration (\d+)")


def _swaps(net: str, caplog) -> list[tuple[int, ...]]:
    """60 iterations of a run whose G and D weights hold the number of iterations done, so that a
    swapped-in net names the snapshot it came from; what each swap logged and put in the net."""
    trick = CheckpointSwap(CheckpointSwap.Params(net=net.lower(), snapshot_every=1, keep=4, swap_every=3,
                                                 duration=2))
    nets = _Nets(D=torch.nn.Linear(1, 1, bias=False), G=torch.nn.Linear(1, 1, bias=False))
    other = nets.D if net == "G" else nets.G
    swaps = []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gan_ablate"):
        for it in range(60):
            if trick.parked is None:  # "training": an old net in use keeps its weights here
                torch.nn.init.constant_(getattr(nets, net).weight, it + 1)
            torch.nn.init.constant_(other.weight, -1.0)
            trick.after_iteration(nets, ctx(it))
            if caplog.records:
                (record,) = caplog.records
                done, named, index, count, end = SWAP_LOG.fullmatch(record.getMessage()).groups()
                snapshots = [int(s["weight"].item()) for s in trick.snapshots]
                assert (int(done), named, int(count), int(end)) == (it + 1, net, len(snapshots), it + 1 + 2)
                assert getattr(nets, net).weight.item() == snapshots[int(index) - 1]  # 1-based, as logged
                assert other.weight.item() == -1.0
                swaps.append((int(done), int(index), int(count)))
                caplog.clear()
    return swaps


@pytest.mark.parametrize("net", ["D", "G"])
def test_checkpoint_swap_logs_each_swap_and_trains_an_older_snapshot_chosen_by_the_iteration(net, caplog):
    """Swaps every 3 iterations (while no swap is under way), each for 2: the log names the iteration, the
    net, which snapshot of how many, and when the current net comes back. The snapshot is never the
    newest (the current net's own recent past), and the choice depends on the iteration only, so a
    resumed run makes the same ones."""
    swaps = _swaps(net, caplog)
    assert [done for done, _, _ in swaps] == list(range(3, 61, 3))
    assert all(index < count for _, index, count in swaps)
    assert len({index for _, index, _ in swaps}) > 1  # a choice, not always the same one
    random.seed(12345)  # whatever else drew from Python's RNG
    assert _swaps(net, caplog) == swaps


def test_checkpoint_swap_refusal_says_what_to_change():
    trick = CheckpointSwap(CheckpointSwap.Params(snapshot_every=3, swap_every=4))
    with pytest.raises(ScheduleOutsideRun) as refused:
        trick.check_budget(8)
    assert str(refused.value) == (
        "trick.checkpoint_swap would first swap after iteration 8 (snapshot_every=3, swap_every=4), not within "
        "trainer.max_steps=8: lower trick.checkpoint_swap.snapshot_every/swap_every or train longer")
