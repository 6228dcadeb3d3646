"""hydra/launcher=slurm: hydra-submitit-launcher's SLURM launcher, except that one job ending badly
(cancelled, killed for memory, node failure) is recorded as failed instead of aborting the sweep."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]})
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items()
            if k not in ("submitit_folder", "max_num_timeout")})

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params: List[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        log.info("submitted SLURM job array %s (%d jobs)", jobs[0].job_id.split("_")[0] if jobs else "-", len(jobs))
        return [self.result(job, sweep_dir / str(idx), overrides)
                for job, (overrides, _, idx, _, _) in zip(jobs, job_params)]

    @staticmethod
    def result(job, job_dir: Path, overrides: list[str]) -> JobReturn:
        try:
            return job.results()[0]
        except Exception as e:  # submitit: UncompletedJobError (cancelled, timed out...), FailedJobError
            from gan_ablate.record import RunRecord

            state = getattr(job, "state", "?")
            reason = f"SLURM job {job.job_id} ended {state}: {str(e).splitlines()[0]}"
            log.error("job %s: %s", job_dir.name, reason)
            RunRecord.failed_job(job_dir, overrides, reason, slurm_job_id=job.job_id)
            ret = JobReturn(overrides=overrides, working_dir=str(job_dir), status=JobStatus.COMPLETED)
            ret.return_value = "failed"
            return ret
