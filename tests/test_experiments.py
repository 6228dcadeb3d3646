"""conf/experiment/: published protocols, exactly as their papers state them, and their short versions."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, TINY, make_cfg, run_train_py
from gan_ablate.config import validate

EXPERIMENTS = sorted(p.stem for p in (ROOT / "gan_ablate" / "conf" / "experiment").glob("*.yaml"))


def flat(cfg) -> dict:
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def test_every_preset_names_its_source_and_composes():
    assert {"pacgan_ring", "pacgan_grid", "stacked_mnist_pacgan"} <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        text = (ROOT / "gan_ablate" / "conf" / "experiment" / f"{name}.yaml").read_text()
        header = text.split("defaults:")[0]
        if name.endswith("_short"):  # points to its full protocol, which names the source
            assert f"{name.removesuffix('_short')}.yaml" in header, name
        else:
            sources = ("Lin, Khetan, Fanti, Oh", "Lin et al. 2018", "Kurach, Lucic")
            assert any(source in header for source in sources), name
        validate(make_cfg(f"experiment={name}", tiny=False))


@pytest.mark.parametrize("name,data", [("pacgan_ring", "ring8"), ("pacgan_grid", "grid25")])
def test_pacgan_2d_presets_are_the_papers_protocol(name, data):
    s = validate(make_cfg(f"experiment={name}", tiny=False))
    m = s.model
    assert (s.data.name, s.data.n_points, s.data.batch_size) == (data, 100_000, 100)
    assert (m.name, m.z_dim, m.activation) == ("gan2014", 2, "relu")
    assert (m.g_layers, m.g_hidden, m.norm_g) == (4, 400, "batch_norm")
    assert (m.d_layers, m.d_hidden, m.maxout_pieces, m.d_dropout) == (3, 200, 5, 0.0)
    for opt in (s.optim.g, s.optim.d):
        assert (opt.name, opt.lr, tuple(opt.betas)) == ("adam", 1e-4, (0.8, 0.999))
    assert s.trainer.max_steps == 400 * 100_000 // 100  # 400 epochs
    assert (s.metrics.n_samples, s.metrics.hq_sigmas) == (2500, 3.0)


def test_stacked_mnist_preset_is_the_papers_protocol():
    s = validate(make_cfg("experiment=stacked_mnist_pacgan", tiny=False))
    assert (s.data.name, s.model.name, s.model.z_dim, s.data.batch_size) == ("stacked_mnist", "dcgan", 100, 64)
    assert (s.optim.d.lr, tuple(s.optim.d.betas)) == (2e-4, (0.5, 0.999))
    assert s.metrics.stacked_samples == 26_000


def test_sndcgan_preset_is_kurach_et_al_cifar10_protocol():
    s = validate(make_cfg("experiment=sndcgan_cifar10", tiny=False))
    assert (s.data.name, s.data.batch_size, s.model.name, s.model.z_dim, s.loss.name) == (
        "cifar10", 64, "sndcgan", 128, "non_saturating")
    for opt in (s.optim.g, s.optim.d):
        assert (opt.name, opt.lr, tuple(opt.betas)) == ("adam", 2e-4, (0.5, 0.999))
    assert (s.optim.n_critic, s.trainer.max_steps, s.model.norm_d, s.metrics.extractor) == (1, 200_000, "none", "inception")
    assert s.trick == {}  # spectral norm is the ablation: trick=[spectral_norm]


def test_sndcgan_nets_are_the_papers_layers():
    """compare_gan's sndcgan.py: D's seven convs and their channels, G's projection a layer of its own."""
    import torch
    from torch import nn

    from gan_ablate.nets import build_nets

    s = validate(make_cfg("experiment=sndcgan_cifar10", tiny=False))
    G, D = build_nets(s.model, (3, 32, 32))
    convs = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(64, 3, 1), (128, 4, 2), (128, 3, 1), (256, 4, 2), (256, 3, 1), (512, 4, 2), (512, 3, 1)]
    assert [m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)] == [0.1] * 7
    ups = [(m.in_channels, m.out_channels) for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups == [(512, 256), (256, 128), (128, 64)]
    assert G(torch.randn(2, 128)).shape == (2, 3, 32, 32) and D(torch.randn(2, 3, 32, 32)).shape == (2, 1)
    miyato = validate(make_cfg("experiment=sndcgan_cifar10", "model.sndcgan_d_channels=miyato", tiny=False))
    _, D = build_nets(miyato.model, (3, 32, 32))
    assert [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)] == [64, 64, 128, 128, 256, 256, 512]


def test_sndcgan_generator_projects_through_batch_norm_and_relu():
    """g_fc1 -> g_bn1 (over the 4*4*512 features) -> relu -> reshape, before the first transposed conv:
    the conv's input is recomputed here from the projection's own weights."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from gan_ablate.nets import build_nets

    s = validate(make_cfg("experiment=sndcgan_cifar10", tiny=False))
    G, _ = build_nets(s.model, (3, 32, 32))
    seen = {}
    first = next(m for m in G.modules() if isinstance(m, nn.ConvTranspose2d))
    first.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0]))  # returns None: output kept
    z = torch.randn(16, 128)
    G.train()(z)
    linear = G.project
    expected = torch.relu(F.batch_norm(F.linear(z, linear.weight, linear.bias), None, None, G.project_norm.weight,
                                       G.project_norm.bias, training=True, eps=G.project_norm.eps))
    torch.testing.assert_close(seen["x"], expected.view(16, 512, 4, 4))


def test_sndcgan_refuses_dcgan_only_options():
    from gan_ablate.config import ConfigError
    from gan_ablate.nets import build_nets

    s = validate(make_cfg("experiment=sndcgan_cifar10", "model.skip_z=true", tiny=False))
    with pytest.raises(ConfigError, match="model.skip_z"):
        build_nets(s.model, (3, 32, 32))


@pytest.mark.parametrize("name", ["pacgan_ring", "pacgan_grid", "stacked_mnist_pacgan"])
def test_short_versions_change_only_the_budget(name):
    full, short = flat(make_cfg(f"experiment={name}", tiny=False)), flat(make_cfg(f"experiment={name}_short", tiny=False))
    changed = {k for k in full if full[k] != short[k]}
    allowed = {"trainer.max_steps", "metrics.every", "checkpoint.every", "model.g_channels", "model.d_channels"}
    assert changed and changed <= allowed, changed - allowed


def test_families_and_tricks_still_apply_on_top_of_a_preset():
    s = validate(make_cfg("experiment=pacgan_ring", "norm_g=layer_norm", "trick=[ttur]", tiny=False))
    assert s.model.norm_g == "layer_norm"
    assert s.optim.d.lr == s.trick["ttur"]["lr_d"] != 1e-4


@pytest.mark.slow
def test_short_grid_preset_runs_and_reports_mode_metrics(tmp_path):
    result = run_train_py("experiment=pacgan_grid_short", "trainer.max_steps=40", "metrics.every=20", *TINY[:2],
                          f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["data"] == "grid25" and record["config"]["model"]["g_hidden"] == 400
    # reverse_kl: PacGAN's (metrics.reverse_kl=high_quality), the nearest-mode one beside it
    assert set(record["metrics"]["raw"]) == {"modes", "hq", "reverse_kl", "reverse_kl_nearest_mode", "precision",
                                             "recall", "density", "coverage"}


@pytest.mark.slow
def test_sndcgan_trains_with_spectral_norm_on_32px_images(tmp_path):
    """The preset's nets in a real (tiny) run; CIFAR-10 itself cannot be fetched here, a folder of 32x32
    images stands in, and spectral norm wraps every D conv."""
    import numpy as np
    from PIL import Image

    for i in range(8):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    result = run_train_py("model=sndcgan", "data=image_folder", f"data.root={tmp_path}", "data.image_size=32",
                          "data.channels=3", "data.batch_size=4", "model.g_width=0.125", "model.d_width=0.125",
                          "trick=[spectral_norm]", "metrics.extractor=none", "trainer.max_steps=3",
                          "metrics.every=3", *TINY[:2], f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "ok" and record["iterations"] == 3


def test_hydras_plus_spelling_of_a_preset_works_too():
    result = run_train_py("+experiment=pacgan_grid_short", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "max_steps: 500" in result.stdout and "name: grid25" in result.stdout
