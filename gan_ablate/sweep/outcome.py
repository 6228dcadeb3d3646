"""How a sweep's jobs ended, as the sweepers see it: one failing cell never stops the others, but the
multirun's exit code must still say that something failed."""
from __future__ import annotations

from typing import Iterable, Sequence


class CellsFailed(Exception):
    """Raised by a sweeper after every job has run, when some of them failed (exit code 1)."""

    def __init__(self, failed: Sequence[str]):
        self.failed = list(failed)
        super().__init__(f"{len(self.failed)} job(s) failed: {', '.join(self.failed)}")


def failed_jobs(results: Iterable) -> list[str]:
    """Working folders of the jobs (hydra JobReturns) that raised or recorded status failed."""
    from hydra.core.utils import JobStatus

    failed = []
    for r in results:
        if r.status == JobStatus.FAILED or (r.status == JobStatus.COMPLETED and r._return_value == "failed"):
            failed.append(str(r.working_dir or " ".join(r.overrides or [])))
    return failed
