"""Memory on paper: bytes per GPU of full and LoRA fine-tuning of the released DiTs under FSDP2.

    python -m benchmarks.memory_plan [--presets ltx-video-2b-0.9.1 ltx-video-13b-0.9.7] [--gpus 1 8 32]
        [--frames 121 --height 512 --width 768] [--rank 32] [--optimizer adamw|adamw8bit] [--out DIR]

Nothing is typed in: the models are built on the meta device (no memory, no compute) and counted, with the
LoRA adapters peft adds, and the activations are the bytes autograd saves in one forward of the whole model
on meta tensors of the real size (one sample of 121 x 768 x 512 = 16 x 24 x 16 = 6,144 latent tokens and 128
text tokens, bf16), counted with ``saved_tensors_hooks``. The model's own weights that autograd keeps are
not counted twice. Attention is counted as a fused kernel (FlashAttention / cuDNN) saves it: q, k, v, the
output and the fp32 log-sum-exp per query, not the N x N probabilities of the math kernel; RMSNorm as
its fused kernel saves it (the float32 input and the inverse RMS).

Per GPU, with FSDP2 over N GPUs and bf16 compute (``parallel`` default):
- parameters: trained ones in fp32, sharded (4 B / N); a frozen LoRA base in ``base_dtype`` bf16 (2 B / N);
  plus the bf16 all-gather buffers of two blocks (the one computing and the one prefetched);
- gradients: fp32, sharded, for the trained parameters; plus one block's unsharded bf16 gradients;
- optimizer: AdamW's two fp32 moments (8 B / N per trained parameter), 8-bit AdamW's two bytes;
- activations: per GPU (one sample), not divided by N. With activation checkpointing: each block's input,
  plus one block's activations while it is recomputed, plus what lives outside the blocks.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ltx.models.common.norm import _RMSNormFunction
from ltx.models.dit import VideoTransformer, dit_config
from ltx.positional.coordinates import LatentGrid
from ltx.shapes import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from ltx.training.lora import FinetuneSettings, add_lora

GIB = 1024**3
GPU_BYTES = 80 * 10**9  # an 80 GB GPU (H100 / A100 80GB)
OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2}  # per trained parameter: two moments
TEXT_TOKENS = 128


@dataclass(frozen=True)
class ModelCount:
    parameters: int
    trained: int
    largest_block: int
    largest_block_trained: int
    blocks: int


@dataclass(frozen=True)
class Activations:
    total: int  # everything autograd saves in one forward, no checkpointing
    per_block: int  # one transformer block's saved tensors
    block_input: int  # one block's input, what checkpointing keeps per block


@dataclass(frozen=True)
class Plan:
    preset: str
    mode: str
    gpus: int
    checkpointing: bool
    parameters: int
    trained: int
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= GPU_BYTES


def build_on_meta(preset: str, finetune: FinetuneSettings) -> VideoTransformer:
    """The preset on the meta device in bf16 (compute dtype), with adapters for ``finetune=lora``."""
    with torch.device("meta"):
        model = VideoTransformer(dit_config(preset)).to(torch.bfloat16)
    if finetune.lora:
        add_lora(model, finetune)
        model.to(torch.bfloat16)  # count the adapters' activations in the compute dtype
    return model


def count(model: VideoTransformer) -> ModelCount:
    def sizes(module: nn.Module) -> tuple[int, int]:
        params = list(module.parameters())
        return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)

    blocks = [sizes(block) for block in model.transformer_blocks]
    total, trained = sizes(model)
    return ModelCount(total, trained, max(b[0] for b in blocks), max(b[1] for b in blocks), len(blocks))


class _FusedAttention(torch.autograd.Function):
    """Shape-only attention for meta tensors that saves what a fused kernel saves (q, k, v, out, lse)."""

    @staticmethod
    def forward(ctx, query, key, value):
        out = torch.empty_like(query)  # (B, H, N, D)
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)  # (B, H, N)
        ctx.save_for_backward(query, key, value, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: the plan only counts the forward's saved tensors
        raise NotImplementedError


def _fused_attention(query, key, value, attn_mask=None, **_):
    return _FusedAttention.apply(query, key, value)


def _fused_rms_norm(x, normalized_shape, weight=None, eps=None):
    """RMSNorm saving what a fused kernel saves (one float32 (..., D) tensor and the inverse RMS), as our CPU
    closed form does, instead of the decomposition's intermediates that meta tensors would record."""
    return _RMSNormFunction.apply(x, weight, 1e-6 if eps is None else eps)


def saved_bytes_by_region(model: VideoTransformer, run: Callable[[], torch.Tensor]) -> tuple[dict[str, int], int]:
    """Bytes of the tensors autograd saves while ``run`` executes ("all"), and of those a typical transformer
    block adds ("block": the second block's, as tensors all blocks share (modulation, rotary phases, text)
    are counted where they are first saved), leaving out the model's own weights; and the bytes of a block's
    input (what activation checkpointing keeps per block)."""
    weights = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, tuple[str, int]] = {}
    state = {"region": "outside", "block_input": 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()._cdata
        if storage not in weights:
            region, size = seen.get(storage, (state["region"], 0))
            seen[storage] = (region, max(size, tensor.untyped_storage().nbytes()))  # views: their whole storage
        return tensor

    def enter(module, args):
        state["region"], state["block_input"] = "block", args[0].numel() * args[0].element_size()

    def leave(module, args, output):
        state["region"] = "outside"

    block = model.transformer_blocks[min(1, len(model.transformer_blocks) - 1)]
    hooks = [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    original = F.scaled_dot_product_attention, F.rms_norm
    F.scaled_dot_product_attention, F.rms_norm = _fused_attention, _fused_rms_norm
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run()
    finally:
        F.scaled_dot_product_attention, F.rms_norm = original
        for hook in hooks:
            hook.remove()
    totals = {"all": sum(size for _, size in seen.values()),
              "block": sum(size for region, size in seen.values() if region == "block")}
    return totals, state["block_input"]


def activations(model: VideoTransformer, frames: int, height: int, width: int) -> Activations:
    """Measured on meta tensors: one sample at ``frames x height x width`` pixels."""
    grid = (1 + (frames - 1) // TEMPORAL_COMPRESSION, height // SPATIAL_COMPRESSION, width // SPATIAL_COMPRESSION)
    config = model.config
    tokens = grid[0] * grid[1] * grid[2]
    coordinates = model.coordinates(LatentGrid(*grid), 24.0, 1, torch.device("cpu")).to("meta")  # (1, N, 3)
    with torch.device("meta"):
        latents = torch.empty(1, tokens, config.in_channels, dtype=torch.bfloat16)  # (1, N, C)
        text = torch.empty(1, TEXT_TOKENS, config.caption_channels, dtype=torch.bfloat16)
        timestep = torch.empty(1)
    totals, block_input = saved_bytes_by_region(
        model, lambda: model.forward_tokens(latents, coordinates, timestep, text))
    return Activations(totals["all"], totals["block"], block_input)


def plan(preset: str, finetune: FinetuneSettings, gpus: int, checkpointing: bool, counts: ModelCount,
         saved: Activations, optimizer: str = "adamw") -> Plan:
    frozen = counts.parameters - counts.trained
    frozen_bytes = 2 if finetune.lora and finetune.base_dtype == "bfloat16" else 4
    gather = 2 * counts.largest_block * 2  # two blocks' bf16 all-gather buffers
    parameter_bytes = (counts.trained * 4 + frozen * frozen_bytes) // gpus + gather
    gradient_bytes = counts.trained * 4 // gpus + counts.largest_block_trained * 2
    optimizer_bytes = counts.trained * OPTIMIZER_BYTES[optimizer] // gpus
    outside = saved.total - counts.blocks * saved.per_block
    activation_bytes = saved.total if not checkpointing else \
        outside + counts.blocks * saved.block_input + saved.per_block
    return Plan(preset, finetune.mode, gpus, checkpointing, counts.parameters, counts.trained, parameter_bytes,
                gradient_bytes, optimizer_bytes, activation_bytes)


def plans(presets: list[str], gpus: list[int], frames: int, height: int, width: int, rank: int,
          optimizer: str = "adamw") -> list[Plan]:
    results = []
    for preset in presets:
        for finetune in (FinetuneSettings(mode="full"),
                         FinetuneSettings(mode="lora", rank=rank, alpha=float(rank), base_dtype="bfloat16")):
            model = build_on_meta(preset, finetune)
            counts, saved = count(model), activations(model, frames, height, width)
            for n in gpus:
                for checkpointing in (False, True):
                    results.append(plan(preset, finetune, n, checkpointing, counts, saved, optimizer))
    return results


def markdown(results: list[Plan], frames: int, height: int, width: int, optimizer: str) -> str:
    lines = [f"Per GPU, one sample of {frames} x {width} x {height} per GPU, FSDP2, bf16 compute, {optimizer}; "
             f"GiB. Fits: <= 80 GB.", "",
             "| preset | mode | GPUs | act. ckpt | params (trained) | parameters | gradients | optimizer | "
             "activations | total | fits 80 GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in results:
        lines.append(f"| {p.preset} | {p.mode} | {p.gpus} | {'on' if p.checkpointing else 'off'} | "
                     f"{p.parameters / 1e9:.2f}B ({p.trained / 1e6:.1f}M) | {p.parameter_bytes / GIB:.1f} | "
                     f"{p.gradient_bytes / GIB:.1f} | {p.optimizer_bytes / GIB:.1f} | {p.activation_bytes / GIB:.1f} | "
                     f"{p.total_bytes / GIB:.1f} | {'yes' if p.fits else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[Plan]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["ltx-video-2b-0.9.1", "ltx-video-13b-0.9.7"])
    parser.add_argument("--gpus", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--rank", type=int, default=32, help="LoRA rank (alpha = rank; conf/finetune/lora.yaml's default)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZER_BYTES), default="adamw")
    parser.add_argument("--out", type=Path, default=None, help="write memory_plan.json and memory_plan.md here")
    args = parser.parse_args(argv)
    results = plans(args.presets, args.gpus, args.frames, args.height, args.width, args.rank, args.optimizer)
    table = markdown(results, args.frames, args.height, args.width, args.optimizer)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = [{**asdict(p), "total_bytes": p.total_bytes, "fits_80gb": p.fits} for p in results]
        (args.out / "memory_plan.json").write_text(json.dumps(rows, indent=2))
        (args.out / "memory_plan.md").write_text(table)
    return results


if __name__ == "__main__":
    main()
