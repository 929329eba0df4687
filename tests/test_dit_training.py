"""The DiT training stage end to end on the demo shards, and its pieces: conditioning masks, token
dropping, the deterministic validation loss."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers import compose_config
from safetensors.torch import load_file

from ltx.cli.sample import latest_checkpoint, load_dit_module, read_image
from ltx.cli.sample import run as sample_run
from ltx.cli.train import run_training
from ltx.data.video_io import probe_video
from ltx.models.dit import DiTConfig, VideoTransformer
from ltx.sampling import image_conditioning
from ltx.training.dit_module import DiTModule, gather_tokens, keep_random_tokens
from ltx.training.randomness import BatchRandomness
from ltx.training.samples import SampleSettings, generate


def dit_config(demo_dir, run_dir, *extra: str):
    return compose_config("train_dit", [
        "experiment=smoke", f"data.train_shards={demo_dir / 'shards'}", f"data.val_shards={demo_dir / 'val'}",
        f"run_dir={run_dir}", "trainer.max_steps=4", "data.batches_per_epoch=2", "vae_checkpoint=null",
        f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", "trainer.deterministic=true", *extra,
    ])


def losses(run_dir, key: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def test_training_is_deterministic_and_validation_loss_is_fixed(demo_dir, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run_training(dit_config(demo_dir, first))
    run_training(dit_config(demo_dir, second))
    assert len(losses(first, "train/loss")) == 4
    assert losses(first, "lr") == [1e-4] * 4  # LearningRateMonitor, the default constant schedule
    assert losses(first, "train/loss") == pytest.approx(losses(second, "train/loss"), rel=1e-5)
    assert losses(first, "val/loss") == pytest.approx(losses(second, "val/loss"), rel=1e-6)
    assert len(losses(first, "val/loss_t0.50")) == 2
    assert (first / "export" / "transformer" / "config.json").exists()


def conditioned_flow_loss(module: DiTModule, latents: torch.Tensor, timestep: torch.Tensor) -> dict[str, torch.Tensor]:
    """One conditioned ``flow_loss`` of ``module`` on ``latents``: the per-token timesteps the transformer saw
    (``timestep``, `(B, N)`) and the loss mask (``mask``, `(B, N, C)`)."""
    text, mask = module.text_encoder.encode(["a red circle", "a blue square"])
    seen = {}
    forward_tokens = module.transformer.forward_tokens

    def recording_forward(tokens, coordinates, timestep, *args):
        seen["timestep"] = timestep
        return forward_tokens(tokens, coordinates, timestep, *args)

    def recording_loss(inputs):
        seen["mask"] = inputs["prediction"][2]
        return torch.tensor(0.0), {}

    module.transformer.forward_tokens = recording_forward
    module.losses.forward = recording_loss
    random = BatchRandomness(seed=0, step=0, rank=0, world_size=1, local_batch=2, device=torch.device("cpu"))
    module.flow_loss(latents, text, mask, torch.tensor([24.0, 24.0]), random, conditioned=True, drop_tokens=False,
                     timestep=timestep)
    return seen


def test_conditioning_tokens_get_their_own_timestep_and_no_loss(demo_dir, tmp_path):
    module = DiTModule(dit_config(demo_dir, tmp_path, "dit_training.conditioning.first_frame_probability=1.0"))
    timestep = torch.tensor([0.7, 0.4])
    seen = conditioned_flow_loss(module, torch.randn(2, 128, 3, 2, 2), timestep)  # 3 latent frames of 4 tokens
    token_mask = seen["mask"][..., 0]  # (B, N)
    assert not token_mask[:, :4].any() and token_mask[:, 4:].all()  # first latent frame: no loss
    assert torch.all(seen["timestep"][:, :4] == 0)  # clean conditioning tokens
    assert torch.allclose(seen["timestep"][:, 4:], timestep[:, None].expand(2, 8))


def test_registered_modes_condition_tokens_in_the_training_step(demo_dir, tmp_path):
    """dit_training.conditioning.modes (here outpainting with a fixed half-size box, combined with the first
    frame): exactly those tokens get t = 0 and no loss."""
    module = DiTModule(dit_config(demo_dir, tmp_path, "dit_training.conditioning.first_frame_probability=1.0",
                                  "dit_training.conditioning.modes={outpaint: {probability: 1.0, min_side: 0.5, max_side: 0.5}}"))
    seen = conditioned_flow_loss(module, torch.randn(2, 128, 3, 4, 4), torch.tensor([0.7, 0.4]))  # 3 frames of 4 x 4
    expected = torch.zeros(3, 4, 4, dtype=torch.bool)
    expected[0] = True  # the first frame
    expected[:, 1:3, 1:3] = True  # the centred half-size box of every frame
    expected = expected.flatten().expand(2, -1)  # (B, N)
    assert torch.equal(seen["mask"][..., 0], ~expected)
    assert torch.all(seen["timestep"][expected] == 0) and torch.all(seen["timestep"][~expected] > 0)


def test_token_dropping_keeps_positions_of_the_kept_tokens():
    generator = torch.Generator().manual_seed(0)
    indices = keep_random_tokens(2, 10, 7, generator)
    assert indices.shape == (2, 7) and all(len(set(row.tolist())) == 7 for row in indices)
    assert torch.all(indices[:, 1:] > indices[:, :-1])
    values = torch.arange(2 * 10 * 3).reshape(2, 10, 3)
    gathered = gather_tokens(values, indices)
    assert torch.equal(gathered[1, 2], values[1, indices[1, 2]])


def test_text_encoder_width_must_match_the_dit(demo_dir, tmp_path):
    cfg = dit_config(demo_dir, tmp_path, "+model.dit.overrides.caption_channels=48")
    with pytest.raises(ValueError, match="gives 32-d features but the DiT expects caption_channels=48"):
        DiTModule(cfg)


def test_the_empty_prompt_is_encoded_once(demo_dir, tmp_path, monkeypatch):
    module = DiTModule(dit_config(demo_dir, tmp_path))
    expected_text, expected_mask = module.text_encoder.encode([""])
    calls = []
    encode = module.text_encoder.encode
    monkeypatch.setattr(module.text_encoder, "encode", lambda prompts: calls.append(prompts) or encode(prompts))
    for batch in (3, 5):
        text, mask = module.null_text(batch, torch.device("cpu"))
        assert text.shape == (batch, *expected_text.shape[1:]) and mask.shape == (batch, expected_mask.shape[1])
        assert torch.equal(text[-1], expected_text[0]) and torch.equal(mask[-1], expected_mask[0])
    assert calls == [[""]]


def test_missing_vae_checkpoint_says_how_to_make_one(demo_dir, tmp_path):
    cfg = dit_config(demo_dir, tmp_path, f"vae_checkpoint={tmp_path / 'missing.ckpt'}")
    with pytest.raises(FileNotFoundError, match="make train-vae"):
        DiTModule(cfg)


@pytest.fixture(scope="module")
def dit_run(demo_dir, tmp_path_factory):
    """A short DiT run with a checkpoint and periodic samples."""
    run_dir = tmp_path_factory.mktemp("dit_run") / "runs" / "dit"
    cfg = dit_config(demo_dir, run_dir, "trainer.enable_checkpointing=true",
                     "+callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                     f"+callbacks.checkpoint.dirpath={run_dir}/checkpoints", "+callbacks.checkpoint.save_last=true",
                     "dit_training.samples.every_n_validations=1", "dit_training.samples.num_steps=2")
    run_training(cfg)
    return run_dir


def test_periodic_samples_are_written(dit_run):
    samples = sorted(p.name for p in (dit_run / "samples").iterdir())
    assert samples == ["step_0000002.png", "step_0000002_prompt0.mp4", "step_0000002_prompt1.mp4",
                       "step_0000004.png", "step_0000004_prompt0.mp4", "step_0000004_prompt1.mp4"]
    info = probe_video((dit_run / "samples" / "step_0000004_prompt0.mp4").read_bytes())
    assert (info.num_frames, info.height, info.width) == (17, 128, 128)


def test_sample_command_text_and_image_to_video(dit_run, demo_dir, tmp_path, capsys):
    runs_dir = dit_run.parent.parent
    assert latest_checkpoint(runs_dir) == dit_run / "checkpoints" / "last.ckpt"
    output = tmp_path / "t2v.mp4"
    sample_run(compose_config("sample", [f"runs_dir={runs_dir}", f"output={output}", "num_steps=2",
                                         "frames=9", "height=64", "width=96"]))
    info = probe_video(output.read_bytes())
    assert (info.num_frames, info.height, info.width) == (9, 64, 96)
    image = demo_dir / "sources" / "image_red_square.png"
    i2v = tmp_path / "i2v.mp4"
    sample_run(compose_config("sample", [f"runs_dir={runs_dir}", f"output={i2v}", "num_steps=2", "frames=9",
                                         "height=64", "width=64", f"image={image}", "image_noise_scale=0"]))
    assert "image-to-video sample" in capsys.readouterr().out
    # the conditioning frame is kept: with no conditioning noise, the sampled latent frame 0 is exactly
    # the image's latent (the decoded pixels of a random non-causal tiny VAE would also depend on the
    # generated frames; the sampler's own tests check decoded frames with a causal decoder)
    module = load_dit_module(dit_run / "checkpoints" / "last.ckpt")
    picture = read_image(image, 64, 64)  # (1, 3, H, W)
    conditioning = image_conditioning(module.vae, picture, latent_frames=2, noise_scale=0.0)
    settings = SampleSettings(frames=9, height=64, width=64, num_steps=2)
    latents = generate(module.transformer, module.vae, module.text_encoder, ["a red square"], settings,
                       conditioning=conditioning, return_latents=True)
    torch.testing.assert_close(latents[:, :, 0], conditioning.latents[:, :, 0])
    unconditioned = generate(module.transformer, module.vae, module.text_encoder, ["a red square"], settings,
                             return_latents=True)
    assert not torch.allclose(unconditioned[:, :, 0], conditioning.latents[:, :, 0], atol=1e-2)


def test_sample_command_explains_missing_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="make train-dit"):
        latest_checkpoint(tmp_path)


def test_a_dit_diffusers_cannot_describe_is_exported_in_our_layout(demo_dir, tmp_path):
    run_training(dit_config(demo_dir, tmp_path, "model.dit.rope_spacing=inverse_exponential", "trainer.max_steps=2"))
    export = tmp_path / "export" / "transformer"
    assert not (export / "config.json").exists()  # no diffusers directory that would load wrong RoPE
    config = DiTConfig(**json.loads((export / "ltx_dit_config.json").read_text()))
    assert config.rope_spacing == "inverse_exponential"
    model = VideoTransformer(config)
    model.load_state_dict(load_file(str(export / "transformer.safetensors")), strict=True)


@pytest.mark.parametrize(("algorithm", "scaler"), [("norm", None), ("value", None), ("norm", "fp16 scaler")])
def test_gradient_clipping_with_the_fused_default_optimizer(demo_dir, tmp_path, algorithm, scaler):
    """The default AdamW is fused; Lightning's mixed-precision plugin refuses to clip for it. Without
    a gradient scaler (bf16, fp32) the module clips itself; with one it leaves Lightning's refusal."""
    from types import SimpleNamespace

    from lightning.pytorch.plugins.precision import MixedPrecision

    module = DiTModule(dit_config(demo_dir, tmp_path))
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"]
    parameters = [p for p in module.transformer.parameters()]
    for parameter in parameters:
        parameter.grad = torch.full_like(parameter, 3.0)
    plugin = MixedPrecision("bf16-mixed", "cpu")
    if scaler:
        plugin.scaler = torch.amp.GradScaler("cpu")
    module._trainer = SimpleNamespace(precision_plugin=plugin, gradient_clip_val=1.0, gradient_clip_algorithm=algorithm)
    if scaler:
        with pytest.raises(RuntimeError, match="fused"):
            module.configure_gradient_clipping(optimizer, 1.0, algorithm)
        return
    module.configure_gradient_clipping(optimizer, 1.0, algorithm)
    if algorithm == "norm":
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
        assert total == pytest.approx(1.0, rel=1e-4)
    else:
        assert all(p.grad.max() == 1.0 for p in parameters)


def test_sampling_defaults_come_from_the_model_version(dit_run, tmp_path, monkeypatch):
    """`make sample` takes the checkpoint's model.dit.inference defaults unless the command line gives a value;
    the v0.9.5 / v0.9.7 presets sample on the unshifted schedule without a terminal stretch."""
    seen = []
    monkeypatch.setattr("ltx.cli.sample.generate", lambda *args, **kwargs: (seen.append(args[4]), torch.zeros(1, 3, 9, 64, 64))[1])
    runs_dir = dit_run.parent.parent
    common = [f"runs_dir={runs_dir}", f"output={tmp_path / 'v.mp4'}", "num_steps=2", "frames=9", "height=64", "width=64"]
    sample_run(compose_config("sample", common))
    sample_run(compose_config("sample", [*common, "guidance_scale=4.5", "schedule_shift=0.0", "schedule_terminal=0.0"]))
    assert (seen[0].guidance_scale, seen[0].schedule_shift, seen[0].schedule_terminal) == (3.0, None, 0.1)  # tiny.yaml
    assert (seen[1].guidance_scale, seen[1].schedule_shift, seen[1].schedule_terminal) == (4.5, 0.0, 0.0)
    for preset, guidance in (("ltx-video-2b-0.9.5", 3.0), ("ltx-video-13b-0.9.7", 5.0)):
        inference = compose_config("train_dit", [f"model/dit={preset}"]).model.dit.inference
        settings = SampleSettings().with_inference_defaults(dict(inference), num_steps=4)
        assert (settings.schedule_shift, settings.schedule_terminal, settings.guidance_scale) == (0.0, 0.0, guidance)
        assert settings.num_steps == 4 and settings.decode_timestep == 0.05
    with pytest.raises(ValueError, match="unknown sample settings \\['shift'\\]"):
        SampleSettings().with_inference_defaults({"shift": 1.0})


def test_sample_command_first_last_inpainting_and_outpainting(dit_run, demo_dir, tmp_path, capsys):
    """image= + last_image= (interpolation), video= + mask= (inpainting), video= + outpaint=: the given latent
    tokens come out exactly as encoded (no conditioning noise), the rest is generated."""
    from PIL import Image

    from ltx.cli.sample import conditioning_from_inputs, reference_from_input

    runs_dir, sources = dit_run.parent.parent, demo_dir / "sources"
    mask = tmp_path / "mask.png"
    pixels = np.zeros((64, 96, 3), dtype=np.uint8)
    pixels[:, :48] = 255  # keep the left half: latent column 0 (column 1 is only half white)
    Image.fromarray(pixels).save(mask)
    common = [f"runs_dir={runs_dir}", "num_steps=2", "frames=17", "height=64", "width=96", "image_noise_scale=0"]
    module = load_dit_module(dit_run / "checkpoints" / "last.ckpt")
    cases = {
        "interpolation": [f"image={sources / 'image_red_square.png'}", f"last_image={sources / 'image_red_square.png'}"],
        "inpainting": [f"video={sources / 'red_circle_stripes.mp4'}", f"mask={mask}"],
        "prefix": [f"video={sources / 'red_circle_stripes.mp4'}", "video_frames=[0,1]"],
        "outpainting": [f"video={sources / 'red_circle_stripes.mp4'}", "outpaint=0.6"],
    }
    for name, inputs in cases.items():
        cfg = compose_config("sample", [*common, *inputs, f"output={tmp_path / name}.mp4"])
        conditioning = conditioning_from_inputs(module.vae, cfg)
        given = conditioning.token_mask(torch.device("cpu"))  # (1, F', H', W')
        settings = SampleSettings(frames=17, height=64, width=96, num_steps=2)
        latents = generate(module.transformer, module.vae, module.text_encoder, ["a red circle"], settings,
                           conditioning=conditioning, return_latents=True)
        kept = given.unsqueeze(1).expand_as(latents)
        assert kept.any() and not kept.all(), name
        torch.testing.assert_close(latents[kept], conditioning.latents[kept], rtol=0, atol=0)
        if name == "inpainting":  # the command end to end once (the others share its code path)
            sample_run(cfg)
            assert probe_video((tmp_path / f"{name}.mp4").read_bytes()).num_frames == 17
        if name == "prefix":  # extension: the video's first two latent frames are kept whole
            assert given[0, :2].all() and not given[0, 2].any()
    assert given[0, :, :, 1].all() and not given[0, :, :, 0].any()  # outpaint 0.6 of a 2 x 3 grid: the centre column
    assert "conditioned (inpainting)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="give it as video=PATH"):
        conditioning_from_inputs(module.vae, compose_config("sample", [*common, "outpaint=0.5"]))

    # reference=: the reference video's latents go to the sampler (IC-LoRA), at the sample's grid / downscale
    reference_cfg = compose_config("sample", [*common, f"reference={sources / 'red_circle_stripes.mp4'}",
                                              f"output={tmp_path / 'reference.mp4'}"])
    assert reference_from_input(module.vae, reference_cfg).shape == (1, 128, 3, 2, 3)
    sample_run(reference_cfg)
    assert probe_video((tmp_path / "reference.mp4").read_bytes()).num_frames == 17
    with pytest.raises(ValueError, match="reference_downscale=2 must divide the sample's latent size 2 x 3"):
        reference_from_input(module.vae, compose_config("sample", [*common, f"reference={sources / 'red_circle_stripes.mp4'}",
                                                                   "reference_downscale=2"]))
