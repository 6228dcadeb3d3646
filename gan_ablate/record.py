"""result.json: one small record per run, the data every report reads (DESIGN.md property 4)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gan_ablate.atomic import write_atomically
from gan_ablate.metrics.directions import FINAL_METRICS, METRIC_DIRECTIONS  # noqa: F401  (readers import them from here)

RESULT_FILE = "result.json"
STATUSES = ("running", "ok", "diverged", "skipped", "failed")


# data whose class labels are the modes the mode metrics count: a trick that reads them is told the answer
LABELS_ARE_MODES = ("ring8", "grid25", "stacked_mnist")


def uses_mode_labels(tricks: list[str], data: str | None) -> bool:
    """Whether a run's tricks read the labels its metrics count (such a cell is set apart in reports)."""
    from gan_ablate.tricks import TRICKS

    return data in LABELS_ARE_MODES and any(TRICKS[t].reads_labels for t in tricks if t in TRICKS)


def trick_revisions(tricks: list[str]) -> dict[str, int]:
    """The revision of each trick's mechanism the run used (records before revisions existed: 1)."""
    from gan_ablate.tricks import TRICKS

    return {t: TRICKS[t].revision for t in tricks if t in TRICKS}


def loss_revision(loss: str) -> int:
    """The revision of the loss's mechanism the run used (records before revisions existed: 1)."""
    from gan_ablate.losses import LOSSES

    return LOSSES[loss].revision if loss in LOSSES else 1


def stale_tricks(record: dict) -> dict[str, str]:
    """Trick (or `loss=<name>`) -> what was fixed since, for each trick and for the loss the record ran at an older
    revision of (a loss is a trick that says how the nets are scored)."""
    from gan_ablate.losses import LOSSES
    from gan_ablate.tricks import TRICKS

    ran = record.get("trick_revisions") or {}
    stale = {t: TRICKS[t].revision_note for t in record.get("tricks") or []
             if t in TRICKS and ran.get(t, 1) < TRICKS[t].revision}
    loss = record.get("loss")
    if loss in LOSSES and record.get("loss_revision", 1) < LOSSES[loss].revision:
        stale[f"loss={loss}"] = LOSSES[loss].revision_note
    return stale


def run_name(tricks: list[str], seed: int) -> str:
    return f"{'+'.join(tricks) or 'baseline'}-s{seed}"


def fields_from_overrides(overrides: list[str]) -> dict[str, Any]:
    """What a job's overrides say about its cell, for a record written without the job's help
    (a SLURM job cancelled before it started)."""
    fields: dict[str, Any] = {"overrides": list(overrides), "tricks": []}
    for override in overrides:
        key, _, value = override.partition("=")
        value = value.strip("'\"")
        if key == "trick":
            fields["tricks"] = [t for t in value.strip("[]").split(",") if t]
        elif key == "seed":
            fields["seed"] = int(value)
        elif key in ("ablation.cell", "ablation.reference"):
            fields[key.split(".")[1]] = value
    fields["name"] = run_name(fields["tricks"], fields.get("seed", 0))
    return fields


class RunRecord:
    def __init__(self, run_dir: Path, **fields: Any):
        self.path = Path(run_dir) / RESULT_FILE
        self.data: dict[str, Any] = dict(fields)
        self.writable = True  # False on DDP ranks other than 0: they share the run folder with rank 0

    def update(self, **fields: Any) -> "RunRecord":
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status {fields['status']!r} is not one of {STATUSES}")
        self.data.update(fields)
        self.write()
        return self

    def write(self) -> None:
        """Atomically: a reader sees the old record or the new one, never half of one."""
        if not self.writable:
            return
        write_atomically(self.path, lambda tmp: Path(tmp).write_text(json.dumps(self.data, indent=2, default=str)))


def load_records(root: Path) -> list[dict]:
    """Every result.json below `root` (a sweep folder or a single run folder)."""
    records = []
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        with open(path) as f:
            rec = json.load(f)
        rec["run_dir"] = str(path.parent)
        records.append(rec)
    return records
