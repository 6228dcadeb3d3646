"""Sweepers: Hydra's grid sweep that reports failed cells, and the ablation-design sweeper.

Both work with every launcher (basic, joblib, slurm): they only decide which jobs run and read
what each job returned (its result status), never how the jobs run.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from . import config as _config  # noqa: F401  (registers the config nodes)

log = logging.getLogger(__name__)
LOGGED_ALIASES = 20  # a screening design's partial aliases run to hundreds: the rest are in design.json


class GridSweeper(BasicSweeper):
    """Hydra's basic (cartesian product) sweep; at the end, exits 1 when any job failed."""

    def __init__(self, max_batch_size: Optional[int] = None) -> None:
        super().__init__(max_batch_size=max_batch_size)

    def sweep(self, arguments: List[str]) -> Any:
        from gan_ablate.sweep.outcome import CellsFailed, failed_jobs

        returns = super().sweep(arguments)
        failed = [f for batch in returns for f in failed_jobs(batch)]
        if failed:
            raise CellsFailed(failed)
        return returns


class AblationSweeper(Sweeper):
    """Runs the cells of `ablation.design` over `ablation.tricks` (see gan_ablate/sweep/design.py)
    for `ablation.seeds` seeds, times any other sweep on the command line (e.g. loss=hinge,wgan_gp).

    A cell whose tricks conflict is recorded as skipped (result.json under <sweep>/skipped/) and not
    launched; any other config error refuses the whole sweep before a job starts. The design (cells, trick
    levels, resolution, generators, aliases) is logged and written to <sweep>/design.json."""

    def __init__(self, max_batch_size: Optional[int] = None) -> None:
        self.max_batch_size = max_batch_size
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from gan_ablate.config import ConfigError
        from gan_ablate.sweep.design import design_cells, design_description
        from gan_ablate.sweep.outcome import CellsFailed, failed_jobs

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        spec = OmegaConf.to_object(self.config.ablation)  # AblationConfig: its checks run before any design is built
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(arguments)
        for o in overrides:
            if o.get_key_element().lstrip("+~") in ("trick", "seed"):
                raise ConfigError(f"{o.get_key_element()}: the ablation sweeper sets trick and seed itself; "
                                  "use ablation.tricks, ablation.baseline, ablation.cells and ablation.seeds")
        variants = BasicSweeper.split_arguments(overrides, None)[0]  # the user's other sweeps, if any
        cells = design_cells(spec.design, list(spec.tricks), list(spec.baseline),
                             [list(c) for c in spec.cells], spec.max_cells, spec.force, spec.resolution)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        jobs: list[list[str]] = []
        skipped = 0
        for variant in variants:
            for cell in cells:
                cell_overrides = [*variant, f"trick=[{','.join(cell.tricks)}]",
                                  f"ablation.cell='{cell.label}'", f"ablation.reference='{cells[0].label}'"]
                conflict = self.conflict(cell_overrides + ["seed=0"])
                for seed in range(spec.seeds):
                    if conflict is None:
                        jobs.append(cell_overrides + [f"seed={seed}"])
                    else:
                        self.record_skipped(sweep_dir / "skipped" / str(skipped), cell, seed, conflict,
                                            reference=cells[0].label)
                        skipped += 1
        log.info("ablation %s over %s: %d cells x %d seeds%s -> %d jobs, %d skipped", spec.design,
                 list(spec.tricks), len(cells), spec.seeds,
                 f" x {len(variants)} variants" if len(variants) > 1 else "", len(jobs), skipped)
        self.write_design(sweep_dir / "design.json",
                          design_description(spec.design, list(spec.tricks), list(spec.baseline), cells, spec.resolution))

        returns: list[Sequence[Any]] = []
        size = self.max_batch_size or len(jobs) or 1
        for start in range(0, len(jobs), size):
            batch = jobs[start:start + size]
            self.validate_batch_is_legal(batch)
            returns.append(self.launcher.launch(batch, initial_job_idx=start))
        failed = [f for batch in returns for f in failed_jobs(batch)]
        if failed:
            raise CellsFailed(failed)
        return returns

    def write_design(self, path: Path, description: dict) -> None:
        """design.json, for the report and a reviewer; the log names the resolution, generators and aliases."""
        from gan_ablate.atomic import write_atomically

        write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(description, indent=2) + "\n"))
        if description["resolution"] is not None:
            log.info("%s design: resolution %d%s", description["design"], description["resolution"],
                     "; generators: " + "; ".join(description["generators"]) if description["generators"] else "")
        aliases = description["aliases"]
        if aliases is not None:  # a two-level design (factorial: none aliased)
            log.info("%d aliases among main effects and two-way interactions ('=' confounded, '~' correlated; all in "
                     "%s)%s", len(aliases), path,
                     "".join(f"\n  {a}" for a in aliases[:LOGGED_ALIASES])
                     + (f"\n  ... {len(aliases) - LOGGED_ALIASES} more" if len(aliases) > LOGGED_ALIASES else ""))

    def conflict(self, overrides: list[str]) -> Optional[str]:
        """Why this cell cannot run (its tricks conflict), or None. Other config errors propagate."""
        from gan_ablate.config import TrickConflict
        from gan_ablate.validation import check_config

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            check_config(cfg)
        except TrickConflict as e:
            return str(e)
        return None

    def record_skipped(self, run_dir: Path, cell, seed: int, reason: str, reference: str) -> None:
        from gan_ablate.record import RunRecord

        RunRecord.skipped(run_dir, list(cell.tricks), seed, reason, sweep=str(self.config.hydra.sweep.dir),
                          design=self.config.ablation.design, cell=cell.label, reference=reference).write()
        log.warning("cell %s seed %d skipped: %s", cell.label, seed, reason)
