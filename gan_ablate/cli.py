"""The Hydra entry point (`python train.py ...` or `gan-ablate ...`)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gan_ablate.config import ConfigError, register_configs

register_configs()

# conf/ sits next to the package in the checkout (installs are editable); an absolute path keeps
# Hydra from looking for a python module called `conf`.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def _sweep_info():
    from gan_ablate.run import SweepInfo
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return SweepInfo(group=str(hc.sweep.dir), job_num=hc.job.num)
    return SweepInfo()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from gan_ablate.run import train  # heavy imports after Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train(cfg, run_dir, _sweep_info())
    except ConfigError as e:
        print(f"gan-ablate: config error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
