"""GANModule: the G/D training step with manual optimisation.

One iteration = n_critic discriminator updates, then g_steps generator updates, then the EMA update
(optim.update=alternating); or one update of both nets from the same batch, z and weights, then the EMA
update (optim.update=simultaneous; gan_ablate/config.py OptimConfig says what the hooks mean there).
Tricks act only through the hook chain (gan_ablate/tricks/base.py); this file names none of them.
Everything random in an iteration (real batch, z, trick noise, dropout) is drawn after seeding torch
from (seed, iteration), so a resumed run continues exactly, and evaluation cannot shift the stream.
"""
from __future__ import annotations

import copy
import functools
import math
import warnings
from contextlib import nullcontext
from typing import Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan_ablate.config import OptimizerConfig, TrainConfig
from gan_ablate.data.base import real_batches
from gan_ablate.distributed import average_buffers, average_gradients, mean_over_ranks, rank, world_size
from gan_ablate.losses import build_loss
from gan_ablate.nets import build_nets
from gan_ablate.nets.layers import WithReferenceBatch, sample_latent
from gan_ablate.tricks import HookChain, StepContext, build_loss_units, build_tricks
from gan_ablate.tricks.surface import RealBatch

_MASK64 = (1 << 64) - 1
# inside Lightning, nothing to act on; set here so that ddp_spawn's child processes (which import this
# module, not gan_ablate.run) stay quiet too
warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")


def step_seed(seed: int, iteration: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, iteration, stream) (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + iteration * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) >> 1


def seed_generators(seed: int, device: torch.device) -> None:
    """Seed the generators a step draws from: the CPU's, and the training GPU's when there is one.

    torch.manual_seed would also queue a seeding of every other backend (CUDA, XPU, MTIA) and record a
    stack trace for each while they are not initialised: about 1 ms per call on a CPU run, a tenth
    of a ring8 iteration. The CPU stream it gives is the same."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def ema_update(decay: float, warmup: bool, ema_params, params, num_averaged) -> None:
    """ema = d * ema + (1 - d) * G, with d = min(decay, (1 + n) / (10 + n)) after n updates when warming up
    (tf.train.ExponentialMovingAverage's num_updates), else torch's constant-decay EMA. Module-level:
    ddp_spawn pickles the module, and the closure get_ema_multi_avg_fn returns cannot be pickled.
    The warm-up decay stays a device tensor: no host sync."""
    if not warmup:
        get_ema_multi_avg_fn(decay)(ema_params, params, num_averaged)
        return
    d = torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay).to(ema_params[0].dtype)
    torch._foreach_mul_(ema_params, d)
    torch._foreach_add_(ema_params, torch._foreach_mul(params, 1 - d))


def standing_statistics(net: nn.Module, latents: Iterable[torch.Tensor]) -> nn.Module:
    """A copy of `net` whose batch-norm statistics are re-estimated as the cumulative mean over the
    batches `net` makes from `latents` (BigGAN-PyTorch utils.py accumulate_standing_stats)."""
    net = copy.deepcopy(net)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches, not an exponential one
    net.train()
    with torch.no_grad():
        for z in latents:
            net(z)
    return net.eval()


def grad_norms(named_params: Iterable[tuple[str, nn.Parameter]], prefix: str,
               per_layer: bool) -> dict[str, torch.Tensor]:
    """Total L2 norm of the gradients (the figure clip_grad_norm_ computes), and per layer if asked.

    torch.nn.utils.get_total_norm uses fused per-device kernels and returns a tensor: no host sync.
    """
    named = [(n, p.grad) for n, p in named_params if p.grad is not None]
    if not named:
        return {}
    out = {f"grad_norm/{prefix}": torch.nn.utils.get_total_norm([g for _, g in named])}
    if per_layer:
        layers: dict[str, list[torch.Tensor]] = {}
        for name, g in named:
            layer = name.split(".parametrizations.")[0] if ".parametrizations." in name else name.rsplit(".", 1)[0]
            layers.setdefault(layer, []).append(g)
        for layer, grads in layers.items():
            out[f"grad_norm/{prefix}/{layer}"] = torch.nn.utils.get_total_norm(grads)
    return out


class BlocksAdam(torch.optim.Adam):
    """Adam as blocks.algorithms.Adam steps (mila-iqia/blocks; PacGAN's 2-D code trains with it): the step
    lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps), eps added before v's bias correction.
    torch's Adam adds it after; this is torch's with eps / sqrt(1 - beta2^t) at step t. The two differ
    where gradients are of eps's size, as G's first ones are under PacGAN's N(0, 0.02) initialisation.
    The step count lives in the param groups, which checkpoints keep."""

    def __init__(self, params, lr: float, betas: tuple[float, float], weight_decay: float, eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)
        for group in self.param_groups:
            group["blocks_eps"], group["blocks_t"] = eps, 0

    def step(self, closure=None):
        for group in self.param_groups:
            group["blocks_t"] += 1
            group["eps"] = group["blocks_eps"] / math.sqrt(1 - group["betas"][1] ** group["blocks_t"])
        return super().step(closure)


def build_optimizer(cfg: OptimizerConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        adam = BlocksAdam if cfg.eps_placement == "blocks" else torch.optim.Adam
        return adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class GANModule(pl.LightningModule):
    """The training step; to the tricks' hooks, a TrickSurface (gan_ablate/tricks/surface.py)."""

    def __init__(self, cfg: TrainConfig, sample_shape: tuple[int, ...], n_classes: int | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.sample_shape = tuple(sample_shape)
        self.n_classes = n_classes  # classes of the data's labels (None: unlabelled)
        self.G, self.D = build_nets(cfg.model, sample_shape, seed=cfg.seed)
        self.loss = build_loss(cfg.loss)
        self.tricks = build_tricks(cfg.trick, cfg)
        self.hooks = HookChain([*build_loss_units(cfg), *self.tricks])
        self.hooks.setup(self)  # before the EMA copy and the optimisers see the nets
        self.G_ema = AveragedModel(self.G, multi_avg_fn=functools.partial(ema_update, cfg.ema.decay, cfg.ema.warmup),
                                   use_buffers=True)
        self.G_ema.requires_grad_(False)
        if cfg.compile:  # after the tricks wrapped the nets; in place, so names and checkpoints do not change
            self.G.compile()
            self.D.compile()
        self.iteration = 0
        self.latest_scalars: dict[str, float] = {}
        self.real_data: torch.Tensor | None = None
        self.real_labels: torch.Tensor | None = None
        self.draw_real = None
        self.resumed_real_batches: dict = {}  # the real-batch stream's state from the checkpoint resumed from

    # -- sampling --------------------------------------------------------------------------------
    def sample_z(self, n: int) -> torch.Tensor:
        return sample_latent(n, self.cfg.model.z_dim, self.cfg.model.latent, device=self.device)

    def real_batch(self) -> RealBatch:
        """A fresh real batch with its labels, drawn from the iteration's seeded stream."""
        x = self.draw_real()
        return RealBatch(x, None if self.real_labels is None else self.real_labels[self.draw_real.last_index])

    def discriminate(self, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """D's outputs for x through every trick's d_input, as the updates feed D (for the tricks' penalties)."""
        return self.D(self.hooks.d_input(x, ctx))

    def replace_net(self, which: str, net: nn.Module) -> None:
        """The one way a trick swaps G or D (in setup, before the EMA copy and the optimisers see them)."""
        if which not in ("G", "D"):
            raise ValueError(f"replace_net: which={which!r}, expected 'G' or 'D'")
        setattr(self, which, net)

    def ema_generator(self) -> nn.Module:
        """The EMA G as evaluation sees it: with standing batch-norm statistics if ema.bn_stats asks
        (re-estimated on a copy, so the average itself is untouched; its latents from the run's seed)."""
        ema, net = self.cfg.ema, self.G_ema.module
        if ema.bn_stats == "averaged" or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            return net
        draw = torch.Generator().manual_seed(self.cfg.seed)
        latents = (sample_latent(self.cfg.data.batch_size, self.cfg.model.z_dim, self.cfg.model.latent,
                                 generator=draw).to(self.device) for _ in range(ema.standing_batches))
        return standing_statistics(net, latents)

    # what evaluation and checkpoint selection use (callbacks/evaluation.py EvaluatedModule)
    def generators(self) -> dict[str, nn.Module]:
        m = self.cfg.metrics
        names = ("raw", "ema") if m.generators == "both" else (m.primary,)
        # the EMA G only when scored: standing batch-norm statistics cost forward passes
        return {name: self.G if name == "raw" else self.ema_generator() for name in names}

    def eval_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.hooks.eval_latent(z.to(self.device))

    def generate(self, net: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return self.hooks.eval_samples(net(z))

    def generator_modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema}

    # -- Lightning hooks ---------------------------------------------------------------------------
    def configure_optimizers(self):
        return (build_optimizer(self.cfg.optim.g, self.G.parameters()),
                build_optimizer(self.cfg.optim.d, self.D.parameters()))

    def attach_data(self, data: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """The whole training set, on the training device; fixes D's reference batch if it has one."""
        self.real_labels = labels
        data = self.hooks.prepare_data(data, labels)
        self.real_data = data
        batch_size = self.hooks.samples_per_batch(self.cfg.data.batch_size)
        self.draw_real = real_batches(data, self.cfg.data, batch_size, self.cfg.seed, rank(), world_size())
        self.draw_real.load_state_dict(self.resumed_real_batches)
        if isinstance(self.D, WithReferenceBatch):
            self.D.set_reference(data)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        self.attach_data(dm.data.to(self.device), None if dm.labels is None else dm.labels.to(self.device))

    def training_step(self, batch, batch_idx) -> dict:
        """One iteration; returns what it measured for the callbacks' on_train_batch_end (FailureWatchCallback):
        {"iteration", "measured": losses and gradient norms on the device, "logged": host values, on log steps}."""
        it = self.iteration
        # each rank draws its own batch, z and noise (rank 0 draws what a single-device run does)
        seed_generators(step_seed(self.cfg.seed, it, stream=self.global_rank), self.device)
        ctx = StepContext(iteration=it, max_steps=self.cfg.trainer.max_steps)
        opt_g, opt_d = self.optimizers()
        every = self.cfg.monitor.grad_norm_every
        measure = every > 0 and it % every == 0
        # the non-finite check needs the total norms every iteration (per layer only when logged)
        norms: dict[str, torch.Tensor] | None = {} if measure or self.cfg.monitor.check_every else None
        per_layer = measure and self.cfg.monitor.grad_norm_per_layer

        if self.cfg.optim.update == "simultaneous":
            d_loss, g_loss = self.simultaneous_update(opt_d, opt_g, ctx, norms, per_layer)
        else:
            d_loss = self.updates(self.discriminator_step, opt_d, self.cfg.optim.n_critic, self.hooks.repeat_d_step,
                                  ctx, norms, per_layer)
            g_loss = self.updates(self.generator_step, opt_g, self.cfg.optim.g_steps, self.hooks.repeat_g_step,
                                  ctx, norms, per_layer)
        average_buffers(self.G, self.D)
        self.update_ema(it)
        self.hooks.after_iteration(self, ctx)
        self.iteration = it + 1

        losses = {"loss/d": d_loss.detach(), "loss/g": g_loss.detach()}
        outputs = {"iteration": it, "measured": {**(norms or {}), **losses}}
        if it % self.cfg.trainer.log_every_n_steps == 0:
            outputs["logged"] = self.log_scalars({**(norms if measure else {}), **losses}, it)
        return outputs

    def updates(self, step, opt, scheduled: int, repeat, ctx: StepContext, norms: dict | None,
                per_layer: bool) -> torch.Tensor:
        """`scheduled` updates of one net (gradient norms measured on the first), then more while a
        trick asks for them (loss balancing)."""
        for k in range(scheduled):
            loss = step(opt, ctx, norms if k == 0 else None, per_layer)
        extra = 0
        while repeat(mean_over_ranks(loss), extra, ctx):
            loss = step(opt, ctx, None, False)
            extra += 1
        return loss

    def log_scalars(self, metrics: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """Send to every logger with one host sync for all values (not one per value); returns the values."""
        # the mean over ranks: what is logged, and what the failure watch stops on, is the same everywhere
        values = mean_over_ranks(torch.stack([v.detach().float() for v in metrics.values()])).tolist()
        scalars = dict(zip(metrics, values))
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)
        self.latest_scalars = scalars
        return scalars

    def simultaneous_update(self, opt_d, opt_g, ctx: StepContext, norms: dict | None,
                            per_layer: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of both nets from one snapshot of their weights, as ALI's `ali_algorithm`
        (IshmaelBelghazi/ALI ali/algorithms.py: theano.grad of each loss for its own net's parameters,
        one GradientDescent applying both steps) that PacGAN's 2-D task files train with: one real batch,
        one z, one forward of G whose samples D's loss reads detached and G's loss reads through D; both
        gradients are taken before either optimiser steps. Returns (D's loss, G's loss)."""
        real = self.real_batch()
        fake = self.G(self.sample_z(real.x.shape[0]))
        with torch.no_grad():
            d_fake = self.hooks.d_fake_batch(fake.detach(), ctx)
        d_loss = self.discriminator_loss(real, d_fake, ctx)
        g_loss = self.generator_loss(fake, ctx, real)
        # G's gradient first: its backward also reaches D's parameters, which D's zero_grad then clears
        self.gradients(opt_g, g_loss, self.G, "g", norms, per_layer)
        self.gradients(opt_d, d_loss, self.D, "d", norms, per_layer)
        self.step(opt_d, self.hooks.before_d_step, self.hooks.after_d_step, ctx)
        self.step(opt_g, self.hooks.before_g_step, self.hooks.after_g_step, ctx)
        return d_loss, g_loss

    def discriminator_step(self, opt, ctx: StepContext, norms: dict | None, per_layer: bool) -> torch.Tensor:
        real = self.real_batch()
        with torch.no_grad():
            fake = self.hooks.d_fake_batch(self.G(self.sample_z(real.x.shape[0])), ctx)
        loss = self.discriminator_loss(real, fake, ctx)
        self.gradients(opt, loss, self.D, "d", norms, per_layer)
        self.step(opt, self.hooks.before_d_step, self.hooks.after_d_step, ctx)
        return loss

    def discriminator_loss(self, real: RealBatch, fake: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        real_logits, fake_logits = self.d_logits(self.hooks.d_input(real.x, ctx), self.hooks.d_input(fake, ctx))
        real_t, fake_t = self.hooks.d_targets(torch.ones_like(real_logits), torch.zeros_like(fake_logits), ctx)
        loss = self.loss.d_loss(real_logits, fake_logits, real_t, fake_t)
        return self.hooks.d_objective(loss, real_logits, fake_logits, ctx) + self.hooks.d_penalty(self, real, fake, ctx)

    def d_logits(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.model.d_batches == "separate":  # all-real and all-fake batches (ganhacks #4)
            return self.D(real), self.D(fake)
        logits = self.D(torch.cat([real, fake]))
        return logits[: len(real)], logits[len(real):]

    def generator_step(self, opt, ctx: StepContext, norms: dict | None, per_layer: bool) -> torch.Tensor:
        loss = self.generator_loss(self.G(self.sample_z(self.hooks.samples_per_batch(self.cfg.data.batch_size))), ctx)
        self.gradients(opt, loss, self.G, "g", norms, per_layer)
        self.step(opt, self.hooks.before_g_step, self.hooks.after_g_step, ctx)
        return loss

    def generator_loss(self, fake: torch.Tensor, ctx: StepContext, real: RealBatch | None = None) -> torch.Tensor:
        """G's loss on `fake`; a loss that scores real samples too scores `real`, or a fresh real batch."""
        fake_logits = self.D(self.hooks.d_input(fake, ctx))
        if self.loss.g_uses_real:
            real_x = (real if real is not None else self.real_batch()).x
            real_logits = self.D(self.hooks.d_input(real_x, ctx))
        else:
            real_logits = None
        loss = self.hooks.g_objective(self.loss.g_loss(fake_logits, real_logits), self, fake, ctx)
        return loss + self.hooks.g_penalty(self, fake, ctx)

    def gradients(self, opt, loss: torch.Tensor, net: nn.Module, prefix: str, norms: dict | None,
                  per_layer: bool) -> None:
        """`net`'s gradients of `loss` (what was there before dropped), measured into `norms` if given."""
        opt.zero_grad(set_to_none=True)
        self.backward_and_average(loss, net)
        if norms is not None:
            norms.update(grad_norms(net.named_parameters(), prefix, per_layer))

    def step(self, opt, before, after, ctx: StepContext) -> None:
        """One optimiser step between its net's before/after step hooks."""
        before(self, ctx)
        opt.step()
        after(self, ctx)

    def backward_and_average(self, loss: torch.Tensor, net: nn.Module) -> None:
        """Gradients of `loss`, averaged over the ranks for the parameters of `net` (the net about to
        step); Lightning's DDP reducer stays off (gan_ablate/distributed.py says why)."""
        distributed = world_size() > 1
        with self.trainer.strategy.block_backward_sync() if distributed else nullcontext():
            self.manual_backward(loss)
        if distributed:
            average_gradients(net.parameters())

    def update_ema(self, it: int) -> None:
        """BigGAN-PyTorch utils.py `ema.update`: before ema.start the average is pegged to G (decay 0),
        from ema.start on it averages every ema.every iterations."""
        ema = self.cfg.ema
        if it < ema.start:
            self.G_ema.n_averaged.zero_()  # AveragedModel's first update copies G
            self.G_ema.update_parameters(self.G)
        elif (it - ema.start) % ema.every == 0:
            self.G_ema.update_parameters(self.G)

    # -- checkpoint state that is not in the nets --------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gan_ablate"] = {"iteration": self.iteration, "tricks": self.hooks.state_dict(),
                                    "real_batches": self.draw_real.state_dict() if self.draw_real else {}}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("gan_ablate", {})
        self.iteration = state.get("iteration", 0)
        self.hooks.load_state_dict(state.get("tricks", {}))
        self.resumed_real_batches = state.get("real_batches", {})  # attach_data (on_fit_start, after this) applies it
