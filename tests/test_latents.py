"""Latent shards: the precompute command, the latent data module, DiT training from them, and their record of
the VAE and latent statistics that made them."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
import torch
from helpers import compose_config
from hydra.utils import instantiate
from safetensors.torch import save_file

from ltx.cli.precompute import run as precompute_run
from ltx.cli.train import run_training
from ltx.data.latents import LatentDataModule, LatentSample
from ltx.data.shards import stats_path, write_shard, write_shards
from ltx.interop.diffusers import export_vae
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.training.build import build_vae
from ltx.training.dit_module import DiTModule
from ltx.training.latent_record import (
    RECORD_KEY,
    LatentRecord,
    check_latent_shards,
    statistics_fingerprint,
    vae_weights_fingerprint,
)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A tiny VAE in the diffusers layout, used by the precompute run and by the online comparison."""
    torch.manual_seed(11)
    vae = VideoAutoencoder(vae_config("tiny"))
    vae.set_latent_statistics(torch.randn(128) * 0.1, torch.rand(128) + 0.5)
    return export_vae(vae, tmp_path_factory.mktemp("vae") / "vae")


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory):
    """Latent statistics other than the VAE's own (as ``ltx.cli.latent_stats`` writes them)."""
    path = tmp_path_factory.mktemp("stats") / "latent_stats.safetensors"
    save_file({"latents_mean": torch.linspace(-0.2, 0.2, 128), "latents_std": torch.linspace(0.8, 1.5, 128)}, str(path))
    return path


def precompute_config(demo_dir, vae_dir, stats_file, output, *extra: str):
    return compose_config("precompute", [
        "vae_checkpoint=null", f"model.vae.pretrained={vae_dir}", f"model.vae.latent_stats={stats_file}",
        f"output={output}", f"data.train_shards={demo_dir / 'shards'}", f"data.val_shards={demo_dir / 'val'}",
        f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", *extra])


@pytest.fixture(scope="module")
def latent_dir(demo_dir, vae_dir, stats_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("latents")
    counts = precompute_run(precompute_config(demo_dir, vae_dir, stats_file, output))
    assert counts == {"train": 15, "val": samples_in(demo_dir / "val")}
    return output


def samples_in(directory) -> int:
    """The samples of the shards in ``directory``, by their stats JSON."""
    return sum(json.loads(path.read_text())["num_samples"] for path in directory.glob("*.stats.json"))


def latent_dit_config(latent_dir, demo_dir, run_dir, *vae: str):
    """Three steps of the tiny DiT on ``latent_dir`` with the VAE and statistics overrides ``vae``."""
    return compose_config("train_dit", [
        "data=latents", "experiment=smoke", f"data.train_shards={latent_dir / 'train'}",
        f"data.val_shards={latent_dir / 'val'}", "vae_checkpoint=null", f"run_dir={run_dir}",
        f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", "trainer.max_steps=3", "data.batches_per_epoch=3",
        *vae])


def test_latent_batches_hold_one_latent_shape(latent_dir):
    module = LatentDataModule(str(latent_dir / "train"), batch_size=2, resampled=False, num_workers=0)
    batches = list(module.train_dataloader())
    assert sum(len(b["key"]) for b in batches) == 15 and not module.skipped
    for batch in batches:
        frames, height, width = batch["bucket"]
        assert batch["latents"].shape[1:] == (128, frames, height, width)
        assert batch["text"].shape == (len(batch["key"]), 128, 32) and batch["text_mask"].dtype == torch.bool
        assert batch["fps"].shape == (len(batch["key"]),)


def test_precomputed_latents_equal_online_encoding(latent_dir, vae_dir, stats_file, demo_dir, tmp_path):
    cfg = compose_config("train_dit", ["vae_checkpoint=null", f"model.vae.pretrained={vae_dir}",
                                       f"model.vae.latent_stats={stats_file}",
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


def test_dit_trains_from_latent_shards_of_its_own_vae_and_statistics(latent_dir, vae_dir, stats_file, demo_dir,
                                                                       tmp_path):
    cfg = latent_dit_config(latent_dir, demo_dir, tmp_path, f"model.vae.pretrained={vae_dir}",
                            f"model.vae.latent_stats={stats_file}")
    trainer = run_training(cfg)
    assert trainer.global_step == 3 and torch.isfinite(trainer.callback_metrics["val/loss"])


def test_precompute_records_the_vae_and_statistics_in_every_shard(latent_dir, vae_dir, stats_file):
    vae = build_vae({"preset": "tiny", "pretrained": str(vae_dir), "latent_stats": str(stats_file)})
    records = {path: json.loads(path.read_text())[RECORD_KEY] for path in sorted(latent_dir.glob("*/*.stats.json"))}
    assert {path.parent.name for path in records} == {"train", "val"}
    for record in records.values():
        assert record == {"vae_checkpoint": None, "vae_pretrained": str(vae_dir.resolve()),
                          "vae_fingerprint": vae_weights_fingerprint(vae), "latent_stats": str(stats_file.resolve()),
                          "latent_stats_fingerprint": statistics_fingerprint(vae.latents_mean, vae.latents_std)}
    assert torch.equal(vae.latents_mean, torch.linspace(-0.2, 0.2, 128))  # the file's statistics, not the VAE's own


@pytest.mark.parametrize(("vae", "stats", "differs", "fix"), [
    # the shards' VAE without their statistics: recompute with this run's
    ("{vae}", "null", "latent statistics", "python -m ltx.cli.precompute vae_checkpoint=null "
                                           "model.vae.pretrained={vae} model.vae.latent_stats=null output={latents}"),
    # a randomly initialised VAE, which no precompute reproduces: train with the shards' VAE
    ("null", "{stats}", "VAE weights", "train with the shards' ones: vae_checkpoint=null model.vae.pretrained={vae} "
                                       "model.vae.latent_stats={stats}"),
])
def test_dit_training_refuses_latents_of_another_vae_or_statistics(latent_dir, vae_dir, stats_file, demo_dir,
                                                                    tmp_path, vae, stats, differs, fix):
    vae, stats, fix = (value.format(vae=vae_dir, stats=stats_file, latents=latent_dir) for value in (vae, stats, fix))
    cfg = latent_dit_config(latent_dir, demo_dir, tmp_path, f"model.vae.pretrained={vae}",
                            f"model.vae.latent_stats={stats}")
    with pytest.raises(ValueError, match=f"train latent shards .* were made with other {differs} than this run's") \
            as refused:
        run_training(cfg)
    assert fix in str(refused.value)  # the command that fixes it


def write_latent_shards(directory, shards: int, record: LatentRecord | None, prefix: str = "latents-train") -> None:
    """``shards`` shards of one tiny latent sample each, with ``record`` in their stats JSON."""
    sample = LatentSample("a", torch.zeros(4, 1, 1, 1), torch.zeros(3, 8), torch.ones(3, dtype=torch.bool), "a",
                          {"fps": 24.0})
    write_shards([sample] * shards, directory, 1, prefix=prefix,
                 extra_stats={RECORD_KEY: record.to_dict()} if record else None)


def test_latent_shards_without_a_record_get_a_warning_and_mixed_ones_are_refused(tmp_path, caplog):
    record = LatentRecord(None, None, "0" * 16, None, "1" * 16)
    write_latent_shards(tmp_path / "old", 2, None)
    with caplog.at_level(logging.WARNING, logger="ltx.training.latent_record"):
        check_latent_shards(str(tmp_path / "old"), record)
    assert "hold no record of the VAE and latent statistics" in caplog.text and "python -m ltx.cli.precompute" in caplog.text
    write_latent_shards(tmp_path / "mixed", 2, record)
    stats_path(tmp_path / "mixed" / "latents-train-000001.tar").write_text(json.dumps({"num_samples": 1}))
    with pytest.raises(ValueError, match="1 of 2 train latent shards .* hold no record .* runs are mixed"):
        check_latent_shards(str(tmp_path / "mixed"), record)
    check_latent_shards(str(tmp_path / "mixed" / "latents-train-000000.tar"), record)  # its record matches


def test_precompute_replaces_the_shards_of_an_earlier_run(demo_dir, vae_dir, stats_file, tmp_path):
    earlier, samples_per_shard = LatentRecord(None, None, "0" * 16, None, "1" * 16), 16
    write_latent_shards(tmp_path / "val", 4, earlier, prefix="latents-val")  # an earlier run: 4 shards
    write_latent_shards(tmp_path / "val", 2, earlier, prefix="other")
    counts = precompute_run(precompute_config(demo_dir, vae_dir, stats_file, tmp_path, "data.train_shards=null",
                                              f"samples_per_shard={samples_per_shard}"))
    held_out = samples_in(demo_dir / "val")
    assert counts == {"val": held_out} and held_out <= 3 * samples_per_shard  # this run writes fewer shards
    written = sorted(path.name for path in (tmp_path / "val").glob("latents-val-*.tar"))
    assert written == [f"latents-val-{index:06d}.tar" for index in range(-(-held_out // samples_per_shard))]
    assert len(list((tmp_path / "val").glob("latents-val-*.stats.json"))) == len(written)
    assert len(list((tmp_path / "val").glob("other-*.tar"))) == 2  # other files are not precompute's
    check_latent_shards(str(tmp_path / "val" / "latents-val-*.tar"),
                        LatentRecord.from_dict(json.loads(stats_path(tmp_path / "val" / "latents-val-000000.tar")
                                                          .read_text())[RECORD_KEY]))


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
