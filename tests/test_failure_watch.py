"""failure_watch: each flag fires on a crafted series, and only then; NaN ends a run as diverged."""
import json
import math

import pytest
from conftest import make_cfg

from gan_ablate.callbacks.failure_watch import FailureWatch
from gan_ablate.run import train


def feed(watch, rows):
    flags = []
    for i, row in enumerate(rows):
        flags += [e.flag for e in watch.update(i, row)]
    return flags


def healthy(n=30):
    return [{"loss/d": 1.3 + 0.01 * (i % 3), "loss/g": 0.7 + 0.02 * (i % 2), "grad_norm/d": 1.0, "grad_norm/g": 0.5}
            for i in range(n)]


def test_a_healthy_series_raises_nothing():
    assert feed(FailureWatch(window=5), healthy()) == []


def test_d_loss_zero_needs_a_whole_window():
    rows = healthy(5) + [{"loss/d": 1e-5, "loss/g": 5.0 + (i % 2)} for i in range(4)] + healthy(2)
    assert feed(FailureWatch(window=5), rows) == []  # 4 in a row: not yet
    rows = healthy(5) + [{"loss/d": 1e-5, "loss/g": 5.0 + (i % 2)} for i in range(5)]
    assert feed(FailureWatch(window=5), rows) == ["d_loss_zero"]


def test_grad_norm_over_100():
    rows = healthy(3) + [{"loss/d": 1.3, "loss/g": 0.7, "grad_norm/d": 150.0}] + healthy(3)
    watch = FailureWatch()
    assert feed(watch, rows) == ["grad_norm_high"]
    assert watch.events[0].iteration == 3 and "grad_norm/d=150" in watch.events[0].detail


def test_g_loss_falling_steadily_while_d_wins():
    falling = [{"loss/d": 0.2, "loss/g": 3.0 - 0.1 * i} for i in range(8)]
    assert feed(FailureWatch(window=5), falling) == ["g_loss_falling_while_d_wins"]
    d_not_winning = [{"loss/d": 1.3, "loss/g": 3.0 - 0.1 * i} for i in range(8)]
    assert feed(FailureWatch(window=5), d_not_winning) == []
    not_steady = [{"loss/d": 0.2, "loss/g": 3.0 - 0.1 * i + (0.5 if i == 4 else 0)} for i in range(8)]
    assert feed(FailureWatch(window=5), not_steady) == []


def test_non_finite_marks_divergence():
    watch = FailureWatch()
    assert feed(watch, healthy(3) + [{"loss/d": math.nan, "loss/g": 0.7}]) == ["non_finite"]
    assert watch.diverged
    watch = FailureWatch()
    assert feed(watch, [{"loss/d": 1.0, "grad_norm/g": math.inf}]) == ["non_finite"]


def test_a_nan_run_ends_early_with_status_diverged(tmp_path):
    cfg = make_cfg("optim.d.name=sgd", "optim.d.lr=1e30", "optim.g.name=sgd", "optim.g.lr=1e30",
                   "trainer.max_steps=200", "trainer.log_every_n_steps=1", "metrics.every=0")
    train(cfg, tmp_path)
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == "diverged"
    assert record["iterations"] < 200
    assert "non_finite" in [f["flag"] for f in record["failure_flags"]]
