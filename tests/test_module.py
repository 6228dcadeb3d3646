"""The G/D step: update counts, optimisers, EMA, gradient norms, addressable randomness."""

import pytest
import torch
from conftest import make_module
from helpers import attach_optimizers, run_steps

from gan_ablate.module import grad_norms, step_seed


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


def test_ema_equals_the_closed_form_average():
    decay, start, every = 0.9, 2, 2
    module = make_module(f"ema.decay={decay}", f"ema.start={start}", f"ema.every={every}")
    attach_optimizers(module)
    expected = None
    for it in range(9):
        run_steps(module, 1)
        g = [p.detach().clone() for p in module.G.parameters()]
        if it >= start and (it - start) % every == 0:
            # the first update copies G; later ones are ema = decay * ema + (1 - decay) * G
            expected = g if expected is None else [decay * e + (1 - decay) * x for e, x in zip(expected, g)]
    for e, p in zip(expected, module.ema_generator().parameters()):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in module.G_ema.parameters())


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
