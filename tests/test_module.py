"""The G/D step: update counts, optimisers, EMA, gradient norms, addressable randomness."""

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import make_module
from helpers import RecordingLogger, attach_optimizers, run_steps, with_loggers
from torch import nn

from gan_ablate.module import grad_norms, step_seed
from gan_ablate.nets.layers import sample_latent


@pytest.mark.parametrize("n_critic,g_steps", [(1, 1), (5, 1), (1, 3), (2, 2)])
def test_n_critic_and_g_steps_count_optimizer_steps(n_critic, g_steps):
    module = make_module(f"optim.n_critic={n_critic}", f"optim.g_steps={g_steps}")
    opt_g, opt_d = run_steps(module, 4)
    assert (opt_d.steps, opt_g.steps) == (4 * n_critic, 4 * g_steps)
    assert module.iteration == 4


def test_separate_optimizers_and_learning_rates():
    module = make_module("optim.g.lr=1e-4", "optim.d.lr=4e-4", "optim.d.name=sgd")
    opt_g, opt_d = module.configure_optimizers()
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.SGD)
    assert [g["lr"] for g in opt_g.param_groups] == [1e-4]
    assert [g["lr"] for g in opt_d.param_groups] == [4e-4]
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    g_ids = {id(p) for p in module.G.parameters()}
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == g_ids
    assert not g_ids & {id(p) for p in opt_d.param_groups[0]["params"]}


def test_ema_equals_the_closed_form_average_pegged_to_g_before_start():
    """BigGAN's ema: before ema.start the average is G itself; from it on, every `every` iterations,
    ema = decay * ema + (1 - decay) * G (constant decay with ema.warmup=false)."""
    decay, start, every = 0.9, 4, 3  # it - start and it + start fall differently modulo every
    module = make_module(f"ema.decay={decay}", f"ema.start={start}", f"ema.every={every}", "ema.warmup=false")
    attach_optimizers(module)
    expected = None
    for it in range(10):
        run_steps(module, 1)
        g = [p.detach().clone() for p in module.G.parameters()]
        if it < start:
            expected = g
            for e, p in zip(expected, module.ema_generator().parameters()):
                torch.testing.assert_close(p, e)
        elif (it - start) % every == 0:
            expected = [decay * e + (1 - decay) * x for e, x in zip(expected, g)]
    for e, p in zip(expected, module.ema_generator().parameters()):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in module.G_ema.parameters())


def test_ema_warmup_decay_is_min_of_decay_and_1_plus_n_over_10_plus_n():
    """tf.train.ExponentialMovingAverage's num_updates: after n updates the decay is
    min(decay, (1 + n) / (10 + n)); the first update copies G (n = 0)."""
    decay = 0.5  # reached after 8 updates: both regimes show within 12 iterations
    module = make_module(f"ema.decay={decay}")
    attach_optimizers(module)
    expected = None
    for n in range(12):
        run_steps(module, 1)
        g = [p.detach().clone() for p in module.G.parameters()]
        d = min(decay, (1 + n) / (10 + n))
        expected = g if expected is None else [d * e + (1 - d) * x for e, x in zip(expected, g)]
    for e, p in zip(expected, module.ema_generator().parameters()):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)


def test_ema_after_a_short_ring_run_follows_the_trained_g_not_the_initial_one():
    """decay 0.999 from iteration 0 without warm-up left 0.999^299 = 74% of the average on the
    untrained G after 300 iterations (its samples sat 0.07 from the initial G's, the raw G's 0.48).
    With the default warm-up the EMA's samples are closer to the raw G's than to the initial G's."""
    module = make_module("trainer.max_steps=300")
    z = torch.randn(512, 2)
    with torch.no_grad():
        initial = module.G(z).clone()
    run_steps(module, 300)

    def distance(a, b):
        return (a - b).norm(dim=1).mean().item()
    with torch.no_grad():
        raw, ema = module.G(z), module.ema_generator()(z)
    assert distance(ema, initial) > distance(ema, raw)
    assert distance(ema, initial) > 0.6 * distance(raw, initial)


def test_ema_standing_statistics_are_the_mean_batch_statistics_of_its_own_samples():
    """ema.bn_stats=standing: each batch-norm layer of the evaluated EMA G holds the plain mean of the
    batch means over standing_batches batches (BigGAN's accumulate_standing_stats), computed here by
    hand with hooks; the EMA's own averaged statistics are left as they were."""
    module = make_module("norm_g=batch_norm", "ema.bn_stats=standing", "ema.standing_batches=3")
    run_steps(module, 5)
    averaged = {k: v.clone() for k, v in module.G_ema.module.state_dict().items()}
    evaluated = module.ema_generator()
    norms = [m for m in evaluated.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms
    # the same latents, through a copy in train mode, collecting each BN layer's batch means
    probe = copy.deepcopy(module.G_ema.module).train()
    means: dict[int, list] = {}
    for i, m in enumerate(m for m in probe.modules() if isinstance(m, nn.BatchNorm1d)):
        m.register_forward_hook(lambda mod, inp, out, i=i: means.setdefault(i, []).append(inp[0].mean(0)))
    draw = torch.Generator().manual_seed(module.cfg.seed)
    with torch.no_grad():
        for _ in range(3):
            probe(sample_latent(module.cfg.data.batch_size, module.cfg.model.z_dim, "gaussian", generator=draw))
    for i, m in enumerate(norms):
        torch.testing.assert_close(m.running_mean, torch.stack(means[i]).mean(0), rtol=1e-4, atol=1e-5)
    assert not evaluated.training
    for k, v in module.G_ema.module.state_dict().items():
        assert torch.equal(v, averaged[k]), k


def test_grad_norms_equal_clip_grad_norm_figure():
    module = make_module("trick=spectral_norm")
    x = torch.randn(64, 2)
    module.D(x).pow(2).mean().backward()
    norms = grad_norms(module.D.named_parameters(), "d", per_layer=True)
    expected = torch.nn.utils.clip_grad_norm_(module.D.parameters(), max_norm=float("inf"))
    assert norms["grad_norm/d"].item() == pytest.approx(expected.item(), rel=1e-6)
    layers = {k for k in norms if k != "grad_norm/d"}
    assert layers == {"grad_norm/d/features.0", "grad_norm/d/features.2", "grad_norm/d/features.4", "grad_norm/d/head"}
    # per-layer norms add up (in squares) to the total
    total_sq = sum(norms[k].item() ** 2 for k in layers)
    assert total_sq == pytest.approx(expected.item() ** 2, rel=1e-5)
    assert all(isinstance(v, torch.Tensor) for v in norms.values())  # tensors: no host sync


def test_grad_norms_are_logged_every_k_iterations():
    module = make_module("monitor.grad_norm_every=2", "trainer.log_every_n_steps=1")
    logged = []
    module.log_scalars = lambda m, step: logged.append((step, set(m)))
    run_steps(module, 4)
    has_norms = [step for step, keys in logged if "grad_norm/d" in keys and "grad_norm/g" in keys]
    assert has_norms == [0, 2] and [s for s, _ in logged] == [0, 1, 2, 3]


def test_step_seed_is_deterministic_and_distinct():
    assert step_seed(0, 5) == step_seed(0, 5)
    seeds = {step_seed(s, i) for s in range(4) for i in range(1000)}
    assert len(seeds) == 4000 and all(0 <= x < 2 ** 63 for x in seeds)


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_same_seed_same_run_and_other_seed_differs():
    a, b, c = make_module("seed=1"), make_module("seed=1"), make_module("seed=2")
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    for m in (a, b, c):
        run_steps(m, 5)
    assert torch.equal(_params(a), _params(b))
    assert not torch.equal(_params(a), _params(c))


def test_a_resumed_run_continues_exactly():
    """Randomness is a function of (seed, iteration): stop after 3, restore into a new module, go on."""
    whole = make_module("trick=[instance_noise,label_smoothing]")
    first = make_module("trick=[instance_noise,label_smoothing]")
    first.load_state_dict(whole.state_dict())
    run_steps(whole, 6)

    opts = run_steps(first, 3)
    torch.manual_seed(12345)  # whatever happens to the global RNG between stop and resume
    second = make_module("trick=[instance_noise,label_smoothing]")
    second.load_state_dict(first.state_dict())
    second_opts = attach_optimizers(second)
    for new, old in zip(second_opts, opts):
        new.opt.load_state_dict(old.opt.state_dict())
    checkpoint = {}
    first.on_save_checkpoint(checkpoint)
    second.on_load_checkpoint(checkpoint)
    run_steps(second, 3)
    assert second.iteration == 6
    assert torch.equal(_params(whole), _params(second))


def test_evaluation_between_steps_does_not_change_training():
    from gan_ablate.callbacks.evaluation import EvaluationCallback
    from gan_ablate.metrics.modes import ModeEvaluator
    from gan_ablate.data.toy import ring_modes

    plain, evaluated = make_module(), make_module()
    evaluated.load_state_dict(plain.state_dict())
    run_steps(plain, 4)
    cb = EvaluationCallback(ModeEvaluator(ring_modes(), 0.01, torch.randn(100, 2)), every=2)
    for _ in range(2):
        run_steps(evaluated, 2)
        torch.rand(3)  # evaluation-like draws from the global stream
        cb.evaluate(evaluated)
    assert torch.equal(_params(plain), _params(evaluated))
    assert [h["iteration"] for h in cb.history] == [2, 4]
    assert set(cb.history[0]) == {"iteration", "raw", "ema"}


def test_the_training_step_names_no_trick():
    """DESIGN.md property 1: tricks act through hooks only. Preset tricks that only set a core
    config key (optim.n_critic, ema) may share that key's name."""
    import dataclasses
    import inspect
    import re

    import gan_ablate.module as module_src
    from gan_ablate.config import OptimConfig, TrainConfig
    from gan_ablate.tricks import TRICKS
    core_keys = {f.name for cls in (OptimConfig, TrainConfig) for f in dataclasses.fields(cls)}
    source = inspect.getsource(module_src)
    assert not re.search(r"cfg\.trick(\.|\[|\.get)", source)  # no reaching into one trick's settings
    for name in set(TRICKS) - core_keys:
        assert name not in source, name


@pytest.mark.parametrize("name,kind", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
                                       ("rmsprop", torch.optim.RMSprop)])
def test_every_optimizer_setting_reaches_its_nets_optimizer(name, kind):
    """Values unlike torch's defaults, different for G and D: each must arrive where it was set."""
    settings = {"g": (1e-4, [0.0, 0.9], 0.3, 1e-3), "d": (4e-4, [0.5, 0.99], 0.7, 2e-3)}
    module = make_module(*(f"optim.{net}.{key}={value}" for net, (lr, betas, momentum, wd) in settings.items()
                           for key, value in (("name", name), ("lr", lr), ("betas", betas),
                                              ("momentum", momentum), ("weight_decay", wd))))
    for opt, net, (lr, betas, momentum, wd) in zip(module.configure_optimizers(), (module.G, module.D),
                                                    settings.values()):
        group = opt.param_groups[0]
        assert type(opt) is kind and (group["lr"], group["weight_decay"]) == (lr, wd)
        own = {"betas": tuple(betas)} if name == "adam" else {"momentum": momentum}
        assert {key: group[key] for key in own} == own
        assert [id(p) for p in group["params"]] == [id(p) for p in net.parameters()]


def test_step_seed_is_the_splitmix64_output_for_the_seeds_state():
    """With iteration 0 and stream 0, `seed` golden-ratio increments from state 0 give splitmix64's
    outputs (Vigna's reference splitmix64.c from state 0: 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4),
    shifted to 63 bits for torch's manual_seed."""
    assert step_seed(1, 0) == 0xE220A8397B1DCDAF >> 1
    assert step_seed(2, 0) == 0x6E789E6AA1B965F4 >> 1
    # iteration and stream each enter the state: no two (seed, iteration, stream) share a seed
    seeds = {step_seed(s, i, k) for s in range(3) for i in range(50) for k in range(4)}
    assert len(seeds) == 600
    assert step_seed(5, 3) == step_seed(5, 3, stream=0)  # stream 0: what a single-device run draws


def test_the_logged_d_gradient_norm_is_that_of_the_first_of_n_critic_updates():
    module = make_module("optim.n_critic=3", "monitor.grad_norm_every=1", "trainer.log_every_n_steps=1")
    _, opt_d = attach_optimizers(module)
    seen, step = [], opt_d.step

    def recording_step(closure=None):
        seen.append(torch.nn.utils.get_total_norm([p.grad for p in module.D.parameters()]).item())
        return step(closure)
    opt_d.step = recording_step
    run_steps(module, 1)
    assert len(seen) == 3 and len(set(seen)) == 3
    assert module.latest_scalars["grad_norm/d"] == pytest.approx(seen[0], rel=1e-6)


def test_loss_balancing_repeats_updates_while_the_hook_asks_counting_the_extra_ones():
    """The repeat hooks see the latest loss, how many extra updates were made so far and the step
    context; each extra update is one more optimiser step."""
    module = make_module("optim.n_critic=2")
    asked = []

    def repeat_twice(loss, extra, ctx):
        asked.append((loss.detach().clone(), extra, ctx.iteration))
        return extra < 2
    module.hooks.repeat_d_step = repeat_twice
    contexts = []  # the extra updates run with the iteration's context, as the scheduled ones (schedules read it)
    module.hooks.before_d_step = lambda gan, ctx: contexts.append(ctx)
    opt_g, opt_d = run_steps(module, 1)
    assert (opt_d.steps, opt_g.steps) == (2 + 2, 1)
    assert len(contexts) == 4 and all(ctx is contexts[0] and ctx.iteration == 0 for ctx in contexts)
    assert [(extra, it) for _, extra, it in asked] == [(0, 0), (1, 0), (2, 0)]
    assert all(loss.shape == () and loss.dtype == torch.float32 for loss, _, _ in asked)
    assert len({loss.item() for loss, _, _ in asked}) == 3  # each after the update before it


def test_logged_scalars_reach_every_logger_at_their_step_and_come_back_for_the_callbacks():
    module = with_loggers(make_module(), RecordingLogger(), RecordingLogger())
    logged = module.log_scalars({"loss/d": torch.tensor(0.25), "grad_norm/d": torch.tensor(2.0)}, step=4)
    expected = {"loss/d": 0.25, "grad_norm/d": 2.0}
    for logger in module.loggers:
        assert logger.metrics == [(4, expected)]
    assert module.latest_scalars == logged == expected


@pytest.mark.parametrize("check_every", [0, 3])
def test_the_step_returns_its_losses_every_iteration_its_norms_when_checked_and_its_logged_values(check_every):
    """What FailureWatchCallback watches: the device values of every iteration (the total gradient norms too when
    the non-finite check is on) and, on log steps only, the host values the loggers got."""
    module = with_loggers(make_module(f"monitor.check_every={check_every}", "trainer.log_every_n_steps=2",
                                      "monitor.grad_norm_every=0"))
    attach_optimizers(module)
    outputs = [module.training_step(None, it) for it in range(3)]
    assert [o["iteration"] for o in outputs] == [0, 1, 2]
    checked = {"grad_norm/d", "grad_norm/g"} if check_every else set()
    assert all(set(o["measured"]) == {"loss/d", "loss/g"} | checked for o in outputs)
    assert all(v.dim() == 0 and isinstance(v, torch.Tensor) for o in outputs for v in o["measured"].values())
    assert ["logged" in o for o in outputs] == [True, False, True]
    assert outputs[2]["logged"] == module.latest_scalars == {k: outputs[2]["measured"][k].item() for k in ("loss/d", "loss/g")}


HOOKS = ("d_fake_batch", "d_input", "d_targets", "d_objective", "d_penalty", "before_d_step", "after_d_step",
         "g_objective", "g_penalty", "before_g_step", "after_g_step", "after_iteration")


# where a hook is handed the module (gan)
GETS_THE_MODULE = {"d_penalty": 0, "g_objective": 1, "g_penalty": 0, "before_d_step": 0, "after_d_step": 0,
                   "before_g_step": 0, "after_g_step": 0, "after_iteration": 0}


def record_hooks(module):
    """Every hook call of the chain, with its arguments, passed on to the real hook."""
    calls = []

    def recording(name, hook):
        def call(*args):
            calls.append((name, args))
            return hook(*args)
        return call
    for name in HOOKS:
        setattr(module.hooks, name, recording(name, getattr(module.hooks, name)))
    return calls


def test_each_hook_gets_the_module_its_batches_and_the_step_context():
    """Tricks see the iteration and max_steps (schedules), the module, D's real batch with its labels and its
    fake batch (as many fakes as reals, ganhacks #4) and G's fakes; targets are ones for real, zeros for fake."""
    module = make_module("trainer.max_steps=7")
    calls = record_hooks(module)
    run_steps(module, 2)
    batch = module.cfg.data.batch_size
    assert [name for name, _ in calls[:len(calls) // 2]] == [
        "d_fake_batch", "d_input", "d_input", "d_targets", "d_objective", "d_penalty", "before_d_step", "after_d_step",
        "d_input", "g_objective", "g_penalty", "before_g_step", "after_g_step", "after_iteration"]
    for i, (name, args) in enumerate(calls):
        ctx = args[-1]
        assert (ctx.iteration, ctx.max_steps) == (i // 14, 7), name
        if name in GETS_THE_MODULE:
            assert args[GETS_THE_MODULE[name]] is module, name
    args = dict(calls[:14])
    assert args["d_fake_batch"][0].shape == (batch, 2)
    real_t, fake_t = args["d_targets"][:2]
    assert torch.equal(real_t, torch.ones(batch, 1)) and torch.equal(fake_t, torch.zeros(batch, 1))
    _, real, fake, _ = args["d_penalty"]
    d_inputs = [a for name, a in calls[:14] if name == "d_input"]
    d_loss, real_logits, fake_logits, _ = args["d_objective"]
    assert d_loss.shape == () and real_logits.shape == fake_logits.shape == (batch, 1)
    assert real.x is d_inputs[0][0] and fake is d_inputs[1][0] and real.x.shape == fake.shape == (batch, 2)
    assert real.labels.shape == (batch,)  # ring8's modes, the labels of D's real batch
    g_loss, _, g_fake, _ = args["g_objective"]
    assert g_loss.shape == () and g_fake.shape == (batch, 2) and g_fake.requires_grad
    assert args["g_penalty"][1] is g_fake and d_inputs[2][0] is g_fake


def test_penalties_add_to_the_loss_each_net_minimises():
    """A constant penalty (or a constant added by D's objective) moves no parameter: it shows in the returned
    (logged) loss as +penalty."""
    losses = {}
    for penalty in (0.0, 5.0):
        module = make_module("trainer.log_every_n_steps=1")
        module.hooks.d_objective = lambda loss, real_logits, fake_logits, ctx, c=penalty: loss + c
        module.hooks.d_penalty = lambda gan, real, fake, ctx, c=penalty: torch.tensor(c)
        module.hooks.g_penalty = lambda gan, fake, ctx, c=penalty: torch.tensor(c)
        run_steps(module, 1)
        losses[penalty] = module.latest_scalars
    for key, added in (("loss/d", 10.0), ("loss/g", 5.0)):
        assert losses[5.0][key] == pytest.approx(losses[0.0][key] + added, rel=1e-6)


@pytest.mark.parametrize("every,per_layer", [(2, False), (2, True), (0, False)])
def test_logged_keys_are_the_losses_and_on_measured_iterations_the_gradient_norms(every, per_layer):
    logger = RecordingLogger()
    module = with_loggers(make_module(f"monitor.grad_norm_every={every}", f"monitor.grad_norm_per_layer={per_layer}",
                                      "trainer.log_every_n_steps=1", "monitor.failure_watch.enabled=false"), logger)
    run_steps(module, 2)
    totals = {"grad_norm/d", "grad_norm/g"}
    layers = {f"grad_norm/{net}/{layer}" for net, m in (("d", module.D), ("g", module.G))
              for layer in {n.rsplit(".", 1)[0] for n, _ in m.named_parameters()}}
    measured = (totals | layers if per_layer else totals) if every else set()
    assert [(step, set(m)) for step, m in logger.metrics] == [(0, {"loss/d", "loss/g"} | measured),
                                                              (1, {"loss/d", "loss/g"})]


def test_each_rank_seeds_its_step_from_its_own_stream(monkeypatch):
    import gan_ablate.module as module_src

    seeds = []
    monkeypatch.setattr(module_src, "seed_generators", lambda seed, device: seeds.append((seed, device.type)))
    module = make_module("seed=3")
    module._trainer = SimpleNamespace(loggers=[], global_rank=1, should_stop=False)
    run_steps(module, 2)
    assert seeds == [(step_seed(3, 0, stream=1), "cpu"), (step_seed(3, 1, stream=1), "cpu")]


def test_discriminate_feeds_d_through_the_tricks_d_input_with_the_callers_step_context():
    """The tricks' penalties score points through module.discriminate: D's input as the updates feed it, at the
    step the penalty is taken (instance noise reads its iteration there)."""
    from gan_ablate.tricks.base import StepContext

    module = make_module()
    seen, ctx = [], StepContext(iteration=7, max_steps=10)
    module.hooks.d_input = lambda x, c: seen.append(c) or 2 * x
    x = torch.randn(4, 2)
    torch.testing.assert_close(module.discriminate(x, ctx), module.D(2 * x))
    assert seen == [ctx]


def test_a_checkpoint_saved_before_the_data_is_attached_has_no_real_batch_state():
    module = make_module()
    module.draw_real = None  # as between construction and on_fit_start
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["gan_ablate"]["real_batches"] == {}


def test_an_old_checkpoint_loads_as_iteration_0():
    blank = make_module()
    blank.iteration = 5
    blank.on_load_checkpoint({})  # a checkpoint written without gan_ablate's state
    assert blank.iteration == 0


def test_a_checkpoint_without_trick_state_gives_every_trick_an_empty_state():
    """A checkpoint from before a trick kept state (no "tricks" entry) resumes it from nothing, not from None."""
    module = make_module()
    seen = []
    module.hooks.load_state_dict = seen.append
    module.on_load_checkpoint({"gan_ablate": {"iteration": 3}})
    assert (module.iteration, seen) == (3, [{}])


def test_evaluation_and_selection_see_the_modules_own_g_and_its_average():
    """BestSelection (callbacks/selection.py) saves and restores what generator_modules names: G and G_ema."""
    module = make_module()
    nets = module.generator_modules()
    assert list(nets) == ["G", "G_ema"] and nets["G"] is module.G and nets["G_ema"] is module.G_ema


def test_extra_updates_count_up_by_one_each_time_the_hook_asks():
    """The repeat hook sees 0, 1, 2, ... extra updates; a count that did not grow would loop for ever."""
    module = make_module()
    asked = []

    def repeat(loss, extra, ctx):
        asked.append(extra)
        assert len(asked) < 10, f"the extra-update count does not grow: {asked}"
        return extra < 3
    module.hooks.repeat_g_step = repeat
    run_steps(module, 1)
    assert asked == [0, 1, 2, 3]


def test_the_ema_averages_gs_batch_norm_statistics_like_its_weights():
    """use_buffers=True: the running statistics the EMA G evaluates with are the EMA of G's, not a
    copy of G's latest (torch's use_buffers=False would copy them)."""
    decay = 0.5
    module = make_module("norm_g=batch_norm", f"ema.decay={decay}", "ema.start=0", "ema.warmup=false")
    attach_optimizers(module)
    expected = None
    for _ in range(4):
        run_steps(module, 1)
        stats = {n: b.clone() for n, b in module.G.named_buffers() if b.is_floating_point()}
        expected = stats if expected is None else {n: decay * expected[n] + (1 - decay) * b for n, b in stats.items()}
    averaged = dict(module.G_ema.module.named_buffers())
    assert expected
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value)
        assert not torch.allclose(averaged[name], dict(module.G.named_buffers())[name])


@pytest.mark.parametrize("loss,draws_per_iteration", [("non_saturating", 1), ("relativistic", 2)])
def test_g_draws_a_real_batch_only_for_losses_that_compare_with_real_data(loss, draws_per_iteration):
    module = make_module(f"loss={loss}")
    draws, draw = [], module.real_batch
    module.real_batch = lambda: draws.append(1) or draw()
    run_steps(module, 3)
    assert len(draws) == 3 * draws_per_iteration


def test_the_ema_generator_with_averaged_statistics_is_the_average_itself():
    module = make_module("norm_g=batch_norm", "ema.bn_stats=averaged")
    run_steps(module, 2)
    assert module.ema_generator() is module.G_ema.module


def test_a_real_batch_of_unlabelled_data_has_no_labels():
    """Data without labels (an image folder) gives batches whose labels are None, not an error."""
    module = make_module()
    module.attach_data(module.real_data, None)
    real = module.real_batch()
    assert real.labels is None and real.x.shape == (module.cfg.data.batch_size, 2)


@pytest.mark.parametrize("cache", ["tensor", "dataloader"])
def test_a_real_batch_carries_the_labels_of_its_own_rows(cache):
    """The labels come with the batch (AC-GAN's D term reads them), for both ways of drawing it."""
    module = make_module(f"dataset_cache={cache}")
    for _ in range(3):
        real = module.real_batch()
        rows = (real.x[:, None, :] == module.real_data[None, :, :]).all(dim=2).float().argmax(dim=1)
        assert torch.equal(module.real_data[rows], real.x)  # every sample is a row of the data
        assert torch.equal(real.labels, module.real_labels[rows])
    assert module.real_labels.unique().numel() > 1  # labels that can be told apart


def test_uncached_batches_are_a_function_of_the_seed():
    """data.cache=false shuffles through a DataLoader whose generator is seeded from the run's seed."""
    def batches(seed):
        module = make_module("dataset_cache=dataloader", f"seed={seed}")
        return torch.cat([module.real_batch().x for _ in range(3)])
    assert torch.equal(batches(1), batches(1)) and not torch.equal(batches(1), batches(2))


@pytest.mark.parametrize("with_labels", [True, False])
def test_fit_start_attaches_the_data_modules_data_and_labels(with_labels):
    module = make_module()
    data = torch.randn(100, 2)
    labels = torch.arange(100) % 8 if with_labels else None
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(data=data, labels=labels))
    module.on_fit_start()
    assert torch.equal(module.real_data, data)
    assert (module.real_labels is None) if labels is None else torch.equal(module.real_labels, labels)


def test_every_d_input_of_an_iteration_sees_its_step_context_also_the_real_batch_of_a_relativistic_g_step():
    """D's input hook (instance noise anneals with ctx.iteration) is called with the iteration's context for real and
    fake in the D step, and in the G step for the fakes and, when the loss compares with real data (RaGAN), the reals."""
    module = make_module("loss=relativistic")
    seen = []
    module.hooks.d_input = lambda x, ctx: seen.append(ctx) or x
    run_steps(module, 1)
    assert len(seen) == 4  # D step: real, fake; G step: fake, real
    assert all(ctx is not None and ctx.iteration == 0 for ctx in seen)


@pytest.mark.parametrize("latent", ["gaussian", "uniform"])
def test_the_training_step_draws_z_from_the_configured_latent(latent):
    """G's inputs in training follow model.latent: N(0, I) reaches beyond [-1, 1], U(-1, 1) never does."""
    module = make_module(f"model.latent={latent}")
    seen = []
    module.G.register_forward_pre_hook(lambda net, args: seen.append(args[0].detach().clone()))
    run_steps(module, 1)
    z = torch.cat(seen)
    assert len(seen) == 2 and z.shape[1] == module.cfg.model.z_dim  # the D step's fakes and the G step's
    assert (z.abs().max() > 1.5) == (latent == "gaussian") and (z.min() < -0.9 and z.max() > 0.9)


def test_the_module_refuses_a_trick_that_conflicts_with_its_loss_or_normalisation():
    """build_tricks sees the run's settings: a per-sample gradient penalty on a batch-norm critic is refused."""
    from gan_ablate.config import TrickConflict

    with pytest.raises(TrickConflict, match="conflicts with norm_d=batch_norm"):
        make_module("trick=gradient_penalty", "model.norm_d=batch_norm")


# -- optim.update=simultaneous (ALI's ali_algorithm, the PacGAN presets' scheme) ---------------------------
def record_draws(module):
    """Keep every real batch and z the training step draws, in order."""
    draws, real_batch, sample_z = [], module.real_batch, module.sample_z
    module.real_batch = lambda: draws.append(real_batch()) or draws[-1]
    module.sample_z = lambda n: draws.append(sample_z(n)) or draws[-1]
    return draws


def test_a_simultaneous_update_takes_both_gradients_from_one_batch_one_z_and_the_pre_step_weights():
    """D's gradient is of its loss on G's samples from G's pre-step weights, G's of its loss through D's
    pre-step weights (a non-linear D: leaky ReLU MLP); each optimiser steps once, with its own gradient."""
    module = make_module("optim.update=simultaneous", "monitor.grad_norm_every=1")
    opt_g, opt_d = attach_optimizers(module)
    G0, D0 = copy.deepcopy(module.G), copy.deepcopy(module.D)
    adam_g, adam_d = (torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999)) for net in (G0, D0))
    draws = record_draws(module)
    out = module.training_step(None, 0)

    assert [type(d).__name__ for d in draws] == ["RealBatch", "Tensor"]  # one real batch, one z
    (real, z), F = draws, torch.nn.functional
    assert real.x.shape[0] == z.shape[0] == module.cfg.data.batch_size
    fake = G0(z)
    d_loss = F.softplus(-D0(real.x)).mean() + F.softplus(D0(fake.detach())).mean()
    g_loss = F.softplus(-D0(fake)).mean()
    d_grads = torch.autograd.grad(d_loss, list(D0.parameters()))
    g_grads = torch.autograd.grad(g_loss, list(G0.parameters()))
    for net, grads in ((module.D, d_grads), (module.G, g_grads)):
        for p, g in zip(net.parameters(), grads):
            torch.testing.assert_close(p.grad, g)
    torch.testing.assert_close(out["measured"]["loss/d"], d_loss)
    torch.testing.assert_close(out["measured"]["loss/g"], g_loss)
    torch.testing.assert_close(out["measured"]["grad_norm/d"], torch.nn.utils.get_total_norm(d_grads))
    torch.testing.assert_close(out["measured"]["grad_norm/g"], torch.nn.utils.get_total_norm(g_grads))
    assert (opt_d.steps, opt_g.steps) == (1, 1) and module.iteration == 1
    for net, ref, adam, grads in ((module.D, D0, adam_d, d_grads), (module.G, G0, adam_g, g_grads)):
        for p, g in zip(ref.parameters(), grads):
            p.grad = g
        adam.step()
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q)


def test_a_simultaneous_update_scores_the_same_real_batch_in_gs_loss_when_the_loss_reads_real_data():
    """RaGAN's G loss compares fakes with reals: under simultaneous updates, with D's real batch."""
    module = make_module("optim.update=simultaneous", "loss=relativistic")
    draws, seen = record_draws(module), []
    module.hooks.d_input = lambda x, ctx: seen.append((x, ctx)) or x
    run_steps(module, 1)
    assert [type(d).__name__ for d in draws] == ["RealBatch", "Tensor"]
    assert len(seen) == 4 and seen[0][0] is seen[3][0] is draws[0].x  # D's loss: real, fake; G's loss: fake, real
    assert all(ctx is not None and ctx.iteration == 0 for _, ctx in seen)  # both losses hand D's input the step's


def test_alternating_updates_stay_the_default_and_draw_a_z_per_net():
    module = make_module()
    assert module.cfg.optim.update == "alternating"
    draws = record_draws(module)
    run_steps(module, 1)
    assert [type(d).__name__ for d in draws] == ["RealBatch", "Tensor", "Tensor"]


def test_simultaneous_step_hooks_run_once_each_d_first_after_both_gradients_exist():
    """OptimConfig's rule: both gradients are taken, then before_d_step, D's step, after_d_step,
    before_g_step, G's step, after_g_step; the EMA and after_iteration follow as in alternating updates."""
    from gan_ablate.tricks.base import Trick

    module = make_module("optim.update=simultaneous")
    calls = []

    class Probe(Trick):
        name = "probe"

    probe = Probe()
    for hook in ("before_d_step", "after_d_step", "before_g_step", "after_g_step", "after_iteration"):
        setattr(probe, hook, lambda gan, ctx, hook=hook: calls.append(
            (hook, all(p.grad is not None for p in (*gan.G.parameters(), *gan.D.parameters())), ctx.iteration)))
    module.hooks.tricks.append(probe)
    ema_updates = []
    module.update_ema = ema_updates.append
    run_steps(module, 2)
    order = ["before_d_step", "after_d_step", "before_g_step", "after_g_step", "after_iteration"]
    assert calls == [(hook, True, it) for it in (0, 1) for hook in order]
    assert ema_updates == [0, 1]


@pytest.mark.parametrize("override,key", [("optim.n_critic=2", "optim.n_critic=2"), ("optim.g_steps=3", "optim.g_steps=3"),
                                          ("trick=n_critic", "optim.n_critic=5"), ("trick=g_steps", "optim.g_steps=2")])
def test_simultaneous_updates_refuse_more_than_one_update_of_a_net_on_one_line(override, key):
    """A TrickConflict: the ablation sweeper records such a cell (trick=n_critic on a PacGAN preset) as skipped."""
    from conftest import make_cfg

    from gan_ablate.config import TrickConflict
    from gan_ablate.validation import check_config

    with pytest.raises(TrickConflict) as refused:
        check_config(make_cfg("optim.update=simultaneous", override))
    message = str(refused.value)
    assert message.startswith(f"{key} has no meaning with optim.update=simultaneous") and "\n" not in message


def test_simultaneous_updates_refuse_loss_balancing_which_repeats_one_nets_update():
    from gan_ablate.config import TrickConflict

    with pytest.raises(TrickConflict) as refused:
        make_module("optim.update=simultaneous", "trick=loss_balancing")
    assert str(refused.value) == ("trick 'loss_balancing' conflicts with optim.update=simultaneous: "
                                  "they cannot run together")
    make_module("trick=loss_balancing")  # alternating: allowed


@pytest.mark.parametrize("override,message", [
    ("optim.update=both", "optim.update='both' is not allowed; choose one of: alternating, simultaneous"),
    ("optim.g.eps_placement=theano", "optim.g.eps_placement='theano' is not allowed; choose one of: torch, blocks"),
    ("optim.d.eps_placement=blocks optim.d.name=sgd", "optim.d.eps_placement=blocks is Adam's; optim.d.name=sgd"),
    ("model.bn_running=std", "model.bn_running='std' is not allowed; choose one of: variance, stdev"),
])
def test_update_and_optimiser_and_batch_norm_options_refuse_bad_values_naming_the_key(override, message):
    from gan_ablate.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        make_module(*override.split())
    assert str(refused.value) == message


def test_blocks_adam_decays_weights_as_torchs_adam_does_and_returns_the_closures_loss():
    """weight_decay is torch Adam's (L2 added to the gradient): a step with decay wd on gradient g is the step
    without decay on g + wd * p; step(closure) evaluates the closure and returns its loss, as torch's optimisers do."""
    from gan_ablate.module import BlocksAdam

    decayed, plain = (nn.Parameter(torch.tensor([1.0, -2.0])) for _ in range(2))
    opt_decayed = BlocksAdam([decayed], lr=0.1, betas=(0.8, 0.9), weight_decay=0.3, eps=0.5)
    opt_plain = BlocksAdam([plain], lr=0.1, betas=(0.8, 0.9), weight_decay=0.0, eps=0.5)
    for g in (torch.tensor([0.3, -2.0]), torch.tensor([-0.1, 1.0])):
        decayed.grad, plain.grad = g.clone(), g + 0.3 * plain.detach()
        opt_decayed.step()
        opt_plain.step()
        torch.testing.assert_close(decayed.detach(), plain.detach())
    assert not torch.allclose(decayed.detach(), torch.tensor([1.0, -2.0]))
    evaluated = []
    assert opt_plain.step(lambda: evaluated.append(1) or torch.tensor(3.5)) == torch.tensor(3.5) and evaluated == [1]


def test_blocks_adam_steps_with_eps_before_the_bias_correction_and_resumes_its_step_count():
    """blocks.algorithms.Adam: p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps); eps large here so
    that its place shows; a copy loaded from the state dict after two steps takes the same third step."""
    from gan_ablate.module import BlocksAdam

    lr, (b1, b2), eps = 0.1, (0.8, 0.9), 0.5
    grads = [torch.tensor([0.3, -2.0]), torch.tensor([-0.1, 1.0]), torch.tensor([0.4, 0.2])]
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = BlocksAdam([p], lr=lr, betas=(b1, b2), weight_decay=0.0, eps=eps)
    expected, m, v = p.detach().clone(), torch.zeros(2), torch.zeros(2)
    for t, g in enumerate(grads, start=1):
        if t == 3:
            resumed = nn.Parameter(p.detach().clone())
            opt_resumed = BlocksAdam([resumed], lr=lr, betas=(b1, b2), weight_decay=0.0, eps=eps)
            opt_resumed.load_state_dict(copy.deepcopy(opt.state_dict()))  # a checkpoint: no shared tensors
            resumed.grad = g
            opt_resumed.step()
        p.grad = g
        opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        expected = expected - lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t) * m / (v.sqrt() + eps)
        torch.testing.assert_close(p.detach(), expected)
    torch.testing.assert_close(resumed.detach(), expected)
