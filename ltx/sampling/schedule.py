"""Inference timestep schedules for rectified flow: the LTX-Video release's token-count-shifted,
terminal-stretched schedule (diffusers ``FlowMatchEulerDiscreteScheduler`` with the LTX config)."""

from __future__ import annotations

import math

import torch

from ltx.diffusion.timesteps import token_count_shift as _training_token_count_shift


def token_count_shift(num_tokens: int, base_tokens: int = 1024, max_tokens: int = 4096,
                      base_shift: float = 0.95, max_shift: float = 2.05) -> float:
    """The schedule shift ``mu``, linear in the token count (diffusers ``calculate_shift``; paper Sec. 2.4).

    Passes through ``(base_tokens, base_shift)`` and ``(max_tokens, max_shift)`` and extrapolates
    beyond them, exactly as training's timestep sampler does (one formula for both sides).
    """
    return _training_token_count_shift(num_tokens, base_tokens, max_tokens, base_shift, max_shift)


def flow_timesteps(num_steps: int, num_tokens: int, terminal: float | None = 0.1,
                   shift: float | None = None) -> torch.Tensor:
    """The release's ``(num_steps + 1,)`` float32 schedule from 1 down to 0 (t = 1 is pure noise).

    ``linspace(1, 1/N, N)`` -> time shift ``e^mu / (e^mu + 1/t - 1)`` (SD3 / Flux resolution shift,
    ``mu = token_count_shift(num_tokens)`` unless ``shift`` gives it) -> stretch ``1 - t`` so the last
    step lands on ``terminal`` (LTX-Video ``rf.py``; diffusers ``shift_terminal``; ``None`` or 0 skips
    it) -> append 0, where the last Euler step ends. With one step the schedule is ``[1, 0]`` (the
    stretch is undefined when the only timestep is 1; diffusers would divide by zero).
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
    if terminal is not None and not 0.0 <= terminal < 1.0:
        raise ValueError(f"terminal must be in [0, 1) (the last timestep before 0), got {terminal!r}")
    mu = token_count_shift(num_tokens) if shift is None else float(shift)
    t = torch.linspace(1.0, 1.0 / num_steps, num_steps, dtype=torch.float64)  # (N,)
    t = math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))
    if terminal and num_steps > 1:
        one_minus_t = 1.0 - t
        t = 1.0 - one_minus_t * (1.0 - terminal) / one_minus_t[-1]
    return torch.cat([t, t.new_zeros(1)]).float()  # (N + 1,)
