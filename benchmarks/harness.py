"""Timing helpers shared by the benchmark sections: interleaved repetitions, medians and spreads,
result rows with a target, peak memory.

Both sides of a comparison run in one process, alternating in every round (A B, B A, ...), so drift
of the machine (thermal state, other load) hits both alike. A row reports the median time of each side,
the spread ((max - min) / median) and ``ratio = reference median / our median`` (> 1: we are faster).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


def make_optimizer(side: str, model: torch.nn.Module, train_config: str) -> torch.optim.Optimizer:
    """The optimizer each side trains with. Ours: the one ``conf/<train_config>.yaml`` builds with its default
    ``optimizer`` group (``conf/optimizer/adamw.yaml``: AdamW, fused). diffusers ships no trainer; its training examples build ``torch.optim.AdamW`` with torch's
    defaults (foreach)."""
    if side == "diffusers":
        return torch.optim.AdamW(model.parameters(), lr=1e-6)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ltx.cli.train import CONFIG_DIR

    stage = OmegaConf.load(CONFIG_DIR / f"{train_config}.yaml").optimizer  # lr, betas, weight decay
    settings = OmegaConf.merge(stage, OmegaConf.load(CONFIG_DIR / "optimizer" / "adamw.yaml"))  # the group, after _self_
    return instantiate(settings, lr=1e-6)(model.parameters())


def optimizer_note(train_config: str) -> str:
    return (f"optimizer: ours AdamW fused=True (conf/{train_config}.yaml, optimizer=adamw), diffusers AdamW with "
            f"torch's defaults")


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(function: Callable[[], Any]) -> float:
    synchronize()
    start = time.perf_counter()
    function()
    synchronize()
    return time.perf_counter() - start


def interleave(cases: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every case: ``warmup`` untimed calls each, then ``repeats`` rounds in which
    every case runs once, in an order that rotates from round to round."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(cases[name]))
    gc.collect()
    return times


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    spread: float  # (max - min) / median
    repeats: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        median = statistics.median(seconds)
        return cls(median, min(seconds), max(seconds), (max(seconds) - min(seconds)) / median, len(seconds))


@dataclass
class Row:
    """One comparison (or one measurement, when there is no reference)."""

    section: str
    label: str
    ours: dict[str, Any]
    reference: dict[str, Any] | None = None
    ratio: float | None = None  # reference time / our time (or our throughput / reference throughput)
    target: float | None = None  # the ratio we aim for
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.target is None or self.ratio is None else self.ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def comparison(section: str, label: str, ours: list[float], reference: list[float], target: float | None = None,
               work: float | None = None, unit: str = "items", **extra: Any) -> Row:
    """A row from two lists of seconds; ``work`` (e.g. tokens per call) adds throughputs in ``unit``/s."""
    mine, theirs = Timing.of(ours), Timing.of(reference)
    ours_dict, reference_dict = asdict(mine), asdict(theirs)
    if work is not None:
        ours_dict[f"{unit}_per_s"] = work / mine.median_s
        reference_dict[f"{unit}_per_s"] = work / theirs.median_s
    return Row(section, label, ours_dict, reference_dict, theirs.median_s / mine.median_s, target, extra=extra)


def peak_memory_bytes(function: Callable[[], Any]) -> int | None:
    """Peak device memory of one call on a GPU; None on CPU (measured per process there, see vae.py)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before
