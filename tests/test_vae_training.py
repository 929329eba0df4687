"""The VAE training stage end to end on generated shards: losses, GAN, EMA, previews, checkpoints."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torchvision
from helpers import compose_config
from safetensors.torch import load_file

from ltx.cli.latent_stats import ChannelMoments
from ltx.cli.latent_stats import run as latent_stats_run
from ltx.cli.reconstruct import main as reconstruct_main
from ltx.cli.reconstruct import reconstruct_file
from ltx.cli.train import run_training
from ltx.data.video_io import probe_video
from ltx.interop.diffusers import load_vae
from ltx.models.vae import VAEConfig
from ltx.training.build import build_vae, vae_from_checkpoint
from ltx.training.ema import EMACallback, EMAWeights, warmup_ema_decay
from ltx.training.previews import log_image
from ltx.training.vae_module import VAEModule, decoder_timesteps, noise_latents


def vae_run_config(demo_dir, run_dir, *extra: str):
    return compose_config("train_vae", [
        "experiment=smoke", f"data.train_shards={demo_dir / 'shards'}", f"data.val_shards={demo_dir / 'val'}",
        f"run_dir={run_dir}", "trainer.max_steps=4", "data.batches_per_epoch=2", "loss.gan.start_step=1",
        "trainer.enable_checkpointing=true", "+callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.checkpoint.dirpath={run_dir}/checkpoints", "+callbacks.checkpoint.save_last=true",
        "trainer.deterministic=true", *extra,
    ])


def read_metrics(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained_run(demo_dir, tmp_path_factory):
    """Four steps of the tiny VAE with the GAN from step 1 and validation LPIPS on a local (random)
    AlexNet backbone file, as a user would point at real torchvision weights."""
    run_dir = tmp_path_factory.mktemp("vae_run")
    backbone = run_dir / "alexnet_features.pth"
    torch.save(torchvision.models.alexnet(weights=None).features.state_dict(), backbone)
    overrides = ("vae_training.validation_lpips.net=alex", f"vae_training.validation_lpips.backbone_path={backbone}")
    trainer = run_training(vae_run_config(demo_dir, run_dir, *overrides))
    return run_dir, trainer, overrides


def test_training_runs_generator_and_discriminator_and_logs_every_term(trained_run):
    run_dir, trainer, _ = trained_run
    assert trainer.global_step == 4  # generator steps; the discriminator steps do not count
    rows = read_metrics(run_dir)
    train_rows = [r for r in rows if r.get("train/loss")]
    assert len(train_rows) == 4
    for key in ("train/reconstruction", "train/kl", "train/wavelet"):
        assert all(float(r[key]) > 0 for r in train_rows)
    gan_rows = [r for r in train_rows if r.get("train/gan_discriminator")]
    assert [int(r["step"]) for r in gan_rows] == [1, 2, 3]  # loss.gan.start_step=1
    validation = [r for r in rows if r.get("val/psnr")]
    assert len(validation) == 2 and all(5 < float(r["val/psnr"]) < 60 for r in validation)
    assert all(0 < float(r["val/ssim"]) <= 1 for r in validation)
    assert all(float(r["val/lpips"]) > 0 for r in validation)


def test_previews_exports_and_checkpoints_are_written(trained_run):
    run_dir, _, _ = trained_run
    assert sorted(p.name for p in (run_dir / "previews").iterdir()) == [
        "step_0000002.mp4", "step_0000002.png", "step_0000004.mp4", "step_0000004.png"]
    assert (run_dir / "export" / "vae" / "config.json").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_checkpoint_rebuilds_the_module_with_its_ema(trained_run):
    run_dir, trainer, _ = trained_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    module = VAEModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    for name, value in trainer.lightning_module.vae.state_dict().items():
        torch.testing.assert_close(module.vae.state_dict()[name], value)
    assert int(checkpoint["state_dict"]["ema.num_updates"]) == 4
    assert module.checkpoint_ema is not None and "ema.num_updates" in module.checkpoint_ema  # set aside, not lost
    ema = trainer.lightning_module.ema
    assert int(ema.num_updates) == 4
    differs = [not torch.equal(p, q) for p, q in zip(ema.module.parameters(), trainer.lightning_module.vae.parameters())]
    assert any(differs)  # the average lags the trained weights


def test_training_is_deterministic(demo_dir, tmp_path, trained_run):
    run_dir, _, overrides = trained_run
    again = tmp_path / "again"
    run_training(vae_run_config(demo_dir, again, *overrides))
    first = [float(r["train/loss"]) for r in read_metrics(run_dir) if r.get("train/loss")]
    second = [float(r["train/loss"]) for r in read_metrics(again) if r.get("train/loss")]
    assert first == pytest.approx(second, rel=1e-5)


def test_decoder_timesteps_follow_the_denoising_objective():
    generator = torch.Generator().manual_seed(0)
    t = decoder_timesteps(20_000, probability=0.3, max_timestep=0.2, generator=generator)
    noisy = t > 0
    assert abs(noisy.float().mean().item() - 0.3) < 0.02
    assert t.max() <= 0.2 and abs(t[noisy].mean().item() - 0.1) < 0.005
    latents = torch.randn(3, 4, 2, 2, 2)
    out = noise_latents(latents, torch.tensor([0.0, 0.1, 1.0]), torch.randn(latents.shape, generator=generator))
    torch.testing.assert_close(out[0], latents[0])
    assert not torch.allclose(out[1], latents[1]) and not torch.allclose(out[2], latents[2], atol=0.5)


def test_unknown_discriminator_is_reported(demo_dir, tmp_path):
    cfg = vae_run_config(demo_dir, tmp_path, "loss.gan.discriminator=stylegan")
    with pytest.raises(LookupError, match="unknown discriminator 'stylegan'. Valid names: patchgan2d, patchgan3d"):
        VAEModule(cfg)


def test_vae_from_checkpoint_takes_ema_or_raw_weights(trained_run):
    run_dir, trainer, _ = trained_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    ema = trainer.lightning_module.ema.module
    for use_ema, reference in ((True, ema), (False, trainer.lightning_module.vae)):
        loaded = vae_from_checkpoint(checkpoint, use_ema=use_ema)
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[name], value)
    with pytest.raises(ValueError, match="not a VAE-stage checkpoint"):
        torch.save({"hyper_parameters": {}}, run_dir / "other.ckpt")
        vae_from_checkpoint(run_dir / "other.ckpt")
    with pytest.raises(ValueError, match="not a VAE-stage checkpoint .its config names stage 'dit'"):
        # a DiT checkpoint holds a (frozen) VAE too, but not the one this function is for
        torch.save({"hyper_parameters": {"cfg": {"stage": "dit", "model": {}}}, "state_dict": {}}, run_dir / "dit.ckpt")
        vae_from_checkpoint(run_dir / "dit.ckpt")


def test_channel_moments_match_torch():
    values = torch.randn(3, 4, 2, 5, 5) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1, 1) + 1.0
    moments = ChannelMoments(4)
    moments.update(values[:2])
    moments.update(values[2:])
    mean, std = moments.mean_std()
    flat = values.transpose(0, 1).flatten(1)
    torch.testing.assert_close(mean, flat.mean(1))
    torch.testing.assert_close(std, flat.std(1), rtol=1e-4, atol=1e-5)


def test_latent_stats_command_writes_statistics_the_vae_loads(trained_run, demo_dir, tmp_path):
    run_dir, _, _ = trained_run
    output = tmp_path / "stats.safetensors"
    cfg = compose_config("latent_stats", [f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", f"output={output}",
                                          "batches=3", f"data.train_shards={demo_dir / 'shards'}"])
    latent_stats_run(cfg)
    stats = load_file(str(output))
    assert stats["latents_mean"].shape == stats["latents_std"].shape == (128,)
    assert torch.all(stats["latents_std"] > 0)
    vae = build_vae({"preset": "tiny", "latent_stats": str(output)})
    torch.testing.assert_close(vae.latents_std, stats["latents_std"])


def test_reconstruct_command_reports_psnr_and_writes_video(trained_run, demo_dir, tmp_path, capsys):
    run_dir, _, _ = trained_run
    source = demo_dir / "sources" / "red_circle_stripes.mp4"
    output = tmp_path / "reconstruction.mp4"
    reconstruct_main([str(source), str(output), "--checkpoint", str(run_dir / "checkpoints" / "last.ckpt"),
                      "--frames", "17", "--size", "96x128", "--side-by-side"])
    printed = capsys.readouterr().out
    assert "17 frames at 128x96" in printed and "PSNR" in printed and "SSIM" in printed
    info = probe_video(output.read_bytes())
    assert (info.num_frames, info.height, info.width) == (17, 96, 256)
    vae = vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    result = reconstruct_file(vae, source, tmp_path / "plain.mp4")
    assert (result.frames, result.height, result.width) == (73, 192, 256) and 0 < result.psnr < 60
    with pytest.raises(SystemExit, match="exactly one of"):
        reconstruct_main([str(source), str(output)])


def test_ema_copies_first_then_warms_up_then_keeps_its_decay():
    model = torch.nn.Linear(2, 2, bias=False)
    ema = EMAWeights(model, decay=0.99)
    expected = None
    for step in range(200):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        decay = 0.0 if step == 0 else warmup_ema_decay(0.99, step)
        current = model.weight.detach()
        expected = current.clone() if expected is None else decay * expected + (1 - decay) * current
    torch.testing.assert_close(ema.module.weight, expected)
    assert int(ema.num_updates) == 200 and not ema.module.weight.requires_grad
    assert warmup_ema_decay(0.99, 0) == pytest.approx(0.1) and warmup_ema_decay(0.99, 10_000) == 0.99
    trained = model.weight.detach().clone()
    ema.swap(model)
    torch.testing.assert_close(model.weight.detach(), expected)
    torch.testing.assert_close(ema.module.weight, trained)
    with pytest.raises(ValueError, match="decay must be in"):
        EMACallback("net", decay=1.0)
    with pytest.raises(ValueError, match="decay must be in"):
        EMAWeights(model, decay=0.0)


def test_images_go_to_loggers_that_take_them():
    class Experiment:
        def __init__(self):
            self.images = []

        def add_image(self, tag, image, step):
            self.images.append((tag, tuple(image.shape), step))

    class ImageLogger:
        experiment = Experiment()

    class CsvLikeLogger:
        experiment = object()

    image_logger = ImageLogger()
    log_image([image_logger, CsvLikeLogger()], "val/reconstruction", torch.zeros(3, 8, 8), 7)
    assert image_logger.experiment.images == [("val/reconstruction", (3, 8, 8), 7)]


def test_images_per_clip_draws_single_frames_of_each_clip(demo_dir, tmp_path):
    module = VAEModule(vae_run_config(demo_dir, tmp_path, "vae_training.images_per_clip=3"))
    video = torch.arange(2 * 9, dtype=torch.float32).view(2, 1, 9, 1, 1).expand(2, 3, 9, 4, 4)  # value = clip * 9 + frame
    images = module.frames_as_images(video)
    assert images.shape == (6, 3, 1, 4, 4)
    values = images[:, 0, 0, 0, 0].long()
    assert values[:3].lt(9).all() and values[3:].ge(9).all()  # three frames of clip 0, then three of clip 1
    assert torch.equal(module.frames_as_images(video), images)  # a function of (seed, step): resumable
    assert module.frames_as_images(video[:, :, :1]) is None  # images are not split again
    module.training_cfg.images_per_clip = 0
    assert module.frames_as_images(video) is None
    module.training_cfg.images_per_clip = -1
    with pytest.raises(ValueError, match="images_per_clip and image_pool must be >= 0"):
        module.frames_as_images(video)


def test_images_come_from_a_pool_of_recent_frames_per_frame_shape(demo_dir, tmp_path):
    module = VAEModule(vae_run_config(demo_dir, tmp_path, "vae_training.images_per_clip=4", "vae_training.image_pool=10"))
    first = torch.full((2, 3, 9, 4, 4), 1.0)
    assert module.frames_as_images(first).eq(1.0).all()  # (8, 3, 1, 4, 4): the pool holds this step's frames only
    second = torch.full((2, 3, 9, 4, 4), 2.0)
    images = module.frames_as_images(second)
    pool, written = module._image_pools[(4, 4)]
    assert images.shape == (8, 3, 1, 4, 4) and pool.shape == (10, 3, 4, 4) and written == 16
    assert set(images[:, 0, 0, 0, 0].tolist()) <= {1.0, 2.0}
    assert sorted(pool[:, 0, 0, 0].tolist()) == [1.0] * 2 + [2.0] * 8  # the last 10 frames written
    wide = module.frames_as_images(torch.full((2, 3, 9, 4, 6), 3.0))  # another bucket: its own pool
    assert wide.eq(3.0).all() and module._image_pools[(4, 6)][1] == 8
    small = VAEModule(vae_run_config(demo_dir, tmp_path, "vae_training.images_per_clip=4", "vae_training.image_pool=3"))
    assert small.frames_as_images(second).eq(2.0).all() and small._image_pools[(4, 4)][1] == 3  # keeps the newest 3


def test_joint_image_video_training_logs_the_image_terms(demo_dir, tmp_path):
    run_training(vae_run_config(demo_dir, tmp_path, "trainer.max_steps=2", "vae_training.images_per_clip=2", "loss.gan=null"))
    train_rows = [row for row in read_metrics(tmp_path) if row.get("train/loss")]
    assert len(train_rows) == 2
    for row in train_rows:
        image, video = float(row["train/image_reconstruction"]), float(row["train/reconstruction"])
        assert image > 0 and float(row["train/image_wavelet"]) > 0
        # every term is >= 0 and both reconstruction terms have weight 1: the images' terms are in the loss
        assert float(row["train/loss"]) >= video + image


@pytest.mark.parametrize("switches", [(), ("model.vae.uniform_logvar=false", "model.vae.timestep_conditioning=false")],
                         ids=["release", "research-switches"])
def test_the_v095_architecture_trains_in_the_vae_stage(demo_dir, tmp_path, switches):
    """The v0.9.5 encoder (space-to-depth stages) through the VAE stage: GAN, DWT and the denoising decoder
    (or, with the switches, per-channel log-variance and an unconditioned decoder); the EMA checkpoint rebuilds it."""
    trainer = run_training(vae_run_config(demo_dir, tmp_path, "model.vae.preset=tiny-0.9.5", "trainer.max_steps=2",
                                          *switches))
    assert trainer.global_step == 2
    train_rows = [row for row in read_metrics(tmp_path) if row.get("train/loss")]
    assert len(train_rows) == 2 and all(float(row["train/wavelet"]) > 0 for row in train_rows)
    vae = vae_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert vae.config.space_to_depth and vae.config.uniform_logvar == (not switches)
    assert vae.config.timestep_conditioning == (not switches)
    export = tmp_path / "export" / "vae"
    if switches:  # diffusers cannot describe a per-channel log-variance: our layout, which load_vae reads
        exported = load_vae(export / "vae.safetensors", VAEConfig(**json.loads((export / "ltx_vae_config.json").read_text())))
    else:
        exported = load_vae(export)
    assert exported.config == vae.config


def test_a_checkpoint_trained_without_a_gan_resumes_with_one_as_gan_fine_tuning(demo_dir, tmp_path):
    """resume=<a no-GAN checkpoint> with a GAN configured: the VAE, its optimizer and the step come from the
    checkpoint, the discriminator starts fresh and trains from the resumed step on."""
    trunk_dir, branch_dir = tmp_path / "trunk", tmp_path / "branch"
    trunk = run_training(vae_run_config(demo_dir, trunk_dir, "loss.gan=null", "trainer.max_steps=2"))
    checkpoint = trunk_dir / "checkpoints" / "last.ckpt"
    assert trunk.global_step == 2 and not any("discriminator" in key for key in
                                              torch.load(checkpoint, weights_only=True)["state_dict"])
    branch = run_training(vae_run_config(demo_dir, branch_dir, "loss.gan.start_step=2", f"resume='{checkpoint}'"))
    assert branch.global_step == 4
    with open(next(branch_dir.glob("csv/resumed-step2/metrics.csv"))) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(rows) == 2 and all(int(row["step"]) >= 2 for row in rows)  # the two steps after the resumed one
    assert all(float(row["train/gan_discriminator"]) > 0 for row in rows)
    saved = torch.load(branch_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(key.startswith("discriminator.") for key in saved)
