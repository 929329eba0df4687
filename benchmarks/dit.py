"""DiT training step (forward + backward + AdamW), ours against diffusers' LTXVideoTransformer3DModel
with the same configuration and weights (exported through our interop), in fp32 and bf16 autocast at
two sequence lengths; achieved GFLOP/s (counted by torch's FlopCounterMode) against the GEMM peak.
Each side steps the optimizer it trains with: ours the one in conf/train_dit.yaml (fused AdamW), diffusers
(which ships no trainer) ``torch.optim.AdamW`` with torch's defaults, as its training examples do.

Two rows per case: our eager model, and our model with ``parallel.compile=true`` (each block compiled
with inductor, what training runs with that flag); diffusers runs eager. The compiled model is a copy
with the same weights; its compilation time is reported apart (``compile_s``), not in the step time."""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.gemm import DTYPES, device
from benchmarks.gpu_measure import reference_velocity
from benchmarks.harness import Row, comparison, interleave, make_optimizer, optimizer_note
from ltx.interop.diffusers import export_transformer
from ltx.models.dit import VideoTransformer, dit_config, patchify_latents
from ltx.training.parallelize import apply_compile

# hidden 512 (8 heads x 64), 8 blocks; latent grids of 768 and 3,072 tokens
CONFIG = {"num_attention_heads": 8, "attention_head_dim": 64, "num_layers": 8, "cross_attention_dim": 512}
GRIDS = {768: (3, 16, 16), 3072: (3, 32, 32)}
QUICK_CONFIG = {"num_attention_heads": 4, "attention_head_dim": 32, "num_layers": 2, "cross_attention_dim": 128}
QUICK_GRIDS = {96: (3, 4, 8), 384: (3, 8, 16)}
TARGETS = {"fp32": 1.1, "bf16": 1.25}
PEAK_FRACTION_TARGET = 0.6


def build_pair(config_overrides: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our DiT with random weights and diffusers' model loaded from its export (identical weights)."""
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    ours = VideoTransformer(dit_config("tiny", **config_overrides))
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.normal_(0.0, 0.02)
    with tempfile.TemporaryDirectory() as directory:
        export_transformer(ours, directory)
        reference = LTXVideoTransformer3DModel.from_pretrained(directory)
    return ours.to(device()).train(), reference.to(device()).train()


def make_inputs(model: VideoTransformer, grid: tuple[int, int, int], batch: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    config = model.config
    latents = torch.randn(batch, config.in_channels, *grid, generator=generator)
    values = {"latents": latents, "target": torch.randn(latents.shape, generator=generator),
              "timestep": torch.full((batch,), 0.5), "text": torch.randn(batch, 64, config.caption_channels,
                                                                            generator=generator),
              "mask": torch.ones(batch, 64)}
    return {name: value.to(device()) for name, value in values.items()}


def our_loss(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    prediction = model(inputs["latents"], inputs["timestep"], inputs["text"], inputs["mask"], 24.0)
    return (prediction.float() - inputs["target"]).pow(2).mean()


def reference_loss(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    prediction = reference_velocity(model, inputs)  # (B, N, C) tokens
    return (prediction.float() - patchify_latents(inputs["target"])).pow(2).mean()


def train_step(model: torch.nn.Module, loss_fn: Callable, inputs: dict, optimizer: torch.optim.Optimizer,
               dtype: str) -> Callable[[], torch.Tensor]:
    autocast = torch.autocast(device().type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model, inputs)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def step_flops(step: Callable[[], torch.Tensor]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def run(quick: bool, gemm_peaks: dict[str, float] | None = None, compiled: bool | None = None) -> list[Row]:
    """``compiled`` (default: not in quick mode, where minutes of compilation would dominate) adds the
    ``parallel.compile=true`` rows."""
    ours, reference = build_pair(QUICK_CONFIG if quick else CONFIG)
    models = {"ours": (ours, our_loss), "diffusers": (reference, reference_loss)}
    if compiled if compiled is not None else not quick:
        models["ours compiled"] = (copy.deepcopy(ours), our_loss)
        apply_compile(models["ours compiled"][0])
    rows = []
    for tokens, grid in (QUICK_GRIDS if quick else GRIDS).items():
        inputs = make_inputs(ours, grid)
        for dtype in DTYPES:
            # fresh optimizers per case; all models start from the same weights for the loss check
            steps = {name: train_step(model, loss_fn, inputs, make_optimizer(name, model, "train_dit"), dtype)
                     for name, (model, loss_fn) in models.items()}
            first_losses, first_seconds = {}, {}
            for name, step in steps.items():
                start = time.perf_counter()
                first_losses[name] = float(step())
                first_seconds[name] = time.perf_counter() - start
            flops = step_flops(steps["ours"])
            repeats = 2 if quick else 3
            times = interleave(steps, repeats=repeats, warmup=0)
            for name in [n for n in steps if n != "diffusers"]:
                row = comparison("dit_train_step", f"{tokens} tokens, {dtype}, {name}", times[name],
                                 times["diffusers"], target=TARGETS[dtype], work=tokens, unit="tokens",
                                 first_step_loss={"ours": first_losses[name], "diffusers": first_losses["diffusers"]},
                                 flops_per_step=flops)
                row.notes = optimizer_note("train_dit")
                if name == "ours compiled":
                    row.extra["compile_s"] = first_seconds[name] - row.ours["median_s"]
                achieved = flops / row.ours["median_s"] / 1e9
                row.ours["gflop_per_s"] = achieved
                row.reference["gflop_per_s"] = flops / row.reference["median_s"] / 1e9
                if gemm_peaks and dtype in gemm_peaks:
                    row.extra["fraction_of_gemm_peak"] = achieved / gemm_peaks[dtype]
                    row.extra["fraction_target"] = PEAK_FRACTION_TARGET
                rows.append(row)
    return rows
