"""The fine-tuning memory plan (benchmarks/memory_plan.py): its counts are the models', its activations are
what autograd saves, and its arithmetic follows FSDP2's sharding."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import LTXVideoTransformer3DModel

from benchmarks.memory_plan import (
    GIB,
    activations,
    build_on_meta,
    count,
    main,
    plan,
    saved_bytes_by_region,
)
from ltx.interop.diffusers import transformer_config_to_diffusers
from ltx.models.dit import VideoTransformer, dit_config
from ltx.positional.coordinates import LatentGrid
from ltx.training.lora import FinetuneSettings


@pytest.mark.parametrize("preset", ["ltx-video-2b-0.9.1", "ltx-video-13b-0.9.7"])
def test_parameter_counts_are_the_released_models(preset):
    counts = count(build_on_meta(preset, FinetuneSettings()))
    with torch.device("meta"):
        reference = LTXVideoTransformer3DModel(**transformer_config_to_diffusers(dit_config(preset)))
    assert counts.parameters == counts.trained == sum(p.numel() for p in reference.parameters())
    lora = count(build_on_meta(preset, FinetuneSettings(mode="lora", rank=16)))
    # rank x (in + out) for each adapted Linear: q/k/v/out of both attentions (text is projected to the hidden
    # size first, so all are hidden x hidden) and the two FFN projections (hidden <-> 4 hidden)
    hidden = reference.config.num_attention_heads * reference.config.attention_head_dim
    per_block = 16 * (2 * 4 * (hidden + hidden) + 2 * (hidden + 4 * hidden))
    assert lora.trained == reference.config.num_layers * per_block
    assert lora.parameters == counts.parameters + lora.trained


def test_saved_bytes_on_meta_equal_those_on_real_tensors():
    """The plan's activations come from meta tensors: the same count as a real forward of the same model."""
    torch.manual_seed(0)
    real = VideoTransformer(dit_config("tiny")).to(torch.bfloat16)
    meta = build_on_meta("tiny", FinetuneSettings())
    grid = (2, 2, 3)
    coordinates = real.coordinates(LatentGrid(*grid), 24.0, 1, torch.device("cpu"))
    tokens, text = torch.randn(1, 12, 128, dtype=torch.bfloat16), torch.randn(1, 128, 32, dtype=torch.bfloat16)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        real_totals, real_input = saved_bytes_by_region(real, lambda: real.forward_tokens(tokens, coordinates, torch.rand(1), text))
    planned = activations(meta, frames=9, height=64, width=96)
    assert planned.block_input == real_input == 12 * 128 * 2  # (1, N, D) bf16
    # the same tensors, except that the meta path also counts the float32 copies of the QK-norm weights its
    # F.rms_norm call takes (4 x D x 4 bytes per block; the CPU path passes the weights themselves)
    assert planned.per_block - real_totals["block"] == 4 * 128 * 4
    assert planned.total == pytest.approx(real_totals["all"], rel=0.01)
    assert planned.per_block > 0 and planned.total > 2 * planned.per_block


def test_plan_arithmetic_and_report(tmp_path):
    counts = count(build_on_meta("tiny", FinetuneSettings()))
    saved = activations(build_on_meta("tiny", FinetuneSettings()), 9, 64, 64)
    one, two = (plan("tiny", FinetuneSettings(), n, False, counts, saved) for n in (1, 2))
    gather = 2 * counts.largest_block * 2
    assert one.parameter_bytes == counts.parameters * 4 + gather
    assert two.parameter_bytes == counts.parameters * 4 // 2 + gather
    assert one.optimizer_bytes == 2 * two.optimizer_bytes == counts.trained * 8
    assert one.activation_bytes == two.activation_bytes == saved.total  # activations are per GPU
    checkpointed = plan("tiny", FinetuneSettings(), 1, True, counts, saved)
    assert checkpointed.activation_bytes < one.activation_bytes
    rows = main(["--presets", "tiny", "--gpus", "1", "2", "--frames", "9", "--height", "64", "--width", "64",
                 "--out", str(tmp_path)])
    assert len(rows) == 8  # full and LoRA x 2 GPU counts x checkpointing off / on
    written = json.loads((tmp_path / "memory_plan.json").read_text())
    assert [row["total_bytes"] for row in written] == [row.total_bytes for row in rows]
    assert all(row["fits_80gb"] for row in written) and "| tiny | lora | 2 | on |" in (tmp_path / "memory_plan.md").read_text()
    assert GIB == 2**30
