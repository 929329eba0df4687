"""Prompt adherence at DiT validation (``ltx.training.adherence.PromptAdherenceCallback``): a short training
run logs the three accuracies after the chosen validations, a perfect sampler logs full marks, and bad
settings or a module that is not a DiT stage are refused."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import compose_config

from data_pipeline.demo import SceneSpec, render_scene
from ltx.cli.train import run_training
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.registry import TEXT_ENCODERS
from ltx.training import adherence
from ltx.training.adherence import PromptAdherenceCallback, sample_videos
from ltx.training.samples import SampleSettings

METRICS = ("val/adherence_colour", "val/adherence_shape", "val/adherence_motion")
CALLBACK = "ltx.training.adherence.PromptAdherenceCallback"


def logged(run_dir, key: str) -> list[tuple[int, float]]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]


def test_a_short_dit_run_logs_adherence_after_every_second_validation(demo_dir, tmp_path):
    """4 steps, a validation every 2: the callback samples 3 held-out prompts after the first validation
    (every_n_validations=2 skips the second) with the DiT as validation left it."""
    seen = []

    def recording(transformer, vae, text_encoder, captions, settings, batch_size, **kwargs):
        seen.append((transformer, captions, settings, batch_size))
        return sample_videos(transformer, vae, text_encoder, captions, settings, batch_size, **kwargs)

    cfg = compose_config("train_dit", [
        "experiment=smoke", f"demo_dir={demo_dir}", f"data.train_shards={demo_dir / 'world' / 'shards'}",
        "data.buckets=[[9,64,64]]", f"run_dir={tmp_path}", "vae_checkpoint=null", "dit_training.samples=null",
        "trainer.max_steps=4", f"+callbacks.adherence._target_={CALLBACK}", "+callbacks.adherence.every_n_validations=2",
        "+callbacks.adherence.num_prompts=3", "+callbacks.adherence.frames=9", "+callbacks.adherence.height=64",
        "+callbacks.adherence.width=64", "+callbacks.adherence.num_steps=2", "+callbacks.adherence.batch_size=2",
    ])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adherence, "sample_videos", recording)
        trainer = run_training(cfg)
    assert len(logged(tmp_path, "val/loss")) == 2  # two validations
    for key in METRICS:
        values = logged(tmp_path, key)
        assert len(values) == 1 and values[0][0] == 1, (key, values)  # after the first validation (step 1)
        assert 0.0 <= values[0][1] <= 1.0
    assert len(seen) == 1
    transformer, captions, settings, batch_size = seen[0]
    assert transformer is trainer.lightning_module.transformer and batch_size == 2
    assert len(captions) == 3 and (settings.frames, settings.height, settings.width, settings.num_steps) == (9, 64, 64, 2)


def test_sample_videos_batches_and_conditions_on_images(demo_dir):
    """3 captions in batches of 2 give 3 videos of the asked shape, the second batch with its own noise;
    with images, latent frame 0 is each image's encoding, which changes the decoded first frames."""
    torch.manual_seed(0)
    transformer, vae = VideoTransformer(dit_config("tiny")).eval(), VideoAutoencoder(vae_config("tiny")).eval()
    text_encoder = TEXT_ENCODERS.build("t5", path=str(demo_dir / "text_encoder"), max_length=16)
    settings = SampleSettings(frames=9, height=64, width=64, num_steps=2, guidance_scale=1.0)
    videos = sample_videos(transformer, vae, text_encoder, ["a", "b", "c"], settings, batch_size=2)
    assert videos.shape == (3, 3, 9, 64, 64) and videos.abs().max() <= 1.0
    assert not torch.allclose(videos[0], videos[2])  # batch 2 draws with another seed than batch 1
    images = torch.stack([torch.full((3, 64, 64), -0.8), torch.full((3, 64, 64), 0.8), torch.zeros(3, 64, 64)])
    conditioned = sample_videos(transformer, vae, text_encoder, ["a", "b", "c"], settings, batch_size=2, images=images)
    assert conditioned.shape == videos.shape and not torch.allclose(conditioned[:, :, 0], videos[:, :, 0])
    with pytest.raises(ValueError, match="one per caption"):
        sample_videos(transformer, vae, text_encoder, ["a", "b"], settings, images=images)


def test_a_perfect_sampler_logs_full_marks():
    callback = PromptAdherenceCallback(num_prompts=6, frames=17, height=64, width=64)

    def world_videos(transformer, vae, text_encoder, captions, settings, batch_size):
        by_caption = {prompt.caption: prompt for prompt in callback.prompts}
        videos = []
        for caption in captions:
            prompt = by_caption[caption]
            scene = SceneSpec(prompt.shape, prompt.colour, prompt.motion, prompt.background, prompt.background_colour, 17)
            frames = np.stack(list(render_scene(scene, 64, 64)))  # (17, 64, 64, 3)
            videos.append(torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0)
        return torch.stack(videos)

    logs = {}
    module = SimpleNamespace(transformer=None, vae=None, text_encoder=None, sharded=False,
                             log=lambda name, value, **kwargs: logs.__setitem__(name, value))
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adherence, "sample_videos", world_videos)
        callback.on_validation_epoch_end(trainer, module)
    assert logs == {key: 1.0 for key in METRICS}
    logs.clear()
    callback.on_validation_epoch_end(SimpleNamespace(sanity_checking=True, is_global_zero=True), module)
    assert not logs  # the sanity check is not a validation


@pytest.mark.parametrize(("name", "value", "message"), [
    ("every_n_validations", 0, "every_n_validations must be a positive int"),
    ("num_prompts", 0, "num_prompts must be a positive int"),
    ("frames", 10, "8k\\+1"), ("height", 48, "multiple of 32"),
    ("guidance_scale", 0.5, "guidance_scale must be >= 1"), ("batch_size", 0, "batch_size must be a positive int"),
])
def test_bad_settings_are_refused(name, value, message):
    with pytest.raises(ValueError, match=message):
        PromptAdherenceCallback(**{name: value})


def test_a_module_that_is_not_a_dit_stage_is_refused():
    with pytest.raises(TypeError, match="has no transformer, text_encoder"):
        PromptAdherenceCallback().setup(None, SimpleNamespace(vae=None), "fit")
