"""What the prepared GPU check (``benchmarks/gpu_check.py``) runs: the sizes of a GPU run and of the CPU dry
run, each section's time share, and what sections share and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_budget import Budget

SECTIONS = ("correctness", "gemm", "dit_train", "fsdp", "vae", "sampling", "dit_compiled")
Grid = tuple[int, int, int]  # latent (F', H', W')
Clip = tuple[int, int, int]  # pixel (frames, height, width)


@dataclass(frozen=True)
class Plan:
    """What each section runs: the sizes of a GPU run or of the CPU dry run."""

    name: str
    device: str
    shares: dict[str, float]  # seconds per section: what it plans sizes for
    total_s: float
    grace_s: float  # a section still running this long after its share is stopped (a hard limit, see gpu_check)
    # correctness: overrides of the tiny presets, a latent grid and a pixel clip
    correctness_dit: dict[str, Any]
    correctness_grid: Grid
    correctness_clip: Clip
    gemm_size: int
    gemm_repeats: int
    # dit_train: the preset, its overrides, and per wanted size its candidate grids, largest first
    dit_preset: str
    dit_overrides: dict[str, Any]
    dit_grids: tuple[tuple[Grid, ...], ...]
    dit_steps: int
    compile_backend: str
    compile_allowance_s: float  # predicted seconds of one compilation (not measurable beforehand)
    # fsdp: a conf/model/dit yaml, its overrides, the latent grid, the steps
    fsdp_model: str
    fsdp_overrides: dict[str, Any]
    fsdp_grid: Grid
    fsdp_steps: int
    # vae: preset, encode + decode clip candidates (largest first), training clip
    vae_preset: str
    vae_clips: tuple[Clip, ...]
    vae_train_clip: Clip
    vae_repeats: int
    # sampling: the DiT and VAE presets, clip candidates, steps
    sample_dit_preset: str
    sample_dit_overrides: dict[str, Any]
    sample_clips: tuple[Clip, ...]
    sample_steps: int

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


GPU_PLAN = Plan(
    name="gpu", device="cuda",
    shares={"correctness": 20, "gemm": 10, "dit_train": 130, "fsdp": 70, "vae": 65, "sampling": 75, "dit_compiled": 90},
    total_s=470, grace_s=30,
    correctness_dit={"num_attention_heads": 8, "attention_head_dim": 64, "num_layers": 4, "cross_attention_dim": 512,
                     "caption_channels": 256},
    correctness_grid=(5, 16, 16), correctness_clip=(17, 128, 128),
    gemm_size=8192, gemm_repeats=10,
    dit_preset="ltx-video-2b-0.9.1", dit_overrides={},
    dit_grids=(((16, 16, 24),),  # 121x512x768: 6,144 tokens
               ((16, 30, 50), (16, 24, 40), (16, 16, 48), (16, 16, 32))),  # 121x960x1600: 24,000 tokens
    dit_steps=3, compile_backend="inductor", compile_allowance_s=60,
    fsdp_model="ltx-video-2b-0.9.1", fsdp_overrides={"num_layers": 4}, fsdp_grid=(16, 16, 24), fsdp_steps=10,
    vae_preset="ltx-video-0.9.1",
    vae_clips=((121, 512, 768), (65, 512, 768), (33, 512, 768), (17, 256, 384)),
    vae_train_clip=(17, 256, 256), vae_repeats=2,
    sample_dit_preset="ltx-video-2b-0.9.1", sample_dit_overrides={},
    sample_clips=((121, 512, 768), (65, 512, 768), (33, 512, 768), (17, 256, 384)), sample_steps=40,
)
DRY_PLAN = Plan(
    name="dry-run", device="cpu",
    shares={"correctness": 60, "gemm": 20, "dit_train": 120, "fsdp": 240, "vae": 90, "sampling": 90, "dit_compiled": 120},
    total_s=700, grace_s=120,
    correctness_dit={"num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2, "cross_attention_dim": 32},
    correctness_grid=(2, 4, 4), correctness_clip=(9, 64, 64),
    gemm_size=256, gemm_repeats=3,
    dit_preset="tiny", dit_overrides={"num_layers": 2},
    dit_grids=(((2, 2, 4),), ((3, 4, 8), (2, 4, 4))),
    dit_steps=2, compile_backend="eager", compile_allowance_s=5,
    fsdp_model="tiny", fsdp_overrides={"num_layers": 2}, fsdp_grid=(2, 2, 2), fsdp_steps=3,
    vae_preset="tiny", vae_clips=((9, 64, 64), (9, 32, 32)), vae_train_clip=(9, 32, 32), vae_repeats=1,
    sample_dit_preset="tiny", sample_dit_overrides={"num_layers": 2}, sample_clips=((9, 64, 64), (9, 32, 32)),
    sample_steps=2,
)


@dataclass
class SectionResult:
    """One section's outcome: rows (flat dicts, ``case`` first), notes, and the error if it failed."""

    name: str
    status: str = "not run"  # ok | failed | timed out | not run
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def add(self, case: str, **values: Any) -> dict[str, Any]:
        row = {"case": case, **values}
        self.rows.append(row)
        return row


@dataclass
class Context:
    """What sections share: the plan, the clock, a scratch directory and measurements later sections use
    to predict their costs (the gemm peak, the DiT forward seconds per token, the VAE seconds per pixel)."""

    plan: Plan
    budget: Budget
    workdir: Path
    measured: dict[str, float] = field(default_factory=dict)
    t5_dirs: dict[int, Path] = field(default_factory=dict)
    dit_grids: list[Grid] = field(default_factory=list)  # the grids dit_train ran at (dit_compiled repeats them)
    dit_flops: dict[Grid, int] = field(default_factory=dict)  # FLOPs of one training step per grid
    dit_step_s: dict[tuple[str, Grid], float] = field(default_factory=dict)  # (variant, grid) -> median step

    def tiny_t5(self, dim: int) -> Path:
        """A tiny random T5 (tokenizer/ + text_encoder/) with ``dim``-wide features, written once."""
        if dim not in self.t5_dirs:
            from benchmarks.sampling import WORDS
            from ltx.text.tiny import write_tiny_t5

            self.t5_dirs[dim] = write_tiny_t5(self.workdir / f"t5_{dim}", WORDS, dim=dim)
        return self.t5_dirs[dim]

