"""Mechanism tests of the layers and nets the structural tricks build, and of their boundaries."""
import pytest
import torch
from conftest import make_cfg, make_module

from gan_ablate.config import validate
from gan_ablate.data import build_datamodule
from gan_ablate.run import evaluation_latent


@pytest.mark.parametrize("seed", [0, 1])
def test_truncation_resamples_the_evaluation_latents_from_a_stream_of_its_own(seed):
    """The same evaluation z is truncated the same way every evaluation, whatever the training stream
    did in between, and leaves that stream alone; the resampled components are fresh draws, not copies
    of the evaluation z's own components (run.evaluation_latent draws z from the run's seed)."""
    settings = validate(make_cfg("trick=truncation", f"seed={seed}"))
    z = evaluation_latent(settings, build_datamodule(settings.data, settings.trainer.max_steps).prepare())
    module = make_module("trick=truncation", f"seed={seed}")
    training_stream = torch.get_rng_state()
    first = module.hooks.eval_latent(z)
    assert torch.equal(torch.get_rng_state(), training_stream)
    torch.rand(100)
    assert torch.equal(module.hooks.eval_latent(z), first)
    resampled = first[z.abs() > module.tricks[0].params.threshold]
    assert len(resampled) > 100 and not torch.isin(resampled, z).any()
