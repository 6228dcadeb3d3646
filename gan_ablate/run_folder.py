"""The rules of a run folder: which earlier start of a run a new one may resume (the same config, but for
RESUMABLE_CHANGES), the state a final checkpoint restores, the wall time summed over its attempts, and what a full
disk leaves in it."""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import NoReturn, Optional

import pytorch_lightning as pl

from gan_ablate.callbacks import EvaluationCallback
from gan_ablate.callbacks.failure_watch import FailureWatchCallback
from gan_ablate.callbacks.selection import BestSelection
from gan_ablate.config import ConfigError
from gan_ablate.module import GANModule
from gan_ablate.record import RunRecord

# keys that may change between the first start of a run and its resumption (`ablation`: the sweep's
# bookkeeping, e.g. the list of tricks under study when a sweep is started again with one trick fewer)
RESUMABLE_CHANGES = ("checkpoint", "logger", "trainer.enable_progress_bar", "ablation")


class FolderHoldsAnotherRun(ConfigError):
    """The run folder holds a run with another config: refused, and that run's record is kept."""


def run_identity(resolved: dict, prefix: str = "") -> dict:
    """The resolved config less RESUMABLE_CHANGES: what makes a run this run."""
    return {key: run_identity(value, f"{prefix}{key}.") if isinstance(value, dict) else value
            for key, value in resolved.items() if f"{prefix}{key}" not in RESUMABLE_CHANGES}


def config_fingerprint(resolved: dict) -> str:
    """Stamped into the run's checkpoints, so that a checkpoint is resumed only by the run that wrote it."""
    return hashlib.sha256(json.dumps(run_identity(resolved), sort_keys=True).encode()).hexdigest()[:16]


def config_change(before: dict, now: dict) -> Optional[str]:
    """The first key (dotted) whose value differs, ignoring RESUMABLE_CHANGES; None when equal."""
    return first_difference(run_identity(before), run_identity(now))


def first_difference(before: dict, now: dict, prefix: str = "") -> Optional[str]:
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}"
    return None


def previous_attempt(run_dir: Path, resolved: dict) -> Optional[dict]:
    """The run folder's record from an earlier start of this same run (None: a fresh folder).
    Refuses a folder that holds a different run."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    changed = config_change(previous.get("config") or {}, resolved)
    if changed:
        raise FolderHoldsAnotherRun(f"{run_dir} holds a run whose {changed} differs from this one's; "
                          "give this run another folder (hydra.run.dir=...) or delete that one")
    return previous


def restore_final_state(checkpoint: dict, module: GANModule, evaluation: EvaluationCallback,
                        selection: Optional[BestSelection] = None,
                        watch: Optional[FailureWatchCallback] = None) -> None:
    """What the record needs (iteration, evaluation history and repeats, the selected G's held-out metrics, failure
    watch) from the final checkpoint: after ddp_spawn, whose child processes trained (Lightning brings back only
    rank 0's weights), and for a run stopped between its final checkpoint and its record."""
    module.on_load_checkpoint(checkpoint)
    for callback in (evaluation, selection, watch):
        if callback is not None:
            callback.on_load_checkpoint(None, module, checkpoint)  # as Lightning does, before its state
            if callback.state_key in checkpoint["callbacks"]:
                callback.load_state_dict(checkpoint["callbacks"][callback.state_key])
    evaluation.final = {k: v for k, v in evaluation.history[-1].items() if k != "iteration"}


# how often a running attempt rewrites its time into result.json
HEARTBEAT_S = 10.0


class AttemptClock(pl.Callback):
    """The wall time of a run over all its attempts (each start in its folder): `attempt_wall_times_s`
    lists them, `wall_time_s` is their sum. A running attempt rewrites its time into the record every
    HEARTBEAT_S seconds, so one killed without warning (SIGKILL, a lost node) still counts, up to its
    last beat."""

    def __init__(self, record: RunRecord, earlier: list[float]):
        self.record, self.earlier = record, list(earlier)
        self.start = self.beat = time.time()

    def times(self) -> dict:
        attempts = [*self.earlier, round(time.time() - self.start, 3)]
        return {"attempt_wall_times_s": attempts, "wall_time_s": round(sum(attempts), 3)}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.time() - self.beat >= HEARTBEAT_S:
            self.beat = time.time()
            self.record.update(**self.times())


class DiskFull(Exception):
    """A write found its disk full: the message names the file and the space left there, and the way on."""

    def __init__(self, error: OSError, run_dir: Path):
        path = Path(error.filename or run_dir)
        folder = next(p for p in (path, *path.parents) if p.exists())
        free = shutil.disk_usage(folder).free
        super().__init__(f"no space left on the disk writing {path} ({free / 2**20:,.1f} MiB free there); free some "
                         "space and start the run again: it resumes from its last checkpoint")


def stop_on_full_disk(record: RunRecord, error: OSError, times: dict) -> NoReturn:
    """The record says failed, with DiskFull's line, if the disk takes that much; else it stays as it was, whole
    (written atomically). No traceback.txt: the line says it all, and the disk is full."""
    full = DiskFull(error, record.path.parent)
    try:
        record.update(status="failed", error=str(full), **times)
    except OSError:
        pass
    raise full from error
