"""Time shares of the prepared GPU check (``benchmarks/gpu_check.py``) and the rule that shrinks a size
that would not fit its share.

A lent GPU gives a task 15 minutes of device time in all, starting the machine included, so the check
must end inside about 8 minutes whatever the GPU does. Every section has a share of seconds; before an
expensive case a section predicts its cost from what it has measured so far (a smaller size of the same
work) and takes the largest candidate size whose prediction fits what is left, saying so when it shrinks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

Size = TypeVar("Size")


@dataclass
class Budget:
    """Seconds for the whole check and each section's share; ``start_section`` opens a section's clock."""

    total_s: float
    shares: dict[str, float]
    clock: Callable[[], float] = time.perf_counter
    started: float = field(init=False)
    section: str | None = field(init=False, default=None)
    section_started: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.total_s <= 0 or any(share <= 0 for share in self.shares.values()):
            raise ValueError(f"the budget's total and shares must be positive seconds, got {self.total_s} and "
                             f"{self.shares}")
        self.started = self.clock()

    def start_section(self, name: str) -> None:
        if name not in self.shares:
            raise ValueError(f"no time share for section {name!r}; sections: {', '.join(self.shares)}")
        self.section, self.section_started = name, self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def section_left(self) -> float:
        """Seconds left to the open section: its share, cut to what the whole check has left."""
        if self.section is None:
            raise RuntimeError("no section started: call start_section first")
        share_left = self.shares[self.section] - (self.clock() - self.section_started)
        return max(0.0, min(share_left, self.total_s - self.elapsed()))

    def total_left(self) -> float:
        return max(0.0, self.total_s - self.elapsed())


def choose_size(candidates: Sequence[Size], predicted_seconds: Callable[[Size], float], seconds_left: float,
                describe: Callable[[Size], str] = str) -> tuple[Size | None, str]:
    """The first (largest) of ``candidates`` whose predicted cost fits ``seconds_left``, and a note: empty when
    the first one fits, else what was wanted, what it would have cost and what is run instead. None (with a
    note) when not even the smallest fits."""
    if not candidates:
        raise ValueError("choose_size needs at least one candidate size")
    wanted = candidates[0]
    for candidate in candidates:
        cost = predicted_seconds(candidate)
        if cost <= seconds_left:
            if candidate is wanted:
                return candidate, ""
            return candidate, (f"shrunk from {describe(wanted)} (predicted {predicted_seconds(wanted):.0f} s) to "
                               f"{describe(candidate)} (predicted {cost:.0f} s): {seconds_left:.0f} s left")
    smallest = candidates[-1]
    return None, (f"skipped: even {describe(smallest)} would take {predicted_seconds(smallest):.0f} s, "
                  f"{seconds_left:.0f} s left")
