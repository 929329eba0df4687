"""A whole pipeline directory (our VAE and DiT, the release's scheduler, a T5) that diffusers'
LTXPipeline loads and runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import LTXPipeline
from text_fixtures import make_tiny_t5

from ltx.interop.diffusers import export_pipeline
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config


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
