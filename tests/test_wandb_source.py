"""Records read back from W&B's API have the shape of result.json (checked on stand-in run objects:
the suite has no network)."""
from types import SimpleNamespace

from gan_ablate.sweep.aggregate import group_cells
from gan_ablate.sweep.wandb_source import wandb_records


class FakeApi:
    def __init__(self, runs):
        self._runs, self.asked = runs, None

    def runs(self, project, filters):
        self.asked = (project, filters)
        return self._runs


def run(name, tricks, seed, cell, state, summary):
    return SimpleNamespace(name=name, id=name, group="multirun/x", state=state, summary=summary,
                           config={"trick": {t: {} for t in tricks}, "seed": seed, "cell": cell, "design": "add_one",
                                   "ablation": {"reference": "baseline"}})


def test_wandb_runs_become_records_grouped_like_local_ones():
    api = FakeApi([
        run("baseline-s0", [], 0, "baseline", "finished", {"status": "ok", "final/raw/fid": 30.0, "final/ema/fid": 25.0}),
        run("ema-s0", ["ema"], 0, "+ema", "finished", {"status": "ok", "final/raw/fid": 20.0, "eval/raw/fid": 19.0}),
        run("ema-s1", ["ema"], 1, "+ema", "crashed", {}),
    ])
    records = wandb_records("me/gan-ablate", "multirun/x", api=api)
    assert api.asked == ("me/gan-ablate", {"group": "multirun/x"})
    assert records[0].metrics == {"raw": {"fid": 30.0}, "ema": {"fid": 25.0}}
    assert records[1].metrics == {"raw": {"fid": 20.0}}  # final values, not the logged history
    assert [r.status for r in records] == ["ok", "ok", "failed"]
    cells = group_cells(records)
    assert list(cells) == ["baseline", "+ema"] and cells["+ema"].values("raw", "fid") == [20.0]
