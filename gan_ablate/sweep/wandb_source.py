"""A sweep's records read back from W&B (online), in the shape of result.json, so the report and the
notebook treat W&B runs and local folders alike. Each gan-ablate run carries its cell, design, seed
and tricks in its config, and its status and final metrics in its summary (final/<G>/<metric>)."""
from __future__ import annotations

from typing import Any, Iterable

from gan_ablate.record import RunRecord

_STATE_STATUS = {"running": "running", "crashed": "failed", "failed": "failed", "killed": "failed"}


def record_of(run: Any) -> RunRecord:
    """One wandb.apis.public.Run as a record (one with no run folder)."""
    config, summary = dict(run.config), dict(run.summary)
    metrics: dict[str, dict[str, float]] = {}
    for key, value in summary.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "final":
            metrics.setdefault(parts[1], {})[parts[2]] = value
    status = summary.get("status") or _STATE_STATUS.get(run.state, "ok" if metrics else "running")
    tricks = list(config.get("trick") or {})
    return RunRecord(None, name=run.name, tricks=tricks, seed=config.get("seed"), cell=config.get("cell"),
                     design=config.get("design"), reference=(config.get("ablation") or {}).get("reference"),
                     sweep=run.group, status=status, metrics=metrics,
                     wandb_run=run.url if hasattr(run, "url") else run.id, error=summary.get("error"))


def wandb_records(project: str, group: str, api: Any = None) -> list[RunRecord]:
    """Every run of `group` (a sweep folder, as gan-ablate names groups) in `project` ("entity/project")."""
    if api is None:
        import wandb
        api = wandb.Api()
    runs: Iterable[Any] = api.runs(project, filters={"group": group})
    return [record_of(run) for run in runs]
