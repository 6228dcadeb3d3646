"""Lightning's WandbLogger, fitted to a gan-ablate run folder.

- W&B's x-axis is `iteration`, the training iteration: the axis of result.json's history and of the
  CSV's `step` (Lightning's `trainer/global_step` counts optimizer steps, n_critic + g_steps per iteration).
- A run killed and started again is one W&B run whose history holds every row once. The killed process
  takes down its W&B service with the rows it had not yet written (a SIGKILL 350 iterations in lost the
  last 38 here), and the resumed run logs again every row after its checkpoint. wandb has no call that
  makes the rows durable before a checkpoint, so the logger goes by what the run's W&B files (one per
  start) hold: it logs no (iteration, key) they already hold, and `replay` logs the CSV rows the
  checkpoint restored, of which it thereby logs only those W&B lost.
- W&B never stops training. A start that fails online (server unreachable, refusing, not answering within
  the init timeout, a bad key) falls back to offline files, which `wandb sync` uploads later; a W&B call
  that fails later is reported once, and the run goes on without W&B (the CSV and result.json hold it all).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import pytorch_lightning as pl

from gan_ablate.wandb_offline import find_run_files, read_history

log = logging.getLogger("gan_ablate")

STEP = "iteration"


def held_entries(files: Iterable[Path]) -> set[tuple[int, str]]:
    """(iteration, key) of every value the run files hold; W&B's own keys (_step, _runtime...) aside."""
    return {(row[STEP], key) for path in files for row in read_history(path) if STEP in row
            for key in row if key != STEP and not key.startswith("_")}


class RunWandbLogger(pl.loggers.WandbLogger):
    def __init__(self, run_dir: Path, id: str, **kwargs):
        super().__init__(save_dir=str(run_dir), id=id, **kwargs)
        self.held = held_entries(find_run_files(run_dir, id))  # read before this start adds its own file
        self.failed = False  # a W&B call failed mid-run or at the end

    @property
    def experiment(self):
        fresh = self._experiment is None
        run = self._start() if fresh else super().experiment
        if fresh:  # replaces the trainer/global_step axis Lightning has just defined
            run.define_metric(STEP)
            run.define_metric("*", step_metric=STEP, overwrite=True)
        return run

    def log_metrics(self, metrics: Mapping[str, object], step: Optional[int] = None) -> None:
        new = {key: value for key, value in metrics.items() if (step, key) not in self.held}
        if new:
            self.unless_failed("logging", lambda: self.experiment.log({**new, STEP: step}))

    def replay(self, csv_rows: list[dict]) -> None:
        """The CSV rows a resumed run restored (those logged before its checkpoint), for any W&B lost."""
        for row in csv_rows:
            self.log_metrics({key: float(value) for key, value in row.items() if key != "step"}, step=int(row["step"]))

    def _start(self):
        """wandb.init as configured; offline if the online start fails."""
        import wandb

        try:
            return super().experiment
        except (wandb.Error, TimeoutError) as e:
            if self._wandb_init.get("mode") == "offline":
                raise
            # the failed start leaves its run id taken in W&B's service, which refuses the offline start with
            # "run ID ... is in use"; W&B's advice (wandb/wandb#8003) is a teardown, which starts a new service
            wandb.teardown()
            self._wandb_init["mode"] = "offline"
            run = super().experiment
            log.warning("W&B could not start online (%s); logging offline instead: upload later with "
                        "`wandb sync %s`", one_line(e), run.settings.sync_dir)
            return run

    def unless_failed(self, doing: str, call: Callable[[], object]) -> None:
        """Calls W&B unless a call failed before: the first failure is reported on one line, and then W&B is
        left alone (a W&B whose service died would fail every call) while the run goes on."""
        if self.failed:
            return
        try:
            call()
        except Exception as e:
            self.failed = True
            log.warning("W&B failed while %s (%s); the run goes on without W&B: its CSV and result.json hold "
                        "every value", doing, one_line(e))


def one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
