"""Fractional and screening designs (gan_ablate/sweep/design.py, from pyDOE3), checked against NumPy:
balance, orthogonality, resolution, aliasing; their refusals; and a sweep that runs one and writes design.json."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from pyDOE3 import fracfact_aliasing, pbdesign

from conftest import run_train_py
from gan_ablate.config import AblationConfig, ConfigError
from gan_ablate.record import load_records
from gan_ablate.sweep.design import alias_structure, design_cells, design_description, two_level_design

EIGHT = ["label_smoothing", "instance_noise", "spectral_norm", "ema", "d_dropout", "g_dropout", "grad_clip",
         "orthogonal_reg"]
ELEVEN = EIGHT + ["historical_averaging", "noisy_labels", "layer_noise"]
FAST = ["logger=csv", "trainer.enable_progress_bar=false", "model.g_hidden=16", "model.d_hidden=16",
        "data.n_points=2000", "data.batch_size=32", "metrics.n_samples=200", "checkpoint.every=0"]


def levels(cells, tricks) -> np.ndarray:
    """The design matrix read back from the cells themselves: +1 where the cell runs the trick, -1 where not."""
    return np.array([[1 if t in c.tricks else -1 for t in tricks] for c in cells])


def two_way(matrix: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    return {(j, k): matrix[:, j] * matrix[:, k] for j, k in itertools.combinations(range(matrix.shape[1]), 2)}


def main_effects_clear_of_two_way(matrix: np.ndarray) -> bool:
    """Resolution >= IV: every main-effect column orthogonal to every other and to every two-way interaction."""
    mains = matrix.T @ matrix
    return (np.allclose(mains, len(matrix) * np.eye(matrix.shape[1]))
            and all(matrix[:, i] @ column == 0 for i in range(matrix.shape[1]) for column in two_way(matrix).values()))


def test_fractional_over_eight_tricks_is_at_most_16_cells_of_resolution_iv():
    cells = design_cells("fractional", EIGHT)
    matrix = levels(cells, EIGHT)
    assert len(cells) <= 16 and len({c.tricks for c in cells}) == len(cells)
    assert cells[0].label == "baseline" and cells[0].tricks == ()  # this fraction holds the baseline: the reference
    assert all(c.label == "+".join(c.tricks) for c in cells[1:])
    assert (matrix.sum(axis=0) == 0).all()  # every trick on in exactly half the cells
    assert main_effects_clear_of_two_way(matrix)
    assert two_level_design("fractional", tuple(EIGHT)).resolution == 4


def test_the_resolution_check_fails_a_resolution_iii_fraction():
    six = EIGHT[:6]
    cells = design_cells("fractional", six, resolution=3)
    matrix = levels(cells, six)
    assert len(cells) == 8 and (matrix.sum(axis=0) == 0).all()
    assert np.allclose(matrix.T @ matrix, 8 * np.eye(6))  # main effects still clear of each other...
    assert not main_effects_clear_of_two_way(matrix)  # ...but not of two-way interactions
    assert two_level_design("fractional", tuple(six), 3).resolution == 3


def test_the_alias_structure_is_what_fracfact_aliasing_states_and_what_the_columns_show():
    cells = design_cells("fractional", EIGHT)
    matrix = levels(cells, EIGHT)
    aliases = alias_structure("fractional", EIGHT)
    ours = {frozenset(frozenset(effect.split(":")) for effect in group.split(" = ")) for group in aliases}
    library = set()
    for group in fracfact_aliasing(matrix.astype(float))[0]:  # letters a, b, ... are the columns in EIGHT's order
        effects = [frozenset(EIGHT[ord(x) - ord("a")] for x in word) for word in group.split(" = ") if len(word) <= 2]
        if len(effects) > 1:
            library.add(frozenset(effects))
    assert ours == library
    # independently: two two-way interactions are aliased exactly where their columns are equal, and the 28 of
    # eight tricks fall in 7 groups of 4, no main effect among them (resolution IV)
    columns = two_way(matrix)
    by_column = {}
    for (j, k), column in columns.items():
        by_column.setdefault(column.tobytes(), set()).add(frozenset((EIGHT[j], EIGHT[k])))
    assert ours == {frozenset(group) for group in by_column.values() if len(group) > 1}
    assert len(ours) == 7 and all(len(group) == 4 for group in ours)
    assert any(group.startswith("label_smoothing:") for group in aliases)  # in trick names


def test_each_generator_is_the_product_of_the_columns_it_names():
    matrix = levels(design_cells("fractional", EIGHT), EIGHT)
    generators = two_level_design("fractional", tuple(EIGHT)).generators
    assert len(generators) == 4  # 2^(8-4): four tricks set by the other four
    for generator in generators:
        trick, word = generator.split(" = ")
        column = np.prod([matrix[:, EIGHT.index(t)] for t in word.split(":")], axis=0)
        assert (matrix[:, EIGHT.index(trick)] == column).all()


def test_screening_over_eleven_tricks_is_twelve_cells_with_orthogonal_main_effects():
    cells = design_cells("screening", ELEVEN)
    matrix = levels(cells, ELEVEN)
    assert len(cells) == 12 and len({c.tricks for c in cells}) == 12
    assert {tuple(row) for row in matrix} == {tuple(row) for row in pbdesign(11).astype(int)}  # pyDOE3's rows
    assert cells[0].label == "+".join(ELEVEN)  # no baseline in a 12-run Plackett-Burman: all tricks on is the reference
    assert (matrix.sum(axis=0) == 0).all() and (matrix.T @ matrix == 12 * np.eye(11)).all()
    # partial aliasing: each main effect correlates +-1/3 with each two-way interaction of two other tricks
    correlations = {(i, j, k): matrix[:, i] @ column / 12 for (j, k), column in two_way(matrix).items()
                    for i in range(11) if i not in (j, k)}
    assert {abs(r) for r in correlations.values()} == {1 / 3}
    assert alias_structure("screening", ELEVEN) == [
        f"{ELEVEN[i]} ~ {ELEVEN[j]}:{ELEVEN[k]} ({r:+.2f})" for (i, j, k), r in sorted(correlations.items())]


def test_design_description_lists_cells_levels_and_aliases():
    cells = design_cells("fractional", EIGHT, baseline=["ttur"])
    description = design_description("fractional", EIGHT, ["ttur"], cells)
    assert description["resolution"] == 4 and description["baseline"] == ["ttur"] and len(description["generators"]) == 4
    assert description["cells"][0] == {"label": "baseline", "tricks": ["ttur"], "levels": [-1] * 8}
    assert description["aliases"] == alias_structure("fractional", EIGHT)
    assert design_description("add_one", ["ema"], [], design_cells("add_one", ["ema"]))["aliases"] is None


@pytest.mark.parametrize("call, message", [
    (lambda: design_cells("fractional", EIGHT[:3]), r"ablation.resolution=4 needs at least 4 ablation.tricks \(here 3\)"),
    (lambda: design_cells("fractional", EIGHT, resolution=5),
     r"ablation.resolution=5 over 8 ablation.tricks: pyDOE3 builds no such fraction"),
    (lambda: design_cells("fractional", [f"t{i}" for i in range(16)]), r"at most 15 ablation.tricks \(here 16\)"),
    (lambda: design_cells("fractional", EIGHT, max_cells=8), r"16 cells, above ablation.max_cells=8"),
    (lambda: design_cells("screening", EIGHT[:2]), r"screening over 2 tricks is 4 cells, no fewer than the factorial"),
    (lambda: design_cells("screening", [f"t{i}" for i in range(24)]), r"pbdesign builds no Plackett-Burman design of 28"),
    (lambda: AblationConfig(design="screening", resolution=4),
     r"ablation.resolution=4 applies to ablation.design=fractional only \(here screening\)"),
    (lambda: AblationConfig(design="fractional", resolution=6), r"ablation.resolution=6 is not allowed; choose one of: 3, 4, 5"),
])
def test_designs_pyDOE3_cannot_build_are_refused_naming_the_key(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_fewer_tricks_take_fracfact_opts_fractions_that_fracfact_by_res_misses():
    """fracfact_by_res builds no 8-run resolution-IV fraction of 4 tricks (d = abc), no 16-run resolution-V one
    of 5 (e = abcd) and no resolution-V one of 7: fracfact_opt's search finds them."""
    four = EIGHT[:4]
    matrix = levels(design_cells("fractional", four), four)
    assert len(matrix) == 8 and main_effects_clear_of_two_way(matrix)
    five = EIGHT[:5]
    matrix = levels(design_cells("fractional", five, resolution=5), five)
    interactions = np.array(list(two_way(matrix).values())).T
    effects = np.hstack([matrix, interactions])  # resolution V: main effects and two-way interactions all orthogonal
    assert len(matrix) == 16 and (effects.T @ effects == 16 * np.eye(effects.shape[1])).all()
    # 7 tricks: fracfact_opt refuses the saturated 8-run fraction; the search goes on to the 64-run resolution V
    assert two_level_design("fractional", tuple(EIGHT[:7]), 5).resolution >= 5


def test_the_largest_fraction_pyDOE3_builds_past_its_search_keeps_its_resolution():
    """Past fracfact_opt's search, fracfact_by_res builds the fraction: 12 tricks at resolution IV in 32 cells."""
    tricks = [f"t{i}" for i in range(12)]
    matrix = levels(design_cells("fractional", tricks), tricks)
    assert len(matrix) == 32 and main_effects_clear_of_two_way(matrix)


@pytest.mark.slow
def test_a_fractional_sweep_launches_cells_times_seeds_and_writes_design_json(tmp_path):
    three = EIGHT[:3]  # at resolution III, the half fraction spectral_norm = label_smoothing:instance_noise
    sweep = tmp_path / "sweep"
    result = run_train_py("-m", "hydra/sweeper=ablation", f"ablation.tricks=[{','.join(three)}]",
                          "ablation.design=fractional", "ablation.resolution=3", "ablation.seeds=2", "trainer.max_steps=3",
                          "metrics.every=0", *FAST, f"hydra.sweep.dir={sweep}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cells = design_cells("fractional", three, resolution=3)
    reference = "+".join(three)  # this fraction lacks the baseline: all tricks on is the reference
    assert len(cells) == 4 and cells[0].label == reference
    got = sorted((r.cell, tuple(r.tricks), r.seed, r.design, r.reference) for r in load_records(sweep))
    assert got == sorted((c.label, c.tricks, s, "fractional", reference) for c in cells for s in (0, 1))
    written = json.loads((sweep / "design.json").read_text())
    assert written == design_description("fractional", three, [], cells, resolution=3)
    assert written["aliases"] == ["label_smoothing = instance_noise:spectral_norm",
                                  "instance_noise = label_smoothing:spectral_norm",
                                  "spectral_norm = label_smoothing:instance_noise"]
    log = result.stdout + result.stderr
    assert "fractional design: resolution 3; generators: spectral_norm = label_smoothing:instance_noise" in log
    assert "3 aliases among main effects and two-way interactions" in log and written["aliases"][0] in log
    assert not list(sweep.glob(".design.json.*"))  # written atomically: no temporary file left


@pytest.mark.slow
def test_bad_designs_are_refused_on_one_line_before_any_job(tmp_path):
    for args, message in [(["ablation.tricks=[ema,spectral_norm,grad_clip]", "ablation.design=fractional"],
                           "ablation.resolution=4 needs at least 4 ablation.tricks (here 3)"),
                          ([f"ablation.tricks=[{','.join(ELEVEN)}]", "ablation.design=screening", "ablation.resolution=4"],
                           "ablation.resolution=4 applies to ablation.design=fractional only (here screening)")]:
        result = run_train_py("-m", "hydra/sweeper=ablation", *args, *FAST, f"hydra.sweep.dir={tmp_path}", timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and message in lines[-1] and lines[-1].startswith("gan-ablate: config error:"), \
            result.stderr[-2000:]
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("design.json"))
