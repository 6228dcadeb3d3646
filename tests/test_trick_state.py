"""Every trick and loss that keeps state across iterations (replay buffers, running means, snapshots,
BEGAN's k_t) carries it through a checkpoint: stopped, saved and resumed, a run goes on exactly as
if it had not stopped, and resumed without that state it does not (so the state is what the test saw).

The stateful ones are found in the trick registry and the loss recipes (those overriding Trick.state_dict):
a new one is covered without being named here."""
import io

import pytest
import torch
from conftest import make_module
from helpers import attach_optimizers, run_steps

from gan_ablate.config import LossConfig
from gan_ablate.tricks import TRICKS, Trick
from gan_ablate.tricks.loss_recipes import LOSS_RECIPES


def _stateful(cls: type[Trick]) -> bool:
    return cls.state_dict is not Trick.state_dict


STATEFUL = sorted([f"trick={name}" for name, cls in TRICKS.items() if _stateful(cls)]
                  + [f"loss={name}" for name, recipe in LOSS_RECIPES.items()
                     if any(_stateful(type(unit)) for unit in recipe(LossConfig(name=name)))])

# settings under which each one's state acts within the few iterations trained here (the defaults wait
# hundreds of iterations, or move BEGAN's k_t too little to change a float32 weight)
ACTS_WITHIN_A_FEW_ITERATIONS = {
    # snapshots after every iteration, a swap after iteration 3 lasting to 6: the checkpoint (after 4)
    # holds the snapshots, the parked current D and when it comes back (not before iteration 6)
    "trick=checkpoint_swap": ["trick.checkpoint_swap.snapshot_every=1", "trick.checkpoint_swap.swap_every=3",
                              "trick.checkpoint_swap.duration=3", "trick.checkpoint_swap.keep=3"],
    "trick=historical_averaging": ["trick.historical_averaging.weight=1.0"],
    "trick=experience_replay": ["trick.experience_replay.buffer_size=64"],
    "trick=g_history": ["trick.g_history.buffer_size=64"],
    "loss=began": ["loss.lambda_k=0.5"],
    "trick=lecam": ["trick.lecam.start=1"],  # the term joins D's loss after iteration 1
}
BEFORE, AFTER = 4, 2  # iterations before the checkpoint, and after it


def _params(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _checkpoint(module, opts) -> dict:
    """What Lightning saves and run.py loads back (weights_only: tensors and plain containers only);
    the round trip through bytes also leaves no tensor shared between the saved and the live run."""
    checkpoint = {"state_dict": module.state_dict(), "optimizers": [o.opt.state_dict() for o in opts]}
    module.on_save_checkpoint(checkpoint)
    saved = io.BytesIO()
    torch.save(checkpoint, saved)
    saved.seek(0)
    return torch.load(saved, weights_only=True)


def _resume(overrides: list[str], checkpoint: dict):
    module = make_module(*overrides)
    module.load_state_dict(checkpoint["state_dict"])
    for opt, state in zip(attach_optimizers(module), checkpoint["optimizers"]):
        opt.opt.load_state_dict(state)
    module.on_load_checkpoint(checkpoint)
    return module


def test_every_setting_here_names_a_stateful_trick_or_loss():
    assert set(ACTS_WITHIN_A_FEW_ITERATIONS) <= set(STATEFUL)


@pytest.mark.parametrize("choice", STATEFUL)
def test_state_survives_a_checkpoint_and_the_resumed_run_goes_on_exactly(choice):
    overrides = [choice, *ACTS_WITHIN_A_FEW_ITERATIONS.get(choice, [])]
    original = make_module(*overrides)
    checkpoint = _checkpoint(original, run_steps(original, BEFORE))
    run_steps(original, AFTER)

    resumed = _resume(overrides, checkpoint)
    run_steps(resumed, AFTER)
    assert resumed.iteration == original.iteration == BEFORE + AFTER
    assert torch.equal(_params(resumed), _params(original))

    checkpoint["gan_ablate"]["tricks"] = {}  # the same checkpoint without the trick's (or loss's) state
    forgetful = _resume(overrides, checkpoint)
    run_steps(forgetful, AFTER)
    assert not torch.equal(_params(forgetful), _params(original))
