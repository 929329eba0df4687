"""The VAE training stage end to end on generated shards: losses, GAN, EMA, previews, checkpoints."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import compose_config

from ltx.cli.train import run_training
from ltx.training.ema import EMACallback
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
    run_dir = tmp_path_factory.mktemp("vae_run")
    trainer = run_training(vae_run_config(demo_dir, run_dir))
    return run_dir, trainer


def test_training_runs_generator_and_discriminator_and_logs_every_term(trained_run):
    run_dir, trainer = trained_run
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


def test_previews_exports_and_checkpoints_are_written(trained_run):
    run_dir, _ = trained_run
    assert sorted(p.name for p in (run_dir / "previews").iterdir()) == [
        "step_0000002.mp4", "step_0000002.png", "step_0000004.mp4", "step_0000004.png"]
    assert (run_dir / "export" / "vae" / "config.json").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_checkpoint_rebuilds_the_module_with_its_ema(trained_run):
    run_dir, trainer = trained_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    module = VAEModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    for name, value in trainer.lightning_module.vae.state_dict().items():
        torch.testing.assert_close(module.vae.state_dict()[name], value)
    ema_states = [state for key, state in checkpoint["callbacks"].items() if "EMACallback" in key]
    assert ema_states and "ema" in ema_states[0]
    ema = next(c for c in trainer.callbacks if isinstance(c, EMACallback)).ema
    assert int(ema.n_averaged) == 4
    differs = [not torch.equal(p, q) for p, q in zip(ema.module.parameters(), trainer.lightning_module.vae.parameters())]
    assert any(differs)  # the average lags the trained weights


def test_training_is_deterministic(demo_dir, tmp_path, trained_run):
    run_dir, _ = trained_run
    again = tmp_path / "again"
    run_training(vae_run_config(demo_dir, again))
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
    out = noise_latents(latents, torch.tensor([0.0, 0.1, 1.0]), generator)
    torch.testing.assert_close(out[0], latents[0])
    assert not torch.allclose(out[1], latents[1]) and not torch.allclose(out[2], latents[2], atol=0.5)


def test_unknown_discriminator_is_reported(demo_dir, tmp_path):
    cfg = vae_run_config(demo_dir, tmp_path, "loss.gan.discriminator=stylegan")
    with pytest.raises(LookupError, match="unknown discriminator 'stylegan'. Valid names: patchgan2d, patchgan3d"):
        VAEModule(cfg)
