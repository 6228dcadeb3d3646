"""experiment=pacgan_ring's training step against the authors' code, re-implemented here in plain PyTorch.

The reference follows fjxmlzn/PacGAN synthetic_data_experiments/2DRing_GAN&PacGAN/pacgan_task.py (the nets,
the batch-norm population updates), pacgan/bricks.py (the losses, D on concatenate([x, x_tilde])), ALI's
ali/algorithms.py (ali_algorithm: both gradients from one graph, one GradientDescent applying both) and
blocks' BatchNormalization (blocks/bricks/bn.py) and Adam (blocks/algorithms/__init__.py). It shares
nothing with gan_ablate but the initial weights (copied) and the draws (real batches and z, from one list).
"""
import pytest
import torch
import torch.nn.functional as F
from conftest import make_cfg, make_module
from helpers import attach_optimizers
from torch import nn

from gan_ablate.config import TrickConflict, validate
from gan_ablate.nets import build_nets
from gan_ablate.nets.layers import StdevBatchNorm1d, make_norm
from gan_ablate.validation import check_config

STEPS = 5
SMALL = ("model.g_hidden=24", "model.d_hidden=12", "data.batch_size=50")


class BlocksBatchNorm(nn.Module):
    """blocks' BatchNormalization in training mode, with pacgan_task.py's population update
    (population <- 0.95 * population + 0.05 * batch statistic), for the mean and the stdev."""

    def __init__(self, n: int):
        super().__init__()
        self.scale, self.shift = nn.Parameter(torch.ones(n)), nn.Parameter(torch.zeros(n))
        self.population_mean, self.population_stdev = torch.zeros(n), torch.ones(n)

    def forward(self, h):
        if not self.training:  # inference: the population statistics, the stdev as it is
            return (h - self.population_mean) / self.population_stdev * self.scale + self.shift
        mean = h.mean(0)
        stdev = torch.sqrt(((h - mean) ** 2).mean(0) + 1e-4)  # blocks' epsilon, inside the square root
        with torch.no_grad():
            self.population_mean = 0.95 * self.population_mean + 0.05 * mean
            self.population_stdev = 0.95 * self.population_stdev + 0.05 * stdev
        return (h - mean) / stdev * self.scale + self.shift


class AuthorsG(nn.Module):
    """MLP(dims=[2, h, h, h, h, 2], use_bias=False; the output layer's bias turned back on), each hidden
    activation Sequence([BatchNormalization, Rectifier])."""

    def __init__(self, h: int):
        super().__init__()
        self.hidden = nn.ModuleList()
        width = 2
        for _ in range(4):
            self.hidden.append(nn.ModuleList([nn.Linear(width, h, bias=False), BlocksBatchNorm(h)]))
            width = h
        self.out = nn.Linear(h, 2)

    def forward(self, z):
        for linear, bn in self.hidden:
            z = torch.relu(bn(linear(z)))
        return self.out(z)


class AuthorsD(nn.Module):
    """Sequence of three LinearMaxout(output_dim=h, num_pieces=5), then Linear(h, 1). blocks' Maxout
    reshapes the pieces to (..., output_dim, num_pieces) and takes the max over the last axis."""

    def __init__(self, h: int, pieces: int = 5):
        super().__init__()
        self.h, self.pieces = h, pieces
        self.maxouts = nn.ModuleList([nn.Linear(2 if i == 0 else h, h * pieces) for i in range(3)])
        self.out = nn.Linear(h, 1)

    def forward(self, x):
        for linear in self.maxouts:
            x = linear(x).reshape(x.shape[0], self.h, self.pieces).max(dim=2).values
        return self.out(x)


class BlocksAdam:
    """blocks.algorithms.Adam(learning_rate=1e-4, beta1=0.8) (decay_factor 1): the step
    lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)."""

    def __init__(self, params, lr=1e-4, beta1=0.8, beta2=0.999, eps=1e-8):
        self.params, self.lr, self.b1, self.b2, self.eps, self.t = list(params), lr, beta1, beta2, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads):
        self.t += 1
        rate = self.lr * (1 - self.b2 ** self.t) ** 0.5 / (1 - self.b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(self.b1).add_((1 - self.b1) * g)
            v.mul_(self.b2).add_((1 - self.b2) * g * g)
            p.sub_(rate * m / (v.sqrt() + self.eps))


def ali_step(G, D, opt_g, opt_d, x, z) -> torch.Tensor:
    """One iteration of ali_algorithm on PacGAN.compute_losses (num_packing=1): returns D's loss."""
    x_tilde = G(z)
    preds = D(torch.cat([x, x_tilde]))
    data_preds, sample_preds = preds[: len(x)], preds[len(x):]
    d_loss = (F.softplus(-data_preds) + F.softplus(sample_preds)).mean()
    g_loss = (F.softplus(data_preds) + F.softplus(-sample_preds)).mean()
    d_grads = torch.autograd.grad(d_loss, list(D.parameters()), retain_graph=True)
    g_grads = torch.autograd.grad(g_loss, list(G.parameters()))
    opt_d.step(d_grads)
    opt_g.step(g_grads)
    return d_loss.detach()


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """The framework's initial weights into the reference, parameter by parameter in order (the
    architectures must agree: a parameter more or less, or of another shape, stops here)."""
    src, dst = list(source.parameters()), list(target.parameters())
    assert [p.shape for p in src] == [p.shape for p in dst]
    with torch.no_grad():
        for s, d in zip(src, dst):
            d.copy_(s)


@pytest.fixture(autouse=True)
def float64():
    """Both sides in float64: under N(0, 0.02) weights G's first gradients are of Adam's eps's size
    (1e-8), where float32 rounding alone moves a step by a good part of the learning rate."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def run_framework_and_reference(*overrides: str):
    """STEPS iterations of GANModule.training_step on experiment=pacgan_ring and of the reference, from the
    same weights and the same real batches and z; returns both nets' final (G, D) and per-step D losses."""
    module = make_module("experiment=pacgan_ring", *SMALL, *overrides)
    batch = module.cfg.data.batch_size
    h_g, h_d = module.cfg.model.g_hidden, module.cfg.model.d_hidden
    G, D = AuthorsG(h_g), AuthorsD(h_d)
    copy_weights(module.G, G)
    copy_weights(module.D, D)
    opt_g, opt_d = BlocksAdam(G.parameters()), BlocksAdam(D.parameters())

    draw = torch.Generator().manual_seed(1)
    reals = [module.real_data[torch.randint(len(module.real_data), (batch,), generator=draw)].double()
             for _ in range(STEPS)]
    zs = [torch.randn(batch, 2, generator=draw) for _ in range(STEPS)]
    # alternating updates draw a z for each net: a spare one per iteration
    queue_x, queue_z = list(reals), zs + [torch.randn(batch, 2, generator=draw) for _ in range(STEPS)]
    module.draw_real = lambda: queue_x.pop(0)
    module.draw_real.last_index = torch.zeros(batch, dtype=torch.long)  # labels are not read here
    module.sample_z = lambda n: queue_z.pop(0)
    losses = {"framework": [], "reference": []}
    attach_optimizers(module)
    for x, z in zip(reals, zs):
        losses["framework"].append(module.training_step(None, module.iteration)["measured"]["loss/d"])
        losses["reference"].append(ali_step(G, D, opt_g, opt_d, x, z))
    return module, G, D, losses


def assert_same_training(module, G, D, losses, atol=1e-10):
    torch.testing.assert_close(torch.stack(losses["framework"]), torch.stack(losses["reference"]),
                               atol=atol, rtol=0)
    for mine, theirs in ((module.G, G), (module.D, D)):
        for (name, p), q in zip(mine.named_parameters(), theirs.parameters()):
            torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=f"{name} differs from the reference")
    norms = [m for m in module.G.modules() if isinstance(m, nn.BatchNorm1d)]
    references = [bn for _, bn in G.hidden]
    assert len(norms) == len(references) == 4
    for mine, theirs in zip(norms, references):
        torch.testing.assert_close(mine.running_mean, theirs.population_mean, atol=atol, rtol=0)
        # what eval mode divides by: sqrt(running_var + eps)
        torch.testing.assert_close((mine.running_var + mine.eps).sqrt(), theirs.population_stdev, atol=atol, rtol=0)


def test_pacgan_ring_training_step_matches_the_authors_code_reimplemented():
    module, G, D, losses = run_framework_and_reference()
    assert len(losses["framework"]) == STEPS
    assert_same_training(module, G, D, losses)
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # G as evaluation samples it: eval mode, the running statistics
        torch.testing.assert_close(module.G.eval()(z), G.eval()(z), atol=1e-10, rtol=0)
    # the weights moved: agreement is not two copies of the initial nets
    initial, _ = build_nets(module.cfg.model, (2,), seed=module.cfg.seed)
    moved = max((p - q).abs().max().item() for p, q in zip(module.G.parameters(), initial.parameters()))
    assert moved > 1e-4


@pytest.mark.parametrize("override", ["optim.update=alternating", "model.bn_eps=1e-5", "model.bn_momentum=0.1",
                                      "model.bn_running=variance", "optim.g.eps_placement=torch",
                                      "optim.d.eps_placement=torch"])
def test_the_reference_tells_a_preset_without_the_authors_setting_apart(override):
    """The comparison above can fail: alternating updates, torch's batch-norm eps, momentum and running
    variance, torch's Adam (eps after the bias correction) for either net. (The authors' D scores real and
    fake in one batch, the preset's apart, d_batches=separate: with no batch-dependent layer in D, the
    logits are the same.)"""
    with pytest.raises(AssertionError):
        assert_same_training(*run_framework_and_reference(override))


def test_a_g_with_biases_before_its_batch_norms_is_not_the_authors_architecture():
    with pytest.raises(AssertionError):
        run_framework_and_reference("model.bias_before_norm=true")


def pacgan_nets(*overrides: str):
    return make_module("experiment=pacgan_ring", "model.g_hidden=400", "model.d_hidden=200", *overrides)


def test_pacgan_init_draws_weights_from_n_0_002_with_zero_biases_and_unit_norm_gains():
    """blocks' IsotropicGaussian(0.02) and Constant(0) on every Linear/LinearMaxout; BatchNormalization
    is not Initializable, keeps scale 1 and shift 0."""
    module = pacgan_nets()
    weights = torch.cat([m.weight.flatten() for net in (module.G, module.D) for m in net.modules()
                         if isinstance(m, nn.Linear)])
    assert weights.numel() > 500_000
    assert abs(weights.mean().item()) < 2e-4 and weights.std().item() == pytest.approx(0.02, rel=0.01)
    biases = [m.bias for net in (module.G, module.D) for m in net.modules()
              if isinstance(m, nn.Linear) and m.bias is not None]
    assert len(biases) == 1 + 3 + 1 and all((b == 0).all() for b in biases)  # G's output; D's maxouts and head
    norms = [m for m in module.G.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == 4
    assert all((m.weight == 1).all() and (m.bias == 0).all() for m in norms)
    assert all(m.eps == 1e-4 and m.momentum == 0.05 for m in norms)


def test_the_default_init_is_not_the_authors():
    module = pacgan_nets("init=default")
    first = module.G.blocks[0][0].weight  # Linear(2, 400): torch's U(-1/sqrt(2), 1/sqrt(2)), std 0.41
    assert first.std().item() > 0.2
    assert any((m.bias != 0).any() for m in module.D.modules() if isinstance(m, nn.Linear))



def test_stdev_batch_norm_leaves_standing_statistics_to_torchs_cumulative_average():
    """ema.bn_stats=standing sets momentum None: the cumulative mean of the batches' statistics, as torch's."""
    mine, torchs = StdevBatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)
    mine.reset_running_stats()
    for k in range(3):
        x = torch.randn(20, 3, generator=torch.Generator().manual_seed(k)) * (k + 1) + k
        torch.testing.assert_close(mine(x), torchs(x))
    torch.testing.assert_close(mine.running_mean, torchs.running_mean)
    torch.testing.assert_close(mine.running_var, torchs.running_var)


@pytest.mark.parametrize("keep", [True, False])
def test_bias_before_norm_decides_the_bias_of_the_linear_layers_a_norm_follows_in_g_and_d(keep):
    """model=mlp with batch norm in both nets: G's hidden layers and D's all but the first are followed by
    a norm; with bias_before_norm=false exactly those have no bias."""
    G, D = build_nets(make_module("norm_g=batch_norm", "norm_d=batch_norm", f"model.bias_before_norm={keep}").cfg.model,
                      (2,))
    for net, normed in ((G, [True, True, True, False]), (D, [False, True, True, False])):
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        assert [m.bias is not None for m in linears] == [keep or not n for n in normed]


def test_without_a_norm_after_it_a_linear_layer_keeps_its_bias_whatever_bias_before_norm_says():
    G, D = build_nets(make_module("model.bias_before_norm=false").cfg.model, (2,))
    assert all(m.bias is not None for net in (G, D) for m in net.modules() if isinstance(m, nn.Linear))


def test_stdev_batch_norm_of_feature_maps_keeps_a_running_stdev_per_channel():
    norm = make_norm("batch_norm", 3, conv=True, momentum=0.3, eps=1e-3, running="stdev")
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    out = norm(x + 1.0)
    mean, stdev = x.mean(dim=(0, 2, 3)) + 1.0, (x.var(dim=(0, 2, 3), unbiased=False) + 1e-3).sqrt()
    torch.testing.assert_close(out, (x + 1.0 - mean.view(1, 3, 1, 1)) / stdev.view(1, 3, 1, 1))
    torch.testing.assert_close(norm.running_mean, 0.3 * mean)
    torch.testing.assert_close((norm.running_var + 1e-3).sqrt(), 0.7 * 1.0 + 0.3 * stdev)


def test_the_grid_preset_trains_as_the_ring_preset():
    """The two task files are the same code (2DGrid_GAN&PacGAN/pacgan_task.py = 2DRing_GAN&PacGAN/'s):
    the grid preset's nets, initialisation, batch norm and updates are the ring's, checked above."""
    ring, grid = (validate(make_cfg(f"experiment={name}", tiny=False)) for name in ("pacgan_ring", "pacgan_grid"))
    assert ring.model == grid.model and ring.optim == grid.optim
    assert (grid.optim.update, grid.model.init, grid.model.bn_running) == ("simultaneous", "pacgan", "stdev")


@pytest.mark.parametrize("trick", ["n_critic", "g_steps", "wgan_gp", "loss_balancing"])
def test_a_trick_that_repeats_one_nets_update_is_a_skipped_cell_on_the_pacgan_presets(trick):
    """make results sweeps every trick on pacgan_*_short: these are conflicts (recorded as skipped), not errors."""
    with pytest.raises(TrickConflict, match="optim.update=simultaneous"):
        check_config(make_cfg("experiment=pacgan_ring_short", f"trick=[{trick}]"))


def test_the_pacgan_step_makes_no_host_sync_between_log_steps(monkeypatch):
    """Simultaneous updates, blocks' Adam and batch norm keep the step asynchronous (tests/test_host_sync.py's count)."""
    from test_host_sync import syncs_per_iteration

    module = make_module("experiment=pacgan_ring", *SMALL, "trainer.log_every_n_steps=4", "monitor.grad_norm_every=4")
    counts = syncs_per_iteration(module, monkeypatch, 8)
    assert counts[1:4] == [0, 0, 0] and counts[5:8] == [0, 0, 0] and counts[0] == counts[4] == 1, counts
