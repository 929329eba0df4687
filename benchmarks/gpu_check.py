"""The prepared GPU check: ``python -m benchmarks.gpu_check --out DIR`` (``make gpu-check``).

One call on a lent GPU (benchmarks/README.md, "The GPU procedure", says how to get there) measures, in
about 8 minutes, what CPU tests cannot: CUDA numerics, bf16 training speed, NCCL FSDP2, the VAE and
sampling at the paper's sizes. Sections, each inside its share of the time (``GPU_PLAN.shares``):

- ``correctness``: our DiT and VAE against diffusers at a small configuration, fp32 and bf16, on the GPU:
  a CUDA-only numerics problem shows up here first.
- ``gemm``: the GPU's measured bf16 (and fp32) matmul peak, the ceiling of the model FLOP/s utilisation.
- ``dit_train``: the 2B DiT preset (random weights) training step, bf16 autocast, fused AdamW, at about
  6,144 and 24,000 latent tokens: tokens/s, model FLOP/s utilisation (FLOPs counted by torch's
  FlopCounterMode) against the gemm peak, peak memory; ours eager, ``LTXVideoTransformer3DModel`` with the
  same weights, ours with ``parallel.compile=true``.
- ``fsdp``: ``train_dit`` with ``trainer=fsdp`` (world size 1, NCCL on a GPU), bf16 parameters, activation
  checkpointing: 10 steps at the 2B preset's width (4 blocks), completes and writes its distributed checkpoint.
- ``vae``: the 0.9.1 VAE (random weights) in bf16: encode + decode of 1x3x121x512x768, time and peak memory,
  ours against ``AutoencoderKLLTXVideo``; and a training step (bf16 autocast) at 1x3x17x256x256.
- ``sampling``: the 2B DiT + 0.9.1 VAE at 121x512x768: 40 Euler steps with CFG, ours against diffusers'
  ``LTXPipeline`` with the same weights and a tiny T5 (the text encoder is not the point).

A size that would not fit its section's share is shrunk, and the row says so (``benchmarks.gpu_budget``).
A failing section is recorded with its error and the next one runs; ``DIR/gpu_check.json`` and
``DIR/gpu_check.md`` are rewritten after every section, so a run stopped early still reports.
``--dry-run`` runs the same code at tiny sizes on CPU (gloo) in about a minute; ``make test`` runs it.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.gpu_budget import Budget, choose_size
from benchmarks.harness import make_optimizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("correctness", "gemm", "dit_train", "fsdp", "vae", "sampling")
PROMPT = "a red car drives on the beach at sunset"
Grid = tuple[int, int, int]  # latent (F', H', W')
Clip = tuple[int, int, int]  # pixel (frames, height, width)


@dataclass(frozen=True)
class Plan:
    """What each section runs: the sizes of a GPU run or of the CPU dry run."""

    name: str
    device: str
    shares: dict[str, float]  # seconds per section
    total_s: float
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
    shares={"correctness": 20, "gemm": 10, "dit_train": 200, "fsdp": 70, "vae": 65, "sampling": 75}, total_s=470,
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
    shares={"correctness": 60, "gemm": 20, "dit_train": 120, "fsdp": 240, "vae": 90, "sampling": 90}, total_s=600,
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
    status: str = "not run"  # ok | failed | not run
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

    def tiny_t5(self, dim: int) -> Path:
        """A tiny random T5 (tokenizer/ + text_encoder/) with ``dim``-wide features, written once."""
        if dim not in self.t5_dirs:
            from ltx.text.tiny import write_tiny_t5

            self.t5_dirs[dim] = write_tiny_t5(self.workdir / f"t5_{dim}", PROMPT.split(), dim=dim)
        return self.t5_dirs[dim]


# ---------------------------------------------------------------------------------------------- helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    value = function()
    synchronize(device)
    return time.perf_counter() - start, value


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> int:
    """Reset the peak-memory counter; the bytes allocated now (the baseline a peak is measured from)."""
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_gib(device: torch.device, baseline: int) -> float | None:
    """GiB allocated at the peak since ``reset_peak`` above its baseline; None on CPU."""
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_allocated(device) - baseline) / 2**30


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def autocast(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def grid_tokens(grid: Grid) -> int:
    return grid[0] * grid[1] * grid[2]


def describe_grid(grid: Grid) -> str:
    return f"{grid_tokens(grid)} tokens ({grid[0]}x{grid[1]}x{grid[2]})"


def describe_clip(clip: Clip) -> str:
    return f"1x3x{clip[0]}x{clip[1]}x{clip[2]}"


def clip_pixels(clip: Clip) -> int:
    return clip[0] * clip[1] * clip[2]


def diffusers_transformer(ours: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """diffusers' ``LTXVideoTransformer3DModel`` with our model's configuration and weights (same names)."""
    from diffusers import LTXVideoTransformer3DModel

    from ltx.interop.diffusers import transformer_config_to_diffusers

    with torch.device(device):
        reference = LTXVideoTransformer3DModel.from_config(transformer_config_to_diffusers(ours.config))
    reference.load_state_dict(ours.state_dict(), strict=True)
    return reference.to(dtype=next(ours.parameters()).dtype)


def diffusers_vae(ours: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """diffusers' ``AutoencoderKLLTXVideo`` with our VAE's configuration and weights."""
    from diffusers import AutoencoderKLLTXVideo

    from ltx.interop.diffusers import vae_config_to_diffusers

    with torch.device(device):
        reference = AutoencoderKLLTXVideo.from_config(vae_config_to_diffusers(ours.config))
    reference.load_state_dict(ours.state_dict(), strict=True)
    return reference.to(dtype=next(ours.parameters()).dtype)


def build_dit(preset: str, overrides: dict[str, Any], device: torch.device, randomize: bool = False):
    """Our DiT, initialised on ``device``; ``randomize`` redraws every >= 2-d weight from N(0, 0.02), so
    zero-initialised output layers do not make the outputs trivially equal."""
    from ltx.models.dit import VideoTransformer, dit_config

    torch.manual_seed(0)
    with torch.device(device):
        model = VideoTransformer(dit_config(preset, **overrides))
    if randomize:
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.ndim >= 2:
                    parameter.normal_(0.0, 0.02)
    return model


def build_vae(preset: str, device: torch.device):
    from ltx.models.vae import VideoAutoencoder, vae_config

    torch.manual_seed(0)
    with torch.device(device):
        return VideoAutoencoder(vae_config(preset))


def dit_inputs(config, grid: Grid, device: torch.device, text_length: int = 128) -> dict[str, torch.Tensor]:
    """Random latents, a random velocity target as tokens `(B, N, C)`, t = 0.5, random text features."""
    from ltx.models.dit import patchify_latents

    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, config.in_channels, *grid, generator=generator)
    values = {"latents": latents, "target_tokens": patchify_latents(torch.randn(latents.shape, generator=generator)),
              "timestep": torch.full((1,), 0.5),
              "text": torch.randn(1, text_length, config.caption_channels, generator=generator),
              "mask": torch.ones(1, text_length)}
    return {name: value.to(device) for name, value in values.items()}


def our_velocity(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Our DiT's velocity as tokens `(B, N, C)` (diffusers' layout, so both sides compare directly)."""
    from ltx.models.dit import patchify_latents

    return patchify_latents(model(inputs["latents"], inputs["timestep"], inputs["text"], inputs["mask"], 24.0))


def reference_velocity(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """diffusers' velocity tokens `(B, N, C)` for the same inputs (timesteps x 1000, the release's RoPE scale)."""
    from ltx.models.dit import patchify_latents

    latents = inputs["latents"]
    _, _, frames, height, width = latents.shape
    return model(patchify_latents(latents), inputs["text"], inputs["timestep"] * 1000, inputs["mask"],
                 num_frames=frames, height=height, width=width, rope_interpolation_scale=(8 / 24.0, 32, 32),
                 return_dict=False)[0]


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max |ours - reference|, that over max |reference|)."""
    difference = (ours.float() - reference.float()).abs().max().item()
    return difference, difference / max(reference.float().abs().max().item(), 1e-12)


# --------------------------------------------------------------------------------------------- sections

CORRECTNESS_BOUNDS = {"fp32": 2e-3, "bf16": 5e-2}  # max difference over max |reference|; fp32 allows TF32 convs


def section_correctness(context: Context, result: SectionResult) -> None:
    """Our DiT and VAE against diffusers at a small configuration on the device, fp32 and bf16 autocast."""
    plan, device = context.plan, context.plan.torch_device
    ours = build_dit("tiny", plan.correctness_dit, device, randomize=True).eval()
    reference = diffusers_transformer(ours, device).eval()
    inputs = dit_inputs(ours.config, plan.correctness_grid, device, text_length=32)
    for dtype in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, dtype):
            difference, relative = relative_difference(our_velocity(ours, inputs), reference_velocity(reference, inputs))
        result.add(f"DiT {describe_grid(plan.correctness_grid)}, {dtype}", max_abs_difference=difference,
                   relative=relative, bound=CORRECTNESS_BOUNDS[dtype], met=relative <= CORRECTNESS_BOUNDS[dtype])
    vae = build_vae("tiny", device).eval()  # per-channel noise scales stay zero: the decoders' noise does nothing
    vae_reference = diffusers_vae(vae, device).eval()
    clip = torch.rand(1, 3, *plan.correctness_clip, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    timestep = torch.tensor([0.05], device=device)
    for dtype in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, dtype):
            mine = vae.decode(vae.encode(clip).mean, timestep)
            theirs = vae_reference.decode(vae_reference.encode(clip).latent_dist.mean, temb=timestep).sample
        difference, relative = relative_difference(mine, theirs)
        result.add(f"VAE encode + decode {describe_clip(plan.correctness_clip)}, {dtype}", max_abs_difference=difference,
                   relative=relative, bound=CORRECTNESS_BOUNDS[dtype], met=relative <= CORRECTNESS_BOUNDS[dtype])


def section_gemm(context: Context, result: SectionResult) -> None:
    """The bf16 and fp32 matmul peak (median of ``gemm_repeats`` products of size^3 after a warm-up)."""
    plan, device = context.plan, context.plan.torch_device
    size = plan.gemm_size
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        timed(lambda a=a, b=b: a @ b, device)
        seconds = statistics.median(timed(lambda a=a, b=b: a @ b, device)[0] for _ in range(plan.gemm_repeats))
        flops = 2 * size**3 / seconds
        context.measured[f"gemm_{name}_flop_per_s"] = flops
        result.add(f"{name} matmul {size}x{size}x{size}", tflop_per_s=flops / 1e12, median_s=seconds)


def train_step(model, velocity: Callable, inputs: dict, optimizer, device: torch.device) -> Callable[[], float]:
    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, "bf16"):
            loss = (velocity(model, inputs).float() - inputs["target_tokens"]).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def measure_steps(step: Callable[[], Any], steps: int, device: torch.device, warmup: int = 1,
                  count_flops: bool = False) -> dict[str, Any]:
    """Seconds of ``warmup`` untimed steps (the first counted by FlopCounterMode when asked), then ``steps``
    timed ones: their median, min, max, the peak memory above what was allocated before, the first loss."""
    baseline = reset_peak(device)
    counter = FlopCounterMode(display=False) if count_flops else nullcontext()
    with counter:
        first_s, first_loss = timed(step, device)
    for _ in range(warmup - 1):
        timed(step, device)
    seconds = [timed(step, device)[0] for _ in range(steps)]
    values = {"step_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
              "first_step_s": first_s, "first_loss": float(first_loss), "peak_GiB": peak_gib(device, baseline)}
    if count_flops:
        values["flops_per_step"] = counter.get_total_flops()
    return values


def section_dit_train(context: Context, result: SectionResult) -> None:
    """The DiT training step at the plan's token counts: ours eager, diffusers eager, ours compiled."""
    plan, budget, device = context.plan, context.budget, context.plan.torch_device
    from ltx.training.parallelize import apply_compile

    ours = build_dit(plan.dit_preset, plan.dit_overrides, device).train()
    parameters = sum(p.numel() for p in ours.parameters())
    result.notes.append(f"{plan.dit_preset} {plan.dit_overrides or ''}: {parameters / 1e9:.2f}B parameters, fp32 "
                        f"master weights, bf16 autocast, batch 1, 128 text tokens; optimizers as in benchmarks/dit.py")
    peak = context.measured.get("gemm_bf16_flop_per_s")
    flops_by_grid: dict[Grid, int] = {}
    step_by_grid: dict[Grid, float] = {}

    def run(variant: str, model, velocity: Callable, grid: Grid, warmup: int) -> dict[str, Any] | None:
        side = "diffusers" if variant == "diffusers" else "ours"
        inputs = dit_inputs(ours.config, grid, device)
        optimizer = make_optimizer(side, model, "train_dit")
        try:
            values = measure_steps(train_step(model, velocity, inputs, optimizer, device), plan.dit_steps, device,
                                   warmup=warmup, count_flops=variant == "ours" and grid not in flops_by_grid)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            result.add(f"{describe_grid(grid)}, {variant}", error=f"out of memory: {str(error).splitlines()[0]}")
            return None
        finally:
            del optimizer
            model.zero_grad(set_to_none=True)
            free_memory(device)
        flops_by_grid.setdefault(grid, values.pop("flops_per_step", 0))
        flops = flops_by_grid[grid]
        row = result.add(f"{describe_grid(grid)}, {variant}", tokens_per_s=grid_tokens(grid) / values["step_s"],
                         tflop_per_s=flops / values["step_s"] / 1e12,
                         mfu=(flops / values["step_s"] / peak) if peak else None, **values)
        if variant == "ours compiled":
            row["compile_s"] = values["first_step_s"] - values["step_s"]
        return row

    # calibrate on the first (small) size, then choose the large one so that every variant fits
    first = plan.dit_grids[0][0]
    calibration = run("ours", ours, our_velocity, first, warmup=1)
    if calibration is None:
        return
    step_by_grid[first] = calibration["step_s"]
    context.measured["dit_forward_s_per_token"] = calibration["step_s"] / 3 / grid_tokens(first)
    calls = plan.dit_steps + 2

    def predicted(grid: Grid) -> float:  # the three variants at ``grid``; attention makes it grow faster than linear
        per_step = calibration["step_s"] * (grid_tokens(grid) / grid_tokens(first)) ** 1.5
        return 3 * calls * per_step + plan.compile_allowance_s

    remaining_at_first = 2 * calls * calibration["step_s"] + plan.compile_allowance_s  # diffusers + compiled
    grids = [first]
    for candidates in plan.dit_grids[1:]:
        grid, note = choose_size(candidates, predicted, budget.section_left() - remaining_at_first, describe_grid)
        if note:
            result.notes.append(f"large size: {note}")
        if grid is not None:
            grids.append(grid)
    for grid in grids[1:]:  # ours eager at the large sizes; on out-of-memory the next smaller candidate
        candidates = next(c for c in plan.dit_grids if grid in c)
        for candidate in candidates[candidates.index(grid):]:
            if run("ours", ours, our_velocity, candidate, warmup=1) is not None:
                grids[grids.index(grid)] = candidate
                break
        else:
            grids.remove(grid)
    reference = diffusers_transformer(ours, device).train()
    for grid in grids:
        if budget.section_left() <= 0:
            result.notes.append(f"diffusers at {describe_grid(grid)}: out of time")
            continue
        run("diffusers", reference, reference_velocity, grid, warmup=1)
    del reference
    free_memory(device)
    apply_compile(ours, backend=plan.compile_backend)
    for grid in grids:
        if budget.section_left() <= 0:
            result.notes.append(f"compiled at {describe_grid(grid)}: out of time")
            continue
        run("ours compiled", ours, our_velocity, grid, warmup=2)
    by_case = {row["case"]: row for row in result.rows if "step_s" in row}
    for grid in grids:
        mine, theirs = by_case.get(f"{describe_grid(grid)}, ours"), by_case.get(f"{describe_grid(grid)}, diffusers")
        if mine and theirs:
            for row in (r for r in result.rows if r["case"].startswith(describe_grid(grid)) and "step_s" in r):
                row["speed_vs_diffusers"] = theirs["step_s"] / row["step_s"]


def fsdp_overrides(plan: Plan, run_dir: Path, t5: Path, caption_channels: int) -> list[str]:
    """The ``train_dit`` command line of the FSDP section."""
    frames, height, width = plan.fsdp_grid
    overrides = ", ".join(f"{key}: {value}" for key, value in plan.fsdp_overrides.items())
    accelerator = "gpu" if plan.torch_device.type == "cuda" else "cpu"
    return ["trainer=fsdp", f"trainer.accelerator={accelerator}", "trainer.devices=1", "logger=csv",
            f"model/dit={plan.fsdp_model}", f"model.dit.overrides={{{overrides}}}",
            "parallel.activation_checkpointing=true", "parallel.param_dtype=bfloat16", "data=synthetic_latents",
            "data.batch_size=1", f"data.latent_shape=[{frames},{height},{width}]", f"data.text_dim={caption_channels}",
            f"data.batches_per_epoch={plan.fsdp_steps}", "data.val_batches=1", f"trainer.max_steps={plan.fsdp_steps}",
            "trainer.log_every_n_steps=1", f"callbacks.checkpoint.every_n_train_steps={plan.fsdp_steps}",
            "vae_checkpoint=null", f"text_encoder.kwargs.path={t5}", "dit_training.samples=null",
            f"run_dir={run_dir}"]


def section_fsdp(context: Context, result: SectionResult) -> None:
    """``python -m ltx.cli.train --config-name train_dit trainer=fsdp ...`` in a child process: it must finish
    in the section's time, log every step and leave a complete distributed checkpoint at the last step."""
    import csv

    from ltx.models.dit import dit_config
    from ltx.training.checkpoints import checkpoint_step, is_complete_checkpoint

    plan = context.plan
    caption_channels = dit_config(plan.fsdp_model, **plan.fsdp_overrides).caption_channels
    run_dir = context.workdir / "fsdp_run"
    command = [sys.executable, "-m", "ltx.cli.train", "--config-name", "train_dit",
               *fsdp_overrides(plan, run_dir, context.tiny_t5(caption_channels), caption_channels)]
    result.notes.append("command: " + " ".join(command[1:]))
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=max(context.budget.section_left(), 1.0))
    wall = time.perf_counter() - start
    output = process.stdout + process.stderr
    backend = re.search(r"distributed_backend=(\w+)", output)
    if process.returncode != 0:
        raise RuntimeError(f"train_dit (trainer=fsdp) exited with {process.returncode}:\n" + output[-3000:])
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        losses = {int(row["step"]): float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")}
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    complete = is_complete_checkpoint(checkpoint)
    size = sum(path.stat().st_size for path in checkpoint.rglob("*") if path.is_file()) if checkpoint.exists() else 0
    result.add(f"train_dit trainer=fsdp, {plan.fsdp_model} {plan.fsdp_overrides}, {describe_grid(plan.fsdp_grid)}",
               wall_s=wall, backend=backend.group(1) if backend else None, steps_logged=len(losses),
               first_loss=losses.get(min(losses)) if losses else None, last_loss=losses.get(max(losses)) if losses else None,
               checkpoint_complete=complete, checkpoint_step=checkpoint_step(checkpoint) if complete else None,
               checkpoint_GiB=size / 2**30, met=complete and len(losses) == plan.fsdp_steps)


def section_vae(context: Context, result: SectionResult) -> None:
    """A training step (bf16 autocast, fp32 weights) of each side, then encode + decode in bf16 weights at the
    largest clip the time allows."""
    plan, budget, device = context.plan, context.budget, context.plan.torch_device
    ours = build_vae(plan.vae_preset, device)
    reference = diffusers_vae(ours, device)
    result.notes.append(f"{plan.vae_preset}: {sum(p.numel() for p in ours.parameters()) / 1e6:.0f}M parameters")
    frames, height, width = plan.vae_train_clip
    clip = torch.rand(1, 3, frames, height, width, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    timestep = torch.tensor([0.05], device=device)

    def reconstruction(side: str, model) -> Callable[[], torch.Tensor]:
        if side == "ours":
            return lambda: model.decode(model.encode(clip).sample(), timestep)
        return lambda: model.decode(model.encode(clip).latent_dist.sample(), temb=timestep).sample

    train_seconds = {}
    for side, model in (("ours", ours.train()), ("diffusers", reference.train())):
        optimizer = make_optimizer(side, model, "train_vae")
        decode = reconstruction(side, model)

        def step(model=model, optimizer=optimizer, decode=decode) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            torch.manual_seed(2)
            with autocast(device, "bf16"):
                loss = (decode().float() - clip).square().mean()
            loss.backward()
            optimizer.step()
            return loss.detach()

        values = measure_steps(step, plan.vae_repeats + 1, device)
        train_seconds[side] = values["step_s"]
        result.add(f"training step {describe_clip(plan.vae_train_clip)}, bf16 autocast, {side}",
                   frames_per_s=frames / values["step_s"], **values)
        del optimizer
        model.zero_grad(set_to_none=True)
        free_memory(device)
    ours, reference = ours.to(torch.bfloat16).eval(), reference.to(torch.bfloat16).eval()
    forward_per_pixel = train_seconds["ours"] / 3 / (frames * height * width)  # backward ~ 2x forward

    def predicted(candidate: Clip) -> float:  # both sides, a warm-up and the timed calls
        return 2 * (plan.vae_repeats + 1) * forward_per_pixel * clip_pixels(candidate)

    chosen, note = choose_size(plan.vae_clips, predicted, budget.section_left(), describe_clip)
    if note:
        result.notes.append(f"encode + decode: {note}")
    if chosen is None:
        return
    candidates = plan.vae_clips[plan.vae_clips.index(chosen):]
    for candidate in candidates:
        try:
            outputs = vae_inference(context, result, ours, reference, candidate)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            result.notes.append(f"encode + decode {describe_clip(candidate)}: out of memory, trying smaller")
            free_memory(device)
            continue
        difference, relative = relative_difference(*outputs)
        result.notes.append(f"encode + decode {describe_clip(candidate)} bf16: ours vs diffusers max difference "
                            f"{difference:.3g} ({relative:.2%} of the largest value)")
        break


def vae_inference(context: Context, result: SectionResult, ours, reference, clip_size: Clip):
    """Encode (posterior mean) + decode at t = 0.05 in bf16 of each side: time, peak memory; returns both videos."""
    plan, device = context.plan, context.plan.torch_device
    clip = torch.rand(1, 3, *clip_size, generator=torch.Generator().manual_seed(0)).mul(2).sub(1)
    clip = clip.to(device=device, dtype=torch.bfloat16)
    timestep = torch.tensor([0.05], device=device)
    sides = {"ours": lambda: ours.decode(ours.encode(clip).mean, timestep),
             "diffusers": lambda: reference.decode(reference.encode(clip).latent_dist.mean, temb=timestep).sample}
    videos = {}
    for side, call in sides.items():
        with torch.no_grad():
            baseline = reset_peak(device)
            first_s, videos[side] = timed(call, device)
            memory = peak_gib(device, baseline)
            seconds = [timed(call, device)[0] for _ in range(plan.vae_repeats)]
        median = statistics.median(seconds)
        result.add(f"encode + decode {describe_clip(clip_size)}, bf16, {side}", step_s=median, min_s=min(seconds),
                   max_s=max(seconds), first_step_s=first_s, frames_per_s=clip_size[0] / median, peak_GiB=memory)
        if side == "ours":
            context.measured["vae_decode_s_per_pixel"] = median / clip_pixels(clip_size)
    rows = {row["case"].rsplit(", ", 1)[1]: row for row in result.rows[-2:]}
    rows["ours"]["speed_vs_diffusers"] = rows["diffusers"]["step_s"] / rows["ours"]["step_s"]
    return videos["ours"].float(), videos["diffusers"].float()


def section_sampling(context: Context, result: SectionResult) -> None:
    """Text-to-video with CFG: ours (``ltx.training.samples.generate``) against ``LTXPipeline``, bf16 weights."""
    plan, budget, device = context.plan, context.budget, context.plan.torch_device
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline
    from transformers import AutoTokenizer, T5EncoderModel

    from ltx.interop.diffusers import SCHEDULER_CONFIG
    from ltx.registry import TEXT_ENCODERS
    from ltx.training.samples import SampleSettings, generate

    transformer = build_dit(plan.sample_dit_preset, plan.sample_dit_overrides, device, randomize=True)
    transformer = transformer.to(torch.bfloat16).eval()
    vae = build_vae(plan.vae_preset, device).to(torch.bfloat16).eval()
    t5 = context.tiny_t5(transformer.config.caption_channels)
    text_encoder = TEXT_ENCODERS.build("t5", path=t5, max_length=128, attend_to_padding=True,
                                       dtype="bfloat16").to(device)
    pipeline = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG), vae=diffusers_vae(vae, device),
        text_encoder=T5EncoderModel.from_pretrained(t5 / "text_encoder", torch_dtype=torch.bfloat16).to(device),
        tokenizer=AutoTokenizer.from_pretrained(t5 / "tokenizer"), transformer=diffusers_transformer(transformer, device))
    pipeline.set_progress_bar_config(disable=True)
    forward = context.measured.get("dit_forward_s_per_token")
    decode = context.measured.get("vae_decode_s_per_pixel")

    def predicted(clip: Clip) -> float:  # both sides, one timed call and a 2-step warm-up each
        tokens = (1 + (clip[0] - 1) // 8) * (clip[1] // 32) * (clip[2] // 32)
        per_call = (plan.sample_steps * 2 * tokens * forward) + clip_pixels(clip) * decode
        return 2 * per_call * (1 + 2 / plan.sample_steps)

    if forward is None or decode is None:
        chosen, note = plan.sample_clips[0], "no DiT / VAE timings from earlier sections to predict with: full size"
    else:
        chosen, note = choose_size(plan.sample_clips, predicted, budget.section_left(), describe_clip)
    if note:
        result.notes.append(note)
    if chosen is None:
        return
    frames, height, width = chosen
    settings = replace(SampleSettings(), frames=frames, height=height, width=width, num_steps=plan.sample_steps, seed=0)

    def ours(steps: int) -> torch.Tensor:
        return generate(transformer, vae, text_encoder, [PROMPT], replace(settings, num_steps=steps))

    def theirs(steps: int) -> torch.Tensor:
        with torch.no_grad():
            return pipeline(prompt=PROMPT, negative_prompt="", num_frames=frames, height=height, width=width,
                            frame_rate=int(settings.fps), num_inference_steps=steps,
                            guidance_scale=settings.guidance_scale, decode_timestep=settings.decode_timestep,
                            decode_noise_scale=settings.renoise_scale, generator=torch.Generator().manual_seed(0),
                            output_type="pt", max_sequence_length=128).frames

    seconds = {}
    for side, call in (("ours", ours), ("diffusers", theirs)):
        timed(lambda call=call: call(2), device)  # warm-up: kernels, allocator
        baseline = reset_peak(device)
        seconds[side], video = timed(lambda call=call: call(plan.sample_steps), device)
        result.add(f"text-to-video {describe_clip(chosen)}, {plan.sample_steps} steps, CFG {settings.guidance_scale}, "
                   f"{side}", wall_s=seconds[side], peak_GiB=peak_gib(device, baseline),
                   video_shape=list(video.shape), finite=bool(torch.isfinite(video).all()),
                   transformer_passes=plan.sample_steps)
    result.rows[-2]["speed_vs_diffusers"] = seconds["diffusers"] / seconds["ours"]
    result.notes.append(f"{plan.sample_dit_preset} + {plan.vae_preset} in bf16 with random weights, tiny T5 "
                        f"(d_model {transformer.config.caption_channels}); CFG doubles the batch on both sides")


SECTION_FUNCTIONS: dict[str, Callable[[Context, SectionResult], None]] = {
    "correctness": section_correctness, "gemm": section_gemm, "dit_train": section_dit_train,
    "fsdp": section_fsdp, "vae": section_vae, "sampling": section_sampling,
}


# ---------------------------------------------------------------------------------------------- report


def machine(plan: Plan) -> dict[str, Any]:
    values: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "plan": plan.name,
                              "device": plan.device}
    try:
        import diffusers

        values["diffusers"] = diffusers.__version__
    except ImportError:
        values["diffusers"] = None
    if plan.torch_device.type == "cuda":
        values.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                      gpu_memory_GiB=torch.cuda.get_device_properties(0).total_memory / 2**30)
    return values


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(results: list[SectionResult], info: dict[str, Any], elapsed: float) -> str:
    lines = [f"# GPU check ({info.get('plan')}): {info.get('gpu') or info.get('device')}", "",
             ", ".join(f"{key} {value}" for key, value in info.items()) + f"; {elapsed:.0f} s in all", ""]
    for section in results:
        lines.append(f"## {section.name}: {section.status} ({section.seconds:.0f} s)")
        lines.append("")
        if section.rows:
            columns = list(dict.fromkeys(key for row in section.rows for key in row))
            lines.append("| " + " | ".join(columns) + " |")
            lines.append("|" + "---|" * len(columns))
            for row in section.rows:
                lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
            lines.append("")
        lines += [f"- {note}" for note in section.notes]
        if section.error:
            lines += ["", "```", section.error.strip()[-2000:], "```"]
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, results: list[SectionResult], info: dict[str, Any], elapsed: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "elapsed_s": elapsed,
               "sections": {result.name: {"status": result.status, "seconds": result.seconds, "rows": result.rows,
                                          "notes": result.notes, "error": result.error} for result in results}}
    (out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(results, info, elapsed))


def run_check(plan: Plan, out: Path, sections: list[str], total_s: float | None = None) -> list[SectionResult]:
    """Run ``sections`` of ``plan`` in order; the report is rewritten after each one."""
    budget = Budget(total_s or plan.total_s, plan.shares)
    info = machine(plan)
    results = [SectionResult(name) for name in sections]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        context = Context(plan, budget, Path(scratch))
        for result in results:
            if budget.total_left() <= 0:
                result.notes.append("not run: the check's time is spent")
                write_report(out, results, info, budget.elapsed())
                continue
            budget.start_section(result.name)
            start = time.perf_counter()
            print(f"[gpu_check] {result.name} ...", flush=True)
            try:
                SECTION_FUNCTIONS[result.name](context, result)
                result.status = "ok"
            except Exception:  # a failed section is reported and the next one runs
                result.status, result.error = "failed", traceback.format_exc()
            result.seconds = time.perf_counter() - start
            free_memory(plan.torch_device)
            print(f"[gpu_check] {result.name}: {result.status} in {result.seconds:.0f} s", flush=True)
            write_report(out, results, info, budget.elapsed())
    print(markdown(results, info, budget.elapsed()))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where gpu_check.json and gpu_check.md go")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (gloo): checks the code, not the GPU")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--total-seconds", type=float, default=None, help="the whole check's time (default: the plan's)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU, or pass --dry-run for the CPU rehearsal")
    results = run_check(DRY_PLAN if args.dry_run else GPU_PLAN, args.out, args.sections, args.total_seconds)
    return 0 if all(result.status == "ok" for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
