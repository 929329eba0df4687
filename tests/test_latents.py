"""Latent shards: the precompute command, the latent data module, and DiT training from them."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import compose_config
from hydra.utils import instantiate

from ltx.cli.precompute import run as precompute_run
from ltx.cli.train import run_training
from ltx.data.latents import LatentDataModule, LatentSample
from ltx.data.shards import write_shard
from ltx.interop.diffusers import export_vae
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.training.dit_module import DiTModule


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A tiny VAE in the diffusers layout, used by the precompute run and by the online comparison."""
    torch.manual_seed(11)
    vae = VideoAutoencoder(vae_config("tiny"))
    vae.set_latent_statistics(torch.randn(16) * 0.1, torch.rand(16) + 0.5)
    return export_vae(vae, tmp_path_factory.mktemp("vae") / "vae")


@pytest.fixture(scope="module")
def latent_dir(demo_dir, vae_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("latents")
    cfg = compose_config("precompute", ["vae_checkpoint=null", f"model.vae.pretrained={vae_dir}", f"output={output}",
                                        f"data.train_shards={demo_dir / 'shards'}", f"data.val_shards={demo_dir / 'val'}",
                                        f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}"])
    assert precompute_run(cfg) == {"train": 15, "val": 3}
    return output


def test_latent_batches_hold_one_latent_shape(latent_dir):
    module = LatentDataModule(str(latent_dir / "train"), batch_size=2, resampled=False, num_workers=0)
    batches = list(module.train_dataloader())
    assert sum(len(b["key"]) for b in batches) == 15 and not module.skipped
    for batch in batches:
        frames, height, width = batch["bucket"]
        assert batch["latents"].shape[1:] == (16, frames, height, width)
        assert batch["text"].shape == (len(batch["key"]), 128, 32) and batch["text_mask"].dtype == torch.bool
        assert batch["fps"].shape == (len(batch["key"]),)


def test_precomputed_latents_equal_online_encoding(latent_dir, vae_dir, demo_dir, tmp_path):
    cfg = compose_config("train_dit", ["vae_checkpoint=null", f"model.vae.pretrained={vae_dir}",
                                       f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}",
                                       f"run_dir={tmp_path}", f"data.train_shards={demo_dir / 'val'}"])
    module = DiTModule(cfg)
    videos = instantiate(cfg.data).make_loader(str(demo_dir / "val"), resampled=False, random=False)
    online = {}
    for batch in videos:
        latents, text, _ = module.encode_batch(batch)
        online.update({key: (latents[i], text[i]) for i, key in enumerate(batch["key"])})
    stored = LatentDataModule(str(latent_dir / "val"), batch_size=1, resampled=False, num_workers=0)
    for batch in stored.train_dataloader():
        latents, text = online[batch["key"][0]]
        torch.testing.assert_close(batch["latents"][0], latents)  # same windows, crops and VAE
        torch.testing.assert_close(batch["text"][0], text)


def test_dit_trains_from_latent_shards(latent_dir, demo_dir, tmp_path):
    cfg = compose_config("train_dit", [
        "data=latents", "experiment=smoke", f"data.train_shards={latent_dir / 'train'}",
        f"data.val_shards={latent_dir / 'val'}", "vae_checkpoint=null", f"run_dir={tmp_path}",
        f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", "trainer.max_steps=3", "data.batches_per_epoch=3"])
    trainer = run_training(cfg)
    assert trainer.global_step == 3 and torch.isfinite(trainer.callback_metrics["val/loss"])


def test_broken_latent_samples_are_skipped_and_counted(tmp_path):
    good = LatentSample("good", torch.zeros(4, 2, 1, 1), torch.zeros(3, 8), torch.ones(3, dtype=torch.bool), "a",
                        {"fps": 24.0})
    write_shard(tmp_path / "l-000000.tar", [good])
    with open(tmp_path / "l-000000.tar", "rb") as handle:
        data = handle.read()
    (tmp_path / "l-000001.tar").write_bytes(data.replace(b"F64", b"X99").replace(b"\"BOOL\"", b"\"NOPE\""))
    module = LatentDataModule(str(tmp_path), batch_size=1, resampled=False, num_workers=0)
    keys = [k for batch in module.train_dataloader() for k in batch["key"]]
    assert keys == ["good"] and module.skipped == Counter({"decode_error": 1})
    with pytest.raises(ValueError, match="needs the fps"):
        LatentSample("x", torch.zeros(4, 2, 1, 1), torch.zeros(3, 8), torch.ones(3), "a", {}).check()
