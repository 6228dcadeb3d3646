# Every target that runs code installs first when .venv is missing or stale.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STEPS ?= 1500
# Every trick of the `trick` group but large_batch, which replaces the protocols' batch of 100 by 1,024 (see
# docs/results.md); tests/test_results_doc.py keeps this list whole.
RESULTS_DIR ?= multirun/results

.PHONY: setup test test-fast test-slurm bench demo report results mutants clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Test files run in parallel, each whole in one worker (its module fixtures run once); every test that starts train.py
# names its own run folder, and the shared caches under ~/.cache/gan-ablate are written atomically.
TEST_WORKERS ?= 2
test: setup  ## the whole suite, slow end-to-end tests included (TEST_WORKERS=2 processes)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests

test-fast: setup  ## unit tests only
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests -m "not slow and not slurm"

test-slurm: setup  ## as root: a one-node SLURM cluster on this machine, the SLURM tests, the cluster stopped
	scripts/slurm_local_cluster.sh start
	GAN_ABLATE_SLURM_TEST=1 $(PY) -m pytest tests/test_slurm.py -m slurm; \
		status=$$?; scripts/slurm_local_cluster.sh stop; exit $$status

bench: setup  ## GANModule vs a plain PyTorch loop, side by side: a markdown table of per-iteration ratios
	$(PY) scripts/bench_overhead.py

# one torch thread per run: the 2-D nets are tiny, and with two threads on a busy 2-core machine a run fell from
# ~100 to 0.6 iterations/s (threads waiting on each other)
demo: setup  ## a real small ablation on ring8: baseline and three tricks added one at a time, three seeds, then the report
	OMP_NUM_THREADS=1 $(PY) train.py -m hydra/sweeper=ablation ablation.tricks=[label_smoothing,instance_noise,spectral_norm] \
		ablation.design=add_one ablation.seeds=3 trainer.max_steps=$(DEMO_STEPS) logger=csv hydra.sweep.dir=multirun/demo
	$(PY) scripts/report.py multirun/demo

results: setup  ## docs/results.md: screen, add-one, PacGAN rows, stacked MNIST regularisers, best stack, learning curve (85 min on 2 cores when last run)
	$(PY) scripts/make_results.py --dir $(RESULTS_DIR) --out docs/results.md

report: setup  ## make report DIR=multirun/<date>/<time>
	$(PY) scripts/report.py $(DIR)

# one worker per core (each test process runs torch on one thread). MUTANTS='"gan_ablate.penalties*"'
# runs a subset (mutmut's name patterns); the page then says which files were not run.
MUTANT_WORKERS ?= $(shell nproc)
MUTMUT := $(VENV)/bin/mutmut run --max-children $(MUTANT_WORKERS) $(MUTANTS)
mutants: setup  ## mutation testing of the tricks, losses, penalties, module, layers and mode metrics (mutmut, hours), then docs/mutation.md
	start=$$(date +%s) && OMP_NUM_THREADS=1 $(MUTMUT) && \
		$(PY) scripts/mutation_report.py --command '$(MUTMUT)' --wall-seconds $$(( $$(date +%s) - start ))

clean:
	rm -rf outputs multirun .pytest_cache
