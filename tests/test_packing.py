"""PacGAN's packing (trick=pac, gan_ablate/tricks/packing.py): D is rebuilt for m samples per input, every input
of D in both updates is a pack of m samples of one kind, in the authors' slot order, and each update draws m
times data.batch_size samples of each kind; conflicts and a bad m are refused before training."""
from __future__ import annotations

import pytest
import torch
from conftest import make_cfg, make_module, run_train_py
from helpers import run_steps, track_update

from gan_ablate.config import ConfigError, TrickConflict
from gan_ablate.tricks.packing import pack
from gan_ablate.validation import check_config

IMAGES = ("data=digits", "model.g_channels=8", "model.d_channels=8")


def authors_packs(x: torch.Tensor, m: int) -> torch.Tensor:
    """fjxmlzn/PacGAN: the m generator batches (here the m consecutive chunks of x) concatenated along the
    feature axis (bricks.py, axis=1) or the channel axis (VEEGAN_experiment/model.py, tf.concat(..., 3))."""
    return torch.cat(x.chunk(m), dim=1)


@pytest.mark.parametrize("shape", [(2,), (3, 4, 4)], ids=["points", "images"])
@pytest.mark.parametrize("m", [2, 3])
def test_pack_i_joins_sample_i_of_each_of_the_m_chunks_in_chunk_order(shape, m):
    batch = 5
    x = torch.randn(m * batch, *shape)
    packs = pack(x, m)
    assert packs.shape == (batch, m * shape[0], *shape[1:])
    torch.testing.assert_close(packs, authors_packs(x, m), rtol=0, atol=0)
    width = shape[0]
    for i in range(batch):  # slot j of pack i is sample j * batch + i: m distinct samples
        for j in range(m):
            assert torch.equal(packs[i, j * width:(j + 1) * width], x[j * batch + i])


@pytest.mark.parametrize("data", [(), IMAGES], ids=["ring8", "digits"])
def test_d_is_rebuilt_for_inputs_m_times_as_wide_and_judges_one_pack_per_output(data):
    """Only D's first layer changes: it reads m * features (points) or m * channels (images)."""
    m = 3
    plain, packed = make_module(*data), make_module(*data, "trick=pac", f"trick.pac.m={m}")
    plain_shapes, packed_shapes = [p.shape for p in plain.D.parameters()], [p.shape for p in packed.D.parameters()]
    out, width, *kernel = plain_shapes[0]
    assert width == packed.sample_shape[0]
    assert packed_shapes[0] == (out, m * width, *kernel)
    assert packed_shapes[1:] == plain_shapes[1:]
    assert packed.D(pack(torch.randn(m * 4, *packed.sample_shape), m)).shape == (4, 1)


@pytest.mark.parametrize("data", [(), IMAGES], ids=["ring8", "digits"])
def test_the_packed_d_is_initialised_from_the_runs_seed_not_the_global_random_stream(data):
    """The packed D is built as build_nets builds any run's D: from `seed` (model.init applied to a generator seeded
    with it), so a run's D does not depend on what drew from the global stream before, and the same seed gives the
    same D."""
    from gan_ablate.nets import build_nets

    m = 2
    modules = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        modules.append(make_module(*data, "trick=pac", f"trick.pac.m={m}", "seed=5"))
    width, *rest = modules[0].sample_shape
    _, expected = build_nets(modules[0].cfg.model, (m * width, *rest), seed=5)
    for module in modules:
        for got, want in zip(module.D.state_dict().values(), expected.state_dict().values()):
            torch.testing.assert_close(got, want)


def spied_iteration(module):
    """One training_step; what G drew from (latents) and made, the real batches drawn, and every input of D,
    each tagged with the update ("d" / "g") it belongs to."""
    seen = {"z": [], "fake": [], "real": [], "d_inputs": []}
    phase = track_update(module)

    class RecordedDraws:
        def __init__(self, draw):
            self.draw = draw

        def __call__(self):
            x = self.draw()
            seen["real"].append((phase[0], x.clone()))
            return x

        @property
        def last_index(self):
            return self.draw.last_index
    module.draw_real = RecordedDraws(module.draw_real)
    def g_seen(net, args, out):
        seen["z"].append((phase[0], args[0].clone()))
        seen["fake"].append((phase[0], out.detach().clone()))

    def d_seen(net, args):
        seen["d_inputs"].append((phase[0], args[0].detach().clone()))
    module.G.register_forward_hook(g_seen)
    module.D.register_forward_pre_hook(d_seen)
    run_steps(module, 1)
    return seen


@pytest.mark.parametrize("data", [(), IMAGES], ids=["ring8", "digits"])
def test_training_step_feeds_d_packs_of_m_real_or_m_fake_samples_in_both_updates(data):
    """D's update: m * B real samples and m * B fakes drawn, D fed their packs, real and fake apart
    (model.d_batches=separate) or the real packs then the fake packs (mixed): no pack holds both kinds.
    G's update: G draws m * B latents and D judges the packs of its m * B samples."""
    m, batch = 3, 8
    for d_batches in ("separate", "mixed"):
        module = make_module(*data, "trick=pac", f"trick.pac.m={m}", f"data.batch_size={batch}",
                             f"model.d_batches={d_batches}")
        seen = spied_iteration(module)
        (real_phase, real), = seen["real"]
        assert real_phase == "d" and real.shape == (m * batch, *module.sample_shape)
        (_, z_d), (_, z_g) = seen["z"]
        assert [p for p, _ in seen["z"]] == ["d", "g"] and len(z_d) == len(z_g) == m * batch
        (_, fake_d), (_, fake_g) = seen["fake"]
        expected_d = [authors_packs(real, m), authors_packs(fake_d, m)]
        if d_batches == "mixed":
            expected_d = [torch.cat(expected_d)]
        d_inputs = [x for p, x in seen["d_inputs"] if p == "d"]
        g_inputs = [x for p, x in seen["d_inputs"] if p == "g"]
        assert len(d_inputs) == len(expected_d) and len(g_inputs) == 1
        for got, expected in zip(d_inputs, expected_d):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(g_inputs[0], authors_packs(fake_g, m), rtol=0, atol=0)


def test_gs_gradient_reaches_every_sample_of_every_pack_in_gs_update():
    m = 2
    module = make_module("trick=pac", f"trick.pac.m={m}", "data.batch_size=6")
    fakes = []

    def keep_fake(net, args, out):
        if torch.is_grad_enabled():  # G's update (D's draws its fakes under no_grad)
            out.retain_grad()
            fakes.append(out)
    module.G.register_forward_hook(keep_fake)
    run_steps(module, 1)
    (fake,) = fakes
    per_sample = fake.grad.flatten(1).norm(dim=1)
    assert len(per_sample) == m * 6 and bool((per_sample > 0).all())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.G.parameters())


def test_pac_runs_with_minibatch_discrimination_and_spectral_norm_on_the_packed_d():
    """pac rebuilds D first (setup_order): the tricks that change D's head or weights act on the packed D."""
    module = make_module("trick=[minibatch_discrimination,spectral_norm,pac]", "trick.pac.m=2")
    assert module.D.head[0].theta.shape[0] == module.D.features_dim
    first = module.D.features[0]
    assert first.in_features == 4 and hasattr(first, "parametrizations")
    opts = run_steps(module, 2)
    assert [o.steps for o in opts] == [2, 2]


@pytest.mark.parametrize("overrides,message", [
    (["trick.pac.m=1"], r"^trick\.pac\.m=1 is out of range; it must lie in \[2, inf\]$"),
    (["trick=[pac,feature_matching]"], "^trick 'pac' conflicts with trick 'feature_matching': they cannot run together$"),
    (["trick=[acgan,pac]"], "^trick 'pac' conflicts with trick 'acgan': they cannot run together$"),
    (["loss=wgan_gp"], "^trick 'pac' conflicts with loss=wgan_gp: they cannot run together$"),
    (["norm_d=virtual_batch_norm"], "^trick 'pac' conflicts with norm_d=virtual_batch_norm: they cannot run together$"),
])
def test_a_bad_m_and_a_per_sample_trick_are_refused_before_training_on_one_line(overrides, message):
    tricks = [] if any(o.startswith("trick=") for o in overrides) else ["trick=pac"]
    with pytest.raises((ConfigError, TrickConflict), match=message):
        check_config(make_cfg(*tricks, *overrides))


@pytest.mark.slow
def test_pacgan_ring_short_with_pac_4_runs_through_train_py(tmp_path):
    result = run_train_py("experiment=pacgan_ring_short", "trick=[pac]", "trick.pac.m=4", "trainer.max_steps=30",
                          "metrics.every=30", "metrics.n_samples=500", "checkpoint.every=30", "logger=csv",
                          f"hydra.run.dir={tmp_path}", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "result.json").is_file()
