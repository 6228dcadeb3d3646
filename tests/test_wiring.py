"""Every trick reaches the training step: its hooks are called from GANModule.training_step, and a
trick that acts through the config (tricks/presets.py) changes what one step does.

These are the wiring half of each trick's proof (the formula half is in the trick's own tests): a
hook no longer called from the D or the G update, or a config key no longer read, fails here."""
from __future__ import annotations

import pytest
import torch
from conftest import TINY, make_cfg, make_module
from helpers import run_steps, track_update
from omegaconf import OmegaConf

from gan_ablate.config import validate
from gan_ablate.data import build_datamodule
from gan_ablate.module import GANModule
from gan_ablate.tricks import TRICKS
from gan_ablate.tricks.base import Trick

# hooks the training step calls (setup and prepare_data run when the module is built; the eval_*
# hooks belong to evaluation, tests/test_metrics.py and the tricks' own tests cover them)
STEP_HOOKS = ("d_fake_batch", "d_input", "d_targets", "d_objective", "d_penalty", "g_penalty", "g_objective",
              "before_d_step", "after_d_step", "repeat_d_step", "before_g_step", "after_g_step", "repeat_g_step",
              "after_iteration")
# schedules that act late at their defaults: brought forward so that three iterations show them
EARLY = {"checkpoint_swap": ["trick.checkpoint_swap.snapshot_every=1", "trick.checkpoint_swap.swap_every=2"],
         "instance_noise": []}
# tricks that refuse 2-D points (tricks/augment.py): their hooks are shown on images
IMAGE_ONLY = {"consistency": ["data=digits"], "diffaugment": ["data=digits"]}


def overridden(cls: type[Trick], hooks) -> list[str]:
    return [h for h in hooks if getattr(cls, h) is not getattr(Trick, h)]


def step_hooks(cls: type[Trick]) -> list[str]:
    """The step hooks this trick overrides."""
    return overridden(cls, STEP_HOOKS)


ALL_HOOKS = STEP_HOOKS + ("setup", "prepare_data", "eval_latent", "eval_samples")
HOOKED = sorted(n for n, cls in TRICKS.items() if step_hooks(cls))
# tricks that act only through the config they set (tricks/presets.py)
PRESETS = sorted(n for n, cls in TRICKS.items() if not overridden(cls, ALL_HOOKS))
# the tiny test settings, less the batch size (large_batch sets it, and a command-line value would win)
TINY_ANY_BATCH = [o for o in TINY if not o.startswith("data.batch_size")]


# the update each hook belongs to; the others (repeat_*, after_iteration) run between the updates
PHASES = {"d_fake_batch": {"d"}, "d_input": {"d", "g"}, "d_targets": {"d"}, "d_objective": {"d"}, "d_penalty": {"d"},
          "before_d_step": {"d"}, "after_d_step": {"d"}, "g_penalty": {"g"}, "g_objective": {"g"},
          "before_g_step": {"g"}, "after_g_step": {"g"}}


@pytest.mark.parametrize("name", HOOKED)
def test_every_hook_a_trick_overrides_is_called_from_its_updates_in_training_step(name):
    """Each hook the trick overrides is called, and from the update(s) it belongs to: d_input from D's
    update and from G's (real and fake enter D in both), a D hook from D's update only, and so on."""
    module = make_module(f"trick={name}", *EARLY.get(name, []), *IMAGE_ONLY.get(name, []))
    (trick,) = module.tricks
    phase = track_update(module)
    seen: dict[str, set] = {h: set() for h in step_hooks(type(trick))}
    for hook in seen:
        def counting(*args, _hook=hook, _original=getattr(trick, hook), **kwargs):
            seen[_hook].add(phase[0])
            return _original(*args, **kwargs)
        setattr(trick, hook, counting)
    run_steps(module, 3)
    assert {h for h, phases in seen.items() if not phases} == set(), f"{name}: hooks never called"
    wrong = {h: phases for h, phases in seen.items() if h in PHASES and phases != PHASES[h]}
    assert wrong == {}, f"{name}: hooks called from the wrong update(s) (expected {PHASES})"


def _yaml_keys(name: str) -> set[str]:
    """The keys outside `trick` that the trick's YAML sets (package _global_)."""
    from gan_ablate.cli import CONF_DIR

    node = OmegaConf.load(f"{CONF_DIR}/trick/{name}.yaml")

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"
    return {k for k in leaves(OmegaConf.to_container(node)) if not k.startswith("trick.")}


def _flat(cfg) -> dict:
    out = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
    walk(OmegaConf.to_container(cfg, resolve=True))
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_a_config_trick_changes_its_keys_and_what_a_step_does(name):
    """Its YAML's keys (and no others) differ from the baseline's config; the same first step from the
    same seed then leaves different weights (or, for ema, only the generator the report compares)."""
    base = make_cfg(*TINY_ANY_BATCH, tiny=False)
    smaller = ["trick.large_batch.batch_size=96"] if name == "large_batch" else []  # still larger than 32
    with_trick = make_cfg(*TINY_ANY_BATCH, f"trick={name}", *smaller, tiny=False)
    base_flat, trick_flat = _flat(base), _flat(with_trick)
    changed = {k for k in trick_flat if not k.startswith("trick.") and trick_flat[k] != base_flat.get(k)}
    assert changed and changed <= _yaml_keys(name), (name, changed)
    if name == "ema":  # same decay as the always-kept EMA: what changes is which G is judged first
        assert changed == {"metrics.primary"}
        return
    a, b = _module(base), _module(with_trick)
    run_steps(a, 1)
    run_steps(b, 1)
    pa, pb = list(a.G.parameters()), list(b.G.parameters())
    same = len(pa) == len(pb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(pa, pb))
    assert not same, f"{name}: one step with the trick left G exactly as the baseline's step did"


def _module(cfg) -> GANModule:
    settings = validate(cfg)
    dm = build_datamodule(settings.data, settings.trainer.max_steps).prepare()
    module = GANModule(settings, dm.sample_shape, dm.n_classes)
    module.attach_data(dm.data, dm.labels)
    return module


def test_the_lists_cover_every_trick():
    """The tricks in neither list rebuild, wrap or re-initialise nets (setup) or act at evaluation
    (eval_latent): each has its own test through training_step or evaluation."""
    rest = set(TRICKS) - set(HOOKED) - set(PRESETS)
    assert rest == {"conditional", "minibatch_discrimination", "multi_generator", "spectral_norm", "truncation"}
    assert all(overridden(TRICKS[n], ("setup", "eval_latent")) for n in rest)
