"""Effects of the tricks over records written by hand (no training): planted effects are recovered, agree
with an independent least-squares computation, and the aliasing of fractions is as pyDOE3 states."""
import math

import numpy as np
import pytest
from pyDOE3 import fracfact, fracfact_aliasing, pbdesign
from scipy import stats
from statsmodels.stats.multitest import multipletests

from gan_ablate.record import RunRecord, cell_label
from gan_ablate.sweep.aggregate import Analysis, group_cells
from gan_ablate.sweep.effects import applies, fit_effects
from gan_ablate.sweep.report import effects_of, effects_table

PLANTED = {"a": 3.0, "b": -2.0, "a:b": 1.5}  # mean with the trick (product +1) minus mean without


def records_of(design: np.ndarray, names: list[str], outcome, seeds: int, variants=("",), **extra) -> list[RunRecord]:
    """One record per run of each row of `design` (-1/+1 per trick in `names`), `modes` = outcome(codes, seed,
    variant); a variant becomes an override the sweep varied (a block)."""
    records = []
    for row in design:
        tricks = [n for n, code in zip(names, row) if code > 0]
        for variant in variants:
            for seed in range(seeds):
                records.append(RunRecord(tricks=tricks, cell=cell_label(tricks), seed=seed, status="ok",
                                         design="factorial", overrides=[variant] if variant else [],
                                         metrics={"raw": {"modes": outcome(dict(zip(names, row)), seed, variant)}},
                                         **extra))
    return records


def planted(effects: dict[str, float], noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)

    def outcome(codes, _seed, _variant):
        # an effect is the change from -1 to +1: half of it per unit of code
        return 10 + sum(e / 2 * math.prod(codes[f] for f in term.split(":")) for term, e in effects.items()) \
            + rng.normal(0, noise)
    return outcome


def fit(records, analysis=Analysis()):
    cells = group_cells(records)
    return effects_of("modes", "raw", cells, list(cells.values()), analysis)


FULL_2x2 = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]])


def by_name(effects):
    return {t.name: t for t in effects.terms}


def test_planted_main_effects_and_interaction_lie_in_intervals_that_exclude_half_of_them():
    effects = fit(records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5, seed=1), seeds=8))
    terms = by_name(effects)
    assert set(terms) == {"a", "b", "a:b"}
    for name, value in PLANTED.items():
        assert terms[name].ci_low < value < terms[name].ci_high
        # the interval is tight enough that a halved (a coefficient read as the effect) or doubled effect is outside
        assert not terms[name].ci_low < value / 2 < terms[name].ci_high
        assert not terms[name].ci_low < value * 2 < terms[name].ci_high
        assert terms[name].p_adjusted < 0.05
    assert effects.df_resid == 32 - 4 and not effects.blocks


def test_the_intervals_cover_the_planted_effects_at_their_stated_rate():
    """Over 400 noise draws of 3 seeds per cell, each 95% interval holds its planted effect within the
    binomial 99.9% range of 400 x 0.95 (364-393 times); an interval of half the width would hold it about
    72% of the time (t with 8 df), one twice as wide 99.9%."""
    covered = {name: 0 for name in PLANTED}
    for draw in range(400):
        # no adjustment: the interval is the coefficient's (and statsmodels' multipletests runs gc.collect())
        terms = by_name(fit(records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=1.0, seed=draw), seeds=3),
                            Analysis(adjust="none")))
        for name, value in PLANTED.items():
            covered[name] += terms[name].ci_low < value < terms[name].ci_high
    low, high = stats.binom.ppf([0.0005, 0.9995], 400, 0.95)
    assert all(low <= n <= high for n in covered.values()), covered


def test_no_planted_interaction_gives_an_interval_around_zero():
    terms = by_name(fit(records_of(FULL_2x2, ["a", "b"], planted({"a": 3.0, "b": -2.0}, noise=0.5, seed=1),
                                   seeds=8)))
    assert terms["a:b"].ci_low < 0 < terms["a:b"].ci_high
    assert terms["a:b"].p_adjusted > 0.05
    assert terms["a"].ci_low < 3 < terms["a"].ci_high


@pytest.mark.parametrize("adjust,method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_p_values_are_adjusted_over_the_terms_of_the_table(adjust, method):
    records = records_of(FULL_2x2, ["a", "b"], planted({"a": 1.0, "b": 0.5}, noise=1.0, seed=5), seeds=4)
    terms = fit(records, Analysis(adjust=adjust)).terms
    assert [t.p_adjusted for t in terms] == pytest.approx(multipletests([t.p for t in terms], method=method)[1])
    assert any(t.p_adjusted > t.p for t in terms)


def independent_fit(levels: np.ndarray, y: np.ndarray, extra_columns=()):
    """Effects (2 x the least-squares coefficient of each -1/+1 column), their 95% half-widths and p, with
    numpy and scipy only."""
    x = np.column_stack([np.ones(len(y)), levels, *extra_columns])
    coef, ssr, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    df = len(y) - rank
    covariance = ssr[0] / df * np.linalg.inv(x.T @ x)
    se = np.sqrt(np.diag(covariance))[1:1 + levels.shape[1]]
    t = coef[1:1 + levels.shape[1]] / se
    return 2 * coef[1:1 + levels.shape[1]], 2 * stats.t.ppf(0.975, df) * se, 2 * stats.t.sf(np.abs(t), df)


def test_effects_equal_differences_of_means_and_an_independent_least_squares_fit():
    records = records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5, seed=2), seeds=5)
    effects = fit(records, Analysis(adjust="none"))
    y = np.array([r.metrics["raw"]["modes"] for r in records])
    a = np.array([1.0 if "a" in r.tricks else -1.0 for r in records])
    b = np.array([1.0 if "b" in r.tricks else -1.0 for r in records])
    for name, column in (("a", a), ("b", b), ("a:b", a * b)):  # balanced: the difference of the two means
        assert by_name(effects)[name].effect == pytest.approx(y[column > 0].mean() - y[column < 0].mean())
    values, half_widths, p = independent_fit(np.column_stack([a, b, a * b]), y)
    for term, value, half, p_value in zip(effects.terms, values, half_widths, p):
        assert term.effect == pytest.approx(value)
        assert (term.ci_low, term.ci_high) == (pytest.approx(value - half), pytest.approx(value + half))
        assert term.p == pytest.approx(p_value) == pytest.approx(term.p_adjusted)  # --adjust none


@pytest.mark.parametrize("failed_as", ["worst", "exclude"])
def test_failed_runs_enter_as_the_metric_table_has_them(failed_as):
    records = records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5, seed=3), seeds=4)
    records += [RunRecord(tricks=["a", "b"], cell="a+b", seed=9, status="diverged", design="factorial", metrics={})]
    effects = fit(records, Analysis(failed_as=failed_as))
    finished = records[:-1]
    y = [r.metrics["raw"]["modes"] for r in finished]
    tricks = [r.tricks for r in finished]
    if failed_as == "worst":  # the diverged run counts as the fewest modes of the table
        y, tricks = y + [min(y)], tricks + [["a", "b"]]
    a = np.array([1.0 if "a" in t else -1.0 for t in tricks])
    b = np.array([1.0 if "b" in t else -1.0 for t in tricks])
    values, half_widths, _ = independent_fit(np.column_stack([a, b, a * b]), np.array(y))
    assert effects.n_runs == len(y)
    assert [t.effect for t in effects.terms] == pytest.approx(values)
    assert [t.ci_high - t.effect for t in effects.terms] == pytest.approx(half_widths)


def test_the_variant_is_a_block_and_its_shift_is_not_noise():
    shift = {"loss=hinge": 0.0, "loss=wgan": 6.0}
    base = planted(PLANTED, noise=0.3, seed=4)
    records = records_of(FULL_2x2, ["a", "b"], lambda c, s, v: base(c, s, v) + shift[v], seeds=3,
                         variants=tuple(shift))
    effects = fit(records)
    assert effects.blocks == ["loss=hinge", "loss=wgan"]
    y = np.array([r.metrics["raw"]["modes"] for r in records])
    a = np.array([1.0 if "a" in r.tricks else -1.0 for r in records])
    b = np.array([1.0 if "b" in r.tricks else -1.0 for r in records])
    wgan = np.array([1.0 if r.overrides == ["loss=wgan"] else 0.0 for r in records])
    values, half_widths, _ = independent_fit(np.column_stack([a, b, a * b]), y, [wgan])
    assert [t.effect for t in effects.terms] == pytest.approx(values)
    assert [t.ci_high - t.effect for t in effects.terms] == pytest.approx(half_widths)
    assert all(t.ci_high - t.ci_low < 1 for t in effects.terms)  # a shift of 6 left in the residuals would not be


def test_a_variant_confounded_with_a_trick_is_said_to_be_so_and_nothing_is_fitted():
    """loss=hinge ran without b, loss=wgan only with b: b's effect and the loss's cannot be told apart."""
    records = [r for r in records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.3), seeds=2,
                                     variants=("loss=hinge", "loss=wgan"))
               if ("b" in r.tricks) == (r.overrides == ["loss=wgan"])]
    effects = fit(records)
    assert not effects.terms and "variant is confounded with the tricks" in effects.not_fitted
    cells = group_cells(records)
    table = effects_table("modes", "raw", effects, cells, list(cells.values()), Analysis())
    assert not table.rows and "no effects: the variant is confounded" in table.note


def test_tricks_whose_columns_add_up_to_the_mean_are_said_to_be_inseparable():
    """trick=[a],[b],[c]: a + b + c is -1 in every cell, so no trick's effect is separable from the others'."""
    effects = fit(records_of(np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]]), list("abc"),
                             planted({"a": 1.0}, noise=0.3), seeds=3))
    assert not effects.terms and "linearly dependent" in effects.not_fitted


def test_one_seed_in_a_saturated_model_gives_effects_but_says_no_interval_can_be_given():
    effects = fit(records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5), seeds=1))
    assert effects.df_resid == 0 and "0 residual degrees of freedom" in effects.no_intervals
    assert all(math.isnan(t.ci_low) and math.isnan(t.p) and math.isnan(t.p_adjusted) for t in effects.terms)
    cells = group_cells(records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5), seeds=1))
    table = effects_table("modes", "raw", effects, cells, list(cells.values()), Analysis())
    assert "no intervals or p: 0 residual degrees of freedom" in table.note
    assert all(row[2] == "–" for row in table.rows)


def alias_sets_of(effects) -> set[frozenset[str]]:
    return {frozenset([t.name] + t.aliases) for t in effects.terms if t.aliases}


def test_half_fraction_d_equals_abc_aliases_two_way_interactions_in_pairs_as_pydoe3_states():
    design = fracfact("a b c abc")
    effects = fit(records_of(design, list("abcd"), planted({"a": 2.0}, noise=0.2), seeds=2))
    assert alias_sets_of(effects) == {frozenset({"a:b", "c:d"}), frozenset({"a:c", "b:d"}),
                                      frozenset({"a:d", "b:c"})}
    assert [t.name for t in effects.terms] == ["a", "b", "c", "d", "a:b", "a:c", "a:d"]
    assert not effects.interactions_left_out and not effects.not_estimable
    # the library's alias map, read to two-way terms: every alias set of two or more such terms
    library = {frozenset(":".join(term) for term in group.split(" = ") if len(term) <= 2)
               for group in fracfact_aliasing(design)[0]}
    assert alias_sets_of(effects) == {s for s in library if len(s) > 1}
    cells = group_cells(records_of(design, list("abcd"), planted({"a": 2.0}, noise=0.2), seeds=2))
    rows = {row[0]: row for row in effects_table("modes", "raw", effects, cells, list(cells.values()),
                                                 Analysis()).rows}
    assert rows["a:b"][-1] == "a:b = c:d" and rows["a"][-1] == ""


def test_a_negated_generator_names_negated_aliases():
    effects = fit(records_of(fracfact("a b c -abc"), list("abcd"), planted({"a": 2.0}, noise=0.2), seeds=2))
    assert alias_sets_of(effects) == {frozenset({"a:b", "-c:d"}), frozenset({"a:c", "-b:d"}),
                                      frozenset({"a:d", "-b:c"})}


def test_resolution_three_aliases_each_main_effect_with_an_interaction_and_fits_main_effects():
    effects = fit(records_of(fracfact("a b ab"), list("abc"), planted({"a": 2.0}, noise=0.2), seeds=3))
    assert alias_sets_of(effects) == {frozenset({"a", "b:c"}), frozenset({"b", "a:c"}), frozenset({"c", "a:b"})}
    assert [t.name for t in effects.terms] == ["a", "b", "c"]
    assert "aliased with a main effect" in effects.interactions_left_out


def test_plackett_burman_interactions_are_partially_confounded_so_main_effects_only():
    names = [f"t{i}" for i in range(11)]
    effects = fit(records_of(pbdesign(11), names, planted({"t0": 2.0, "t3": -1.0}, noise=0.2), seeds=2))
    assert [t.name for t in effects.terms] == names
    assert "partially confounded" in effects.interactions_left_out and "main effects only" in effects.interactions_left_out
    terms = by_name(effects)
    assert terms["t0"].ci_low < 2 < terms["t0"].ci_high and terms["t3"].ci_low < -1 < terms["t3"].ci_high


def test_baseline_tricks_every_cell_shares_are_not_factors():
    records = records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5), seeds=2)
    for r in records:
        r.tricks = ["ema"] + r.tricks
    assert fit(records).factors == ["a", "b"]


@pytest.mark.parametrize("design", ["grid", None])
def test_a_plain_multirun_over_trick_lists_is_fitted_too(design):
    """trick=[],[a],[b],[a,b]: the records say design grid (older ones no design) and carry no cell label."""
    records = records_of(FULL_2x2, ["a", "b"], planted(PLANTED, noise=0.5), seeds=3)
    for r in records:
        r.cell, r.design = None, design
    assert applies(records)
    assert [t.name for t in fit(records).terms] == ["a", "b", "a:b"]
    for r in records:
        r.design = "add_one"
    assert not applies(records)


def test_fit_effects_takes_no_trick_as_no_factor():
    records = records_of(np.array([[-1]]), ["a"], planted({}, noise=0.5), seeds=3)
    cells = group_cells(records)
    assert fit_effects(list(cells.values()), {n: c.values("raw", "modes") for n, c in cells.items()}, "holm") is None
