"""result.json: one small record per run, the data every report reads (DESIGN.md property 4).

RunRecord declares every field a record may hold. A field is written when it was given (a record holds only what
its run reached: a skipped run has no history, a single run no sweep), in the order it was given, after
`schema_version`; a field not given reads as its default. Every record is written and read here: writers build it
with RunRecord(...) or the constructors below, readers get one from load_record() / load_records(). A leaf module:
it imports nothing of the package but the atomic write and the metric directions."""
from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Optional

from gan_ablate.atomic import write_atomically
from gan_ablate.metrics.directions import FINAL_METRICS, METRIC_DIRECTIONS  # noqa: F401  (readers import them from here)

RESULT_FILE = "result.json"
STATUSES = ("running", "ok", "diverged", "skipped", "failed")
# the layout of result.json this code writes; a record without the field was written before it existed: version 1.
# Raise it when a field changes meaning or goes, so that an older reader refuses the record instead of misreading it.
SCHEMA_VERSION = 1


class NewerRecord(ValueError):
    """A record written by a newer gan-ablate, whose layout this one cannot know."""


BASELINE = "baseline"  # the cell of no tricks, and the reference of a sweep that names none


def cell_label(tricks: list[str]) -> str:
    """The name of the cell a trick combination makes: its tricks joined by '+', or BASELINE for none."""
    return "+".join(tricks) or BASELINE


def run_name(tricks: list[str], seed: int) -> str:
    return f"{cell_label(tricks)}-s{seed}"


@dataclass(init=False)
class RunRecord:
    """One run's result.json. RunRecord(run_dir, **fields): the keys are result.json's (`data` for the attribute
    `dataset`); an undeclared key is refused. `writable` is False on DDP ranks other than 0 (they share the run
    folder with rank 0); `data` is the record as result.json holds it, a live mapping."""
    schema_version: int = SCHEMA_VERSION
    # what ran
    name: str = ""
    tricks: list[str] = field(default_factory=list)
    seed: Optional[int] = None
    dataset: Optional[str] = field(default=None, metadata={"key": "data"})  # `data` is the mapping view
    loss: Optional[str] = None
    loss_revision: int = 1               # records before revisions existed ran revision 1
    uses_mode_labels: Optional[bool] = None  # None: not recorded (older records), derive it from tricks and data
    trick_revisions: dict[str, int] = field(default_factory=dict)
    # where it sits in a sweep (a single run has none of these)
    sweep: Optional[str] = None
    job_num: Optional[int] = None
    design: Optional[str] = None
    cell: Optional[str] = None
    reference: Optional[str] = None      # the cell this one is compared with
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    # how it went
    status: Optional[str] = None         # one of STATUSES
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)   # net -> metric -> final value
    history: list[dict[str, Any]] = field(default_factory=list)          # the periodic evaluations
    attempts: int = 0
    resumed_from_iteration: Optional[int] = None
    attempt_wall_times_s: list[float] = field(default_factory=list)
    wall_time_s: Optional[float] = None
    extractor: Optional[str] = None
    extractor_id: Optional[str] = None
    extractor_info: Optional[dict[str, Any]] = None
    fid_reference: Optional[str] = None
    error: Optional[str] = None          # failed: what raised
    interrupted_at_iteration: Optional[int] = None
    note: Optional[str] = None
    iterations: Optional[int] = None
    primary: Optional[str] = None        # the generator reports judge the run on (raw or ema)
    failure_flags: list[dict[str, Any]] = field(default_factory=list)
    diverged_at_iteration: Optional[int] = None
    reason: Optional[str] = None         # diverged or skipped: why
    eval_repeats: Optional[dict[str, list[dict[str, float]]]] = None
    final: Optional[dict[str, dict[str, float]]] = None  # with best selection: the final G's metrics
    best_selected: Optional[dict[str, float]] = None
    best_selected_iteration: Optional[int] = None
    best_selected_on: Optional[dict[str, Any]] = None
    # set by whoever wrote the record without the run's help
    slurm_job_id: Optional[str] = None   # the SLURM launcher, for a job that never ended on its own
    wandb_run: Optional[str] = None      # a record read back from W&B: the run's address

    def __init__(self, run_dir: Optional[Path] = None, **record: Any):
        object.__setattr__(self, "_given", {})  # result.json keys given so far, in order
        for f in fields(self):
            object.__setattr__(self, f.name, f.default if f.default_factory is MISSING else f.default_factory())
        self.run_dir = None if run_dir is None else Path(run_dir)  # None: a record read from W&B
        self.writable = True
        version = record.get("schema_version", 1)
        if version > SCHEMA_VERSION:
            raise NewerRecord(f"{self.path}: schema_version {version} is newer than this gan-ablate reads "
                              f"({SCHEMA_VERSION}); read it with the gan-ablate that wrote it, or a newer one")
        for key, value in record.items():
            self._set_field(key, value)

    @property
    def path(self) -> Path:
        return Path(self.run_dir or ".") / RESULT_FILE

    def _set_field(self, key: str, value: Any) -> None:
        if key not in ATTRIBUTE:
            raise TypeError(f"{self.path}: result.json has no field {key!r} (RunRecord declares its fields)")
        setattr(self, ATTRIBUTE[key], value)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in KEY:  # a declared field set is a field given: it is written
            self._given[KEY[name]] = None

    @property
    def data(self) -> "RecordFields":
        return RecordFields(self)

    @property
    def cell_name(self) -> str:
        """The cell the run counts in: its sweep's label, or (outside a design) its tricks'."""
        return self.cell or cell_label(self.tricks)

    def to_json(self) -> dict[str, Any]:
        keys = dict.fromkeys(["schema_version", *self._given])
        return {key: getattr(self, ATTRIBUTE[key]) for key in keys}

    def update(self, **record: Any) -> "RunRecord":
        if "status" in record and record["status"] not in STATUSES:
            raise ValueError(f"status {record['status']!r} is not one of {STATUSES}")
        for key, value in record.items():
            self._set_field(key, value)
        self.write()
        return self

    def write(self) -> None:
        """Atomically: a reader sees the old record or the new one, never half of one."""
        if not self.writable:
            return
        text = json.dumps(self.to_json(), indent=2, default=str)
        write_atomically(self.path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def skipped(cls, run_dir: Path, tricks: list[str], seed: int, reason: str, **sweep: Any) -> "RunRecord":
        """The record of a cell refused before training (its tricks conflict): its place in the sweep, and why."""
        return cls(run_dir, name=run_name(tricks, seed), tricks=list(tricks), seed=seed, **sweep, status="skipped",
                   reason=reason, metrics={})

    @classmethod
    def failed_job(cls, run_dir: Path, overrides: list[str], error: str, **written_by: Any) -> "RunRecord":
        """The record of a job that ended without writing its own end (a SLURM job cancelled or timed out): the
        job's record if it started one, else what its overrides say of its cell; status failed, with `error`."""
        path = Path(run_dir) / RESULT_FILE
        record = load_record(path) if path.exists() else cls(run_dir, **fields_from_overrides(overrides))
        record.update(status="failed", error=error, **written_by)
        return record


KEY = {f.name: f.metadata.get("key", f.name) for f in fields(RunRecord)}  # attribute -> result.json key
ATTRIBUTE = {key: name for name, key in KEY.items()}


class RecordFields(MutableMapping):
    """A record as result.json holds it (the fields given, `schema_version` first), live: a key set here is the
    record's field set, so that code that builds the record as a dict still writes declared fields only."""

    def __init__(self, record: RunRecord):
        self.record = record

    def __getitem__(self, key: str) -> Any:
        if key != "schema_version" and key not in self.record._given:
            raise KeyError(key)
        return getattr(self.record, ATTRIBUTE[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.record._set_field(key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("a result.json field once given stays in the record")

    def __iter__(self) -> Iterator[str]:
        return iter(self.record.to_json())

    def __len__(self) -> int:
        return len(self.record.to_json())


def fields_from_overrides(overrides: list[str]) -> dict[str, Any]:
    """What a job's overrides say about its cell, for a record written without the job's help
    (a SLURM job cancelled before it started)."""
    found: dict[str, Any] = {"overrides": list(overrides), "tricks": []}
    for override in overrides:
        key, _, value = override.partition("=")
        value = value.strip("'\"")
        if key == "trick":
            found["tricks"] = [t for t in value.strip("[]").split(",") if t]
        elif key == "seed":
            found["seed"] = int(value)
        elif key in ("ablation.cell", "ablation.reference"):
            found[key.split(".")[1]] = value
    found["name"] = run_name(found["tricks"], found.get("seed", 0))
    return found


def load_record(path: Path) -> RunRecord:
    """The record in `path` (a result.json); one written before records had a schema_version is version 1. Raises
    NewerRecord, naming the file, for a record of a newer layout."""
    path = Path(path)
    return RunRecord(path.parent, **json.loads(path.read_text()))


def load_records(root: Path) -> list[RunRecord]:
    """Every result.json below `root` (a sweep folder or a single run folder)."""
    return [load_record(path) for path in sorted(Path(root).rglob(RESULT_FILE))]
