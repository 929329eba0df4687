"""Reference-video (IC-LoRA) conditioning: the reference's tokens are appended at t = 0 with positions aligned
to the target's grid, never in the loss, and the same in every sampling step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import compose_config
from test_sampling import tiny_transformer

from ltx.models.dit.transformer import reference_tokens
from ltx.positional.coordinates import LatentGrid
from ltx.sampling import EulerFlowSampler
from ltx.training.dit_module import DiTModule
from ltx.training.randomness import BatchRandomness


@pytest.mark.parametrize("scale", [1, 2])
def test_reference_tokens_are_appended_at_t0_on_the_targets_grid(scale):
    model = tiny_transformer()  # the zero-initialised projections randomised
    latents, text = torch.randn(2, 128, 2, 4, 6), torch.randn(2, 5, 32)
    reference = torch.randn(2, 128, 2, 4 // scale, 6 // scale)
    seen = {}
    forward_tokens = model.forward_tokens

    def recording(tokens, coordinates, timestep, *args):
        seen.update(tokens=tokens, coordinates=coordinates, timestep=timestep)
        return forward_tokens(tokens, coordinates, timestep, *args)

    model.forward_tokens = recording
    with torch.no_grad():
        out = model(latents, torch.tensor([0.3, 0.8]), text, reference=reference)
    target, extra = 2 * 4 * 6, 2 * (4 // scale) * (6 // scale)
    assert out.shape == latents.shape
    assert seen["tokens"].shape == (2, target + extra, 128)  # the sequence: target tokens, then the reference's
    assert torch.equal(seen["tokens"][:, target:], reference.flatten(2).transpose(1, 2))
    assert torch.all(seen["timestep"][:, target:] == 0) and torch.allclose(seen["timestep"][0, :target], torch.tensor(0.3))
    grid = seen["coordinates"][:, :target].unflatten(1, (2, 4, 6))  # (B, F, H, W, 3)
    torch.testing.assert_close(seen["coordinates"][:, target:], grid[:, :, ::scale, ::scale].flatten(1, 3))
    with torch.no_grad():  # the reference changes the target's velocity
        assert (model(latents, torch.tensor([0.3, 0.8]), text) - out).abs().max() > 1e-3


def test_a_reference_of_another_shape_is_refused():
    coordinates = torch.zeros(1, 2 * 4 * 6, 3)
    with pytest.raises(ValueError, match="must have the target's 2 latent frames and its size 4 x 6 divided by one"):
        reference_tokens(torch.randn(1, 128, 2, 3, 6), coordinates, LatentGrid(2, 4, 6))
    with pytest.raises(ValueError, match="target's 2 latent frames"):
        reference_tokens(torch.randn(1, 128, 1, 4, 6), coordinates, LatentGrid(2, 4, 6))


def test_the_training_step_leaves_the_reference_out_of_the_loss(demo_dir, tmp_path):
    cfg = compose_config("train_dit", ["experiment=smoke", "vae_checkpoint=null", f"run_dir={tmp_path}",
                                       f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}",
                                       "dit_training.conditioning.first_frame_probability=0.0",
                                       "dit_training.max_token_drop=0.5"])
    module = DiTModule(cfg)
    latents, reference = torch.randn(2, 128, 2, 4, 4), torch.randn(2, 128, 2, 2, 2)
    text, mask = module.text_encoder.encode(["a red circle", "a blue square"])
    seen = {}
    forward_tokens = module.transformer.forward_tokens

    def recording(tokens, coordinates, timestep, *args):
        seen.update(tokens=tokens.shape[1], timestep=timestep)
        return forward_tokens(tokens, coordinates, timestep, *args)

    module.transformer.forward_tokens = recording
    module.losses.forward = lambda inputs: (seen.update(prediction=inputs["prediction"]), (torch.tensor(0.0), {}))[1]
    random = BatchRandomness(seed=0, step=0, rank=0, world_size=1, local_batch=2, device=torch.device("cpu"))
    module.flow_loss(latents, text, mask, torch.tensor([24.0, 24.0]), random, conditioned=True, drop_tokens=True,
                     reference=reference)
    prediction, target, loss_mask = seen["prediction"]
    kept = prediction.shape[1]
    assert prediction.shape == target.shape and loss_mask.shape[:2] == (2, kept) and kept < 32  # tokens dropped
    assert seen["tokens"] == kept + 8  # every reference token kept, after the target's
    assert torch.all(seen["timestep"][:, kept:] == 0) and torch.all(seen["timestep"][:, :kept] > 0)


def test_the_sampler_gives_the_same_reference_in_every_step_and_both_guidance_halves():
    calls = []

    def model(latents, timestep, text, text_mask, fps, reference=None):
        calls.append(reference.clone())
        return latents * 0.1 + reference.mean()

    reference = torch.randn(1, 128, 2, 2, 2)
    EulerFlowSampler().sample(model, torch.randn(1, 128, 2, 2, 2), torch.randn(1, 4, 32), None, 24.0, num_steps=3,
                              guidance_scale=3.0, negative_text=torch.randn(1, 4, 32), reference=reference)
    assert len(calls) == 3
    for seen in calls:
        assert seen.shape == (2, 128, 2, 2, 2) and torch.equal(seen[0], reference[0]) and torch.equal(seen[1], reference[0])


@pytest.fixture(scope="module")
def reference_shards(demo_dir, tmp_path_factory):
    """The demo's video clips, each with a grey reference clip ({key}.reference.mp4): the IC-LoRA pair layout."""
    import webdataset as wds

    from ltx.data.schema import ClipMetadata
    from ltx.data.shards import ShardSample, write_shards
    from ltx.data.video_io import decode_frames, encode_mp4, probe_video

    samples = []
    for record in wds.WebDataset(sorted(str(p) for p in (demo_dir / "shards").glob("*.tar")), shardshuffle=False):
        if "mp4" not in record:
            continue
        info = probe_video(record["mp4"])
        frames = decode_frames(record["mp4"], list(range(info.num_frames)))  # (N, h, w, 3)
        grey = np.repeat(frames.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
        samples.append(ShardSample(record["__key__"], record["mp4"], "mp4", record["txt"].decode(),
                                   ClipMetadata.from_json(record["json"]), reference=encode_mp4(list(grey), fps=info.fps)))
    directory = tmp_path_factory.mktemp("reference_shards")
    write_shards(samples, directory, samples_per_shard=8)
    return directory


def test_shards_with_reference_clips_give_reference_videos_cropped_like_the_clips(reference_shards):
    from ltx.data.datamodule import VideoDataModule

    for downscale in (1, 2):
        module = VideoDataModule(str(reference_shards / "*.tar"), buckets=[[9, 64, 64]], batch_size=2,
                                 batches_per_epoch=2, reference_downscale=downscale, random_crop=True)
        module.setup("fit")
        batch = next(iter(module.train_dataloader()))
        video, reference = batch["video"], batch["reference_video"]  # (B, 3, F, H, W), (B, 3, F, H/s, W/s)
        assert reference.shape == (*video.shape[:3], 64 // downscale, 64 // downscale)
        grey = video.mean(dim=1, keepdim=True)  # the same frames and crop, in grey (up to mp4 compression)
        pooled = torch.nn.functional.avg_pool2d(grey.flatten(1, 2), downscale).unflatten(1, (1, -1))
        assert (reference - pooled).abs().mean() < 0.05 and reference.std(dim=1).max() < 0.05
    with pytest.raises(ValueError, match="reference_downscale=3"):
        VideoDataModule(str(reference_shards / "*.tar"), buckets=[[9, 64, 64]], batch_size=2, reference_downscale=3)


def test_precomputed_latents_carry_the_reference_and_the_dit_trains_on_them(reference_shards, demo_dir, tmp_path):
    """make latents on IC-LoRA pairs writes reference_latents beside the latents; a DiT run trains on them."""
    from ltx.cli.precompute import run as precompute_run
    from ltx.cli.train import run_training
    from ltx.data.latents import LatentDataModule
    from ltx.interop.diffusers import export_vae
    from ltx.models.vae import VideoAutoencoder, vae_config

    torch.manual_seed(3)
    vae = export_vae(VideoAutoencoder(vae_config("tiny")), tmp_path / "vae")
    common = ["vae_checkpoint=null", f"model.vae.pretrained={vae}", f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}"]
    precompute_run(compose_config("precompute", [*common, f"output={tmp_path / 'latents'}", "data.val_shards=null",
                                                 f"data.train_shards={reference_shards}", "+data.reference_downscale=2",
                                                 "data.buckets=[[9,64,64]]"]))
    module = LatentDataModule(str(tmp_path / "latents" / "train" / "*.tar"), batch_size=2, batches_per_epoch=1)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    latents, reference = batch["latents"], batch["reference_latents"]
    assert reference.shape == (*latents.shape[:3], latents.shape[3] // 2, latents.shape[4] // 2)
    trainer = run_training(compose_config("train_dit", [
        *common, "data=latents", "experiment=smoke", f"data.train_shards={tmp_path / 'latents' / 'train'}",
        "data.val_shards=null", f"run_dir={tmp_path / 'run'}", "trainer.max_steps=2", "+trainer.limit_val_batches=0"]))
    assert trainer.global_step == 2
