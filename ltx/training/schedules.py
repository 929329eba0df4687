"""Learning-rate schedules: linear warm-up, then a constant rate or a linear / cosine decay to a floor,
as ``torch.optim.lr_scheduler.LambdaLR`` multipliers of the optimizer's learning rate.

A schedule config (``conf/scheduler/``) names an entry of the "lr schedule" registry and its arguments::

    name: cosine          # constant | linear | cosine | wsd
    warmup_steps: 100
    total_steps: ${trainer.max_steps}
    min_lr_ratio: 0.1

Steps are optimizer steps, counted from 0. Warm-up: step ``s < warmup_steps`` trains at
``(s + 1) / warmup_steps`` of the rate (no step at rate 0). Decay: from the full rate at step
``warmup_steps`` to ``min_lr_ratio`` times it at ``total_steps`` (the end of the run: its last step,
``total_steps - 1``, is one decay step above the floor, as in ``torch.optim.lr_scheduler.CosineAnnealingLR``),
and the floor after that. An entry is a factory that returns the multiplier of step ``s``; plugins add
their own through the registry.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from ltx.registry import LR_SCHEDULES

LRMultiplier = Callable[[int], float]
CONSTANT = {"name": "constant", "warmup_steps": 0}  # no schedule configured: the optimizer's rate throughout


def warmup_multiplier(step: int, warmup_steps: int) -> float:
    """``(step + 1) / warmup_steps`` during warm-up, then 1."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def check_schedule(warmup_steps: int, total_steps: int | None = None, min_lr_ratio: float | None = None) -> None:
    """Raise ``ValueError`` naming the bad argument and what to do about it."""
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a whole number of optimizer steps >= 0, got {warmup_steps!r}")
    if total_steps is not None:
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive number of optimizer steps, got {total_steps!r} "
                             f"(trainer.max_steps=-1 means no limit: then set scheduler.total_steps)")
        if total_steps <= warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps}), else the decay "
                             f"never starts; lower warmup_steps or raise total_steps (or trainer.max_steps)")
    if min_lr_ratio is not None and not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1] (the final rate as a fraction of lr), got {min_lr_ratio!r}")


def warmup_then_decay(shape: Callable[[float], float], warmup_steps: int, total_steps: int,
                      min_lr_ratio: float, decay_start: int | None = None) -> LRMultiplier:
    """Warm-up, the full rate until ``decay_start`` (default: the end of warm-up), then ``min_lr_ratio +
    (1 - min_lr_ratio) * shape(progress)`` with progress 0 -> 1 from ``decay_start`` to ``total_steps``
    (held at 1 after it); ``shape`` falls from 1 to 0."""
    check_schedule(warmup_steps, total_steps, min_lr_ratio)
    decay_start = warmup_steps if decay_start is None else decay_start

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return warmup_multiplier(step, warmup_steps)
        progress = min(1.0, max(0.0, (step - decay_start) / (total_steps - decay_start)))
        return min_lr_ratio + (1.0 - min_lr_ratio) * shape(progress)

    return multiplier


@LR_SCHEDULES.register("constant")
def constant(warmup_steps: int = 0) -> LRMultiplier:
    """Linear warm-up over ``warmup_steps``, then the optimizer's learning rate."""
    check_schedule(warmup_steps)
    return lambda step: warmup_multiplier(step, warmup_steps)


@LR_SCHEDULES.register("linear")
def linear(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LRMultiplier:
    """Linear warm-up, then linear decay to ``min_lr_ratio`` x lr at ``total_steps``."""
    return warmup_then_decay(lambda progress: 1.0 - progress, warmup_steps, total_steps, min_lr_ratio)


@LR_SCHEDULES.register("cosine")
def cosine(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LRMultiplier:
    """Linear warm-up, then half-cosine decay to ``min_lr_ratio`` x lr at ``total_steps`` (SGDR,
    Loshchilov & Hutter 2017, eq. 5, without restarts)."""
    return warmup_then_decay(lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)), warmup_steps, total_steps,
                             min_lr_ratio)


@LR_SCHEDULES.register("wsd")
def warmup_stable_decay(warmup_steps: int, total_steps: int, decay_fraction: float = 0.2,
                        min_lr_ratio: float = 0.0) -> LRMultiplier:
    """Warm-up, the full rate, then linear decay to ``min_lr_ratio`` x lr over the last ``decay_fraction`` of
    ``total_steps`` (warm-up-stable-decay: Hu et al. 2024, MiniCPM; Hägele et al. 2024). The run trains at
    the full rate for as long as a constant schedule would, and the short final decay settles the weights."""
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1] (the share of total_steps spent decaying), "
                         f"got {decay_fraction!r}")
    check_schedule(warmup_steps, total_steps, min_lr_ratio)  # before total_steps is used below
    decay_start = max(warmup_steps, total_steps - round(decay_fraction * total_steps))
    return warmup_then_decay(lambda progress: 1.0 - progress, warmup_steps, total_steps, min_lr_ratio, decay_start)


def schedule_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """A schedule config as a plain dict (interpolations such as ``${trainer.max_steps}`` resolved); null =
    the constant rate without warm-up."""
    if settings is None:
        return dict(CONSTANT)
    if isinstance(settings, DictConfig):
        return OmegaConf.to_container(settings, resolve=True)
    return dict(settings)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, settings: Mapping[str, Any] | None,
                       label: str = "scheduler") -> LambdaLR:
    """A ``LambdaLR`` over ``optimizer`` from a schedule config; errors name the config (``label``), the bad
    value and the valid choices."""
    arguments = schedule_settings(settings)
    name = arguments.pop("name", None)
    if name is None:
        raise ValueError(f"{label} needs a name, one of: {', '.join(LR_SCHEDULES.names())}")
    factory = LR_SCHEDULES.get(name)
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(arguments) - set(accepted))
    missing = [key for key, parameter in accepted.items() if parameter.default is inspect.Parameter.empty
               and key not in arguments]
    if unknown or missing:
        problem = f"does not take {', '.join(unknown)}" if unknown else f"needs {', '.join(missing)}"
        raise ValueError(f"{label} {name!r} {problem}; it takes: {', '.join(accepted)}")
    try:
        return LambdaLR(optimizer, factory(**arguments))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label} {name!r}: {error}") from error


def delayed_schedule(settings: Mapping[str, Any] | None, start_step: int) -> dict[str, Any]:
    """The same schedule for an optimizer that first steps at generator step ``start_step`` (the GAN's
    discriminator) and counts its own steps: warm-up from its first step, and a ``total_steps`` shortened
    by ``start_step`` so that it decays to its floor at the end of the run as well. At least
    ``warmup_steps + 1``: an optimizer that starts too late to finish warming up only warms up."""
    arguments = schedule_settings(settings)
    if "total_steps" in arguments:
        arguments["total_steps"] = max(arguments["total_steps"] - start_step, arguments.get("warmup_steps", 0) + 1)
    return arguments


def scheduled(optimizer: torch.optim.Optimizer, settings: Mapping[str, Any] | None, name: str,
              label: str = "scheduler") -> dict[str, Any]:
    """Lightning's optimizer config: ``optimizer`` with its schedule, stepped once per optimizer step and
    logged as ``name`` by ``LearningRateMonitor``; Lightning checkpoints the schedule's state and restores
    it on resume (for manual optimisation too, where the stage steps the schedule itself). A resumed run
    takes its step count and base rate from the checkpoint and the schedule's shape from the config
    (the multipliers are plain functions, which ``LambdaLR`` does not save)."""
    scheduler = build_lr_scheduler(optimizer, settings, label)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": name}}
