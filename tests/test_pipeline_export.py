"""A whole pipeline directory (our VAE and DiT, the release's scheduler, a T5) that diffusers'
LTXPipeline loads and runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import LTXPipeline
from text_fixtures import make_tiny_t5

from ltx.interop.diffusers import export_pipeline
from ltx.interop.lora import apply_lora_file, export_lora
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.sampling import EulerFlowSampler
from ltx.training.lora import FinetuneSettings, add_lora, merged_state_dict


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    t5 = make_tiny_t5(root / "t5")
    torch.manual_seed(0)
    vae, transformer = VideoAutoencoder(vae_config("tiny")), VideoTransformer(dit_config("tiny"))
    with torch.no_grad():
        transformer.proj_out.weight.normal_(0, 0.02)  # not the identity-initialised zero output
    return export_pipeline(vae, transformer, t5 / "text_encoder", t5 / "tokenizer", root / "ltx-tiny"), transformer


def test_ltx_pipeline_loads_and_generates(pipeline_dir):
    directory, transformer = pipeline_dir
    pipeline = LTXPipeline.from_pretrained(directory)
    for name, value in transformer.state_dict().items():
        if name in pipeline.transformer.state_dict():
            torch.testing.assert_close(pipeline.transformer.state_dict()[name], value)
    result = pipeline(prompt="a cat runs on the beach", negative_prompt="", height=64, width=64, num_frames=9,
                      num_inference_steps=2, guidance_scale=3.0, output_type="np",
                      generator=torch.Generator().manual_seed(0), max_sequence_length=16)
    frames = np.asarray(result.frames)
    assert frames.shape == (1, 9, 64, 64, 3) and np.isfinite(frames).all()


def test_export_refuses_mismatched_text_width(tmp_path):
    t5 = make_tiny_t5(tmp_path / "t5")
    transformer = VideoTransformer(dit_config("tiny", caption_channels=48))
    with pytest.raises(ValueError, match="expects 48-d text features"):
        export_pipeline(VideoAutoencoder(vae_config("tiny")), transformer, t5 / "text_encoder", t5 / "tokenizer",
                        tmp_path / "out")


def lora_transformer(base: VideoTransformer, seed: int = 1) -> VideoTransformer:
    """``base`` with rank-4 adapters (alpha 8) whose B matrices are random, as after training."""
    model = copy.deepcopy(base)
    add_lora(model, FinetuneSettings(mode="lora", rank=4, alpha=8.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def sample_both(pipeline: LTXPipeline, transformer: VideoTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """The same 3-step guided sampling run by diffusers' LTXPipeline and by our sampler: (ours, theirs) as tokens."""
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn(1, 128, 2, 2, 2, generator=generator)  # 9 x 64 x 64 pixels
    text, negative = torch.randn(1, 8, 32, generator=generator), torch.randn(1, 8, 32, generator=generator)
    mask, negative_mask = torch.ones(1, 8), torch.ones(1, 8)
    mask[:, 5:] = 0
    negative_mask[:, 2:] = 0
    theirs = pipeline(prompt_embeds=text, prompt_attention_mask=mask, negative_prompt_embeds=negative,
                      negative_prompt_attention_mask=negative_mask, latents=noise.flatten(2).transpose(1, 2),
                      height=64, width=64, num_frames=9, frame_rate=24, num_inference_steps=3, guidance_scale=3.0,
                      output_type="latent").frames  # (1, N, C) normalised latents
    ours = EulerFlowSampler().sample(transformer, noise, text, mask, 24.0, num_steps=3, guidance_scale=3.0,
                                     negative_text=negative, negative_text_mask=negative_mask)
    return ours.flatten(2).transpose(1, 2), theirs


def test_diffusers_loads_our_lora_and_reproduces_our_sampler(pipeline_dir, tmp_path):
    """Our adapter exported as a diffusers LoRA file: LTXPipeline.load_lora_weights + its sampler give our
    sampler's latents. Tolerance 1e-4: fp32, the same weights and schedule; only summation order differs
    (measured: 3.5e-6 apart without the adapter, 3.7e-6 with it). The adapter moves the latents by ~0.11."""
    directory, base = pipeline_dir
    adapted = lora_transformer(base)
    file = export_lora(adapted, tmp_path / "lora")
    assert file.name == "pytorch_lora_weights.safetensors"
    pipeline = LTXPipeline.from_pretrained(directory)
    without_ours, without_theirs = sample_both(pipeline, base)
    torch.testing.assert_close(without_ours, without_theirs, atol=1e-4, rtol=0)
    pipeline.load_lora_weights(tmp_path / "lora", adapter_name="ours")
    ours, theirs = sample_both(pipeline, adapted)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert (ours - without_ours).abs().max() > 1e-2  # the adapter matters

    # the file imports back: a fresh base plus the file samples like the trained adapter, and the scale works
    imported = apply_lora_file(copy.deepcopy(base), file, scale=1.0)
    torch.testing.assert_close(sample_both(pipeline, imported)[0], ours, atol=1e-6, rtol=0)
    pipeline.set_adapters(["ours"], [0.5])
    half = apply_lora_file(copy.deepcopy(base), file, scale=0.5)
    torch.testing.assert_close(*sample_both(pipeline, half), atol=1e-4, rtol=0)

    # merged into full weights: a plain DiT that samples like base + adapter
    merged = VideoTransformer(base.config).eval()
    merged.load_state_dict(merged_state_dict(adapted), strict=True)
    torch.testing.assert_close(sample_both(pipeline, merged)[0], ours, atol=1e-5, rtol=0)


def test_a_lora_saved_by_diffusers_without_metadata_imports(pipeline_dir, tmp_path):
    """A file written by diffusers' own LTXPipeline.save_lora_weights (no adapter metadata, as older trainers
    write them): rank inferred from the weights, alpha = rank, as diffusers loads it."""
    from peft import get_peft_model_state_dict

    _, base = pipeline_dir
    adapted = copy.deepcopy(base)
    add_lora(adapted, FinetuneSettings(mode="lora", rank=4, alpha=4.0, target_modules=("to_out.0", "ff.net.2")))
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    LTXPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(adapted))
    imported = apply_lora_file(copy.deepcopy(base), tmp_path / "pytorch_lora_weights.safetensors")
    latents, text = torch.randn(1, 128, 2, 2, 2), torch.randn(1, 4, 32)
    with torch.no_grad():
        expected = adapted.eval()(latents, torch.tensor([0.5]), text)
        torch.testing.assert_close(imported.eval()(latents, torch.tensor([0.5]), text), expected, atol=1e-6, rtol=0)
        assert (expected - base(latents, torch.tensor([0.5]), text)).abs().max() > 1e-4
