"""failure_watch: each flag fires on a crafted series, and only then; NaN ends a run as diverged. FailureWatchCallback
reports each flag (warning, metric, W&B alert on online runs), stops a diverged run and keeps its state in checkpoints."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import make_cfg
from helpers import RecordingLogger

from gan_ablate.callbacks.checkpoint import read_checkpoint
from gan_ablate.callbacks.failure_watch import FailureEvent, FailureWatch, FailureWatchCallback
from gan_ablate.config import validate
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


def watching(*overrides: str) -> FailureWatchCallback:
    return FailureWatchCallback.from_config(validate(make_cfg(*overrides)).monitor)


def trainer_with(*loggers):
    """A stand-in for the Trainer: its loggers and the should_stop flag."""
    return SimpleNamespace(loggers=list(loggers), should_stop=False)


def logged(callback, trainer, iteration: int, values: dict) -> None:
    """The end of a log step whose values the module sent to the loggers."""
    callback.on_train_batch_end(trainer, None, {"iteration": iteration, "measured": {}, "logged": values}, None, 0)


def test_monitor_settings_reach_the_failure_watch_and_the_non_finite_check():
    callback = watching("monitor.failure_watch.d_loss_floor=0.01", "monitor.failure_watch.grad_norm_max=50",
                        "monitor.failure_watch.d_winning=0.25", "monitor.failure_watch.window=4",
                        "monitor.check_every=5", "monitor.failure_watch.stop_on_non_finite=false")
    fw = callback.watch
    assert (fw.d_loss_floor, fw.grad_norm_max, fw.d_winning, fw.window) == (0.01, 50, 0.25, 4)
    assert callback.check.every == 5 and callback.stop_on_non_finite is False
    off = watching("monitor.failure_watch.enabled=false", "monitor.check_every=0")
    assert off.watch is None and off.check is None


def test_logged_values_feed_the_watch_and_its_flags_reach_every_logger_at_their_iteration():
    trainer = trainer_with(RecordingLogger(), RecordingLogger())
    callback = watching("monitor.failure_watch.grad_norm_max=1.5", "monitor.check_every=0")
    logged(callback, trainer, 4, {"loss/d": 0.25, "grad_norm/d": 2.0})
    for logger in trainer.loggers:
        assert logger.metrics == [(4, {"failure/grad_norm_high": 1.0})]
    assert [(e.iteration, e.flag) for e in callback.watch.events] == [(4, "grad_norm_high")]
    assert callback.failure_flags() == [{"iteration": 4, "flag": "grad_norm_high",
                                         "detail": "grad_norm/d=2 > 1.5"}]
    callback.on_train_batch_end(trainer, None, {"iteration": 5, "measured": {}}, None, 0)  # not a log step
    assert len(callback.watch.events) == 1 and trainer.should_stop is False


def test_a_failure_is_logged_as_a_warning_a_metric_and_an_alert_on_online_runs_only(caplog):
    online, offline, plain = RecordingLogger("online"), RecordingLogger("offline"), RecordingLogger()
    with caplog.at_level("WARNING", logger="gan_ablate"):
        FailureWatchCallback.report(trainer_with(online, offline, plain),
                                    [FailureEvent(7, "d_loss_zero", "|loss/d| < 0.001")])
    assert caplog.messages == ["failure watch, iteration 7: d_loss_zero (|loss/d| < 0.001)"]
    for logger in (online, offline, plain):
        assert logger.metrics == [(7, {"failure/d_loss_zero": 1.0})]
    assert online.alerts == [{"title": "gan-ablate: d_loss_zero", "text": "iteration 7: |loss/d| < 0.001"}]
    assert offline.alerts == [] and plain.alerts == []


def test_an_experiment_with_alert_but_no_settings_is_not_alerted_and_does_not_stop_the_report():
    # another logger's experiment may offer an `alert` without W&B's settings: only an online W&B run is alerted
    logger = RecordingLogger()
    logger.experiment = SimpleNamespace(alert=lambda **kw: logger.alerts.append(kw))
    bare = RecordingLogger()
    bare.experiment = SimpleNamespace(alert=lambda **kw: bare.alerts.append(kw), settings=SimpleNamespace())
    FailureWatchCallback.report(trainer_with(logger, bare), [FailureEvent(3, "g_loss_exploded", "loss/g > 100")])
    assert logger.metrics == bare.metrics == [(3, {"failure/g_loss_exploded": 1.0})]
    assert logger.alerts == bare.alerts == []


@pytest.mark.parametrize("stop_on_non_finite", [True, False])
def test_a_logged_nan_stops_the_trainer_only_when_asked_and_a_finite_one_never(stop_on_non_finite):
    trainer = trainer_with()
    callback = watching(f"monitor.failure_watch.stop_on_non_finite={stop_on_non_finite}", "monitor.check_every=0")
    logged(callback, trainer, 0, {"loss/d": 0.5})
    assert trainer.should_stop is False and callback.divergence() == {}
    logged(callback, trainer, 1, {"loss/d": math.nan})
    assert trainer.should_stop is stop_on_non_finite
    assert callback.divergence() == {"diverged_at_iteration": 1, "reason": "loss/d not finite"}


def test_the_watch_survives_a_checkpoint_as_plain_values_and_raises_each_flag_once_per_run(tmp_path):
    first = watching("monitor.failure_watch.grad_norm_max=1.0", "monitor.check_every=0")
    logged(first, trainer_with(), 6, {"grad_norm/d": 3.0})
    torch.save({"callbacks": {first.state_key: first.state_dict()}}, tmp_path / "c.ckpt")
    checkpoint = read_checkpoint(tmp_path / "c.ckpt")  # weights_only=True
    second = watching("monitor.failure_watch.grad_norm_max=1.0")
    second.on_load_checkpoint(None, None, checkpoint)  # Lightning's order: this hook, then load_state_dict
    second.load_state_dict(checkpoint["callbacks"][second.state_key])
    assert second.failure_flags() == first.failure_flags() == [
        {"iteration": 6, "flag": "grad_norm_high", "detail": "grad_norm/d=3 > 1.0"}]
    assert second.watch.update(9, {"grad_norm/d": 3.0}) == []  # raised once per run, resumed or not


def test_a_checkpoint_from_when_the_module_kept_the_watch_resumes_it():
    state = FailureWatch(grad_norm_max=1.0)
    state.update(6, {"grad_norm/d": 3.0})
    old = {"callbacks": {"EvaluationCallback": {}},
           "gan_ablate": {"iteration": 8, "tricks": {}, "failure_watch": state.state_dict(),
                          "non_finite": {"first_bad": [7, 2**63 - 1, 2**63 - 1, 2**63 - 1]}}}
    resumed = watching("monitor.failure_watch.grad_norm_max=1.0")
    resumed.on_load_checkpoint(None, None, old)
    assert [(e.iteration, e.flag) for e in resumed.watch.events] == [(6, "grad_norm_high")]
    assert resumed.divergence() == {"diverged_at_iteration": 7, "reason": "loss/d not finite"}
    blank = watching()
    blank.on_load_checkpoint(None, None, {"callbacks": {}})  # a checkpoint with neither
    assert blank.watch.events == [] and blank.divergence() == {}


def test_a_run_without_the_watches_checkpoints_none_for_them():
    callback = watching("monitor.failure_watch.enabled=false", "monitor.check_every=0")
    assert callback.state_dict() == {"watch": None, "non_finite": None}
    assert callback.failure_flags() == [] and callback.divergence() == {}
