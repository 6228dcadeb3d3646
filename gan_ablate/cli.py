"""The Hydra entry point (`python train.py ...` or `gan-ablate ...`)."""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from gan_ablate.config import ConfigError, register_configs

register_configs()
log = logging.getLogger("gan_ablate")

# conf/ sits next to the package in the checkout (installs are editable); an absolute path keeps
# Hydra from looking for a python module called `conf`.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config `python train.py OVERRIDES...` would run, for tests and notebooks."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides or []))


def _sweep_info():
    from gan_ablate.run import SweepInfo
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return SweepInfo(group=str(hc.sweep.dir), job_num=hc.job.num)
    return SweepInfo()


FAILED_CELLS: list[str] = []  # jobs of this process's sweep that failed


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    from gan_ablate.record import RunRecord
    from gan_ablate.run import run_name, train  # heavy imports after Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = _sweep_info()
    in_sweep = sweep.group is not None
    try:
        train(cfg, run_dir, sweep)
    except ConfigError as e:
        if not in_sweep:
            print(f"gan-ablate: config error: {e}", file=sys.stderr)
            sys.exit(2)
        # one bad cell (e.g. two tricks that conflict) is recorded and the sweep goes on
        tricks = list(cfg.get("trick") or {})
        RunRecord(run_dir, name=run_name(tricks, cfg.seed), tricks=tricks, seed=cfg.seed, sweep=sweep.group,
                  job_num=sweep.job_num, status="skipped", reason=str(e), metrics={}).write()
        log.warning("job %s skipped: %s", sweep.job_num, e)
    except Exception as e:
        if not in_sweep:
            raise
        FAILED_CELLS.append(str(run_dir))  # train() has written status failed and traceback.txt
        log.error("job %s failed (%s: %s); the sweep goes on. Traceback: %s",
                  sweep.job_num, type(e).__name__, e, run_dir / "traceback.txt")


def one_line(error: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages (and their causes), folded into one line."""
    parts = []
    while error is not None:
        for line in str(error).splitlines():
            line = line.strip()
            if line and not line.startswith(("Config search path", "provider=", "object_type", "reference_type")):
                parts.append(line)
        error = error.__cause__
    text = " ".join(dict.fromkeys(parts))  # without repeats, in order
    missing = re.search(r"Could not load '([\w/]+)/(\w+)'", text)
    if missing:  # Hydra lists the options only when the choice is not a list: list them always
        group = Path(CONF_DIR) / missing.group(1)
        options = sorted(p.stem for p in group.glob("*.yaml"))
        text = f"{missing.group(1)}={missing.group(2)} is not an option; available: {', '.join(options)}"
    return text


def main() -> None:
    """Hydra's entry point, with configuration errors reported on one line (exit code 2)."""
    # Let Hydra's own errors reach us instead of being printed over several lines by Hydra.
    user_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        if user_full_error == "1":
            raise
        print(f"gan-ablate: config error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    if FAILED_CELLS:
        print(f"gan-ablate: {len(FAILED_CELLS)} job(s) failed: {', '.join(FAILED_CELLS)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
