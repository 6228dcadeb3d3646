"""The benchmark scripts run and print their tables (their numbers are read by people, never asserted)."""
import subprocess
import sys

import pytest

from conftest import ROOT


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_bench_overhead_prints_a_ratio_row_per_logging_mode():
    out = run_script("scripts/bench_overhead.py", "--steps", "30", "--warmup", "5", "--reps", "1", "--cases", "ring8 / MLP")
    rows = [line for line in out.splitlines() if line.startswith("| ring8 / MLP |")]
    assert len(rows) == 5 and "plain PyTorch loop" in rows[0]
    assert all(float(row.split("|")[-2]) > 0 for row in rows)  # the ratio column


@pytest.mark.slow
def test_bench_metrics_compares_cached_and_recomputed_real_features():
    out = run_script("scripts/bench_metrics.py", "data=digits", "metrics.image_samples=200", "metrics.kid_subset_size=50",
                     "--reps", "1", "--train-steps", "5")
    assert "| real features cached |" in out and "| real features recomputed |" in out
    assert "speed-up from the cache" in out and "% of the run" in out
