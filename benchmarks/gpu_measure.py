"""Timing, peak memory, model twins (ours and diffusers' with the same weights) and inputs for the GPU
check's sections (``benchmarks/gpu_check.py``)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.gpu_plan import Clip, Grid
from benchmarks.harness import synchronize


def timed(function: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds of one call (the device synchronised before and after, as ``harness.time_call``) and its value."""
    synchronize()
    start = time.perf_counter()
    value = function()
    synchronize()
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

