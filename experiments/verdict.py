"""The verdict rule of every ablation: seed-paired differences decide whether the paper's direction holds.

For a comparison of the variant the paper favours ("ours") with another one on a metric where lower (or
higher) is better, each seed gives a paired difference ``ours - other`` (same seed: same data order,
same initialisation where the variants share parameters). The direction is

- **reproduced** when every paired difference has the paper's sign (at least ``MIN_SEEDS`` seeds);
- **not reproduced** when every paired difference has the other sign (at least ``MIN_SEEDS`` seeds);
- **inconclusive** otherwise: the signs disagree, a difference is exactly zero, or fewer than
  ``MIN_SEEDS`` seeds were run.

An ablation makes one or more primary comparisons (its claim); its overall verdict is the common outcome
when they all agree and "inconclusive" otherwise. Secondary comparisons are reported with the same rule
but do not decide it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MIN_SEEDS = 3
BETTER = ("lower", "higher")


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (0 for one value), min and max of per-seed values."""

    mean: float
    std: float
    min: float
    max: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values to summarise: a variant produced no per-seed measurement")
        values = tuple(float(value) for value in values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, min(values), max(values), values)

    def format(self, digits: int = 4) -> str:
        if len(self.values) == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} ({self.min:.{digits}f} to {self.max:.{digits}f})"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max, "values": list(self.values)}


@dataclass(frozen=True)
class Comparison:
    """The paper's favoured variant ``ours`` against ``other`` on ``metric`` (``better``: "lower" or
    "higher"), with one value per seed for each, in the same seed order."""

    metric: str
    ours: str
    other: str
    better: str
    ours_values: tuple[float, ...]
    other_values: tuple[float, ...]
    seeds: tuple[int, ...]
    primary: bool = True

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ValueError(f"better must be one of {BETTER}, got {self.better!r}")
        lengths = {len(self.ours_values), len(self.other_values), len(self.seeds)}
        if len(lengths) != 1:
            raise ValueError(f"{self.metric}: {len(self.ours_values)} values for {self.ours}, {len(self.other_values)} for "
                             f"{self.other} and {len(self.seeds)} seeds: pair every seed's values")

    @property
    def differences(self) -> tuple[float, ...]:
        """Per seed, ``ours - other``."""
        return tuple(a - b for a, b in zip(self.ours_values, self.other_values))

    @property
    def favourable(self) -> int:
        """Seeds whose paired difference has the paper's sign."""
        sign = -1 if self.better == "lower" else 1
        return sum(difference * sign > 0 for difference in self.differences)

    @property
    def unfavourable(self) -> int:
        sign = -1 if self.better == "lower" else 1
        return sum(difference * sign < 0 for difference in self.differences)

    @property
    def outcome(self) -> str:
        seeds = len(self.seeds)
        if seeds < MIN_SEEDS:
            return INCONCLUSIVE
        if self.favourable == seeds:
            return REPRODUCED
        if self.unfavourable == seeds:
            return NOT_REPRODUCED
        return INCONCLUSIVE

    @property
    def spread_exceeds_effect(self) -> bool:
        """Whether the paired differences vary more (sample standard deviation) than their mean is far from 0:
        the seeds do not separate the variants, and more seeds are needed before a direction can show."""
        differences = Spread.of(self.differences)
        return len(self.differences) > 1 and differences.std > abs(differences.mean)

    def describe(self, digits: int = 4) -> str:
        ours, other = Spread.of(self.ours_values), Spread.of(self.other_values)
        differences = ", ".join(f"{difference:+.{digits}f}" for difference in self.differences)
        reason = f"; fewer than {MIN_SEEDS} seeds" if len(self.seeds) < MIN_SEEDS else ""
        reason += "; the spread over seeds exceeds the effect: more seeds needed" if self.spread_exceeds_effect else ""
        return (f"{self.metric} ({self.better} is better): {self.ours} {ours.format(digits)} vs {self.other} "
                f"{other.format(digits)}; paired differences [{differences}], the paper's sign in {self.favourable} of "
                f"{len(self.seeds)}: {self.outcome}{reason}")

    def to_dict(self) -> dict:
        return {"metric": self.metric, "ours": self.ours, "other": self.other, "better": self.better,
                "seeds": list(self.seeds), "ours_values": list(self.ours_values), "other_values": list(self.other_values),
                "differences": list(self.differences), "favourable": self.favourable, "outcome": self.outcome,
                "spread_exceeds_effect": self.spread_exceeds_effect, "primary": self.primary}


def compare(metric: str, ours: str, other: str, better: str, per_seed: dict[str, dict[str, dict[int, float]]],
            primary: bool = True) -> Comparison:
    """A ``Comparison`` from ``per_seed[variant][metric][seed]``, paired over the seeds both variants have."""
    ours_by_seed, other_by_seed = per_seed[ours][metric], per_seed[other][metric]
    seeds = tuple(sorted(set(ours_by_seed) & set(other_by_seed)))
    return Comparison(metric, ours, other, better, tuple(ours_by_seed[seed] for seed in seeds),
                      tuple(other_by_seed[seed] for seed in seeds), seeds, primary)


def overall(comparisons: Sequence[Comparison]) -> str:
    """The ablation's verdict from its primary comparisons: their common outcome, else inconclusive."""
    outcomes = {comparison.outcome for comparison in comparisons if comparison.primary}
    if not outcomes:
        raise ValueError("an ablation needs at least one primary comparison to reach a verdict")
    return outcomes.pop() if len(outcomes) == 1 else INCONCLUSIVE
