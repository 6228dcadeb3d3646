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
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_ablate.config import ConfigError, register_configs
from gan_ablate.sweep.outcome import CellsFailed

register_configs()
log = logging.getLogger("gan_ablate")

# The configs live inside the package (gan_ablate/conf/), so an installed wheel finds them wherever it
# runs; an absolute path keeps Hydra from looking for a python module called `conf`.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config `python train.py OVERRIDES...` would run, for tests and notebooks."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides or []))


def _sweep_info(cfg: DictConfig):
    """Where this job sits in its sweep: group (the sweep folder), design, cell and the overrides
    that made it (reports tell cells apart by them)."""
    from gan_ablate.record import cell_label
    from gan_ablate.run import SweepInfo
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return SweepInfo()
    ablation = cfg.get("ablation") or {}
    tricks = list(cfg.get("trick") or {})
    return SweepInfo(group=str(hc.sweep.dir), job_num=hc.job.num,
                     design=ablation.get("design") if ablation.get("cell") else "grid",
                     cell=ablation.get("cell") or cell_label(tricks),
                     reference=ablation.get("reference"), overrides=list(hc.overrides.task))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> str:
    """One job. Returns the run's status, which the sweepers read (a job in a sweep never raises:
    its failure is in its result.json and traceback.txt, and the sweep goes on)."""
    from gan_ablate.callbacks.checkpoint import UnusableCheckpoint
    from gan_ablate.record import RunRecord
    from gan_ablate.run import train  # heavy: after Hydra parsed the command line
    from gan_ablate.run_folder import DiskFull, FolderHoldsAnotherRun

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = _sweep_info(cfg)
    in_sweep = sweep.group is not None
    try:
        return train(cfg, run_dir, sweep, accepted=lambda: save_hydra_config(cfg, run_dir)).data["status"]
    except (FolderHoldsAnotherRun, UnusableCheckpoint) as e:
        # refused: the folder is left as it was (but for the record of a run whose checkpoint is unusable,
        # now failed), so not a line in its log file either
        if not in_sweep:
            print(f"gan-ablate: config error: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"gan-ablate: job {sweep.job_num} refused: {e}", file=sys.stderr)
        return "failed"
    except DiskFull as e:  # one line says it all: which file, how much space is left, how to go on
        if not in_sweep:
            print(f"gan-ablate: {e}", file=sys.stderr)
            sys.exit(1)
        log.error("job %s failed: %s", sweep.job_num, e)
        return "failed"
    except ConfigError as e:
        if not in_sweep:
            print(f"gan-ablate: config error: {e}", file=sys.stderr)
            sys.exit(2)
        # one bad cell (e.g. two tricks that conflict) is recorded and the sweep goes on
        tricks = list(cfg.get("trick") or {})
        RunRecord.skipped(run_dir, tricks, cfg.seed, str(e), **sweep.fields()).write()
        log.warning("job %s skipped: %s", sweep.job_num, e)
        return "skipped"
    except Exception as e:
        if not in_sweep:
            raise
        # train() has written status failed and traceback.txt
        log.error("job %s failed (%s: %s); the sweep goes on. Traceback: %s",
                  sweep.job_num, type(e).__name__, e, run_dir / "traceback.txt")
        return "failed"


def save_hydra_config(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra writes in the run folder before the task runs, written here once train() has accepted
    the start (train.yaml sets hydra.output_subdir to null), so that a refused start leaves it alone."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    OmegaConf.save(HydraConfig.instance().cfg, hydra_dir / "hydra.yaml")
    OmegaConf.save(HydraConfig.get().overrides.task, hydra_dir / "overrides.yaml")


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
    # `experiment` sits in train.yaml's defaults (so that tricks and families apply on top of a preset),
    # which makes Hydra refuse its usual spelling for experiment presets, +experiment=NAME: accept both.
    sys.argv = [a.replace("+experiment=", "experiment=", 1) if a.startswith("+experiment=") else a for a in sys.argv]
    # Let Hydra's own errors reach us instead of being printed over several lines by Hydra.
    user_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except CellsFailed as e:  # raised by the sweepers once every job has run
        print(f"gan-ablate: {e}", file=sys.stderr)
        sys.exit(1)
    except (HydraException, OmegaConfBaseException, ConfigError) as e:
        if user_full_error == "1":
            raise
        print(f"gan-ablate: config error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
