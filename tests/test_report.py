"""Sweep aggregation: seed statistics per cell and the report over records written by hand."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from scipy import stats

from gan_ablate.sweep.aggregate import group_cells, summarise


def test_summary_matches_scipy():
    values = [6.0, 7.0, 8.0, 5.0]
    s = summarise(values)
    assert s.mean == pytest.approx(6.5)
    assert s.se == pytest.approx(stats.sem(values))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(summarise([3.0]).se)


def _write(folder, folder_name, **record):
    (folder / folder_name).mkdir(parents=True)
    (folder / folder_name / "result.json").write_text(json.dumps(record))


def test_report_groups_cells_and_lists_runs_without_results(tmp_path):
    for seed, modes in enumerate([6, 8]):
        _write(tmp_path, f"b{seed}", tricks=[], seed=seed, status="ok", extractor="mode_metrics",
               metrics={"raw": {"modes": modes}, "ema": {"modes": modes + 1}})
        _write(tmp_path, f"s{seed}", tricks=["spectral_norm"], seed=seed, status="ok", extractor="mode_metrics",
               metrics={"raw": {"modes": 8}, "ema": {"modes": 8}})
    _write(tmp_path, "x", name="label_smoothing-s0", tricks=["label_smoothing"], seed=0, status="failed",
           error="RuntimeError: boom", metrics={})
    _write(tmp_path, "r", name="spectral_norm-s2", tricks=["spectral_norm"], seed=2, status="running", metrics={})
    from gan_ablate.record import load_records
    cells = group_cells(load_records(tmp_path))
    assert list(cells) == ["baseline", "label_smoothing", "spectral_norm"]
    assert cells["baseline"].values("raw", "modes") == [6.0, 8.0]
    assert cells["spectral_norm"].values("raw", "modes") == [8.0, 8.0]  # the running one is left out

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "| baseline | raw | 2 | 7 | 1 |" in out
    assert "| spectral_norm | ema | 2 | 8 |" in out
    assert "| label_smoothing-s0 | failed | RuntimeError: boom |" in out
    assert "spectral_norm-s2 | running" in out
    assert (tmp_path / "report.md").read_text().startswith("# Ablation report")
