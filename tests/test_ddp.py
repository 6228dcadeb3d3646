"""Data parallel over processes (gan_ablate/distributed.py): two CPU ranks with the gloo backend."""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from conftest import TINY, make_cfg, run_train_py
from gan_ablate.run import train


class SaveRankState(pl.Callback):
    """Each rank's nets and the index of its last real batch, at the end of training."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "last_index": pl_module.draw_real.last_index.clone()},
                   self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_two_ranks_draw_different_batches_and_end_with_identical_nets(tmp_path):
    # n_critic, EMA, batch norm in G, and tricks that keep state or decide extra updates from the loss
    cfg = make_cfg("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn",
                   "trainer.max_steps=40", "metrics.every=20", "optim.n_critic=2", "model.norm_g=batch_norm",
                   "trick=[experience_replay,historical_averaging,loss_balancing,ema]")
    record = train(cfg, tmp_path / "run", callbacks=[SaveRankState(tmp_path)])

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert not torch.equal(ranks[0]["last_index"], ranks[1]["last_index"])  # each rank its own data
    nets = [k for k in ranks[0]["state"] if k.split(".")[0] in ("G", "D", "G_ema")]
    assert any("running_mean" in k for k in nets) and any(k.startswith("G_ema.") for k in nets)
    different = [k for k in nets if not torch.equal(ranks[0]["state"][k], ranks[1]["state"][k])]
    assert different == []  # gradients and batch-norm statistics were averaged over the ranks

    records = list((tmp_path / "run").rglob("result.json"))
    assert records == [tmp_path / "run" / "result.json"]
    assert record.data["status"] == "ok" and record.data["iterations"] == 40
    assert [h["iteration"] for h in record.data["history"]] == [20, 40]  # from the spawned rank 0


@pytest.mark.slow
def test_ddp_and_ddp_spawn_under_hydra_write_one_record_per_run(tmp_path):
    spawn = run_train_py("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn",
                         "trainer.max_steps=50", *TINY, f"hydra.run.dir={tmp_path}/spawn", cwd=tmp_path)
    assert spawn.returncode == 0, spawn.stderr[-3000:]
    # a multirun: the other rank of each job must train in that job's folder, not start a sweep of its own
    sweep = run_train_py("-m", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                         "trainer.max_steps=50", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("result.json")) == [
        "spawn/result.json", "sweep/0/result.json", "sweep/1/result.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spawn", "sweep"]  # no run folder per rank
    spawned, popen = (json.loads((tmp_path / f).read_text()) for f in ("spawn/result.json", "sweep/0/result.json"))
    assert spawned["status"] == popen["status"] == "ok" and spawned["iterations"] == popen["iterations"] == 50
    assert spawned["metrics"] == popen["metrics"]  # the same training, whichever way the ranks start


@pytest.mark.slow
def test_an_unknown_strategy_is_refused_before_training(tmp_path):
    result = run_train_py("trainer.strategy=fsdp", f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 2
    assert "trainer.strategy" in result.stderr and "ddp_spawn" in result.stderr
    assert not (tmp_path / "result.json").exists()


def test_each_update_averages_its_own_nets_gradients_and_every_iteration_both_nets_buffers(monkeypatch):
    """The wiring the two-rank test above proves end to end, fast enough for `make mutants`: with two ranks,
    D's update averages D's gradients after a backward Lightning's reducer does not sync, G's update G's, and
    each iteration then averages the buffers (batch-norm statistics) of both nets."""
    import gan_ablate.module
    from conftest import make_module
    from helpers import run_steps

    module = make_module("optim.n_critic=2", "model.norm_g=batch_norm")
    calls = []

    class Strategy:
        def block_backward_sync(self):
            calls.append("backward without sync")
            return nullcontext()

    monkeypatch.setattr(gan_ablate.module, "world_size", lambda: 2)
    monkeypatch.setattr(gan_ablate.module, "average_gradients", lambda params: calls.append(list(params)))
    monkeypatch.setattr(gan_ablate.module, "average_buffers", lambda *nets: calls.append(nets))
    monkeypatch.setattr(type(module), "trainer", SimpleNamespace(strategy=Strategy()), raising=False)
    run_steps(module, 2)

    d_update = ["backward without sync", list(module.D.parameters())]
    g_update = ["backward without sync", list(module.G.parameters())]
    iteration = d_update * 2 + g_update + [(module.G, module.D)]
    assert calls == iteration * 2
