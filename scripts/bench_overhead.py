#!/usr/bin/env python
"""Per-iteration time of GANModule under Lightning vs a plain PyTorch loop doing the same work.

Same nets, data tensor, loss, optimisers and EMA update; measured side by side in one process,
interleaved in a shuffled order, several repetitions; the first `--warmup` iterations of every timing
are left out.
Prints a markdown table of medians and ratios (timings on shared machines are noisy: read ratios).

    python scripts/bench_overhead.py --steps 300 --reps 5
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: E402

from gan_ablate.callbacks.failure_watch import FailureWatchCallback  # noqa: E402
from gan_ablate.cli import compose_config  # noqa: E402
from gan_ablate.config import validate  # noqa: E402
from gan_ablate.data import build_datamodule  # noqa: E402
from gan_ablate.module import GANModule, build_optimizer  # noqa: E402
from gan_ablate.run import SweepInfo  # noqa: E402
from gan_ablate.run_loggers import build_loggers  # noqa: E402
from gan_ablate.trainer import skip_gpu_probes  # noqa: E402

warnings.filterwarnings("ignore")

CASES = {
    "ring8 / MLP": ["data=ring8"],
    "mnist / DCGAN": ["data=mnist"],
}
LOGGING = {
    "off": ["logger=csv", "logger.csv=false", "monitor.grad_norm_every=0"],
    "on (CSV, no grad norms)": ["logger=csv", "monitor.grad_norm_every=0"],
    "on (CSV, grad norms every 50)": ["logger=csv", "monitor.grad_norm_every=50"],
    "on (W&B offline + CSV, grad norms every 50)": ["logger=wandb", "logger.mode=offline",
                                                     "monitor.grad_norm_every=50"],
}


class StepTimer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.count = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()
        self.count = batch_idx + 1 - self.warmup

    def on_train_end(self, trainer, pl_module):
        if DEVICE.type == "cuda":  # the GPU's queue, waited for once at the end, not per step
            sync()
            self.end = time.perf_counter()


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    """Timings on a GPU must wait for its queue; on the CPU there is none."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def framework_step_time(overrides: list[str], steps: int, warmup: int) -> float:
    cfg = compose_config(overrides + [f"trainer.max_steps={steps}", "metrics.every=0",
                                      "trainer.enable_progress_bar=false"])
    settings = validate(cfg)
    dm = build_datamodule(settings.data, steps, settings.seed).prepare()
    module = GANModule(settings, dm.sample_shape)
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as run_dir:
        from omegaconf import OmegaConf
        loggers = build_loggers(settings, Path(run_dir), "bench", SweepInfo(), OmegaConf.to_container(cfg))
        trainer = pl.Trainer(max_epochs=1, accelerator=DEVICE.type, devices=1, logger=loggers or False,
                             log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False,
                             callbacks=[FailureWatchCallback.from_config(settings.monitor), timer])  # as train()
        trainer.fit(module, datamodule=dm)
        for lg in loggers:
            if isinstance(lg, pl.loggers.WandbLogger):
                lg.experiment.finish()
    return (timer.end - timer.start) / timer.count


def plain_step_time(overrides: list[str], steps: int, warmup: int) -> float:
    """The loop a careful researcher writes by hand: non-saturating loss, Adam, EMA of G."""
    settings = validate(compose_config(overrides))
    dm = build_datamodule(settings.data, steps, settings.seed).prepare()
    module = GANModule(settings, dm.sample_shape)  # only for identical nets
    G, D, data = module.G.to(DEVICE), module.D.to(DEVICE), dm.data.to(DEVICE)
    opt_g = build_optimizer(settings.optim.g, G.parameters())
    opt_d = build_optimizer(settings.optim.d, D.parameters())
    ema = AveragedModel(G, multi_avg_fn=get_ema_multi_avg_fn(settings.ema.decay), use_buffers=True)
    bs, z_dim = settings.data.batch_size, settings.model.z_dim
    for it in range(steps):
        if it == warmup:
            sync()
            start = time.perf_counter()
        torch.default_generator.manual_seed(it)  # as GANModule does: the CPU generator only
        real = data[torch.randint(len(data), (bs,), device=DEVICE)]
        with torch.no_grad():
            fake = G(torch.randn(bs, z_dim, device=DEVICE))
        real_logits, fake_logits = D(real), D(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-D(G(torch.randn(bs, z_dim, device=DEVICE)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        ema.update_parameters(G)
    sync()
    return (time.perf_counter() - start) / (steps - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="iterations per timing (ring8; mnist uses a third)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    skip_gpu_probes()  # as train() does; the plain loop profits too
    rows = []
    for case in args.cases:
        steps = args.steps if "ring8" in case else max(args.warmup + 20, args.steps // 3)
        times: dict[str, list[float]] = {"plain": [], **{mode: [] for mode in LOGGING}}
        order = random.Random(0)
        for rep in range(args.reps):
            # interleaved, in a new order every repetition: no variant always runs first (cold) or last
            variants = list(times)
            order.shuffle(variants)
            for variant in variants:
                if variant == "plain":
                    times["plain"].append(plain_step_time(CASES[case], steps, args.warmup))
                else:
                    times[variant].append(framework_step_time(CASES[case] + LOGGING[variant], steps, args.warmup))
            print(f"{case}: repetition {rep + 1}/{args.reps} done", file=sys.stderr)
        plain = statistics.median(times["plain"])
        rows.append((case, "plain PyTorch loop", plain, times["plain"], 1.0))
        for mode in LOGGING:
            med = statistics.median(times[mode])
            ratios = sorted(t / p for t, p in zip(times[mode], times["plain"]))
            rows.append((case, f"GANModule, logging {mode}", med, times[mode], statistics.median(ratios)))
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"\n{where}, {args.reps} interleaved repetitions, medians\n")
    print("| data / nets | loop | ms / iteration | spread (min–max) | ratio to plain (median of paired) |")
    print("|---|---|---|---|---|")
    for case, loop, med, ts, ratio in rows:
        print(f"| {case} | {loop} | {med * 1e3:.2f} | {min(ts) * 1e3:.2f}–{max(ts) * 1e3:.2f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
