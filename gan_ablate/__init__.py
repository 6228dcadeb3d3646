"""Which GAN training tricks actually help? Hydra-configured ablations with evidence (README.md).

Where each concern lives (no module imports one that imports it back: tests/test_import_cycles.py):

- Entry and configuration: `cli.py` (train.py's Hydra main, the run folder's .hydra files, skipped records),
  `config.py` (the typed schemas: the one source of every default, and the one range check), `conf/` (the groups:
  each option states only what it changes), `validation.py` (everything refused before training; all the sweepers
  import).
- One run: `run.py` (train(): the steps of one attempt), `run_folder.py` (resume rules, the config fingerprint,
  wall time over attempts, a full disk), `evaluators.py` (what evaluation a kind of data gets, in one dispatch),
  `run_loggers.py` (CSV and W&B set-up, W&B summaries), `loggers.py` (the W&B logger fitted to a run folder),
  `trainer.py` (Lightning's Trainer and strategy), `distributed.py` and `ddp_worker.py` (data parallelism).
- Training: `module.py` (GANModule: the G/D step, naming no trick), `losses.py` (pure losses of D's logits),
  `tricks/` (one class per trick; `surface.py` is all a trick sees of the module; `loss_recipes.py` what a loss does
  besides its value: clipping, penalties, the autoencoder D, BEGAN's k_t), `penalties.py`, `nets/`, `data/`.
- Measuring: `metrics/` (mode coverage, FID/KID/IS, precision/recall/density/coverage; `directions.py` says which
  way is better), `callbacks/` (evaluation, best-G selection, the failure watch, checkpoints), `plots.py`,
  `interpolation.py`.
- Records and reports: `record.py` (result.json's declared schema, with schema_version, written and read only
  here), `revisions.py` (which mechanism revision a record ran with), `atomic.py`, `sweep/` (designs, statistics,
  effects, seed plans, the report; `wandb_source.py` reads records back from W&B), `report_cli.py`,
  `wandb_offline.py`.
"""
