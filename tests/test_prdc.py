"""Precision, recall, density and coverage: against the papers' definitions written here in NumPy, on 2-D
mixtures where the answer is known, and through the evaluators, the training loop and the record."""
import json

import numpy as np
import pytest
import torch

from gan_ablate.data.toy import ring_modes, sample_mixture
from gan_ablate.metrics import modes as modes_module
from gan_ablate.metrics.modes import ModeEvaluator
from gan_ablate.metrics.prdc_metrics import precision_recall_density_coverage

FOUR = ("precision", "recall", "density", "coverage")


def kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour among the others (column 0 is the point itself)."""
    return np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1), axis=1)[:, k]


def by_definition(real: np.ndarray, fake: np.ndarray, k_prc: int, k_prdc: int) -> dict:
    """Kynkäänniemi et al. 2019 eq. 1-2 and Naeem et al. 2020 eq. 3-4: a point is in a manifold when it
    lies within the k-NN ball of one of its samples. Ties have probability zero on these continuous
    points, so < and <= agree."""
    d = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # d[i, j] = |real_i - fake_j|
    in_real_ball = d <= kth_neighbour_radii(real, k_prc)[:, None]
    in_fake_ball = d <= kth_neighbour_radii(fake, k_prc)[None, :]
    in_real_ball_dc = d <= kth_neighbour_radii(real, k_prdc)[:, None]
    return {"precision": in_real_ball.any(axis=0).mean(), "recall": in_fake_ball.any(axis=1).mean(),
            "density": in_real_ball_dc.sum(axis=0).mean() / k_prdc, "coverage": in_real_ball_dc.any(axis=1).mean()}


def overlapping_sets(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Real: 60 points of N(0, I) in 3-D; fake: 45 points, narrower and shifted, so that no value is 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(60, 3, generator=g, dtype=torch.float64), 0.6 * torch.randn(45, 3, generator=g,
                                                                                  dtype=torch.float64) + 1.2


@pytest.mark.parametrize("k_prc, k_prdc", [(3, 5), (1, 2), (6, 9)])
def test_the_four_equal_the_papers_definitions_on_small_sets(k_prc, k_prdc):
    real, fake = overlapping_sets()
    ours = precision_recall_density_coverage(real, fake, prc_neighborhood=k_prc, prdc_nearest_k=k_prdc)
    expected = by_definition(real.numpy(), fake.numpy(), k_prc, k_prdc)
    assert ours == pytest.approx(expected, abs=1e-6)
    assert all(0 < ours[m] < 1 for m in ("precision", "recall", "coverage")) and ours["density"] != 1
    # real and fake are not interchangeable: swapped, precision and recall trade places
    swapped = precision_recall_density_coverage(fake, real, prc_neighborhood=k_prc, prdc_nearest_k=k_prdc)
    assert (swapped["precision"], swapped["recall"]) == pytest.approx((ours["recall"], ours["precision"]))
    assert ours["precision"] != pytest.approx(ours["recall"])


def test_the_defaults_are_each_librarys_k():
    real, fake = overlapping_sets(1)
    assert precision_recall_density_coverage(real, fake) == pytest.approx(by_definition(real.numpy(), fake.numpy(),
                                                                                         3, 5), abs=1e-6)


def test_a_set_against_itself_has_precision_recall_and_coverage_one_and_one_far_away_has_all_four_zero():
    real, _ = overlapping_sets()
    same = precision_recall_density_coverage(real, real)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert precision_recall_density_coverage(real, real + 100.0) == {m: 0.0 for m in FOUR}


def test_a_generator_on_half_the_ring_has_half_the_recall_and_coverage_and_full_precision():
    ring, g = ring_modes(), torch.Generator().manual_seed(1)
    evaluator = ModeEvaluator(ring, 0.01, torch.zeros(2000, 2))
    whole, _ = sample_mixture(ring, 0.01, 2000, g)
    half, _ = sample_mixture(ring[::2], 0.01, 2000, g)  # every other mode, each twice as dense
    on_whole, on_half = evaluator.score(whole), evaluator.score(half)
    assert on_whole["recall"] > 0.9 and on_whole["coverage"] > 0.9 and on_whole["precision"] > 0.9
    assert on_half["recall"] == pytest.approx(0.5, abs=0.05) and on_half["coverage"] == pytest.approx(0.5, abs=0.05)
    assert on_half["precision"] > 0.9 and on_half["density"] > 0.9  # what it makes looks real
    assert on_half["modes"] == 4


def test_the_mode_evaluator_compares_with_as_many_points_of_the_mixture_and_its_own_k(monkeypatch):
    seen = []
    monkeypatch.setattr(modes_module, "precision_recall_density_coverage",
                        lambda real, fake, k_prc, k_prdc: seen.append((real, fake, k_prc, k_prdc)) or {})
    ring = ring_modes()
    fake = torch.randn(300, 1, 2)  # flattened to points, as the generator's samples are
    ModeEvaluator(ring, 0.01, torch.zeros(300, 2), prc_neighborhood=2, prdc_nearest_k=7).score(fake)
    for _ in range(2):  # a later evaluation compares with the same real points
        ModeEvaluator(ring, 0.01, torch.zeros(300, 2)).score(fake[:200])
    (real, points, k_prc, k_prdc), (smaller, _, *defaults), (smaller_again, *_) = seen
    assert torch.equal(points, fake.flatten(1)) and (k_prc, k_prdc) == (2, 7) and defaults == [3, 5]
    assert len(real) == 300 and len(smaller) == 200 and torch.equal(smaller, smaller_again)
    # points of the mixture: every one near a mode, every mode drawn
    distance, nearest = torch.cdist(real, ring).min(dim=1)
    assert distance.max() < 6 * 0.01 and set(nearest.tolist()) == set(range(8))


@pytest.fixture(scope="module")
def digits_extractor(tmp_path_factory):
    from gan_ablate.config import DataConfig
    from gan_ablate.data import build_datamodule
    from gan_ablate.metrics.domain import load_or_train, weights_file

    dm = build_datamodule(DataConfig(name="digits"), 1).prepare()
    cache = tmp_path_factory.mktemp("extractors")
    model, info = load_or_train(dm.data, dm.labels, cache, "digits", epochs=10)
    return dm.data, model, info, weights_file(cache, "digits", dm.data, dm.labels)


def test_image_evaluator_measures_the_four_on_the_features_of_the_extractor_it_names(digits_extractor, tmp_path):
    import torch_fidelity

    from gan_ablate.metrics.fidelity import DOMAIN_EXTRACTOR, ImageFidelityEvaluator, Samples

    data, model, info, weights = digits_extractor
    real = data[:500]
    fake = (data[500:1000] + 0.4 * torch.randn(500, 1, 8, 8, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    evaluator = ImageFidelityEvaluator(torch.zeros(500, 2), data, DOMAIN_EXTRACTOR, weights, info, tmp_path, 200,
                                       prc_neighborhood=2, prdc_nearest_k=4)
    assert evaluator.extractor == "domain"  # what run.py writes to the record's `extractor`
    scores = [evaluator.score(fake) for _ in range(2)]  # the second from the real features torch-fidelity cached
    with torch.no_grad():
        features = {name: model(x)[0].double().numpy() for name, x in (("real", real), ("fake", fake))}
    expected = by_definition(features["real"], features["fake"], 2, 4)
    for score in scores:
        assert {m: score[m] for m in FOUR} == pytest.approx(expected, abs=1e-6)  # the same counts (float32 means)
    assert 0 < expected["precision"] < 1 and 0 < expected["coverage"] < 1
    # precision and recall are torch-fidelity's own prc on those features
    library = torch_fidelity.calculate_metrics(input1=Samples(fake), input2=Samples(real), cuda=False, prc=True,
                                               prc_neighborhood=2, feature_extractor=DOMAIN_EXTRACTOR, verbose=False,
                                               feature_extractor_weights_path=str(weights))
    assert (scores[0]["precision"], scores[0]["recall"]) == (library["precision"], library["recall"])


def test_a_registered_reference_gives_the_four_against_its_first_images(digits_extractor, tmp_path, monkeypatch):
    """A 600-image registered reference and 500 generated images: the four compare with its first 500."""
    from torch_fidelity.registry import DATASETS_REGISTRY, register_dataset

    from gan_ablate.metrics import fidelity
    from gan_ablate.metrics.fidelity import Samples, fidelity_metrics

    data, _, _, weights = digits_extractor
    if "gan-ablate-test-digits-prdc" not in DATASETS_REGISTRY:
        register_dataset("gan-ablate-test-digits-prdc", lambda root, download: Samples(data[400:1000]))
    monkeypatch.setitem(fidelity.REGISTERED_REFERENCES_SIZE, "gan-ablate-test-digits-prdc", 600)
    fake = data[:500].flip(-1)
    registered = fidelity_metrics(fake, None, weights, kid_subsets=1, kid_subset_size=400, cache_root=tmp_path,
                                  registered=("gan-ablate-test-digits-prdc", tmp_path / "datasets"))
    first = fidelity_metrics(fake, data[400:900], weights, kid_subsets=1, kid_subset_size=400)
    assert {m: registered[m] for m in FOUR} == {m: first[m] for m in FOUR}
    assert 0 < first["recall"] < 1


def test_a_run_records_the_four_for_raw_and_ema_every_evaluation_with_its_k(tmp_path, monkeypatch):
    from conftest import make_cfg

    from gan_ablate.run import train

    ks = []
    measure = modes_module.precision_recall_density_coverage
    monkeypatch.setattr(modes_module, "precision_recall_density_coverage",
                        lambda real, fake, *k: ks.append(k) or measure(real, fake, *k))
    run_dir = tmp_path / "run"
    train(make_cfg("trainer.max_steps=4", "metrics.every=2", "metrics.prdc_nearest_k=7"), run_dir)
    assert ks == [(3, 7)] * 4  # raw and EMA, at iterations 2 and 4
    record = json.loads((run_dir / "result.json").read_text())
    for net in ("raw", "ema"):
        assert set(FOUR) <= set(record["metrics"][net])
        assert all(set(FOUR) <= set(h[net]) for h in record["history"])
        assert record["metrics"][net] == {k: v for k, v in record["history"][-1][net].items()}
    assert [h["iteration"] for h in record["history"]] == [2, 4]
    assert (record["config"]["metrics"]["prc_neighborhood"], record["config"]["metrics"]["prdc_nearest_k"]) == (3, 7)


def test_an_image_runs_wandb_summary_holds_the_four_final_values_after_the_spreads():
    """kid_std, is_std and n_samples have no better side: their summary is the last value, and the metrics
    after them in the record (the four) still reach W&B's summary."""
    from gan_ablate.run_loggers import write_summary

    values = {"fid": 9.0, "kid": 0.1, "kid_std": 0.01, "is": 2.0, "is_std": 0.1, "precision": 0.6, "recall": 0.3,
              "density": 0.4, "coverage": 0.2, "n_samples": 2000}
    record = {"status": "ok", "metrics": {"raw": values, "ema": values},
              "history": [{"iteration": 10, "raw": {**values, "precision": 0.9}, "ema": values},
                          {"iteration": 20, "raw": values, "ema": values}]}
    summary = {}
    write_summary(summary, record)
    for net in ("raw", "ema"):
        assert {summary[f"final/{net}/{m}"] for m in FOUR} == {0.6, 0.3, 0.4, 0.2}
    assert summary["eval/raw/precision"] == {"last": 0.6} and summary["eval/raw/kid_std"] == {"last": 0.01}
    assert summary["eval/raw/fid"] == {"min": 9.0}


@pytest.mark.parametrize("overrides, named", [(["metrics.prdc_nearest_k=0"], "metrics.prdc_nearest_k"),
                                              (["metrics.n_samples=5"], "metrics.n_samples=5 must exceed "
                                                                        "metrics.prdc_nearest_k=5"),
                                              (["metrics.image_samples=4", "metrics.prc_neighborhood=4"],
                                               "metrics.image_samples=4 must exceed metrics.prc_neighborhood=4")])
def test_a_k_without_enough_samples_for_it_is_refused_naming_both_keys(overrides, named):
    from conftest import make_cfg

    from gan_ablate.config import ConfigError, validate

    with pytest.raises(ConfigError, match=named):
        validate(make_cfg(*overrides))
    validate(make_cfg("metrics.n_samples=6", "metrics.image_samples=6"))  # one more than k: every point has k others


def test_non_finite_samples_count_as_infinitely_far_and_too_few_finite_ones_give_zeros():
    # a diverging G's NaN samples must not stop the evaluation (sklearn refuses NaN): they score as a tight
    # cluster far away would, in no real ball and with no real sample in theirs
    real, fake = overlapping_sets()
    broken = fake.clone()
    broken[:20] = float("nan")
    far = fake.clone()
    far[:20] = 1e6 + 1e-3 * torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = precision_recall_density_coverage(real, broken)
    expected = by_definition(real.numpy(), far.numpy(), 3, 5)
    assert {k: got[k] for k in FOUR} == pytest.approx(expected, rel=1e-6)
    assert 0 < got["precision"] < precision_recall_density_coverage(real, fake)["precision"]

    broken[:-5] = float("inf")  # 5 finite samples: no 5-NN ball among them
    assert precision_recall_density_coverage(real, broken) == dict.fromkeys(FOUR, 0.0)
