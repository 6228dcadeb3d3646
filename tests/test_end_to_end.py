"""Whole runs through train.py and train(): records, sweeps, W&B offline files. Marked slow."""
import csv
import math
import time

import pytest
from conftest import ROOT, image_folders, make_cfg, not_inception_weights, run_train_py

from gan_ablate.record import load_record, load_records
from gan_ablate.run import train
from gan_ablate.wandb_offline import find_run_file, read_history, read_metric_definitions, read_summary

pytestmark = pytest.mark.slow
FAST = ["logger=csv", "trainer.enable_progress_bar=false", "metrics.n_samples=500"]


def _check_mode_metrics(record):
    for net in ("raw", "ema"):
        m = record.metrics[net]
        assert set(m) == {"modes", "hq", "reverse_kl", "precision", "recall", "density", "coverage"}
        assert 0 <= m["modes"] <= 8 and 0.0 <= m["hq"] <= 1.0 and math.isfinite(m["reverse_kl"])


def test_multirun_one_trick_per_job(tmp_path):
    result = run_train_py("-m", "trick=label_smoothing,instance_noise,spectral_norm",
                          "trainer.max_steps=60", "metrics.every=30", *FAST, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = load_records(tmp_path)
    assert sorted(tuple(r.tricks) for r in records) == [("instance_noise",), ("label_smoothing",),
                                                          ("spectral_norm",)]
    for r in records:
        assert r.status == "ok" and r.iterations == 60 and r.extractor == "mode_metrics"
        assert r.sweep == str(tmp_path) and r.config["trick"][r.tricks[0]]
        _check_mode_metrics(r)
        assert [h["iteration"] for h in r.history] == [30, 60]


def test_multirun_trick_lists_times_seeds(tmp_path):
    result = run_train_py("-m", "trick=[],[label_smoothing,spectral_norm]", "seed=0,1",
                          "trainer.max_steps=20", *FAST, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    cells = sorted((tuple(r.tricks), r.seed) for r in load_records(tmp_path))
    assert cells == [((), 0), ((), 1), (("label_smoothing", "spectral_norm"), 0),
                     (("label_smoothing", "spectral_norm"), 1)]
    names = sorted(r.name for r in load_records(tmp_path))
    assert names == ["baseline-s0", "baseline-s1", "label_smoothing+spectral_norm-s0",
                     "label_smoothing+spectral_norm-s1"]


def test_mnist_trains_the_dcgan_and_writes_a_record(tmp_path):
    result = run_train_py("data=mnist", "trainer.max_steps=10", "data.batch_size=16", "metrics.extractor=none", *FAST,
                          f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = load_record(tmp_path / "result.json")
    assert record.status == "ok" and record.dataset == "mnist"
    assert record.config["model"]["name"] == "dcgan" and record.iterations == 10
    assert (tmp_path / "samples" / "samples_0000010.png").stat().st_size > 1000


def test_wandb_offline_file_holds_the_logged_losses_and_grad_norms(tmp_path):
    cfg = make_cfg("logger=wandb", "logger.mode=offline", "trainer.max_steps=30",
                   "trainer.log_every_n_steps=10", "monitor.grad_norm_every=10", "metrics.every=0")
    train(cfg, tmp_path)
    # wandb's service process writes the run file; give a loaded machine a moment to finish it
    deadline = time.time() + 60
    while True:
        history = [row for row in read_history(find_run_file(tmp_path)) if "loss/d" in row]
        if len(history) >= 3 or time.time() > deadline:
            break
        time.sleep(1)
    debug = tmp_path / "wandb" / "debug-internal.log"
    assert history, debug.read_text()[-3000:] if debug.exists() else "no wandb debug log"
    with open(tmp_path / "csv" / "metrics.csv") as f:
        csv_rows = [row for row in csv.DictReader(f) if row.get("loss/d")]
    assert [row["iteration"] for row in history] == [0, 10, 20]
    assert len(csv_rows) == 3
    for row, csv_row in zip(history, csv_rows):
        for key in ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g"):
            assert row[key] == pytest.approx(float(csv_row[key]), rel=1e-6)
            assert math.isfinite(row[key])
    record = load_record(tmp_path / "result.json")
    assert record.status == "ok"
    # summary metrics W&B's tables compare cells by: the final values and status, and the per-metric rules
    summary = read_summary(find_run_file(tmp_path))
    assert summary["status"] == "ok" and summary["final/raw/modes"] == record.metrics["raw"]["modes"]
    definitions = read_metric_definitions(find_run_file(tmp_path))
    assert definitions["eval/raw/fid"] == "min" and definitions["eval/ema/modes"] == "last"


def test_a_failing_or_refused_cell_does_not_stop_the_sweep(tmp_path):
    good, bad = image_folders(tmp_path)
    sweep = tmp_path / "sweep"
    # the folder of unreadable images is refused before training; the broken weights fail a job that ran
    result = run_train_py("-m", "data=image_folder", f"data.root={good},{bad}", "data.image_size=8",
                          "data.channels=1", "model.z_dim=8", "data.batch_size=4", "metrics.extractor=none,inception",
                          f"metrics.inception_weights={not_inception_weights(tmp_path)}",
                          "trainer.max_steps=3", *FAST, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 1 and "1 job(s) failed" in result.stderr
    statuses = sorted(r.status for r in load_records(sweep))
    assert statuses == ["failed", "ok", "skipped", "skipped"]
    failed = next(r for r in load_records(sweep) if r.status == "failed")
    assert "UnpicklingError" in failed.error and failed.config["data"]["root"] == str(good)
    assert "Traceback" in (sweep / str(failed.job_num) / "traceback.txt").read_text()
    skipped = [r for r in load_records(sweep) if r.status == "skipped"]
    assert all(f"the first: {bad / 'broken.png'}" in r.reason for r in skipped)


def test_analysis_notebook_runs_on_a_tiny_sweep(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    result = run_train_py("-m", "trick=[],[instance_noise]", "seed=0,1", "trainer.max_steps=10", *FAST,
                          f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-3000:]
    monkeypatch.setenv("GAN_ABLATE_SWEEP", str(tmp_path / "sweep"))
    nb = nbformat.read(ROOT / "notebooks" / "ablation_analysis.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "4 runs, 2 cells" in printed
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    table_html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "instance_noise" in table_html and "baseline" in table_html and "reference" in table_html
    assert "adjusted p (Holm)" in table_html and "failure rate [95% Wilson]" in table_html  # the report's statistics
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "modes (raw G)" in markdown
    # the report's effects: instance_noise is the one trick that varies, so a main effect and no interaction
    assert "Effects on modes (raw G)" in markdown and "effect (+1 minus -1)" in table_html
    assert "effects on modes, ranked by size" in markdown
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 9  # 3 mode metrics and their 3 effect plots, losses, evaluation curves, samples


@pytest.mark.parametrize("data,extra", [("ring8", ["trainer.max_steps=20"]),
                                        ("mnist", ["trainer.max_steps=3", "data.batch_size=8", "model.g_channels=8",
                                                   "model.d_channels=8", "metrics.extractor=none"])])
def test_every_trick_option_runs_or_is_skipped_with_a_reason(tmp_path, data, extra):
    result = run_train_py("-m", "trick=glob(*)", f"data={data}", *extra, *FAST, f"hydra.sweep.dir={tmp_path}",
                          timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    records = load_records(tmp_path)
    assert len(records) == len(list((ROOT / "gan_ablate" / "conf" / "trick").glob("*.yaml")))
    for r in records:
        assert r.status in ("ok", "skipped"), (r.name, r.error)
        if r.status == "skipped":
            # a conflict, a need of the data, or a schedule that cannot act in 20 iterations (checkpoint_swap)
            assert any(why in r.reason for why in ("conflicts with", "needs", "not within trainer.max_steps"))
    assert sum(r.status == "ok" for r in records) >= len(records) - 4


def test_conflicting_tricks_exit_before_training_naming_both(tmp_path):
    result = run_train_py("trick=[minibatch_discrimination,wgan_gp]", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "minibatch_discrimination" in result.stderr and "wgan_gp" in result.stderr
    assert not (tmp_path / "result.json").exists()


def test_image_runs_record_fid_is_kid_for_raw_and_ema_with_the_extractor(tmp_path):
    result = run_train_py("data=digits", "trainer.max_steps=20", "metrics.every=10", "metrics.image_samples=300",
                          "metrics.kid_subset_size=100", f"metrics.cache_dir={tmp_path / 'cache'}", *FAST,
                          f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = load_record(tmp_path / "run" / "result.json")
    assert record.extractor == "domain" and record.extractor_id.startswith("domain:digits:")
    assert record.extractor_info["test_accuracy"] >= 0.9
    for net in ("raw", "ema"):
        m = record.metrics[net]
        assert {"fid", "kid", "is", "precision", "recall", "density", "coverage", "n_samples"} <= set(m)
        assert m["n_samples"] == 300
        assert m["fid"] > 0 and m["is"] >= 1.0
    assert [h["iteration"] for h in record.history] == [10, 20]
    assert list((tmp_path / "cache" / "real-stats").rglob("*"))  # real statistics computed once, cached


def test_missing_inception_weights_stop_before_training(tmp_path):
    result = run_train_py("data=mnist", "metrics.extractor=inception", "metrics.inception_weights=/nonexistent",
                          f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "metrics.inception_weights" in result.stderr
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize("points", ["fixed", "per_seed"])  # per_seed: the stacked_mnist_pacgan presets' draw
def test_stacked_mnist_run_records_modes_and_kl(tmp_path, points):
    result = run_train_py("data=stacked_mnist", f"data.points={points}", "trainer.max_steps=5", "data.n_points=1000",
                          "data.batch_size=16",
                          "model.g_channels=8", "model.d_channels=8", "metrics.stacked_samples=500",
                          f"metrics.cache_dir={tmp_path / 'cache'}", *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = load_record(tmp_path / "run" / "result.json")
    assert record.extractor == "domain" and record.extractor_id.startswith("stacked-modes/domain:mnist:")
    for net in ("raw", "ema"):
        m = record.metrics[net]
        assert 1 <= m["modes"] <= 500 and 0.0 <= m["kl"] <= math.log(1000) + 1e-9 and m["n_samples"] == 500


def test_evaluation_does_not_change_the_training_curve(tmp_path):
    """Same seed, with and without evaluation every 5 iterations: identical logged losses."""
    curves = []
    for every in (0, 5):
        run_dir = tmp_path / f"every{every}"
        train(make_cfg("data=digits", "trainer.max_steps=20", "trainer.log_every_n_steps=1", f"metrics.every={every}",
                       "metrics.image_samples=100", "metrics.kid_subset_size=50", "model.g_channels=8",
                       "model.d_channels=8", f"metrics.cache_dir={tmp_path / 'cache'}"), run_dir)
        with open(run_dir / "csv" / "metrics.csv") as f:
            curves.append([(row["loss/d"], row["loss/g"]) for row in csv.DictReader(f) if row.get("loss/d")])
    assert len(curves[0]) == 20 and curves[0] == curves[1]
