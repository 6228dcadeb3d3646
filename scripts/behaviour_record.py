"""Record what training produces for a fixed set of runs (ring8, 200 iterations): the metrics and
evaluation history of result.json. tests/test_behaviour_unchanged.py compares a run of today's code
with the file this wrote before issue 14's restructuring (tests/data/behaviour_ring8_200.json).

    python scripts/behaviour_record.py --out tests/data/behaviour_ring8_200.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the baseline, five tricks acting at different hooks (targets, D input, a parametrisation, the fake batch,
# G's objective, a D penalty), and the losses whose side effects are tricks' (clipping, penalty, autoencoder D, k_t)
RUNS = {
    "baseline": [],
    "label_smoothing": ["trick=label_smoothing"],
    "instance_noise": ["trick=instance_noise"],
    "spectral_norm": ["trick=spectral_norm"],
    "experience_replay": ["trick=experience_replay"],
    "feature_matching": ["trick=feature_matching"],
    "gradient_penalty": ["trick=gradient_penalty"],
    "loss=wgan": ["loss=wgan"],
    "loss=wgan_gp": ["loss=wgan_gp"],
    "loss=dragan": ["loss=dragan"],
    "loss=ebgan": ["loss=ebgan"],
    "loss=began": ["loss=began"],
}
COMMON = ["data=ring8", "trainer.max_steps=200", "logger=csv", "trainer.enable_progress_bar=false", "seed=0"]


def behaviour(overrides: list[str]) -> dict:
    """metrics, history, iterations and status of one run's result.json."""
    from gan_ablate.cli import compose_config
    from gan_ablate.run import train

    with tempfile.TemporaryDirectory() as folder:
        record = train(compose_config(COMMON + overrides), Path(folder) / "run")
        data = record.data
        return {key: data.get(key) for key in ("status", "iterations", "metrics", "history")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    out = {"common": COMMON, "runs": {}}
    for name, overrides in RUNS.items():
        out["runs"][name] = {"overrides": overrides, **behaviour(overrides)}
        print(name, out["runs"][name]["metrics"], flush=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
