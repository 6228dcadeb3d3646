"""Config nodes of the plugins, registered when Hydra scans the plugins (no heavy imports here)."""
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.gan_ablate_sweepers.sweepers.GridSweeper"
    max_batch_size: Optional[int] = None


@dataclass
class AblationSweeperConf:
    """The design itself is the `ablation:` node of the run config (so each job sees it too)."""
    _target_: str = "hydra_plugins.gan_ablate_sweepers.sweepers.AblationSweeper"
    max_batch_size: Optional[int] = None


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="gan_ablate")
ConfigStore.instance().store(group="hydra/sweeper", name="ablation", node=AblationSweeperConf, provider="gan_ablate")
