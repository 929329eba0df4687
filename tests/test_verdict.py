"""The ablations' verdict rule (experiments.verdict) on synthetic per-seed results: each of the three outcomes,
both directions, the combination of primary comparisons, and the errors."""

from __future__ import annotations

import pytest

from experiments.verdict import (
    INCONCLUSIVE,
    MIN_SEEDS,
    NOT_REPRODUCED,
    REPRODUCED,
    Comparison,
    Spread,
    compare,
    overall,
)


def results(ours: list[float], other: list[float], metric: str = "loss") -> dict:
    """``per_seed[variant][metric][seed]`` for seeds 0.. of two variants."""
    return {"ours": {metric: dict(enumerate(ours))}, "other": {metric: dict(enumerate(other))}}


@pytest.mark.parametrize("better, ours, other, outcome", [
    ("lower", [0.20, 0.30, 0.25], [0.21, 0.35, 0.26], REPRODUCED),         # lower in every seed
    ("lower", [0.22, 0.36, 0.27], [0.21, 0.35, 0.26], NOT_REPRODUCED),     # higher in every seed
    ("lower", [0.20, 0.36, 0.25], [0.21, 0.35, 0.26], INCONCLUSIVE),       # signs disagree (2 of 3)
    ("higher", [25.1, 24.9, 25.3], [25.0, 24.8, 25.0], REPRODUCED),
    ("higher", [24.1, 24.0, 24.3], [25.0, 24.8, 25.0], NOT_REPRODUCED),
    ("higher", [25.0, 24.9, 25.3], [25.0, 24.8, 25.0], INCONCLUSIVE),      # a tie in one seed
    ("lower", [0.1, 0.1, 0.1, 0.1, 0.3], [0.2] * 5, INCONCLUSIVE),          # 4 of 5 is not every seed
])
def test_the_three_outcomes(better, ours, other, outcome):
    comparison = compare("loss", "ours", "other", better, results(ours, other))
    assert comparison.outcome == outcome
    assert comparison.differences == pytest.approx([a - b for a, b in zip(ours, other)])
    assert outcome in comparison.describe()


def test_fewer_than_the_minimum_seeds_is_inconclusive_whatever_the_signs():
    seeds = MIN_SEEDS - 1
    comparison = compare("loss", "ours", "other", "lower", results([0.1] * seeds, [0.9] * seeds))
    assert comparison.favourable == seeds and comparison.outcome == INCONCLUSIVE
    assert f"fewer than {MIN_SEEDS} seeds" in comparison.describe()


def test_pairs_only_the_seeds_both_variants_have():
    per_seed = {"ours": {"loss": {0: 0.1, 1: 0.1, 2: 0.1, 7: 0.9}}, "other": {"loss": {0: 0.2, 1: 0.2, 2: 0.2, 3: 0.0}}}
    comparison = compare("loss", "ours", "other", "lower", per_seed)
    assert comparison.seeds == (0, 1, 2) and comparison.outcome == REPRODUCED


def test_an_ablation_verdict_combines_its_primary_comparisons_only():
    reproduced = compare("loss", "ours", "other", "lower", results([0.1] * 3, [0.2] * 3))
    against = compare("loss", "ours", "other", "lower", results([0.3] * 3, [0.2] * 3))
    secondary_against = compare("loss", "ours", "other", "lower", results([0.3] * 3, [0.2] * 3), primary=False)
    assert overall([reproduced, reproduced]) == REPRODUCED
    assert overall([against]) == NOT_REPRODUCED
    assert overall([reproduced, against]) == INCONCLUSIVE
    assert overall([reproduced, secondary_against]) == REPRODUCED
    with pytest.raises(ValueError, match="at least one primary comparison"):
        overall([secondary_against])


def test_bad_comparisons_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="better must be one of"):
        Comparison("loss", "a", "b", "smaller", (1.0,), (2.0,), (0,))
    with pytest.raises(ValueError, match="pair every seed"):
        Comparison("loss", "a", "b", "lower", (1.0, 2.0), (2.0,), (0, 1))
    with pytest.raises(ValueError, match="no values"):
        Spread.of([])


def test_spread_reports_mean_std_and_range():
    spread = Spread.of([1.0, 2.0, 3.0])
    assert (spread.mean, spread.std, spread.min, spread.max) == (2.0, 1.0, 1.0, 3.0)
    assert spread.format(2) == "2.00 ± 1.00 (1.00 to 3.00)"
    assert Spread.of([0.5]).format(2) == "0.50"


def test_a_spread_larger_than_the_effect_asks_for_more_seeds():
    noisy = compare("loss", "ours", "other", "lower", results([0.1, 0.5, 0.2], [0.2, 0.2, 0.3]))  # -0.1, +0.3, -0.1
    assert noisy.outcome == INCONCLUSIVE and noisy.spread_exceeds_effect
    assert "more seeds needed" in noisy.describe()
    clear = compare("loss", "ours", "other", "lower", results([0.1, 0.1, 0.1], [0.2, 0.21, 0.19]))
    assert clear.outcome == REPRODUCED and not clear.spread_exceeds_effect
