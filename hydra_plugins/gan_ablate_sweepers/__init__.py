"""gan-ablate's Hydra sweepers (`hydra/sweeper=grid`, the default, and `hydra/sweeper=ablation`)
and its SLURM launcher (`hydra/launcher=slurm`). Hydra finds them by scanning `hydra_plugins`."""
