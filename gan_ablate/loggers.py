"""Lightning's WandbLogger, fitted to a gan-ablate run folder.

- W&B's x-axis is `iteration`, the training iteration: the axis of result.json's history and of the
  CSV's `step` (Lightning's `trainer/global_step` counts optimizer steps, n_critic + g_steps per iteration).
- A run killed and started again is one W&B run whose history holds every row once. The killed process
  takes down its W&B service with the rows it had not yet written (a SIGKILL 350 iterations in lost the
  last 38 here), and the resumed run logs again every row after its checkpoint. wandb has no call that
  makes the rows durable before a checkpoint, so the logger goes by what the run's W&B files (one per
  start) hold: it logs no (iteration, key) they already hold, and `replay` logs the CSV rows the
  checkpoint restored, of which it thereby logs only those W&B lost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Optional

import pytorch_lightning as pl

from gan_ablate.wandb_offline import find_run_files, read_history

STEP = "iteration"


def held_entries(files: Iterable[Path]) -> set[tuple[int, str]]:
    """(iteration, key) of every value the run files hold; W&B's own keys (_step, _runtime...) aside."""
    return {(row[STEP], key) for path in files for row in read_history(path) if STEP in row
            for key in row if key != STEP and not key.startswith("_")}


class RunWandbLogger(pl.loggers.WandbLogger):
    def __init__(self, run_dir: Path, id: str, **kwargs):
        super().__init__(save_dir=str(run_dir), id=id, **kwargs)
        self.held = held_entries(find_run_files(run_dir, id))  # read before this start adds its own file

    @property
    def experiment(self):
        fresh = self._experiment is None
        run = super().experiment
        if fresh:  # replaces the trainer/global_step axis Lightning has just defined
            run.define_metric(STEP)
            run.define_metric("*", step_metric=STEP, overwrite=True)
        return run

    def log_metrics(self, metrics: Mapping[str, object], step: Optional[int] = None) -> None:
        new = {key: value for key, value in metrics.items() if (step, key) not in self.held}
        if new:
            self.experiment.log({**new, STEP: step})

    def replay(self, csv_rows: list[dict]) -> None:
        """The CSV rows a resumed run restored (those logged before its checkpoint), for any W&B lost."""
        for row in csv_rows:
            self.log_metrics({key: float(value) for key, value in row.items() if key != "step"}, step=int(row["step"]))
