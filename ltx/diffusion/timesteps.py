"""Training timestep samplers, registered by name in ``ltx.registry.TIMESTEP_SAMPLERS``.

Every sampler has the same interface: ``sample(batch_size, num_tokens, generator=None, device=None)``
returns one timestep per sample, shape ``(B,)``, in [0, 1] (0 = clean, 1 = pure noise). Draws happen on
the generator's device (CPU when none is given) and are then moved to ``device``, so a seeded CPU
generator gives the same timesteps whatever device training runs on.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

from ltx.registry import TIMESTEP_SAMPLERS


def _draw(
    kind: str, batch_size: int, generator: torch.Generator | None, device: torch.device | str | None
) -> torch.Tensor:
    """``batch_size`` standard-normal (``kind="normal"``) or U[0, 1) draws, moved to ``device``."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 0:
        raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    draw = torch.randn if kind == "normal" else torch.rand
    values = draw(batch_size, generator=generator, device=draw_device)  # (B,)
    return values if device is None else values.to(device)


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def token_count_shift(
    num_tokens: int,
    min_tokens: int = 1024,
    max_tokens: int = 4096,
    min_shift: float = 0.95,
    max_shift: float = 2.05,
) -> float:
    """The logit-normal mean ``mu`` for a sequence of ``num_tokens`` tokens (LTX-Video, after SD3).

    Linear in the token count through (min_tokens, min_shift) and (max_tokens, max_shift) and, like
    the release's trainer and scheduler, extrapolated beyond them rather than clamped: longer
    sequences keep more signal at a given t, so they need more noise. The inference sampler reuses
    this value to shift its schedule.
    """
    if max_tokens == min_tokens:
        raise ValueError(f"min_tokens and max_tokens must differ, both are {min_tokens}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be at least 1, got {num_tokens!r}")
    slope = (max_shift - min_shift) / (max_tokens - min_tokens)
    return min_shift + (num_tokens - min_tokens) * slope


@TIMESTEP_SAMPLERS.register("uniform")
class UniformTimestepSampler:
    """t ~ U[0, 1): every noise level equally often."""

    def sample(
        self,
        batch_size: int,
        num_tokens: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        return _draw("uniform", batch_size, generator, device)


@TIMESTEP_SAMPLERS.register("logit_normal")
class LogitNormalTimestepSampler:
    """t = sigmoid(mean + std * N(0, 1)), the SD3 logit-normal (Esser et al. 2024), ignoring length."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        if std <= 0:
            raise ValueError(f"std must be positive, got {std!r}")
        self.mean = float(mean)
        self.std = float(std)

    def sample(
        self,
        batch_size: int,
        num_tokens: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        return torch.sigmoid(self.mean + self.std * _draw("normal", batch_size, generator, device))


@TIMESTEP_SAMPLERS.register("shifted_logit_normal")
class ShiftedLogitNormalTimestepSampler:
    """LTX-Video's sampler: logit-normal shifted by token count, stretched so its tails reach 0 and 1.

    Args:
        min_tokens, max_tokens, min_shift, max_shift: the token-count shift, see ``token_count_shift``.
        std: standard deviation of the normal before the sigmoid.
        lower_percentile, upper_percentile: the percentiles of the shifted logit-normal mapped to
            t = 0 and t = 1 (0.5th and 99.9th in the release).
        uniform_probability: fraction of samples drawn from U[0, 1] instead, so no noise level is
            starved (0.1 in the release).
        reflect_below: draws stretched below this value are reflected around it (``t -> 2e - t``);
            0 gives ``t -> -t``. LTX-Video-Trainer uses 1e-3 (and then never samples t < 1e-3).
    """

    def __init__(
        self,
        min_tokens: int = 1024,
        max_tokens: int = 4096,
        min_shift: float = 0.95,
        max_shift: float = 2.05,
        std: float = 1.0,
        lower_percentile: float = 0.005,
        upper_percentile: float = 0.999,
        uniform_probability: float = 0.1,
        reflect_below: float = 0.0,
    ):
        if std <= 0:
            raise ValueError(f"std must be positive, got {std!r}")
        if not 0.0 < lower_percentile < upper_percentile < 1.0:
            raise ValueError(
                "percentiles must satisfy 0 < lower_percentile < upper_percentile < 1, got "
                f"{lower_percentile!r} and {upper_percentile!r}"
            )
        if not 0.0 <= reflect_below < 1.0:
            raise ValueError(f"reflect_below must be in [0, 1), got {reflect_below!r}")
        if max_tokens == min_tokens:
            raise ValueError(f"min_tokens and max_tokens must differ, both are {min_tokens}")
        self.shift_config = dict(
            min_tokens=min_tokens, max_tokens=max_tokens, min_shift=min_shift, max_shift=max_shift
        )
        self.std = float(std)
        # 0.5th and 99.9th percentiles of N(0, 1) by default: -2.5758 and 3.0902.
        self.lower_z = NormalDist().inv_cdf(lower_percentile)
        self.upper_z = NormalDist().inv_cdf(upper_percentile)
        self.uniform_probability = _check_probability("uniform_probability", uniform_probability)
        self.reflect_below = float(reflect_below)

    def shift(self, num_tokens: int) -> float:
        """``mu`` for this sampler's shift configuration."""
        return token_count_shift(num_tokens, **self.shift_config)

    def sample(
        self,
        batch_size: int,
        num_tokens: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Timesteps ``(B,)``; see ARCHITECTURE.md "Rectified flow training" for the recipe.

        The normal, the uniform alternative and the coin are always drawn in that order, so samplers
        with different ``uniform_probability`` and the same seed agree wherever the coin picks the
        logit-normal.
        """
        mu = self.shift(num_tokens)
        normal = _draw("normal", batch_size, generator, device)  # (B,)
        uniform = _draw("uniform", batch_size, generator, device)  # (B,)
        coin = _draw("uniform", batch_size, generator, device)  # (B,)
        shifted = torch.sigmoid(mu + self.std * normal)
        lo = _sigmoid(mu + self.std * self.lower_z)
        hi = _sigmoid(mu + self.std * self.upper_z)
        stretched = (shifted - lo) / (hi - lo)
        eps = self.reflect_below
        reflected = torch.where(stretched >= eps, stretched, 2 * eps - stretched).clamp(0.0, 1.0)
        uniform = eps + (1 - eps) * uniform
        return torch.where(coin < self.uniform_probability, uniform, reflected)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))
