"""metrics.generators=primary: evaluation scores metrics.primary's G only (stacked MNIST's 26,000-sample count is
the cost of a short run there), with the same numbers as that G's columns of a run scoring both; reports read
such records."""
from __future__ import annotations

import pytest

from conftest import make_cfg, make_module
from gan_ablate.config import ConfigError, validate
from gan_ablate.run import train
from gan_ablate.sweep.report import build_report

RUN = ["trainer.max_steps=60", "metrics.every=30", "checkpoint.every=30", "metrics.eval_repeats=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("generators")
    return {name: (train(make_cfg(*RUN, *extra), root / name).data, root / name)
            for name, extra in (("both", []),
                                ("ema_only", ["metrics.generators=primary", "metrics.primary=ema"]),
                                ("raw_only", ["metrics.generators=primary"]))}


@pytest.mark.slow
@pytest.mark.parametrize("name, net", [("ema_only", "ema"), ("raw_only", "raw")])
def test_primary_scores_that_g_only_with_the_numbers_of_a_run_scoring_both(runs, name, net):
    record, both = runs[name][0], runs["both"][0]
    assert record["status"] == "ok" and set(record["metrics"]) == {net}
    assert record["metrics"][net] == both["metrics"][net]
    assert [set(h) for h in record["history"]] == [{"iteration", net}] * 2
    assert [h[net] for h in record["history"]] == [h[net] for h in both["history"]]
    assert set(record["eval_repeats"]) - {"latent_seeds", "periodic_latent_seed"} == {net}
    assert record["eval_repeats"][net] == both["eval_repeats"][net]


@pytest.mark.parametrize("overrides, expected", [([], ("raw", "ema")),
                                                  (["metrics.generators=primary"], ("raw",)),
                                                  (["metrics.generators=primary", "metrics.primary=ema"], ("ema",))])
def test_the_module_hands_evaluation_the_nets_asked_for_and_builds_the_ema_g_only_when_scored(overrides, expected,
                                                                                              monkeypatch):
    """The unit under the end-to-end tests above (which mutation testing, running the fast tests, does not run):
    generators() names, and is, G and the EMA G's net; the EMA G (standing statistics cost forward passes) is asked
    for only when it is scored."""
    module = make_module(*overrides)
    asked = []
    ema_generator = module.ema_generator
    monkeypatch.setattr(module, "ema_generator", lambda: asked.append(1) or ema_generator())
    nets = module.generators()
    assert tuple(nets) == expected
    assert all(nets[n] is {"raw": module.G, "ema": module.G_ema.module}[n] for n in expected)
    assert len(asked) == ("ema" in expected)


@pytest.mark.slow
def test_a_report_reads_runs_that_scored_one_g(runs, tmp_path):
    import shutil

    shutil.copytree(runs["raw_only"][1], tmp_path / "0")
    report = build_report(tmp_path, plots=False)
    titles = " ".join(t.title for t in report.tables)
    assert "raw" in titles and "ema" not in titles.replace("ema-", "")


def test_an_unknown_choice_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"metrics.generators.*both.*primary"):
        validate(make_cfg("metrics.generators=ema"))
