#!/usr/bin/env python
"""Cost of FID/KID/IS evaluation: seconds per evaluation with the real set's features cached (what
runs do) vs recomputed every time, interleaved over several repetitions; then the share of a
training run spent evaluating at the default cadence (metrics.every iterations, raw and EMA G).

    python scripts/bench_metrics.py                 # mnist, DCGAN, domain extractor, defaults
    python scripts/bench_metrics.py data=digits --reps 5

Arguments that are not options are config overrides (as for train.py). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_overhead import framework_step_time  # noqa: E402
from gan_ablate.cli import compose_config  # noqa: E402
from gan_ablate.config import validate  # noqa: E402
from gan_ablate.data import build_datamodule  # noqa: E402
from gan_ablate.evaluators import image_evaluator  # noqa: E402
from gan_ablate.metrics.fidelity import fidelity_metrics  # noqa: E402
from gan_ablate.module import GANModule  # noqa: E402

warnings.filterwarnings("ignore")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", default=["data=mnist"], help="config overrides (default data=mnist)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=20, help="iterations timed for the per-iteration cost")
    args = parser.parse_args()

    settings = validate(compose_config(args.overrides + ["logger=csv"]))
    dm = build_datamodule(settings.data, settings.trainer.max_steps, settings.seed).prepare()
    module = GANModule(settings, dm.sample_shape, dm.n_classes)
    module.attach_data(dm.data, dm.labels)
    n = settings.metrics.image_samples
    z = torch.randn(n, settings.model.z_dim, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as cache:
        evaluator = image_evaluator(settings, dm, z)  # the domain classifier from the usual cache
        evaluator.cache_root = Path(cache)  # a cold real-feature cache: the first call pays for it
        with torch.no_grad():
            fake = torch.cat([module.G.eval()(c) for c in z.split(2048)])
        module.G.train()
        first = timed(lambda: evaluator.score(fake))  # computes and stores the real features
        cached, recomputed = [], []
        for _ in range(args.reps):  # interleaved
            cached.append(timed(lambda: evaluator.score(fake)))
            recomputed.append(timed(lambda: fidelity_metrics(fake, evaluator.real, evaluator.weights_path,
                                                             kid_subset_size=evaluator.kid_subset_size,
                                                             extractor=evaluator.torch_fidelity_name)))
            print("repetition done", file=sys.stderr)

    # the per-iteration cost as bench_overhead.py measures it (Lightning, CSV logging, grad norms)
    step = framework_step_time(args.overrides + ["logger=csv"], args.train_steps + 5, 5)
    every, steps = settings.metrics.every, settings.trainer.max_steps
    n_evals = len(set(range(every, steps + 1, every)) | {steps}) if every else 1
    eval_s = 2 * statistics.median(cached)  # raw and EMA generator
    share = n_evals * eval_s / (steps * step + n_evals * eval_s)

    print(f"\n{settings.data.name}, {evaluator.extractor_id}, {n} generated vs {len(evaluator.real)} real images, "
          f"{torch.get_num_threads()} torch threads, {args.reps} interleaved repetitions, medians\n")
    print("| evaluation (FID + KID + IS of one generator) | seconds | spread (min–max) |")
    print("|---|---|---|")
    print(f"| first call (computes and caches the real features) | {first:.2f} | – |")
    print(f"| real features cached | {statistics.median(cached):.2f} | {min(cached):.2f}–{max(cached):.2f} |")
    print(f"| real features recomputed | {statistics.median(recomputed):.2f} | "
          f"{min(recomputed):.2f}–{max(recomputed):.2f} |")
    print(f"\nspeed-up from the cache: {statistics.median(recomputed) / statistics.median(cached):.2f}x")
    print(f"training: {step * 1e3:.1f} ms / iteration; at metrics.every={every} over trainer.max_steps={steps}: "
          f"{n_evals} evaluations x 2 generators = {n_evals * eval_s:.0f} s of {steps * step + n_evals * eval_s:.0f} s, "
          f"{100 * share:.1f}% of the run")


if __name__ == "__main__":
    main()
