"""A rank > 0 process of `trainer.strategy=ddp`: `python -m gan_ablate.ddp_worker RUN_DIR`.

Rank 0 (the command the user ran, under Hydra) starts these through Lightning's launcher with
LOCAL_RANK, WORLD_SIZE and the rendezvous address in the environment. They read the run's resolved
config from the record rank 0 wrote in the run folder and train in that same folder, without Hydra.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from gan_ablate.config import TrainConfig
from gan_ablate.record import RESULT_FILE
from gan_ablate.run import SweepInfo, train


def main(run_dir: Path) -> None:
    record = json.loads((run_dir / RESULT_FILE).read_text())
    sweep = SweepInfo(group=record.get("sweep"), job_num=record.get("job_num"), design=record.get("design"),
                      cell=record.get("cell"), reference=record.get("reference"),
                      overrides=record.get("overrides") or [])
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), record["config"])  # typed, as Hydra composes it
    train(cfg, run_dir, sweep)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
