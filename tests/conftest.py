from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_ablate.cli import compose_config
from gan_ablate.config import validate
from gan_ablate.module import GANModule

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
# W&B saves the address of the service a process started in WANDB_SERVICE, and child processes attach to
# it: train.py started by a test after an in-process W&B run would share this process's service, which
# holds on to the run of a child killed by a test ("run ID ... is in use" when it is resumed). Each test
# starts without it, so every train.py it starts has a service of its own, as it has outside the tests.
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)

# tiny nets and runs: the suite proves mechanisms, not sample quality
TINY = ["logger=csv", "trainer.enable_progress_bar=false", "model.g_hidden=16", "model.d_hidden=16",
        "data.n_points=2000", "data.batch_size=32", "metrics.n_samples=200"]


def make_cfg(*overrides: str, tiny: bool = True):
    return compose_config((TINY if tiny else []) + list(overrides))


def make_module(*overrides: str, data=None) -> GANModule:
    """A GANModule ready to call training_step outside a Trainer (optimisers attached by hand)."""
    from gan_ablate.data import build_datamodule

    settings = validate(make_cfg(*overrides))
    dm = build_datamodule(settings.data, settings.trainer.max_steps, settings.seed).prepare()
    module = GANModule(settings, dm.sample_shape, dm.n_classes)
    module.attach_data(dm.data if data is None else data, dm.labels if data is None else None)
    return module


def run_train_py(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "0"})


@pytest.fixture
def cfg_factory():
    return make_cfg


def image_folders(root: Path) -> tuple[Path, Path]:
    """A folder of four 8x8 grey images, and one whose only image is not an image (refused before training)."""
    import numpy as np
    from PIL import Image

    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(good / f"{i}.png")
    (bad / "broken.png").write_bytes(b"not a png at all")
    return good, bad


def not_inception_weights(root: Path) -> Path:
    """A file that passes for metrics.inception_weights (it exists) but is no checkpoint: a job given it with
    metrics.extractor=inception trains, then raises (UnpicklingError) in its final evaluation. The suite's
    way to make one job of a sweep fail after it started."""
    path = root / "not_weights.pth"
    path.write_bytes(b"not a checkpoint")
    return path


@pytest.fixture(autouse=True)
def no_inherited_wandb_service(monkeypatch):
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture(autouse=True)
def sigterm_left_to_the_run():
    """A run hands a SIGTERM it caught back to the handler its process had before (submitit's in a SLURM job). The
    test process's own handler is not one a run should reach: mutmut's test workers exit 0 on SIGTERM, which turned
    every mutant whose tests included a SIGTERM test into a survivor. Each test starts with the default handler."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def pytest_collection_modifyitems(config, items):
    """Under mutmut, run a mutant's tests fastest first. mutmut stops at the first failing test (-x) and hands the
    tests over in set order, so a mutant the first cheap test kills could wait behind a minute of training tests;
    sorted by the durations mutmut measured (mutants/mutmut-stats.json), a killed module.py mutant costs seconds.
    Verdicts do not change: a mutant survives only when every one of its tests passes, in any order."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    stats = Path("mutmut-stats.json")
    if not mutant or mutant in ("fail", "stats", "list_all_tests") or not stats.is_file():
        return
    import json
    durations = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))
