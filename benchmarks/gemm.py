"""The machine's matrix-multiply peak: GFLOP/s of large square matmuls per dtype (the ceiling that the
DiT step's achieved GFLOP/s is compared against)."""

from __future__ import annotations

import torch

from benchmarks.harness import Row, Timing, interleave

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def measure_peak(size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of ``size x size`` matmuls per dtype (median of ``repeats``)."""
    target = device()
    cases = {}
    for name, dtype in DTYPES.items():
        a = torch.randn(size, size, device=target).to(dtype)
        b = torch.randn(size, size, device=target).to(dtype)
        cases[name] = lambda a=a, b=b: torch.matmul(a, b)
    times = interleave(cases, repeats=repeats, warmup=1)
    return {name: 2 * size**3 / Timing.of(seconds).median_s / 1e9 for name, seconds in times.items()}


def run(quick: bool) -> tuple[list[Row], dict[str, float]]:
    size = 1024 if quick else 2048
    peaks = measure_peak(size, repeats=3 if quick else 5)
    rows = [Row("gemm_peak", f"{name} matmul {size}x{size}", {"gflop_per_s": value}, notes=str(device()))
            for name, value in peaks.items()]
    return rows, peaks
